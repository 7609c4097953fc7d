"""File helpers shared by everything that writes user data: atomic, durable replacement and per-file locks.

- `atomic_write_path(path)`: write beside `path`, then replace it in one rename. The new file has the
  user's normal permissions (the umask's, or the mode of the file it replaces, never mkstemp's 0600)
  and is flushed to disk (fsync) before the rename, so a crash leaves the old file or the new one. A symbolic
  link is written through (its target is replaced, as `open(path, "w")` writes it); a device or a fifo is refused.
- `StagedFiles`: several files written all or none (a toonified photo's toon, crop, pasted photo and latent).
- `file_lock(path)`: an exclusive lock between processes for one file (two torchrun ranks or two
  notebooks fetching the same model; a fine-tuning run locks `run` inside its folder). It is an OS lock
  (`flock` through the `filelock` package): the kernel releases it when its holder dies, so a crashed process
  never leaves a lock that blocks others. `wait=False` refuses at once (BlockingIOError) instead of waiting. Its
  holder records its process id and host beside it while it holds it, which `lock_holder(path)` reads for the
  messages of those who wait or are refused.
"""
from __future__ import annotations

import array
import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import socket
import stat
import struct
import time
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Optional

from .messages import warn

__all__ = ["DISK_FULL", "LockHolder", "StagedFiles", "atomic_write_path", "backslash_hint", "default_file_mode",
           "file_lock", "lock_file_for", "lock_holder", "looks_like_html", "looks_like_pickle", "replace_file",
           "safetensors_header_length", "user_path", "visible_stem"]

LOCK_FOLDER = ".locks"  # lock files live here, beside the files they guard (like huggingface_hub's cache)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # the errors of a full disk (or a used-up quota)


@contextlib.contextmanager
def atomic_write_path(path: str | os.PathLike, *, in_folder: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    If the body raises, the temporary file is removed and `path` keeps its old content, so an
    interrupted save never leaves a half-written checkpoint or image behind. The result has the
    mode of the file it replaces, or else the default mode of new files (0666 minus the umask).
    `~` is the home folder (`user_path`); a symbolic link's target is what is replaced (`_written_file`); a
    folder that cannot be written, and a disk that fills up, are reported as `path`'s (OSError, errno kept).

    A process killed while it writes (kill -9, the OOM killer, a lost Colab runtime) leaves its temporary file,
    `.<name>.<random>.tmp` (`TEMP_FILE_NAME`): the next write of `path` removes those of earlier writes whose writer
    is gone (`_stale_temp`; a concurrent writer's, which holds its lock or has just written, is left alone).
    `in_folder`: the temporary file lies inside a temporary folder of that name, for a writer that writes through a
    temporary file of its own beside the file it is given (safetensors' `save_file`: its `.tmpXXXXXX`, full size,
    mode 0600, outlived a kill under a name that said nothing of the output; forty-first session's audit). That file
    has `path`'s own name, a link's and not its target's, as a write to `path` itself would: a writer that picks its
    format by the suffix (`save_image`) or warns of it (`save_latent`) judges the name the user gave (`me-latent.npz`
    linked to `latent.dat` warned of the temporary file's `.dat`; forty-fourth session's review).
    """
    refuse_folder_name(path)
    path = user_path(path)
    check_file_path(path)  # its own temporary file below is the write probe
    target = _written_file(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)  # a link's target's folder is there (`_written_file`)
        _remove_stale_temps(target)
        entry = _create_temp(target, inside=path.name) if in_folder else _create_temp(target)
    except OSError as e:  # PermissionError, read-only filesystem, ...: named by the user's path, not a temp file's
        raise _cannot_write(path, e, e.strerror or str(e)) from None  # no "[Errno 13]": a message to read
    held = hold_entry(entry)  # while it is held, no other write of `path` takes the temporary file for a dead one's
    tmp = entry / path.name if in_folder else entry
    try:
        existing = target.stat().st_mode if target.is_file() else None
        mode = stat.S_IMODE(existing if existing is not None else tmp.stat().st_mode)
        yield tmp
        try:
            replace_file(tmp, target, mode=mode)
        except OSError as e:  # it named the temporary file, which is gone
            if not isinstance(e, PermissionError) and e.errno not in _MOUNTED_ERRORS:
                raise
            # a file mounted on its own (EBUSY) was "[Errno 16] Device or resource busy: '.out.png.01d5.tmp'"
            # (forty-fifth session's audit)
            raise _cannot_write(path, e, _unreplaceable(target) or (MOUNTED_FILE if e.errno in _MOUNTED_ERRORS
                                                                     else e.strerror or str(e))) from None
    except OSError as e:
        if (said := getattr(e, "cannot_write", None)) is not None:  # said already, by a write inside this one's
            # said once, of the user's file: a staged toonify's full disk was said three times over, nesting each
            # level's advice, naming another staged file first and the temporary one last (forty-fifth session's audit)
            if said[0] in (tmp, entry) or entry in said[0].parents:
                raise _cannot_write(path, e, said[1]) from None
            raise
        if e.errno == errno.EFBIG:  # a bare "[Errno 27] File too large" (thirty-fifth session's audit)
            raise _cannot_write(path, e, f"it is larger than may be written there ({e.strerror or e}: this shell's "
                                         "`ulimit -f`, or a FAT32 drive's 4 GiB); lift the limit (`ulimit -f "
                                         "unlimited`) or write it to another disk") from None
        if e.errno not in DISK_FULL:
            raise
        raise _cannot_write(path, e, f"the disk is full ({e.strerror or e}); free some space or write it "
                                     "elsewhere") from None
    finally:
        remove_temp(entry)
        if held is not None:
            os.close(held)


class StagedFiles:
    """Several files written all or none, in a `with` block: `stage(target)` gives the path to write `target` at, a
    temporary file (`atomic_write_path(in_folder=True)`: in a temporary folder, under `target`'s own name, whose
    suffix says the format). On leaving the block without an error they replace their files together; on an error (a
    Ctrl-C, a full disk) none does. Written one by one and cut short, a set left this run's toon beside the last run's
    latent (forty-first session's audit: `toonlib toonify`, `commands._write_toons`; forty-fifth: notebook 04's save).
    Just before the renames every target is checked again for what no rename can replace (`_unrenamable`: a file
    mounted on its own), so that a rename bound to fail leaves the others unreplaced too (the files staged last are
    renamed first). `written`: the targets staged, in order; `replaced`: those of them that were files before, each
    asked just before its rename (asked when staged, a concurrent run's files written meanwhile were not counted:
    forty-third session's audit)."""

    def __init__(self) -> None:
        self.written: list[Path] = []
        self.replaced: list[Path] = []
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "StagedFiles":
        self._stack.__enter__()
        return self

    def stage(self, target: str | os.PathLike) -> Path:
        """Where to write `target`: its temporary file, which replaces `target` when the block ends well."""
        path = self._stack.enter_context(atomic_write_path(target, in_folder=True))
        target = user_path(target)
        self.written.append(target)
        self._stack.callback(lambda: self.replaced.append(target) if target.is_file() else None)  # before its rename
        return path

    def __exit__(self, kind, error, trace) -> bool:
        if kind is None:  # runs before the renames, which run last in, first out
            self._stack.callback(self._check_renames)
        return self._stack.__exit__(kind, error, trace)

    def _check_renames(self) -> None:
        """PermissionError naming the first target that no rename can replace (`_unrenamable`)."""
        for target in self.written:
            if why := _unrenamable(_written_file(target)):
                raise PermissionError(f"cannot write {target}: {why}; the files written with it were not replaced "
                                      "either")


def _cannot_write(path: Path, error: OSError, why: str) -> OSError:
    """`error` said as "cannot write PATH: why", of its type and with its errno (an EACCES, an ENOSPC), without the
    "[Errno N]" that setting it through the constructor would print."""
    named = type(error)(f"cannot write {path}: {why}")
    named.errno = error.errno
    named.cannot_write = (path, why)  # what it says, for a write it is nested in (`atomic_write_path`)
    return named


def refuse_folder_name(path: str | os.PathLike) -> None:
    """IsADirectoryError where `path`, as typed, ends with the folder separator ('toons/'): Path() drops it, and
    `save_network("blends/", G)` wrote a file `blends` where open() refuses such a name and the command line takes
    `-o NAME/` for a folder (forty-fifth session's audit)."""
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else ""
    if isinstance(text, str) and text.endswith(("/", os.sep)) and text.rstrip("/" + os.sep):
        raise IsADirectoryError(f"cannot write {text}: it names a folder (it ends with '{text[-1]}'); name a file in "
                                f"it, or drop the '{text[-1]}'")


def _written_file(path: Path) -> Path:
    """The file a write to `path` replaces: a symbolic link's target, which `open(path, "w")` and `torch.save` write
    through (a rename would replace the link by a file and leave its target as it was); else `path`. As open() does,
    a loop of links is refused (ELOOP), and so is a link into a folder that does not exist (it is not created)."""
    if not path.is_symlink():
        return path
    try:
        os.stat(path)  # follows the links
    except FileNotFoundError:
        pass  # a link to no file yet: its target is created, in its folder
    except OSError as e:  # a loop of links
        raise _cannot_write(path, e, f"{e.strerror or e} (a symbolic link that leads to no file)") from None
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: it links to {target}, in a folder that does not exist")
    return target


def backslash_hint(name: str | os.PathLike) -> str:
    """For a path not found that is written with Windows' separator where '/' is the separator (`..\\photos\\me.jpg`,
    copied from Windows) and names a file or folder with '/': that path, to append to the message; else ''."""
    text = os.fspath(name)
    posix = text.replace("\\", "/")
    if os.sep == "/" and "\\" in text and os.path.exists(posix):
        return f" (folders are separated by / here: {posix})"
    return ""


def visible_stem(name: str | os.PathLike) -> str:
    """A file name's stem without the dots that hide it (`.me.jpg`: 'me'), for the names of the files made from it;
    the stem itself where it is nothing but dots."""
    stem = Path(name).stem
    return stem.lstrip(".") or stem


def user_path(path: str | os.PathLike) -> Path:
    """`path` as a Path with `~` expanded: every path a user gives, read or written (a file written at a literal
    `~/x` would land in a folder named `~`). An empty path, what an unset variable or an empty form field gives, is
    a ValueError: Path('') is the current folder, and was read as that ("'.' is a folder"). Anything but a str or
    path-like is a TypeError naming what it got (`load_latent(image)` got os.fspath's "expected str, bytes ...")."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected a path (a str or Path), got {type(path).__name__}")
    if not os.fspath(path):
        raise ValueError("the path is empty (''), which an unset variable or an empty form field gives: give the "
                         "path of a file or folder")
    try:
        return Path(path).expanduser()
    except RuntimeError:  # Python's "Could not determine home directory." for ~nobody/x: a traceback, exit 1
        user = Path(path).parts[0]
        raise ValueError(f"{os.fspath(path)}: there is no user {user[1:]!r} here, so {user} names no home folder; "
                         "give the path another way (~/ is your own home folder)") from None


def is_url(source: object) -> bool:
    """Whether `source` (a model, weights file or photo argument) is a web address rather than a path or a name (its
    scheme in any case, as URLs allow: 'HTTP://...' was an unknown model name)."""
    return isinstance(source, str) and source[:8].lower().startswith(("http://", "https://"))


#: The hosts of a Google Drive file's links.
DRIVE_HOSTS = ("drive.google.com", "drive.usercontent.google.com", "docs.google.com")


#: Schemes spelt close to http(s) that are schemes of their own: refused as such, not taken for typos.
_OTHER_SCHEMES = ("ftp", "ftps", "sftp")


def _mistyped_url(source: object) -> str | None:
    """The http(s) address `source` looks like a typo of, else None: `https:/x` (a slash lost), `https//x` (the colon
    lost), `htps://x` (a scheme a letter off http or https). They were "no checkpoint at https:/x", "no checkpoint at
    https/x" (Path() folds the '//' the user typed) and "toonlib downloads http:// and https:// addresses only", of a
    typo of https:// (forty-fourth session's audit). A file or folder of that name here is no typo."""
    import difflib

    match = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*)(:/|//|://)([^/].*)", source) if isinstance(source, str) else None
    if match is None or is_url(source) or match[1].lower() in _OTHER_SCHEMES:
        return None
    close = difflib.get_close_matches(match[1].lower(), ("https", "http"), n=1, cutoff=0.75)
    if not close or (match[2] == "://" and close[0] == match[1].lower()) or os.path.lexists(os.path.expanduser(source)):
        return None
    return f"{close[0]}://{match[3]}"


def unread_address(source: object) -> str | None:
    """Why `source`, an address toonlib does not download, is not read, and what to give instead; None for anything
    else: another scheme than http(s) (file://, ftp://, s3://), a Google Drive folder's link, or a mistyped http(s)
    address (`_mistyped_url`). A file:// address was "no checkpoint at file:/..." of a file that is there, an ftp://
    one an unknown model name with the registry's 30 names, a Drive folder "a web page" to save under a hashed cache
    name (thirty-third session's audit)."""
    from urllib.parse import urlsplit

    if mistyped := _mistyped_url(source):
        return (f"{source} looks like a mistyped web address (no file or folder has that name here): did you mean "
                f"{mistyped}?")
    scheme = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]+)://", source) if isinstance(source, str) else None
    if scheme is None:
        return None
    if is_url(source):
        parts = urlsplit(source)
        if parts.hostname in DRIVE_HOSTS and "/folders/" in parts.path:
            return (f"{source} is a Google Drive folder's link, not a file's: open it in a browser, open the file in "
                    "it, and give that file's link (https://drive.google.com/file/d/<id>/view)")
        return None
    if scheme[1].lower() == "file":
        from urllib.request import url2pathname

        return f"{source} is a file:// address: give the file's path itself, {url2pathname(urlsplit(source).path)}"
    return (f"{source}: toonlib downloads http:// and https:// addresses only; download it another way and give the "
            "file's path")


def resolved_source(source: str) -> str:
    """The absolute path of `source` (a data set, a model) when it names a file or folder here (relative to the current
    folder, `~` expanded, links resolved), else `source` as it is: a web address, a registry name, a path that names
    nothing (its error then names it as given). What a fine-tuning run records, and a printed command names."""
    path = user_path(source)
    return str(path.resolve()) if not is_url(source) and path.exists() else source


def replaced_note(output: str | os.PathLike) -> str:
    """What a save adds to "wrote OUT" where a file was at OUT before (ask before it is written): a model, a photo
    or an hour's latent the user had was replaced without a word. The command line's outputs and the notebooks'
    saves say it alike (what a command reads is refused as its output: `checkpoints.refuse_to_replace_model`,
    `refuse_to_overwrite_input`). A name it cannot ask about is no file there: the write says why (a name too long
    was Python 3.11's raw "[Errno 36] File name too long" here, before `check_name_length`'s words; forty-fifth
    session's audit)."""
    try:
        there = user_path(output).is_file()
    except OSError:
        there = False
    return replacing_note(int(there))


def replacing_note(count: int, of: int = 1) -> str:
    """`replaced_note`'s words for `count` of `of` files written where files of their names were."""
    if not count:
        return ""
    if of == 1:
        return " (it replaced the file that was there)"
    if count == of:
        return f" (they replaced {count} files that were there)"
    if count == 1:
        return f" (1 of the {of} files replaced a file that was there)"
    return f" ({count} of the {of} files replaced files that were there)"


def refuse_to_overwrite_input(inputs: str | os.PathLike | list[Path], targets: list[Path], option: str = "-o",
                              what: str = "an input photo") -> None:
    """Refuse (ValueError) to write any of `targets` over one of the input photos (or the input `what` names, such as
    "the input latent"), a link to one too; `option` names the setting that chose the target, in the error."""
    inputs = {user_path(p).resolve() for p in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)}
    clash = next((target for target in targets if user_path(target).resolve() in inputs), None)
    if clash is not None:
        raise ValueError(f"refusing to overwrite {clash}: it is {what}; choose another {option}")


def check_file_target(path: str | os.PathLike) -> None:
    """Raise IsADirectoryError / NotADirectoryError / PermissionError / OSError, saying which, when a file cannot be
    written at `path` because `path` is a folder or a device, one of its parents is a file, or the nearest existing
    folder on the way is not writable (read-only, another user's): before the work whose result it is to hold, not
    after. A symbolic link is judged by its target, which the write replaces."""
    refuse_folder_name(path)
    path = user_path(path)
    check_file_path(path)
    target = _written_file(path)
    folder = next(parent for parent in target.absolute().parents if parent.exists())
    try:  # a probe, not os.access: that says yes to root everywhere, where a read-only or virtual folder says no
        _create_temp(folder / "write-probe").unlink()
    except OSError as e:
        raise PermissionError(f"cannot write {path}: files cannot be created in {folder} ({e.strerror or e}); "
                              "choose another place") from None
    check_replaceable(path)


#: Linux's FS_IOC_GETFLAGS (_IOR('f', 1, long)) and its immutable and append-only flags (`chattr +i`, `+a`).
_GET_FLAGS = 0x80006601 | (struct.calcsize("l") << 16)
_FIXED_FLAGS = {0x10: "immutable (chattr +i)", 0x20: "append-only (chattr +a)"}


#: Why a file mounted on its own cannot be replaced (`_unrenamable`), and the errors of its rename.
MOUNTED_FILE = ("it is a mount point (a file mounted on its own, as `docker run -v FILE:...` mounts one), so it cannot "
                "be replaced (mount its folder instead)")
_MOUNTED_ERRORS = (errno.EBUSY, errno.EXDEV)
#: The mount table `_is_mount_point` reads (Linux).
MOUNT_TABLE = "/proc/self/mountinfo"


def _is_mount_point(target: Path) -> bool:
    """Whether the file `target` is a mount point: a file bind-mounted on its own (`docker run -v
    ./out.png:/w/out.png`), which a rename cannot replace (EBUSY). `os.path.ismount` compares devices, and such a
    file from the same file system has its folder's: the mount table is read where there is one."""
    real = os.path.realpath(target)
    try:
        with open(MOUNT_TABLE, "rb") as table:
            lines = table.read().splitlines()
    except OSError:  # no /proc (another system): a file from another file system at least
        return os.path.ismount(real)
    unescaped = (re.sub(rb"\\([0-7]{3})", lambda code: bytes([int(code[1], 8)]), fields[4])  # '\040': a space
                 for fields in (line.split(b" ") for line in lines) if len(fields) > 4)
    return os.fsencode(real) in set(unescaped)


def _unrenamable(target: Path) -> str | None:
    """Why no rename can replace the file at `target` although its folder takes new files, else None: it is a mount
    point (`_is_mount_point`), immutable or append-only (Linux), or another user's in a sticky folder (/tmp), where
    only its owner (or root) may replace it. Unknown flags (another system, a file system without them) are taken as
    none."""
    try:
        info = target.stat()
        folder = target.parent.stat()
    except OSError:
        return None  # no file there yet: nothing to replace
    if stat.S_ISREG(info.st_mode) and _is_mount_point(target):
        return MOUNTED_FILE
    euid = os.geteuid() if hasattr(os, "geteuid") else None
    if (euid not in (None, 0) and folder.st_mode & stat.S_ISVTX and info.st_uid != euid
            and folder.st_uid != euid):
        return (f"it is another user's file in {target.parent}, a folder where only a file's owner may replace "
                "it")
    try:
        import fcntl

        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            flags = array.array("l", [0])
            fcntl.ioctl(fd, _GET_FLAGS, flags)
        finally:
            os.close(fd)
    except (ImportError, OSError):
        flags = array.array("l", [0])
    return next((f"it is {words}, so it cannot be replaced" for flag, words in _FIXED_FLAGS.items()
                 if flags[0] & flag), None)


def _unreplaceable(target: Path) -> str | None:
    """Why the file at `target` may not be replaced although its folder takes new files, else None: no rename can
    replace it (`_unrenamable`), or (not root, not on a read-only disk) it is one the user may not write: their own,
    write-protected (`chmod 444`), or another user's. `check_file_target` / `check_replaceable` refuse those before
    the work (a rename replaces the latter; toonlib's own files, a resumed run's, are replaced as before)."""
    if (why := _unrenamable(target)) is not None:
        return why
    try:
        info = target.stat()
    except OSError:
        return None
    euid = os.geteuid() if hasattr(os, "geteuid") else None
    if euid in (None, 0) or os.access(target, os.W_OK, effective_ids=os.access in os.supports_effective_ids):
        return None
    if os.statvfs(target).f_flag & getattr(os, "ST_RDONLY", 1):  # a read-only disk's error says so itself
        return None
    # replaced without a word, where open() and Pillow refuse (thirty-fifth session's audit): the user's own
    # protection (`chmod 444 toon.png`), or another user's file they may not write
    return ("it is write-protected (`chmod u+w` it to allow writing it)" if info.st_uid == euid else
            "it is another user's file, which you may not write")


#: What `check_file_path` calls the files that are neither a regular file nor a folder.
_SPECIAL_FILES = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
                  stat.S_IFIFO: "a fifo (named pipe)", stat.S_IFSOCK: "a socket"}


def check_file_path(path: Path) -> None:
    """IsADirectoryError / NotADirectoryError when `path` is a folder or lies under a file; OSError when it is
    something else that is not a regular file (a device, a fifo, a socket), which the rename would replace (as root,
    `/dev/full` became a regular file). Symbolic links are followed. A name too long is refused
    (`check_name_length`)."""
    check_name_length(path)  # first: stat() of such a name raised "[Errno 36] File name too long"
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder; name a file")
    if path.exists() and not path.is_file():
        kind = _SPECIAL_FILES.get(stat.S_IFMT(path.stat().st_mode), "not a regular file")
        raise OSError(f"cannot write {path}: it is {kind}, which toonlib does not replace; name a file")
    blocking = next((parent for parent in reversed(path.parents) if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise NotADirectoryError(f"cannot write {path}: {blocking} is a file, not a folder")
    dangling = next((parent for parent in reversed(path.parents) if dangling_link(parent)), None)
    if dangling is not None:  # "File exists" from mkdir, after a toonify's projection (thirty-fifth session's audit)
        raise FileNotFoundError(f"cannot write {path}: {dangling} is {dangling_link(dangling)}")


def is_pipe(path: str | os.PathLike) -> bool:
    """Whether `path` is (or links to) a pipe: `/dev/stdin` piped into, `<(curl ...)`, a named pipe; read once, it
    cannot be read again to check it first."""
    try:
        return stat.S_ISFIFO(os.stat(user_path(path)).st_mode)
    except (OSError, ValueError):
        return False


def dangling_link(path: str | os.PathLike) -> str | None:
    """"a symbolic link to TARGET, which does not exist (...)" when `path` is a link whose target is missing (a drive
    not mounted), else None: `ls` lists such a link, where "there is no such file" made no sense."""
    path = Path(path)
    if not path.is_symlink() or path.exists():  # exists: /dev/stdin, whose target (pipe:[N]) is no path to resolve
        return None
    try:
        path.resolve(strict=True)
    except FileNotFoundError:
        return (f"a symbolic link to {os.readlink(path)}, which does not exist (a drive not mounted, a folder moved or "
                "deleted?)")
    except (OSError, RuntimeError):  # a loop: links that lead round to themselves ("Symlink loop")
        return f"a symbolic link to {os.readlink(path)}, in a loop of symbolic links that leads to no file"
    return None


def check_replaceable(path: str | os.PathLike) -> None:
    """Raise PermissionError when the file at `path` is there and may not be replaced (`_unreplaceable`): the light
    check of each output of a run, `check_file_target` having probed their folder."""
    path = user_path(path)
    if why := _unreplaceable(_written_file(path)):
        raise PermissionError(f"cannot write {path}: {why}; name another file")


def check_name_length(path: str | os.PathLike, advice: str = "choose a shorter name") -> None:
    """Raise OSError (ENAMETOOLONG) when the file name of `path` is longer than its folder's file system takes (255
    bytes on most): a toonify of a photo with a long name failed at its outputs, after the projection."""
    path = user_path(path)
    length, limit = len(os.fsencode(path.name)), _name_max(path)
    if length > limit:
        raise _cannot_write(path, OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG)),
                            f"its name is {length} bytes long, and file names here take {limit} at most; {advice}")


def _name_max(path: Path) -> int:
    """The longest file name (bytes) the file system of `path`'s nearest existing folder takes (255 if unknown)."""
    folder = next((parent for parent in path.absolute().parents if parent.is_dir()), None)
    try:
        return os.pathconf(folder, "PC_NAME_MAX") if folder is not None else 255
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or the file system does not say
        return 255


def replace_file(src: str | os.PathLike, dst: str | os.PathLike, mode: Optional[int] = None) -> None:
    """Move `src` over `dst` durably: fsync `src`, set its `mode` (if given), rename, fsync the folder."""
    src, dst = Path(src), Path(dst)
    fd = os.open(src, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if mode is not None:
        os.chmod(src, mode)
    os.replace(src, dst)
    _fsync_folder(dst.parent)


def default_file_mode(folder: str | os.PathLike) -> int:
    """The permission bits a new file in `folder` gets (0666 minus the umask, or the folder's default ACL).

    Found by creating a probe file rather than by calling `os.umask`, which would change the umask of
    every thread of the process for a moment.
    """
    probe = _create_temp(Path(folder) / "mode-probe")
    try:
        return stat.S_IMODE(probe.stat().st_mode)
    finally:
        probe.unlink(missing_ok=True)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, on_wait: Optional[Callable[[Path], None]] = None, *,
              wait: bool = True) -> Iterator[Path]:
    """Hold an exclusive inter-process lock for `path` (which need not exist) while the body runs; yields the
    lock file (`lock_file_for(path)`: `<folder>/.locks/<name>.lock`).

    When another process holds the lock, `on_wait(lock_file)` is called once and this one waits until the holder
    is done or dies (the OS releases the locks of dead processes; on NFS the server does so when the client's lease
    expires); with `wait=False` a BlockingIOError is raised at once instead, also when the holder is another
    `file_lock` of this process. The lock is released when the body ends, in whichever thread. Locks coordinate
    processes on one machine, or on several that share an NFS mount with working locks; Google Drive mounts on
    two Colab machines do not share locks, and there the caller's own atomic rename must keep files whole. Where
    the filesystem supports no locks at all, the body runs unlocked after a warning. The lock file (and its folder)
    stays: a process waiting for the lock holds that file open, and were it deleted, a third process would lock a new
    file of the same name while the waiter went on with the old one: two holders at once (older filelock releases, which
    toonlib supports, do not check for that).

    While it holds the lock, this process records its id and host beside the lock file (`holder_file_for`), for the
    messages of those who wait or are refused (`lock_holder`); it removes the record before it releases the lock.
    The record is only for messages: where it cannot be written (another user's record in a shared cache), the lock
    is held all the same.
    """
    from filelock import FileLock, Timeout

    path = Path(path)
    lock_file = lock_file_for(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _create_shared_as(lock_file.parent, path.parent, folder=True)
    _create_shared_as(lock_file, path.parent, folder=False)
    try:
        lock = FileLock(str(lock_file), thread_local=False)
    except TypeError:  # filelock < 3.11 has no such option
        lock = FileLock(str(lock_file))
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if not wait:
                raise BlockingIOError(f"{path} is locked by another process (lock file {lock_file})") from None
            if on_wait is not None:
                on_wait(lock_file)
            lock.acquire()
    except NotImplementedError:  # filelock < 4 on a filesystem without flock
        warn(f"cannot lock files in {path.parent} (the filesystem has no locks); continuing unlocked")
        yield lock_file
        return
    record = holder_file_for(path)
    recorded = _record_holder(record)
    try:
        yield lock_file
    finally:
        if recorded:  # while still locked: the next holder's record stays
            with contextlib.suppress(OSError):
                record.unlink(missing_ok=True)
        lock.release()


def _create_shared_as(path: Path, parent: Path, *, folder: bool) -> None:
    """Create the lock folder or a lock file `path` if it is missing, writable by all who may write `parent`.

    In a cache several users share (a folder writable by its group or by all: 2775, 1777), the first user's umask
    made `.locks` 0755 and its lock files 0644, and the next user's download failed on them (Permission denied).
    Lock files hold nothing, so sharing them shares no data; the sticky bit is kept."""
    try:
        if folder:
            path.mkdir()
        else:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except FileExistsError:
        return
    parent_mode = parent.stat().st_mode
    shared = parent_mode & (stat.S_IWGRP | stat.S_IWOTH) | (parent_mode & stat.S_ISVTX if folder else 0)
    if shared:
        with contextlib.suppress(OSError):  # a file system without modes (FAT, some mounts): nothing to share
            os.chmod(path, stat.S_IMODE(path.stat().st_mode) | shared)


def lock_file_for(path: str | os.PathLike) -> Path:
    """The file `file_lock(path)` locks: `<folder>/.locks/<name>.lock`, beside `path`."""
    path = Path(path)
    return path.parent / LOCK_FOLDER / f"{path.name}.lock"


def holder_file_for(path: str | os.PathLike) -> Path:
    """The record of who holds `file_lock(path)`: `<folder>/.locks/<name>.holder`, beside its lock file (a lock file
    itself is emptied by older filelock releases each time a process tries to take it: no place for it)."""
    return lock_file_for(path).with_suffix(".holder")


class LockHolder(NamedTuple):
    """The process that holds a `file_lock`, as it recorded itself: its id and its machine's name."""

    pid: int
    host: str

    @property
    def this_process(self) -> bool:
        return self.pid == os.getpid() and self.host == socket.gethostname()

    def __str__(self) -> str:
        """'process 123'; 'process 123 on HOST' where it runs on another machine (a folder shared over NFS); 'this
        process'."""
        if self.host != socket.gethostname():
            return f"process {self.pid} on {self.host}"
        return "this process" if self.pid == os.getpid() else f"process {self.pid}"


def lock_holder(path: str | os.PathLike) -> LockHolder | None:
    """Who holds `file_lock(path)` now, as it recorded itself; None where that is not known: no record (a holder that
    has not written it yet, an older toonlib's, which wrote none; a filesystem without locks) or the record of a
    process of this machine that has ended (killed before it removed its record, which the next holder could not
    replace: another user's in a shared cache). Ask it while the lock is held: a free lock's last holder may have
    left its record (kill -9)."""
    record = holder_file_for(path)
    try:
        if not record.is_file():  # not a fifo that would block the read, nor a folder
            return None
        holder = json.loads(record.read_text()[:4096])
        pid, host = int(holder["pid"]), str(holder["host"])
    except (OSError, ValueError, KeyError, TypeError):  # unreadable, half written, or not toonlib's
        return None
    if pid <= 0 or host == socket.gethostname() and pid != os.getpid() and not _alive(pid):
        return None
    return LockHolder(pid, host)


def _alive(pid: int) -> bool:
    """Whether process `pid` of this machine is running (a stopped one is: Ctrl-Z); True where that cannot be asked
    (os.kill(pid, 0) ends the process on Windows)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process (EPERM): it runs
        return True
    return True


def _record_holder(record: Path) -> bool:
    """Write this process's id and host into `record` (`holder_file_for`); whether it was written. It is written
    beside it and renamed over it, which replaces a link planted there rather than writing through it (a cache may be
    shared); a failure is no error (the record is for messages only): where another user's record is there in a
    shared, sticky cache, it stays, and `lock_holder` sees that its process has ended."""
    tmp = None
    try:
        _remove_stale_temps(record)  # a process killed between the two steps below left its temporary file
        tmp = _create_temp(record)
        tmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")
        os.replace(tmp, record)
        return True
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        return False


#: The largest header the safetensors format allows, in bytes.
SAFETENSORS_MAX_HEADER = 100_000_000


def is_damage(exc: BaseException) -> bool:
    """Whether a reader's error (torch.load's, a parser's) says that the file is unusable, as a file cut short, damaged
    or of another kind is; not memory running out (MemoryError, torch's "can't allocate memory") nor the file system
    refusing it (an OSError: permission, I/O), which say nothing of its content. A derived file is deleted and made
    again only for damage: a valid cache deleted for want of memory needed the same memory to be made again."""
    return not (isinstance(exc, (MemoryError, OSError))
                or any(words in str(exc) for words in ("allocate memory", "not enough memory")))  # Linux, Windows


def discard_damaged(path: Path, exc: BaseException) -> tuple[bool, str]:
    """Delete `path`, a derived file (a cache) whose reader raised `exc`, where `exc` is damage (`is_damage`). Returns
    whether it was deleted, and why it is unusable in words (the error's kind and first line; with why it could not be
    deleted, where it could not)."""
    why = type(exc).__name__ + (f": {str(exc).strip().splitlines()[0][:120]}" if str(exc).strip() else "")
    if not is_damage(exc):
        return False, why
    try:
        path.unlink(missing_ok=True)
    except OSError as denied:
        return False, f"{why}; it cannot be deleted: {denied.strerror}"
    return True, why


def safetensors_header_length(head: bytes) -> int | None:
    """The header length of a file whose first bytes `head` start like a safetensors file (an 8-byte little-endian
    length, then the JSON header's "{"), whether or not the file is whole; else None. One home for that test: a
    length whose low byte is 0x80 starts like a pickle, so it comes before any pickle's (a pickle's first 8 bytes
    make a far larger length)."""
    if len(head) < 9 or head[8:9] != b"{":
        return None
    length = int.from_bytes(head[:8], "little")
    return length if 2 <= length <= SAFETENSORS_MAX_HEADER else None


def looks_like_pickle(head: bytes) -> bool:
    """True when a file's first bytes start a pickle of protocol 2-5 (NVIDIA's and TF's .pkl, torch's legacy files):
    the PROTO opcode and its number. Test `safetensors_header_length` first (see there)."""
    return head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")


def looks_like_checkpoint(head: bytes) -> bool:
    """True when a file's first bytes start a model checkpoint: safetensors, a pickle, or torch.save's zip (whose first
    member is `<name>/data.pkl`)."""
    return (safetensors_header_length(head) is not None or looks_like_pickle(head)
            or (head.startswith(b"PK\x03\x04") and b"data.pkl" in head[:200]))


def looks_like_html(head: bytes) -> bool:
    """True when a file's first bytes are a web page (what failed downloads often save instead)."""
    start = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()  # a UTF-8 byte-order mark before the page too
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml", b"<!--")) or b"<html" in start[:1024]


#: The names `_create_temp` gives: `.<name>.<8 hex digits>.tmp` (what a killed writer leaves behind), a file or (an
#: `atomic_write_path(in_folder=True)`'s) a folder.
TEMP_FILE_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")
#: How long an earlier write's temporary file must have been left untouched (its newest time of change, in a
#: folder its files' too) before the next write of its output removes it, when no writer holds its lock (`hold_entry`):
#: a writer that has created it and not locked it yet is not taken for a dead one.
STALE_TEMP_SECONDS = 60.0
#: The same where the file system takes no locks (some network mounts): no writer is known alive there, and a live
#: one changes its file as it writes.
STALE_TEMP_SECONDS_UNLOCKED = 24 * 3600.0


def _temp_name(path: Path) -> str:
    """The name `_create_temp`'s temporary files of `path` start with, after their dot: `path`'s, cut where a name
    near the file system's limit would put theirs over it."""
    room = _name_max(path) - len(".12345678.tmp") - 1  # a name near the limit keeps its temporary file under it
    encoded = os.fsencode(path.name)
    return encoded[:room].decode(errors="ignore") if len(encoded) > room else path.name


def _create_temp(path: Path, inside: str | None = None) -> Path:
    """A new empty file `.<name>.<random>.tmp` beside `path`, created with mode 0666 so the umask applies; with
    `inside`, a new folder of that name holding such a file named `inside`."""
    name = _temp_name(path)
    for _ in range(100):
        tmp = path.with_name(f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            if inside is None:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                return tmp
            os.mkdir(tmp)
        except FileExistsError:
            continue
        try:
            os.close(os.open(tmp / inside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError:
            remove_temp(tmp)
            raise
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")


def remove_temp(entry: Path) -> None:
    """Delete a temporary file or folder of `_create_temp`'s, what is left of it (nothing, after a rename)."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def hold_entry(entry: Path) -> int | None:
    """Lock the temporary file or folder `entry` now, without waiting (an OS lock, `flock`: the kernel drops it when
    the process dies); returns the descriptor to close when done, None where there are no such locks (Windows, a file
    system that cannot open folders, some network mounts). BlockingIOError where another process holds it.
    Its writer holds it while it writes; `entry_held` asks with it whether a writer does."""
    try:
        import fcntl

        fd = os.open(entry, os.O_RDONLY)
    except (ImportError, OSError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    except OSError:  # no locks there
        os.close(fd)
        return None
    return fd


def entry_held(entry: Path) -> bool | None:
    """Whether a live writer holds the lock of temporary file or folder `entry` (`hold_entry`); None where that cannot
    be told (no locks there)."""
    try:
        fd = hold_entry(entry)
    except BlockingIOError:
        return True
    if fd is None:
        return None
    os.close(fd)  # its lock with it
    return False


def _last_change(entry: Path) -> float:
    """The newest modification time of `entry` and, for a folder, of the files in it (what its writer changes)."""
    times = [entry.lstat().st_mtime]
    if entry.is_dir() and not entry.is_symlink():
        with os.scandir(entry) as found:
            times += [item.stat(follow_symlinks=False).st_mtime for item in found]
    return max(times)


def _stale_temp(entry: Path, now: float) -> bool:
    """Whether `entry`, an earlier write's temporary file or folder, is a dead writer's: untouched for
    `STALE_TEMP_SECONDS` and its lock free, or where there are no locks, untouched for
    `STALE_TEMP_SECONDS_UNLOCKED`."""
    try:
        untouched = now - _last_change(entry)
    except OSError:  # gone already (another writer removed it), or unreadable: left alone
        return False
    if untouched < STALE_TEMP_SECONDS:
        return False
    held = entry_held(entry)
    return not held if held is not None else untouched >= STALE_TEMP_SECONDS_UNLOCKED


def _remove_stale_temps(target: Path) -> None:
    """Remove the temporary files and folders that earlier writes of `target` left beside it when their process was
    killed (`_stale_temp`): a kill -9 during a model's save left a full-size hidden file that nothing removed
    (forty-first session's audit). Those of other files are left to their own writes; one that cannot be removed is
    left as it is (the write goes on)."""
    own = re.compile(rf"\.{re.escape(_temp_name(target))}\.[0-9a-f]{{8}}\.tmp")
    now = time.time()
    try:
        with os.scandir(target.parent) as found:
            entries = [Path(item.path) for item in found if own.fullmatch(item.name)]
    except OSError:
        return
    for entry in entries:
        if _stale_temp(entry, now):
            with contextlib.suppress(OSError):
                remove_temp(entry)


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` durable; a no-op where folders cannot be opened (Windows) or synced."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems (FUSE mounts) refuse fsync on folders
        pass
    finally:
        os.close(fd)
