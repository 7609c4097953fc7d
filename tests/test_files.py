"""Files users get: atomic replacement with their normal permissions, flushed to disk before the rename, and
per-file locks between processes that a killed process never leaves behind."""
from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from toonlib import files
from toonlib.files import atomic_write_path, file_lock
from toonlib.images import save_image

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def umask():
    """Set the process umask for one test (restored afterwards)."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_outputs_get_the_users_normal_mode(tmp_path, umask, mask):
    umask(mask)
    save_image(Image.new("RGB", (4, 4)), tmp_path / "toon.png")
    assert mode(tmp_path / "toon.png") == 0o666 & ~mask  # not mkstemp's 0600
    assert files.default_file_mode(tmp_path) == 0o666 & ~mask
    assert os.listdir(tmp_path) == ["toon.png"]  # the probe and the temporary file are gone


def test_replacing_a_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "latent.npz"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    with atomic_write_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and mode(target) == 0o640


def test_writer_that_recreates_the_temporary_file(tmp_path, umask):
    umask(0o022)
    with atomic_write_path(tmp_path / "out.bin") as tmp:
        tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)  # e.g. a library that creates its own private file
        os.write(fd, b"data")
        os.close(fd)
    assert mode(tmp_path / "out.bin") == 0o644


def test_data_is_flushed_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        info = os.fstat(fd)
        events.append(("fsync", "folder" if stat.S_ISDIR(info.st_mode) else info.st_ino))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.stat(src).st_ino))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    with atomic_write_path(tmp_path / "snapshot.pt") as tmp:
        tmp.write_bytes(b"weights")
        inode = os.stat(tmp).st_ino
    assert events == [("fsync", inode), ("replace", inode), ("fsync", "folder")]


def test_a_name_near_the_limit_is_written_and_one_past_it_refused_by_name(tmp_path):
    """A 245-byte name (valid) failed: its temporary file, `.<name>.<random>.tmp`, was 259 bytes. One past the
    file system's 255 failed with "[Errno 36] File name too long: '<path>'" (from stat()), after the work."""
    from toonlib.files import check_file_target

    near = tmp_path / ("a" + "\u00e9" * 120 + ".png")  # 245 bytes
    with atomic_write_path(near) as tmp:
        assert len(os.fsencode(tmp.name)) <= 255
        tmp.write_bytes(b"image")
    assert near.read_bytes() == b"image" and [p.name for p in tmp_path.iterdir()] == [near.name]
    past = tmp_path / ("a" + "\u00e9" * 127 + ".png")  # 259 bytes
    for write in (check_file_target, lambda path: atomic_write_path(path).__enter__()):
        with pytest.raises(OSError, match=r"its name is 259 bytes long, and file names here take 255 at most; "
                                          "choose a shorter name") as error:
            write(past)
        assert error.value.errno == errno.ENAMETOOLONG


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.pt"]


def test_a_target_no_file_can_be_written_to_is_named(tmp_path):
    """A folder, or a path under a file: OSError's own message named the temporary file ('.x.png.0d58.tmp')."""
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "notes").write_text("a file")
    with pytest.raises(IsADirectoryError, match="cannot write .*folder.png: it is a folder; name a file"):
        save_image(Image.new("RGB", (4, 4)), tmp_path / "folder.png")
    with pytest.raises(NotADirectoryError, match="cannot write .*notes/a/b.png: .*notes is a file, not a folder"):
        save_image(Image.new("RGB", (4, 4)), tmp_path / "notes" / "a" / "b.png")
    assert sorted(os.listdir(tmp_path)) == ["folder.png", "notes"] and os.listdir(tmp_path / "folder.png") == []


def test_home_folder_paths_are_written_and_read_in_the_home_folder(tmp_path, monkeypatch):
    """'~/x' used to be written into a folder named '~' in the current one, where loading '~/x' did not look."""
    import numpy as np
    import torch

    import toonlib
    from toonlib.projection import ProjectionResult, load_latent

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    G = toonlib.Generator(z_dim=8, w_dim=8, img_resolution=8, channel_base=32, channel_max=8)
    assert toonlib.save_network("~/g.safetensors", G) == tmp_path / "home" / "g.safetensors"
    assert toonlib.load_network("~/g.safetensors").G_ema.img_resolution == 8
    save_image(Image.new("RGB", (4, 4)), "~/x.png")
    result = ProjectionResult(w=torch.zeros(1, G.num_ws, 8), images=None, noise={}, losses=np.zeros((0, 1)),
                              space="w+", steps=0)
    result.save("~/w.npz")
    assert torch.equal(load_latent("~/w.npz"), result.w) and ProjectionResult.load("~/w.npz").space == "w+"
    assert sorted(os.listdir(tmp_path / "home")) == ["g.safetensors", "w.npz", "x.png"]
    assert not (tmp_path / "~").exists()


def test_a_folder_that_cannot_be_written_is_named_as_the_users_path(tmp_path, monkeypatch):
    """Not as the temporary file beside it ('.x.png.b5bc.tmp'), which the user never named."""
    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path.with_name(f".{path.name}.0000.tmp")))

    monkeypatch.setattr(files, "_create_temp", refuse)
    with pytest.raises(PermissionError, match=r"^cannot write .*out.png: .*Permission denied"):
        save_image(Image.new("RGB", (4, 4)), tmp_path / "out.png")


def test_a_file_that_cannot_be_replaced_is_refused_before_the_work(tmp_path, monkeypatch):
    """`toonlib project -o latent.npz` over another user's latent.npz in /tmp (sticky), or an immutable one, ran all
    its steps, then failed at the rename naming its temporary file, "/tmp/.latent.npz.dc7abcd3.tmp: operation not
    permitted", gone by then. Now `check_file_target` (run before the work) says why, and a rename that fails all the
    same names the user's file."""
    sticky = tmp_path / "shared"
    sticky.mkdir()
    sticky.chmod(0o1777)
    theirs = sticky / "latent.npz"
    theirs.write_bytes(b"theirs")
    files.check_file_target(theirs)  # root replaces it: no refusal
    monkeypatch.setattr(os, "geteuid", lambda: theirs.stat().st_uid + 1000)  # another user than the file's and folder's
    with pytest.raises(PermissionError, match=r"^cannot write .*latent.npz: it is another user's file in .*shared, a "
                                              r"folder where only a file's owner may replace it; name another file$"):
        files.check_file_target(theirs)
    files.check_file_target(sticky / "mine.npz")  # a new file there is fine
    monkeypatch.undo()
    sticky.chmod(0o777)

    fcntl = pytest.importorskip("fcntl")  # Linux's file flags: what `chattr +i` sets, as read back by the kernel
    real_ioctl = fcntl.ioctl

    def immutable(fd, request, flags, *args):
        if request != files._GET_FLAGS:
            return real_ioctl(fd, request, flags, *args)
        flags[0] = 0x80010  # as read here from a file after `chattr +i` (0x80000: extents)
        return 0

    monkeypatch.setattr(fcntl, "ioctl", immutable)
    with pytest.raises(PermissionError, match=r"^cannot write .*latent.npz: it is immutable \(chattr \+i\), so it "
                                              r"cannot be replaced; name another file$"):
        files.check_file_target(theirs)
    monkeypatch.undo()

    def refused(src, dst):  # the rename fails all the same (a flag set while the work ran)
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(src), str(dst))

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(PermissionError) as info, atomic_write_path(theirs) as tmp:
        tmp.write_bytes(b"mine")
    assert str(info.value) == f"cannot write {theirs}: Operation not permitted" and ".tmp" not in str(info.value)
    assert os.listdir(sticky) == ["latent.npz"] and theirs.read_bytes() == b"theirs"


def test_a_write_protected_file_is_refused_as_open_refuses_it():
    """`chmod 444 toon.png`: open(), Pillow's save and cp refuse to write it, while toonlib's command replaced it
    without a word (audit): refused before the work. A file toonlib writes for itself (a resumed run's latest.json,
    restored read-only) is replaced as before: refused, a run trained to its snapshot and stopped there (review). Run
    as a user (root writes any file, as toonlib then does)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp())
    folder.chmod(0o777)  # a folder the user may write
    root = os.geteuid() == 0
    try:
        if root:
            os.seteuid(65534)  # nobody, for the body: its checks are a user's
        try:
            protected = folder / "toon.png"
            protected.write_bytes(b"kept")
            protected.chmod(0o444)
            said = (f"cannot write {protected}: it is write-protected (`chmod u+w` it to allow writing it); name "
                    "another file")
            with pytest.raises(PermissionError) as info:
                files.check_file_target(protected)
            assert str(info.value) == said
            assert protected.read_bytes() == b"kept" and os.listdir(folder) == ["toon.png"]
            with atomic_write_path(protected) as tmp:
                tmp.write_bytes(b"new")
            assert protected.read_bytes() == b"new" and stat.S_IMODE(protected.stat().st_mode) == 0o444
            if root:  # another user's file this one may not write, in a folder it may (review): refused too
                os.seteuid(0)
                (folder / "theirs.png").write_bytes(b"theirs")  # root's, 0644
                os.seteuid(65534)
                with pytest.raises(PermissionError, match=r"theirs\.png: it is another user's file, which you may not "
                                                          r"write; name another file$"):
                    files.check_file_target(folder / "theirs.png")
        finally:
            if root:
                os.seteuid(0)
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize("code, said", [
    (errno.ENOSPC, "the disk is full (No space left on device); free some space or write it elsewhere"),
    # EFBIG (`ulimit -f`, a FAT32 drive's 4 GiB) was the bare "[Errno 27] File too large" (thirty-fifth session)
    (errno.EFBIG, "it is larger than may be written there (File too large: this shell's `ulimit -f`, or a FAT32 "
                  "drive's 4 GiB); lift the limit (`ulimit -f unlimited`) or write it to another disk"),
])
def test_a_full_disk_is_said_with_the_users_path_and_leaves_nothing(code, said, tmp_path):
    """ENOSPC while writing was Python's bare "[Errno 28] No space left on device" (safetensors: an error of its own),
    naming no file; a folder that cannot be written was already "cannot write PATH: ..."."""
    target = tmp_path / "toon.png"
    target.write_bytes(b"old")
    with pytest.raises(OSError) as info, atomic_write_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise OSError(code, os.strerror(code))
    assert info.value.errno == code
    assert str(info.value) == f"cannot write {target}: {said}"
    assert os.listdir(tmp_path) == ["toon.png"] and target.read_bytes() == b"old"


def test_a_folder_that_is_a_link_to_nothing_is_said_before_any_work(tmp_path):
    """`-o toons/` where toons links to a drive not mounted passed the checks; after the projection the write failed
    with mkdir's bare "File exists" (audit)."""
    (tmp_path / "toons").symlink_to("/media/no-such-stick/toons")
    said = (f"cannot write {tmp_path / 'toons' / 'b.safetensors'}: {tmp_path / 'toons'} is a symbolic link to "
            "/media/no-such-stick/toons, which does not exist (a drive not mounted, a folder moved or deleted?)")
    with pytest.raises(FileNotFoundError) as info:
        files.check_file_target(tmp_path / "toons" / "b.safetensors")
    assert str(info.value) == said
    result = subprocess.run([sys.executable, "-m", "toonlib", "convert", str(FIXTURES / "ada_tiny.pkl"),
                             str(tmp_path / "toons" / "b.safetensors")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr == f"toonlib convert: error: {said}\n"


def test_a_link_is_written_through_to_its_file(tmp_path, umask):
    """`current.png -> versions/v1.png`: the rename replaced the link by a file of its own and left v1.png as it was;
    open() and torch.save write through a link."""
    umask(0o022)
    v1 = tmp_path / "versions" / "v1.png"
    save_image(Image.new("RGB", (4, 4), "red"), v1)
    os.chmod(v1, 0o640)
    link = tmp_path / "current.png"
    link.symlink_to(os.path.join("versions", "v1.png"))
    save_image(Image.new("RGB", (4, 4), "blue"), link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("versions", "v1.png")
    with Image.open(v1) as image:
        assert image.getpixel((0, 0)) == (0, 0, 255)
    assert mode(v1) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["current.png", "versions"] and os.listdir(v1.parent) == ["v1.png"]

    dangling = tmp_path / "next.png"  # as open() does, a link to no file yet writes its target
    dangling.symlink_to(os.path.join("versions", "v2.png"))
    save_image(Image.new("RGB", (4, 4)), dangling)
    assert dangling.is_symlink() and sorted(os.listdir(v1.parent)) == ["v1.png", "v2.png"]
    # as open() does too: a link into no folder, and a loop of links, are refused (a folder was made, a loop replaced)
    (tmp_path / "nowhere.png").symlink_to(os.path.join("nodir", "x.png"))
    (tmp_path / "loop-a.png").symlink_to("loop-b.png")
    (tmp_path / "loop-b.png").symlink_to("loop-a.png")
    for name, message in (("nowhere.png", "in a folder that does not exist"), ("loop-a.png", "leads to no file")):
        with pytest.raises(OSError, match=rf"^cannot write {re.escape(str(tmp_path / name))}: .*{message}"):
            save_image(Image.new("RGB", (4, 4)), tmp_path / name)
    assert not (tmp_path / "nodir").exists() and (tmp_path / "loop-a.png").is_symlink()


def test_a_staged_write_through_a_link_is_handed_the_links_name(tmp_path):
    """`atomic_write_path(in_folder=True)` handed its writer a file named as the link's target: `save_latent` of
    `me-latent.npz -> latent.dat` warned "wrote latents, an .npz file, to '.latent.dat.<random>.tmp/latent.dat'", a
    name the user never gave, and `save_image` of `toon.png -> toon.dat` refused "Pillow writes no .dat files"
    (forty-fourth session's review). The writer sees the link's own name; its target is what is replaced."""
    import warnings

    import numpy as np

    from toonlib.projection import load_latent, save_latent

    latent, toon = tmp_path / "me-latent.npz", tmp_path / "toon.png"
    latent.symlink_to("latent.dat")
    toon.symlink_to("toon.dat")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with atomic_write_path(latent, in_folder=True) as tmp:
            save_latent(np.zeros((1, 2, 3), np.float32), tmp)
        with atomic_write_path(toon, in_folder=True) as tmp:
            save_image(Image.new("RGB", (4, 4)), tmp)
    assert latent.is_symlink() and load_latent(tmp_path / "latent.dat").shape == (1, 2, 3)
    with Image.open(tmp_path / "toon.dat") as image:
        assert toon.is_symlink() and image.format == "PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latent.dat", "me-latent.npz", "toon.dat", "toon.png"]


def test_a_fifo_or_device_is_refused_not_replaced(tmp_path):
    """As root, saving to /dev/full replaced the device by a regular file; a fifo was replaced by anyone's save."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    (tmp_path / "link.png").symlink_to(fifo)
    for path in (fifo, tmp_path / "link.png"):
        message = rf"^cannot write {re.escape(str(path))}: it is a fifo \(named pipe\), which toonlib does not replace"
        with pytest.raises(OSError, match=message + "; name a file$"):
            save_image(Image.new("RGB", (4, 4)), path)
        with pytest.raises(OSError, match=message):
            files.check_file_target(path)  # before the work, as a folder is
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and sorted(os.listdir(tmp_path)) == ["link.png", "pipe.png"]


def test_an_empty_path_is_said_to_be_empty(tmp_path, monkeypatch):
    """'' (an unset variable, an empty form field) was Path('') = '.': "'.' is a folder, not a checkpoint file",
    "cannot read '' as an image: it is a folder", and Toonifier(base='') began with the toon model's download."""
    import toonlib
    from toonlib import download
    from toonlib.checkpoints import check_source, read_checkpoint
    from toonlib.images import read_image

    def no_download(*args, **kwargs):
        raise AssertionError("nothing is downloaded for an empty path")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(download, "fetch", no_download)
    G = toonlib.Generator(z_dim=8, w_dim=8, img_resolution=8, channel_base=32, channel_max=8)
    calls = [lambda: toonlib.load_network(""), lambda: read_checkpoint(""), lambda: check_source(""),
             lambda: toonlib.Toonifier(base=""), lambda: toonlib.align_face(""), lambda: read_image(""),
             lambda: save_image(Image.new("RGB", (4, 4)), ""), lambda: toonlib.save_network("", G),
             lambda: files.check_file_target("")]
    for call in calls:
        with pytest.raises(ValueError, match=r"^(base='': )?the path is empty \(''\), which an unset variable or an "
                                             "empty form field gives: give the path of a file or folder$"):
            call()  # Toonifier's named by its parameter, as check_source names every model it checks
    assert os.listdir(tmp_path) == []


def test_a_home_folder_of_no_user_is_said_to_be_none(capsys):
    """`~nouser/x.pkl` (a typo for ~/) was Python's "RuntimeError: Could not determine home directory." with a
    traceback (exit 1), from every command and load_network."""
    import toonlib
    from toonlib import cli

    said = ("~nouser/x.pkl: there is no user 'nouser' here, so ~nouser names no home folder; give the path another way "
            "(~/ is your own home folder)")
    with pytest.raises(ValueError) as error:
        toonlib.load_network("~nouser/x.pkl")
    assert str(error.value) == said
    assert cli.main(["info", "~nouser/x.pkl"]) == 2 and capsys.readouterr().err == f"toonlib info: error: {said}\n"
    assert files.user_path("~/x") == Path.home() / "x"


HOLDER = """
import sys
from toonlib.files import file_lock
with file_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the test closes stdin (or kills this process)
"""


def holder(path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_makes_the_second_process_wait(tmp_path):
    target = tmp_path / "ffhq.pkl"
    proc = holder(target)
    waited, entered = [], threading.Event()

    def take() -> None:
        with file_lock(target, on_wait=waited.append):
            entered.set()

    thread = threading.Thread(target=take)
    thread.start()
    assert not entered.wait(timeout=1.0)  # blocked while the other process holds the lock
    assert waited == [tmp_path / ".locks" / "ffhq.pkl.lock"]
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    assert entered.wait(timeout=60)
    thread.join()


def test_a_killed_holder_leaves_no_lock(tmp_path):
    target = tmp_path / "ffhq.pkl"
    proc = holder(target)
    proc.kill()
    proc.wait()
    waited = []
    with file_lock(target, on_wait=waited.append):
        pass
    assert waited == []  # the kernel released the dead process's lock: no waiting at all


def test_lock_without_waiting_refuses_at_once(tmp_path):
    """`wait=False` (a fine-tuning run folder): a held lock is a BlockingIOError at once, whoever holds it."""
    target = tmp_path / "run"
    proc = holder(target)
    waited = []
    with pytest.raises(BlockingIOError, match=r"run is locked by another process \(lock file .*/\.locks/run\.lock\)"):
        with file_lock(target, on_wait=waited.append, wait=False):
            pass
    assert waited == []
    proc.kill()
    proc.wait()
    with file_lock(target, wait=False) as lock_file:  # free once its holder is gone
        assert lock_file == files.lock_file_for(target) == tmp_path / ".locks" / "run.lock"
        with pytest.raises(BlockingIOError), file_lock(target, wait=False):  # held by this process: refused too
            pass


def test_a_lock_names_its_holder_while_it_holds_it(tmp_path, monkeypatch):
    """The download lock never named its holder, where the run lock did: a stopped job (Ctrl-Z) holding a download
    blocked everyone with nothing to find it by (forty-third session's audit). `file_lock`'s holder records its
    process id and host beside the lock file while it holds it; `lock_holder` reads it."""
    import json
    import socket

    target = tmp_path / "ffhq.pkl"
    record = tmp_path / ".locks" / "ffhq.pkl.holder"
    proc = holder(target)
    assert files.lock_holder(target) == files.LockHolder(proc.pid, socket.gethostname())
    assert str(files.lock_holder(target)) == f"process {proc.pid}"
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    assert not record.exists() and files.lock_holder(target) is None  # removed as it released the lock
    proc = holder(target)
    proc.kill()  # kill -9 leaves its record: a process that has ended is no holder
    proc.wait()
    assert record.is_file() and files.lock_holder(target) is None
    planted = tmp_path / "mine.txt"
    planted.write_text("mine")
    record.unlink()
    record.symlink_to(planted)  # a link in a shared cache is replaced, not written through
    with file_lock(target):
        assert str(files.lock_holder(target)) == "this process" and not record.is_symlink()
    assert planted.read_text() == "mine" and not record.exists()
    record.write_text(json.dumps({"pid": 123, "host": "gpu-7"}))  # another machine's, across NFS
    assert str(files.lock_holder(target)) == "process 123 on gpu-7"
    record.unlink()
    # a record that cannot be written (another user's, in a sticky shared cache) leaves the lock held all the same
    monkeypatch.setattr(files, "_create_temp", lambda *args, **kwargs: (_ for _ in ()).throw(PermissionError(13, "no")))
    with file_lock(target), pytest.raises(BlockingIOError):
        with file_lock(target, wait=False):
            pass
    assert not record.exists()


def test_a_lock_is_released_by_the_thread_that_ends_it(tmp_path):
    """A Trainer may take its run folder in one thread and finish its run in another."""
    target = tmp_path / "run"
    held = contextlib.ExitStack()
    thread = threading.Thread(target=lambda: held.enter_context(file_lock(target, wait=False)))
    thread.start()
    thread.join()
    with pytest.raises(BlockingIOError):
        with file_lock(target, wait=False):
            pass
    held.close()  # here, not in the thread that took it
    with file_lock(target, wait=False):
        pass


_LOCK_WITH_UMASK_022 = """
import os, sys
os.umask(0o022)  # most users' umask: their new files are 0644, their folders 0755
from toonlib.files import file_lock
with file_lock(sys.argv[1]):
    pass
"""


@pytest.mark.parametrize("folder_mode, folder_after, lock_after", [
    (0o755, 0o755, 0o644),  # one user's cache: nothing shared
    (0o2775, 0o2775, 0o664),  # a group's cache (setgid, group-writable)
    (0o1777, 0o1777, 0o666),  # everyone's, like /tmp (sticky)
], ids=["private", "group", "everyone"])
def test_lock_files_in_a_shared_cache_can_be_taken_by_the_other_users(folder_mode, folder_after, lock_after,
                                                                          tmp_path):
    """The first user's umask made `.locks` 0755 and its lock files 0644 even in a cache folder all may write, and
    the next user's download failed there (Permission denied). They are as writable as the cache folder now."""
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(folder_mode)
    subprocess.run([sys.executable, "-c", _LOCK_WITH_UMASK_022, str(cache / "ffhq.pkl")], check=True)
    assert stat.S_IMODE((cache / ".locks").stat().st_mode) == folder_after
    assert stat.S_IMODE((cache / ".locks" / "ffhq.pkl.lock").stat().st_mode) == lock_after


def _age(entry: Path, seconds: float) -> None:
    """Make the temporary file or folder `entry` (and what it holds) look untouched for `seconds`."""
    then = os.stat(entry).st_mtime - seconds
    for item in [entry, *(entry.iterdir() if entry.is_dir() else ())]:
        os.utime(item, (then, then), follow_symlinks=False)


def test_a_killed_writes_temporary_files_are_removed_by_the_next_write_of_its_output(tmp_path):
    """A process killed while it wrote (kill -9, the OOM killer) left its hidden temporary file, as large as the output,
    and nothing removed it (forty-first session's audit). The next write of that output removes those whose writer is
    gone; another output's, and one just written, are left alone."""
    stale_file = tmp_path / ".toon.png.0123abcd.tmp"
    stale_file.write_bytes(b"x" * 1000)
    stale_folder = tmp_path / ".toon.png.89abcdef.tmp"  # an in_folder write's, with safetensors' own file in it
    stale_folder.mkdir()
    (stale_folder / ".tmpAbC123").write_bytes(b"x" * 1000)
    others = tmp_path / ".other.png.01234567.tmp"
    others.write_bytes(b"x")
    for entry in (stale_file, stale_folder, others):
        _age(entry, 120)  # two minutes: past `files.STALE_TEMP_SECONDS`
    recent = tmp_path / ".toon.png.aaaaaaaa.tmp"  # a writer that has not locked it yet (or just wrote)
    recent.write_bytes(b"x")
    save_image(Image.new("RGB", (4, 4)), tmp_path / "toon.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.png.01234567.tmp", ".toon.png.aaaaaaaa.tmp",
                                                          "toon.png"]


def test_a_concurrent_writers_temporary_file_is_left_alone(tmp_path):
    """Its writer holds its lock: however long untouched, another write of the same output leaves it, and both
    writes end whole (the later rename wins)."""
    target = tmp_path / "notes.txt"
    with atomic_write_path(target) as first:
        first.write_text("first")
        _age(first, 10 * 24 * 3600)  # ten days: past `files.STALE_TEMP_SECONDS_UNLOCKED` too
        with atomic_write_path(target) as second:
            second.write_text("second")
        assert first.read_text() == "first" and target.read_text() == "second"
    assert target.read_text() == "first" and os.listdir(tmp_path) == ["notes.txt"]


def test_where_nothing_can_be_locked_a_temporary_file_is_stale_after_a_day(tmp_path, monkeypatch):
    """No lock says its writer is alive there (some network mounts): only a day untouched makes it a dead one's."""
    monkeypatch.setattr(files, "entry_held", lambda entry: None, raising=False)
    hour, days = tmp_path / ".n.txt.00000001.tmp", tmp_path / ".n.txt.00000002.tmp"
    for entry, age in ((hour, 3600), (days, 2 * 24 * 3600)):  # `files.STALE_TEMP_SECONDS_UNLOCKED` is a day
        entry.write_text("x")
        _age(entry, age)
    with atomic_write_path(tmp_path / "n.txt") as tmp:
        tmp.write_text("n")
    assert sorted(os.listdir(tmp_path)) == [".n.txt.00000001.tmp", "n.txt"]


_SAVE_KILLED_MID_WRITE = """
import resource, signal, sys
from toonlib.checkpoints import load_network, save_network
nets = load_network(sys.argv[1])
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
# the kernel kills the process (SIGXFSZ, which Python ignores by default) when a write passes 100 kB: midway
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
save_network(sys.argv[2], nets)
"""


def test_a_save_killed_while_it_writes_leaves_only_files_of_toonlibs_name_which_the_next_save_removes(tmp_path):
    """safetensors' save_file writes through a temporary file of its own (`.tmpXXXXXX`, mode 0600) beside the file it
    is given: a kill during a model's save left it beside the output, full size, under a name that said nothing of the
    output (forty-first session's audit). It lies in a temporary folder of toonlib's now, named after the output."""
    from toonlib.checkpoints import load_network, save_network

    out = tmp_path / "out.safetensors"
    nets = load_network(FIXTURES / "ada_tiny.pkl")
    save_network(out, nets.G_ema)
    before = out.read_bytes()
    killed = subprocess.run([sys.executable, "-c", _SAVE_KILLED_MID_WRITE, str(FIXTURES / "ada_tiny.pkl"), str(out)],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGXFSZ, killed.stderr
    assert out.read_bytes() == before  # the old file, whole
    left = [p for p in tmp_path.iterdir() if p != out]
    assert left and all(re.fullmatch(r"\.out\.safetensors\.[0-9a-f]{8}\.tmp", p.name) for p in left), left
    for entry in left:
        _age(entry, 120)
    save_network(out, nets)
    assert os.listdir(tmp_path) == ["out.safetensors"] and load_network(out).D is not None


@pytest.mark.parametrize("code, said", [
    (errno.ENOSPC, "the disk is full (No space left on device); free some space or write it elsewhere"),
    (errno.EFBIG, "it is larger than may be written there (File too large: this shell's `ulimit -f`, or a FAT32 "
                  "drive's 4 GiB); lift the limit (`ulimit -f unlimited`) or write it to another disk"),
])
def test_a_staged_sets_full_disk_is_said_once_naming_the_file_that_failed(code, said, tmp_path):
    """`toonify -o full/` said "cannot write full/hopper-toon.png: the disk is full (cannot write
    full/hopper-aligned.png: the disk is full (cannot write full/.hopper-aligned.png.c622320b.tmp/hopper-aligned.png:
    ...": each staged file's `atomic_write_path`, and the writer's own inside it, wrapped the error again, naming a file
    written well first and the temporary one last (forty-fifth session's audit). Said once, of the file that failed."""
    toon, aligned = tmp_path / "hopper-toon.png", tmp_path / "hopper-aligned.png"
    aligned.write_bytes(b"old")
    with pytest.raises(OSError) as info, contextlib.ExitStack() as staged:
        save_image(Image.new("RGB", (4, 4)), staged.enter_context(atomic_write_path(toon, in_folder=True)))
        with atomic_write_path(staged.enter_context(atomic_write_path(aligned, in_folder=True))) as tmp:  # save_image's
            tmp.write_bytes(b"half")
            raise OSError(code, os.strerror(code))
    assert info.value.errno == code
    assert str(info.value) == f"cannot write {aligned}: {said}"
    assert os.listdir(tmp_path) == ["hopper-aligned.png"] and aligned.read_bytes() == b"old"


def _mount_table_listing(tmp_path: Path, *paths: Path) -> Path:
    """A /proc/self/mountinfo that lists `paths` as mount points (as a file bind-mounted on its own is), besides /."""
    table = tmp_path / "mountinfo"
    lines = ["22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw"]
    lines += [f"{30 + i} 22 8:1 /host/out.png {str(path).replace(' ', chr(92) + '040')} rw,relatime shared:1 - ext4 "
              "/dev/sda1 rw" for i, path in enumerate(paths)]
    table.write_text("\n".join(lines) + "\n")
    return table


def test_a_file_mounted_on_its_own_is_refused_before_the_work_and_replaces_none_of_its_set(tmp_path, monkeypatch):
    """An output that is a file bind-mounted on its own (`docker run -v $PWD/out.png:/w/out.png`) cannot be renamed
    over: it failed after the work with "[Errno 16] Device or resource busy: 'bm2/.out.png.01d5b325.tmp' ->
    'bm2/out.png'", and in `toonify` after the other files of its set were replaced (forty-fifth session's audit).
    `check_file_target` refuses it before the work, the rename's error names it, and a staged set replaces none."""
    folder = tmp_path / "w"
    folder.mkdir()
    mounted, other = folder / "my out.png", folder / "my out-latent.npz"  # a space: '\040' in the mount table
    mounted.write_bytes(b"the host's file")
    other.write_bytes(b"old latent")
    monkeypatch.setattr(files, "MOUNT_TABLE", str(_mount_table_listing(tmp_path, mounted)), raising=False)
    why = ("it is a mount point (a file mounted on its own, as `docker run -v FILE:...` mounts one), so it cannot be "
           "replaced (mount its folder instead)")
    with pytest.raises(PermissionError) as info:
        files.check_file_target(mounted)
    assert str(info.value) == f"cannot write {mounted}: {why}; name another file"
    files.check_file_target(other)  # a file beside it is no mount point

    real_replace = os.replace

    def busy(src, dst):  # what the kernel says of a rename over a mount point
        if Path(dst) == mounted:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(src), str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", busy)
    monkeypatch.setattr(files, "MOUNT_TABLE", str(tmp_path / "no-such-table"))  # not foreseen: the rename says it
    with pytest.raises(OSError) as info:
        save_image(Image.new("RGB", (4, 4)), mounted)
    assert str(info.value) == f"cannot write {mounted}: {why}" and info.value.errno == errno.EBUSY
    monkeypatch.setattr(files, "MOUNT_TABLE", str(_mount_table_listing(tmp_path, mounted)))
    with pytest.raises(PermissionError) as info, files.StagedFiles() as staged:
        save_image(Image.new("RGB", (4, 4)), staged.stage(mounted))
        with open(staged.stage(other), "wb") as f:  # staged last, renamed first
            f.write(b"new latent")
    assert str(info.value) == f"cannot write {mounted}: {why}; the files written with it were not replaced either"
    assert sorted(os.listdir(folder)) == ["my out-latent.npz", "my out.png"]
    assert other.read_bytes() == b"old latent" and mounted.read_bytes() == b"the host's file"


def test_a_file_bind_mounted_on_its_own_is_refused_before_the_work(tmp_path):
    """As the test above, with a real bind mount of a file (root only, where mounting is allowed)."""
    import shutil

    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting takes root")
    host, mounted = tmp_path / "host.png", tmp_path / "w" / "out.png"
    save_image(Image.new("RGB", (4, 4), "red"), host)
    mounted.parent.mkdir()
    mounted.touch()
    if subprocess.run(["mount", "--bind", str(host), str(mounted)], capture_output=True).returncode != 0:
        pytest.skip("this machine allows no bind mount")
    try:
        with pytest.raises(PermissionError, match=rf"^cannot write {re.escape(str(mounted))}: it is a mount point"):
            files.check_file_target(mounted)
        with pytest.raises(OSError, match=rf"^cannot write {re.escape(str(mounted))}: it is a mount point .*\(mount "
                                          r"its folder instead\)$"):
            save_image(Image.new("RGB", (4, 4), "blue"), mounted)
        assert os.listdir(mounted.parent) == ["out.png"]
    finally:
        subprocess.run(["umount", str(mounted)], check=True)
    with Image.open(host) as image:
        assert image.getpixel((0, 0)) == (255, 0, 0)


def test_a_path_ending_with_a_slash_names_a_folder_and_is_not_written(tmp_path):
    """`save_network("blends/", G)`, `save_latent(w, "latents.npz/")` and `save_image(image, "toon.png/")` wrote files
    `blends`, `latents.npz` and `toon.png` (Path() drops the '/'), where open() refuses such a name and the command
    line takes `-o NAME/` for a folder (forty-fifth session's audit)."""
    import numpy as np
    from tiny import tiny_generator

    from toonlib.checkpoints import save_network
    from toonlib.projection import save_latent

    for save, name in ((lambda path: save_network(path, tiny_generator(0)), "v2.safetensors"),
                       (lambda path: save_latent(np.zeros((1, 2, 3), np.float32), path), "latents.npz"),
                       (lambda path: save_image(Image.new("RGB", (4, 4)), path), "toon.png")):
        path = f"{tmp_path}/{name}/"
        with pytest.raises(IsADirectoryError) as info:
            save(path)
        assert str(info.value) == f"cannot write {path}: it names a folder (it ends with '/'); name a file in it, or " \
                                  "drop the '/'"
        with pytest.raises(IsADirectoryError):
            files.check_file_target(path)  # before the work, too
    assert os.listdir(tmp_path) == []
