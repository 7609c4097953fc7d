"""The run's training log: one JSON line per snapshot in metrics.jsonl, plotted into metrics.png."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

# Imported with the training loop, not at the first snapshot: that may be the one a Ctrl-C asks for, and a second
# Ctrl-C that cuts short the import of matplotlib's extension modules can make Python abort as it exits.
from matplotlib.figure import Figure

from ..files import atomic_write_path, user_path
from ..messages import counted, warn
from .snapshots import has_run

__all__ = ["PANELS", "append_metrics", "plot_metrics", "read_metrics", "trim_metrics"]

#: The run folder's training log.
METRICS_FILE = "metrics.jsonl"

# (title, metrics.jsonl keys) of each panel of metrics.png
PANELS = (("losses", ("loss_G", "loss_D")), ("regularisers", ("r1", "pl")),
          ("augmentation", ("augment_p", "r_t")), ("quality (lower is better)", ("kid", "fid")),
          ("speed (s/kimg)", ("sec_per_kimg",)))


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a run's metrics.jsonl, given as the file or the run folder ([] before the run's first
    snapshot); lines that are no record (cut short by a partial sync, edited by hand) are left out (`trim_metrics`
    says so, as a run resumes). FileNotFoundError for another name that is not there (a misspelt path gave [])."""
    path = user_path(path)
    folder = path if path.is_dir() else path.parent
    if path.is_dir():  # a run folder: its log
        path = path / METRICS_FILE
    if not path.exists() and (path.name != METRICS_FILE or not has_run(folder)):  # not a run not yet started
        raise FileNotFoundError(f"no file {path}: read_metrics takes a fine-tuning run's folder or its "
                                f"{METRICS_FILE}")
    return _read(path)[0]


def _read(path: Path) -> tuple[list[dict], list[int]]:
    """The records of a metrics.jsonl file, and the numbers of its lines that are no record."""
    if not path.is_file():
        return [], []
    records, damaged = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("kimg"), (int, float)):
            records.append(record)
        else:
            damaged.append(number)
    return records, damaged


def append_metrics(path: str | os.PathLike, record: dict) -> list[dict]:
    """Add one record (rewriting the file atomically, so a crash never leaves half a line); returns all records."""
    records = _read(Path(path))[0] + [record]
    _write(Path(path), records)
    return records


def trim_metrics(path: str | os.PathLike, cur_nimg: int) -> None:
    """Drop records past the training state being resumed (written after it, or by an abandoned run), and lines that
    are no record, with a warning naming them: one stopped every resume, with json's "Unterminated string ..." naming
    no file, or a traceback."""
    path = Path(path)
    records, damaged = _read(path)
    kept = [r for r in records if round(r["kimg"] * 1000) <= cur_nimg]
    if damaged:
        warn(f"{path}: left out {counted(len(damaged), 'line')} that {'is' if len(damaged) == 1 else 'are'} no record "
             f"(line {', '.join(map(str, damaged[:5]))}{', ...' if len(damaged) > 5 else ''}): the run's log, "
             "written anew without them")
    if damaged or len(kept) < len(records):
        _write(path, kept)


def _write(path: Path, records: list[dict]) -> None:
    """The records as JSON lines; a NaN or infinite value as null (a diverged run's losses: bare NaN is no JSON, and
    strict readers refused the file)."""
    finite = [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()} for r in records]
    with atomic_write_path(path) as tmp:
        tmp.write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in finite))


def plot_metrics(records: list[dict], path: str | os.PathLike) -> None:
    """Plot metrics.jsonl records against kimg into a PNG (atomically). Uses matplotlib's Agg canvas
    directly, so pyplot's backend (e.g. a notebook's) is left alone."""
    fig = Figure(figsize=(12, 6))
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.08, top=0.95, wspace=0.25, hspace=0.4)  # cheaper than
    axes = list(fig.subplots(2, 3).flat)  # a layout engine, which took most of the time of a snapshot in tests
    for ax, (title, keys) in zip(axes, PANELS):
        for key in keys:
            points = [(r["kimg"], r[key]) for r in records if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), marker=".", label=key)
        ax.set_title(title)
        ax.set_xlabel("kimg")
        if ax.lines:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="grey")
    for ax in axes[len(PANELS):]:  # the cells left over
        ax.set_visible(False)
    with atomic_write_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
