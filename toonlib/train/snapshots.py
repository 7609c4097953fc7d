"""The files of a run folder, named by the number of real images seen so that no two snapshots ever share a name.

    network-snapshot-000004000.safetensors   G_ema, G and D after 4000 images (toonlib's format, `save_network`)
    fakes-000004000.png             G_ema's images of the fixed seeds
    training-state-000004000.pt     everything needed to resume (the newest KEEP_STATES are kept)
    latest.json                     which of the above are the newest (a plain file: Google Drive has no symlinks)
    metrics.jsonl, metrics.png      the training log and its plot

Every file is written atomically, the training state and then latest.json last: a snapshot cut short (Ctrl-C, a
full disk) is redone when the run resumes, and latest.json names only files that are complete. Resuming takes the
newest training state that loads and ignores a broken one (a file cut short by a Drive sync), falling back to the one
before it; the temporary files a killed run left are removed. A full disk (or a file system that became read-only)
while saving is one OSError that says what of the snapshot being saved was written and where the run continues from
(`disk_full_said`, `SnapshotWrites`): a network snapshot written without its training state is left (a complete
file: a usable model) but is no point the run continues from, and the same command redoes that snapshot.

One run at a time uses a run folder: `hold_run_dir` locks it (an OS lock on `.locks/run.lock` inside the folder,
which the kernel releases when its holder dies) and a second run there is refused at once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

import torch

from ..checkpoints import NATIVE_SUFFIX
from ..files import (
    LOCK_FOLDER,
    TEMP_FILE_NAME,
    atomic_write_path,
    file_lock,
    holder_file_for,
    lock_file_for,
    lock_holder,
    remove_temp,
    user_path,
)
from ..messages import warn

__all__ = ["CONFIG_FILE", "DATASET_CACHE", "KEEP_STATES", "LATEST_FILE", "METRIC_CACHE", "STATE_VERSION",
           "SnapshotWrites", "disk_full_message", "disk_full_said", "fakes_name", "has_run", "has_states",
           "hold_run_dir", "latest_record", "latest_snapshot", "newest_state", "newest_state_nimg", "read_latest",
           "run_folders", "save_state", "snapshot_name", "snapshot_nimg", "snapshot_paths", "state_name", "sync_latest",
           "write_latest"]

STATE_VERSION = 2
KEEP_STATES = 2
LATEST_FILE = "latest.json"
CONFIG_FILE = "config.json"  # the run's settings, written as it starts
_LOCKED = "run"  # what `files.file_lock` guards inside a run folder: its lock is <run>/.locks/run.lock
_STATE_PATTERN = re.compile(r"training-state-(\d{9})\.pt")
_LEGACY_STATE = "training-state.pt"  # version 1's one state file, refused on resume
# What stops a run's save and is said as a full disk is (`disk_full_said`): its reason, and what frees the run
_DISK_FULL = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is used up",
              errno.EROFS: "the file system became read-only"}  # remounted so after disk errors, a share withdrawn
_STATE_KEYS = ("config", "networks", "G", "D", "G_ema", "opt_G", "opt_D", "ada", "cur_nimg", "batch_idx", "rng")
DATASET_CACHE = "dataset-cache"  # the run folder's subfolder of prepared data sets (`data.ImageDataset(cache_dir=)`)
METRIC_CACHE = "metric-cache"  # the run folder's subfolder of the real images' features (`quality.image_quality`)
#: Where a run writes through temporary files, and their names, which a killed writer leaves behind
#: (`_remove_stale_temps`): atomic_write_path's in the folder and its dataset cache; torch-fidelity's in the metric
#: cache, `tempfile.NamedTemporaryFile`'s "tmp" and 8 of [a-z0-9_], renamed to the cache's file when written
#: (`torch_fidelity.utils_torch.torch_atomic_save`; a kill during it left one for good, forty-second session's audit)
_WRITTEN_FOLDERS = {".": TEMP_FILE_NAME, DATASET_CACHE: TEMP_FILE_NAME, METRIC_CACHE: re.compile(r"tmp[a-z0-9_]{8}")}


def snapshot_name(nimg: int) -> str:
    """File name of the network snapshot after `nimg` real images."""
    return f"network-snapshot-{nimg:09d}{NATIVE_SUFFIX}"


def snapshot_nimg(path: Path) -> int | None:
    """The number of real images after which the network snapshot `path` was taken, from its name (`snapshot_name`);
    None for a file of another name (latest.json may name one)."""
    digits = path.name.removeprefix(snapshot_name(0).split("0" * 9)[0])[:9]
    if not digits.isdigit() or path.name != snapshot_name(int(digits)):
        return None
    return int(digits)


def fakes_name(nimg: int) -> str:
    """File name of the fakes grid after `nimg` real images."""
    return f"fakes-{nimg:09d}.png"


_FAKES = re.compile(re.escape(fakes_name(0)).replace("0" * 9, r"\d{9}"))  # `fakes_name`'s names


def state_name(nimg: int) -> str:
    """File name of the training state after `nimg` real images."""
    return f"training-state-{nimg:09d}.pt"


def save_state(run_dir: str | os.PathLike, state: dict) -> Path:
    """Write `state` (with `cur_nimg`) as training-state-NNNNNNNNN.pt and delete all but the newest KEEP_STATES."""
    run_dir = user_path(run_dir)
    path = run_dir / state_name(state["cur_nimg"])
    # through a Python file: a full disk is then an OSError (ENOSPC) in the chain, not only torch's RuntimeError
    # "unexpected pos"
    with atomic_write_path(path) as tmp, tmp.open("wb") as file:
        torch.save({"version": STATE_VERSION, **state}, file)
    for old in _state_paths(run_dir)[KEEP_STATES:]:
        old.unlink(missing_ok=True)
    return path


def is_training_state(obj: object) -> bool:
    """Whether a loaded torch file is a run's training state (`save_state`): it resumes a run, but is no network."""
    return isinstance(obj, dict) and all(key in obj for key in ("cur_nimg", "opt_G", "opt_D"))


def newest_state(run_dir: str | os.PathLike) -> tuple[Path, dict] | None:
    """The newest training state of a run folder that loads completely, with its path; None when there is none.
    Broken files are skipped with a warning (and left for the user to inspect)."""
    legacy = user_path(run_dir) / _LEGACY_STATE
    if legacy.is_file() and not _state_paths(user_path(run_dir)):
        raise ValueError(f"{legacy} is a training state of an older toonlib (version 1), which this one does not "
                         "resume: finish that run with the toonlib that started it, or use a new run folder "
                         "(--run-dir, run_dir=)")
    for path in _state_paths(user_path(run_dir)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a cut-short file; all mean "unusable"
            why = exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else "cut short or damaged"
            warn(f"skipping the unreadable training state {path} ({why}); resuming from an older one")
            continue
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            version = state.get("version") if isinstance(state, dict) else None
            raise ValueError(f"{path}: training state version {version!r}, this toonlib reads version "
                             f"{STATE_VERSION}; finish that run with the toonlib that started it or use a new run "
                             "folder (--run-dir, run_dir=)")
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


def latest_record(nimg: int) -> dict:
    """What latest.json holds for the snapshot after `nimg` images: its kimg and the names of its files."""
    return {"kimg": nimg / 1000, "network": snapshot_name(nimg), "fakes": fakes_name(nimg), "state": state_name(nimg)}


def write_latest(run_dir: str | os.PathLike, record: dict) -> None:
    """Point latest.json at the newest snapshot's files (`record`: `latest_record`)."""
    with atomic_write_path(user_path(run_dir) / LATEST_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def sync_latest(run_dir: str | os.PathLike, nimg: int) -> None:
    """Make latest.json name the snapshot after `nimg` images, the one a run resumes from, where it names another: a
    run stopped between its training state and latest.json, or one whose newest training state was unreadable."""
    try:
        same = read_latest(run_dir) == latest_record(nimg)
    except (OSError, ValueError):  # unreadable: rewritten
        same = False
    if not same:
        write_latest(run_dir, latest_record(nimg))


def read_latest(run_dir: str | os.PathLike) -> dict | None:
    """The contents of a run's latest.json, or None before its first snapshot."""
    path = user_path(run_dir) / LATEST_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def snapshot_paths(run_dir: str | os.PathLike) -> list[Path]:
    """A run folder's network snapshots (`snapshot_name`), oldest first."""
    return sorted(user_path(run_dir).glob(snapshot_name(0).replace("0" * 9, "[0-9]" * 9)))  # any nimg of 9 digits


def latest_snapshot(run_dir: str | os.PathLike) -> Path | None:
    """The newest network snapshot of a run folder: the one latest.json names; where latest.json is missing, damaged
    (cut short by an interrupted copy or Drive sync) or names no file that is there, the newest snapshot file by its
    name (they are written whole); None before the first snapshot, or where none is left. A damaged latest.json was
    a bare JSON error ("Expecting ',' delimiter") naming no file, or a KeyError traceback, in `blend`, `toonify`,
    `info` and 01."""
    folder = user_path(run_dir)
    try:
        latest = read_latest(folder)
        named = folder / latest["network"] if latest is not None else None
    except (OSError, ValueError, KeyError, TypeError):
        named = None
    if named is not None and named.is_file():
        return named
    snapshots = snapshot_paths(folder)
    return snapshots[-1] if snapshots else None


def newest_state_nimg(run_dir: str | os.PathLike) -> int | None:
    """The number of images of the newest training state of a run folder, read from its name (complete: states are
    written atomically); None when there is none."""
    paths = _state_paths(user_path(run_dir))
    return int(_STATE_PATTERN.fullmatch(paths[0].name).group(1)) if paths else None


def has_states(run_dir: str | os.PathLike) -> bool:
    """Whether the folder `run_dir` holds a training state (of this toonlib or an older one), none of them read."""
    folder = user_path(run_dir)
    return bool(_state_paths(folder)) or (folder / _LEGACY_STATE).is_file()


def has_run(run_dir: str | os.PathLike) -> bool:
    """Whether the folder `run_dir` holds a fine-tuning run, or did, as `run_folders` finds one."""
    folder = user_path(run_dir)
    if not folder.is_dir():
        return False
    return bool(run_folders(PurePosixPath(path.relative_to(folder).as_posix()) for path in _run_files(folder)))


def _run_files(folder: Path) -> Iterator[Path]:
    """The files of `folder` that `run_folders` looks at to find a run there: its own, not its sub-folders'."""
    yield from (path for path in folder.iterdir() if path.is_file())
    for inner in (LOCK_FOLDER, DATASET_CACHE):
        if (folder / inner).is_dir():
            yield from (path for path in (folder / inner).iterdir() if path.is_file())


def run_folders(members: Iterable[PurePosixPath]) -> set[PurePosixPath]:
    """The fine-tuning run folders that the files `members` (paths inside a folder tree or .zip, by name alone) show:
    a training state, or a run's lock file beside a file a run writes from its start (its holder record while it
    runs, its dataset cache, config.json, latest.json, a snapshot or fakes grid). A lock file alone is what a run
    left in a folder whose run files were deleted: that folder of photos was refused as data for good (audit)."""
    states, locked, started = set(), set(), set()
    for member in members:
        folder, name = member.parent, member.name
        if member.parts[-2:] == lock_file_for(_LOCKED).parts:  # <run>/.locks/run.lock
            locked.add(folder.parent)
        elif member.parts[-2:] == holder_file_for(_LOCKED).parts:  # held now (or killed)
            started.add(folder.parent)
        elif _STATE_PATTERN.fullmatch(name) or name == _LEGACY_STATE:
            states.add(folder)
        elif folder.name == DATASET_CACHE:
            started.add(folder.parent)
        elif name in (CONFIG_FILE, LATEST_FILE) or snapshot_nimg(Path(name)) is not None or _FAKES.fullmatch(name):
            started.add(folder)
    return states | (locked & started)


@contextlib.contextmanager
def hold_run_dir(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the run folder `run_dir` for one fine-tuning run while the body runs, creating it if need be. When
    another run holds it, a BlockingIOError is raised at once, naming the folder as given and the process that holds
    it.

    The lock is `files.file_lock` of `.locks/run.lock` inside the folder (one lock however the folder is spelled,
    nothing outside it written: only the run folder must be writable). It is released when the body ends or fails,
    and by the kernel when its holder dies, so a killed run never leaves the folder locked; the lock file stays, as
    a lock file must (one deleted while another process opens it could be held twice). `file_lock` records the
    holder's process id and host beside it (`.locks/run.holder`) for the message of a refused run. Once it holds the
    folder, the temporary files of atomic writes that a killed run left there (cut short) are removed.
    """
    folder = user_path(run_dir).resolve()
    held = contextlib.ExitStack()
    try:
        held.enter_context(file_lock(folder / _LOCKED, wait=False))
    except BlockingIOError:
        raise BlockingIOError(f"{run_dir} is in use by another fine-tuning run{_holder(folder)}: wait until it ends "
                              "or stop it, or train in another run folder (--run-dir, run_dir=)") from None
    except OSError as exc:  # the run folder cannot be created or written
        raise type(exc)(f"cannot write in the run folder {run_dir}: {exc.strerror or exc}{_way_out(folder)}") from None
    with held:
        _remove_stale_temps(folder)
        yield


def _way_out(folder: Path) -> str:
    """What to do with a run folder that cannot be written (read-only, another user's): a run there goes on in a copy
    given as the run folder (it said only "Read-only file system"; forty-fourth session's audit)."""
    try:
        run = has_run(folder)
    except OSError:  # not even readable: no copy to make
        run = False
    if run:
        return ("; make it writable, or copy the run folder to a place you can write and give the copy as --run-dir "
                "(run_dir=): the run continues there")
    return "; make it writable, or choose another run folder (--run-dir, run_dir=)"


@dataclasses.dataclass
class SnapshotWrites:
    """The snapshot after `nimg` images being saved, and what of it is written so far (`written`: the network, the
    fakes grid, the metrics line and plot, the training state, in the order written): what a full disk's message
    says."""

    nimg: int
    written: list[str] = dataclasses.field(default_factory=list)

    NETWORK = "network"
    FAKES = "fakes"
    METRICS = "metrics"  # its line in metrics.jsonl
    PLOT = "plot"  # metrics.png
    STATE = "state"


@contextlib.contextmanager
def disk_full_said(run_dir: str | os.PathLike,
                   saving: Callable[[], SnapshotWrites | None] | None = None) -> Iterator[None]:
    """Run the body, which writes the run in `run_dir`; when it fails because the disk is full (ENOSPC or a quota:
    an OSError in the error's chain, or a Rust library's 'os error 28' as safetensors says it) or its file system
    became read-only (EROFS: it said the lock's holder record, or "cannot write" a file, not where the run
    continues; fortieth session's audit), raise one OSError instead, which says so, what it was saving, and where
    the same command continues from (`disk_full_message`). `saving()` is the snapshot being saved when that happened
    (None between snapshots). Its `errno` is the one found."""
    try:
        yield
    except Exception as exc:
        code = _disk_full_code(exc)
        if code is None:
            raise
        fix = f"make {run_dir} writable again" if code == errno.EROFS else "free space"
        error = OSError(disk_full_message(run_dir, _DISK_FULL[code], saving() if saving is not None else None, fix))
        error.errno = code  # str() stays the message, without '[Errno 28]'
        raise error from exc


def disk_full_message(run_dir: str | os.PathLike, reason: str, saving: SnapshotWrites | None,
                      fix: str = "free space") -> str:
    """What a run stopped by a full disk (`reason`) while saving to `run_dir` says: what of the snapshot being saved
    (`saving`, None between snapshots) was written and what was not, what to do (`fix`), and where the same command
    continues from: the newest training state, the last complete snapshot (a network snapshot without its training
    state is no point a run continues from; its file is complete, and the same command writes it again when it gets
    there)."""
    told = False  # whether `said` tells what was written, after a colon
    if saving is None:
        said = f"{reason} while saving the run to {run_dir}"
    else:
        said = f"{reason} while saving the snapshot at {saving.nimg / 1000:.3f} kimg to {run_dir}"
        names = {SnapshotWrites.NETWORK: snapshot_name(saving.nimg), SnapshotWrites.FAKES: fakes_name(saving.nimg),
                 SnapshotWrites.METRICS: "its metrics.jsonl line", SnapshotWrites.PLOT: "metrics.png"}
        written = [names[item] for item in saving.written if item in names]
        if SnapshotWrites.STATE in saving.written:
            said += (f": its files and its training state were written but {LATEST_FILE} was not updated (the run "
                     "continues from that snapshot all the same)")
            told = True
        elif written:
            listed = written[0] if len(written) == 1 else f"{', '.join(written[:-1])} and {written[-1]}"
            said += (f": {listed} {'was' if len(written) == 1 else 'were'} written, but not its training state, so "
                     "the run cannot continue from that snapshot")
            told = True
        else:
            said += ", before any of its files was written"
    nimg = newest_state_nimg(run_dir)
    if nimg is not None:
        then = (f"continue from {snapshot_name(nimg)} ({nimg / 1000:.3f} kimg), the last snapshot saved with its "
                "training state")
    elif snapshot_paths(run_dir):  # a snapshot (this one, or an earlier attempt's) without its training state
        then = "start it again from the beginning (no training state was saved)"
    else:
        then = "start it again (no snapshot was saved)"
    return f"{said}{'; ' if told else ': '}{fix} and run the same command again to {then}"


def _disk_full_code(exc: BaseException | None) -> int | None:
    """ENOSPC, EDQUOT or EROFS (`_DISK_FULL`) when `exc` or an exception in its chain (cause, context) says so, else
    None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        found = re.search(r"\(os error (\d+)\)", str(exc))
        code = exc.errno if isinstance(exc, OSError) else int(found[1]) if found else None
        if code in _DISK_FULL:
            return code
        exc = exc.__cause__ or exc.__context__
    return None


def _remove_stale_temps(run_dir: Path) -> None:
    """Delete the temporary files and folders that atomic writes in a run folder left when their process was killed
    (kill -9, a lost Colab runtime): hidden, cut short, and as large as a training state; a snapshot's save writes in
    a temporary folder (`files.atomic_write_path(in_folder=True)`); torch-fidelity's in the metric cache
    (`_WRITTEN_FOLDERS`). Only the folder's holder calls it, as it takes the folder, and only a run writes those
    folders, so no write of a running process is among them."""
    for name, temp_name in _WRITTEN_FOLDERS.items():
        folder = run_dir / name
        if folder.is_dir():
            for path in folder.iterdir():
                if temp_name.fullmatch(path.name):
                    remove_temp(path)


def _holder(folder: Path) -> str:
    """Who holds the run folder `folder` (`files.lock_holder`): ' (process 123)', ' (process 123 on host)', ' in this
    Python process (...)'; '' when unknown (a holder that has not written its record yet)."""
    holder = lock_holder(folder / _LOCKED)
    if holder is None:
        return ""
    if holder.this_process:
        return " in this Python process (a Trainer that has not ended: let its run() end or call its close())"
    return f" ({holder})"
