"""Downloads against real servers on 127.0.0.1: cache, resume, mirrors, checks, locks between processes,
auxiliary weights in torch hub's folder, a fake Google Drive that gdown talks to, and error messages."""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import safetensors.torch
import torch
from http_server import CUT, OFFLINE_URL, Reply, serve, serve_drive

from toonlib import download, losses, models
from toonlib.checkpoints import CheckpointError, load_network
from toonlib.cli import main
from toonlib.encoders import EncoderError, load_encoder
from toonlib.models import ModelInfo

FIXTURES = Path(__file__).parent / "fixtures"
PAYLOAD = (FIXTURES / "ada_tiny.pkl").read_bytes()
QUOTA_PAGE = (b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>"
              b"<p class=\"uc-error-caption\">Sorry, you can't view or download this file at this time.</p>"
              b"<p class=\"uc-error-subcaption\">Too many users have viewed or downloaded this file recently. "
              b"Please try accessing the file again later.</p></body></html>")
HTML = {"Content-Type": "text/html; charset=utf-8"}
FILE = {"Content-Type": "application/octet-stream", "Content-Disposition": 'attachment; filename="tiny.pkl"'}
CONFIRM_PAGE = (b'<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>'
                b'<form id="download-form" action="https://drive.usercontent.google.com/download" method="get">'
                b'<input type="hidden" name="id" value="big"><input type="hidden" name="export" value="download">'
                b'<input type="hidden" name="confirm" value="t"></form></body></html>')
SIGN_IN_PAGE = b"<!DOCTYPE html><html><head><title>Google Drive: Sign-in</title></head><body>Sign in</body></html>"


@pytest.fixture
def server():
    with serve({"/ada_tiny.pkl": PAYLOAD}) as state:
        yield state


@pytest.fixture
def drive(tmp_path, monkeypatch):
    """A fake Google Drive behind an HTTPS proxy: gdown's own Drive logic talks to pages the test serves.

    Files are added to `drive.files` by URL path (`/uc?id=<id>` is what gdown asks first)."""
    with serve_drive({}, tmp_path / "tls") as (state, proxy, ca_bundle):
        for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_bundle))
        yield state


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Cache in a temp folder, no Colab Drive, no waiting between retries, registry changes undone."""
    (tmp_path / "tls").mkdir()
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(download, "DRIVE_ROOT", tmp_path / "no-drive")
    monkeypatch.setattr(download, "RETRY_DELAYS", (0.0, 0.0))
    monkeypatch.setattr(models, "MODELS", dict(models.MODELS))


def register(*sources: str, **changes) -> str:
    """Add a test model with these sources to the registry; returns its name."""
    info = ModelInfo(name="tiny", description="test", sources=sources, filename="tiny.pkl", format="nvidia",
                     resolution=32, license="test", origin="http://example.invalid")
    models.MODELS["tiny"] = dataclasses.replace(info, **changes)
    return "tiny"


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/ada_tiny.pkl"


def cached_files(tmp_path: Path) -> list[str]:
    """The cache folder's files, after checking that its lock folder holds nothing but empty lock files."""
    return listing(tmp_path / "cache")


def listing(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    locks = folder / ".locks"
    if locks.exists():
        assert all(p.suffix == ".lock" and p.stat().st_size == 0 for p in locks.iterdir()), list(locks.iterdir())
    return sorted(p.name for p in folder.iterdir() if p.name != ".locks")


def test_download_then_cache_hit(server, tmp_path):
    name = register(f"{server.base}/ada_tiny.pkl")
    path = download.fetch(name)  # progress bar on: the default
    assert path == tmp_path / "cache" / "tiny.pkl"
    assert path.read_bytes() == PAYLOAD
    assert cached_files(tmp_path) == ["tiny.pkl"]  # no .part, .source or gdown leftovers
    assert len(server.log) == 1
    assert download.fetch(name, progress=False) == path
    assert len(server.log) == 1  # served from the cache without touching the network


@pytest.fixture
def bars(monkeypatch) -> list:
    """Every progress bar drawn while the test runs (tqdm.auto's, which `messages.progress_bar` draws), in order."""
    import tqdm.auto

    drawn = []

    class Recorded(tqdm.auto.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            drawn.append(self)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorded)
    return drawn

def test_the_download_bar_is_toonlibs_and_ends_full(server, bars):
    """The bar was tqdm's fixed-width one, not `messages.progress_bar` (which follows the window, and in a notebook
    spans the output and wraps) as every other bar of toonlib."""
    download.fetch(register(f"{server.base}/ada_tiny.pkl"))
    [bar] = bars
    assert bar.dynamic_ncols and bar.n == bar.total == len(PAYLOAD)
    # the bytes in kB, as `toonlib models` lists the file (it said 752k of a 770 kB file; thirty-eighth session)
    assert f"{len(PAYLOAD) // 1000}k/{len(PAYLOAD) // 1000}k" in str(bar), str(bar)


def test_cache_folder_choice(server, tmp_path, monkeypatch):
    register(f"{server.base}/ada_tiny.pkl")
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "mine"))
    assert download.cache_dir() == tmp_path / "mine"
    assert download.fetch("tiny", progress=False) == tmp_path / "mine" / "tiny.pkl"
    assert download.fetch("tiny", cache_dir=tmp_path / "arg", progress=False) == tmp_path / "arg" / "tiny.pkl"
    # a relative one is said as the folder it is from here (`toonlib models` printed "relcache"); a blank one is unset
    # (' ' made a folder named ' ')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOONLIB_CACHE", "relcache")
    assert download.cache_dir() == tmp_path / "relcache"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TOONLIB_CACHE", " ")
    assert download.cache_dir() == tmp_path / "home" / ".cache" / "toonlib"

    monkeypatch.delenv("TOONLIB_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert download.cache_dir() == tmp_path / "home" / ".cache" / "toonlib"
    (tmp_path / "drive").mkdir()
    monkeypatch.setattr(download, "DRIVE_ROOT", tmp_path / "drive")
    assert download.cache_dir() == tmp_path / "drive" / "toonlib" / "cache"

    # a file where the folder should be: said as such (was "[Errno 17] File exists" from the first download)
    (tmp_path / "notes").write_text("a file")
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "notes"))
    with pytest.raises(ValueError, match=r"\$TOONLIB_CACHE .*notes is a file, not a folder: point it at a folder"):
        download.fetch("tiny", progress=False)
    with pytest.raises(ValueError, match=r"the cache folder \(--cache-dir, cache_dir=\) .*notes is a file"):
        download.fetch("tiny", cache_dir=tmp_path / "notes", progress=False)
    # a folder under that file: was "[Errno 20] Not a directory" from the first download
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "notes" / "models"))
    with pytest.raises(ValueError, match=r"\$TOONLIB_CACHE .*notes/models is under .*notes, which is a file, not a "
                                         "folder: point it at a folder"):
        download.fetch("tiny", progress=False)


def test_resume_within_one_call(server):
    server.cut_responses = 1
    path = download.fetch(register(f"{server.base}/ada_tiny.pkl"), progress=False)
    assert path.read_bytes() == PAYLOAD
    first, second = (headers.get("Range") for _, headers in server.log)
    assert first is None and re.fullmatch(r"bytes=\d+-", second)
    assert 0 < int(second[6:-1]) <= CUT



def test_a_broken_off_bar_is_cleared_and_the_resumed_one_ends_full(server, bars, monkeypatch):
    """A retry drew a second bar and left the first standing at its break-off point (34%), in a terminal."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    server.cut_responses = 1
    download.fetch(register(f"{server.base}/ada_tiny.pkl"), progress=True)
    assert [(bar.leave, bar.n == bar.total == len(PAYLOAD)) for bar in bars] == [(False, False), (True, True)]


def test_a_broken_off_bar_in_a_log_ends_its_line(server, bars, capsys):
    """Written to a file (`2> log`), where '\r' erases nothing, the cleared bar's text stayed and the next line
    began after it ("e4e_ffhq_encode.pt: 0.00B [00:00, ?B/s]   toonlib toonify: error: ..."): it keeps its line."""
    server.cut_responses = 1
    download.fetch(register(f"{server.base}/ada_tiny.pkl"), progress=True)
    assert [bar.leave for bar in bars] == [True, True]
    lines = capsys.readouterr().err.split("\n")
    # each bar's own line, and between them the line that says the break and that it goes on (forty-fifth session)
    assert len(lines) == 4 and lines[-1] == "" and "100%" in lines[2].split("\r")[-1], lines
    said = lines[1]
    assert said.startswith("toonlib: downloading tiny.pkl: ") and "going on from where it stopped" in said, lines

@pytest.mark.parametrize("ranges", [False, True])
def test_a_server_that_dies_mid_file_leaves_a_partial_download_only_where_it_resumes(server, tmp_path, ranges):
    """A server that dies mid-file: every try breaks off at the same byte. Where the server sends whole files only
    (no Range support: each try started over), the partial download is of no use, the next fetch starting over: it
    is deleted, and the advice says the download starts over (its bytes, maybe GBs of a model, stayed in the cache;
    forty-second session's audit). Where it sends the rest of a file, the bytes are kept and the next fetch resumes
    them."""
    name = register(f"{server.base}/ada_tiny.pkl")
    server.dies, server.ranges = True, ranges
    with pytest.raises(download.DownloadError, match="broke off") as info:
        download.fetch(name, progress=False)
    text = str(info.value)
    assert "no internet" not in text
    # in plain words: urllib3's were said twice over, "(('Connection broken: IncompleteRead(300000 bytes read, ...)"
    cut = (f"the download broke off (the connection closed {(len(PAYLOAD) - CUT) / 1e6:.1f} MB before the end of the "
           "file)")
    assert f"{server.base}/ada_tiny.pkl: {cut}" in text, text
    assert len(server.log) == 4  # the first try, then three that got no further than it
    assert not (tmp_path / "cache" / "tiny.pkl").exists()
    if ranges:
        kept = (tmp_path / "cache" / "tiny.pkl.part").stat().st_size
        assert 0 < kept <= CUT  # the whole chunks of the first try
        assert (f"  - run the same command again: the download resumes where it stopped ({kept / 1e6:.1f} MB of "
                f"{len(PAYLOAD) / 1e6:.1f} MB are kept)") in text.splitlines(), text
        assert cached_files(tmp_path) == ["tiny.pkl.part", "tiny.pkl.part.source"]
    else:  # the server sent the whole file again when asked for its rest: no resume is promised, no bytes kept
        assert ("  - run the same command again: the download starts over (this server sends only whole files, not "
                "the rest of one)") in text.splitlines() and "kept" not in text, text
        assert cached_files(tmp_path) == []  # no tiny.pkl.part (262 kB), no tiny.pkl.part.source

    server.dies, server.ranges = False, True
    path = download.fetch(name, progress=False)
    assert server.log[-1][1].get("Range") == (f"bytes={kept}-" if ranges else None)
    assert path.read_bytes() == PAYLOAD
    assert cached_files(tmp_path) == ["tiny.pkl"]


@pytest.mark.parametrize("accept_ranges", [True, False])
def test_a_server_that_dies_mid_file_is_no_lost_connection_and_the_kept_bytes_are_said(server, monkeypatch,
                                                                                       accept_ranges):
    """The server went away after sending part of the file (its next connections refused): "no internet connection
    (no source could be reached)", and not a word of the bytes kept, which the same command resumes. Where the server
    had not said that it sends the rest of a file (no Accept-Ranges: bytes), that is said too."""
    server.accept_ranges = accept_ranges
    name = register(f"{server.base}/ada_tiny.pkl")
    with socket.socket() as closed:  # a port nothing listens on: refused, as a dead server's
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/ada_tiny.pkl"
    attempt, tries = download._http_attempt, []

    def then_dead(url: str, part, progress: bool) -> None:
        tries.append(url)
        attempt(url if len(tries) == 1 else dead, part, progress)

    server.cut_responses = 1
    monkeypatch.setattr(download, "_http_attempt", then_dead)
    with pytest.raises(download.DownloadError) as info:
        download.fetch(name, progress=False)
    text = str(info.value)
    assert "every source failed" in text and "no internet" not in text and not info.value.offline, text
    unknown = "" if accept_ranges else "; the server has not said that it sends the rest of a file"
    assert (f"  - run the same command again: the download resumes where it stopped ({CUT / 1e6:.1f} MB of "
            f"{len(PAYLOAD) / 1e6:.1f} MB are kept{unknown})") in text.splitlines(), text


@pytest.mark.parametrize("resumes", [True, None, False])
def test_complete_part_is_checked_not_downloaded_again(server, tmp_path, monkeypatch, capsys, resumes):
    """A download stopped while its whole file was being checked (Ctrl-C, a kernel restart) asked the server for the
    rest: offline it failed, "0.8 MB of 0.8 MB are kept ... resumes" (thirty-eighth session's audit). A partial
    download of its recorded length is checked and installed without a request, as a Drive file's is; one whose
    length is not known asks for the rest, answered 416 where there is none."""
    name = register(f"{server.base}/ada_tiny.pkl")
    check = download._check

    def interrupted(part, *args) -> None:  # the server as recorded: one that sends whole files only deleted them
        download._write_marker(part, {**download._read_marker(part), "resumes": resumes})
        raise KeyboardInterrupt  # e.g. the user stops the notebook while the file is being checked

    monkeypatch.setattr(download, "_check", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download.fetch(name)
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"toonlib: all {len(PAYLOAD) / 1e6:.1f} MB of tiny.pkl kept: fetching it again checks them, downloading "
        "nothing")
    monkeypatch.setattr(download, "_check", check)
    requests = len(server.log)
    server.files.clear()  # offline, or the file gone from the server: no matter
    path = download.fetch(name, progress=False)
    assert len(server.log) == requests and path.read_bytes() == PAYLOAD
    assert cached_files(tmp_path) == ["tiny.pkl"]
    path.rename(tmp_path / "cache" / "tiny.pkl.part")  # a partial download of no known length: its rest asked for
    marker = tmp_path / "cache" / "tiny.pkl.part.source"
    marker.write_text(json.dumps({"source": f"{server.base}/ada_tiny.pkl", "size": None}))
    server.files["/ada_tiny.pkl"] = PAYLOAD
    path = download.fetch(name, progress=False)
    assert server.log[-1][1].get("Range") == f"bytes={len(PAYLOAD)}-"  # answered 416: nothing left to fetch
    assert path.read_bytes() == PAYLOAD and cached_files(tmp_path) == ["tiny.pkl"]


def test_part_from_another_source_is_not_resumed(server, tmp_path):
    server.files["/other.pkl"] = PAYLOAD
    break_off(server, register(f"{server.base}/other.pkl"))  # kept, for other.pkl to resume
    path = download.fetch(register(f"{server.base}/ada_tiny.pkl"), progress=False)
    request_path, headers = server.log[-1]
    assert request_path == "/ada_tiny.pkl" and "Range" not in headers
    assert path.read_bytes() == PAYLOAD


def break_off(server, name: str, *, whole_files: bool = False) -> int:
    """A download of `name` from a server that dies mid-file (it honours Range, each resume getting no further): its
    part stays; its size. `whole_files`: its record then says that its server sends whole files only, as a download
    killed (kill -9) while such a server sent the file leaves it (a failure or Ctrl-C deletes such a part)."""
    server.dies = True
    with pytest.raises(download.DownloadError, match="broke off"):
        download.fetch(name, progress=False)
    server.dies = False
    part = download._partial_download(download.local_path(name))
    if whole_files:
        download._write_marker(part, {**download._read_marker(part), "resumes": False})
    return part.stat().st_size


def test_a_server_found_to_send_whole_files_is_said_so_until_it_resumes(server, tmp_path):
    """A server that sent the same file whole when asked for its rest is recorded so (the advice says the download
    starts over; a kill leaves such a partial download, a failure deletes it). Once it resumes after all (a 206), it
    is recorded as one that resumes: "starts over" was said of a download resuming."""
    name = register(f"{server.base}/ada_tiny.pkl")
    kept = break_off(server, name, whole_files=True)  # recorded: a Range asked for, the whole file sent (same ETag)
    part = tmp_path / "cache" / "tiny.pkl.part"
    assert download._read_marker(part)["resumes"] is False
    server.hold = threading.Event()  # now it resumes: the rest's first `CUT` bytes, then it waits
    fetching = threading.Thread(target=download.fetch, args=(name,), kwargs={"progress": False})
    fetching.start()
    try:
        assert server.streaming.wait(timeout=300)
        deadline = time.monotonic() + 300
        while part.stat().st_size <= kept:  # the rest's first bytes reach the disk (the record is written first)
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert server.log[-1][1].get("Range") == f"bytes={kept}-"
        assert download._read_marker(part)["resumes"] is True  # no longer "this server sends only whole files"
    finally:
        server.hold.set()
        fetching.join(timeout=300)
    assert download.local_path(name).read_bytes() == PAYLOAD


@pytest.mark.parametrize("etags", [True, False])
def test_a_file_changed_on_the_server_is_not_resumed_into_a_mix(server, tmp_path, etags):
    """The part of the old file was completed with the rest of the new one: the weights of two versions in one file
    (a torch file of zeros then ones passed the checks). With an ETag, If-Range gets the new file whole; without,
    its other length gives it away."""
    server.etags = etags
    old, new = (torch_bytes({"conv.weight": torch.full((100_000,), value)}) for value in (0.0, 1.0))
    server.files["/w.pth"] = old
    name = register(f"{server.base}/w.pth", kind="fid", format="torch", resolution=None)
    kept = break_off(server, name)
    server.files["/w.pth"] = new if etags else new + b"\0" * 7  # the same length, or another one
    path = download.fetch(name, progress=False)
    assert path.read_bytes() == server.files["/w.pth"]
    if etags:  # one request: If-Range got the whole new file
        assert server.log[-1][1].get("Range") == f"bytes={kept}-" and server.log[-1][1].get("If-Range")
    else:  # a 206 of the new file's other length, then the whole file
        (_, resume), (_, again) = server.log[-2:]
        assert resume.get("Range") == f"bytes={kept}-" and "Range" not in again
    assert cached_files(tmp_path) == ["tiny.pkl"]


def test_ctrl_c_keeps_no_bytes_of_a_server_that_sends_whole_files_only(server, tmp_path, monkeypatch, capsys):
    """Ctrl-C said "0.3 MB kept: fetching it again resumes the download" of a server recorded as sending whole files
    only: the next fetch downloaded it whole again, the kept bytes of no use (audit)."""
    name = register(f"{server.base}/ada_tiny.pkl")
    break_off(server, name, whole_files=True)  # recorded: a Range asked for, the whole file sent
    part = tmp_path / "cache" / "tiny.pkl.part"
    assert download._read_marker(part)["resumes"] is False
    capsys.readouterr()

    def interrupted(*args) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_http_attempt", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download.fetch(name)
    assert "kept" not in capsys.readouterr().err and cached_files(tmp_path) == []


def test_ctrl_c_while_the_whole_new_file_starts_leaves_no_part_to_resume(server, tmp_path, monkeypatch):
    """The server's file changed since the part began: the part's record took the new file's ETag before the old
    bytes were dropped, and a Ctrl-C between the two had the next run resume the old start with the new file's rest
    (zeros then ones: a file that passed the checks)."""
    old, new = (torch_bytes({"conv.weight": torch.full((100_000,), value)}) for value in (0.0, 1.0))
    server.files["/w.pth"] = old
    name = register(f"{server.base}/w.pth", kind="fid", format="torch", resolution=None)
    break_off(server, name)
    server.files["/w.pth"] = new  # the same length, another ETag: If-Range gets it whole
    write_body = download._write_body

    def interrupted(*args) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_write_body", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download.fetch(name, progress=False)
    monkeypatch.setattr(download, "_write_body", write_body)
    assert download.fetch(name, progress=False).read_bytes() == new
    assert cached_files(tmp_path) == ["tiny.pkl"]


def test_ctrl_c_says_that_the_bytes_received_are_kept_and_resumed(server, tmp_path, monkeypatch, capsys):
    """`toonlib fetch` stopped with Ctrl-C said "interrupted" alone: that the partial download is kept and that the
    same command resumes it was not said. With nothing received, nothing is said."""
    name = register(f"{server.base}/ada_tiny.pkl")
    kept = break_off(server, name)
    capsys.readouterr()

    def interrupted(*args) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_write_body", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download.fetch(name)
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"toonlib: {download._megabytes(kept)} of tiny.pkl kept: fetching it again resumes the download")
    from toonlib.files import file_lock

    def stopped_waiting(final, on_wait, waited_for):
        def wait(lock_file):
            raise KeyboardInterrupt  # Ctrl-C while another process downloads it: those bytes are not this one's
        return wait

    monkeypatch.setattr(download, "_waiting_message", stopped_waiting)
    with file_lock(tmp_path / "cache" / "tiny.pkl"), pytest.raises(KeyboardInterrupt):
        download.fetch(name)
    assert "kept" not in capsys.readouterr().err
    (tmp_path / "cache" / "tiny.pkl.part").unlink()
    (tmp_path / "cache" / "tiny.pkl.part.source").unlink()
    with pytest.raises(KeyboardInterrupt):
        download.fetch(name)
    assert "kept" not in capsys.readouterr().err


def test_ctrl_c_before_the_first_byte_leaves_nothing_behind(server, tmp_path, monkeypatch):
    """Ctrl-C while the download waited (here for a retry after a 503) left tiny.pkl.part.source in the cache."""
    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(download.time, "sleep", interrupted)
    server.fail_first = 1
    with pytest.raises(KeyboardInterrupt):
        download.fetch(register(f"{server.base}/ada_tiny.pkl"), progress=False)
    assert cached_files(tmp_path) == []


def test_a_folder_where_the_file_goes_is_named_before_any_download(server, tmp_path):
    """It downloaded the file every time, then said "CACHE/tiny.pkl.part: is a directory", naming the wrong entry."""
    name = register(f"{server.base}/ada_tiny.pkl")
    (tmp_path / "cache" / "tiny.pkl").mkdir(parents=True)
    with pytest.raises(IsADirectoryError, match=rf"^cannot download 'tiny': {re.escape(str(tmp_path / 'cache'))}/"
                                                r"tiny\.pkl is a folder, where the file goes; move it away \(or "
                                                r"delete it\) and try again$"):
        download.fetch(name, progress=False)
    assert server.log == []


def test_a_web_page_that_starts_with_a_byte_order_mark_is_one(server, tmp_path):
    """A page saved with a UTF-8 byte-order mark was "not a readable checkpoint: ... the file starts with
    b'\\xef\\xbb\\xbf<!DOCTYPE htm'"."""
    server.files["/bom.pkl"] = Reply(b"\xef\xbb\xbf<!DOCTYPE html><title>Not found</title>", headers=HTML)
    with pytest.raises(download.DownloadError, match="sent a web page instead of the file"):
        download.fetch(f"{server.base}/bom.pkl", progress=False)
    assert cached_files(tmp_path) == []


def test_a_web_page_in_reply_to_a_resume_keeps_the_partial_download(server, tmp_path):
    """A captive portal or an error page answering the resume replaced hundreds of MB already downloaded."""
    name = register(f"{server.base}/ada_tiny.pkl")
    kept = break_off(server, name)
    server.files["/ada_tiny.pkl"] = Reply(SIGN_IN_PAGE, headers=HTML)
    with pytest.raises(download.DownloadError, match="sent a web page instead of the file"):
        download.fetch(name, progress=False)
    assert (tmp_path / "cache" / "tiny.pkl.part").stat().st_size == kept
    server.files["/ada_tiny.pkl"] = PAYLOAD
    assert download.fetch(name, progress=False).read_bytes() == PAYLOAD
    assert server.log[-1][1].get("Range") == f"bytes={kept}-"


def test_a_download_that_keeps_breaking_off_goes_on_while_each_try_gets_further(server, tmp_path, capsys):
    """Every try resumed, got 300 KB further and broke off again, and the third one failed the whole download ("the
    download broke off"): a flaky connection needed as many commands as the file had breaks. Each break is said as
    the next try starts (the bar restarted unexplained, and a later "(2 of 3)" read one short; forty-fifth session's
    audit)."""
    big = torch_bytes({"conv.weight": torch.ones(600_000)})  # 2.4 MB: 8 tries of `CUT` bytes
    server.files["/w.pth"] = big
    server.cut_responses = 99
    path = download.fetch(register(f"{server.base}/w.pth", kind="fid", format="torch", resolution=None),
                          progress=False)
    assert path.read_bytes() == big and len(server.log) > 1 + len(download.RETRY_DELAYS)
    assert cached_files(tmp_path) == ["tiny.pkl"]
    said = capsys.readouterr().err.splitlines()
    assert len(said) == len(server.log) - 1, said  # one line per try after the first
    assert all(line.startswith("toonlib: downloading tiny.pkl: ") and "going on from where it stopped" in line
               for line in said[1:]), said


def test_retries_server_errors(server):
    server.fail_first = 2
    path = download.fetch(register(f"{server.base}/ada_tiny.pkl"), progress=False)
    assert path.read_bytes() == PAYLOAD
    assert len(server.log) == 3


def test_a_429_is_retried_after_the_wait_it_asks_for(server, monkeypatch):
    sleeps = []
    monkeypatch.setattr(download.time, "sleep", sleeps.append)
    server.fail_first, server.failure = 1, Reply(b"slow down", status=429, headers={"Retry-After": "7"})
    assert download.fetch(register(f"{server.base}/ada_tiny.pkl"), progress=False).read_bytes() == PAYLOAD
    assert sleeps == [7.0] and len(server.log) == 2


def test_a_429_that_asks_for_a_long_wait_fails_at_once_saying_so(server, monkeypatch):
    sleeps = []
    monkeypatch.setattr(download.time, "sleep", sleeps.append)
    server.fail_first, server.failure = 1, Reply(b"slow down", status=429, headers={"Retry-After": "3600"})
    url = f"{server.base}/ada_tiny.pkl"
    with pytest.raises(download.DownloadError) as info:
        download.fetch(register(url), progress=False)
    assert f"{url}: HTTP 429 Too Many Requests: the server asks to wait 60 min; try again then" in str(info.value)
    assert sleeps == [] and len(server.log) == 1



def test_a_429_without_retry_after_is_retried_then_said_to_wait(server, monkeypatch):
    """A 429 that names no wait failed at once as a bare "HTTP 429 Too Many Requests"."""
    sleeps = []
    monkeypatch.setattr(download.time, "sleep", sleeps.append)
    server.fail_first, server.failure = 1, Reply(b"slow down", status=429)
    assert download.fetch(register(f"{server.base}/ada_tiny.pkl"), progress=False).read_bytes() == PAYLOAD
    assert sleeps == [download.RETRY_DELAYS[0]]
    server.fail_first, sleeps[:] = 99, []
    url = f"{server.base}/ffhq_tiny.pkl"
    with pytest.raises(download.DownloadError) as info:
        download.fetch(register(url, filename="other.pkl"), progress=False)
    assert (f"{url}: HTTP 429 Too Many Requests: the server limits how often it is asked; try again in a few "
            "minutes") in str(info.value)
    assert sleeps == list(download.RETRY_DELAYS)

def test_a_proxy_that_cannot_be_reached_is_named_not_retried_and_no_proxy_bypasses_it(server, monkeypatch):
    """It said "the download broke off" after three tries (~10 s a source): the proxy is what failed."""
    for variable in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    proxy = closed_port_url().rsplit("/", 1)[0]
    monkeypatch.setenv("http_proxy", proxy)
    sleeps = []
    monkeypatch.setattr(download.time, "sleep", sleeps.append)
    name = register(f"{server.base}/ada_tiny.pkl")
    with pytest.raises(download.DownloadError) as info:
        download.fetch(name, progress=False)
    assert f"the proxy {proxy} refused or could not be reached ([Errno 111] Connection refused): check " \
           "http_proxy / HTTP_PROXY, or unset them, or list the host in no_proxy" in str(info.value)
    assert sleeps == [] and server.log == [] and not info.value.offline
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert download.fetch(name, progress=False).read_bytes() == PAYLOAD


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_proxy_that_asks_for_a_login_says_where_to_give_it(scheme, monkeypatch):
    """A proxy's 407 said "HTTP 407 Proxy Authentication Required" alone (http), or quoted 200 characters of urllib3's
    wrappers, cut off before the 407 (https: "HTTPSConnectionPool(host=...): Max retries exceeded with url: ...")."""
    for variable in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                     "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    with serve({}) as proxy:
        proxy.fail_first, proxy.failure = 99, Reply(b"", status=407, headers={"Proxy-Authenticate": 'Basic realm="x"'})
        monkeypatch.setenv(f"{scheme}_proxy", proxy.base)
        with pytest.raises(download.DownloadError) as info:
            download.fetch(register(f"{scheme}://toonlib.invalid/tiny.pkl"), progress=False)
    message = str(info.value)
    assert "407 Proxy Authentication Required" in message, message
    assert (f"give the proxy's user name and password in {scheme}_proxy / {scheme.upper()}_PROXY: "
            "http://USER:PASSWORD@HOST:PORT") in message, message
    assert "Max retries" not in message and len(proxy.log) == 1  # asked once: a login does not come by waiting


def test_a_redirect_loop_is_a_failed_source_and_the_other_names_are_fetched(server, tmp_path, capsys):
    """requests' other errors are OSErrors: "toonlib fetch: error: Exceeded 30 redirects." named neither the model
    nor the URL, and stopped the names after it."""
    server.files["/loop"] = Reply(b"", status=302, headers={"Location": "/loop"})
    loop = register(f"{server.base}/loop")
    models.MODELS["good"] = dataclasses.replace(models.MODELS[loop], name="good", filename="good.pkl",
                                                sources=(f"{server.base}/ada_tiny.pkl",))
    assert main(["fetch", loop, "good"]) == 2
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "cache" / "good.pkl")
    assert f"could not download 'tiny': every source failed.\nSources tried:\n  1. {server.base}/loop: Exceeded 30 " \
           "redirects." in err
    assert cached_files(tmp_path) == ["good.pkl"]


def test_quota_page_from_a_direct_url(server, tmp_path):
    server.files["/quota"] = QUOTA_PAGE
    with pytest.raises(download.DownloadError) as info:
        download.fetch(register(f"{server.base}/quota"), progress=False)
    message = str(info.value)
    assert "Too many users have viewed or downloaded this file recently" in message
    assert "your own Google Drive" in message
    assert str(tmp_path / "cache" / "tiny.pkl") in message  # where to put a file downloaded by hand
    assert cached_files(tmp_path) == []


def test_mirror_fallback(server):
    path = download.fetch(register(f"{server.base}/missing.pkl", f"{server.base}/ada_tiny.pkl"), progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.paths() == ["/missing.pkl", "/ada_tiny.pkl"]  # a 404 is not retried


def test_a_file_the_server_does_not_have_is_not_sent_to_a_browser(server, tmp_path):
    """A URL that is 404 was told "download it in a browser from a link above and save it as ...", which gets the same
    404: the address is to be checked (a registry name's sources: reported), or a local file passed."""
    with pytest.raises(download.DownloadError) as info:
        download.fetch(f"{server.base}/missing.pkl", progress=False, local_option="--toon")
    message = str(info.value)
    assert message.endswith("What you can do:\n  - check the address: the server has no file there\n  - or, with the "
                            "file on this machine, pass its path: --toon PATH"), message
    assert "HTTP 404" in message and "in a browser" not in message
    with pytest.raises(download.DownloadError) as info:
        download.fetch(register(f"{server.base}/missing.pkl"), progress=False)
    assert "  - report it to toonlib's maintainers: the registry's sources of 'tiny' have no file" in str(info.value)
    # one source missing and another failing otherwise: a browser may still get the file
    with pytest.raises(download.DownloadError, match="in a browser from a link above"):
        download.fetch(register(f"{server.base}/missing.pkl", "http://127.0.0.1:9/none.pkl"), progress=False)


def test_a_mirror_that_fails_at_once_leaves_the_partial_download_of_the_one_before(server, tmp_path):
    """With two mirrors (ffhq-1024: NVIDIA's CDN, then NGC), the first one's partial download was deleted when the
    second was tried, which failed before sending a byte: the next run, the first mirror back, started from 0."""
    name = register(f"{server.base}/ada_tiny.pkl", f"{server.base}/missing.pkl")
    kept = break_off(server, name)
    assert server.paths()[-1] == "/missing.pkl"  # a 404: nothing sent
    assert cached_files(tmp_path) == ["tiny.pkl.part", "tiny.pkl.part.source"]
    assert download.fetch(name, progress=False).read_bytes() == PAYLOAD
    assert server.log[-1][1].get("Range") == f"bytes={kept}-"
    assert cached_files(tmp_path) == ["tiny.pkl"]


def test_a_drive_partial_download_stays_until_another_source_sends_the_file(drive, server, tmp_path, monkeypatch):
    """A Drive file's partial download is kept by a mirror that fails at once, and goes when one sends the file."""
    monkeypatch.setattr(download, "RETRY_DELAYS", ())  # no retry: gdown's would resume the broken-off download
    drive.files["/uc?id=big"] = Reply(PAYLOAD, headers=FILE, ranges=True)
    drive.cut, drive.cut_responses = DRIVE_CUT, 1
    name = register("gdrive:big", f"{server.base}/missing.pkl")
    with pytest.raises(download.DownloadError, match="HTTP 404"):
        download.fetch(name, progress=False)
    assert cached_files(tmp_path) == ["tiny.pkl.part.gdown", "tiny.pkl.part.source"]
    drive.files["/uc?id=big"] = Reply(SIGN_IN_PAGE, headers=HTML)  # Drive refuses at once: the mirror sends it
    assert download.fetch(register("gdrive:big", f"{server.base}/ada_tiny.pkl"), progress=False).read_bytes() == \
        PAYLOAD
    assert cached_files(tmp_path) == ["tiny.pkl"]


def test_sha256(server, tmp_path):
    url = f"{server.base}/ada_tiny.pkl"
    register(url, sha256="0" * 64)
    with pytest.raises(download.DownloadError, match="sha256 mismatch") as info:
        download.fetch("tiny", progress=False)
    assert url in str(info.value)
    assert cached_files(tmp_path) == []

    register(url, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    stale = tmp_path / "cache" / "tiny.pkl"
    stale.write_bytes(b"not the model")  # a cached file that fails the checksum is replaced
    assert download.fetch("tiny", progress=False).read_bytes() == PAYLOAD
    assert len(server.log) == 2


def test_wrong_size(server, tmp_path):
    with pytest.raises(download.DownloadError, match="wrong size"):
        download.fetch(register(f"{server.base}/ada_tiny.pkl", size=len(PAYLOAD) + 1), progress=False)
    assert cached_files(tmp_path) == []


def test_a_readable_file_that_is_not_the_registrys_is_refused_and_the_next_mirror_tried(server, tmp_path):
    """Only readability was checked: a 32 px generator where the registry says 1024 px (a file changed upstream, a
    mirror that serves another model) was cached under the registry's name."""
    server.files["/other.pkl"] = PAYLOAD
    with pytest.raises(download.DownloadError) as info:
        download.fetch(register(f"{server.base}/ada_tiny.pkl", resolution=1024), progress=False)
    message = str(info.value)
    assert (f"1. {server.base}/ada_tiny.pkl: not the file the registry describes: it holds a 32x32 generator in nvidia "
            "format, where 'tiny' is a 1024x1024 generator in nvidia format (the file there has changed, or it is "
            "another model)") in message, message
    assert "report it to toonlib's maintainers: a source sends another file than the registry's 'tiny'" in message
    assert cached_files(tmp_path) == []  # nothing under the registry's name, no .part
    with pytest.raises(download.DownloadError, match="where 'tiny' is a 32x32 generator in rosinality format"):
        download.fetch(register(f"{server.base}/ada_tiny.pkl", format="rosinality"), progress=False)

    server.files["/right.pt"] = (FIXTURES / "rosinality_tiny.pt").read_bytes()  # the next mirror's is the entry's
    name = register(f"{server.base}/ada_tiny.pkl", f"{server.base}/right.pt", format="rosinality", filename="r.pt")
    assert download.fetch(name, progress=False).read_bytes() == server.files["/right.pt"]
    assert cached_files(tmp_path) == ["r.pt"]


def test_an_encoder_that_is_not_the_registrys_is_refused(server, tmp_path):
    from conftest import FIXTURES

    rosinality = torch.load(FIXTURES / "rosinality_tiny.pt", weights_only=True)  # a 32 px generator: the decoder
    decoder = {f"decoder.{key}": tensor for key, tensor in rosinality["g_ema"].items()}
    server.files["/e4e.pt"] = torch_bytes({"state_dict": {"encoder.body.0.weight": torch.ones(1), **decoder},
                                           "opts": {"encoder_type": "Encoder4Editing"}})
    name = register(f"{server.base}/e4e.pt", kind="encoder", format="psp", resolution=32, filename="e.pt")
    with pytest.raises(download.DownloadError, match="it holds an e4e encoder with a 32x32 decoder, where 'tiny' is a "
                                                     "psp encoder with a 32x32 decoder"):
        download.fetch(name, progress=False)
    name = register(f"{server.base}/e4e.pt", kind="encoder", format="e4e", resolution=1024, filename="e.pt")
    with pytest.raises(download.DownloadError, match="where 'tiny' is an e4e encoder with a 1024x1024 decoder"):
        download.fetch(name, progress=False)
    assert cached_files(tmp_path) == []
    name = register(f"{server.base}/e4e.pt", kind="encoder", format="e4e", resolution=32, filename="e.pt")
    assert download.fetch(name, progress=False) == tmp_path / "cache" / "e.pt"


def test_a_refused_connection_is_not_said_to_be_no_internet(tmp_path):
    """A port nothing listens on (a local server that is down, a wrong port) was "no internet connection": the host
    answered. Offline is a host name that does not resolve (`test_unknown_host_is_not_retried`)."""
    url = closed_port_url()
    with pytest.raises(download.DownloadError) as info:
        download.fetch(register(url), progress=False)
    message = str(info.value)
    assert message.startswith("could not download 'tiny': the connection was refused (no source could be reached).")
    assert re.search(rf"{re.escape(url)}: could not connect \(\[Errno \d+\] Connection refused\)", message), message
    assert "no internet" not in message and info.value.reason == "the connection was refused"
    assert info.value.offline  # nothing was reached: a command names the other models it lacks, as offline
    assert cached_files(tmp_path) == []


def test_drive_download_through_gdowns_confirmation_page(drive, tmp_path):
    """gdown's own Drive logic: the virus-scan page's form leads to drive.usercontent.google.com."""
    drive.files["/uc?id=big"] = Reply(CONFIRM_PAGE, headers=HTML)
    drive.files["/download?id=big&export=download&confirm=t"] = Reply(PAYLOAD, headers=FILE)
    path = download.fetch(register("gdrive:big"), progress=False)
    assert path.read_bytes() == PAYLOAD
    assert [(p, h["Host"]) for p, h in drive.log] == [("/uc?id=big", "drive.google.com"),
                                                       ("/download?id=big&export=download&confirm=t",
                                                        "drive.usercontent.google.com")]
    assert cached_files(tmp_path) == ["tiny.pkl"]  # gdown's temporary folder is gone
    assert path.stat().st_mode & 0o777 == 0o666 & ~current_umask()  # not gdown's private temp-file mode


def test_a_drive_download_shows_toonlibs_bar(drive, bars):
    """gdown drew its own bar, redrawn ten times a second: ~300 KB of bars in a log for one model."""
    drive.files["/uc?id=big"] = Reply(PAYLOAD, headers=FILE)
    download.fetch(register("gdrive:big"))
    [bar] = bars
    assert bar.dynamic_ncols and bar.n == bar.total == len(PAYLOAD)


def test_a_drive_download_bar_in_a_notebook_fills_as_the_bytes_come(drive, monkeypatch):
    """In Jupyter and Colab a Drive download's bar (its size known only once the file comes) was full from its first
    byte: tqdm's widget kept the end and the 'info' look of a bar without a total, "10.0M/380M" beside a full bar
    (thirty-ninth session's audit)."""
    import tqdm.asyncio
    import tqdm.auto
    import tqdm.notebook

    class AutoBar(tqdm.notebook.tqdm, tqdm.asyncio.tqdm):  # what tqdm.auto defines in a notebook's kernel
        pass

    AutoBar.__module__ = "tqdm.auto"
    monkeypatch.setattr(tqdm.auto, "tqdm", AutoBar)
    shown, advance = [], download._advance

    def drawn(bar, done: int, total: int | None) -> None:
        advance(bar, done, total)
        bar.refresh()  # as tqdm draws it (every 0.1 s)
        widget = bar.container.children[1]
        shown.append((widget.value, widget.max, widget.bar_style))

    monkeypatch.setattr(download, "_advance", drawn)
    drive.files["/uc?id=big"] = Reply(PAYLOAD, headers=FILE)
    download.fetch(register("gdrive:big"))
    assert shown and all(end == len(PAYLOAD) and style != "info" for _, end, style in shown), shown


def test_a_failed_drive_download_clears_its_bar(drive, bars, monkeypatch):
    """Its bar stayed ("tiny.pkl: 0.00B [00:00, ?B/s]") on the line the error began, as a direct URL's does not; a
    Drive that sent no file (a sign-in page) drew that empty bar, twice in a log."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal, where a bar is erased
    drive.files["/uc?id=secret"] = Reply(SIGN_IN_PAGE, headers=HTML)
    with pytest.raises(download.DownloadError):
        download.fetch(register("gdrive:secret"))
    assert bars == []
    drive.files["/uc?id=big"] = Reply(PAYLOAD, headers=FILE, ranges=True)
    drive.cut, drive.cut_responses = DRIVE_CUT, 1  # the file starts coming, then the connection drops
    monkeypatch.setattr(download, "RETRY_DELAYS", ())  # and is not tried again
    with pytest.raises(download.DownloadError, match="the download broke off"):
        download.fetch(register("gdrive:big"))
    [bar] = bars
    assert not bar.leave and 0 < bar.n <= DRIVE_CUT


def test_a_stalled_drive_download_times_out(drive, tmp_path, monkeypatch):
    """gdown got no timeout: a Drive download that stalled waited forever."""
    monkeypatch.setattr(download, "TIMEOUT", (15.0, 0.5))
    monkeypatch.setattr(download, "RETRY_DELAYS", ())  # the stall's error, not gdown's resumed try
    drive.files["/uc?id=big"] = Reply(PAYLOAD, headers=FILE, ranges=True)
    drive.hold, drive.cut = threading.Event(), DRIVE_CUT  # sends part of the file, then nothing
    # it said "the download broke off (HTTPSConnectionPool(...): Read timed out.)"
    with pytest.raises(download.DownloadError, match=r"file/d/big/view: the server stopped sending: nothing came for "
                                                     r"0\.5 s\n") as info:
        download.fetch(register("gdrive:big"), progress=False)
    kept = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.name != ".locks")
    assert kept == ["tiny.pkl.part.gdown", "tiny.pkl.part.source"], kept
    assert "run the same command again: the download resumes" in str(info.value)


def test_a_stalled_direct_download_says_the_server_stopped_sending(server, monkeypatch):
    monkeypatch.setattr(download, "TIMEOUT", (15.0, 0.5))
    server.hold, server.cut = threading.Event(), 0  # the server sends its reply's headers, then nothing
    try:
        with pytest.raises(download.DownloadError, match=r"ada_tiny.pkl: the server stopped sending: nothing came for "
                                                         r"0\.5 s\n"):
            download.fetch(register(f"{server.base}/ada_tiny.pkl"), progress=False)
    finally:
        server.hold.set()


def test_a_stalled_server_is_said_after_the_first_timeout_with_the_retry_that_follows(server, monkeypatch, capsys):
    """A server that sent its headers, then nothing, left the bar standing still for the timeout times each try (60 s
    x 3) before the first word: each retry is said as it starts, the first after the first timeout."""
    monkeypatch.setattr(download, "TIMEOUT", (15.0, 0.5))
    said = []  # (requests so far, what stderr held) as each wait before a retry starts
    monkeypatch.setattr(download.time, "sleep", lambda seconds: said.append((len(server.log), capsys.readouterr().err)))
    server.hold, server.cut = threading.Event(), 0
    try:
        with pytest.raises(download.DownloadError, match="nothing came for 0.5 s"):
            download.fetch(register(f"{server.base}/ada_tiny.pkl"))
    finally:
        server.hold.set()
    retries = [(asked, re.findall(r"toonlib: downloading tiny.pkl: .*", err)) for asked, err in said]
    assert retries == [(n, [f"toonlib: downloading tiny.pkl: the server stopped sending: nothing came for 0.5 s; "
                            f"trying again ({n + 1} of 3)"]) for n in (1, 2)], retries


def test_a_server_that_stalls_mid_file_is_said_and_resumed(server, monkeypatch, capsys):
    """It stalls after some of the file, each time: each try got further, so it goes on at once, and says why the bar
    stood still."""
    monkeypatch.setattr(download, "TIMEOUT", (15.0, 0.5))
    server.hold = threading.Event()  # each reply: `CUT` bytes, then nothing
    try:
        assert download.fetch(register(f"{server.base}/ada_tiny.pkl")).read_bytes() == PAYLOAD
    finally:
        server.hold.set()
    said = re.findall(r"toonlib: downloading tiny.pkl: .*", capsys.readouterr().err)
    assert said == ["toonlib: downloading tiny.pkl: the server stopped sending: nothing came for 0.5 s; going on from "
                    "where it stopped"] * 2, said
    first, *resumes = [asked.get("Range") for _, asked in server.log]
    starts = [int(re.fullmatch(r"bytes=(\d+)-", asked)[1]) for asked in resumes]
    assert first is None and len(starts) == 2 and 0 < starts[0] < starts[1], starts  # a stalled read's bytes are lost


def test_a_first_stall_promises_no_resume_the_server_has_not_offered(server, monkeypatch, capsys):
    """A stall in a download's first try said "going on from where it stopped" of a server that had not said it sends
    the rest of a file (no Accept-Ranges: bytes); this one then sent the whole file, and the next stall said so."""
    monkeypatch.setattr(download, "TIMEOUT", (15.0, 0.5))
    server.hold, server.ranges = threading.Event(), False  # each reply: `CUT` bytes of the whole file, then nothing
    server.cut_responses = 0
    try:
        with pytest.raises(download.DownloadError):
            download.fetch(register(f"{server.base}/ada_tiny.pkl"))
    finally:
        server.hold.set()
    said = re.findall(r"toonlib: downloading tiny.pkl: the server stopped sending: nothing came for 0\.5 s; (.*)",
                      capsys.readouterr().err)
    assert said[:2] == ["asking for the rest (the server has not said that it sends one: if it sends the whole file, "
                        "it starts over)", "trying again (2 of 3)"], said
    assert all(line in ("starting over (this server sends only whole files, not the rest of one)",
                        "trying again (3 of 3)") for line in said[2:]), said


def test_a_retry_after_a_server_error_is_said_with_its_wait(server, monkeypatch, capsys):
    monkeypatch.setattr(download, "RETRY_DELAYS", (1.0, 4.0))
    monkeypatch.setattr(download.time, "sleep", lambda seconds: None)
    server.fail_first = 2
    download.fetch(register(f"{server.base}/ada_tiny.pkl"))
    assert re.findall(r"toonlib: downloading tiny.pkl: .*", capsys.readouterr().err) == [
        "toonlib: downloading tiny.pkl: HTTP 503 Service Unavailable; trying again in 1 s (2 of 3)",
        "toonlib: downloading tiny.pkl: HTTP 503 Service Unavailable; trying again in 4 s (3 of 3)"]
    server.fail_first = 1
    download.fetch(register(f"{server.base}/ada_tiny.pkl", filename="quiet.pkl"), progress=False)  # no bar: its words
    assert re.findall(r"toonlib: downloading quiet.pkl: .*", capsys.readouterr().err) == [  # (`--no-progress` waited
        "toonlib: downloading quiet.pkl: HTTP 503 Service Unavailable; trying again in 1 s (2 of 3)"]  # unsaid; audit)


@pytest.mark.parametrize("status", [200, 404])  # a private file (sign-in page), a removed file
def test_drive_refusal_keeps_gdowns_whole_reason(drive, tmp_path, status):
    drive.files["/uc?id=secret"] = Reply(SIGN_IN_PAGE, status=status, headers=HTML)
    with pytest.raises(download.DownloadError) as info:
        download.fetch(register("gdrive:secret"), progress=False)
    message = str(info.value)
    source_line = next(line for line in message.splitlines() if "drive.google.com/file/d/secret/view" in line)
    assert "gdown failed: Failed to retrieve file url: Cannot retrieve the public link of the file. You may need " \
           "to change the permission to 'Anyone with the link'" in source_line
    assert "You may still be able to access the file from the browser" in source_line
    assert not info.value.offline and "Cannot retrieve the public link" in info.value.reason
    assert cached_files(tmp_path) == []


def test_drive_quota_page_through_gdown(drive, tmp_path):
    drive.files["/uc?id=popular"] = Reply(QUOTA_PAGE, headers=HTML)
    with pytest.raises(download.DownloadError) as info:
        download.fetch(register("gdrive:popular"), progress=False)
    message = str(info.value)
    assert "Google Drive refused: 'Too many users have viewed or downloaded this file recently'" in message
    assert "https://drive.google.com/file/d/popular/view" in message and "your own Google Drive" in message
    assert cached_files(tmp_path) == []


VIEW_PAGE = b"<!DOCTYPE html><html><head><title>tiny.pkl - Google Drive</title></head><body>viewer</body></html>"


def test_a_google_drive_link_is_downloaded_as_drive_files_are(drive, tmp_path, capsys):
    """A Drive share link given as the URL was fetched as a plain web address: Drive's viewer page came back ("the
    server sent a web page instead of the file"), for every link form, whatever the file."""
    link = "https://drive.google.com/file/d/big/view?usp=sharing"
    drive.files["/file/d/big/view?usp=sharing"] = Reply(VIEW_PAGE, headers=HTML)
    drive.files["/uc?id=big"] = Reply(CONFIRM_PAGE, headers=HTML)
    drive.files["/download?id=big&export=download&confirm=t"] = Reply(PAYLOAD, headers=FILE)
    assert load_network(link).G_ema is not None
    path = tmp_path / "cache" / "drive-big"
    assert path.read_bytes() == PAYLOAD and cached_files(tmp_path) == [path.name]
    for same in ("https://drive.google.com/open?id=big", "https://drive.google.com/uc?export=download&id=big",
                 "https://drive.usercontent.google.com/download?id=big&export=download&confirm=t",
                 "https://docs.google.com/file/d/big/edit", "https://drive.google.com/u/0/uc?id=big&export=download"):
        assert download.fetch(same, progress=False) == path  # the same file: downloaded once
    assert drive.paths() == ["/uc?id=big", "/download?id=big&export=download&confirm=t"]
    folder = "https://drive.google.com/drive/folders/big?usp=sharing"  # no file's link (StyleGAN-NADA's README links
    with pytest.raises(ValueError, match=r"is a Google Drive folder's link, not a file's: open it in a browser, open "
                                         r"the file in it, and give that file's link \(https://drive\.google\."
                                         r"com/file/d/<id>/view\)"):  # one): it was downloaded as "a web page"
        download.fetch(folder, progress=False)
    assert drive.paths() == ["/uc?id=big", "/download?id=big&export=download&confirm=t"]  # nothing asked for it
    # refused where every model is checked before the first download (the default base came first, ~360 MB)
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "me.png")
    assert main(["toonify", str(tmp_path / "me.png"), "-o", str(tmp_path / "t.png"), "--toon", folder]) == 2
    assert "is a Google Drive folder's link, not a file's" in capsys.readouterr().err
    assert drive.paths() == ["/uc?id=big", "/download?id=big&export=download&confirm=t"]


def test_a_proxy_that_inspects_https_is_named_with_what_to_set(drive, tmp_path, monkeypatch):
    """Behind a proxy that re-signs HTTPS (a company's firewall; here the test Drive's proxy, whose certificate is not
    trusted), it said "the download broke off (HTTPSConnectionPool(host=..., port=443): Max retries exceeded with
    url: ... (Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify
    failed: se" after three tries."""
    ca_bundle = os.environ["REQUESTS_CA_BUNDLE"]
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)
    sleeps = []
    monkeypatch.setattr(download.time, "sleep", sleeps.append)
    drive.files["/ada_tiny.pkl"] = PAYLOAD
    drive.files["/uc?id=big"] = Reply(PAYLOAD, headers=FILE)
    for source in ("https://drive.google.com/ada_tiny.pkl", "gdrive:big"):
        with pytest.raises(download.DownloadError) as info:
            download.fetch(register(source), progress=False)
        assert "the server's certificate could not be verified (certificate verify failed: self-signed certificate" \
               "): behind a proxy or firewall that inspects HTTPS, set REQUESTS_CA_BUNDLE to the file of its " \
               "certificate" in str(info.value)
        assert not info.value.offline and sleeps == [] and drive.log == []
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)  # as the message says
    assert download.fetch("tiny", progress=False).read_bytes() == PAYLOAD


DRIVE_CUT = 600_000  # gdown reads 512 KB at a time and drops the read a broken connection cut: one read is kept


def gdown_partial(tmp_path: Path, name: str = "tiny.pkl") -> Path:
    """The partial file gdown keeps for `name`'s Drive download, in the folder of its own toonlib gives it."""
    [partial] = (tmp_path / "cache" / f"{name}.part.gdown").iterdir()
    return partial


@pytest.mark.parametrize("interruption", ["dropped connection", "ctrl-c"])
def test_an_interrupted_drive_download_is_resumed_by_the_next_fetch(drive, tmp_path, bars, monkeypatch, interruption):
    """gdown got a temporary folder that was always deleted, and no `resume`: a Drive download broken off at 90% (a
    dropped connection, Ctrl-C in a notebook) started again from 0, although `toonlib fetch --help` says downloads
    resume. The bar starts at the bytes already there."""
    drive.files["/uc?id=big"] = Reply(PAYLOAD, headers=FILE, ranges=True)
    drive.cut = DRIVE_CUT
    name = register("gdrive:big")
    if interruption == "ctrl-c":
        advance = download._advance

        def stopped(*args) -> None:
            raise KeyboardInterrupt  # the user stops the notebook once the first bytes are written

        monkeypatch.setattr(download, "_advance", stopped)
        with pytest.raises(KeyboardInterrupt):
            download.fetch(name)
        monkeypatch.setattr(download, "_advance", advance)
    else:
        monkeypatch.setattr(download, "RETRY_DELAYS", ())  # no retry: gdown's would resume at once (test below)
        drive.cut_responses = 1
        with pytest.raises(download.DownloadError, match=r"file/d/big/view: the download broke off \(") as info:
            download.fetch(name)
        assert "--continue" not in str(info.value)  # gdown's advice to its own command line
    kept = gdown_partial(tmp_path).stat().st_size
    assert 0 < kept <= DRIVE_CUT
    assert cached_files(tmp_path) == ["tiny.pkl.part.gdown", "tiny.pkl.part.source"]
    bars.clear()
    path = download.fetch(name)
    assert path.read_bytes() == PAYLOAD
    (_, asked), (_, resumed) = drive.log[-2:]  # gdown asks for the file, then for its rest
    assert "Range" not in asked and resumed.get("Range") == f"bytes={kept}-" and resumed.get("If-Range")
    [bar] = bars
    assert bar.initial == kept and bar.n == bar.total == len(PAYLOAD)
    assert cached_files(tmp_path) == ["tiny.pkl"]  # the partial download went with the download done


def test_a_drive_download_goes_on_after_a_dropped_connection_in_the_same_call(drive, tmp_path, bars):
    """Most registry models are on Drive (the default toon model, every encoder): one dropped connection ended the
    command ("run the same command again"), where a direct URL's download resumes at once (thirty-third session's
    audit). gdown's `retries` resumes it; the bar ends complete."""
    drive.files["/uc?id=big"] = Reply(PAYLOAD, headers=FILE, ranges=True)
    drive.cut, drive.cut_responses = DRIVE_CUT, 1
    path = download.fetch(register("gdrive:big"))
    assert path.read_bytes() == PAYLOAD and cached_files(tmp_path) == ["tiny.pkl"]
    (_, asked), (_, resumed) = drive.log[-2:]
    assert "Range" not in asked and resumed.get("Range", "").startswith("bytes=")
    [bar] = bars
    assert bar.n == bar.total == len(PAYLOAD)


def test_a_drive_page_without_the_files_link_is_asked_for_again(drive, tmp_path, capsys):
    """A busy Drive's 503 reached the user as gdown's "You may need to change the permission to 'Anyone with the
    link'", at once: the file is no user's to share, and the next request got it. Such a page is asked for again,
    each retry said; a file that stays private keeps gdown's whole reason (above)."""
    drive.files["/uc?id=big"] = Reply(PAYLOAD, headers=FILE)
    drive.files["/uc?id=secret"] = Reply(SIGN_IN_PAGE, headers=HTML)
    drive.fail_first = 1
    assert download.fetch(register("gdrive:big")).read_bytes() == PAYLOAD
    assert re.findall(r"toonlib: downloading tiny.pkl: .*", capsys.readouterr().err) == [
        "toonlib: downloading tiny.pkl: Google Drive sent no link to the file; trying again (2 of 3)"]
    with pytest.raises(download.DownloadError, match="change the permission to 'Anyone with the link'"):
        download.fetch(register("gdrive:secret", filename="secret.pkl"))
    assert re.findall(r"trying again \((\d) of 3\)", capsys.readouterr().err) == ["2", "3"]
    assert drive.paths().count("/uc?id=secret") == 3 and cached_files(tmp_path) == ["tiny.pkl"]


def test_a_drive_partial_download_of_another_source_or_version_is_not_resumed(drive, tmp_path, monkeypatch):
    """A partial download is resumed only by its own source, and only while the file is the same: the registry's
    source changed, or the file on Drive changed (another length; one the server no longer resumes)."""
    monkeypatch.setattr(download, "RETRY_DELAYS", ())  # no retry: gdown's would resume the broken-off download
    other = torch_bytes({"conv.weight": torch.ones(300_000)})  # another file of another length
    drive.files["/uc?id=big"] = drive.files["/uc?id=new"] = Reply(PAYLOAD, headers=FILE, ranges=True)
    drive.cut = DRIVE_CUT

    def interrupted(name: str) -> int:
        drive.cut_responses = 1
        with pytest.raises(download.DownloadError, match="broke off"):
            download.fetch(name, progress=False)
        return gdown_partial(tmp_path, models.MODELS[name].filename).stat().st_size

    interrupted(register("gdrive:big"))
    assert download.fetch(register("gdrive:new"), progress=False).read_bytes() == PAYLOAD  # another source
    assert drive.paths()[-1] == "/uc?id=new" and "Range" not in drive.log[-1][1]
    assert cached_files(tmp_path) == ["tiny.pkl"]

    name = register("gdrive:big", filename="w.pth", kind="fid", format="torch", resolution=None)
    kept = interrupted(name)
    drive.files["/uc?id=big"] = Reply(other, headers=FILE, ranges=True)  # a new version, of another length
    assert download.fetch(name, progress=False).read_bytes() == other
    assert [asked.get("Range") for _, asked in drive.log[-3:]] == [None, f"bytes={kept}-", None]  # then whole again
    assert cached_files(tmp_path) == ["tiny.pkl", "w.pth"]

    name = register("gdrive:big", filename="x.pkl")
    drive.files["/uc?id=big"] = Reply(PAYLOAD, headers=FILE, ranges=True)
    kept = interrupted(name)
    drive.files["/uc?id=big"] = Reply(PAYLOAD, headers=FILE)  # a server that answers a resume with the whole file
    assert download.fetch(name, progress=False).read_bytes() == PAYLOAD
    assert [asked.get("Range") for _, asked in drive.log[-3:]] == [None, f"bytes={kept}-", None]
    assert cached_files(tmp_path) == ["tiny.pkl", "w.pth", "x.pkl"]


def test_a_killed_drive_download_leaves_one_partial_download_that_the_next_fetch_resumes(drive, tmp_path):
    """A hard kill (kill -9, out of memory, a Colab disconnect) left a `.gdown-XXXXXXXX` folder with the bytes
    received, one more per kill, that no later fetch used or removed (on Colab, the cache is on the user's Drive)."""
    link = "https://drive.google.com/file/d/big/view"
    drive.files["/uc?id=big"] = Reply(PAYLOAD, headers=FILE, ranges=True)
    drive.cut = DRIVE_CUT
    hold = drive.hold = threading.Event()
    first = child(link)
    record = tmp_path / "cache" / "drive-big.part.source"
    deadline = time.monotonic() + 300
    while not record.is_file():  # the first bytes are on disk
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.05)
    first.kill()
    first.wait()
    drive.hold = None
    hold.set()
    kept = gdown_partial(tmp_path, "drive-big").stat().st_size
    assert 0 < kept <= DRIVE_CUT
    assert download.fetch(link, progress=False).read_bytes() == PAYLOAD
    assert drive.log[-1][1].get("Range") == f"bytes={kept}-"
    assert cached_files(tmp_path) == ["drive-big"]


def test_folders_that_older_versions_gave_gdown_are_removed_by_the_next_download_of_their_file(server, tmp_path):
    """toonlib gave gdown a `.gdown-XXXXXXXX` folder per download, which a hard kill left behind: the next download of
    the same file removes those of its file, and nothing else (another file's may be in use by its download)."""
    cache = tmp_path / "cache"
    leftovers = {".gdown-k2x9_q0a": ["tiny.pkl.partq1w2e3r4.part"], ".gdown-zz8y7x6w": ["tiny.pkl.part"],
                 ".gdown-abcdefgh": ["other.pkl.partq1w2e3r4.part"], ".gdown-01234567": [],
                 ".gdown-mixed123": ["tiny.pkl.partq1w2e3r4.part", "notes.txt"]}
    for folder, files in leftovers.items():
        (cache / folder).mkdir(parents=True)
        for file in files:
            (cache / folder / file).write_bytes(b"x" * 1000)
    assert download.fetch(register(f"{server.base}/ada_tiny.pkl"), progress=False).read_bytes() == PAYLOAD
    assert cached_files(tmp_path) == [".gdown-01234567", ".gdown-abcdefgh", ".gdown-mixed123", "tiny.pkl"]


def test_drive_url_is_what_gdown_builds_from_an_id():
    assert download._drive_url("1H73TfV5gQ9ot7slSed_l-lim9X7pMRiU") == \
        "https://drive.google.com/uc?id=1H73TfV5gQ9ot7slSed_l-lim9X7pMRiU"


def test_truncated_file_is_rejected_by_validation(server, tmp_path):
    server.files["/short.pkl"] = PAYLOAD[: len(PAYLOAD) // 2]  # a consistent but incomplete file
    name = register(f"{server.base}/short.pkl")
    with pytest.raises(download.DownloadError, match="not a readable checkpoint") as info:
        download.fetch(name, progress=False)
    assert "truncated" in str(info.value)
    assert cached_files(tmp_path) == []
    # Without validation the same bytes are accepted: it is the parse that rejects them.
    assert download.fetch(name, progress=False, validate=False).stat().st_size == len(PAYLOAD) // 2


def test_a_damaged_file_in_the_cache_is_downloaded_again(server, tmp_path):
    """`toonlib fetch` said a cut-short, empty or web-page file in the cache was there, and the loader failed on it
    (a copy or a Drive sync interrupted, a browser's download saved under the model's name)."""
    name = register(f"{server.base}/ada_tiny.pkl")
    cached = tmp_path / "cache" / "tiny.pkl"
    cached.parent.mkdir()
    for damaged in (PAYLOAD[: len(PAYLOAD) // 2], b"", QUOTA_PAGE):
        cached.write_bytes(damaged)
        assert main(["fetch", name]) == 0 and cached.read_bytes() == PAYLOAD
    assert len(server.log) == 3
    assert download.fetch(name, progress=False) == cached and len(server.log) == 3  # a whole one stays


def test_a_damaged_file_in_the_cache_is_named_when_no_download_replaces_it(tmp_path):
    cached = tmp_path / "cache" / "tiny.pkl"
    cached.parent.mkdir()
    cached.write_bytes(PAYLOAD[:1000])
    with pytest.raises(download.DownloadError) as info:
        download.fetch(register(closed_port_url()), progress=False)
    assert f"The file in the cache, {cached}, is cut short (1000 bytes: a pickle without its end): it cannot be " \
           "used, and is replaced by the next download that succeeds." in str(info.value)
    assert cached.read_bytes() == PAYLOAD[:1000]  # perhaps the user's only copy: kept


def test_a_file_that_fails_its_check_is_named_by_what_was_fetched(server):
    """The reader's words named the partial download, deleted by then: "not a readable checkpoint: /.../short.pkl.part
    is not a readable network pickle"; and they said "delete it and download it again" of it (thirty-third session's
    audit)."""
    url = f"{server.base}/short.pkl"
    server.files["/short.pkl"] = PAYLOAD[: len(PAYLOAD) // 2]
    with pytest.raises(download.DownloadError) as info:
        download.fetch(register(url), progress=False)
    assert f"{url}: not a readable checkpoint: 'tiny' is not a readable network pickle (UnpicklingError" in str(
        info.value)
    assert ".part" not in str(info.value) and "delete it" not in str(info.value)


def test_whole_files_of_each_format_look_whole_and_cut_ones_do_not(tmp_path):
    """`_damage` reads a file's ends only: no whole file of a format toonlib reads may look damaged."""
    from toonlib.checkpoints import save_network

    legacy = io.BytesIO()
    torch.save({"w": torch.ones(3)}, legacy, _use_new_zipfile_serialization=False)
    save_network(tmp_path / "native.safetensors", load_network(FIXTURES / "ada_tiny.pkl"))
    whole = {"nvidia.pkl": PAYLOAD, "tf.pkl": (FIXTURES / "tf_tiny.pkl").read_bytes(),
             "rosinality.pt": (FIXTURES / "rosinality_tiny.pt").read_bytes(), "legacy.pt": legacy.getvalue(),
             "native.safetensors": (tmp_path / "native.safetensors").read_bytes()}
    for name, data in whole.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert download._damage(path) is None, name
        path.write_bytes(data[:-100])
        damage = download._damage(path)
        if name == "legacy.pt":  # torch's pre-zip format ends with raw tensor bytes: only its reader can tell
            assert damage is None
        else:
            assert damage is not None and damage.startswith(f"cut short ({len(data) - 100} bytes"), name
    # A safetensors header whose length's low byte is 0x80 starts like a pickle: a whole file was "cut short (a
    # pickle without its end)", `toonlib models` said "damaged" and toonlib downloaded it again.
    meta = {"note": ""}
    while True:
        data = safetensors.torch.save({"w": torch.ones(3)}, metadata=meta)
        if data[0] == 0x80:
            break
        meta["note"] += "x"
    path = tmp_path / "header-0x80.safetensors"
    path.write_bytes(data)
    assert download._damage(path) is None
    path.write_bytes(data[:50])  # cut inside its header
    assert download._damage(path).startswith("cut short (50 bytes: a safetensors file without its whole header")


class FullDisk(io.FileIO):
    """A file on a disk with room for `CUT` bytes: writing past them fails as a full disk does."""

    def write(self, data) -> int:
        if self.tell() + len(data) > CUT:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def small_disk(path, mode: str = "r", **kwargs):
    """`open` for a module whose writes go to a `FullDisk`."""
    return FullDisk(path, mode.replace("b", "")) if mode in ("wb", "ab") else open(path, mode, **kwargs)


def test_a_disk_that_fills_up_during_the_download(server, tmp_path, monkeypatch):
    """It was "[Errno 28] No space left on device", naming no folder, and the partial download kept the disk full."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "other.pkl").write_bytes(PAYLOAD)
    monkeypatch.setattr(download, "open", small_disk, raising=False)
    with pytest.raises(OSError) as info:
        download.fetch(register(f"{server.base}/ada_tiny.pkl"), progress=False)
    assert str(info.value) == (
        f"cannot download 'tiny': the disk of {tmp_path / 'cache'} is full (No space left on device); the partial "
        "download was deleted to free its space. Free some space, or set TOONLIB_CACHE (or cache_dir=) "
        "to a folder elsewhere that you can write")
    assert cached_files(tmp_path) == ["other.pkl"]


def test_a_drive_download_that_fills_the_disk_is_said_the_same_way(drive, tmp_path, monkeypatch):
    """gdown's OSError was reported as a failure of the source ("gdown failed: [Errno 28] ...")."""
    drive.files["/uc?id=big"] = Reply(PAYLOAD, headers=FILE)
    monkeypatch.setattr(sys.modules["gdown.download"], "open", small_disk, raising=False)
    with pytest.raises(OSError, match=r"^cannot download 'tiny': the disk of .*cache is full \(No space left"):
        download.fetch(register("gdrive:big"), progress=False)
    assert cached_files(tmp_path) == []


def test_not_enough_space_with_a_partial_download_of_no_use_deletes_it_and_says_so(server, tmp_path, monkeypatch):
    """A partial download of a server that sends whole files only was said "kept and resumed" when the disk had too
    little space for the rest; it is of no use (the next download starts over) and its space is wanted: deleted, as
    after a failed download (forty-third session)."""
    name = register(f"{server.base}/ada_tiny.pkl")
    break_off(server, name, whole_files=True)  # as a download killed while such a server sent the file leaves it
    server.ranges = False  # and it sends the whole file when asked for the rest
    real = shutil.disk_usage
    free = len(PAYLOAD) - 1
    monkeypatch.setattr(download.shutil, "disk_usage", lambda folder: real(folder)._replace(free=free))
    with pytest.raises(OSError) as info:
        download.fetch(name, progress=False)
    assert str(info.value) == (
        f"cannot download 'tiny' into {tmp_path / 'cache'}: tiny.pkl needs {len(PAYLOAD) / 1e6:.1f} MB more, "
        f"{free / 1e6:.1f} MB are free. Free some space, or set TOONLIB_CACHE (or cache_dir=) to a folder elsewhere "
        "that you can write; its partial download was deleted to free its space (this server sends only whole files, "
        "not the rest of one: the next download starts over)")
    assert cached_files(tmp_path) == []
    monkeypatch.setattr(download.shutil, "disk_usage", real)
    assert download.fetch(name, progress=False).read_bytes() == PAYLOAD


def test_not_enough_space_is_said_before_the_download(server, tmp_path, monkeypatch):
    name = register(f"{server.base}/ada_tiny.pkl")
    kept = break_off(server, name)
    real = shutil.disk_usage
    free = len(PAYLOAD) - kept - 1
    monkeypatch.setattr(download.shutil, "disk_usage", lambda folder: real(folder)._replace(free=free))
    with pytest.raises(OSError) as info:
        download.fetch(name, progress=False)
    assert str(info.value) == (
        f"cannot download 'tiny' into {tmp_path / 'cache'}: tiny.pkl needs {(len(PAYLOAD) - kept) / 1e6:.1f} MB more, "
        f"{free / 1e6:.1f} MB are free. Free some space, or set TOONLIB_CACHE (or cache_dir=) to a "
        "folder elsewhere that you can write; the partial download tiny.pkl.part is kept and resumed")
    assert (tmp_path / "cache" / "tiny.pkl.part").stat().st_size == kept
    monkeypatch.setattr(download.shutil, "disk_usage", real)
    assert download.fetch(name, progress=False).read_bytes() == PAYLOAD
    assert server.log[-1][1].get("Range") == f"bytes={kept}-"


@pytest.mark.parametrize(("home", "advice"), [
    ("cache", "set TOONLIB_CACHE (or cache_dir=) to a folder elsewhere that you can write"),
    ("torch-hub", "set TORCH_HOME to a folder elsewhere that you can write (the file goes into its hub/checkpoints)"),
])
def test_a_folder_that_cannot_be_written_is_named_with_what_to_do(server, tmp_path, monkeypatch, home, advice):
    """It was "[Errno 13] Permission denied: '.../.locks'" (or read-only file system), a folder the user never named.
    (The refusal is simulated: the tests may run as root, whom permissions do not stop.)"""
    name = register_weights(f"{server.base}/w.pth", home=home)
    folder = download.local_path(name).parent
    real_mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if self == folder:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(PermissionError) as info:
        download.fetch(name, progress=False)
    assert str(info.value) == f"cannot download 'tiny': files cannot be written in {folder} (Permission denied); " \
                              f"{advice}"
    assert server.log == []


def test_an_entry_of_a_shared_cache_that_cannot_be_written_is_named(server, tmp_path, monkeypatch):
    """Another user's partial download in a shared cache (a folder everyone writes) stopped every fetch with "files
    cannot be written in CACHE", which was not so: that one file could not. (Simulated: the tests may run as root.)"""
    name = register(f"{server.base}/ada_tiny.pkl")
    part = download.local_path(name).with_name("tiny.pkl.part")
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:1000])  # another user's, which this one may not write, resumed from its record
    download._write_marker(part, {"source": f"{server.base}/ada_tiny.pkl", "validator": None, "size": len(PAYLOAD)})

    def refuse(first, rest, path, *args):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(download, "_write_body", refuse)
    with pytest.raises(PermissionError) as info:
        download.fetch(name, progress=False)
    advice = ("or set TOONLIB_CACHE (or cache_dir=) to a folder elsewhere that you can write")
    assert str(info.value) == (f"cannot download 'tiny': {part} cannot be written (Permission denied), though "
                               f"{part.parent} can: made by another user? Delete it (the folder lets you) or ask its "
                               f"owner to make it writable for you, {advice}")
    part.parent.chmod(0o1777)  # a sticky folder, as shared ones are: only its owner may delete it
    with pytest.raises(PermissionError) as info:
        download.fetch(name, progress=False)
    assert f"made by another user? Ask its owner to delete it or to make it writable for you, {advice}" in str(
        info.value)
    # a .locks folder another user made 0755 (its lock file cannot be made): the folder is named
    from toonlib import files

    def refuse_lock(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(files.lock_file_for(path)))

    monkeypatch.setattr(download, "file_lock", refuse_lock)
    files.lock_file_for(download.local_path(name)).unlink()  # not made yet, in a cache new to this user
    with pytest.raises(PermissionError, match=rf"^cannot download 'tiny': {re.escape(str(part.parent / '.locks'))} "
                                              r"cannot be written \(Permission denied\), though"):
        download.fetch(name, progress=False)


def test_load_network_from_url(server, tmp_path):
    url = f"{server.base}/ada_tiny.pkl"
    nets = load_network(url)
    assert nets.G_ema is not None and nets.D is not None
    (name,) = cached_files(tmp_path)
    assert re.fullmatch(r"ada_tiny-[0-9a-f]{8}\.pkl", name)
    load_network(url)
    assert len(server.log) == 1
    # the scheme in capitals, as URLs allow: it was an unknown model name
    assert download.fetch(url.replace("http://", "HTTP://"), progress=False).read_bytes() == PAYLOAD


def test_a_url_of_a_registry_file_is_that_file(server, tmp_path):
    """The link a failed fetch lists (a direct URL, or a Drive link of a `gdrive:` source), fetched, was saved under
    another name (`drive-<id>`, `<name>-<hash>.pkl`) and checked as an unknown StyleGAN2 file: the registry's name
    still found nothing and downloaded it again, and weights of another kind (LPIPS' VGG16) were refused after their
    whole download. It is the registry's file, with its checks and its folder."""
    url = f"{server.base}/ada_tiny.pkl"
    name = register(url)
    assert download.fetch(url, progress=False) == tmp_path / "cache" / "tiny.pkl"
    assert download.cache_state(name) == "cached" and download.fetch(name, progress=False) and len(server.log) == 1
    register(f"{server.base}/elsewhere.pkl", "gdrive:big")
    for link in ("https://drive.google.com/file/d/big/view?usp=sharing", "https://drive.google.com/open?id=big"):
        assert download.local_path(link) == tmp_path / "cache" / "tiny.pkl"
    assert download.local_path("https://drive.google.com/file/d/other/view") == tmp_path / "cache" / "drive-other"
    server.files["/w.pth"] = torch_bytes({"conv.weight": torch.ones(2, 2)})
    register_weights(f"{server.base}/w.pth")
    path = download.fetch(f"{server.base}/w.pth", progress=False)  # a state dict, not a StyleGAN2 checkpoint
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / "weights-0123abcd.pth"


def test_convert_records_the_url_or_name_given_not_the_cache_file(server, tmp_path, capsys):
    """`toonlib convert URL out` recorded the cache file as the origin: `info` said "converted from
    /root/.cache/toonlib/ada_tiny-1a2b3c4d.pkl", a path of the machine that converted it."""
    url = f"{server.base}/ada_tiny.pkl"
    server.files["/ada_tiny.pkl?token=secret"] = PAYLOAD  # a signed URL: its token is not recorded
    name = register(url)
    for given, recorded in ((url, url), (f"{url}?token=secret", url), (name, name)):
        out = tmp_path / f"out-{len(capsys.readouterr().out)}.safetensors"
        assert main(["convert", given, str(out)]) == 0
        capsys.readouterr()
        assert main(["info", str(out)]) == 0
        assert capsys.readouterr().out.splitlines()[1] == f"converted from {recorded} (nvidia format)"
    assert load_network(url).meta["source"] == url
    assert load_network(out).meta["source"] == str(out)  # a local file: its path


def test_url_filenames(server):
    a = download._url_filename("https://a.example/x/ffhq.pkl")
    b = download._url_filename("https://b.example/y/ffhq.pkl?download=1")
    assert a != b and a.startswith("ffhq-") and a.endswith(".pkl")
    assert download._url_filename("https://a.example/").startswith("download-")
    assert "/" not in download._url_filename("https://a.example/a%2Fb%20c")
    # a long last component: the lock file's name was too long for the file system, and the URL never fetched
    long = download._url_filename(f"https://a.example/{'a' * 300}.{'b' * 300}")
    assert re.fullmatch(r"a{100}-[0-9a-f]{8}\.b{20}", long)
    assert re.fullmatch(r"c{100}-[0-9a-f]{8}", download._url_filename(f"https://a.example/{'c' * 300}"))
    server.files[f"/{'d' * 300}.pkl"] = PAYLOAD
    assert download.fetch(f"{server.base}/{'d' * 300}.pkl", progress=False).read_bytes() == PAYLOAD
    kept = f"https://a.example/{'e' * 180}.pkl"  # a long name that worked: kept, not downloaded again as another
    assert download._url_filename(kept).startswith("e" * 180 + "-")
    # one file whatever the scheme's case
    assert download._url_filename("HTTPS://a.example/x/ffhq.pkl") == download._url_filename("https://a.example/x/ffhq.pkl")


def test_unknown_model_names(monkeypatch):
    monkeypatch.setattr(models, "MODELS", {name: models.MODELS[name] for name in ("ffhq-1024-noaug", "ffhq-512-noaug")})
    with pytest.raises(KeyError, match="Did you mean 'ffhq-1024-noaug'") as info:
        models.get_model("ffhq-1024-noag")
    assert isinstance(info.value, ValueError)
    assert "ffhq-512-noaug" in str(info.value)
    with pytest.raises(models.UnknownModelError):
        download.fetch("nothing-like-it")


def test_fetch_takes_one_name_or_url_not_a_list_none_or_a_local_file(tmp_path):
    """fetch(None) listed every registry name, fetch([name]) offered the name inside the list as a close match, and a
    file here was an "unknown model"."""
    with pytest.raises(TypeError, match=r"^fetch takes one name, got a list of 1: call it once per name$"):
        download.fetch(["ffhq-1024-tf"])
    with pytest.raises(TypeError, match=r"^fetch takes a registry name \(`toonlib models`\) or an http\(s\) URL, got "
                                        "NoneType$"):
        download.fetch(None)
    local = tmp_path / "ffhq.pkl"
    local.write_bytes(PAYLOAD)
    for given in (str(local), local):
        with pytest.raises(ValueError, match=rf"^{re.escape(str(local))} is a file here: fetch downloads registry "
                                             r"names \(`toonlib models`\) and http\(s\) URLs into the cache; "
                                             r"a local file is read as it is where a model is asked for \(--toon, "
                                             r"--base; load_network in Python\)$"):
            download.fetch(given, progress=False)
    assert cached_files(tmp_path) == []


# --- advice that fits where the user is --------------------------------------------------------------

@pytest.mark.parametrize("invert", ["optimize", "e4e"])
def test_an_offline_command_names_every_model_it_lacks(tmp_path, capsys, monkeypatch, invert):
    """Offline, `toonlib app` said one missing file per run: the base, then (once it was put there) the toon model.
    The models named are those the command loads (`commands._fetch_toonify_models`): the toon model's base where
    --base is not given, and the encoder of an encoder mode."""
    from PIL import Image

    from toonlib import cli

    base, toon = register(OFFLINE_URL), "tinytoon"
    models.MODELS[toon] = dataclasses.replace(models.MODELS[base], name=toon, filename="tinytoon.pkl", lineage=base,
                                              toon="unblended")
    Image.new("RGB", (64, 64)).save(tmp_path / "me.png")
    monkeypatch.setattr(losses, "_LPIPS_CACHE", {})  # no LPIPS built by an earlier test: the weights are needed
    try:  # e4e's encoder: the registry's default for the mode (`pipeline.DEFAULT_ENCODERS`), not on this machine
        assert cli.main(["toonify", str(tmp_path / "me.png"), "--toon", toon, "--invert", invert, "-o",
                         str(tmp_path / "out.png")]) == 2
    finally:
        del models.MODELS[toon]
    err = capsys.readouterr().err
    assert f"could not download {base!r}: no internet connection" in err  # the first the command loads
    others = {toon: tmp_path / "cache" / "tinytoon.pkl",
              **({"e4e-ffhq": tmp_path / "cache" / models.MODELS["e4e-ffhq"].filename} if invert == "e4e" else
                 # LPIPS' VGG16, which a projection reads: it was missed at the first step (thirty-ninth session)
                 {"lpips-vgg16": download.local_path("lpips-vgg16")})}
    said = [line for line in err.splitlines() if line.startswith("This command needs")]
    assert said == [f"This command needs {other!r} too, also not on this machine: `toonlib fetch {other}` once "
                    f"online, or save it as {path}" for other, path in others.items()], err


def test_advice_names_the_option_that_takes_a_local_file(tmp_path):
    url = OFFLINE_URL
    with pytest.raises(download.DownloadError) as info:
        download.fetch(register(url), progress=False, local_option="--base")
    message = str(info.value)
    assert f"save it as {tmp_path / 'cache' / 'tiny.pkl'}" in message
    assert "pass its path: --base PATH" in message
    assert "/content/drive" not in message and "Google Drive" not in message  # not a Drive file, not on Colab
    error = info.value
    assert error.offline and error.reason == "no internet connection" and error.path == tmp_path / "cache" / "tiny.pkl"


def test_advice_on_colab_is_the_drive_path(tmp_path, monkeypatch):
    drive_root = tmp_path / "MyDrive"
    drive_root.mkdir()
    monkeypatch.setattr(download, "DRIVE_ROOT", drive_root)
    monkeypatch.delenv("TOONLIB_CACHE")
    name = register("gdrive:abc", closed_port_url())
    monkeypatch.setattr(download, "_drive_url", lambda file_id: closed_port_url())  # offline Drive too
    with pytest.raises(download.DownloadError) as info:
        download.fetch(name, progress=False, local_option="--base")
    in_cache = drive_root / "toonlib" / "cache" / "tiny.pkl"  # the cache is on Drive: putting it there is enough
    assert f"put the file into your Google Drive as {in_cache}" in str(info.value)
    assert "--base" not in str(info.value)

    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "local-cache"))  # cache elsewhere: pass the Drive path
    with pytest.raises(download.DownloadError) as info:
        download.fetch(name, progress=False, local_option="--base")
    assert f"as {drive_root / 'tiny.pkl'}" in str(info.value) and f"with --base {drive_root / 'tiny.pkl'}" in str(
        info.value)


def test_unknown_host_is_not_retried(monkeypatch):
    sleeps = []
    monkeypatch.setattr(download.time, "sleep", sleeps.append)
    with pytest.raises(download.DownloadError) as info:
        download.fetch(register(OFFLINE_URL), progress=False)
    assert info.value.offline and "no internet connection" in str(info.value)
    assert sleeps == []  # waiting does not give a machine internet


# --- kinds and homes ---------------------------------------------------------------------------------

def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def register_weights(url: str, **changes) -> str:
    """A test entry for auxiliary weights that live in torch hub's folder."""
    return register(url, **{"kind": "face-alignment", "home": "torch-hub", "format": "torch", "resolution": None,
                            "filename": "weights-0123abcd.pth", **changes})


def test_auxiliary_weights_go_to_torch_hub(server, tmp_path):
    server.files["/w.pth"] = torch_bytes({"conv.weight": torch.ones(2, 2)})
    name = register_weights(f"{server.base}/w.pth")
    path = download.fetch(name, progress=False, cache_dir=tmp_path / "elsewhere")  # the cache folder does not apply
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / "weights-0123abcd.pth" == torch.hub.get_dir() / \
        Path("checkpoints/weights-0123abcd.pth")
    assert torch.load(path, weights_only=True)["conv.weight"].sum() == 4
    assert listing(path.parent) == [path.name] and cached_files(tmp_path) == []
    assert download.local_path(name) == path


def test_weights_already_in_torch_hub_are_used_as_they_are(server, tmp_path):
    """torchvision and face-alignment check hashes only when they download: a file placed by hand is used."""
    name = register_weights(f"{server.base}/w.pth", sha256="f" * 64)
    placed = tmp_path / "torch" / "hub" / "checkpoints" / "weights-0123abcd.pth"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"placed by hand")
    assert download.fetch(name, progress=False) == placed
    assert server.log == []


@pytest.mark.parametrize(("kind", "body", "problem"), [
    ("face-alignment", b"\x00not a torch file", "not a readable torch file"),
    ("lpips-vgg", torch_bytes([1, 2, 3]), "not a state dict of tensors"),
    ("encoder", torch_bytes({"state_dict": {"decoder.w": torch.ones(1)}, "opts": {}}), "not a pSp / e4e checkpoint"),
])
def test_each_kind_is_validated_by_its_reader(server, tmp_path, kind, body, problem):
    server.files["/w.pth"] = body
    name = register_weights(f"{server.base}/w.pth", kind=kind)
    with pytest.raises(download.DownloadError, match=problem):
        download.fetch(name, progress=False)
    assert listing(tmp_path / "torch" / "hub" / "checkpoints") == []  # nothing under the real name, no .part


def test_an_unreadable_torch_download_is_not_told_to_be_unpickled(server, tmp_path):
    """torch's reason was quoted whole, cut at 300 characters: "Re-running `torch.load` with `weights_only` set to
    `False` will likely succeed, but it can result in arbitr", its warning cut off, inviting the user to unpickle an
    untrusted download. Its first sentence and the unpickler's reason are said."""
    server.files["/w.pth"] = b"\x80\x02 not a torch file" + bytes(5000)
    name = register_weights(f"{server.base}/w.pth")
    with pytest.raises(download.DownloadError) as info:
        download.fetch(name, progress=False)
    said = str(info.value)
    assert "not a readable torch file (UnpicklingError: Weights only load failed: Unsupported operand" in said
    assert "weights_only" not in said and "arbitr" not in said


def test_encoder_checkpoint_is_accepted(server, tmp_path):
    server.files["/e4e.pt"] = torch_bytes({"state_dict": {"encoder.body.0.weight": torch.ones(1),
                                                          "decoder.style.1.weight": torch.ones(1)},
                                           "opts": {"encoder_type": "Encoder4Editing"}, "latent_avg": torch.zeros(1)})
    name = register(f"{server.base}/e4e.pt", kind="encoder", format="e4e", filename="e4e.pt")
    assert download.fetch(name, progress=False) == tmp_path / "cache" / "e4e.pt"


def damage(path: Path) -> None:
    """Damage a cached file where its reader sees it and the cache's own check, of the file's ends, does not."""
    data = bytearray(path.read_bytes())
    data[100:140] = bytes(40)
    path.write_bytes(bytes(data))


def test_a_cached_download_damaged_since_says_how_to_download_it_anew(server, tmp_path, capsys):
    """A cached file damaged after its download (a sync tool, a bad copy on Colab's Drive) said "delete it and
    download it again" of the cache file alone, and `toonlib fetch NAME`, the way to download it again, found it there
    and did nothing (thirty-third session's audit). The message names the model and `toonlib remove`, which works."""
    name = register(f"{server.base}/ada_tiny.pkl")
    damage(download.fetch(name, progress=False))
    with pytest.raises(CheckpointError) as info:
        load_network(name)
    assert str(info.value) == (f"{tmp_path / 'cache' / 'tiny.pkl'} is not a readable network pickle (UnpicklingError: "
                               "invalid load key, '\\x00'.). It is the cached download of 'tiny': `toonlib remove "
                               "tiny` deletes it, and the next use downloads it again.")
    assert main(["remove", name]) == 0
    assert load_network(name).G_ema is not None and len(server.log) == 2
    url = f"{server.base}/ada_tiny.pkl".replace("//", "//me:secret@")
    damage(download.fetch(url, progress=False))
    with pytest.raises(CheckpointError, match=rf"It is the cached download of {server.base}/ada_tiny.pkl: delete "
                                              r"that file, and the next use downloads it again\.$") as info:
        load_network(url)
    assert "secret" not in str(info.value)
    Path(str(info.value).split(" is not a readable")[0]).unlink()  # as it says: the file it names
    assert load_network(url).G_ema is not None
    own = tmp_path / "mine.pkl"  # a file the user gave keeps the reader's advice
    damage(shutil.copyfile(FIXTURES / "ada_tiny.pkl", own))
    with pytest.raises(CheckpointError, match="A truncated download or a damaged file: delete it and download it"):
        load_network(own)


def test_a_cached_encoder_damaged_since_says_how_to_download_it_anew(server, tmp_path):
    server.files["/e4e.pt"] = torch_bytes({"state_dict": {"encoder.body.0.weight": torch.ones(1),
                                                          "decoder.style.1.weight": torch.ones(1)},
                                           "opts": {"encoder_type": "Encoder4Editing"}, "latent_avg": torch.zeros(1)})
    name = register(f"{server.base}/e4e.pt", kind="encoder", format="e4e", filename="e4e.pt")
    damage(download.fetch(name, progress=False))
    with pytest.raises(EncoderError, match=r"cannot be read as a torch checkpoint \(.*\)\. It is the cached download "
                                           r"of 'tiny': `toonlib remove tiny` deletes it, and the next use downloads"):
        load_encoder(name, device="cpu")


def test_addresses_of_other_schemes_say_what_to_give(tmp_path, capsys):
    """A file:// address of a file that is there was "no checkpoint at file:/..." (a slash lost), an ftp:// one "unknown
    model" with the registry's names (thirty-third session's audit)."""
    model = tmp_path / "my model.pkl"
    shutil.copyfile(FIXTURES / "ada_tiny.pkl", model)
    address = model.as_uri()  # file:///.../my%20model.pkl
    with pytest.raises(ValueError, match=rf"^{re.escape(address)} is a file:// address: give the file's path itself, "
                                         rf"{re.escape(str(model))}$"):
        load_network(address)
    assert main(["info", address]) == 2 and f"give the file's path itself, {model}\n" in capsys.readouterr().err
    for command in ("fetch", "info"):
        assert main([command, "ftp://example.com/ffhq.pkl"]) == 2
        assert capsys.readouterr().err == (f"toonlib {command}: error: ftp://example.com/ffhq.pkl: toonlib downloads "
                                           "http:// and https:// addresses only; download it another way and give the "
                                           "file's path\n")


def test_sha256_prefix_of_a_torch_hub_file_name(server):
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert download.fetch(register(f"{server.base}/ada_tiny.pkl", sha256=digest[:8]), progress=False).is_file()
    with pytest.raises(download.DownloadError, match="sha256 mismatch"):
        download.fetch(register(f"{server.base}/ada_tiny.pkl", sha256="0" * 8, filename="other.pkl"), progress=False)


# --- the command line ----------------------------------------------------------------------------------

def test_fetch_command(server, tmp_path, capsys):
    good = register(f"{server.base}/ada_tiny.pkl")
    models.MODELS["broken"] = dataclasses.replace(models.MODELS[good], name="broken", filename="broken.pkl",
                                                  sources=(f"{server.base}/missing.pkl",))
    assert main(["fetch", good, "no-such-model"]) == 2  # an unknown name fails before any download starts
    assert server.log == [] and "unknown model 'no-such-model'" in capsys.readouterr().err
    assert main(["fetch", "broken", good]) == 2  # one failure does not stop the others
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "cache" / "tiny.pkl") and "HTTP 404" in err
    assert main(["fetch", good]) == 0


def test_fetch_command_goes_on_after_a_disk_error(server, tmp_path, capsys, monkeypatch):
    """A full disk or a read-only folder for one name (the weights of other libraries go to torch hub's folder, the
    models to toonlib's cache) stopped `toonlib fetch` there: the names after it were not fetched."""
    good = register(f"{server.base}/ada_tiny.pkl")
    fetch = download.fetch

    def read_only_for(name: str, **kwargs):
        if name == "lpips-vgg16":
            raise PermissionError(13, "Permission denied", "/hub/checkpoints")
        return fetch(name, **kwargs)

    monkeypatch.setattr(download, "fetch", read_only_for)
    assert main(["fetch", "lpips-vgg16", good]) == 2
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "cache" / "tiny.pkl")
    assert err.startswith("toonlib fetch: error: /hub/checkpoints: permission denied; check its permissions (ls -ld "
                          "/hub/checkpoints) or give another file\n")  # then the next name's download bar


def test_fetch_command_names_the_cache_folder_for_any_folder(server, tmp_path, capsys, monkeypatch):
    """`toonlib fetch NAME --cache-dir relcache` said "with TOONLIB_CACHE=relcache set", which works from that folder
    only."""
    monkeypatch.chdir(tmp_path)
    assert main(["fetch", register(f"{server.base}/ada_tiny.pkl"), "--cache-dir", "relcache"]) == 0
    assert f"with TOONLIB_CACHE={tmp_path / 'relcache'} set" in capsys.readouterr().err


def test_fetch_command_whose_output_closes_stops_quietly(server, tmp_path, capsys, monkeypatch):
    """`toonlib fetch A B C | head -1`: the closed pipe was taken for a failed download of each name after the first,
    "[Errno 32] Broken pipe" said for each while all were downloaded, and the exit status 2 (not 141)."""
    class ClosedPipe(io.StringIO):  # the reader of stdout gone away
        def write(self, text: str) -> int:
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    first = register(f"{server.base}/ada_tiny.pkl")
    models.MODELS["second"] = dataclasses.replace(models.MODELS[first], name="second", filename="second.pkl",
                                                  sources=(f"{server.base}/second.pkl",))
    server.files["/second.pkl"] = PAYLOAD
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["fetch", first, "second"]) == 141
    assert "Broken pipe" not in capsys.readouterr().err and [path for path, _ in server.log] == ["/ada_tiny.pkl"]


def test_fetch_command_names_the_cache_folder_only_for_what_went_there(server, tmp_path, capsys):
    """`toonlib fetch --cache-dir DIR` of weights that go to torch hub's folder said "the other commands find models
    there with TOONLIB_CACHE=DIR", though nothing went to DIR."""
    server.files["/w.pth"] = torch_bytes({"conv.weight": torch.ones(2, 2)})
    assert main(["fetch", register_weights(f"{server.base}/w.pth"), "--cache-dir", str(tmp_path / "elsewhere")]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith("weights-0123abcd.pth") and not (tmp_path / "elsewhere").exists()
    assert "TOONLIB_CACHE" not in err


def test_models_command_with_a_relative_cache_folder_lists_each_file_once(server, tmp_path, capsys, monkeypatch):
    """`toonlib models --cache-dir models` listed each registry file twice (in the table and as a file "downloaded by
    URL or put there"), a relative path compared with an absolute one; the header said the relative one."""
    monkeypatch.chdir(tmp_path)
    name = register(f"{server.base}/ada_tiny.pkl")
    assert main(["fetch", name, "--cache-dir", "models"]) == 0
    capsys.readouterr()
    assert main(["models", "--cache-dir", "models"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"toonlib cache: {tmp_path / 'models'}\n") and "also holds" not in out
    assert "on this machine: 1 of these files" in out


def test_a_file_size_limit_is_said_and_leaves_no_partial_download(server, tmp_path):
    """A download stopped by a file-size limit (`ulimit -f`, a FAT32 drive's 4 GiB) said only "[Errno 27] File too
    large", and kept its partial download, which each later run resumed into the same error (audit)."""
    import resource

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))  # Python ignores SIGXFSZ

    url = f"{server.base}/ada_tiny.pkl"
    result = subprocess.run([sys.executable, "-m", "toonlib", "fetch", url], capture_output=True, text=True,
                            timeout=120, preexec_fn=limited, env={**os.environ, "TOONLIB_CACHE": str(tmp_path / "c")})
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"toonlib fetch: error: cannot download '{url}' into {tmp_path / 'c'}: the file is larger than may be written "
        "there (File too large: this shell's `ulimit -f`, or a FAT32 drive's 4 GiB); the partial download was deleted. "
        "Lift the limit (`ulimit -f unlimited`), or set TOONLIB_CACHE (or --cache-dir) to a folder elsewhere that you "
        "can write")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [".locks"]


def test_fetch_command_advice_names_the_option_not_the_keyword(server, tmp_path, capsys, monkeypatch):
    """The advice named Python's keyword too: "set TOONLIB_CACHE (or cache_dir=) to a folder"."""
    monkeypatch.chdir(tmp_path)
    name = register(f"{server.base}/ada_tiny.pkl")
    real_mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if self.name == "read-only":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    assert main(["fetch", name, "--cache-dir", "read-only"]) == 2
    err = capsys.readouterr().err
    assert "; give --cache-dir a folder elsewhere that you can write" in err  # TOONLIB_CACHE would change nothing
    assert "cache_dir=" not in err


# --- processes that fetch the same file at once -----------------------------------------------------------

CHILD = "import sys; from toonlib.download import fetch; print(fetch(sys.argv[1]))"


def child(url: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=os.environ.copy())


def wait_for_line(stream, words: str, timeout: float = 300) -> str:
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    while True:
        line = lines.get(timeout=timeout)
        if words in line:
            return line


def test_two_processes_take_turns(server, tmp_path):
    """The second process waits for the first one's download, then uses its file: one download, no leftovers. Its
    line names the process it waits for (it said "another process": a Ctrl-Z'd job in another terminal blocked it
    unnamed; forty-third session's audit)."""
    url = f"{server.base}/ada_tiny.pkl"
    server.hold = threading.Event()  # the server sends part of the file, then waits
    first = child(url)
    assert server.streaming.wait(timeout=300), first.communicate()
    second = child(url)
    line = wait_for_line(second.stderr, "toonlib: waiting for", timeout=120)
    lock = download.local_path(url).parent / ".locks" / f"{download.local_path(url).name}.lock"
    assert line == f"toonlib: waiting for process {first.pid} to finish downloading {lock.name[:-5]} (lock {lock})\n"
    server.hold.set()
    out_first, _ = first.communicate(timeout=300)
    out_second = second.stdout.read()
    assert second.wait(timeout=300) == 0 and first.returncode == 0
    path = download.local_path(url)
    assert out_first.strip() == out_second.strip() == str(path)
    assert path.read_bytes() == PAYLOAD
    assert server.paths() == ["/ada_tiny.pkl"]  # downloaded once
    assert cached_files(tmp_path) == [path.name]  # no .part, .source or temporary files


def waiting_fetch(url: str, capsys) -> tuple[threading.Thread, str]:
    """`fetch(url, progress=False)` in a thread of this process, once it says that it waits for the process that
    downloads `url`: the thread, and what it said on stderr."""
    waiter = threading.Thread(target=download.fetch, args=(url,), kwargs={"progress": False})
    waiter.start()
    deadline, err = time.monotonic() + 300, ""
    while "waiting" not in err:
        assert time.monotonic() < deadline, err
        time.sleep(0.1)
        err += capsys.readouterr().err
    return waiter, err


def test_a_process_waiting_for_another_download_says_so_without_progress_bars(server, tmp_path, capsys):
    """`fetch(progress=False)` (`load_network(url, progress=False)`, `finetune --no-progress`: a log's mode) waited
    for another process's download without a word, minutes for a large file; retries were said (forty-third
    session's audit). The wait is one line, not a bar: said either way."""
    url = f"{server.base}/ada_tiny.pkl"
    server.hold = threading.Event()
    first = child(url)
    try:
        assert server.streaming.wait(timeout=300), first.communicate()
        waiter, err = waiting_fetch(url, capsys)
    finally:
        server.hold.set()
    waiter.join(timeout=300)
    assert first.wait(timeout=300) == 0
    path = download.local_path(url)
    lock = path.parent / ".locks" / f"{path.name}.lock"
    assert err == f"toonlib: waiting for process {first.pid} to finish downloading {path.name} (lock {lock})\n"
    assert server.paths() == ["/ada_tiny.pkl"] and path.read_bytes() == PAYLOAD  # the other process's download
    assert cached_files(tmp_path) == [path.name]  # no holder record left in .locks


def test_a_download_in_progress_is_named_by_its_process_to_remove_and_models(server, tmp_path, capsys):
    """`toonlib remove`'s refusal and `toonlib models` said "another process" of a download under way: a stopped
    job (Ctrl-Z) in another terminal, or a notebook paused in a debugger, blocked the file with nothing to find it by.
    They name its process (forty-third session's audit); once it ended, its record is gone."""
    url = f"{server.base}/ada_tiny.pkl"
    # The bytes held back from a whole number of the download's reads: all that is sent reaches the disk, and stays.
    # `CUT` (300,000) did not: 262,144 (4 reads) landed, the loop below waited for the server to give up on its hold
    # and send the rest (60 s), and `models` then raced the download's end (forty-fourth session's audit).
    server.hold, server.cut = threading.Event(), 4 * download._CHUNK
    first = child(url)
    try:
        assert server.streaming.wait(timeout=300), first.communicate()
        path = download.local_path(url)
        assert main(["remove", url]) == 2
        assert capsys.readouterr().err == (
            f"toonlib remove: error: '{url}' is being downloaded by process {first.pid} (it holds "
            f"{path.parent / '.locks' / (path.name + '.lock')}): remove it once that download has ended\n")
        part = path.with_name(path.name + ".part")
        deadline = time.monotonic() + 300
        while not part.is_file() or part.stat().st_size < server.cut:  # all the bytes sent: the size stays
            assert time.monotonic() < deadline and first.poll() is None, first.communicate()
            time.sleep(0.05)
        assert main(["models"]) == 0
        from toonlib.commands import _file_size

        size = _file_size(sum(download.disk_bytes(p) for p in path.parent.glob(path.name + ".part*")))
        assert (f"the cache also holds {part.name} ({size} so far, by process {first.pid}) (a download in "
                "progress)\n") in capsys.readouterr().out
    finally:
        server.hold.set()
    assert first.wait(timeout=300) == 0
    assert cached_files(tmp_path) == [path.name]  # the record went with the download


def test_a_held_response_never_released_fails_the_test(monkeypatch):
    """The test server gave up on a hold after 60 s and sent the rest, quietly: a test that waited for bytes only that
    rest brings passed a minute late, on the race that followed (forty-fourth session's audit). The response is
    dropped, and the server's block fails, naming it."""
    import http.client

    import http_server

    monkeypatch.setattr(http_server, "HOLD_LIMIT_S", 0.5)
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(AssertionError, match=r"^the test server held \['/ada_tiny.pkl'\] for 0.5 s and the test never "
                                             r"released it \(state.hold.set\(\)\): did it wait for bytes"):
        with serve({"/ada_tiny.pkl": PAYLOAD}) as state:
            state.hold = threading.Event()
            with direct.open(f"{state.base}/ada_tiny.pkl", timeout=60) as response:
                with pytest.raises(http.client.IncompleteRead):  # the rest never came
                    response.read()


def test_a_killed_download_does_not_block_the_next(server, tmp_path):
    """A process killed mid-download leaves its part, never a lock: the next one takes over and resumes it."""
    url = f"{server.base}/ada_tiny.pkl"
    hold = server.hold = threading.Event()
    first = child(url)
    part = download.local_path(url).with_name(download.local_path(url).name + ".part")
    assert server.streaming.wait(timeout=300), first.communicate()
    deadline = time.monotonic() + 300
    while not (part.is_file() and part.stat().st_size > 0):  # the bytes sent so far reach the disk
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    first.kill()
    first.wait()
    server.hold = None
    hold.set()
    second = subprocess.run([sys.executable, "-c", CHILD, url], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    path = download.local_path(url)
    assert second.stdout.strip() == str(path) and path.read_bytes() == PAYLOAD
    resumed_from = server.log[-1][1].get("Range")
    assert resumed_from and 0 < int(resumed_from[6:-1]) <= CUT  # it resumed the killed process's part
    assert cached_files(tmp_path) == [path.name]


def test_a_process_waiting_for_a_download_killed_meanwhile_says_it_downloads_the_file_itself(server, tmp_path, capsys):
    """The waiting process took over a killed process's download without a word after "waiting for process N to
    finish downloading": the download it then made, bar and all, came unexplained (forty-third session's audit)."""
    url = f"{server.base}/ada_tiny.pkl"
    hold = server.hold = threading.Event()
    first = child(url)
    try:
        assert server.streaming.wait(timeout=300), first.communicate()
        waiter, err = waiting_fetch(url, capsys)
        first.kill()
        first.wait()
    finally:
        server.hold = None
        hold.set()
    waiter.join(timeout=300)
    path = download.local_path(url)
    err += capsys.readouterr().err
    assert err.splitlines()[1:] == [f"toonlib: process {first.pid} stopped before {path.name} was downloaded: "
                                    "downloading it here"]
    assert path.read_bytes() == PAYLOAD and cached_files(tmp_path) == [path.name]


WITHOUT_TORCH = """
import sys
from toonlib.cli import main
from toonlib.download import torch_hub_checkpoints
ours = torch_hub_checkpoints()
assert main(["models"]) == 0 and "torch" not in sys.modules, "torch was imported"
import torch
print(ours == torch_hub_checkpoints() and str(ours), file=sys.stderr)
"""


@pytest.mark.parametrize("variables", [{"TORCH_HOME": "~/th"}, {"XDG_CACHE_HOME": "XDG"}, {}])
def test_models_lists_without_importing_torch_and_finds_torchs_folder(tmp_path, variables):
    """`toonlib models` imported torch (1.3 s, 0.2 s without) only to ask where torch hub keeps its weights: the same
    folder is found from torch's variables, as torch itself finds it once imported."""
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_HOME", "XDG_CACHE_HOME")}
    env.update(HOME=str(tmp_path), TOONLIB_CACHE=str(tmp_path / "cache"),
               **{k: v.replace("XDG", str(tmp_path / "xdg")) for k, v in variables.items()})
    result = subprocess.run([sys.executable, "-c", WITHOUT_TORCH], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    expected = {"TORCH_HOME": tmp_path / "th", "XDG_CACHE_HOME": tmp_path / "xdg" / "torch"}.get(
        next(iter(variables), None), tmp_path / ".cache" / "torch")
    assert result.stderr.strip() == str(expected / "hub" / "checkpoints")


def test_remove_deletes_the_file_and_its_partial_download_and_fetch_gets_it_again(server, tmp_path, capsys):
    """Freeing space meant finding the cache folder and deleting files by hand (the legend of `toonlib models` said
    so): `toonlib remove` deletes a model and a partial download, and says what it freed."""
    from toonlib.commands import _file_size

    name = register(f"{server.base}/ada_tiny.pkl")
    break_off(server, name)  # a download that breaks off: its partial download is kept
    models.MODELS["whole"] = dataclasses.replace(models.MODELS[name], name="whole", filename="whole.pkl")
    path = download.fetch("whole", progress=False)
    assert cached_files(tmp_path) == ["tiny.pkl.part", "tiny.pkl.part.source", "whole.pkl"]
    partial = sum(p.stat().st_size for p in (tmp_path / "cache").glob("tiny.pkl.part*"))

    assert main(["remove", "whole", name, "ffhq-1024-tf"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"removed whole: {path} ({_file_size(len(PAYLOAD))})",
        f"removed tiny: the partial download of tiny.pkl ({_file_size(partial)})",
        f"ffhq-1024-tf: not on this machine ({tmp_path / 'cache' / 'stylegan2-ffhq-config-f.pkl'})",
        f"freed {_file_size(len(PAYLOAD) + partial)}"]
    assert cached_files(tmp_path) == []
    assert download.remove("whole") == download.Removal(path, 0, False, False)  # nothing left to remove
    logged = len(server.log)
    assert download.fetch("whole", progress=False).read_bytes() == PAYLOAD and len(server.log) == logged + 1


def test_remove_of_a_model_linked_into_the_cache_keeps_its_target_and_says_so(tmp_path, capsys):
    """A copy kept elsewhere linked into the cache (no second download): removing it said "freed 846 kB", only the link
    gone (thirty-third session's audit)."""
    kept = tmp_path / "keep" / "ffhq.pkl"
    kept.parent.mkdir()
    shutil.copyfile(FIXTURES / "ada_tiny.pkl", kept)
    name = register("http://example.invalid/ada_tiny.pkl")
    link = tmp_path / "cache" / "tiny.pkl"
    link.parent.mkdir()
    link.symlink_to(kept)
    models.MODELS["gone"] = dataclasses.replace(models.MODELS[name], name="gone", filename="gone.pkl")
    (tmp_path / "cache" / "gone.pkl").symlink_to(tmp_path / "nowhere.pkl")  # a link to nothing goes too
    assert main(["remove", name, "gone"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"removed tiny: the link {link} (0 B; its target {kept} is kept)",
        f"removed gone: {tmp_path / 'cache' / 'gone.pkl'} (0 B)"]
    assert kept.read_bytes() == PAYLOAD and cached_files(tmp_path) == []


def test_remove_of_a_partial_download_by_its_listed_name_waits_for_its_download(server, tmp_path, capsys):
    """`toonlib models` lists a partial download as X.part (and X.part.source): removing it by that name took the
    .part's own lock, not the download's, and deleted the file a running download was writing (which then failed,
    its bytes lost), leaving X.part.source and a stray lock. A cache file named that is not there is "not on this
    machine", as a registry name is (it was an "unknown model", the whole registry listed)."""
    from toonlib.commands import _file_size
    from toonlib.files import file_lock

    name = register(f"{server.base}/ada_tiny.pkl")
    break_off(server, name)  # a download that breaks off: its partial download is kept
    capsys.readouterr()  # its retries, said
    cache = tmp_path / "cache"
    assert cached_files(tmp_path) == ["tiny.pkl.part", "tiny.pkl.part.source"]
    partial = sum(p.stat().st_size for p in cache.glob("tiny.pkl.part*"))
    for listed in ("tiny.pkl.part", "tiny.pkl.part.source"):
        with file_lock(cache / "tiny.pkl"):  # its download under way (the lock is refused in this process alike)
            assert main(["remove", listed]) == 2
        assert capsys.readouterr().err == (f"toonlib remove: error: '{listed}' is being downloaded by this process "
                                           f"(it holds {cache / '.locks' / 'tiny.pkl.lock'}): remove it once that "
                                           "download has ended\n")
        assert cached_files(tmp_path) == ["tiny.pkl.part", "tiny.pkl.part.source"]
    (cache / "tiny.pkl").write_bytes(PAYLOAD)  # a whole file beside it stays: only the partial download was named
    assert main(["remove", "tiny.pkl.part"]) == 0
    assert capsys.readouterr().out == (f"removed tiny.pkl.part: the partial download of tiny.pkl "
                                       f"({_file_size(partial)})\n")
    assert cached_files(tmp_path) == ["tiny.pkl"]
    assert sorted(p.name for p in (cache / ".locks").iterdir()) == ["tiny.pkl.lock"]  # no tiny.pkl.part.lock
    assert main(["remove", "tiny.pkl.part.source", "gone.pkl"]) == 0  # removed already; never there
    assert capsys.readouterr().out == (f"tiny.pkl.part.source: not on this machine ({cache / 'tiny.pkl.part.source'})\n"
                                       f"gone.pkl: not on this machine ({cache / 'gone.pkl'})\n")


def test_remove_takes_the_path_that_fetch_printed(server, tmp_path, capsys):
    """`toonlib fetch` prints the file's path, the natural thing to paste into `toonlib remove`, which refused it:
    "is a file here, not one of toonlib's downloads". A path of the cache's file, or of a registry file in torch
    hub's folder, is removed as its name is."""
    from toonlib.commands import _file_size

    name = register(f"{server.base}/ada_tiny.pkl")
    assert main(["fetch", name]) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert path == tmp_path / "cache" / "tiny.pkl"
    assert main(["remove", str(path)]) == 0
    assert capsys.readouterr().out == f"removed tiny.pkl: {path} ({_file_size(len(PAYLOAD))})\n"
    assert cached_files(tmp_path) == []
    server.files["/w.pth"] = torch_bytes({"conv.weight": torch.ones(2, 2)})
    weights = download.fetch(register_weights(f"{server.base}/w.pth"), progress=False)
    assert main(["remove", str(weights)]) == 0
    assert capsys.readouterr().out.startswith(f"removed {weights.name}: {weights} (")
    assert not weights.exists()
    elsewhere = tmp_path / "mine.pkl"  # a link placed in the cache is the cache's file: its folder is what counts
    elsewhere.write_bytes(PAYLOAD)
    (tmp_path / "cache" / "linked.pkl").symlink_to(elsewhere)
    assert main(["remove", str(tmp_path / "cache" / "linked.pkl")]) == 0
    assert capsys.readouterr().out.startswith("removed linked.pkl: ")
    assert not (tmp_path / "cache" / "linked.pkl").is_symlink() and elsewhere.is_file()


def test_remove_refuses_a_file_being_downloaded_and_an_unknown_name_removes_nothing(server, tmp_path, capsys,
                                                                                      monkeypatch):
    from toonlib.files import file_lock, lock_file_for

    name = register(f"{server.base}/ada_tiny.pkl")
    path = download.fetch(name, progress=False)
    assert main(["remove", name, "ffhq-1024-tfx"]) == 2  # a misspelt name: nothing is deleted
    assert "unknown model 'ffhq-1024-tfx'. Did you mean 'ffhq-1024-tf'?" in capsys.readouterr().err
    assert path.exists()
    with file_lock(path):  # a download of it under way (here, in this process: the lock is refused alike)
        assert main(["remove", name]) == 2
    assert capsys.readouterr().err == (f"toonlib remove: error: 'tiny' is being downloaded by this process (it "
                                       f"holds {lock_file_for(path)}): remove it once that download has ended\n")
    assert path.read_bytes() == PAYLOAD
    # a file of the cache by the name `toonlib models` lists it under ("the cache also holds ..."), with its partial
    # download; a file elsewhere is not toonlib's to delete
    (tmp_path / "cache" / "put-there.pkl").write_bytes(b"x" * 10)
    (tmp_path / "cache" / "put-there.pkl.part").write_bytes(b"x" * 5)
    elsewhere = tmp_path / "mine.pkl"
    elsewhere.write_bytes(b"x")
    assert main(["remove", "put-there.pkl", str(elsewhere)]) == 2  # checked before anything is deleted
    assert capsys.readouterr().err == (f"toonlib remove: error: {elsewhere} is a file here, not one of toonlib's "
                                       "downloads: remove deletes registry names, URLs and the cache's files by name "
                                       "(`toonlib models` lists them); delete other files yourself\n")
    assert (tmp_path / "cache" / "put-there.pkl").exists() and elsewhere.exists()
    monkeypatch.chdir(tmp_path)  # named as a file of the current folder, not of the cache: refused alike
    assert main(["remove", "mine.pkl"]) == 2
    assert capsys.readouterr().err.startswith("toonlib remove: error: mine.pkl is a file here, not one of toonlib's ")
    assert main(["remove", "put-there.pkl"]) == 0
    assert capsys.readouterr().out == (f"removed put-there.pkl: {tmp_path / 'cache' / 'put-there.pkl'} and its partial "
                                       "download (15 B)\n")
    assert cached_files(tmp_path) == ["tiny.pkl"]
    assert main(["remove", f"{server.base}/nothing.pkl"]) == 0  # a URL never fetched
    assert capsys.readouterr().out == (f"{server.base}/nothing.pkl: not on this machine "
                                       f"({download.local_path(f'{server.base}/nothing.pkl')})\n")
    # the file deleted and its partial download not: the error said only "cannot remove", as if nothing had gone
    path = download.fetch(name, progress=False)
    (tmp_path / "cache" / "tiny.pkl.part").write_bytes(b"x")

    def refused(part):
        raise PermissionError(13, "Permission denied", str(part))
    monkeypatch.setattr(download, "_discard", refused)
    assert main(["remove", name]) == 2
    assert capsys.readouterr().err == (f"toonlib remove: error: removed {path}, but not all of its partial download "
                                       "(tiny.pkl.part): Permission denied\n")
    assert not path.exists()
    missing = tmp_path / "no-such-cache"  # a misspelt --cache-dir: said only "not on this machine"
    assert main(["remove", name, "--cache-dir", str(missing)]) == 0
    assert capsys.readouterr().out == (f"tiny: not on this machine ({missing / 'tiny.pkl'}; there is no folder "
                                       f"{missing})\n")
    assert not missing.exists()


def test_a_plainly_damaged_file_in_torch_hub_is_downloaded_again(server, tmp_path):
    """An empty file, a web page or a zip cut short in torch hub's folder (a copy into it interrupted, a browser's
    error page saved there) was "cached" for good: `fetch` handed it back and face-alignment failed on it naming no
    file ("OSError: [Errno 22] Invalid argument"). It is "damaged" and downloaded again; a file placed by hand that
    may be whole is still used as it is."""
    whole = torch_bytes({"conv.weight": torch.ones(2, 2)})  # a zip
    server.files["/w.pth"] = whole
    name = register_weights(f"{server.base}/w.pth")
    placed = tmp_path / "torch" / "hub" / "checkpoints" / "weights-0123abcd.pth"
    placed.parent.mkdir(parents=True)
    for damaged in (b"", QUOTA_PAGE, whole[: len(whole) // 2]):
        placed.write_bytes(damaged)
        assert download.cache_state(name) == "damaged"
        assert download.fetch(name, progress=False) == placed and placed.read_bytes() == whole
        assert download.cache_state(name) == "cached"
    assert len(server.log) == 3
    placed.write_bytes(b"\x80\x02 a pickle of another kind")  # the libraries' own files are not judged by their ends
    assert download.fetch(name, progress=False) == placed and len(server.log) == 3
    placed.write_bytes(b"")
    server.files.pop("/w.pth")
    with pytest.raises(download.DownloadError, match=r"empty \(0 bytes\)"):  # the damage named beside the failure
        download.fetch(name, progress=False)


def test_a_failed_downloads_message_shows_no_login_or_token(server, tmp_path, capsys):
    """A URL's password and signed token, which converted files and damage messages leave out, were printed twice by a
    failed download: its headline and its list of sources (thirty-eighth session's audit)."""
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        dead = f"http://user:s3cret@127.0.0.1:{closed.getsockname()[1]}/x.pkl?token=abc"
    missing = f"{server.base}/missing.pkl?token=abc".replace("http://", "http://user:s3cret@")
    for url in (missing, dead):
        assert main(["fetch", url]) == 2
        err = capsys.readouterr().err
        assert "could not download 'http://127.0.0.1:" in err and ("/x.pkl'" in err or "/missing.pkl'" in err), err
        assert "s3cret" not in err and "token" not in err, err


def test_remove_by_the_path_of_a_cache_file_that_is_not_there_says_so(server, tmp_path, capsys):
    """`toonlib remove PATH` run twice (a cleanup script's second run) said "unknown model", exit 2, the whole registry
    listed, where the same file by name is "not on this machine"; a Drive file's partial download by the path of its
    `.part` (which it never has: its bytes are in `.part.gdown`) alike (thirty-eighth session's audit)."""
    name = register(f"{server.base}/ada_tiny.pkl")
    path = download.fetch(name, progress=False)
    assert main(["remove", str(path)]) == 0
    capsys.readouterr()
    for named in (path, path.with_name("tiny.pkl.part"), tmp_path / "cache" / "drive-abc"):  # gone; never there
        assert main(["remove", str(named)]) == 0
        assert capsys.readouterr().out == f"{named.name}: not on this machine ({named})\n"
    folder = tmp_path / "cache" / "d.pkl.part.gdown"  # a Drive file's partial download, by its `.part` path
    folder.mkdir()
    (folder / "d.pkl.part").write_bytes(b"x" * 10)
    (tmp_path / "cache" / "d.pkl.part.source").write_text('{"source": "gdrive:abc", "size": 20}')
    assert main(["remove", str(tmp_path / "cache" / "d.pkl.part")]) == 0
    assert capsys.readouterr().out.startswith("removed d.pkl.part: the partial download of d.pkl (")
    assert cached_files(tmp_path) == []


def test_remove_takes_a_drive_partial_downloads_folder_and_refuses_other_folders_in_its_own_words(tmp_path, capsys,
                                                                                                   monkeypatch):
    """`ls` of the cache shows a Drive file's partial download as `X.part.gdown/`: `toonlib remove X.part.gdown` said
    "Is a directory", exit 2, and removed nothing; another folder given by path got fetch's words ("fetch downloads
    registry names ..."), or was called a file (thirty-eighth session's audit)."""
    from toonlib.commands import _file_size

    cache = tmp_path / "cache"
    for named in ("d.pkl.part.gdown", str(cache / "d.pkl.part.gdown")):
        (cache / "d.pkl.part.gdown").mkdir(parents=True)
        (cache / "d.pkl.part.gdown" / "d.pkl.part").write_bytes(b"x" * 10)
        (cache / "d.pkl.part.source").write_text("{}")
        assert main(["remove", named]) == 0
        assert capsys.readouterr().out == (f"removed d.pkl.part.gdown: the partial download of d.pkl "
                                           f"({_file_size(12)})\n")
        assert cached_files(tmp_path) == []
    (cache / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    for folder in (cache / ".locks", cache / "models", tmp_path, "models"):  # "models": the cache's, by name
        assert main(["remove", str(folder)]) == 2
        assert capsys.readouterr().err == (f"toonlib remove: error: {folder} is a folder, not one of toonlib's "
                                           "downloads: remove deletes registry names, URLs and the cache's files by "
                                           "name (`toonlib models` lists them)\n")
    assert (cache / "models").is_dir()


def test_remove_takes_a_torch_hub_files_own_name(server, tmp_path, capsys):
    """`toonlib remove vgg16-397923af.pth`, LPIPS' file by its own name (the name fetch knows: "give 'lpips-vgg16'"),
    was looked for in the cache and said "not on this machine", the 553 MB left in torch hub's folder (thirty-eighth
    session's audit). A file of that name in the cache is still the cache's."""
    server.files["/w.pth"] = torch_bytes({"conv.weight": torch.ones(2, 2)})
    weights = download.fetch(register_weights(f"{server.base}/w.pth"), progress=False)
    assert weights.parent == tmp_path / "torch" / "hub" / "checkpoints"
    assert main(["remove", weights.name]) == 0
    assert capsys.readouterr().out.startswith(f"removed {weights.name}: {weights} (")
    assert not weights.exists()
    assert main(["remove", weights.name, str(weights)]) == 0  # removed already: by its name and its path alike
    assert capsys.readouterr().out == f"{weights.name}: not on this machine ({weights})\n" * 2
    download.fetch("tiny", progress=False)  # in torch hub's folder again, and a file of its name in the cache
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / weights.name).write_bytes(b"x")
    assert main(["remove", weights.name]) == 0
    assert capsys.readouterr().out == f"removed {weights.name}: {tmp_path / 'cache' / weights.name} (1 B)\n"
    assert weights.exists()


def test_a_pickle_downloaded_as_torch_weights_says_no_warning_of_torchs(server, tmp_path):
    """A pickle from a mirror in place of torch hub weights printed torch's "Detected pickle protocol 4 in the
    checkpoint ..." as a toonlib warning before the reason (thirty-eighth session's audit)."""
    import warnings

    server.files["/w.pth"] = PAYLOAD  # a network pickle, protocol 4
    name = register_weights(f"{server.base}/w.pth")
    with warnings.catch_warnings(record=True) as caught, pytest.raises(download.DownloadError,
                                                                       match="not a readable torch file"):
        warnings.simplefilter("always")
        download.fetch(name, progress=False)
    assert [str(w.message) for w in caught] == []


def test_a_cache_folder_that_links_to_a_missing_drive_is_said_so_with_what_to_do(server, tmp_path, capsys):
    """A cache folder (or torch hub's) kept on another drive through a symbolic link, the drive not mounted: fetch said
    mkdir's bare "[Errno 17] File exists", and `toonlib models` "no such folder yet", as if a download would make it
    (fortieth session's audit)."""
    cache, hub = tmp_path / "cache", tmp_path / "torch" / "hub"
    cache.symlink_to(tmp_path / "unmounted" / "toonlib")
    hub.parent.mkdir()
    hub.symlink_to(tmp_path / "unmounted" / "hub")
    models.MODELS["w"] = dataclasses.replace(models.MODELS[register_weights(f"{server.base}/w.pth")], name="w")
    name = register(f"{server.base}/ada_tiny.pkl")
    said = "which does not exist (a drive not mounted, a folder moved or deleted?)"
    with pytest.raises(FileNotFoundError) as caught:
        download.fetch(name, progress=False)
    assert str(caught.value) == (f"cannot download 'tiny': the cache folder {cache} is a symbolic link to "
                                 f"{tmp_path / 'unmounted' / 'toonlib'}, {said}: mount that drive or create the "
                                 "folder, or set TOONLIB_CACHE (or cache_dir=) to a folder elsewhere that "
                                 "you can write")
    assert main(["fetch", "w"]) == 2
    assert capsys.readouterr().err == (f"toonlib fetch: error: cannot download 'w': torch hub's folder "
                                       f"{hub / 'checkpoints'} is under {hub}, a symbolic link to "
                                       f"{tmp_path / 'unmounted' / 'hub'}, {said}: mount that drive or create the "
                                       "folder, or set TORCH_HOME to a folder elsewhere that you can write (the file "
                                       "goes into its hub/checkpoints)\n")
    assert server.log == [] and cache.is_symlink() and hub.is_symlink()  # nothing asked for, nothing made
    assert main(["models"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [
        f"toonlib cache: {cache}, a symbolic link to {tmp_path / 'unmounted' / 'toonlib'}, {said}: mount that drive or "
        "create the folder to download there",
        f"torch hub folder: {hub / 'checkpoints'}, under {hub}, a symbolic link to {tmp_path / 'unmounted' / 'hub'}, "
        f"{said}: mount that drive or create the folder to download there"]
    assert main(["remove", name]) == 0  # it may be on that drive: not "there is no folder"
    assert capsys.readouterr().out == (f"tiny: not on this machine ({cache / 'tiny.pkl'}; {cache} is a symbolic link "
                                       f"to {tmp_path / 'unmounted' / 'toonlib'}, {said})\n")
    (tmp_path / "unmounted" / "toonlib").mkdir(parents=True)  # the drive mounted: the same cache works
    assert download.fetch(name, progress=False) == cache / "tiny.pkl"


def test_a_partial_download_in_torch_hubs_folder_is_listed_and_removed_by_its_name_and_path(server, tmp_path, capsys):
    """Ctrl-C during LPIPS' 553 MB VGG16 leaves `vgg16-397923af.pth.part` (and its record) in torch hub's folder:
    `toonlib models` did not list it, `toonlib remove vgg16-397923af.pth.part` said "not on this machine" and its path
    "not one of toonlib's downloads" (fortieth session's audit)."""
    from toonlib.commands import _file_size

    server.files["/w.pth"] = torch_bytes({"conv.weight": torch.ones(400, 400)})  # 640 kB: more than a cut reply
    name = register_weights(f"{server.base}/w.pth")
    folder = tmp_path / "torch" / "hub" / "checkpoints"

    def broken_off_download(whole_files: bool = False) -> int:
        """A download that breaks off, its partial download kept (`break_off`); the bytes it takes."""
        break_off(server, name, whole_files=whole_files)
        capsys.readouterr()  # its retries, said
        assert listing(folder)[-2:] == ["weights-0123abcd.pth.part", "weights-0123abcd.pth.part.source"]
        return sum(p.stat().st_size for p in folder.glob("weights-0123abcd.pth.part*"))

    partial = broken_off_download(whole_files=True)  # as a kill leaves it: its server recorded as sending whole files
    (folder / "resnet-1234.pth.part").write_bytes(b"x")  # another library's: not toonlib's to list
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert (f"\ntorch hub's folder also holds weights-0123abcd.pth.part ({_file_size(partial)}, of no use: its server "
            "sends whole files only, the next fetch starts over) (partial downloads)\n") in out and "resnet" not in out
    assert main(["remove", "weights-0123abcd.pth.part", "weights-0123abcd.pth.part"]) == 0  # there, then gone
    assert capsys.readouterr().out.splitlines()[:2] == [
        f"removed weights-0123abcd.pth.part: the partial download of weights-0123abcd.pth ({_file_size(partial)})",
        f"weights-0123abcd.pth.part: not on this machine ({folder / 'weights-0123abcd.pth.part'})"]
    assert listing(folder) == ["resnet-1234.pth.part"]
    assert main(["models"]) == 0
    assert "torch hub's folder also holds" not in capsys.readouterr().out
    partial = broken_off_download()
    assert main(["remove", str(folder / "weights-0123abcd.pth.part.source")]) == 0  # by the path `ls` shows
    assert capsys.readouterr().out == (f"removed weights-0123abcd.pth.part.source: the partial download of "
                                       f"weights-0123abcd.pth ({_file_size(partial)})\n")
    assert listing(folder) == ["resnet-1234.pth.part"]


def test_fetch_and_load_network_refuse_flags_that_are_no_bool_whatever_the_source(server, tmp_path):
    """`fetch(validate="no")` validated and `validate=None` skipped the checks; `load_network(progress="no")` was
    refused for a download only, a local file took it (fortieth session's audit)."""
    name = register(f"{server.base}/ada_tiny.pkl")
    for flag in ("no", None, 0):
        with pytest.raises(TypeError, match=rf"^validate must be True or False, got {re.escape(repr(flag))}$"):
            download.fetch(name, progress=False, validate=flag)
        with pytest.raises(TypeError, match=rf"^progress must be True or False, got {re.escape(repr(flag))}$"):
            load_network(FIXTURES / "ada_tiny.pkl", progress=flag)
    assert server.log == [] and cached_files(tmp_path) == []


def _other_models_pickles(tmp_path: Path) -> dict[str, bytes]:
    """A StyleGAN3-like snapshot and a Projected GAN (FastGAN) one, as their files' bytes."""
    import nvidia_pickles
    from test_checkpoint_nvidia import _projected_gan_like

    from toonlib.checkpoints.safe_pickle import PersistentObject

    def make_sg3(snapshot):
        synthesis = snapshot["G_ema"].state["_modules"]["synthesis"]
        synthesis.state["_modules"]["input"] = PersistentObject("SynthesisInput", {"_modules": {}})

    return {"sg3": nvidia_pickles.write(nvidia_pickles.modified_fixture(make_sg3), tmp_path / "sg3.pkl").read_bytes(),
            "fastgan": nvidia_pickles.write(_projected_gan_like(), tmp_path / "fastgan.pkl").read_bytes()}


@pytest.mark.parametrize("name, said", [
    ("sg3", "G_ema is a StyleGAN3 (alias-free, -t/-r) network. toonlib implements StyleGAN2 only; use a StyleGAN2 "
            "checkpoint (for example the stylegan3 repo's stylegan2-*.pkl files)"),
    ("fastgan", "G_ema is a Generator that is not a StyleGAN2 network toonlib reads (its FastganSynthesis has no "
                "'block_resolutions'"),
    ("notes", "the file is not a checkpoint toonlib knows: expected a network pickle (.pkl)"),
])
def test_a_url_of_a_file_toonlib_does_not_read_is_said_as_the_readers_refusal(server, tmp_path, capsys, name, said):
    """A URL whose file came whole but holds another model (a StyleGAN3 pickle) was "could not download ...: every
    source failed", with the advice to download it in a browser and save it in the cache, where the same refusal
    waited; a Projected GAN pickle's ended in a traceback and stayed as a `.part` that every later run checked again
    (forty-first session's audit). The reader's reason is said, and the file is not kept."""
    server.files.update({f"/{key}.pkl": data for key, data in _other_models_pickles(tmp_path).items()})
    server.files["/notes.pkl"] = b"# notes, not a model\n" * 10
    url = f"{server.base}/{name}.pkl"
    with pytest.raises(download.UnusableDownloadError) as info:
        load_network(url)
    message = str(info.value)
    assert message.startswith(f"downloaded {url}: {said}"), message
    assert message.endswith("; toonlib cannot use this file (it was not kept)"), message
    assert "could not download" not in message and "browser" not in message and "save it" not in message
    assert str(tmp_path) not in message and ".part" not in message
    assert cached_files(tmp_path) == []
    assert main(["fetch", url]) == 2
    assert f"toonlib fetch: error: downloaded {url}: {said}" in capsys.readouterr().err
    assert cached_files(tmp_path) == []


def test_a_cut_download_of_a_url_is_still_a_failed_download(server, tmp_path):
    """Damage is no content to refuse: a URL's file cut short stays "could not download", a download to try again."""
    server.files["/cut.pkl"] = PAYLOAD[: len(PAYLOAD) // 2]
    with pytest.raises(download.DownloadError) as info:
        download.fetch(f"{server.base}/cut.pkl", progress=False)
    assert not isinstance(info.value, download.UnusableDownloadError)
    assert str(info.value).startswith(f"could not download '{server.base}/cut.pkl': every source failed.")


def test_the_cache_folder_advice_names_only_what_the_caller_has(server, tmp_path, monkeypatch, capsys):
    """"set TOONLIB_CACHE (or --cache-dir, cache_dir=)" was said to every caller: `toonlib blend` refuses --cache-dir,
    and `load_network` a cache_dir= (forty-second session's audit). Each caller is told of what it has."""
    name = register(f"{server.base}/ada_tiny.pkl")
    folder = download.local_path(name).parent
    real_mkdir = Path.mkdir

    def refuse(self, *args, **kwargs):
        if self.name in (folder.name, "read-only"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refuse)
    tail = "to a folder elsewhere that you can write"
    with pytest.raises(PermissionError) as info:  # a loader of toonlib's: no cache folder option
        load_network(name)
    assert str(info.value).endswith(f"; set TOONLIB_CACHE {tail}"), str(info.value)
    with pytest.raises(PermissionError) as info:  # Python's own fetch call takes cache_dir=
        download.fetch(name, progress=False)
    assert str(info.value).endswith(f"; set TOONLIB_CACHE (or cache_dir=) {tail}"), str(info.value)
    assert main(["fetch", name]) == 2
    assert capsys.readouterr().err.endswith(f"; set TOONLIB_CACHE (or --cache-dir) {tail}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PermissionError) as info:  # the folder given: TOONLIB_CACHE would change nothing
        download.fetch(name, progress=False, cache_dir="read-only")
    assert str(info.value).endswith("; give cache_dir= a folder elsewhere that you can write"), str(info.value)
    assert server.log == []


def test_models_says_damaged_files_apart_and_a_download_in_progress_as_such(server, tmp_path, capsys):
    """`toonlib models` counted damaged files "on this machine" (which the legend says of cached ones), and a partial
    download that another process was writing was "resumed by the next fetch" (forty-second session's audit). A
    download in progress is said so once: "(2.00 kB, being downloaded now) (downloads in progress)" said it twice
    (forty-third session's audit); beside other partial downloads, it is said of it alone."""
    from toonlib.files import file_lock

    name = register(f"{server.base}/ada_tiny.pkl")
    path = download.local_path(name)
    path.parent.mkdir(parents=True)
    path.write_bytes(PAYLOAD[:1000])  # cut short: damaged
    other = path.with_name("other.pkl")
    other.with_name("other.pkl.part").write_bytes(PAYLOAD[:2000])
    with file_lock(other):  # its download's lock, held as fetch holds it while it downloads
        assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert ("on this machine: 0 of these files, 0 B; 1 damaged file takes 1.00 kB (`toonlib fetch NAME` downloads it "
            "again)\n") in out, out
    # held by this process here (by another: test_a_download_in_progress_is_named_by_its_process_to_remove_and_...)
    assert "the cache also holds other.pkl.part (2.00 kB so far, by this process) (a download in progress)\n" in out
    assert main(["models"]) == 0  # the download ended: its bytes wait for the next fetch
    assert "other.pkl.part (2.00 kB) (partial downloads, resumed by the next fetch)\n" in capsys.readouterr().out
    more = path.with_name("more.pkl")
    more.with_name("more.pkl.part").write_bytes(PAYLOAD[:3000])
    with file_lock(other), file_lock(more):
        assert main(["models"]) == 0
    assert ("the cache also holds more.pkl.part (3.00 kB so far, by this process), other.pkl.part (2.00 kB so far, by "
            "this process) (downloads in progress)\n") in capsys.readouterr().out
    with file_lock(other):  # one of two in progress: said of that one
        assert main(["models"]) == 0
    assert ("the cache also holds more.pkl.part (3.00 kB), other.pkl.part (2.00 kB, being downloaded now by this "
            "process) (partial downloads; the others are resumed by the next fetch)\n") in capsys.readouterr().out


def test_remove_of_a_url_says_it_without_its_token(tmp_path, capsys):
    """`toonlib remove URL` printed the URL's token back, which every fetch message hides (forty-second session's
    audit)."""
    url = "http://user:pw@127.0.0.1:9/ada.pkl?token=SECRET123"
    assert main(["remove", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("http://127.0.0.1:9/ada.pkl: not on this machine (") and "SECRET123" not in out \
        and "pw@" not in out, out
