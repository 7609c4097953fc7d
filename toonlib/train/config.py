"""TrainConfig: every setting of a fine-tuning run, with NVIDIA's transfer-learning defaults (docs/design.md section 8).

Defaults follow stylegan2-ada-pytorch's `train.py` when it resumes from a pretrained model: its `auto`
config for what depends on resolution and batch (R1 gamma, learning rate, G_ema half-life) and the
transfer-learning overrides (`ada_kimg=100`, no G_ema ramp-up). Settings left at None are resolved per run
by `resolved_gamma` / `resolved_lr` / `resolved_ema_kimg` from the model's resolution and the batch size.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from ..options import PREPARE_MODES

__all__ = ["AUGMENT_MODES", "METRIC_MODES", "MIXED_PRECISION_MODES", "RESUME_FIXED", "TrainConfig", "option_name",
           "option_value"]

AUGMENT_MODES = ("ada", "fixed", "none")
MIXED_PRECISION_MODES = ("auto", "off")
METRIC_MODES = ("auto", "none", "kid", "fid")
# What a resumed run may not change: the networks, what is trained, the data, the random streams, the augmentation.
RESUME_FIXED = ("data", "resume", "resolution", "prepare", "mirror", "batch_size", "seed", "freeze_d", "freeze_g",
                "freeze_mapping", "augment", "augment_p")


def option_name(name: str) -> str:
    """The command-line option of the TrainConfig field `name`, as messages name it: 'freeze_d' -> '--freeze-d'."""
    return "--" + name.replace("_", "-")


def option_value(name: str, value: object) -> str:
    """A setting's value as messages name it, for the command line and Python alike: '--freeze-d 11 (freeze_d=11)'."""
    return f"{option_name(name)} {value} ({name}={value!r})"


@dataclass
class TrainConfig:
    """Everything a fine-tuning run depends on; stored in the run folder (config.json and each training state).

    `data` is a folder or .zip of images. `resume` is where the networks come from: a checkpoint with D (path, URL
    or registry name), or a run folder. The run records both resolved (a local path as an absolute one), and a
    resumed run must name the same ones, however spelled.
    `run_dir` itself continues that run from its newest valid training state, as re-running with the same
    `run_dir` does (its stored `resume` is kept); another run's folder starts a new run from G, D and G_ema of
    that run's newest training state that loads (a half-written one is skipped), recorded in the snapshots'
    metadata as `finetune.base_state`. A run in `run_dir` is always resumed, with settings that may not change
    (`RESUME_FIXED`); one run at a time uses a `run_dir` (another is refused at once, see `Trainer`).

    Sizes are in kimg (thousands of real images shown to D). None means "NVIDIA's rule for this resolution
    and batch" (stylegan2-ada-pytorch `train.py`, config `auto`): `gamma` = 0.0002 * resolution^2 / batch_size,
    `lr` = 0.0025 below 1024 px and 0.002 at 1024, `ema_kimg` = batch_size * 10 / 32. `batch_gpu` (default:
    the whole share of a process) splits each process's share into micro-batches whose gradients are summed.

    Freezing (the layers keep the base model's G_ema weights, bit for bit):
    `freeze_d` freezes D's first k layers, counted from the image: b{R}.fromrgb, b{R}.conv0, b{R}.conv1,
    b{R}.skip, b{R/2}.conv0, ... (Freeze-D; the 4x4 epilogue is never frozen). `freeze_g` freezes the
    generator's synthesis blocks b4 ... b{freeze_g} (FreezeG: the toon keeps FFHQ's coarse structure), 0 = none.
    `freeze_mapping` freezes the mapping network and its `w_avg` (FreezeSG's "freeze style vectors": the toon
    model keeps FFHQ's W space, so layer swapping stays aligned); by default it is trained, as in NVIDIA's code.

    `metric`: a quality metric of G_ema against the training images at every snapshot ('kid' or 'fid', via
    torch-fidelity, `metric_images` generated images); 'auto' = KID on CUDA and none on the CPU, where it is
    slow. `mixed_precision='auto'` runs the checkpoint's `num_fp16_res` top resolutions in float16 on CUDA
    (parameters stay float32); 'off' never. `resolution` defaults to the base model's; images are resized to it.
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
        for name in ("data", "resume", "run_dir"):
            if getattr(self, name) in (None, ""):
                raise ValueError(f"TrainConfig.{name} is required")
            setattr(self, name, os.fspath(getattr(self, name)))
        self.betas = tuple(float(b) for b in self.betas)
        self.image_seeds = tuple(int(s) for s in self.image_seeds)
        checks = [
            (self.kimg > 0, f"kimg must be > 0, got {self.kimg}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.batch_gpu is None or 1 <= self.batch_gpu <= self.batch_size,
             f"batch_gpu must be between 1 and batch_size ({self.batch_size}), got {self.batch_gpu}"),
            (self.gamma is None or self.gamma >= 0, f"gamma must be >= 0 or None (auto), got {self.gamma}"),
            (self.pl_weight >= 0, f"pl_weight must be >= 0, got {self.pl_weight}"),
            (self.r1_interval >= 1 and self.pl_interval >= 1 and self.ada_interval >= 1,
             "r1_interval, pl_interval and ada_interval must be >= 1"),
            (self.lr is None or self.lr > 0, f"lr must be > 0 or None (auto), got {self.lr}"),
            (len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
             f"betas must be two numbers in [0, 1), got {self.betas}"),
            (self.ema_kimg is None or self.ema_kimg >= 0, f"ema_kimg must be >= 0 or None, got {self.ema_kimg}"),
            (self.ema_rampup is None or self.ema_rampup > 0, f"ema_rampup must be > 0 or None, got {self.ema_rampup}"),
            (0 <= self.style_mixing <= 1, f"style_mixing must be in [0, 1], got {self.style_mixing}"),
            (self.augment in AUGMENT_MODES, f"augment must be one of {AUGMENT_MODES}, got {self.augment!r}"),
            (0 <= self.augment_p <= 1, f"augment_p must be in [0, 1], got {self.augment_p}"),
            (0 < self.ada_target <= 1, f"ada_target must be in (0, 1], got {self.ada_target}"),
            (self.ada_kimg > 0, f"ada_kimg must be > 0, got {self.ada_kimg}"),
            (self.freeze_d >= 0, f"freeze_d must be >= 0, got {self.freeze_d}"),
            (self.freeze_g == 0 or (self.freeze_g >= 4 and self.freeze_g & (self.freeze_g - 1) == 0),
             f"freeze_g must be 0 (off) or a resolution 4, 8, 16, ..., got {self.freeze_g}"),
            (self.snapshot_kimg > 0, f"snapshot_kimg must be > 0, got {self.snapshot_kimg}"),
            (self.metric in METRIC_MODES, f"metric must be one of {METRIC_MODES}, got {self.metric!r}"),
            (self.metric_images >= 2, f"metric_images must be >= 2, got {self.metric_images}"),
            (len(self.image_seeds) > 0, "image_seeds must not be empty"),
            (self.mixed_precision in MIXED_PRECISION_MODES,
             f"mixed_precision must be one of {MIXED_PRECISION_MODES}, got {self.mixed_precision!r}"),
            (self.prepare in PREPARE_MODES, f"prepare must be one of {PREPARE_MODES}, got {self.prepare!r}"),
            (self.resolution is None or (self.resolution >= 4 and self.resolution & (self.resolution - 1) == 0),
             f"resolution must be a power of two >= 4, got {self.resolution}"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

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

    def to_dict(self) -> dict:
        """The settings as JSON-able values."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The config of `to_dict` output; settings unknown to this version are refused by the constructor."""
        return cls(**d)
