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


#: metrics.png's width in pixels, its panels stacked in one column, and its font size in points (at `_DPI`): read on
#: a phone, where a notebook's output is ~300 px wide. Its 960 x 480 px of panels side by side were shown at 296 x
#: 148 there, titles and ticks ~3 px tall (forty-third session's audit); stacked 400 px wide, ~9 px.
_WIDTH, _PANEL_HEIGHT, _FONT, _DPI = 400, 150, 11, 80
#: Room around the panels, in pixels: the ticks' numbers on the left (a KID of 0.0144 touched the image's edge), a
#: title above each panel, the shared kimg axis below the last.
_LEFT, _RIGHT, _TITLE, _BOTTOM = 62, 12, 26, 46


def plot_metrics(records: list[dict], path: str | os.PathLike) -> None:
    """Plot metrics.jsonl records against kimg into a PNG (atomically), one panel under the other (`PANELS`), on a
    shared kimg axis. Uses matplotlib's Agg canvas directly, so pyplot's backend (e.g. a notebook's) is left alone."""
    import matplotlib

    height = len(PANELS) * (_PANEL_HEIGHT + _TITLE) + _BOTTOM
    with matplotlib.rc_context({"font.size": _FONT, "legend.fontsize": _FONT - 1, "axes.titlesize": _FONT + 1}):
        fig = Figure(figsize=(_WIDTH / _DPI, height / _DPI), dpi=_DPI)
        # fixed margins: cheaper than a layout engine, which took most of the time of a snapshot in tests
        fig.subplots_adjust(left=_LEFT / _WIDTH, right=1 - _RIGHT / _WIDTH, bottom=_BOTTOM / height,
                            top=1 - _TITLE / height, hspace=_TITLE / _PANEL_HEIGHT)
        axes = list(fig.subplots(len(PANELS), 1, sharex=True).flat)
        for ax, (title, keys) in zip(axes, PANELS):
            for key in keys:
                points = [(r["kimg"], r[key]) for r in records if r.get(key) is not None]
                if points:
                    ax.plot(*zip(*points), marker=".", label=key)
            ax.set_title(title)
            if ax.lines:
                ax.legend(loc="best")
            else:
                ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes, color="grey")
        axes[-1].set_xlabel("kimg")
        with atomic_write_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=_DPI)
