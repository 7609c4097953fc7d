"""File helpers shared by everything that writes user data: outputs are replaced atomically."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_write_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    If the body raises, the temporary file is removed and `path` keeps its old content, so an
    interrupted save never leaves a half-written checkpoint or image behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def looks_like_html(head: bytes) -> bool:
    """True when a file's first bytes are a web page (what failed downloads often save instead)."""
    start = head.lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml", b"<!--")) or b"<html" in start[:1024]
