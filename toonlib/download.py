"""Download every weights file toonlib uses into its place: mirrors, resume, checks, locks, clear errors.

`fetch(name_or_url)` returns the path of a registry file (`toonlib.models.MODELS`) or of a URL, downloading
it first when needed; a Google Drive file's link (`.../file/d/<id>/view`) is downloaded as the registry's Drive
files are, through gdown, into `drive-<id>`. StyleGAN models and encoders go to toonlib's cache folder
(`cache_dir()`); the weights of other libraries (LPIPS' VGG16, face-alignment's networks, FID's Inception) go
where those libraries look for them, torch hub's checkpoints folder, so that they never download them again.
Direct URLs are retried after network errors (each retry said as it starts: a server that stalls is said after
its first timeout), and a try that broke off further into the file than any before it is resumed at once (a flaky
connection goes on as long as it makes progress).

A file reaches its final name only after it passed every check (not a web page, size and sha256 when
known, read by the reader of its kind, and for a registry file a network of the entry's resolution and format),
through an fsynced atomic rename, so the cache never holds a corrupt or wrong file under a real name; a cache file
that is empty, a web page or cut short is downloaded again.
Partial downloads stay as `<file>.part` (with `<file>.part.source` recording the URL they came from, and the
file's ETag or Last-Modified and length) and are resumed with an HTTP Range request (If-Range) by the next attempt
on the same URL (one of the whole length, stopped during its checks, is checked without a request); a file the server
has changed since is downloaded whole again, not appended to the old start.
A Google Drive file's partial download is gdown's, in the folder `<file>.part.gdown`, resumed by gdown. A file has
one partial download at a time: another source's stays until a source starts sending the file (a mirror that fails
at once takes nothing from the next run's resume).
One lock per file (`toonlib.files.file_lock`) makes concurrent processes (torchrun ranks, notebooks)
take turns: the second waits, saying so and naming the process it waits for (`files.lock_holder`), then uses the
file the first one finished. `remove(name_or_url)` (`toonlib remove`) deletes a file and its partial download, under
the same lock.
"""
from __future__ import annotations

import contextlib
import email.utils
import errno
import hashlib
import inspect
import itertools
import json
import os
import re
import shutil
import stat
import sys
import time
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Iterator, NamedTuple, Optional

import requests
import urllib3

from . import models
from .files import (
    DISK_FULL,
    DRIVE_HOSTS,
    LockHolder,
    dangling_link,
    default_file_mode,
    file_lock,
    is_url,
    lock_file_for,
    lock_holder,
    looks_like_html,
    looks_like_pickle,
    replace_file,
    safetensors_header_length,
    unread_address,
    user_path,
)
from .messages import check_flag, clear_on_close, progress_bar, with_article, write_line

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["DownloadError", "UnusableDownloadError", "cache_dir", "cache_state", "drive_file_id", "fetch",
           "fetch_source", "local_path"]

DRIVE_ROOT = Path("/content/drive/MyDrive")  # where Colab mounts the user's Google Drive
RETRY_DELAYS = (1.0, 4.0)  # seconds before each retry of a direct URL after a network error
MAX_RETRY_AFTER = 60.0  # the longest Retry-After (429, 503) waited for before a retry; longer ones fail at once
TIMEOUT = (15.0, 60.0)  # seconds: connect, then between bytes
_CHUNK = 1 << 16  # a dropped connection loses the bytes of the read in progress: keep reads small
_QUOTA_TEXT = "too many users have viewed or downloaded this file recently"
_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
_CANNOT_WRITE = (errno.EACCES, errno.EPERM, errno.EROFS)
_TAIL = 1 << 17  # bytes read from a cached file's end to see that it is whole (a zip's end record is in the last 64 KB)
_PARTIAL, _MARKER = ".part", ".source"  # a download's partial file, X.part, and its record, X.part.source
_GDOWN = ".gdown"  # a Drive file's partial download: gdown's folder X.part.gdown
#: The entries of a partial download of X, as `toonlib models` lists them: X.part, its record and a Drive file's folder.
_PARTIAL_ENTRIES = (_PARTIAL, _PARTIAL + _MARKER, _PARTIAL + _GDOWN)
_RANGE_REFUSED = "did not honor the requested byte range"  # gdown's error when a resume gets the whole file
_NO_LINK = "cannot retrieve the public link"  # gdown's error when Drive's page has no link: private, gone, or busy
_OLD_GDOWN_FOLDER = re.compile(r"\.gdown-[a-z0-9_]{8}")  # tempfile's names: older toonlib's folders for gdown
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."  # torch.save's pre-zip format: not one pickle


class DownloadError(RuntimeError):
    """No source of a file could be downloaded; the message lists why and what to do instead.

    `path`: where the file belongs (where a file downloaded by hand goes); `reason`: one line saying why
    it failed; `offline`: True when no source could be reached at all.
    """

    def __init__(self, message: str, path: Path, reason: str, offline: bool) -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason
        self.offline = offline


class UnusableDownloadError(DownloadError):
    """A URL's file (of no registry entry) came whole, and toonlib's reader refused it for what it holds (a StyleGAN3
    or other model's network, no checkpoint at all): the message is "downloaded URL: <the reader's reason>; toonlib
    cannot use this file", without a download's advice (a browser, the cache), which gets the same file. The file was
    not kept (`reason`: the reader's words)."""


class _Unusable(Exception):
    """Raised by `_unreadable` for a URL's whole file that the reader refuses for its content (`UnusableDownloadError`
    says it); its argument is the reader's message."""


class _NotEnoughSpace(Exception):
    """The folder has less free space than the rest of the download needs (found before writing it)."""


class _SourceFailed(Exception):
    """One source failed; `offline` when it could not be reached at all (`refused` when its host answered that
    nothing takes connections there: a server that is down, a wrong port), `missing` when the server has no file
    there (HTTP 404, 410)."""

    def __init__(self, reason: str, offline: bool = False, missing: bool = False, refused: bool = False) -> None:
        super().__init__(reason)
        self.offline = offline or refused
        self.missing = missing
        self.refused = refused


@dataclass(frozen=True)
class _Plan:
    """What to download and where it goes."""

    what: str  # the name or URL the caller gave
    path: Path
    sources: tuple[str, ...]
    sha256: Optional[str]
    size: Optional[int]
    kind: str
    home: str
    resolution: Optional[int] = None  # what the registry records of the file (None for a URL): `_mismatch`
    format: Optional[str] = None
    url: bool = False  # a URL of no registry entry: a file refused for its content is `UnusableDownloadError`


#: Whether `cache_dir` puts the cache on a mounted Google Drive (Colab); see `use_drive_cache`.
_drive_cache = True


def use_drive_cache(use: bool) -> None:
    """Whether this process caches downloads on a mounted Google Drive (Colab; the default). A notebook's
    `use_drive = False` (`notebook.mount_drive(use=False)`) turns it off: with Drive mounted before (an earlier run,
    Colab's Files pane), models went to Drive all the same, the notebook saying "cached on this runtime only"."""
    global _drive_cache
    _drive_cache = use


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Where downloads go: `override` (--cache-dir, cache_dir=; made absolute), else `$TOONLIB_CACHE`, else the
    mounted Google Drive on Colab (unless `use_drive_cache(False)`), else `~/.cache/toonlib`."""
    if override is not None:
        return _folder(user_path(override).absolute(), "the cache folder (--cache-dir, cache_dir=)")  # said as it is
    env = os.environ.get("TOONLIB_CACHE", "").strip()  # ' ' made a folder named ' '
    if env:
        return _folder(user_path(env).absolute(), "$TOONLIB_CACHE")  # a relative one: said where it is
    if _drive_cache and DRIVE_ROOT.is_dir():
        return DRIVE_ROOT / "toonlib" / "cache"
    return Path.home() / ".cache" / "toonlib"


def _folder(path: Path, what: str) -> Path:
    """`path`, refused with `what` named when it or the nearest of its parents that exists is a file (then nothing
    can be cached in it)."""
    existing = next((folder for folder in (path, *path.parents) if folder.exists()), path)
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == path else f"is under {existing}, which is a file"
        raise ValueError(f"{what} {path} {where}, not a folder: point it at a folder (it is created when missing)")
    return path


def dangling_folder(folder: Path) -> str | None:
    """How `folder` (the cache, torch hub's folder) lies behind a symbolic link to nothing, a drive not mounted: "a
    symbolic link to T, which does not exist (...)" or "under L, a symbolic link to T, ..." (`files.dangling_link`);
    None when it does not. Nothing can be made there (`fetch` said mkdir's "File exists", and `toonlib models` "no such
    folder yet", fortieth session's audit)."""
    link = next((path for path in (*reversed(folder.parents), folder) if dangling_link(path)), None)
    if link is None:
        return None
    return dangling_link(link) if link == folder else f"under {link}, {dangling_link(link)}"


def torch_hub_checkpoints() -> Path:
    """torch hub's checkpoints folder (`$TORCH_HOME/hub/checkpoints`), where torchvision and friends look: torch's own
    answer once torch is imported (`torch.hub.set_dir` may have moved it), else torch's rule read from the same
    variables, so that `toonlib models` and `fetch` of a StyleGAN model do without importing torch (~1 s)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return Path(torch.hub.get_dir()) / "checkpoints"
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def local_path(name_or_url: str, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where `fetch` keeps this registry file or URL (whether or not it is there yet).

    `cache_dir` overrides the cache folder; it does not move files that live in torch hub's folder.
    """
    return _plan(str(name_or_url), cache_dir).path


def cache_state(name_or_url: str, *, cache_dir: str | os.PathLike | None = None) -> str:
    """Whether this registry file or URL is here, as `toonlib models` says it: 'cached'; 'damaged', a file in its
    place that `fetch` downloads again (empty, a web page, cut short, of another size than the registry's; judged
    from the file's ends, without its checksum); '-', none yet."""
    plan = _plan(str(name_or_url), cache_dir)
    if not plan.path.is_file():
        return "-"
    return "cached" if _looks_whole(plan) else "damaged"


def fetch(name_or_url: str, *, cache_dir: str | os.PathLike | None = None, progress: bool = True,
          validate: bool = True, local_option: str | None = None, cache_option: str | None = "cache_dir=",
          on_wait: Callable[[str], None] | None = None) -> Path:
    """Path of a registry file (`toonlib.models.MODELS`) or http(s) URL, downloaded first if it is missing.

    Sources are tried in order until one yields a file that passes the checks; `validate` also reads it
    with the reader of its kind (a StyleGAN checkpoint with toonlib's readers, other weights with
    `torch.load(weights_only=True)`). A file that torch hub's folder already holds is used as it is, as
    torchvision and face-alignment would. Raises `DownloadError` when every source fails; its advice
    names `local_option` (e.g. '--base'), the command-line option that takes a local file instead, when
    given, and the Google Drive path on Colab. A URL's file that came whole but holds what toonlib cannot use
    (another model's network) is `UnusableDownloadError`, the reader's reason, and is not kept. Anything but one name
    or URL (a list, None, a file here) is refused with what to do instead (`fetch_source`).

    This disk's failures (a folder that cannot be written, a full disk) advise another cache folder through what the
    caller has: `cache_option`, the option that sets it in the caller's words (`toonlib fetch`'s '--cache-dir'; a
    Python call's `cache_dir=`), None for toonlib's own loaders (`load_network`, the commands' --toon and --base), which
    take no cache folder: only TOONLIB_CACHE is said.

    While another process downloads the file, this one waits for it, and says so on a line of its own, with
    `progress` or without (it is a line, not a bar: `progress=False` waited without a word; forty-third session's
    audit), naming that process ("process 123", `files.lock_holder`); `on_wait(who)` is then called with those words
    (a caller's own record of the wait: `finetune --no-progress` says that it waited for the base model). Once that
    download has ended, its file is used, or, where it ended without the file (killed), this process says so and
    downloads it.
    """
    check_flag("progress", progress)  # "no" showed the bar
    check_flag("validate", validate)  # "no" validated, None skipped the checks (fortieth session's audit)
    if on_wait is not None and not callable(on_wait):
        raise TypeError(f"on_wait is a function, called as on_wait(who), or None, got {type(on_wait).__name__}")
    plan = _plan(fetch_source(name_or_url), cache_dir)
    final = plan.path
    if _usable(plan):
        return final
    elsewhere = _elsewhere(plan, cache_dir is not None, cache_option)
    if final.is_dir():  # a download each time, then "...part: is a directory", naming the wrong entry
        raise IsADirectoryError(f"cannot download {plan.what!r}: {final} is a folder, where the file goes; move it "
                                "away (or delete it) and try again")
    damage = _damage(final, pickles=plan.home == "cache") if final.is_file() else None
    unreachable = dangling_folder(final.parent)
    if unreachable is not None:  # mkdir's bare "File exists": a drive not mounted (fortieth session's audit)
        folder = "torch hub's folder" if plan.home == "torch-hub" else "the cache folder"
        raise FileNotFoundError(f"cannot download {plan.what!r}: {folder} {final.parent} is {unreachable}: mount "
                                f"that drive or create the folder, or {elsewhere}")
    part = _partial_download(final)
    failures: list[tuple[str, _SourceFailed]] = []
    downloading = False  # the lock is this process's: the partial download is its own
    waited_for: list[str] = []  # who held the download while this process waited (`_waiting_message`)
    with contextlib.ExitStack() as stack:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(file_lock(final, on_wait=_waiting_message(final, on_wait, waited_for)))
            _remove_old_gdown_folders(part)
            if _usable(plan):  # another process finished it while this one waited
                return final
            if waited_for:  # it ended without the file: the "waiting" line was the last word (forty-third session)
                write_line(f"toonlib: {waited_for[0]} stopped before {final.name} was downloaded: downloading it here",
                           file=sys.stderr)
            downloading = True
            for source in plan.sources:
                try:
                    _fetch_source(source, part, progress)
                    _check(part, plan, validate)
                except _SourceFailed as failure:
                    failures.append((source, failure))
                    continue
                replace_file(part, final, mode=default_file_mode(final.parent))
                _discard(part)
                return final
            # Every source failed. A partial download whose server sends whole files only is of no use: the next
            # fetch starts over. It is deleted now, under the lock, as on Ctrl-C (its bytes, maybe GBs, stayed in the
            # cache; forty-second session's audit); where it cannot be, the download's own error is said all the same.
            kept = max((_resumable(part, source) for source in plan.sources), default=0)
            record = _read_marker(part)
            if kept and record.get("resumes") is False:
                with contextlib.suppress(OSError):
                    _discard(part)
        except KeyboardInterrupt:  # "interrupted" alone: the user could not know that the bytes are kept
            kept = max((_resumable(part, source) for source in plan.sources), default=0) if downloading else 0
            record = _read_marker(part)
            resumes = record.get("resumes")
            if kept and record.get("size") == kept:  # stopped during the checks: "resumes" of a file that is whole
                if progress:
                    write_line(f"toonlib: all {_megabytes(kept)} of {final.name} kept: fetching it again checks them, "
                               "downloading nothing", file=sys.stderr)
            elif kept and resumes is False:  # its server sends whole files only: the bytes were said kept, of no use
                _discard(part)
            elif progress and kept:  # (not while waiting for another process's download: its bytes)
                write_line(f"toonlib: {_megabytes(kept)} of {final.name} kept: fetching it again "
                           + ("resumes the download" if resumes else "asks the server for the rest"), file=sys.stderr)
            raise
        except _NotEnoughSpace as exc:
            kept = f"; the partial download {part.name} is kept and resumed" if part.is_file() else ""
            if kept and _read_marker(part).get("resumes") is False:
                # of no use, and its space is wanted: deleted, as after a failed download (it was said "kept and
                # resumed"; forty-third session)
                with contextlib.suppress(OSError):
                    _discard(part)
                kept = (f"; the partial download {part.name} is of no use ({_WHOLE_FILES_ONLY})" if part.is_file()
                        else f"; its partial download was deleted to free its space ({_WHOLE_FILES_ONLY}: the next "
                        "download starts over)")
            raise OSError(f"cannot download {plan.what!r} into {final.parent}: {exc}. Free some space, or "
                          f"{elsewhere}{kept}") from None
        except OSError as exc:
            raise _local_error(plan, part, exc, elsewhere) from None
    offline = all(failure.offline for _, failure in failures)
    reason = _unreached(failures) or f"{_browser_link(failures[-1][0])}: {failures[-1][1]}"
    raise DownloadError(_explain(plan, failures, local_option, damage, kept, record), final, reason, offline)


class Removal(NamedTuple):
    """What `remove` deleted: the file's place (a partial download named by its `.part` file: the file it is the
    download of, or the file named when nothing was there), the bytes freed, and whether the file and a partial
    download were there; `target`: where the file was a link (a copy kept elsewhere linked into the cache), its
    target, kept (its bytes are not freed: they were said freed, thirty-third session's audit)."""

    path: Path
    freed: int
    file: bool
    partial: bool
    target: Path | None = None


def remove(name_or_url: str, *, cache_dir: str | os.PathLike | None = None) -> Removal:
    """Delete what `fetch` keeps of this registry file or URL on this machine (or a file of the cache named by its file
    name, `removable`), the file and its partial download (only the partial download when its `.part` file is
    named); says what was there (`Removal`: nothing, 0 bytes, when none was). The next `fetch` (or a command that
    needs the file) downloads it again.

    Refused with an OSError naming the process that downloads the file now and its lock (`files.lock_holder`); a
    process that already reads the file keeps reading it (POSIX). `cache_dir` as `fetch`'s."""
    plan, partial_only = _removal_plan(name_or_url, cache_dir)
    final = plan.path
    part = _partial_download(final)
    partial = (part, _gdown_folder(part), _marker(part))
    left = [path for path in (partial if partial_only else (final, *partial)) if path.exists() or path.is_symlink()]
    if not left:  # nothing to do: no lock file is made in a folder that may not exist
        return Removal(final.with_name(plan.what) if partial_only else final, 0, False, False)  # the file named
    target = final.resolve() if final.is_symlink() and final.exists() and not partial_only else None
    try:
        with file_lock(final, wait=False):  # the download's own lock, a partial download named too
            freed = sum(disk_bytes(path) for path in left)
            if not partial_only:
                final.unlink(missing_ok=True)
            _discard(part)
    except BlockingIOError:
        raise OSError(f"{plan.what!r} is being downloaded by {_downloader(final)} (it holds {lock_file_for(final)}): "
                      "remove it once that download has ended") from None
    except OSError as exc:
        reason = exc.strerror or exc
        if final in left and not final.exists():  # the file went, its partial download did not: said, not hidden
            raise OSError(f"removed {final}, but not all of its partial download ({part.name}): {reason}") from None
        raise OSError(f"cannot remove {plan.what!r} from {final.parent}: {reason}") from None
    return Removal(final, freed, final in left, any(path != final for path in left), target)


def removable(name_or_url: str, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """The file `remove` deletes for this name (whether or not it is there): a registry file's or URL's place, as
    `local_path`, or a file of the cache folder named by its file name (`toonlib models` lists the cache's other
    files so; a partial download's `.part` file named: that file). An unknown name is an `UnknownModelError`, a file
    elsewhere a ValueError: it is not toonlib's."""
    plan, partial_only = _removal_plan(name_or_url, cache_dir)
    return plan.path.with_name(plan.what) if partial_only else plan.path


def partial_download_state(part: Path) -> str:
    """What becomes of the partial download `part` (a `.part` file): 'downloading' where a process holds its file's
    download lock now (`file_lock`, which `fetch` holds while it downloads; asked without waiting or making a lock
    file, so a read-only cache is only read), 'starts over' where its server was recorded as sending whole files
    only, else 'resumes' (by the next fetch)."""
    from .files import entry_held

    if entry_held(lock_file_for(_downloaded_file(part))):
        return "downloading"
    return "starts over" if _read_marker(part).get("resumes") is False else "resumes"


def partial_downloader(part: Path) -> LockHolder | None:
    """The process that downloads the partial download `part` now, where `partial_download_state` says 'downloading'
    (`files.lock_holder`: its str says it, 'process 123'); None where it is not known."""
    return lock_holder(_downloaded_file(part))


def _downloader(final: Path) -> str:
    """Who holds the download lock of `final` now, in words (`files.lock_holder`): 'process 123' (a stopped job in
    another terminal, a notebook paused in a debugger: now the user can find it; forty-third session's audit), or
    'another process' where it is not known (an older toonlib's download records none)."""
    holder = lock_holder(final)
    return "another process" if holder is None else str(holder)


def _downloaded_file(part: Path) -> Path:
    """The file whose partial download is `part` (its `.part` file)."""
    return part.with_name(part.name.removesuffix(_PARTIAL))


def _partial_download(path: Path) -> Path:
    """The `.part` file of the download of `path` (a Drive file's partial download is in its `.gdown` folder)."""
    return path.with_name(path.name + _PARTIAL)


def _removal_plan(name_or_url: str, override: str | os.PathLike | None) -> tuple[_Plan, bool]:
    """What `remove` deletes for `name_or_url`, and whether only its partial download is asked for: a file of the
    cache named by its file name or path (there or not: removed already, it is "not on this machine"), a partial
    download by its `.part`, `.part.source` or `.part.gdown` entry (the download's lock then guards it: it was
    removed under a download that was writing it), a registry file of torch hub's folder and its partial download by
    their file names or paths, a file or folder here is refused (it is not toonlib's), a name with a suffix that is
    none of these names a file of the cache that is not there (it was an unknown model name); else a registry file or
    URL."""
    text = os.fspath(name_or_url) if isinstance(name_or_url, (str, os.PathLike)) else None
    if text and not is_url(text) and text not in models.MODELS:
        given, cache = text, cache_dir(override)
        local = user_path(text)  # its folder resolved, not the file: a link placed in the cache stays the cache's
        bare = os.path.basename(text) == text
        in_cache_folder = not bare and local.parent.resolve() == cache.resolve()
        of_partial = partial_of(local.name)  # an entry of a partial download: the file it downloads is torch hub's?
        hub_file = local.name if of_partial is None else of_partial.removesuffix(_PARTIAL)
        hub_name = _torch_hub_name(hub_file)
        if in_cache_folder:  # the path `fetch` printed (it was "not toonlib's"; once removed, "unknown model")
            text = local.name
        elif hub_name and (not (cache / text).exists() if bare else
                           local.parent.resolve() == torch_hub_checkpoints().resolve()):
            if hub_file != local.name:  # its partial download: it was "not on this machine" by name and "not
                hub = _plan(hub_name, override)  # toonlib's" by path (fortieth session's audit)
                return _Plan(local.name, hub.path, (), None, None, hub.kind, hub.home), True
            text = hub_name  # torch hub's file by its own name was looked for in the cache: "not on this machine"
        if text in models.MODELS:
            return _plan(text, override), False
        named = (bare or in_cache_folder) and not text.startswith(".")  # not "..": the cache's parent
        partial = partial_of(text) if named else None
        in_cache = named and ((cache / text).is_file() or partial is not None and (cache / text).exists())
        here = [cache / text] if in_cache_folder else [cache / text, local] if named else [local]
        there = next((path for path in here if path.exists()), None)
        if not in_cache and there is not None:  # a folder was given fetch's words, or "Is a directory"
            listed = "registry names, URLs and the cache's files by name (`toonlib models` lists them)"
            raise ValueError(f"{given} is a folder, not one of toonlib's downloads: remove deletes {listed}"
                             if there.is_dir() else f"{given} is a file here, not one of toonlib's downloads: remove "
                             f"deletes {listed}; delete other files yourself")
        if partial is not None:
            return _Plan(text, cache / partial[:-len(_PARTIAL)], (), None, None, "stylegan2", "cache"), True
        if in_cache or named and (in_cache_folder or os.path.splitext(text)[1]):
            return _Plan(text, cache / text, (), None, None, "stylegan2", "cache"), False
    return _plan(fetch_source(name_or_url), override), False


def partial_of(name: str) -> str | None:
    """The `.part` name (as `toonlib models` lists it and `remove` takes it) of an entry of a partial download: X.part,
    its record X.part.source or a Drive file's folder X.part.gdown; None for any other name."""
    suffix = next((suffix for suffix in _PARTIAL_ENTRIES if name.endswith(suffix) and len(name) > len(suffix)), None)
    return None if suffix is None else name[:len(name) - len(suffix)] + _PARTIAL


def _torch_hub_name(filename: str) -> str | None:
    """The registry name of the torch hub file called `filename` (`vgg16-397923af.pth`: 'lpips-vgg16'), else None."""
    name = models.registry_name_of_file(filename)
    info = models.MODELS.get(name) if name is not None else None
    return name if info is not None and info.home == "torch-hub" and info.filename == filename else None


def fetch_source(name_or_url: object) -> str:
    """`name_or_url` as the text `fetch` looks up; TypeError for anything but one name or URL (several names, None),
    ValueError for a file or folder here that is no registry name: a local file is not fetched but loaded."""
    if isinstance(name_or_url, (list, tuple, set, frozenset)):
        raise TypeError(f"fetch takes one name, got a {type(name_or_url).__name__} of {len(name_or_url)}: call it once "
                        "per name")
    if not isinstance(name_or_url, (str, os.PathLike)):
        raise TypeError("fetch takes a registry name (`toonlib models`) or an http(s) URL, got "
                        f"{type(name_or_url).__name__}")
    text = os.fspath(name_or_url)
    if unread := unread_address(text):
        raise ValueError(unread)
    if text and not is_url(text) and text not in models.MODELS and user_path(text).exists():
        raise ValueError(f"{text} is a {'folder' if user_path(text).is_dir() else 'file'} here: fetch downloads "
                         "registry names (`toonlib models`) and http(s) URLs into the cache; a local file is read as "
                         "it is where a model is asked for (--toon, --base; load_network in Python)")
    return text


def _local_error(plan: _Plan, part: Path, exc: OSError, elsewhere: str) -> OSError:
    """What this machine's disk refused, said with the folder and what to do (`exc` itself when it is something
    else; `elsewhere`: how to download into another folder, `_elsewhere`). A full disk loses the partial download:
    it would keep the disk full for everything else."""
    folder = plan.path.parent
    if exc.errno in DISK_FULL:
        _discard(part)
        return type(exc)(f"cannot download {plan.what!r}: the disk of {folder} is full ({exc.strerror}); the partial "
                         f"download was deleted to free its space. Free some space, or {elsewhere}")
    if exc.errno in _CANNOT_WRITE:
        blocked = _blocking_entry(exc, folder)
        if folder in blocked.parents and os.access(folder, os.W_OK):  # one entry of a shared cache, its folder fine
            sticky = folder.stat().st_mode & stat.S_ISVTX  # only an entry's owner may delete it then
            ask = ("Ask its owner to delete it or to make it writable for you" if sticky else
                   "Delete it (the folder lets you) or ask its owner to make it writable for you")
            return type(exc)(f"cannot download {plan.what!r}: {blocked} cannot be written ({exc.strerror or exc}), "
                             f"though {folder} can: made by another user? {ask}, or {elsewhere}")
        return type(exc)(f"cannot download {plan.what!r}: files cannot be written in {folder} "
                         f"({exc.strerror or exc}); {elsewhere}")
    if exc.errno == errno.EFBIG:  # said bare, its partial download kept and resumed into the same error (audit)
        _discard(part)
        return type(exc)(f"cannot download {plan.what!r} into {folder}: the file is larger than may be written there "
                         f"({exc.strerror}: this shell's `ulimit -f`, or a FAT32 drive's 4 GiB); the partial download "
                         f"was deleted. Lift the limit (`ulimit -f unlimited`), or {elsewhere}")
    return exc


def _blocking_entry(exc: OSError, folder: Path) -> Path:
    """The entry of the cache `folder` that refused `exc`: of the paths it names (a rename names two), another user's
    first, else one that is there; a file not made (a lock file): its folder; `folder` when it names none."""
    named = [Path(name) for name in (exc.filename2, exc.filename) if isinstance(name, str)]
    there = [path for path in named if path.exists()]
    me = os.geteuid() if hasattr(os, "geteuid") else None  # POSIX: owners are told apart
    theirs = [path for path in there if me is not None and path.stat().st_uid != me]
    return (theirs or there or [path.parent for path in named[-1:]] or [folder])[0]


def _elsewhere(plan: _Plan, given: bool, option: str | None) -> str:
    """How to download into another folder, for a file of `plan`'s home, naming only what the caller has: `option`,
    its own option for the cache folder (`fetch`'s `cache_option`), else TOONLIB_CACHE alone (`toonlib blend` was told
    of a --cache-dir it does not take, `load_network` of a cache_dir= it refused; forty-second session's audit);
    `given`: the folder was that option's, which TOONLIB_CACHE does not change."""
    if plan.home == "torch-hub":
        return "set TORCH_HOME to a folder elsewhere that you can write (the file goes into its hub/checkpoints)"
    if given:
        return f"give {option or 'cache_dir='} a folder elsewhere that you can write"
    return f"set TOONLIB_CACHE{f' (or {option})' if option else ''} to a folder elsewhere that you can write"


def _plan(name_or_url: str, override: str | os.PathLike | None) -> _Plan:
    cache = cache_dir(override)
    info = _registry_entry(name_or_url) if is_url(name_or_url) else models.get_model(name_or_url)
    if info is None:  # a URL of no registry file
        # a URL's login and token, said in no message (they were, in a failure's); imported here, as checkpoints
        # imports torch: `toonlib models` (a `_plan` per registry name) does without it
        from .checkpoints import _public_name

        file_id = drive_file_id(name_or_url)
        if file_id is not None:  # Drive's viewer page, not the file, answers a share link: gdown gets the file
            return _Plan(_public_name(name_or_url), cache / f"drive-{file_id}", (f"gdrive:{file_id}",), None, None,
                         "stylegan2", "cache", url=True)
        return _Plan(_public_name(name_or_url), cache / _url_filename(name_or_url), (name_or_url,), None, None,
                     "stylegan2", "cache", url=True)
    folder = torch_hub_checkpoints() if info.home == "torch-hub" else cache
    return _Plan(name_or_url, folder / info.filename, info.sources, info.sha256, info.size, info.kind, info.home,
                 resolution=info.resolution, format=info.format)


def _registry_entry(url: str) -> models.ModelInfo | None:
    """The registry file `url` is a source of (a direct URL, or a Drive link of its `gdrive:` id): the link a failed
    fetch lists was saved as `drive-<id>` beside the registry's name, which then downloaded it again, and weights of
    another kind (LPIPS' VGG16) went to the cache, refused as no StyleGAN2 checkpoint."""
    file_id = drive_file_id(url)
    source = f"gdrive:{file_id}" if file_id is not None else url
    return next((info for info in models.MODELS.values() if source in info.sources), None)


def _usable(plan: _Plan) -> bool:
    """The file is in place: a file in torch hub's folder that is not plainly damaged (the libraries check hashes
    only when they download), a cache file that looks whole (`_damage`) and has the size and sha256 of the entry,
    where known."""
    if not (plan.path.is_file() and _looks_whole(plan)):
        return False
    return plan.home == "torch-hub" or plan.sha256 is None or _sha256(plan.path).startswith(plan.sha256)


def _looks_whole(plan: _Plan) -> bool:
    """A file in place that may be whole: one in torch hub's folder that is not empty, a web page or a zip or
    safetensors file cut short (an empty one was "cached" for good, and face-alignment failed on it naming no file;
    pickles are not judged there: the libraries' files were never read here to prove the test right for them), a
    cache file without `_damage` and of the entry's size, where known."""
    if plan.home == "torch-hub":
        return not _damage(plan.path, pickles=False)
    return not _damage(plan.path) and (plan.size is None or plan.path.stat().st_size == plan.size)


def _damage(path: Path, pickles: bool = True) -> str | None:
    """Why the file at `path` cannot be a whole network file, from its first and last bytes only (empty, a web
    page, a pickle, zip or safetensors file cut short; a pickle's end judged only with `pickles`); None when it may
    be whole. A file a user copied into the cache, or one an interrupted copy or sync left there, is then downloaded
    again rather than handed to a loader."""
    size = path.stat().st_size
    if size == 0:
        return "empty (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(1 << 16)
        f.seek(max(0, size - _TAIL))
        tail = f.read()
    if looks_like_html(head):
        return "a web page, not the file"
    if head.startswith(b"PK\x03\x04"):
        whole = b"PK\x05\x06" in tail  # a zip ends with its end-of-central-directory record
        return None if whole else f"cut short ({size} bytes: a zip file without its end)"
    # safetensors: the header's length, the header, then the tensors it places (before the pickle's test: a length
    # whose low byte is 0x80, 1 header size in 256, starts like a pickle, and a whole file was called cut short)
    length = safetensors_header_length(head)
    if length is not None:
        with open(path, "rb") as f:
            f.seek(8)
            header = f.read(min(length, size))
        try:
            places = json.loads(header)
            end = max((v["data_offsets"][1] for k, v in places.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return f"cut short ({size} bytes: a safetensors file without its whole header)"
        if size < 8 + length + end:
            return f"cut short ({size} bytes of the {8 + length + end} its safetensors header describes)"
        return None
    if pickles and looks_like_pickle(head):
        whole = head.startswith(_LEGACY_TORCH_MAGIC) or tail.endswith(b".")  # a pickle ends with STOP
        return None if whole else f"cut short ({size} bytes: a pickle without its end)"
    return None


def _waiting_message(final: Path, on_wait: Callable[[str], None] | None,
                     waited_for: list[str]) -> Callable[[Path], None]:
    """`file_lock`'s `on_wait` for the download of `final`: the line that says the wait, naming who holds the download
    (`_downloader`, also appended to `waited_for`), then `fetch`'s `on_wait(who)`."""
    def say(lock_file: Path) -> None:
        who = _downloader(final)
        waited_for.append(who)
        write_line(f"toonlib: waiting for {who} to finish downloading {final.name} (lock {lock_file})",
                   file=sys.stderr)
        if on_wait is not None:
            on_wait(who)
    return say


def _url_filename(url: str) -> str:
    """The URL's last path component, with a short hash of the whole URL (its scheme in lower case: `HTTP://` and
    `http://` are one file) so different URLs never collide. A name longer than 200 characters is shortened (100
    before the hash, 20 after its dot), so that its `.part.source` and `.lock` files stay within the 255 bytes file
    systems allow: such a URL could never be fetched."""
    scheme, colon, rest = url.partition(":")
    last = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    last = re.sub(r"[^A-Za-z0-9._-]", "_", last).lstrip(".") or "download"
    stem, dot, suffix = last.rpartition(".")
    digest = hashlib.sha256(f"{scheme.lower()}{colon}{rest}".encode()).hexdigest()[:8]
    name = f"{stem}-{digest}.{suffix}" if dot and stem else f"{last}-{digest}"
    if len(name) <= 200:
        return name
    return f"{stem[:100]}-{digest}.{suffix[:20]}" if dot and stem else f"{last[:100]}-{digest}"


def drive_file_id(url: str) -> str | None:
    """The file id of a Google Drive file's link (`.../file/d/<id>/view`, `open?id=`, `uc?id=`, the
    drive.usercontent.google.com download link), else None (a folder's link, any other address)."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname not in DRIVE_HOSTS:
        return None
    in_path = re.search(r"/file/d/([^/]+)", parts.path)
    file_id = in_path.group(1) if in_path else urllib.parse.parse_qs(parts.query).get("id", [""])[0]
    return file_id if re.fullmatch(r"[A-Za-z0-9_-]+", file_id) else None


def _marker(part: Path) -> Path:
    """File recording where the partial download of `part` (the `.part` file, or a Drive file's `_gdown_folder`)
    came from (`_read_marker`): only that source may resume it."""
    return part.with_name(part.name + _MARKER)


def _read_marker(part: Path) -> dict:
    """What `part`'s marker records: 'source' (its URL, or 'gdrive:<id>'), 'size' (the whole file's length, where
    known), and for a direct URL 'validator' (the ETag or Last-Modified of the reply it came from), which a resume
    must match, and 'resumes': True where the server said it sends the rest of a file (`Accept-Ranges: bytes`) or
    did, False where it sent the same file whole when asked for its rest, absent where not known; {} when
    unreadable."""
    try:
        record = json.loads(_marker(part).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_marker(part: Path, record: dict) -> None:
    _marker(part).write_text(json.dumps(record))


def _resumable(part: Path, source: str) -> int:
    """The bytes of the file that `source` sent so far and that it may resume (`part`, or a Drive file's
    `_gdown_folder`): none when the partial download is another source's (kept for that one)."""
    if _read_marker(part).get("source") != source:
        return 0
    return _size(part) or _bytes_in(_gdown_folder(part))


def _take_over(part: Path, record: dict) -> None:
    """Make `record['source']` the source of `part`'s partial download as it starts sending the file: the partial
    download of any other source goes first (a record beside its bytes would have them resumed), then the record."""
    part.unlink(missing_ok=True)
    if not record["source"].startswith("gdrive:"):  # a Drive source's own folder holds its bytes already
        shutil.rmtree(_gdown_folder(part), ignore_errors=True)
    _write_marker(part, record)


def _discard(part: Path) -> None:
    """Remove `part`'s partial download, whichever source's, and its record."""
    part.unlink(missing_ok=True)
    shutil.rmtree(_gdown_folder(part), ignore_errors=True)
    _marker(part).unlink(missing_ok=True)


def _fetch_source(source: str, part: Path, progress: bool) -> None:
    """Download `source` into `part`. The partial download another source left stays until this one starts sending
    the file (`_take_over`): a mirror that fails at once leaves it to be resumed by the next run. A source that sent
    some of the file before it failed was reached, whatever its last error says (a server that died mid-file
    refuses connections)."""
    before = _resumable(part, source)
    try:
        if source.startswith("gdrive:"):
            _download_gdrive(source[len("gdrive:"):], part, progress)
        else:
            _download_http(source, part, progress)
    except BaseException as exc:  # a failure, or Ctrl-C
        if not (_size(part) or _bytes_in(_gdown_folder(part))):  # nothing worth keeping for a resume
            _discard(part)
        elif isinstance(exc, _SourceFailed) and _resumable(part, source) > before:
            exc.offline = False
        raise


# --- direct URLs ----------------------------------------------------------------------------------

def _download_http(url: str, part: Path, progress: bool) -> None:
    """Download `url` into `part`, resuming what is there; retry network errors, 5xx and 429 replies, after the
    wait a 429 or 503 asks for (Retry-After) when that is no longer than `MAX_RETRY_AFTER`. A try that broke off
    further into the file than every try before it is resumed at once and counts as no failure: a connection that
    keeps breaking goes on as long as each try gets further.

    An unknown host name, a proxy that refuses and a certificate that cannot be verified are not retried: that is a
    machine without internet, a wrong URL or a wrong proxy or certificate setting, and waiting does not change them.
    Other errors of requests (too many redirects, an invalid URL) fail the source at once.

    Each retry is said as it starts (`_say_retry`): a server that stalls showed a bar standing
    still for `TIMEOUT` (60 s) times each try, ~3 minutes, before the first word.
    """
    failed, furthest = 0, _resumable(part, url)  # tries in a row that got no further; the most of the file held
    while True:
        delay = RETRY_DELAYS[failed] if failed < len(RETRY_DELAYS) else None
        try:
            _http_attempt(url, part, progress)
            return
        except requests.HTTPError as exc:
            status, wait = exc.response.status_code, _retry_after(exc.response)
            reason = f"HTTP {status} {exc.response.reason}"
            if wait is not None and (wait > MAX_RETRY_AFTER or delay is None):
                raise _SourceFailed(f"{reason}: the server asks to wait {_duration(wait)}; try again then") from None
            if status == 429 and delay is None:  # retried without being told how long to wait
                raise _SourceFailed(f"{reason}: the server limits how often it is asked; try again in a few "
                                    "minutes") from None
            if status == 407:  # an http:// URL through the proxy: the proxy's own reply
                raise _SourceFailed(f"{reason}: {_proxy_login(url)}") from None
            if (status < 500 and status != 429 and wait is None) or delay is None:
                raise _SourceFailed(reason, missing=status in (404, 410)) from None
            delay = delay if wait is None else wait
        except _NETWORK_ERRORS as exc:
            if _resumable(part, url) > furthest:
                furthest, failed = _resumable(part, url), 0
                # why, and that it goes on: a bar that restarted unexplained, then "(2 of 3)" before the third
                # request (the count is of tries in a row that got no further; forty-fifth session's audit)
                _say_retry(part, f"{_network_reason(exc, url)}; {_going_on(part)}")
                continue
            if delay is None or _unresolved(exc) or _untrusted(exc) or isinstance(exc, requests.exceptions.ProxyError):
                unreachable = _unreachable(exc)  # not a proxy's refusal: that is said as the proxy's
                raise _SourceFailed(_network_reason(exc, url), offline=unreachable,
                                    refused=unreachable and _refused(exc)) from None
            reason = _network_reason(exc, url)
        except requests.RequestException as exc:  # an OSError, which `fetch` would take for one of this disk's
            raise _SourceFailed(_one_paragraph(exc)) from None
        wait_said = f" in {_duration(delay)}" if delay >= 1 else ""
        _say_retry(part, f"{reason}; trying again{wait_said} ({failed + 2} of {len(RETRY_DELAYS) + 1})")
        time.sleep(delay)
        failed += 1


def _say_retry(part: Path, what: str) -> None:
    """Say on a line of its own, as the next try of `part`'s download starts, why the last one failed and what comes
    next: `what`. Also without progress bars: a line, not a bar (`finetune --no-progress` waited through a failing
    server's retries without a word; thirty-fifth session's audit)."""
    write_line(f"toonlib: downloading {part.name[: -len(_PARTIAL)]}: {what}", file=sys.stderr)


def _retry_after(response: requests.Response) -> float | None:
    """Seconds a 429 or 503 reply asks to wait (its Retry-After: seconds or a date), else None."""
    value = response.headers.get("Retry-After", "").strip()
    if response.status_code not in (429, 503) or not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _http_attempt(url: str, part: Path, progress: bool) -> None:
    """One request for the rest of `url`: a Range request from the end of `part` when it holds bytes already, with
    If-Range, so that a file the server changed since comes whole rather than appended to the old one's start."""
    have = _resumable(part, url)
    record = _read_marker(part) if have else {}
    if have and record.get("size") == have:  # every byte came, and a stop during the checks kept it: checked offline
        return  # too, as a Drive file's is (it asked the server for the rest; thirty-eighth session's audit)
    headers = {"Accept-Encoding": "identity"}  # byte offsets must count the bytes on disk
    if have:
        headers["Range"] = f"bytes={have}-"
        if record.get("validator"):
            headers["If-Range"] = record["validator"]
    with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT) as response:
        if have and response.status_code == 416:  # nothing left to fetch, or a stale longer part
            if _range_total(response) == have and record.get("size") in (None, have):
                return
            part.unlink()
            return _http_attempt(url, part, progress)
        response.raise_for_status()
        resumed = have > 0 and response.status_code == 206
        if resumed and (_range_start(response) != have or record.get("size") not in (None, _range_total(response))):
            part.unlink()  # not the rest of the file the part began (another version of it): start again
            return _http_attempt(url, part, progress)
        offset = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        chunks = response.iter_content(_CHUNK)
        first = next(chunks, b"")
        if not resumed and looks_like_html(first):  # an error or login page: it replaces no partial download
            raise _SourceFailed(_page_reason(first))  # the first 64 KB of the page (`_CHUNK`)
        free = shutil.disk_usage(part.parent).free
        if total is not None and total - offset > free:
            raise _NotEnoughSpace(f"{part.name[: -len(_PARTIAL)]} needs {_megabytes(total - offset)} more, "
                                  f"{_megabytes(free)} are free")
        if not resumed:
            new = {"source": url, "validator": _validator(response), "size": total}
            said = response.headers.get("Accept-Ranges", "").strip().lower()  # "bytes", "none", or not said
            if (have and new["validator"] == record.get("validator")) or said == "none":
                new["resumes"] = False  # its rest asked for, the same file sent whole: not "resumes where it stopped"
            elif said == "bytes":  # it says it sends the rest of a file
                new["resumes"] = True
            _take_over(part, new)
        elif record.get("resumes") is not True:  # it does resume (after all)
            _write_marker(part, {**record, "resumes": True})
        _write_body(first, chunks, part, "ab" if resumed else "wb", offset, total, progress)
    if total is not None and part.stat().st_size < total:  # urllib3 < 2 does not enforce Content-Length
        raise requests.exceptions.ChunkedEncodingError(_closed_early(total - part.stat().st_size))


def _write_body(first: bytes, rest: Iterator[bytes], part: Path, mode: str, offset: int, total: int | None,
                progress: bool) -> None:
    with open(part, mode) as f, _download_bar(part, not progress, total=total, initial=offset) as bar:
        for chunk in itertools.chain((first,), rest):
            f.write(chunk)
            bar.update(len(chunk))


@contextlib.contextmanager
def _download_bar(part: Path, disable: bool, total: int | None = None, initial: int = 0) -> Iterator[tqdm]:
    """The bar of a download into `part` (`messages.progress_bar`), cleared when the download fails or is stopped
    (`messages.clear_on_close`): a retry draws it again from there, and the error's first line must not follow a bar
    left at 34%."""
    # in kB and MB, as `toonlib models` and the messages count (it counted KiB: "752k" of a file listed as 770 kB)
    with progress_bar(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1000,
                      desc=part.name[: -len(_PARTIAL)], disable=disable) as bar:
        try:
            yield bar
        except BaseException:
            clear_on_close(bar)
            raise


def _size(part: Path) -> int:
    """The bytes a partial download holds (0 when there is none)."""
    return part.stat().st_size if part.is_file() else 0


def _validator(response: requests.Response) -> str | None:
    """What If-Range can send back to get the rest of this very file: a strong ETag, else Last-Modified."""
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):  # weak ETags are not allowed in If-Range
        return etag
    return response.headers.get("Last-Modified")


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def _range_start(response: requests.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _range_total(response: requests.Response) -> int | None:
    match = re.search(r"/(\d+)$", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _proxy_variables(url: str) -> str:
    """The environment variables that name the proxy for `url`: 'https_proxy / HTTPS_PROXY'."""
    scheme = urllib.parse.urlsplit(url).scheme
    return f"{scheme}_proxy / {scheme.upper()}_PROXY"


def _proxy_login(url: str) -> str:
    """What to do when a proxy answers 407 Proxy Authentication Required."""
    return f"give the proxy's user name and password in {_proxy_variables(url)}: http://USER:PASSWORD@HOST:PORT"


def _innermost(exc: BaseException) -> BaseException:
    """The error inside requests' and urllib3's wrappers (a MaxRetryError's reason, a ProxyError's OSError), whose
    words say what failed: "Tunnel connection failed: 407 Proxy Authentication Required" came cut off at 200
    characters of "HTTPSConnectionPool(host=...): Max retries exceeded with url: ... (Caused by ProxyError(..."."""
    seen = {id(exc)}
    while True:
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((arg for arg in reversed(exc.args) if isinstance(arg, BaseException)), exc.__cause__)
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def _connection_cause(exc: Exception) -> object:
    """urllib3's reason inside a requests ConnectionError (requests wraps urllib3's MaxRetryError)."""
    return getattr(exc.args[0], "reason", None) if exc.args else None


def _unreachable(exc: Exception) -> bool:
    """True when no connection could be made at all (no network, unknown host, refused, connect timeout)."""
    return isinstance(exc, requests.ConnectTimeout) or isinstance(_connection_cause(exc),
                                                                  urllib3.exceptions.NewConnectionError)


def _refused(exc: BaseException) -> bool:
    """True when a ConnectionRefusedError is in `exc`'s chain: its reason, arguments, cause or context (urllib3 < 2
    raises its NewConnectionError while handling the refusal, without naming it as the cause)."""
    seen, chain = set(), [exc]
    while chain:
        error = chain.pop()
        if error is None or id(error) in seen:
            continue
        if isinstance(error, ConnectionRefusedError):
            return True
        seen.add(id(error))
        reason = getattr(error, "reason", None)
        chain += [reason if isinstance(reason, BaseException) else None, error.__cause__, error.__context__,
                  *(arg for arg in error.args if isinstance(arg, BaseException))]
    return False


def _unresolved(exc: Exception) -> bool:
    """True when the host name could not be resolved (urllib3 >= 2 says NameResolutionError)."""
    name_error = getattr(urllib3.exceptions, "NameResolutionError", None)  # urllib3 >= 2
    if name_error is not None and isinstance(_connection_cause(exc), name_error):
        return True
    text = str(exc)  # urllib3 1.x: the resolver's own words
    return any(words in text for words in ("Name or service not known", "name resolution", "nodename nor servname"))


def _untrusted(exc: Exception) -> bool:
    """True when the server's TLS certificate could not be verified (a proxy that inspects HTTPS, a wrong clock)."""
    return isinstance(exc, requests.exceptions.SSLError) and "certificate verify failed" in str(exc)


def _network_reason(exc: Exception, url: str) -> str:
    text = str(exc)
    if _untrusted(exc):
        why = re.search(r"certificate verify failed[^'\"(]*", text).group(0).strip()
        return (f"the server's certificate could not be verified ({why}): behind a proxy or firewall that inspects "
                "HTTPS, set REQUESTS_CA_BUNDLE to the file of its certificate (PEM); else check this machine's date "
                "and time")
    number = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    detail = number.group(0).strip() if number else (text[:200] or type(exc).__name__)
    if isinstance(exc, requests.exceptions.ProxyError):
        proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
        named = f"the proxy {proxy}" if proxy else "the proxy"
        detail = str(_innermost(exc)) or detail
        if " 407 " in f" {detail} ":
            return f"{named} refused the connection ({detail}): {_proxy_login(url)}"
        return (f"{named} refused or could not be reached ({detail}): check {_proxy_variables(url)}, or unset them, "
                "or list the host in no_proxy")
    if _unreachable(exc):
        return f"could not connect ({detail})"
    if _timed_out(exc):
        return f"the server stopped sending: nothing came for {TIMEOUT[1]:g} s"  # "broke off (... Read timed out.)"
    short = re.search(r"IncompleteRead\(\d+ bytes read, (\d+) more expected\)", text)
    if short:  # urllib3's words were repeated twice over: "(('Connection broken: IncompleteRead(...)', ...))"
        detail = _closed_early(int(short.group(1)))
    return f"the download broke off ({detail})"


def _closed_early(missing: int) -> str:
    """Why a reply cut short failed, `missing` bytes before the file's end (a resumed reply's end is the file's)."""
    return f"the connection closed {_megabytes(missing)} before the end of the file"


def _timed_out(exc: Exception) -> bool:
    """True when the server sent nothing for `TIMEOUT[1]` seconds (before its reply's headers, or within its body)."""
    return isinstance(exc, requests.ReadTimeout) or any(isinstance(cause, urllib3.exceptions.ReadTimeoutError)
                                                        for cause in (_connection_cause(exc), *exc.args[:1]))


# --- Google Drive ---------------------------------------------------------------------------------

def _drive_url(file_id: str) -> str:
    """The download URL of a Google Drive file id (what gdown builds from `id=`)."""
    return f"https://drive.google.com/uc?id={file_id}"


def _gdown_folder(part: Path) -> Path:
    """Where gdown keeps the partial download of `part`'s Google Drive source between runs: a folder of its own, for
    gdown names its partial file itself (`<output><8 random characters>.part`) and resumes the one it finds there."""
    return part.with_name(part.name + _GDOWN)


def _bytes_in(folder: Path) -> int:
    """The bytes the files in `folder` hold (0 when there is no such folder)."""
    return sum(file.stat().st_size for file in folder.iterdir() if file.is_file()) if folder.is_dir() else 0


def disk_bytes(path: Path) -> int:
    """The bytes an entry of the cache takes, which removing it frees: a file's size, the files of a folder (a Drive
    file's partial download, `.gdown`), nothing for a link (its target is elsewhere, kept)."""
    return 0 if path.is_symlink() else _bytes_in(path) if path.is_dir() else path.stat().st_size


def _remove_old_gdown_folders(part: Path) -> None:
    """Remove the folders `.gdown-<8 characters>` that older toonlib versions gave gdown for `part` and a hard kill
    left behind, holding its partial download. Called under `part`'s file lock, which those versions took too: no
    process uses them. A folder that holds anything else, or nothing (another file's download), stays."""
    own = re.compile(rf"{re.escape(part.name)}([a-z0-9_]{{8}}(\.part|tmp))?")  # gdown's names for output `part.name`
    for folder in part.parent.glob(".gdown-*"):
        if not (_OLD_GDOWN_FOLDER.fullmatch(folder.name) and folder.is_dir()):
            continue
        files = list(folder.iterdir())
        if files and all(own.fullmatch(file.name) and file.is_file() for file in files):
            shutil.rmtree(folder, ignore_errors=True)


def _download_gdrive(file_id: str, part: Path, progress: bool) -> None:
    """Download a Drive file with gdown (which handles Drive's confirmation pages) into `part`, resuming the partial
    download this source left in `_gdown_folder(part)`; a partial download of another version of the file (another
    length, or one the server does not resume) is dropped and the file downloaded whole.

    Where the installed gdown takes them, it gets `TIMEOUT` (without one, a stalled download waited forever),
    `retries` (it resumes a transfer broken off, as `_download_http` does: one dropped connection ended the command)
    and reports its progress to toonlib's bar (its own bar, redrawn ten times a second, flooded logs). Resuming takes a
    gdown with `resume` and `progress`, whose first report says that the file started coming (`_take_over`). A Drive
    page without the file's link (a private or removed file, but also a busy Drive's 503: gdown tells them apart by
    nothing) is asked for again after `RETRY_DELAYS`, each retry said, before gdown's reason is given.

    A new version of the same length under the same id is resumed onto the old bytes: gdown sends If-Range with the
    validator of the new run's own first reply, and shows the caller no reply's headers (its progress reports are
    byte counts; Last-Modified only becomes the finished file's mtime), so the marker cannot record the first run's.
    The checks of the whole file (sha256 where known; a registry file's resolution and format, `_mismatch`) catch it
    where they can."""
    import gdown

    accepts = inspect.signature(gdown.download).parameters
    reports = "progress" in accepts
    options: dict = {"timeout": TIMEOUT} if "timeout" in accepts else {}
    if reports and "resume" in accepts:
        options["resume"] = True
    if "retries" in accepts:
        options["retries"] = len(RETRY_DELAYS)
    folder = _gdown_folder(part)
    if not (options.get("resume") and _read_marker(part).get("source") == f"gdrive:{file_id}"):
        shutil.rmtree(folder, ignore_errors=True)  # another source's bytes, or ones this gdown cannot resume
    elif part.is_file():  # downloaded whole by a run stopped before its checks
        return
    failed = 0  # tries in a row that got Drive's page without the file's link
    try:
        while True:  # a _Restart once at most: a try with no bytes to resume raises none
            try:
                _gdown_into(gdown, file_id, part, options, progress, reports)
                break
            except _Restart:
                shutil.rmtree(folder)
            except _SourceFailed as exc:
                if _NO_LINK not in str(exc).lower() or failed == len(RETRY_DELAYS):
                    raise
                delay = RETRY_DELAYS[failed]
                failed += 1
                wait_said = f" in {_duration(delay)}" if delay >= 1 else ""
                _say_retry(part, f"Google Drive sent no link to the file; trying again{wait_said} "
                                           f"({failed + 1} of {len(RETRY_DELAYS) + 1})")
                time.sleep(delay)
    except BaseException:
        if not (options.get("resume") and _bytes_in(folder)):  # nothing a later run can resume
            shutil.rmtree(folder, ignore_errors=True)
        raise
    os.replace(folder / part.name, part)
    shutil.rmtree(folder)


class _Restart(Exception):
    """The partial download of a Drive file is of another version of it: it is downloaded whole again."""


def _gdown_into(gdown: ModuleType, file_id: str, part: Path, options: dict, progress: bool, reports: bool) -> None:
    """One `gdown.download` of the Drive file into `_gdown_folder(part)` with `options`, resuming the bytes there
    (`_Restart` when they are of another version of the file); `reports`: gdown takes `progress`, and reports to
    toonlib's bar."""
    folder = _gdown_folder(part)
    folder.mkdir(exist_ok=True)
    have = _bytes_in(folder)
    expected = _read_marker(part).get("size") if have else None
    bar: tqdm | None = None  # drawn once the file starts coming: a Drive that answers nothing draws no empty bar
    bars = contextlib.ExitStack()

    def report(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:  # the file started coming
            if expected not in (None, total):
                raise _Restart
            if not have:
                _take_over(part, {"source": f"gdrive:{file_id}", "size": total})
            bar = bars.enter_context(_download_bar(part, not progress, initial=have))
        _advance(bar, done, total)

    with bars:
        shown = {"quiet": True, "progress": report} if reports else {"quiet": not progress}
        try:
            gdown.download(_drive_url(file_id), output=str(folder / part.name), **options, **shown)
        except _Restart:
            raise
        except Exception as exc:  # noqa: BLE001 -- gdown raises requests', its own and OS errors alike
            if have and _RANGE_REFUSED in str(exc):
                raise _Restart from None
            if _RANGE_REFUSED in str(exc):  # gdown's retry of this call's broken-off bytes, answered whole (review)
                raise _SourceFailed("the download broke off, and the server would not resume it: run the same "
                                    "command again (it downloads the file whole)") from None
            if _QUOTA_TEXT in str(exc).lower():
                raise _SourceFailed(_quota_reason()) from None
            if isinstance(exc, OSError) and exc.errno in (*DISK_FULL, errno.EFBIG):  # said by `_local_error`
                raise
            cause = exc if isinstance(exc, _NETWORK_ERRORS) else exc.__cause__  # gdown's "Download is incomplete"
            if isinstance(cause, _NETWORK_ERRORS):
                raise _SourceFailed(_network_reason(cause, _drive_url(file_id)), offline=_unreachable(cause)) from None
            raise _SourceFailed(f"gdown failed: {_one_paragraph(exc)}") from None
    if not (folder / part.name).is_file():  # gdown < 5 prints the error and returns None
        raise _SourceFailed("gdown could not download it (see its message above)")
    if not (bar is not None or have):  # a gdown without `progress`, or an empty file
        _take_over(part, {"source": f"gdrive:{file_id}"})


def _advance(bar: tqdm, done: int, total: int | None) -> None:
    """Show `done` of `total` bytes on `bar` (a `progress_bar`)."""
    if total is not None and bar.total != total:
        bar.total = total
    bar.update(done - bar.n)


def _one_paragraph(exc: Exception) -> str:
    """An exception's whole message on one line: gdown's reasons span several indented lines."""
    return " ".join(str(exc).split()) or type(exc).__name__


# --- checks and messages --------------------------------------------------------------------------

def _check(part: Path, plan: _Plan, validate: bool) -> None:
    """Raise `_SourceFailed` (and delete `part`) unless `part` holds the expected file; the reason names the file by
    what was fetched (`plan.what`)."""
    try:
        reason = _problem(part, plan, validate)
    except _Unusable as exc:  # a URL's file of another model: said as the reader says it, not as a failed download
        _discard(part)
        said = _of_download(str(exc), part).rstrip(".")
        raise UnusableDownloadError(f"downloaded {plan.what}: {said}; toonlib cannot use this file (it was not "
                                    "kept)", plan.path, said, offline=False) from None
    if reason:
        _discard(part)
        raise _SourceFailed(reason.replace(str(part), repr(plan.what)))  # the reader's words name the file, now gone


def _of_download(message: str, part: Path) -> str:
    """A reader's `message` of the download `part` without its path, which `UnusableDownloadError`'s message says
    before it as the URL: "PART: G_ema is ..." is "G_ema is ...", "PART [G_ema]: ..." "its G_ema: ...", "PART is ..."
    "the file is ..."."""
    start = re.escape(str(part))
    message = re.sub(rf"^{start}: ", "", message)
    message = re.sub(rf"^{start} \[(\w+)\]: ", r"its \1: ", message)
    message = re.sub(rf"^{start} ", "the file ", message)
    return message.replace(str(part), "the file")


def _problem(part: Path, plan: _Plan, validate: bool) -> str | None:
    with open(part, "rb") as f:
        head = f.read(1 << 16)
    if looks_like_html(head):
        return _page_reason(head)
    actual = part.stat().st_size
    if plan.size is not None and actual != plan.size:
        return f"wrong size: {actual} bytes, expected {plan.size}"
    if plan.sha256 is not None:
        digest = _sha256(part)
        if not digest.startswith(plan.sha256):
            return f"sha256 mismatch: got {digest}, expected {plan.sha256} (a corrupt or different file)"
    return _unreadable(part, plan) if validate else None


def _unreadable(part: Path, plan: _Plan) -> str | None:
    """Why the reader of the file's kind cannot read `part`, or what it read is not the registry's file (`_mismatch`:
    a changed upstream file or a wrong mirror, readable all the same); None when it is the file."""
    kind = plan.kind
    if kind == "stylegan2":
        from .checkpoints import CheckpointError, read_checkpoint
        from .checkpoints.common import without_damage_advice

        try:
            nets = read_checkpoint(part)
        except CheckpointError as exc:  # the reader's "delete it and download it again": it is deleted (_check)
            said = without_damage_advice(str(exc))
            if plan.url and said == str(exc) and not _damage(part):
                # a whole file refused for what it holds (a StyleGAN3 pickle): "every source failed", with the advice
                # to download it in a browser into the cache, where the same refusal waited (forty-first session's
                # audit); a damaged one (the reader's damage advice, or cut short) is a failed download as before
                raise _Unusable(str(exc)) from None
            return f"not a readable checkpoint: {said}"
        return _mismatch(plan, nets.config.img_resolution, nets.meta.get("format"))
    import pickle

    import torch

    try:
        with warnings.catch_warnings():  # a plain pickle (a wrong mirror's file): torch's note on its protocol was
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # said as toonlib's own warning
            data = torch.load(part, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        # torch's first sentence and the unpickler's reason: the rest advised weights_only=False (unpickling the
        # download: code it holds would run), cut off mid-word before its warning
        text = _one_paragraph(exc)
        first = text.split(". ")[0].rstrip(".")
        detail = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
        reason = f"{first}: {detail.group(1).rstrip('. ')}" if detail else first
        return f"not a readable torch file ({type(exc).__name__}: {reason[:300]})"
    if kind == "encoder":
        state = data.get("state_dict") if isinstance(data, dict) else None
        if not (isinstance(state, dict) and any(key.startswith("encoder.") for key in state)):
            return "not a pSp / e4e checkpoint (no 'state_dict' with 'encoder.*' weights)"
        return _mismatch(plan, *_encoder_facts(data))
    elif not (isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values())):
        return "not a state dict of tensors"
    return None


#: How a reason says that a download is readable but not the file its registry entry describes (`_mismatch`).
_NOT_THE_REGISTRYS = "not the file the registry describes"


def _mismatch(plan: _Plan, resolution: int | None, file_format: str | None) -> str | None:
    """Why a readable download of a registry file is not that file: its network's resolution or format is not the
    entry's (a file changed upstream, a mirror that serves another model); None when they agree or are not known."""
    if (resolution in (None, plan.resolution) or plan.resolution is None) and (
            file_format in (None, plan.format) or plan.format is None):
        return None
    return (f"{_NOT_THE_REGISTRYS}: it holds {_network_words(plan.kind, resolution, file_format)}, where "
            f"{plan.what!r} is {_network_words(plan.kind, plan.resolution, plan.format)} (the file there has changed, "
            "or it is another model)")


def _network_words(kind: str, resolution: int | None, file_format: str | None) -> str:
    """What `_mismatch` compares, in words: 'a 1024x1024 generator in nvidia format', 'an e4e encoder with a
    1024x1024 decoder'."""
    size = f"{resolution}x{resolution}" if resolution is not None else ""
    if kind == "encoder":
        name = f"{file_format} encoder" if file_format else "encoder"
        words = f"{name} with a {size} decoder" if size else name
    else:
        words = " ".join(filter(None, (size, "generator"))) + (f" in {file_format} format" if file_format else "")
    return with_article(words)


def _encoder_facts(data: dict) -> tuple[int | None, str | None]:
    """The resolution of a pSp / e4e checkpoint's decoder (`checkpoints.rosinality.generator_config`) and its format
    ('psp' or 'e4e', from `opts['encoder_type']`), each None where the file does not say."""
    from .checkpoints import CheckpointError, psp, rosinality
    from .encoders import ENCODER_TYPES

    resolution = None
    if psp.is_psp(data):
        with contextlib.suppress(CheckpointError):  # a decoder of odd shapes: its resolution unknown, not refused here
            resolution = rosinality.generator_config(psp.decoder_state(data["state_dict"]),
                                                     "the decoder").img_resolution
    opts = data.get("opts")
    encoder_type = opts.get("encoder_type") if isinstance(opts, dict) else getattr(opts, "encoder_type", None)
    paper = ENCODER_TYPES.get(encoder_type) if isinstance(encoder_type, str) else None
    return resolution, paper.lower() if paper else None


def _page_reason(head: bytes) -> str:
    """Why a download that is a web page (its first bytes `head`) failed: Drive's quota page, or another page."""
    if _QUOTA_TEXT in head.decode("utf-8", "replace").lower():
        return _quota_reason()
    return "the server sent a web page instead of the file (an error, login or confirmation page)"


def _quota_reason() -> str:
    return ("Google Drive refused: 'Too many users have viewed or downloaded this file recently' "
            "(its download quota is used up for now; it resets within about a day)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Why a download starts over where its server sent the whole file when asked for its rest (`_http_attempt`).
_WHOLE_FILES_ONLY = "this server sends only whole files, not the rest of one"


def _going_on(part: Path) -> str:
    """How the download of `part` goes on after a try that broke off, as `_http_attempt` recorded its server: from
    there (it said `Accept-Ranges: bytes`, or sent the rest of the file), from its start (it sent the whole file when
    asked for its rest), or, not known yet (a stall in the first try), asking for the rest."""
    resumes = _read_marker(part).get("resumes")
    if resumes is False:
        return f"starting over ({_WHOLE_FILES_ONLY})"
    if resumes is None:  # it said "going on from where it stopped" of a server that then sent the whole file
        return ("asking for the rest (the server has not said that it sends one: if it sends the whole file, it "
                "starts over)")
    return "going on from where it stopped"


def _unreached(failures: list[tuple[str, _SourceFailed]]) -> str | None:
    """Why no source could be reached, when none could: no internet connection, or (every host answered that nothing
    takes connections there: a local server that is down, a wrong port) refused connections; else None."""
    if not all(failure.offline for _, failure in failures):
        return None
    if all(failure.refused for _, failure in failures):
        return "the connection was refused" if len(failures) == 1 else "every connection was refused"
    return "no internet connection"


def _explain(plan: _Plan, failures: list[tuple[str, _SourceFailed]], local_option: str | None,
             damage: str | None, kept: int = 0, record: dict | None = None) -> str:
    unreached = _unreached(failures)
    headline = f"{unreached} (no source could be reached)" if unreached else "every source failed"
    final = plan.path
    lines = [f"could not download {plan.what!r}: {headline}."]
    if damage:
        lines.append(f"The file in the cache, {final}, is {damage}: it cannot be used, and is replaced by the next "
                     "download that succeeds.")
    lines.append("Sources tried:")
    lines += [f"  {i}. {_browser_link(source)}: {failure}" for i, (source, failure) in enumerate(failures, 1)]
    lines.append("What you can do:")
    if any(_NOT_THE_REGISTRYS in str(failure) for _, failure in failures):
        lines.append(f"  - report it to toonlib's maintainers: a source sends another file than the registry's "
                     f"{plan.what!r} (that download was deleted, not cached)")
    record = record or {}
    if kept and record.get("resumes") is False:
        lines.append(f"  - run the same command again: the download starts over ({_WHOLE_FILES_ONLY})")
    elif kept:
        total = record.get("size")
        so_far = f"{_megabytes(kept)} of {_megabytes(total)}" if total else _megabytes(kept)
        unknown = "" if record.get("resumes") else "; the server has not said that it sends the rest of a file"
        lines.append(f"  - run the same command again: the download resumes where it stopped ({so_far} are "
                     f"kept{unknown})")
    on_drive = any(source.startswith("gdrive:") for source in plan.sources) or any(
        _QUOTA_TEXT in str(failure).lower() for _, failure in failures)
    if all(failure.missing for _, failure in failures):  # a browser gets the same "not found": no use sending one
        lines.append("  - check the address: the server has no file there" if is_url(plan.what) else
                     f"  - report it to toonlib's maintainers: the registry's sources of {plan.what!r} have no file")
        if local_option and plan.home == "cache":
            lines.append(f"  - or, with the file on this machine, pass its path: {local_option} PATH")
    elif DRIVE_ROOT.is_dir() and plan.home == "cache":  # Colab with Drive mounted: the user works in Drive
        in_drive = final if final.is_relative_to(DRIVE_ROOT) else DRIVE_ROOT / final.name
        lines.append(f"  - put the file into your Google Drive as {in_drive}: open a link above in a browser, "
                     "'Make a copy' (or download it and upload it), then move and rename the copy")
        if in_drive != final:
            lines.append(f"    and pass it {_option(local_option, in_drive)}")
    else:
        lines.append(f"  - download it in a browser from a link above and save it as {final}")
        if local_option and plan.home == "cache":
            lines.append(f"  - or save it anywhere and pass its path: {local_option} PATH")
        if on_drive:
            lines.append("  - if Google Drive refuses the download in the browser too, 'Make a copy' into your own "
                         "Google Drive and download the copy")
    return "\n".join(lines)


def _option(local_option: str | None, path: Path) -> str:
    return f"with {local_option} {path}" if local_option else f"as the path instead of the name ({path})"


def _browser_link(source: str) -> str:
    """A source as a failure's message names it: a Drive file's page; a URL without its login and token."""
    from .checkpoints import _public_name

    if source.startswith("gdrive:"):
        return f"https://drive.google.com/file/d/{source[len('gdrive:'):]}/view"
    return _public_name(source)
