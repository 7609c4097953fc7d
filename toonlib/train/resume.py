"""Resuming a run: whether a run folder's training state may continue under a new run's settings, and what the
resumed run says changed (docs/design.md section 8).

A run keeps what would change its networks, data or random streams (`config.RESUME_FIXED`, `check_resumable`); the
data and the base (`resume`) are compared as resolved paths (`resolved_source`), so the same folder, zip or file
resumes however it is spelled, and a run that recorded them as relative paths (as toonlib once did) resumes from any
folder with the images it was trained on and the base file it named. The settings it may change, and images added,
removed or replaced in the data folder, are said in one warning each (`say_changed_settings`, `say_changed_data`); the
same image files at another path (a moved folder) resume, said (`data_moved`).
`resume` may name the run folder itself (`same_folder`: that run continues); a folder without a readable training
state is refused with `no_state_message`.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from ..data import cache_name, image_entries
from ..devices import default_device
from ..files import is_url, resolved_source, user_path
from ..messages import counted, warn
from .config import RESUME_FIXED, TrainConfig, option_both, option_name, option_text
from .snapshots import DATASET_CACHE, latest_snapshot

__all__ = ["QUIET_CHANGES", "check_resumable", "data_moved", "no_state_message", "recorded_base", "same_folder",
           "say_changed_data", "say_changed_settings"]

# Settings a resumed run may change without a notice: where the run is, and how long it trains.
QUIET_CHANGES = ("run_dir", "kimg")


def same_folder(resume: str, run_dir: str) -> bool:
    """Whether `resume` is the existing folder `run_dir` (however spelled)."""
    return Path(resume).is_dir() and Path(resume).resolve() == user_path(run_dir).resolve()


def no_state_message(folder: str, *, is_run_dir: bool = False) -> str:
    """Why the folder `folder`, given as `resume`, is refused: no training state in it can be read; names its newest
    snapshot, when it has one, as the file to pass instead. `is_run_dir`: `folder` is the run folder itself; where it
    holds no snapshot either, `resume` was almost surely meant for the base model, and the message says so (it said
    to pass a snapshot file "as resume (--resume)"; forty-fourth session's audit)."""
    snapshot = latest_snapshot(folder)  # latest.json cut short too: the newest snapshot file
    if is_run_dir and snapshot is None:
        return (f"{option_both('resume')} names the run folder {folder} itself, which holds no fine-tuning run yet "
                f"to continue: {option_both('resume')} takes the model to start from, such as ffhq-256-noaug or a "
                "checkpoint file (.safetensors or .pkl)")
    example = f", e.g. {snapshot}" if snapshot is not None and snapshot.is_file() else ""
    return (f"{folder} is a folder, and no training state in it (training-state-*.pt) could be read, so there is "
            "no fine-tuning run to continue or start from. To start from a snapshot, pass the snapshot file "
            f"(.safetensors or .pkl) as {option_both('resume')}{example}")


def _recorded_relative(source: str) -> bool:
    """Whether a run recorded `source` as a relative path, as toonlib once did (relative to an unrecorded folder)."""
    return not is_url(source) and not user_path(source).is_absolute()


def _named(source: str) -> str:
    """The absolute path `source` names, there or not (a URL as it is). A path that names nothing is left as given by
    `resolved_source`: the same command, its relative --data or --resume gone (a base deleted to save space: resuming
    never reads it), was refused as a changed setting, "'/abs/faces' -> 'faces'" (thirty-third session's audit)."""
    return source if is_url(source) else str(user_path(source).resolve())


def _same_data(saved: TrainConfig, data: str, run_dir: Path, state: dict) -> bool:
    """Whether the data the run recorded (`saved.data`) is `data` (resolved): the same path, there or not; for a
    relative record, also image files of the names and sizes the run was trained on, whose dataset cache is there
    (`cache_name`)."""
    if resolved_source(saved.data) == data or _named(data) == saved.data:
        return True
    if not _recorded_relative(saved.data):
        return False
    try:
        name = cache_name(data, state["networks"]["G"]["img_resolution"], saved.prepare)
    except (OSError, ValueError):  # no such folder or zip: not the run's data
        return False
    return (run_dir / DATASET_CACHE / name).is_file()


def data_moved(state: dict, data: str) -> bool:
    """Whether `data` (resolved) is not the path the run recorded but holds the very image files it was trained on
    (names and sizes, `state['data_files']`): the folder or zip moved, renamed or copied (another machine, mount or
    home folder). Such a run resumes: it was refused, and could not be continued at all."""
    if resolved_source(state["config"]["data"]) == data or not state.get("data_files"):
        return False
    try:
        now = image_entries(data)
    except (OSError, ValueError):  # no such folder or zip
        return False
    return sorted((name, size) for name, size, *_ in now) == sorted(
        (name, size) for name, size, *_ in state["data_files"])


def _same_base(saved: str, resume: str) -> bool:
    """Whether the base the run recorded (`saved`) is `resume` (resolved): the same path (there or not), address or
    name; a relative record also matches a path that ends with it (the file it named from the folder the run was
    started in)."""
    if resolved_source(saved) == resume or _named(resume) == saved:
        return True
    parts = Path(os.path.normpath(saved)).parts
    return _recorded_relative(saved) and ".." not in parts and Path(resume).parts[-len(parts):] == parts


def recorded_base(state: dict, resume: str) -> str:
    """The base a resumed run records, given `resume` (resolved): the run's own record where `resume` names that path,
    there or not (a relative base deleted since was recorded as given, and the next resume refused as another)."""
    saved = state["config"]["resume"]
    return saved if _named(resume) == saved else resume


def check_resumable(state: dict, cfg: TrainConfig) -> None:
    """Check that the new config changes nothing a resumed run must keep. The data and the base are compared as
    resolved paths: the same folder, zip or file however spelled. A run that recorded them as relative paths (as
    toonlib once did) resumes from any folder with the images it was trained on and the base file it named."""
    saved = TrainConfig.from_dict(state["config"])
    run_dir = user_path(cfg.run_dir)
    model_res = state["networks"]["G"]["img_resolution"]

    def value(config: TrainConfig, key: str) -> object:
        # an unset resolution is the model's: `--resolution 256` resumes a 256 px run started without it (it was
        # refused as "--resolution: None -> 256"), and the other way round
        return config.resolution or model_res if key == "resolution" else getattr(config, key)

    def same(key: str) -> bool:
        if key == "data":
            return _same_data(saved, cfg.data, run_dir, state) or data_moved(state, cfg.data)
        if key == "resume":
            return _same_base(saved.resume, cfg.resume)
        return value(saved, key) == value(cfg, key)

    changed = [k for k in RESUME_FIXED if not same(k)]
    if changed:
        listed = "; ".join(f"{option_both(k)}: {value(saved, k)!r} -> {value(cfg, k)!r}" for k in changed)
        relative = (f" The run recorded {saved.data!r} relative to the folder it was started in, and its dataset "
                    f"cache does not hold the images of {cfg.data}: give the folder it was trained on."
                    if "data" in changed and _recorded_relative(saved.data) else "")
        raise ValueError(f"{cfg.run_dir} holds a run started with other settings ({listed}).{relative} A resumed "
                         "run keeps its networks, data and random streams: restore those settings or use a new "
                         "run folder (--run-dir, run_dir=); --kimg (kimg=), --snapshot-kimg (snapshot_kimg=), --metric "
                         "(metric=) and the loss settings may change.")


def say_changed_settings(state: dict, cfg: TrainConfig, world_size: int = 1) -> None:
    """Warn of each setting a resumed run (of `world_size` processes) changes (those it may change, `RESUME_FIXED`
    aside), one line each: the run goes on with it, as it would not have without the stop. A setting given as the
    value the run had resolved (`_resolved_setting`: `--lr 0.0025` for auto, `--metric none` for auto on the CPU)
    changes nothing and is not said: it was "--lr 0.0025 from here on (the run had auto)" (fortieth session's
    audit)."""
    saved = TrainConfig.from_dict(state["config"])
    resolution = state["networks"]["G"]["img_resolution"]
    before = (resolution, state.get("world_size", 1), _resolved_device(saved.device))
    now = (resolution, world_size, _resolved_device(cfg.device))
    for field in dataclasses.fields(TrainConfig):
        name = field.name
        old, new = getattr(saved, name), getattr(cfg, name)
        if name == "device":
            if (said := _device_change(old, new)) is not None:
                warn(f"{cfg.run_dir}: {said}")
        elif (name not in RESUME_FIXED + QUIET_CHANGES and old != new
              and (was := _resolved_setting(name, saved, *before)) != (will := _resolved_setting(name, cfg, *now))
              and not _moot(name, cfg, now[2])):
            warn(f"{cfg.run_dir}: {_change_said(name, old, new, _auto_said(name, was), _auto_said(name, will))}")


#: What leaving a setting out means, as a resumed run's warning says it beside its value (`_auto_said`): the
#: command line has no `--gamma auto` (it said "--gamma auto from here on", which --gamma refuses; forty-second
#: session's audit). --ema-rampup's None is 'none', typed as such (`option_text`).
_AUTO_MEANINGS = {"gamma": " by NVIDIA's rule", "lr": " by NVIDIA's rule", "ema_kimg": " by NVIDIA's rule",
                  "batch_gpu": ", each process's share of the minibatch"}


def _auto_said(name: str, resolved: object) -> str:
    """The value `resolved` that the setting `name` takes when left out, and why: '0.0128 by NVIDIA's rule'."""
    value = option_text(name, resolved) if resolved is not None else "auto"
    return value + _AUTO_MEANINGS.get(name, "")


def _change_said(name: str, old: object, new: object, had: str, now: str) -> str:
    """A resumed run's warning of its setting `name` changed from `old` to `new`; a value left out (None, where the
    setting has an automatic value: `_AUTO_MEANINGS`, the device) is said as left out, with what it then is (`had`,
    `now`), not as a value the command line refuses ('--gamma auto', '--device auto'; thirty-eighth and
    forty-second sessions' audits)."""
    automatic = name in _AUTO_MEANINGS or name == "device"
    had = f"no {option_both(name)}: {had}" if old is None and automatic else option_text(name, old)
    if new is None and automatic:
        return f"{option_both(name)} left out, so {now} from here on (the run had {had})"
    return f"{option_name(name)} {option_text(name, new)} ({name}={new!r}) from here on (the run had {had})"


def _moot(name: str, cfg: TrainConfig, device: torch.device | None) -> bool:
    """Whether the setting `name` has no effect in the run of `cfg` on `device`: the number of --metric-images
    where no metric is computed (a warning said it changed; forty-second session's audit)."""
    return name == "metric_images" and device is not None and not cfg.resolved_metrics(device.type)


def _resolved_setting(name: str, config: TrainConfig, resolution: int, world_size: int,
                      device: torch.device | None) -> object:
    """The value the setting `name` of `config` takes in a run of a `resolution` px model, `world_size` processes, on
    `device`: an unset gamma, lr or ema_kimg by NVIDIA's rule, an unset batch_gpu as the processes' share, the metric
    'auto' as the metrics it computes there (None: a device this machine lacks, as given), others as given."""
    if name == "gamma":
        return config.resolved_gamma(resolution)
    if name == "lr":
        return config.resolved_lr(resolution)
    if name == "ema_kimg":
        return config.resolved_ema_kimg
    if name == "batch_gpu":
        return config.batch_gpu or config.batch_size // world_size
    if name == "metric" and device is not None:
        return config.resolved_metrics(device.type)
    return getattr(config, name)


def _resolved_device(device: str | None) -> torch.device | None:
    """The device `device` names on this machine ('cuda' as the GPU it is, 'cuda:0'); None where it has no such
    device (a run started on a GPU machine, resumed on another)."""
    try:
        found = default_device(device)
    except ValueError:
        return None
    if found.type == "cpu":  # 'cpu:0' is 'cpu'
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device()) if found.type == "cuda" and found.index is None \
        else found


def _device_change(old: str | None, new: str | None) -> str | None:
    """What a resumed run's warning says of its device (`say_changed_settings`), the run's `old` and this one's `new`;
    None where this machine resolves both to the same device. An unset device was said as "--device auto", which
    --device refuses, and None and 'cpu' on a machine without a GPU as a change (thirty-eighth session's audit)."""
    now = _resolved_device(new)
    if now == _resolved_device(old):
        return None
    return _change_said("device", old, new, "CUDA when available, else the CPU", str(now))


def data_changes(state: dict, files: list[tuple[str, int, int]], digests: dict[str, str] | None = None) -> str | None:
    """How the images of the data set changed since the training state was saved ('1 added, 2 removed; 63 files
    now'), from its file list and `files` (`ImageDataset.files`); None when they did not, or the state (of an older
    toonlib) did not record them. A file of another time is replaced unless both the state and `digests`
    (`ImageDataset.digests`) hold its content's digest and they are the same (the same image uploaded again)."""
    if "data_files" not in state:
        return None
    before = {name: stamp for name, *stamp in state["data_files"]}
    now = {name: stamp for name, *stamp in files}
    digests_before, digests = state.get("data_digests", {}), digests or {}

    def replaced(name: str) -> bool:
        digest = digests.get(name)
        return before[name] != now[name] and (digest is None or digest != digests_before.get(name))

    changes = {"added": len(now.keys() - before.keys()), "removed": len(before.keys() - now.keys()),
               "replaced": sum(replaced(name) for name in now if name in before)}
    if not any(changes.values()):
        return None
    said = ", ".join(f"{count} {change}" for change, count in changes.items() if count)
    return f"{said}; {counted(len(now), 'file')} now"


def say_changed_data(state: dict, data: str, files: list[tuple[str, int, int]], digests: dict[str, str]) -> None:
    """Warn when the images of the data set changed since the training state was saved (added, removed, replaced;
    `data_changes`): the run goes on with the images there now."""
    if changes := data_changes(state, files, digests):
        warn(f"the images in {data} changed since the run's last snapshot ({changes}): the run goes on with the "
             "images there now")
