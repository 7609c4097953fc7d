"""Download checkpoints into a local cache: mirrors, resume, checksums, atomic renames, clear errors.

`fetch(name_or_url)` returns the path of a cached file, downloading it first when needed. A file
reaches its final name only after it passed every check (not a web page, sha256 when known, and
parsed as a checkpoint), so the cache never holds a corrupt file under a real name. Partial
downloads stay as `<file>.part` (with `<file>.part.source` naming the URL they came from) and
are resumed with an HTTP Range request by the next attempt on the same URL.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
import urllib.parse
from pathlib import Path

import requests
import urllib3

from . import models
from .files import looks_like_html

__all__ = ["DownloadError", "cache_dir", "fetch"]

DRIVE_ROOT = Path("/content/drive/MyDrive")  # where Colab mounts the user's Google Drive
RETRY_DELAYS = (1.0, 4.0)  # seconds before each retry of a direct URL after a network error
TIMEOUT = (15.0, 60.0)  # seconds: connect, then between bytes
_CHUNK = 1 << 16  # a dropped connection loses the bytes of the read in progress: keep reads small
_QUOTA_TEXT = "too many users have viewed or downloaded this file recently"
_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class DownloadError(RuntimeError):
    """No source of a file could be downloaded; the message lists why and what to do instead."""


class _SourceFailed(Exception):
    """One source failed; `offline` when it could not be reached at all."""

    def __init__(self, reason: str, offline: bool = False) -> None:
        super().__init__(reason)
        self.offline = offline


def cache_dir() -> Path:
    """Where downloads go: `$TOONLIB_CACHE`, else the mounted Google Drive on Colab, else `~/.cache/toonlib`."""
    env = os.environ.get("TOONLIB_CACHE")
    if env:
        return Path(env).expanduser()
    if DRIVE_ROOT.is_dir():
        return DRIVE_ROOT / "toonlib" / "cache"
    return Path.home() / ".cache" / "toonlib"


def fetch(name_or_url: str, *, cache_dir: str | os.PathLike | None = None, progress: bool = True,
          validate: bool = True) -> Path:
    """Path of a registry model (`toonlib.models.MODELS`) or http(s) URL in the cache, downloaded if missing.

    Sources are tried in order until one yields a file that passes the checks; `validate` also
    parses it as a checkpoint. Raises `DownloadError` when every source fails.
    """
    filename, sources, sha256, size = _plan(str(name_or_url))
    final = _cache_folder(cache_dir) / filename
    if final.is_file() and (sha256 is None or _sha256(final) == sha256):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    failures: list[tuple[str, _SourceFailed]] = []
    for source in sources:
        try:
            _fetch_source(source, part, progress)
            _check(part, sha256, size, validate)
        except _SourceFailed as failure:
            failures.append((source, failure))
            continue
        os.replace(part, final)
        _marker(part).unlink(missing_ok=True)
        return final
    raise DownloadError(_explain(str(name_or_url), final, failures))


def _plan(name_or_url: str) -> tuple[str, tuple[str, ...], str | None, int | None]:
    """(cache filename, sources, sha256, size) of a registry name or a URL."""
    if name_or_url.startswith(("http://", "https://")):
        return _url_filename(name_or_url), (name_or_url,), None, None
    info = models.get_model(name_or_url)
    return info.filename, info.sources, info.sha256, info.size


def _url_filename(url: str) -> str:
    """The URL's last path component, with a short hash of the whole URL so different URLs never collide."""
    last = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    last = re.sub(r"[^A-Za-z0-9._-]", "_", last).lstrip(".") or "download"
    stem, dot, suffix = last.rpartition(".")
    digest = hashlib.sha256(url.encode()).hexdigest()[:8]
    return f"{stem}-{digest}.{suffix}" if dot and stem else f"{last}-{digest}"


def _cache_folder(override: str | os.PathLike | None) -> Path:
    return Path(override).expanduser() if override is not None else cache_dir()


def _marker(part: Path) -> Path:
    """File naming the URL a `.part` file came from: only that URL may resume it."""
    return part.with_name(part.name + ".source")


def _claim(part: Path, source: str) -> None:
    """Keep `part` for resuming only if it came from `source`; otherwise start it afresh."""
    marker = _marker(part)
    if not (part.is_file() and marker.is_file() and marker.read_text() == source):
        part.unlink(missing_ok=True)
        marker.write_text(source)


def _fetch_source(source: str, part: Path, progress: bool) -> None:
    _claim(part, source)
    try:
        if source.startswith("gdrive:"):
            _download_gdrive(source[len("gdrive:"):], part, progress)
        else:
            _download_http(source, part, progress)
    except _SourceFailed:
        if not (part.is_file() and part.stat().st_size):  # nothing worth keeping for a resume
            part.unlink(missing_ok=True)
            _marker(part).unlink(missing_ok=True)
        raise


# --- direct URLs ----------------------------------------------------------------------------------

def _download_http(url: str, part: Path, progress: bool) -> None:
    """Download `url` into `part`, resuming what is there; retry network errors and 5xx replies."""
    delays = (*RETRY_DELAYS, None)
    for delay in delays:
        try:
            _http_attempt(url, part, progress)
            return
        except requests.HTTPError as exc:
            status = exc.response.status_code
            if status < 500 or delay is None:
                raise _SourceFailed(f"HTTP {status} {exc.response.reason}") from None
        except _NETWORK_ERRORS as exc:
            if delay is None:
                raise _SourceFailed(_network_reason(exc), offline=_unreachable(exc)) from None
        time.sleep(delay)


def _http_attempt(url: str, part: Path, progress: bool) -> None:
    have = part.stat().st_size if part.is_file() else 0
    headers = {"Accept-Encoding": "identity"}  # byte offsets must count the bytes on disk
    if have:
        headers["Range"] = f"bytes={have}-"
    with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT) as response:
        if have and response.status_code == 416:  # nothing left to fetch, or a stale longer part
            if _range_total(response) == have:
                return
            part.unlink()
            return _http_attempt(url, part, progress)
        response.raise_for_status()
        resumed = have > 0 and response.status_code == 206
        if resumed and _range_start(response) != have:
            part.unlink()
            return _http_attempt(url, part, progress)
        offset = have if resumed else 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        _write_body(response, part, "ab" if resumed else "wb", offset, total, progress)
    if total is not None and part.stat().st_size < total:  # urllib3 < 2 does not enforce Content-Length
        raise requests.exceptions.ChunkedEncodingError(f"connection closed after {part.stat().st_size} "
                                                       f"of {total} bytes")


def _write_body(response: requests.Response, part: Path, mode: str, offset: int, total: int | None,
                progress: bool) -> None:
    from tqdm.auto import tqdm  # lazily: tqdm.auto may pull in notebook widgets

    with open(part, mode) as f, tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=part.name[: -len(".part")], disable=not progress) as bar:
        for chunk in response.iter_content(_CHUNK):
            f.write(chunk)
            bar.update(len(chunk))


def _range_start(response: requests.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _range_total(response: requests.Response) -> int | None:
    match = re.search(r"/(\d+)$", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _unreachable(exc: Exception) -> bool:
    """True when no connection could be made at all (no network, unknown host, refused, connect timeout)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None  # requests wraps urllib3's MaxRetryError
    return isinstance(exc, requests.ConnectTimeout) or isinstance(reason, urllib3.exceptions.NewConnectionError)


def _network_reason(exc: Exception) -> str:
    text = str(exc)
    errno = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    detail = errno.group(0).strip() if errno else (text[:200] or type(exc).__name__)
    if _unreachable(exc):
        return f"could not connect ({detail})"
    return f"the download broke off ({detail})"


# --- Google Drive ---------------------------------------------------------------------------------

def _drive_url(file_id: str) -> str:
    """The download URL of a Google Drive file id (what gdown builds from `id=`)."""
    return f"https://drive.google.com/uc?id={file_id}"


def _download_gdrive(file_id: str, part: Path, progress: bool) -> None:
    """Download a Drive file with gdown (which handles Drive's confirmation pages) into `part`."""
    import gdown

    # gdown leaves its own temporary files behind on failure: give it a folder that is always removed.
    with tempfile.TemporaryDirectory(prefix=".gdown-", dir=part.parent) as tmp:
        out = Path(tmp) / part.name
        try:
            gdown.download(_drive_url(file_id), output=str(out), quiet=not progress)
        except Exception as exc:  # noqa: BLE001 -- gdown raises requests', its own and OS errors alike
            if _QUOTA_TEXT in str(exc).lower():
                raise _SourceFailed(_quota_reason()) from None
            if isinstance(exc, _NETWORK_ERRORS):
                raise _SourceFailed(_network_reason(exc), offline=_unreachable(exc)) from None
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise _SourceFailed(f"gdown failed: {first_line}") from None
        if not out.is_file():  # gdown < 5 prints the error and returns None
            raise _SourceFailed("gdown could not download it (see its message above)")
        os.replace(out, part)


# --- checks and messages --------------------------------------------------------------------------

def _check(part: Path, sha256: str | None, size: int | None, validate: bool) -> None:
    """Raise `_SourceFailed` (and delete `part`) unless `part` holds the expected file."""
    reason = _problem(part, sha256, size, validate)
    if reason:
        part.unlink(missing_ok=True)
        _marker(part).unlink(missing_ok=True)
        raise _SourceFailed(reason)


def _problem(part: Path, sha256: str | None, size: int | None, validate: bool) -> str | None:
    with open(part, "rb") as f:
        head = f.read(1 << 16)
    if looks_like_html(head):
        if _QUOTA_TEXT in head.decode("utf-8", "replace").lower():
            return _quota_reason()
        return "the server sent a web page instead of the file (an error, login or confirmation page)"
    actual = part.stat().st_size
    if size is not None and actual != size:
        return f"wrong size: {actual} bytes, expected {size}"
    if sha256 is not None:
        digest = _sha256(part)
        if digest != sha256:
            return f"sha256 mismatch: got {digest}, expected {sha256} (a corrupt or different file)"
    if validate:
        from .checkpoints import CheckpointError, read_checkpoint

        try:
            read_checkpoint(part)
        except CheckpointError as exc:
            return f"not a readable checkpoint: {exc}"
    return None


def _quota_reason() -> str:
    return ("Google Drive refused: 'Too many users have viewed or downloaded this file recently' "
            "(its download quota is used up for now; it resets within about a day)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _explain(what: str, final: Path, failures: list[tuple[str, _SourceFailed]]) -> str:
    offline = all(failure.offline for _, failure in failures)
    headline = "no internet connection (no source could be reached)" if offline else "every source failed"
    lines = [f"could not download {what!r}: {headline}.", "Sources tried:"]
    lines += [f"  {i}. {_browser_link(source)}: {failure}" for i, (source, failure) in enumerate(failures, 1)]
    lines += [
        "What you can do:",
        "  - copy the file into your own Google Drive (open a link above, then 'Make a copy', or download and "
        "upload it) and pass the file's path instead, e.g. '/content/drive/MyDrive/" + final.name + "'; or",
        f"  - download it by hand (in a browser) and save it as {final}",
    ]
    return "\n".join(lines)


def _browser_link(source: str) -> str:
    if source.startswith("gdrive:"):
        return f"https://drive.google.com/file/d/{source[len('gdrive:'):]}/view"
    return source
