"""Fine-tuning a pretrained StyleGAN2 on a few hundred images, Toonify-style (DESIGN.md section 8).

    from toonlib.train import TrainConfig, finetune
    snapshot = finetune(TrainConfig(data="toons/", resume="ffhq-256-noaug", run_dir="runs/toons"))

The recipe is StyleGAN2's (Karras et al. 2020) with ADA (Karras et al. 2020b) and Freeze-D (Mo et al.
2020). Each minibatch runs the phases that are due: Gmain (non-saturating logistic loss, style mixing),
Greg (path-length regulariser every `pl_interval` minibatches, when `pl_weight` > 0), Dmain (logistic
loss) and Dreg (R1 every `r1_interval` minibatches). Lazy regularisation multiplies a regulariser by its
interval and gives its network's Adam lr * c and betas ** c, c = interval / (interval + 1). Every image D
sees goes through the AugmentPipe, whose p ADA tunes from sign(D(real)). G_ema follows G with a
half-life of `ema_kimg` thousand images. The base model's mapping network is kept as it is.

Every `snapshot_kimg` the run folder gets `network-snapshot-KKKKKK.pt` (G_ema, G, D; toonlib format),
`fakesKKKKKK.png`, a line of `metrics.jsonl` (plotted in `metrics.png`) and `training-state.pt`, from
which `finetune` on the same folder resumes after an interruption: it continues from the last snapshot
exactly as the uninterrupted run would have (bit for bit on the CPU). Under
`torchrun` each process trains its share of every minibatch; gradients, ADA statistics, `w_avg` and the
path-length mean are averaged over processes so that all of them hold identical networks:

    torchrun --nproc_per_node=2 -m toonlib.train --data toons/ --resume ffhq-256-noaug --run-dir runs/toons
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as torch_dist
from PIL import Image
from tqdm.auto import tqdm

from .augment import AdaptiveP, AugmentPipe
from .checkpoints import CheckpointError, Networks, load_network, save_network
from .data import PREPARE_MODES, ImageDataset, infinite_loader
from .devices import default_device
from .files import atomic_write_path
from .images import labelled_grid, save_image, to_pil
from .losses import discriminator_loss, generator_loss, path_length_penalty, path_lengths, r1_penalty, update_pl_mean
from .networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, parse_seeds, z_from_seeds

__all__ = ["TrainConfig", "Trainer", "add_train_arguments", "config_from_args", "d_layer_names", "ema_beta",
           "finetune", "lazy_regularization", "update_ema"]

AUGMENT_MODES = ("ada", "fixed", "none")
MIXED_PRECISION_MODES = ("auto", "off")
STATE_FILE = "training-state.pt"
STATE_VERSION = 1
PL_DECAY = 0.01
PL_BATCH_SHRINK = 2
# What a resumed run may not change: the networks, the data, the random streams, the augmentation mode.
RESUME_FIXED = ("data", "resume", "resolution", "prepare", "mirror", "batch_size", "seed", "freeze_d", "augment",
                "augment_p")
STAT_KEYS = ("loss_G", "loss_D", "r1", "pl")


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass
class TrainConfig:
    """Everything a fine-tuning run depends on; stored in the run folder (config.json, training-state.pt).

    Sizes are in kimg (thousands of real images shown to D). `ema_kimg=None` scales G_ema's half-life
    with the batch like stylegan2-ada: batch_size * 10 / 32 kimg. `batch_gpu` (default: the whole share of
    a process) splits each process's share into micro-batches whose gradients are accumulated.
    `freeze_d` freezes D's first k layers, counted from the image: b{R}.fromrgb, b{R}.conv0, b{R}.conv1,
    b{R}.skip, b{R/2}.conv0, ... (the 4x4 epilogue is never frozen). `mixed_precision='auto'` runs the
    checkpoint's `num_fp16_res` top resolutions in float16 on CUDA (parameters stay float32); 'off' never.
    `resolution` defaults to the base model's; images are resized to it.
    """

    data: str
    resume: str
    run_dir: str
    kimg: float = 10
    batch_size: int = 8
    batch_gpu: int | None = None
    gamma: float = 10
    r1_interval: int = 16
    pl_weight: float = 0
    pl_interval: int = 4
    lr: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    ema_kimg: float | None = None
    ema_rampup: float | None = 0.05
    style_mixing: float = 0.9
    augment: str = "ada"
    augment_p: float = 0.0
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 500
    freeze_d: int = 0
    mirror: bool = True
    snapshot_kimg: float = 1
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
            (self.gamma >= 0, f"gamma must be >= 0, got {self.gamma}"),
            (self.pl_weight >= 0, f"pl_weight must be >= 0, got {self.pl_weight}"),
            (self.r1_interval >= 1 and self.pl_interval >= 1 and self.ada_interval >= 1,
             "r1_interval, pl_interval and ada_interval must be >= 1"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), f"betas must be two numbers in [0, 1), "
                                                                            f"got {self.betas}"),
            (self.ema_kimg is None or self.ema_kimg >= 0, f"ema_kimg must be >= 0 or None, got {self.ema_kimg}"),
            (self.ema_rampup is None or self.ema_rampup > 0, f"ema_rampup must be > 0 or None, got {self.ema_rampup}"),
            (0 <= self.style_mixing <= 1, f"style_mixing must be in [0, 1], got {self.style_mixing}"),
            (self.augment in AUGMENT_MODES, f"augment must be one of {AUGMENT_MODES}, got {self.augment!r}"),
            (0 <= self.augment_p <= 1, f"augment_p must be in [0, 1], got {self.augment_p}"),
            (0 < self.ada_target <= 1, f"ada_target must be in (0, 1], got {self.ada_target}"),
            (self.ada_kimg > 0, f"ada_kimg must be > 0, got {self.ada_kimg}"),
            (self.freeze_d >= 0, f"freeze_d must be >= 0, got {self.freeze_d}"),
            (self.snapshot_kimg > 0, f"snapshot_kimg must be > 0, got {self.snapshot_kimg}"),
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

    @property
    def effective_ema_kimg(self) -> float:
        return self.batch_size * 10 / 32 if self.ema_kimg is None else self.ema_kimg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return cls(**d)


# --------------------------------------------------------------------------------------------
# Pieces of the recipe


def lazy_regularization(lr: float, betas: tuple[float, float], interval: int | None) -> tuple[float, tuple]:
    """Adam's lr and betas for a network regularised every `interval` minibatches (None: not regularised).

    The regulariser's gradient is scaled by `interval`; so that the optimiser sees the same effective
    step, with c = interval / (interval + 1), lr becomes lr * c and each beta becomes beta ** c.
    """
    if interval is None:
        return lr, tuple(betas)
    c = interval / (interval + 1)
    return lr * c, tuple(beta**c for beta in betas)


def ema_beta(batch_size: int, ema_kimg: float, cur_nimg: int, rampup: float | None) -> float:
    """G_ema's decay per minibatch for a half-life of `ema_kimg` kimg, ramped up over the first images:
    with `rampup` the half-life is at most `cur_nimg * rampup` images."""
    ema_nimg = ema_kimg * 1000
    if rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(G_ema: Generator, G: Generator, beta: float) -> None:
    """G_ema's parameters <- G + beta * (G_ema - G) (torch.lerp); its buffers (w_avg, noise) <- G's."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def d_layer_names(D: Discriminator) -> list[str]:
    """D's layers in Freeze-D order: from the top-resolution block down, fromrgb, conv0, conv1, skip."""
    names = []
    for res in D.block_resolutions:
        block = getattr(D, f"b{res}")
        names += [f"b{res}.{layer}" for layer in ("fromrgb", "conv0", "conv1", "skip") if hasattr(block, layer)]
    return names


def _set_hparams(opt: torch.optim.Optimizer, lr: float, betas: tuple) -> None:
    for group in opt.param_groups:
        group["lr"], group["betas"] = lr, betas


# --------------------------------------------------------------------------------------------
# Processes (torchrun)


@dataclass
class Distributed:
    """This process's place among the training processes (one process: rank 0 of 1, no communication)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def all_reduce_mean_(self, tensor: torch.Tensor) -> None:
        if self.world_size > 1:
            torch_dist.all_reduce(tensor)
            tensor.div_(self.world_size)

    def all_reduce_sum_(self, tensor: torch.Tensor) -> None:
        if self.world_size > 1:
            torch_dist.all_reduce(tensor)

    def all_gather(self, obj: object) -> list:
        if self.world_size == 1:
            return [obj]
        out = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world_size > 1:
            torch_dist.barrier()


def _init_distributed(device: str | None) -> tuple[Distributed, bool]:
    """Join the process group torchrun describes (WORLD_SIZE > 1); returns it and whether we started it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    dev = default_device(device)
    if world_size <= 1:
        return Distributed(device=dev), False
    rank = int(os.environ["RANK"])
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(dev)
    started = not torch_dist.is_initialized()
    if started:
        torch_dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Distributed(rank, world_size, dev), started


# --------------------------------------------------------------------------------------------
# Training


class Trainer:
    """One fine-tuning run: networks, optimisers, augmentation, data and counters, fresh or resumed.

    `run()` trains to the kimg budget and returns the last network snapshot's path; `step(reals)` runs one
    minibatch and `run_phase(name, reals)` one phase ('Gmain', 'Greg', 'Dmain', 'Dreg') of it.
    """

    def __init__(self, config: TrainConfig, *, dist: Distributed | None = None, progress: bool = True,
                 callback: Callable[[dict], None] | None = None):
        self.cfg = cfg = config
        self.dist = dist or Distributed(device=default_device(config.device))
        self.device = self.dist.device
        self.is_main = self.dist.rank == 0
        self.progress = progress and self.is_main
        self.callback = callback
        self.run_dir = Path(cfg.run_dir)
        state_path = self.run_dir / STATE_FILE
        state = torch.load(state_path, map_location="cpu", weights_only=True) if state_path.is_file() else None
        G, D, G_ema = _networks_from_state(state, cfg) if state is not None else _load_base(cfg.resume)
        self.G = G.to(self.device).train().requires_grad_(False)
        self.D = D.to(self.device).train().requires_grad_(False)
        self.G_ema = G_ema.to(self.device).eval().requires_grad_(False)
        self._check_sizes()
        frozen = tuple(f"{name}." for name in d_layer_names(D)[:cfg.freeze_d])
        self.g_params = list(self.G.parameters())
        self.d_params = [p for name, p in self.D.named_parameters() if not name.startswith(frozen)]
        self.opt_G = torch.optim.Adam(self.g_params, *self._hparams("G"), eps=1e-8)
        self.opt_D = torch.optim.Adam(self.d_params, *self._hparams("D"), eps=1e-8)
        self.phases = [("Gmain", 1)] + ([("Greg", cfg.pl_interval)] if cfg.pl_weight > 0 else []) + [("Dmain", 1)]
        self.phases += [("Dreg", cfg.r1_interval)] if cfg.gamma > 0 else []
        p = 0.0 if cfg.augment == "none" else cfg.augment_p
        self.augment_pipe = AugmentPipe.bgc(p).to(self.device)
        self.ada = AdaptiveP(p, target=cfg.ada_target if cfg.augment == "ada" else None,
                             interval=cfg.ada_interval * self.num_micro, ada_kimg=cfg.ada_kimg,
                             all_reduce=self.dist.all_reduce_sum_ if self.dist.world_size > 1 else None)
        self.force_fp32 = None if cfg.mixed_precision == "auto" else True
        self.pl_mean = torch.zeros([], device=self.device)
        self.cur_nimg = self.batch_idx = 0
        self.last_snapshot: str | None = None
        self.stats: dict[str, list[float]] = {}
        self.latest: dict[str, float] = {}
        self.dataset = self._load_dataset()
        if state is None:
            self._seed()
        else:
            self._load_state(state)

    # ---- setup

    def _check_sizes(self) -> None:
        """Check resolutions, the batch split and freeze_d; set `batch_gpu` and `num_micro` (micro-batches)."""
        cfg, G, D = self.cfg, self.G, self.D
        res = G.img_resolution
        if D.img_resolution != res:
            raise CheckpointError(f"{cfg.resume}: its G makes {res} px images but its D reads {D.img_resolution} px")
        if cfg.resolution is not None and cfg.resolution != res:
            raise ValueError(
                f"the training images are to be {cfg.resolution}x{cfg.resolution} but the base model {cfg.resume} "
                f"makes {res}x{res} images: fine-tuning keeps the model's resolution. Leave resolution unset "
                f"(the images are then resized to {res}) or start from a {cfg.resolution} px model "
                f"(e.g. 'ffhq-{cfg.resolution}-noaug').")
        world = self.dist.world_size
        self.batch_gpu = cfg.batch_gpu or cfg.batch_size // world
        if cfg.batch_size % (self.batch_gpu * world):
            raise ValueError(f"batch_size ({cfg.batch_size}) must be divisible by batch_gpu ({self.batch_gpu}) x "
                             f"the number of processes ({world})")
        self.num_micro = cfg.batch_size // (self.batch_gpu * world)
        group = min(D.config.mbstd_group_size or self.batch_gpu, self.batch_gpu)
        if self.batch_gpu % group:
            raise ValueError(f"batch_gpu ({self.batch_gpu}) must be a multiple of D's minibatch-stddev group size "
                             f"({D.config.mbstd_group_size})")
        layers = d_layer_names(D)
        if cfg.freeze_d > len(layers):
            raise ValueError(f"freeze_d={cfg.freeze_d} but D has {len(layers)} layers that can be frozen: {layers}")

    def _hparams(self, which: str) -> tuple[float, tuple]:
        cfg = self.cfg
        if which == "G":
            return lazy_regularization(cfg.lr, cfg.betas, cfg.pl_interval if cfg.pl_weight > 0 else None)
        return lazy_regularization(cfg.lr, cfg.betas, cfg.r1_interval if cfg.gamma > 0 else None)

    def _seed(self, *extra: int) -> None:
        """Seed torch's global RNGs (the synthesis noise draws from them) per process."""
        seed = np.random.SeedSequence([self.cfg.seed, self.dist.rank, *extra]).generate_state(1)[0]
        torch.manual_seed(int(seed))

    def _load_dataset(self) -> ImageDataset:
        """The training images at the model's resolution; the main process prepares and caches them first."""
        cfg = self.cfg
        if not self.is_main:
            self.dist.barrier()
        dataset = ImageDataset(cfg.data, self.G.img_resolution, prepare=cfg.prepare, xflip=cfg.mirror,
                               cache_dir=self.run_dir / "dataset-cache", progress=self.progress)
        if self.is_main:
            self.dist.barrier()
        return dataset

    # ---- one minibatch

    def step(self, reals: torch.Tensor) -> None:
        """Train on one minibatch (this process's share [B, 3, R, R] on the device): the phases that are due,
        then p, w_avg (averaged over processes) and G_ema."""
        for name, interval in self.phases:
            if self.batch_idx % interval == 0:
                self.run_phase(name, reals)
        self.augment_pipe.p.fill_(self.ada.p)
        self.dist.all_reduce_mean_(self.G.mapping.w_avg)
        cfg = self.cfg
        update_ema(self.G_ema, self.G, ema_beta(cfg.batch_size, cfg.effective_ema_kimg, self.cur_nimg, cfg.ema_rampup))
        self.cur_nimg += cfg.batch_size
        self.batch_idx += 1

    def run_phase(self, name: str, reals: torch.Tensor) -> None:
        """One optimiser step of G ('Gmain', 'Greg') or D ('Dmain', 'Dreg'), accumulated over micro-batches."""
        loss_fn = {"Gmain": self._g_main, "Greg": self._g_reg, "Dmain": self._d_main, "Dreg": self._d_reg}[name]
        params, opt = (self.g_params, self.opt_G) if name.startswith("G") else (self.d_params, self.opt_D)
        for p in params:
            p.requires_grad_(True)
        opt.zero_grad(set_to_none=True)
        micro = reals.split(self.batch_gpu)
        for real in micro:
            (loss_fn(real) / len(micro)).backward()
        self._reduce_gradients(params)
        opt.step()
        for p in params:
            p.requires_grad_(False)

    def _reduce_gradients(self, params: list[torch.Tensor]) -> None:
        """Average gradients over processes (one all-reduce) and replace NaN / inf like stylegan2-ada."""
        params = [p for p in params if p.grad is not None]
        if self.dist.world_size > 1:
            flat = torch.cat([p.grad.flatten() for p in params])
            self.dist.all_reduce_mean_(flat)
            for p, g in zip(params, flat.split([p.numel() for p in params])):
                p.grad.copy_(g.view_as(p))
        for p in params:
            torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)

    def _generate(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n images of G with random noise, and their ws; with probability `style_mixing` the ws from a
        random cutoff on come from a second z."""
        z = torch.randn([n, self.G.z_dim], device=self.device)
        ws = self.G.mapping(z, None)
        if self.cfg.style_mixing > 0 and float(torch.rand([])) < self.cfg.style_mixing:
            cutoff = int(torch.randint(1, ws.shape[1], []))
            other = self.G.mapping(torch.randn_like(z), None, skip_w_avg_update=True)
            ws = torch.cat([ws[:, :cutoff], other[:, cutoff:]], dim=1)
        return self.G.synthesis(ws, noise_mode="random", force_fp32=self.force_fp32), ws

    def _discriminate(self, images: torch.Tensor) -> torch.Tensor:
        return self.D(self.augment_pipe(images), None, force_fp32=self.force_fp32)

    def _record(self, key: str, value: torch.Tensor) -> None:
        value = float(value.detach())
        total = self.stats.setdefault(key, [0.0, 0])
        total[0] += value
        total[1] += 1
        self.latest[key] = value

    def _g_main(self, real: torch.Tensor) -> torch.Tensor:
        images, _ = self._generate(len(real))
        loss = generator_loss(self._discriminate(images))
        self._record("loss_G", loss)
        return loss

    def _g_reg(self, real: torch.Tensor) -> torch.Tensor:
        images, ws = self._generate(max(1, len(real) // PL_BATCH_SHRINK))
        lengths = path_lengths(images, ws)
        mean = lengths.detach().mean()
        self.dist.all_reduce_mean_(mean)
        self.pl_mean = update_pl_mean(self.pl_mean, mean, PL_DECAY)
        loss = path_length_penalty(lengths, self.pl_mean, self.cfg.pl_weight)
        self._record("pl", loss)
        return loss * self.cfg.pl_interval

    def _d_main(self, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            fakes, _ = self._generate(len(real))
        fake_logits = self._discriminate(fakes)
        real_logits = self._discriminate(real)
        self.ada.update(real_logits)
        loss = discriminator_loss(real_logits, fake_logits)
        self._record("loss_D", loss)
        return loss

    def _d_reg(self, real: torch.Tensor) -> torch.Tensor:
        real = real.detach().requires_grad_(True)
        penalty = r1_penalty(real, self._discriminate(real), self.cfg.gamma)
        self._record("r1", penalty)
        return penalty * self.cfg.r1_interval

    # ---- the loop

    def run(self) -> Path:
        """Train until `kimg` thousand images; snapshot every `snapshot_kimg` and at the end."""
        cfg = self.cfg
        total_nimg = round(cfg.kimg * 1000)
        snapshot_nimg = max(1, round(cfg.snapshot_kimg * 1000))
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            _write_json(self.run_dir / "config.json", cfg.to_dict())
            _trim_metrics(self.run_dir / "metrics.jsonl", self.cur_nimg)
        loader = infinite_loader(self.dataset, cfg.batch_size // self.dist.world_size, seed=cfg.seed,
                                 rank=self.dist.rank, world_size=self.dist.world_size, device=self.device,
                                 start_batch=self.batch_idx)
        last_nimg = max(self.cur_nimg, math.ceil(total_nimg / cfg.batch_size) * cfg.batch_size)  # whole minibatches
        bar = tqdm(total=last_nimg / 1000, initial=self.cur_nimg / 1000, desc="fine-tuning",
                   disable=not self.progress,
                   bar_format="{l_bar}{bar}| {n:.3f}/{total:.3f} kimg [{elapsed}<{remaining}{postfix}]")
        self._start_tick()
        while self.cur_nimg < total_nimg:
            before = self.cur_nimg
            self.step(next(loader))
            bar.update((self.cur_nimg - before) / 1000)
            bar.set_postfix(self._postfix(), refresh=False)
            if self.cur_nimg >= total_nimg or self.cur_nimg // snapshot_nimg > before // snapshot_nimg:
                self.snapshot()
        bar.close()
        return self.run_dir / self.last_snapshot

    def _postfix(self) -> dict[str, str]:
        shown = {"G": self.latest.get("loss_G"), "D": self.latest.get("loss_D"), "p": self.ada.p, "r_t": self.ada.rt}
        return {k: f"{v:.3f}" for k, v in shown.items() if v is not None}

    def _start_tick(self) -> None:
        self.stats = {}
        self.tick_start = (time.perf_counter(), self.cur_nimg)

    # ---- snapshots and resume

    def snapshot(self) -> dict:
        """Write the network, the fakes grid, a metrics line and training-state.pt (main process only);
        every process must call it. Returns the metrics (with paths and the grid on the main process)."""
        info = self._tick_metrics()
        self._check_processes_agree()
        rng = self.dist.all_gather(_rng_state(self.device))
        kimg = self.cur_nimg // 1000
        self.last_snapshot = f"network-snapshot-{kimg:06d}.pt"
        if self.is_main:
            meta = {"finetune": {"base": self.cfg.resume, "data": self.cfg.data, "kimg": self.cur_nimg / 1000}}
            save_network(self.run_dir / self.last_snapshot, Networks(self.G_ema, self.G, self.D, meta=meta))
            fakes = self.fakes_grid()
            save_image(fakes, self.run_dir / f"fakes{kimg:06d}.png")
            self._save_state(rng)
            metrics_path = self.run_dir / "metrics.jsonl"
            with open(metrics_path, "a") as f:
                f.write(json.dumps(info) + "\n")
            plot_metrics(_read_metrics(metrics_path), self.run_dir / "metrics.png")
            info.update(network=self.run_dir / self.last_snapshot, fakes_path=self.run_dir / f"fakes{kimg:06d}.png",
                        fakes=fakes)
            if self.callback is not None:
                self.callback(info)
        self._start_tick()
        return info

    def _tick_metrics(self) -> dict:
        sums = torch.tensor([v for k in STAT_KEYS for v in self.stats.get(k, (0.0, 0))], dtype=torch.float64,
                            device=self.device)
        self.dist.all_reduce_sum_(sums)
        means = {k: (s / c if c else None) for k, (s, c) in zip(STAT_KEYS, sums.view(-1, 2).tolist())}
        start_time, start_nimg = self.tick_start
        kimg_done = (self.cur_nimg - start_nimg) / 1000
        speed = (time.perf_counter() - start_time) / kimg_done if kimg_done else None
        return {"kimg": self.cur_nimg / 1000, "step": self.batch_idx, **means, "augment_p": self.ada.p,
                "r_t": self.ada.rt, "sec_per_kimg": speed}

    @torch.no_grad()
    def fakes_grid(self) -> Image.Image:
        """G_ema's images of the fixed `image_seeds` (const noise) in a square-ish grid, cells at most 256 px."""
        z = z_from_seeds(self.cfg.image_seeds, self.G_ema.z_dim, self.device)
        images = torch.cat([self.G_ema(chunk, None, noise_mode="const", force_fp32=self.force_fp32)
                            for chunk in z.split(self.batch_gpu)])
        pictures = to_pil(images)
        cols = math.ceil(math.sqrt(len(pictures)))
        rows = [pictures[i:i + cols] for i in range(0, len(pictures), cols)]
        return labelled_grid(rows, cell=min(self.G_ema.img_resolution, 256))

    def _check_processes_agree(self) -> None:
        """Under torchrun, verify that every process holds bit-identical networks, p and path-length mean."""
        if self.dist.world_size == 1:
            return
        digest = hashlib.sha256(f"{self.ada.p!r} {float(self.pl_mean)!r}".encode())
        for net in (self.G, self.G_ema, self.D):
            for tensor in net.state_dict().values():
                digest.update(tensor.detach().cpu().numpy().tobytes())
        digests = self.dist.all_gather(digest.hexdigest())
        if len(set(digests)) > 1:
            raise RuntimeError(f"training processes diverged at kimg {self.cur_nimg / 1000}: state digests {digests}")

    def _save_state(self, rng: list[dict]) -> None:
        state = {
            "version": STATE_VERSION, "config": self.cfg.to_dict(),
            "networks": {"G": self.G.config.to_dict(), "D": self.D.config.to_dict()},
            "G": _cpu_state(self.G), "D": _cpu_state(self.D), "G_ema": _cpu_state(self.G_ema),
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "ada": self.ada.state_dict(), "augment_p": float(self.augment_pipe.p), "pl_mean": self.pl_mean.cpu(),
            "cur_nimg": self.cur_nimg, "batch_idx": self.batch_idx, "last_snapshot": self.last_snapshot,
            "world_size": self.dist.world_size, "rng": rng,
        }
        with atomic_write_path(self.run_dir / STATE_FILE) as tmp:
            torch.save(state, tmp)

    def _load_state(self, state: dict) -> None:
        for name in ("G", "D", "G_ema"):
            getattr(self, name).load_state_dict(state[name])
        for name, opt in (("G", self.opt_G), ("D", self.opt_D)):
            opt.load_state_dict(state[f"opt_{name}"])
            _set_hparams(opt, *self._hparams(name))  # intervals and lr may change between sessions
        self.ada.load_state_dict(state["ada"])
        self.augment_pipe.p.fill_(state["augment_p"])
        self.pl_mean = state["pl_mean"].to(self.device)
        self.cur_nimg, self.batch_idx = state["cur_nimg"], state["batch_idx"]
        self.last_snapshot = state["last_snapshot"]
        if len(state["rng"]) == self.dist.world_size:
            _set_rng_state(state["rng"][self.dist.rank], self.device)
        else:  # another number of processes: data shards differ anyway, so continue with fresh streams
            self._seed(self.batch_idx)


def _load_base(source: str) -> tuple[Generator, Discriminator, Generator]:
    """G, D and G_ema of the base checkpoint (G defaults to a copy of G_ema); D is required."""
    nets = load_network(source)
    if nets.D is None:
        raise CheckpointError(
            f"{source} has no discriminator (D): transfer learning fine-tunes the base model's D together with "
            "its G, and a randomly initialised D ruins the generator. Start from a checkpoint with D, e.g. the "
            "registry models 'ffhq-256-noaug', 'ffhq-512-noaug', 'ffhq-1024-noaug' or NVIDIA's ffhq.pkl "
            "('ffhq-1024').")
    G = nets.G if nets.G is not None else copy.deepcopy(nets.G_ema)
    return G, nets.D, nets.G_ema


def _networks_from_state(state: dict, cfg: TrainConfig) -> tuple[Generator, Discriminator, Generator]:
    """Empty networks of the resumed run's architecture (weights are loaded later), after checking that
    the new config changes nothing a resumed run must keep."""
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{Path(cfg.run_dir) / STATE_FILE}: training state version {state.get('version')!r}, "
                         f"this toonlib reads version {STATE_VERSION}")
    saved = TrainConfig.from_dict(state["config"])
    changed = [f"{k}: {getattr(saved, k)!r} -> {getattr(cfg, k)!r}" for k in RESUME_FIXED
               if getattr(saved, k) != getattr(cfg, k)]
    if changed:
        raise ValueError(f"{cfg.run_dir} holds a run started with other settings ({'; '.join(changed)}). A resumed "
                         "run keeps its networks, data and random streams: restore those settings or use a new "
                         "run_dir (kimg, snapshot_kimg and the loss settings may change).")
    G = Generator(GeneratorConfig.from_dict(state["networks"]["G"]))
    return G, Discriminator(DiscriminatorConfig.from_dict(state["networks"]["D"])), copy.deepcopy(G)


def _cpu_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


def _rng_state(device: torch.device) -> dict:
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


# --------------------------------------------------------------------------------------------
# Metrics files


def _write_json(path: Path, obj: dict) -> None:
    with atomic_write_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def _read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _trim_metrics(path: Path, cur_nimg: int) -> None:
    """Drop metrics lines past the state being resumed (written after the last saved state, or by an old run)."""
    records = _read_metrics(path)
    kept = [r for r in records if round(r["kimg"] * 1000) <= cur_nimg]
    if len(kept) < len(records):
        with atomic_write_path(path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))


def plot_metrics(records: list[dict], path: str | os.PathLike) -> None:
    """Plot metrics.jsonl records against kimg into a PNG (atomically). Uses matplotlib's Agg canvas
    directly, so pyplot's backend (e.g. a notebook's) is left alone."""
    from matplotlib.figure import Figure

    panels = (("losses", ("loss_G", "loss_D")), ("regularisers", ("r1", "pl")),
              ("augmentation", ("augment_p", "r_t")), ("speed", ("sec_per_kimg",)))
    fig = Figure(figsize=(10, 6), layout="constrained")
    for ax, (title, keys) in zip(fig.subplots(2, 2).flat, panels):
        for key in keys:
            points = [(r["kimg"], r[key]) for r in records if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), marker=".", label=key)
        ax.set_title(title)
        ax.set_xlabel("kimg")
        if ax.lines:
            ax.legend()
    with atomic_write_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)


# --------------------------------------------------------------------------------------------
# Entry points


def finetune(config: TrainConfig, *, progress: bool = True, callback: Callable[[dict], None] | None = None) -> Path:
    """Fine-tune `config.resume` on `config.data` into `config.run_dir` (resuming the run there if any);
    returns the last network snapshot's path. `callback(info)` gets each snapshot's metrics, paths and
    fakes grid (a PIL image). Under torchrun, every process calls this; only the first writes files.
    The caller's torch RNG state is left as it was."""
    dist, started = _init_distributed(config.device)
    try:
        with torch.random.fork_rng(devices=[dist.device] if dist.device.type == "cuda" else []):
            return Trainer(config, dist=dist, progress=progress, callback=callback).run()
    finally:
        if started:
            torch_dist.destroy_process_group()


def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add one option per TrainConfig field (unset options keep TrainConfig's defaults) and --no-progress
    (dest `progress`, finetune's argument)."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}

    def option(name: str, help: str, **kwargs) -> None:
        default = kwargs.pop("shown_default", defaults.get(name))
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=argparse.SUPPRESS,
                            help=f"{help} (default: {default})", **kwargs)

    parser.add_argument("--data", required=True, help="folder or .zip of training images")
    parser.add_argument("--resume", required=True,
                        help="base checkpoint with D: a path, URL or registry name such as ffhq-256-noaug")
    parser.add_argument("--run-dir", dest="run_dir", required=True,
                        help="folder for snapshots and the training state; an existing run there is resumed")
    option("kimg", "training length in thousands of real images", type=float)
    option("batch_size", "minibatch size over all processes", type=int)
    option("batch_gpu", "micro-batch per process (gradient accumulation when smaller)", type=int,
           shown_default="batch_size / processes")
    option("gamma", "R1 weight", type=float)
    option("r1_interval", "R1 every this many minibatches", type=int)
    option("pl_weight", "path-length regulariser weight (StyleGAN2 used 2; 0 = off)", type=float)
    option("pl_interval", "path-length regulariser every this many minibatches", type=int)
    option("lr", "Adam learning rate", type=float)
    option("betas", "Adam betas", type=float, nargs=2)
    option("ema_kimg", "G_ema half-life in kimg", type=float, shown_default="batch_size * 10 / 32")
    option("ema_rampup", "G_ema half-life ramp-up ratio, or 'none'", type=_optional_float)
    option("style_mixing", "style mixing probability", type=float)
    option("augment", "augmentation: adaptive p, fixed p or none", choices=AUGMENT_MODES)
    option("augment_p", "initial (ada) or fixed augmentation probability", type=float)
    option("ada_target", "ADA target for r_t = E[sign(D(real))]", type=float)
    option("ada_interval", "adjust p every this many minibatches", type=int)
    option("ada_kimg", "kimg for p to go from 0 to 1 at most", type=float)
    option("freeze_d", "freeze D's first k layers (Freeze-D)", type=int)
    option("mirror", "add x-flipped copies of the images", action=argparse.BooleanOptionalAction)
    option("snapshot_kimg", "snapshot every this many kimg", type=float)
    option("image_seeds", "seeds of the fakes grid, e.g. 0-15", type=parse_seeds, shown_default="0-15")
    option("seed", "random seed", type=int)
    option("mixed_precision", "float16 blocks on CUDA as the checkpoint says, or off", choices=MIXED_PRECISION_MODES)
    option("device", "cpu, cuda, cuda:1, ...", shown_default="cuda if available")
    option("prepare", "how images become squares of the model's size", choices=PREPARE_MODES)
    option("resolution", "training resolution; must be the base model's", type=int, shown_default="the model's")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed `add_train_arguments` options (other attributes of `args` are ignored)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})


def main(argv: list[str] | None = None) -> int:
    parser = add_train_arguments(argparse.ArgumentParser(
        prog="python -m toonlib.train", description="Fine-tune a StyleGAN2 checkpoint on a folder of images."))
    args = parser.parse_args(argv)
    try:
        path = finetune(config_from_args(args), progress=args.progress)
    except (ValueError, FileNotFoundError) as exc:
        parser.exit(2, f"error: {exc}\n")
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"last snapshot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
