"""Downloads against a real HTTP server on 127.0.0.1: cache, resume, mirrors, checks and error messages."""
from __future__ import annotations

import dataclasses
import hashlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from toonlib import download, models
from toonlib.checkpoints import load_network
from toonlib.models import ModelInfo

FIXTURES = Path(__file__).parent / "fixtures"
PAYLOAD = (FIXTURES / "ada_tiny.pkl").read_bytes()
QUOTA_PAGE = (b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>"
              b"<p class=\"uc-error-caption\">Sorry, you can't view or download this file at this time.</p>"
              b"<p class=\"uc-error-subcaption\">Too many users have viewed or downloaded this file recently. "
              b"Please try accessing the file again later.</p></body></html>")
CUT = 300_000  # bytes a broken connection delivers


@dataclasses.dataclass
class ServerState:
    """What the test server serves and how it misbehaves; `log` records (path, headers) per request."""

    base: str
    files: dict[str, bytes]
    log: list[tuple[str, dict[str, str]]] = dataclasses.field(default_factory=list)
    fail_first: int = 0  # answer this many requests with 503
    cut_responses: int = 0  # announce the full length but drop the connection after CUT bytes, this many times
    ranges: bool = True  # honour Range requests

    def paths(self) -> list[str]:
        return [path for path, _ in self.log]


class Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        state.log.append((self.path, dict(self.headers)))
        if state.fail_first > 0:
            state.fail_first -= 1
            self.send_error(503)
            return
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        status, start = 200, 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match and state.ranges:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        chunk = body[start:]
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if body.startswith(b"<") else "application/octet-stream")
        self.send_header("Content-Length", str(len(chunk)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        if state.cut_responses > 0:
            state.cut_responses -= 1
            chunk = chunk[:CUT]
        self.wfile.write(chunk)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = ServerState(base=f"http://127.0.0.1:{httpd.server_address[1]}", files={"/ada_tiny.pkl": PAYLOAD})
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Cache in a temp folder, no Colab Drive, no waiting between retries, registry changes undone."""
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "DRIVE_ROOT", tmp_path / "no-drive")
    monkeypatch.setattr(download, "RETRY_DELAYS", (0.0, 0.0))
    monkeypatch.setattr(models, "MODELS", dict(models.MODELS))


def register(*sources: str, **changes) -> str:
    """Add a test model with these sources to the registry; returns its name."""
    info = ModelInfo(name="tiny", description="test", sources=sources, filename="tiny.pkl", format="nvidia",
                     resolution=32, license="test", origin="http://example.invalid")
    models.MODELS["tiny"] = dataclasses.replace(info, **changes)
    return "tiny"


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


def test_cache_folder_choice(server, tmp_path, monkeypatch):
    register(f"{server.base}/ada_tiny.pkl")
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "mine"))
    assert download.cache_dir() == tmp_path / "mine"
    assert download.fetch("tiny", progress=False) == tmp_path / "mine" / "tiny.pkl"
    assert download.fetch("tiny", cache_dir=tmp_path / "arg", progress=False) == tmp_path / "arg" / "tiny.pkl"

    monkeypatch.delenv("TOONLIB_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert download.cache_dir() == tmp_path / "home" / ".cache" / "toonlib"
    (tmp_path / "drive").mkdir()
    monkeypatch.setattr(download, "DRIVE_ROOT", tmp_path / "drive")
    assert download.cache_dir() == tmp_path / "drive" / "toonlib" / "cache"


def test_resume_within_one_call(server):
    server.cut_responses = 1
    path = download.fetch(register(f"{server.base}/ada_tiny.pkl"), progress=False)
    assert path.read_bytes() == PAYLOAD
    first, second = (headers.get("Range") for _, headers in server.log)
    assert first is None and re.fullmatch(r"bytes=\d+-", second)
    assert 0 < int(second[6:-1]) <= CUT


def test_broken_download_fails_then_resumes(server, tmp_path):
    name = register(f"{server.base}/ada_tiny.pkl")
    server.cut_responses, server.ranges = 99, False  # every try breaks off; no Range support: each restarts
    with pytest.raises(download.DownloadError, match="broke off") as info:
        download.fetch(name, progress=False)
    assert "no internet" not in str(info.value)
    assert len(server.log) == 3  # first try + 2 retries
    assert not (tmp_path / "cache" / "tiny.pkl").exists()
    kept = (tmp_path / "cache" / "tiny.pkl.part").stat().st_size
    assert 0 < kept <= CUT  # each try restarted rather than appended

    server.cut_responses, server.ranges = 0, True
    path = download.fetch(name, progress=False)
    assert server.log[-1][1].get("Range") == f"bytes={kept}-"
    assert path.read_bytes() == PAYLOAD
    assert cached_files(tmp_path) == ["tiny.pkl"]


def test_complete_part_is_checked_not_downloaded_again(server, monkeypatch):
    name = register(f"{server.base}/ada_tiny.pkl")
    check = download._check

    def interrupted(*args) -> None:
        raise KeyboardInterrupt  # e.g. the user stops the notebook while the file is being checked

    monkeypatch.setattr(download, "_check", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download.fetch(name, progress=False)
    monkeypatch.setattr(download, "_check", check)
    path = download.fetch(name, progress=False)
    assert server.log[-1][1].get("Range") == f"bytes={len(PAYLOAD)}-"  # answered 416: nothing left to fetch
    assert path.read_bytes() == PAYLOAD


def test_part_from_another_source_is_not_resumed(server, tmp_path):
    server.files["/other.pkl"] = PAYLOAD
    server.cut_responses, server.ranges = 99, False
    with pytest.raises(download.DownloadError):
        download.fetch(register(f"{server.base}/other.pkl"), progress=False)
    server.cut_responses, server.ranges = 0, True
    path = download.fetch(register(f"{server.base}/ada_tiny.pkl"), progress=False)
    request_path, headers = server.log[-1]
    assert request_path == "/ada_tiny.pkl" and "Range" not in headers
    assert path.read_bytes() == PAYLOAD


def test_retries_server_errors(server):
    server.fail_first = 2
    path = download.fetch(register(f"{server.base}/ada_tiny.pkl"), progress=False)
    assert path.read_bytes() == PAYLOAD
    assert len(server.log) == 3


@pytest.mark.parametrize("via_drive", [False, True])
def test_quota_page(server, tmp_path, monkeypatch, via_drive):
    server.files["/quota"] = QUOTA_PAGE
    monkeypatch.setattr(download, "_drive_url", lambda file_id: f"{server.base}/{file_id}")
    name = register("gdrive:quota" if via_drive else f"{server.base}/quota")
    with pytest.raises(download.DownloadError) as info:
        download.fetch(name, progress=False)
    message = str(info.value)
    assert "Too many users have viewed or downloaded this file recently" in message
    assert "your own Google Drive" in message
    assert str(tmp_path / "cache" / "tiny.pkl") in message  # where to put a file downloaded by hand
    if via_drive:
        assert "https://drive.google.com/file/d/quota/view" in message
    assert cached_files(tmp_path) == []


def test_mirror_fallback(server):
    path = download.fetch(register(f"{server.base}/missing.pkl", f"{server.base}/ada_tiny.pkl"), progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.paths() == ["/missing.pkl", "/ada_tiny.pkl"]  # a 404 is not retried


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


def test_no_connection(tmp_path):
    url = closed_port_url()
    with pytest.raises(download.DownloadError) as info:
        download.fetch(register(url), progress=False)
    message = str(info.value)
    assert "no internet connection" in message
    assert f"{url}: could not connect" in message
    assert "Connection refused" in message
    assert cached_files(tmp_path) == []


def test_gdrive_source_goes_through_gdown(server, tmp_path, monkeypatch):
    server.files["/drive/abc123"] = PAYLOAD
    monkeypatch.setattr(download, "_drive_url", lambda file_id: f"{server.base}/drive/{file_id}")
    path = download.fetch(register("gdrive:abc123"), progress=False)
    assert path.read_bytes() == PAYLOAD
    (request_path, headers), = server.log
    assert request_path == "/drive/abc123"
    assert "Mozilla" in headers["User-Agent"]  # gdown's user agent: gdown made the request, not requests.get
    assert cached_files(tmp_path) == ["tiny.pkl"]


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


def test_load_network_from_url(server, tmp_path):
    url = f"{server.base}/ada_tiny.pkl"
    nets = load_network(url)
    assert nets.G_ema is not None and nets.D is not None
    (name,) = cached_files(tmp_path)
    assert re.fullmatch(r"ada_tiny-[0-9a-f]{8}\.pkl", name)
    load_network(url)
    assert len(server.log) == 1


def test_url_filenames():
    a = download._url_filename("https://a.example/x/ffhq.pkl")
    b = download._url_filename("https://b.example/y/ffhq.pkl?download=1")
    assert a != b and a.startswith("ffhq-") and a.endswith(".pkl")
    assert download._url_filename("https://a.example/").startswith("download-")
    assert "/" not in download._url_filename("https://a.example/a%2Fb%20c")


def test_unknown_model_names(monkeypatch):
    monkeypatch.setattr(models, "MODELS", {"ffhq-1024-noaug": None, "ffhq-512-noaug": None})
    with pytest.raises(KeyError, match="Did you mean 'ffhq-1024-noaug'") as info:
        models.get_model("ffhq-1024-noag")
    assert isinstance(info.value, ValueError)
    assert "ffhq-512-noaug" in str(info.value)
    with pytest.raises(models.UnknownModelError):
        download.fetch("nothing-like-it")
