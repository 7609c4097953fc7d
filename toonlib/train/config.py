"""TrainConfig: every setting of a fine-tuning run, with NVIDIA's transfer-learning defaults (docs/design.md section 8).

Defaults follow stylegan2-ada-pytorch's `train.py` when it resumes from a pretrained model: its `auto`
config for what depends on resolution and batch (R1 gamma, learning rate, G_ema half-life) and the
transfer-learning overrides (`ada_kimg=100`, no G_ema ramp-up). Settings left at None are resolved per run
by `resolved_gamma` / `resolved_lr` / `resolved_ema_kimg` from the model's resolution and the batch size.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
from dataclasses import dataclass
from typing import Callable, Mapping, Sized

from ..messages import check_count, check_flag
from ..options import MAX_IMAGE_SEEDS, PREPARE_MODES

__all__ = ["AUGMENT_MODES", "METRIC_MODES", "MIXED_PRECISION_MODES", "RESUME_FIXED", "TrainConfig", "TrainConfigError",
           "option_both", "option_name", "option_text", "option_value"]

AUGMENT_MODES = ("ada", "fixed", "none")
MIXED_PRECISION_MODES = ("auto", "off")
METRIC_MODES = ("auto", "none", "kid", "fid")
# What a resumed run may not change: the networks, what is trained, the data, the random streams, the augmentation.
RESUME_FIXED = ("data", "resume", "resolution", "prepare", "mirror", "batch_size", "seed", "freeze_d", "freeze_g",
                "freeze_mapping", "augment", "augment_p")


# The fields' types beyond str: numbers (floats), whole numbers (with their minimum), and which may be None (auto).
_NUMBERS = ("kimg", "gamma", "pl_weight", "lr", "ema_kimg", "ema_rampup", "style_mixing", "augment_p", "ada_target",
            "ada_kimg", "snapshot_kimg")
_COUNTS = {"batch_size": 1, "batch_gpu": 1, "r1_interval": 1, "pl_interval": 1, "ada_interval": 1, "freeze_d": 0,
           "freeze_g": 0, "metric_images": 2, "seed": 0, "resolution": 4}
_OPTIONAL = ("batch_gpu", "gamma", "lr", "ema_kimg", "ema_rampup", "resolution")
# The paths, and what each names.
_PATHS = {"data": "the path of a folder or .zip file of images",
          "resume": "a checkpoint's path, URL or registry name, or a run folder", "run_dir": "the path of a folder"}


class TrainConfigError(ValueError):
    """Invalid TrainConfig settings, all of them. Each problem names its fields as `{field}`, so that the message
    names them as Python does (`str()`: 'kimg must be > 0') or as the command line does (`text(option_name)`)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid TrainConfig: " + self.text(lambda name: name))

    def text(self, name: Callable[[str], str], command_line: bool = False) -> str:
        """The problems, '; '-separated, each field named by `name(field)`; `{field:unset}` is how the field is left
        unset: Python's None, or on the `command_line` 'left out' ('none' for --ema-rampup, which takes it): it
        said "--gamma must be >= 0 or None (auto)" (forty-second session's audit)."""
        fields = {f.name for f in dataclasses.fields(TrainConfig)}

        def said(m: re.Match) -> str:
            if m[1] not in fields:
                return m[0]
            if not m[2]:
                return name(m[1])
            return ("'none'" if m[1] == "ema_rampup" else "left out") if command_line else "None"

        return "; ".join(re.sub(r"\{(\w+)(:unset)?\}", said, problem) for problem in self.problems)


def _seed_tuple(seeds: object) -> tuple[int, ...]:
    """`image_seeds` as a tuple: a string such as '0-15' as the command line takes it, or whole numbers (a tuple, a
    list, a range, a NumPy array)."""
    if isinstance(seeds, str):
        from ..networks import parse_seeds  # imports torch, which the command line's parser does without

        return tuple(parse_seeds(seeds, max_count=MAX_IMAGE_SEEDS))
    if isinstance(seeds, Sized) and getattr(seeds, "ndim", 1) and len(seeds) > MAX_IMAGE_SEEDS:  # range(10**9): before
        # a list of them is built (a 0-d tensor or array has no length)
        raise ValueError(f"give at most {MAX_IMAGE_SEEDS} seeds (one image each in every snapshot's grid); got "
                         f"{len(seeds)}")
    from ..networks import check_seeds  # what a seed is, said once: there

    try:
        if isinstance(seeds, (bytes, Mapping)):
            raise ValueError("no seeds")
        listed = list(seeds)  # an iterator once (TypeError: no list, one seed alone, a 0-d tensor)
        return tuple(check_seeds(listed)) if listed else ()  # none: said as "must not be empty" with the others
    except (TypeError, ValueError):
        raise ValueError(f"give whole numbers from 0 to 2**32 - 1, such as (0, 1, 2), or a string such as '0-15'; "
                         f"got {seeds!r}") from None


def option_name(name: str) -> str:
    """The command-line option of the TrainConfig field `name`, as messages name it: 'freeze_d' -> '--freeze-d'."""
    return "--" + name.replace("_", "-")


def option_both(name: str) -> str:
    """A setting named in both words, for the command line and Python alike: '--batch-size (batch_size=)'
    (`commands.for_command_line` and `notebook.in_notebook_words` keep their user's)."""
    return f"{option_name(name)} ({name}=)"


def option_value(name: str, value: object) -> str:
    """A setting's value as messages name it, for the command line and Python alike: '--freeze-d 11 (freeze_d=11)'."""
    return f"{option_name(name)} {value} ({name}={value!r})"


def option_text(name: str, value: object) -> str:
    """A setting's value as one types it after its option: None as 'auto' ('none' for --ema-rampup, where None is
    off), 5.0 as 5, betas as two numbers ('0 0.99'), seeds as ranges ('0-15,20')."""
    if value is None:
        return "none" if name == "ema_rampup" else "auto"
    if name == "image_seeds":
        runs: list[list[int]] = []
        for seed in value:
            if runs and seed == runs[-1][1] + 1:
                runs[-1][1] = seed
            else:
                runs.append([seed, seed])
        return ",".join(f"{first}-{last}" if last > first else str(first) for first, last in runs)
    if isinstance(value, tuple):
        return " ".join(option_text(name, v) for v in value)
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


@dataclass
class TrainConfig:
    """Everything a fine-tuning run depends on; stored in the run folder (config.json and each training state).

    `data` is a folder or .zip of images. `resume` is where the networks come from: a checkpoint with D (path, URL
    or registry name), or a run folder. Paths are strings or Paths, `~` the home folder. The run records both
    resolved (a local path as an absolute one), and a resumed run must name the same ones, however spelled.
    `run_dir` itself continues that run from its newest valid training state, as re-running with the same
    `run_dir` does (its stored `resume` is kept); another run's folder starts a new run from G, D and G_ema of
    that run's newest training state that loads (a half-written one is skipped), recorded in the snapshots'
    metadata as `finetune.base_state`. A run in `run_dir` is always resumed, with settings that may not change
    (`RESUME_FIXED`); one run at a time uses a `run_dir` (another is refused at once, see `Trainer`).

    Sizes are in kimg (thousands of real images shown to D). None means "NVIDIA's rule for this resolution
    and batch" (stylegan2-ada-pytorch `train.py`, config `auto`): `gamma` = 0.0002 * resolution^2 / batch_size,
    `lr` = 0.0025 below 1024 px and 0.002 at 1024, `ema_kimg` = batch_size * 10 / 32. `batch_gpu` (default:
    the whole share of a process) splits each process's share into micro-batches whose gradients are summed.

    Freezing (the layers keep the base model's G_ema weights and buffers, `w_avg` and const noise, bit for bit):
    `freeze_d` freezes D's first k layers, counted from the image: b{R}.fromrgb, b{R}.conv0, b{R}.conv1,
    b{R}.skip, b{R/2}.conv0, ... (Freeze-D; the 4x4 epilogue is never frozen). `freeze_g` freezes the
    generator's synthesis blocks b4 ... b{freeze_g} (FreezeG: the toon keeps FFHQ's coarse structure), 0 = none.
    `freeze_mapping` freezes the mapping network and its `w_avg` (FreezeSG's "freeze style vectors": the toon
    model keeps FFHQ's W space, so layer swapping stays aligned); by default it is trained, as in NVIDIA's code.

    `metric`: a quality metric of G_ema against the training images at every snapshot ('kid' or 'fid', via
    torch-fidelity, `metric_images` generated images); 'auto' = KID on CUDA and none on the CPU, where it is
    slow. `mixed_precision='auto'` runs the checkpoint's `num_fp16_res` top resolutions in float16 on CUDA
    (parameters stay float32); 'off' never. `resolution` defaults to the base model's; images are resized to it.
    `image_seeds` may be written as on the command line ('0-15'), or as a range or NumPy array of seeds.

    Values are checked when the config is made, all of them, and refused together (`TrainConfigError`, a
    ValueError): numbers must be finite, counts whole numbers (4.0 is not a batch size), flags True or False.
    """

    data: str
    resume: str
    run_dir: str
    kimg: float = 10
    batch_size: int = 8
    batch_gpu: int | None = None
    gamma: float | None = None
    r1_interval: int = 16
    pl_weight: float = 2
    pl_interval: int = 4
    lr: float | None = None
    betas: tuple[float, float] = (0.0, 0.99)
    ema_kimg: float | None = None
    ema_rampup: float | None = None
    style_mixing: float = 0.9
    augment: str = "ada"
    augment_p: float = 0.0
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 100
    freeze_d: int = 0
    freeze_g: int = 0
    freeze_mapping: bool = False
    mirror: bool = True
    snapshot_kimg: float = 1
    metric: str = "auto"
    metric_images: int = 1000
    image_seeds: tuple[int, ...] = tuple(range(16))
    seed: int = 0
    mixed_precision: str = "auto"
    device: str | None = None
    prepare: str = "crop"
    resolution: int | None = None

    def __post_init__(self) -> None:
        for name in _PATHS:
            if getattr(self, name) in (None, ""):
                raise ValueError(f"TrainConfig.{name} is required")
        if isinstance(self.device, numbers.Integral) and not isinstance(self.device, bool):
            self.device = f"cuda:{self.device}"  # a GPU's number, as torch.device(1) takes it (it was read as '1')
        elif self.device is not None:
            self.device = str(self.device)  # a torch.device too; config.json holds it as typed
        problems = self._path_problems() + self._type_problems()
        problems += self._range_problems(problems)
        if problems:
            raise TrainConfigError(problems)

    def _range_problems(self, type_problems: list[str]) -> list[str]:
        """The range checks' problems, in `TrainConfigError`'s {field} form, of the fields that have their type: the
        others are said by `type_problems` (comparing a string to 0 fails in Python). They were checked only once every
        value had its type, so `batch_size=4.0, kimg=-1` said the first alone."""
        mistyped = set(re.findall(r"\{(\w+)\}", " ".join(type_problems)))
        problems = []
        for ok, message in self._range_checks():
            if mistyped.isdisjoint(re.findall(r"\{(\w+)\}", message)) and not ok():
                problems.append(message)
        return problems

    def _path_problems(self) -> list[str]:
        """What is not a path among `data`, `resume` and `run_dir`, in `TrainConfigError`'s {field} form; converts
        Paths to strings, as config.json holds them."""
        problems = []
        for name, what in _PATHS.items():
            value = getattr(self, name)
            value = os.fspath(value) if isinstance(value, os.PathLike) else value
            if isinstance(value, str):
                setattr(self, name, value)
                continue
            loaded = name == "resume" and (hasattr(value, "state_dict") or hasattr(value, "G_ema"))  # a model
            problems.append(f"{{{name}}} must be {what} (a str or Path), got {type(value).__name__}"
                            + (": give the file or registry name it was loaded from (the run records where its "
                               "networks came from; save_network writes a loaded model to a file)" if loaded else ""))
        return problems

    def _type_problems(self) -> list[str]:
        """What is not of its field's type, in `TrainConfigError`'s {field} form; converts numbers to float and the
        sequences to tuples, as config.json and the training states hold them."""
        problems = []
        for name in _NUMBERS:
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                problems.append(f"{{{name}}} must be a number{' or None' if name in _OPTIONAL else ''}, got "
                                f"{value!r}")
            elif not math.isfinite(value):
                problems.append(f"{{{name}}} must be a finite number, got {value}")
            else:
                setattr(self, name, float(value))
        for name, minimum in _COUNTS.items():
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            try:
                check_count(f"{{{name}}}", value, minimum)
            except ValueError as exc:
                problems.append(str(exc))
            else:
                setattr(self, name, int(value))
        for name in ("freeze_mapping", "mirror"):
            try:
                check_flag(f"{{{name}}}", getattr(self, name))
            except TypeError as exc:
                problems.append(str(exc))
        betas = self.betas
        if (isinstance(betas, (tuple, list)) and len(betas) == 2
                and all(isinstance(b, numbers.Real) and not isinstance(b, bool) for b in betas)):
            self.betas = tuple(float(b) for b in betas)
        else:
            problems.append(f"{{betas}} must be two numbers in [0, 1), got {betas!r}")
        try:
            self.image_seeds = _seed_tuple(self.image_seeds)
        except ValueError as exc:
            problems.append(f"{{image_seeds}}: {exc}")
        return problems

    def _range_checks(self) -> list[tuple[Callable[[], bool], str]]:
        """(whether the values are in range, what is wrong otherwise), in `TrainConfigError`'s {field} form; the first
        is asked only of values of their field's type (`_range_problems`)."""
        return [
            (lambda: self.kimg > 0, f"{{kimg}} must be > 0, got {self.kimg}"),
            (lambda: self.batch_gpu is None or self.batch_gpu <= self.batch_size,
             f"{{batch_gpu}} must be between 1 and {{batch_size}} ({self.batch_size}), got {self.batch_gpu}"),
            (lambda: self.gamma is None or self.gamma >= 0,
             f"{{gamma}} must be >= 0 or {{gamma:unset}} (auto), got {self.gamma}"),
            (lambda: self.pl_weight >= 0, f"{{pl_weight}} must be >= 0, got {self.pl_weight}"),
            (lambda: self.lr is None or self.lr > 0, f"{{lr}} must be > 0 or {{lr:unset}} (auto), got {self.lr}"),
            (lambda: all(0 <= b < 1 for b in self.betas), f"{{betas}} must be two numbers in [0, 1), got {self.betas}"),
            (lambda: self.ema_kimg is None or self.ema_kimg >= 0,
             f"{{ema_kimg}} must be >= 0 or {{ema_kimg:unset}} (auto), got {self.ema_kimg}"),
            (lambda: self.ema_rampup is None or self.ema_rampup > 0,
             f"{{ema_rampup}} must be > 0 or {{ema_rampup:unset}} (off), got {self.ema_rampup}"),
            (lambda: 0 <= self.style_mixing <= 1, f"{{style_mixing}} must be in [0, 1], got {self.style_mixing}"),
            (lambda: self.augment in AUGMENT_MODES,
             f"{{augment}} must be one of {AUGMENT_MODES}, got {self.augment!r}"),
            (lambda: 0 <= self.augment_p <= 1, f"{{augment_p}} must be in [0, 1], got {self.augment_p}"),
            (lambda: 0 < self.ada_target <= 1, f"{{ada_target}} must be in (0, 1], got {self.ada_target}"),
            (lambda: self.ada_kimg > 0, f"{{ada_kimg}} must be > 0, got {self.ada_kimg}"),
            (lambda: self.freeze_g == 0 or (self.freeze_g >= 4 and self.freeze_g & (self.freeze_g - 1) == 0),
             f"{{freeze_g}} must be 0 (off) or a resolution 4, 8, 16, ..., got {self.freeze_g}"),
            (lambda: self.snapshot_kimg > 0, f"{{snapshot_kimg}} must be > 0, got {self.snapshot_kimg}"),
            (lambda: self.metric in METRIC_MODES, f"{{metric}} must be one of {METRIC_MODES}, got {self.metric!r}"),
            (lambda: len(self.image_seeds) > 0, "{image_seeds} must not be empty"),
            (lambda: self.mixed_precision in MIXED_PRECISION_MODES,
             f"{{mixed_precision}} must be one of {MIXED_PRECISION_MODES}, got {self.mixed_precision!r}"),
            (lambda: self.prepare in PREPARE_MODES,
             f"{{prepare}} must be one of {PREPARE_MODES}, got {self.prepare!r}"),
            (lambda: self.resolution is None or self.resolution & (self.resolution - 1) == 0,
             f"{{resolution}} must be a power of two >= 4, got {self.resolution}"),
        ]

    def resolved_gamma(self, resolution: int) -> float:
        """R1 weight: `gamma`, or NVIDIA's heuristic 0.0002 * resolution^2 / batch_size (train.py, cfg auto)."""
        return 0.0002 * resolution**2 / self.batch_size if self.gamma is None else self.gamma

    def resolved_lr(self, resolution: int) -> float:
        """Adam's learning rate: `lr`, or NVIDIA's 0.0025 below 1024 px and 0.002 at 1024 (train.py, cfg auto)."""
        if self.lr is not None:
            return self.lr
        return 0.002 if resolution >= 1024 else 0.0025

    @property
    def resolved_ema_kimg(self) -> float:
        """G_ema's half-life in kimg: `ema_kimg`, or NVIDIA's batch_size * 10 / 32 (train.py, cfg auto)."""
        return self.batch_size * 10 / 32 if self.ema_kimg is None else self.ema_kimg

    def resolved_metrics(self, device_type: str) -> tuple[str, ...]:
        """The quality metrics of a run on a device of `device_type` ('cuda', 'cpu'): `metric`, 'auto' being KID on
        CUDA and none elsewhere, where it is slow."""
        if self.metric == "none" or (self.metric == "auto" and device_type != "cuda"):
            return ()
        return ("kid",) if self.metric == "auto" else (self.metric,)

    def to_dict(self) -> dict:
        """The settings as JSON-able values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The config of `to_dict` output; settings unknown to this version are refused by the constructor."""
        return cls(**d)
