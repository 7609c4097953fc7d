"""The files of a run folder, named by the number of real images seen so that no two snapshots ever share a name.

    network-snapshot-000004000.safetensors   G_ema, G and D after 4000 images (toonlib's format, `save_network`)
    fakes-000004000.png             G_ema's images of the fixed seeds
    training-state-000004000.pt     everything needed to resume (the newest KEEP_STATES are kept)
    latest.json                     which of the above are the newest (a plain file: Google Drive has no symlinks)
    metrics.jsonl, metrics.png      the training log and its plot

Every file is written atomically, the training state last: a snapshot cut short (Ctrl-C) is redone when the run
resumes. Resuming takes the newest training state that loads and ignores a broken one (a file cut short by a full
disk or a Drive sync), falling back to the one before it; the temporary files a killed run left are removed.

One run at a time uses a run folder: `hold_run_dir` locks it (an OS lock, `.locks/<name>.lock` beside the
folder, which the kernel releases when its holder dies) and a second run there is refused at once.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from pathlib import Path
from typing import Iterator

import torch

from ..checkpoints import NATIVE_SUFFIX
from ..files import TEMP_FILE_NAME, atomic_write_path, file_lock, lock_file_for, user_path
from ..messages import warn

__all__ = ["KEEP_STATES", "LATEST_FILE", "STATE_VERSION", "fakes_name", "hold_run_dir", "latest_snapshot",
           "newest_state", "read_latest", "save_state", "snapshot_name", "snapshot_paths", "state_name", "write_latest"]

STATE_VERSION = 2
KEEP_STATES = 2
LATEST_FILE = "latest.json"
_STATE_PATTERN = re.compile(r"training-state-(\d{9})\.pt")
_STATE_KEYS = ("config", "networks", "G", "D", "G_ema", "opt_G", "opt_D", "ada", "cur_nimg", "batch_idx", "rng")
_WRITTEN_FOLDERS = (".", "dataset-cache")  # where a run writes through atomic_write_path


def snapshot_name(nimg: int) -> str:
    """File name of the network snapshot after `nimg` real images."""
    return f"network-snapshot-{nimg:09d}{NATIVE_SUFFIX}"


def fakes_name(nimg: int) -> str:
    """File name of the fakes grid after `nimg` real images."""
    return f"fakes-{nimg:09d}.png"


def state_name(nimg: int) -> str:
    """File name of the training state after `nimg` real images."""
    return f"training-state-{nimg:09d}.pt"


def save_state(run_dir: str | os.PathLike, state: dict) -> Path:
    """Write `state` (with `cur_nimg`) as training-state-NNNNNNNNN.pt and delete all but the newest KEEP_STATES."""
    run_dir = Path(run_dir)
    path = run_dir / state_name(state["cur_nimg"])
    with atomic_write_path(path) as tmp:
        torch.save({"version": STATE_VERSION, **state}, tmp)
    for old in _state_paths(run_dir)[KEEP_STATES:]:
        old.unlink(missing_ok=True)
    return path


def newest_state(run_dir: str | os.PathLike) -> tuple[Path, dict] | None:
    """The newest training state of a run folder that loads completely, with its path; None when there is none.
    Broken files are skipped with a warning (and left for the user to inspect)."""
    legacy = Path(run_dir) / "training-state.pt"
    if legacy.is_file() and not _state_paths(Path(run_dir)):
        raise ValueError(f"{legacy} is a training state of an older toonlib (version 1), which this one does not "
                         "resume: finish that run with the toonlib that started it, or use a new run folder "
                         "(--run-dir)")
    for path in _state_paths(Path(run_dir)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a cut-short file; all mean "unusable"
            warn(f"skipping the unreadable training state {path} ({type(exc).__name__}); resuming from "
                 "an older one")
            continue
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            version = state.get("version") if isinstance(state, dict) else None
            raise ValueError(f"{path}: training state version {version!r}, this toonlib reads version "
                             f"{STATE_VERSION}; finish that run with the toonlib that started it or use a new run "
                             "folder (--run-dir)")
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            warn(f"skipping the incomplete training state {path} (missing {missing})")
            continue
        return path, state
    return None


def _state_paths(run_dir: Path) -> list[Path]:
    """The run's training-state files, newest first."""
    if not run_dir.is_dir():
        return []
    paths = [p for p in run_dir.iterdir() if _STATE_PATTERN.fullmatch(p.name)]
    return sorted(paths, key=lambda p: p.name, reverse=True)


def write_latest(run_dir: str | os.PathLike, record: dict) -> None:
    """Point latest.json at the newest snapshot's files (`record`: kimg, network, fakes, state)."""
    with atomic_write_path(Path(run_dir) / LATEST_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def read_latest(run_dir: str | os.PathLike) -> dict | None:
    """The contents of a run's latest.json, or None before its first snapshot."""
    path = Path(run_dir) / LATEST_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def snapshot_paths(run_dir: str | os.PathLike) -> list[Path]:
    """A run folder's network snapshots (`snapshot_name`), oldest first."""
    return sorted(Path(run_dir).glob(snapshot_name(0).replace("0" * 9, "[0-9]" * 9)))  # any nimg of 9 digits


def latest_snapshot(run_dir: str | os.PathLike) -> Path | None:
    """The newest network snapshot of a run folder (from latest.json), or None before the first snapshot."""
    latest = read_latest(run_dir)
    return None if latest is None else Path(run_dir) / latest["network"]


@contextlib.contextmanager
def hold_run_dir(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the run folder `run_dir` for one fine-tuning run while the body runs. When another run holds it, a
    BlockingIOError is raised at once, naming the folder as given and the process that holds it.

    The lock is `files.file_lock` of the resolved folder (one lock however the folder is spelled; the folder need
    not exist yet): `runs/.locks/toon.lock` for `runs/toon`. It is released when the body ends or fails, and by
    the kernel when its holder dies, so a killed run never leaves the folder locked. The holder's process id and
    host are written beside the lock (`runs/.locks/toon.holder`) for the message of a refused run. Once it holds the
    folder, the temporary files of atomic writes that a killed run left there (cut short) are removed.
    """
    folder = user_path(run_dir).resolve()
    lock_file = lock_file_for(folder)
    holder = lock_file.with_name(f"{folder.name}.holder")
    held = contextlib.ExitStack()
    try:
        held.enter_context(file_lock(folder, wait=False))
    except BlockingIOError:
        raise BlockingIOError(f"{run_dir} is in use by another fine-tuning run{_holder(holder)}: wait until it ends "
                              "or stop it, or train in another run folder (--run-dir)") from None
    except OSError as exc:  # the folder beside the run folder cannot be written
        raise type(exc)(f"cannot lock the run folder {run_dir} ({lock_file}): {exc.strerror or exc}") from None
    with held:
        with atomic_write_path(holder) as tmp:
            tmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")
        _remove_stale_temps(folder)
        try:
            yield
        finally:
            holder.unlink(missing_ok=True)  # while still locked, so that the next holder's record stays


def _remove_stale_temps(run_dir: Path) -> None:
    """Delete the temporary files that atomic writes in a run folder left when their process was killed (kill -9,
    a lost Colab runtime): hidden, cut short, and as large as a training state. Only the folder's holder calls it,
    so no write of a running process is among them."""
    for folder in (run_dir / name for name in _WRITTEN_FOLDERS):
        if folder.is_dir():
            for path in folder.iterdir():
                if TEMP_FILE_NAME.fullmatch(path.name) and path.is_file():
                    path.unlink(missing_ok=True)


def _holder(record: Path) -> str:
    """Who holds a run folder, from its holder record: ' (process 123)', ' (process 123 on host)', ' in this
    Python process (...)'; '' when unknown (a holder that has not written it yet)."""
    try:
        holder = json.loads(record.read_text())
        pid, host = int(holder["pid"]), str(holder["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    if host != socket.gethostname():
        return f" (process {pid} on {host})"
    if pid == os.getpid():
        return " in this Python process (a Trainer that has not ended: let its run() end or call its close())"
    return f" (process {pid})"
