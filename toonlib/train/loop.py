"""The training loop: `Trainer` (networks, optimisers, augmentation, data, counters; fresh or resumed) and `finetune`.

Each minibatch runs the phases that are due: Gmain (non-saturating logistic loss, style mixing), Greg
(path-length regulariser every `pl_interval` minibatches), Dmain (logistic loss) and Dreg (R1 every
`r1_interval` minibatches). Every image D sees goes through the AugmentPipe, whose p ADA tunes from
sign(D(real)). G_ema follows G with a half-life of `ema_kimg` thousand images. Every `snapshot_kimg` the
run folder gets a network snapshot, a fakes grid, a metrics line (and the quality metric when on) and a
training state (snapshots.py), from which a later `finetune` on the same folder continues exactly as the
uninterrupted run would have (bit for bit on the CPU). Ctrl-C lets the minibatch finish, snapshots there (without
the quality metric; later snapshots stay on the `snapshot_kimg` grid) and raises KeyboardInterrupt; a second Ctrl-C
stops at once (`_CtrlC`). One run at a time uses a run folder (`hold_run_dir`); a run folder inside the data folder
is refused (its images would become training images).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import hashlib
import json
import math
import signal
import sys
import threading
import time
import zipfile
from pathlib import Path
from types import FrameType
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as torch_dist
from PIL import Image
from tqdm.utils import disp_len

from ..augment import AdaptiveP, AugmentPipe
from ..checkpoints import CheckpointError, Networks, load_network, non_finite_weights, save_network
from ..data import ImageDataset, TooFewImagesError, check_image_files, image_files, infinite_loader
from ..devices import default_device
from ..files import atomic_write_path, check_file_target, is_url, looks_like_checkpoint, resolved_source, user_path
from ..images import labelled_grid, save_image, to_pil
from ..losses import discriminator_loss, generator_loss, path_length_penalty, path_lengths, r1_penalty, update_pl_mean
from ..messages import SIGHUP, after_hang_up, check_callback, check_flag, counted, progress_bar, warn, write_line
from ..models import MODELS
from ..networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, z_from_seeds
from ..quality import MetricUnavailable, image_quality, inception_weights
from .config import TrainConfig, option_both, option_value
from .distributed import Distributed, init_distributed
from .metrics_log import METRICS_FILE, append_metrics, plot_metrics, trim_metrics
from .recipe import ema_beta, frozen_d_prefixes, frozen_g_prefixes, lazy_regularization, update_ema
from .resume import (
    check_resumable,
    data_changes,
    data_moved,
    no_state_message,
    recorded_base,
    same_folder,
    say_changed_data,
    say_changed_settings,
)
from .snapshots import (
    CONFIG_FILE,
    DATASET_CACHE,
    LATEST_FILE,
    METRIC_CACHE,
    SnapshotWrites,
    disk_full_said,
    fakes_name,
    has_run,
    has_states,
    hold_run_dir,
    latest_record,
    latest_snapshot,
    newest_state,
    newest_state_nimg,
    read_latest,
    save_state,
    snapshot_name,
    snapshot_nimg,
    snapshot_paths,
    sync_latest,
    write_latest,
)

__all__ = ["Trainer", "finetune"]

PL_DECAY = 0.01
PL_BATCH_SHRINK = 2
STAT_KEYS = ("loss_G", "loss_D", "r1", "pl")
#: What a run says at Ctrl-C, or at a notebook's interrupt (it named Ctrl-C there, which the notebook had not pressed).
STOPPING = ("Interrupted: saving the run at the end of this minibatch, to continue later (interrupt again to "
            "stop at once, losing the training since the last snapshot)")
#: What a run says when SIGTERM (`kill`, `timeout`, a job scheduler) asks it to stop: it stops as at Ctrl-C.
TERMINATING = ("Asked to stop (SIGTERM): saving the run at the end of this minibatch, to continue later (a second "
               "signal stops at once, losing the training since the last snapshot)")
#: What a run says at SIGHUP (its terminal closed, an ssh connection dropped; it ended the run unsaved and silent,
#: forty-third session's audit): it stops as at SIGTERM. Said where stderr still goes (a log), else nowhere.
HANGING_UP = ("Asked to stop (SIGHUP, as when its terminal closes): saving the run at the end of this minibatch, to "
              "continue later (a second signal stops at once, losing the training since the last snapshot)")


class Trainer:
    """One fine-tuning run: networks, optimisers, augmentation, data and counters, fresh or resumed.

    `run()` trains to the kimg budget and returns the last network snapshot's path; `step(reals)` runs one
    minibatch and `run_phase(name, reals)` one phase ('Gmain', 'Greg', 'Dmain', 'Dreg') of it. The resolved
    settings are attributes: `gamma`, `lr`, `metrics` (names of the quality metrics computed at snapshots);
    `cfg.data` and `cfg.resume` are resolved (a local path as an absolute one), as the run folder records them.

    The Trainer holds its run folder (`hold_run_dir`; the main process holds the lock for all) until `run()` ends
    or fails, or `close()` (`snapshot()` after that takes it again while it writes): another run in that folder is
    refused at once with a BlockingIOError, and so is this one while another holds it. A folder that holds a run is
    taken at the Trainer's construction, before anything is read; a new one once the run's checks passed (the data
    set is accepted), before the first file is written, so that a run refused at its start writes nothing.

    `dataset`: the training images; None for a run that is done (its kimg reached), which reads none.
    """

    dataset: ImageDataset | None

    def __init__(self, config: TrainConfig, *, dist: Distributed | None = None, progress: bool = True,
                 callback: Callable[[dict], None] | None = None):
        check_callback(callback, "callback(info) at every snapshot", {})  # before the run, not after its first hour
        self.cfg = config
        self.dist = dist or Distributed(device=default_device(config.device))
        self.device = self.dist.device
        self.is_main = self.dist.rank == 0
        self.progress = progress and self.is_main
        self.callback = callback
        self.run_dir = user_path(config.run_dir)  # '~/runs/toon' is in the home folder, not in a folder named '~'
        self._held: contextlib.ExitStack | None = None
        self._saving: SnapshotWrites | None = None  # the snapshot being saved (main process): what a full disk says
        self.dist.on_main(self._take_existing_run_dir)
        try:
            with disk_full_said(self.run_dir):  # the dataset cache
                self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        """Networks (fresh or resumed), optimisers, augmentation, data and counters."""
        cfg = self.cfg
        self.cfg = cfg = dataclasses.replace(cfg, data=resolved_source(cfg.data), resume=resolved_source(cfg.resume))
        found = newest_state(self.run_dir)
        state = found[1] if found is not None else None
        if same_folder(cfg.resume, cfg.run_dir):  # --resume RUN_DIR --run-dir RUN_DIR: continue that run
            if state is None:
                raise ValueError(no_state_message(cfg.resume, is_run_dir=True))
            self.cfg = cfg = dataclasses.replace(cfg, resume=resolved_source(state["config"]["resume"]))  # its own base
        self._check_snapshots_kept(state)
        self.base_state: dict | None = None  # where the networks came from when `resume` is another run's folder
        done = state is not None and state["cur_nimg"] >= _images(cfg.kimg)  # a finished run trains nothing more
        if state is None and cfg.augment == "fixed" and not cfg.augment_p:  # a run started so before resumes as it was
            raise ValueError(  # it trained exactly as 'none', unsaid; NVIDIA's train.py refuses it
                f"{option_value('augment', 'fixed')} keeps its probability, {option_value('augment_p', 0)}, through "
                "the run: it augments nothing. Give the probability (such as 0.2), or use 'ada' (adapts it) or 'none'")
        if state is not None:
            check_resumable(state, cfg)
            self.cfg = cfg = dataclasses.replace(cfg, resume=recorded_base(state, cfg.resume))
            if self.is_main and not done:
                say_changed_settings(state, cfg, self.dist.world_size)
            G, D, G_ema = _empty_networks(state)
            self.base_state = state.get("base_state")
        elif Path(cfg.resume).is_dir():
            G, D, G_ema = self._load_run(cfg.resume)
        else:
            if is_url(cfg.resume) or cfg.resume in MODELS:  # the data and the resolution before a download (hundreds
                _check_run_dir_outside_data(cfg)  # of MB; they were refused after it); a file here is read first
                check_image_files(cfg.data)  # from its file list: no such folder, too few image files
            if cfg.resume in MODELS and MODELS[cfg.resume].resolution is not None:
                _check_resolution(cfg, MODELS[cfg.resume].resolution)
            G, D, G_ema = self.dist.main_first(lambda: _load_base(cfg.resume, self.progress))
        self.G = G.to(self.device).train().requires_grad_(False)
        self.D = D.to(self.device).train().requires_grad_(False)
        self.G_ema = G_ema.to(self.device).eval().requires_grad_(False)
        self._check_sizes()
        self._check_finite(state)  # before the images are prepared (minutes with `align`)
        resolution = self.G.img_resolution
        self.gamma, self.lr = cfg.resolved_gamma(resolution), cfg.resolved_lr(resolution)
        self.g_frozen = frozen_g_prefixes(self.G, cfg.freeze_g, cfg.freeze_mapping)
        self.d_frozen = frozen_d_prefixes(self.D, cfg.freeze_d)
        if state is None:
            self._share_frozen_layers()
        self.g_params = [p for name, p in self.G.named_parameters() if not name.startswith(self.g_frozen)]
        self.d_params = [p for name, p in self.D.named_parameters() if not name.startswith(self.d_frozen)]
        self.opt_G = torch.optim.Adam(self.g_params, *self._hparams("G"), eps=1e-8)
        self.opt_D = torch.optim.Adam(self.d_params, *self._hparams("D"), eps=1e-8)
        self.phases = [("Gmain", 1)] + ([("Greg", cfg.pl_interval)] if cfg.pl_weight > 0 else []) + [("Dmain", 1)]
        self.phases += [("Dreg", cfg.r1_interval)] if self.gamma > 0 else []
        p = 0.0 if cfg.augment == "none" else cfg.augment_p
        if cfg.augment == "none" and cfg.augment_p and state is None and self.is_main:  # set, and ignored unsaid
            warn(f"{option_value('augment_p', cfg.augment_p)} is ignored: {option_value('augment', 'none')} augments "
                 "nothing ('fixed' keeps that probability, 'ada' starts from it)")
        self.augment_pipe = AugmentPipe.bgc(p).to(self.device)
        self.ada = AdaptiveP(p, target=cfg.ada_target if cfg.augment == "ada" else None,
                             interval=cfg.ada_interval * self.num_micro, ada_kimg=cfg.ada_kimg,
                             all_reduce=self.dist.all_reduce_sum_ if self.dist.world_size > 1 else None)
        self.force_fp32 = None if cfg.mixed_precision == "auto" else True
        self.pl_mean = torch.zeros([], device=self.device)
        self.cur_nimg = self.batch_idx = 0
        self._ctrl_c = _CtrlC()
        self.last_snapshot: str | None = None
        self._diverged_said = False  # losses that became NaN or inf are said once
        self._bar = None  # run()'s progress bar, on which a snapshot's metric is said (`_metric_said`)
        self.stats: dict[str, list[float]] = {}
        self.latest: dict[str, float] = {}
        self.metrics, self.metric_weights = self._metric_setup()
        # a finished run reads no image: the same command prepared them all again (minutes with `align`), rewrote the
        # run's dataset cache, and said "the run goes on with the images there now" (thirty-third session's audit)
        self.dataset = None if done else self._load_dataset(state)
        self.dist.on_main(self._take_new_run_dir)  # a new run folder, where the dataset cache was there already
        if state is None:
            self._seed()
        else:
            if self.is_main and self.dataset is not None:
                if data_moved(state, cfg.data):  # the same files: their mtimes may differ (a copy)
                    warn(f"{cfg.run_dir}: the run's data moved, from {state['config']['data']} to {cfg.data} (the "
                         "same image files, by name and size): the run goes on with it there")
                else:
                    say_changed_data(state, cfg.data, self.dataset.files, self.dataset.digests)
            self._load_state(state)
        # the speed of a first snapshot() outside run() (a loop of one's own: step, step, snapshot) is measured from
        # here: it was an AttributeError naming `tick_start` (forty-fourth session's audit); run() starts its own tick
        self._start_tick()

    def _check_finite(self, state: dict | None) -> None:
        """Refuse networks whose weights are NaN or infinite, wherever they came from (a base, another run's folder,
        this run's newest state): trained on, every loss was NaN at once and the run blamed its learning rate
        (thirty-fourth session)."""
        for which in ("G", "D", "G_ema"):
            if bad := non_finite_weights(getattr(self, which) if state is None else state[which]):
                source = (f"{self.cfg.run_dir}: the run's newest training state" if state is not None
                          else str(self.cfg.resume))
                raise CheckpointError(f"{source}: its {which} holds weights that are NaN or infinite ({bad[0]}"
                                      f"{', ...' if len(bad) > 1 else ''}): no run can continue from it; start from "
                                      "the model it was fine-tuned from (in another run folder), or an earlier "
                                      "snapshot")

    def _check_snapshots_kept(self, state: dict | None) -> None:
        """Refuse a run folder whose snapshots have no training state left to continue them: a new run there replaced
        them without a word (the states deleted to save space, or the snapshots copied alone). Warn when the newest
        state is older than the newest snapshot: the snapshots after it are replaced as the run goes on. The newest
        snapshot is `latest_snapshot`'s, the newest file where latest.json is cut short (a partial Drive sync) or
        missing (the snapshots copied alone): a new run replaced them all, silently (thirty-third session's audit).
        A run folder without latest.json that holds its config.json and one snapshot completed none: a full disk at
        the first training state leaves its network, which the run started again rewrites."""
        if not (self.run_dir / LATEST_FILE).is_file() and (self.run_dir / CONFIG_FILE).is_file() and len(
                snapshot_paths(self.run_dir)) <= 1:
            return
        newest = latest_snapshot(self.run_dir)
        if newest is None:
            return
        try:  # latest.json's count; else the newest file's name says it
            kimg = float(read_latest(self.run_dir)["kimg"])
        except (OSError, ValueError, KeyError, TypeError):
            nimg = snapshot_nimg(newest)
            if nimg is None:  # a file of another name, and no count: nothing to go by
                return
            kimg = nimg / 1000
        resumed = state["cur_nimg"] / 1000 if state is not None else None
        if resumed is None:
            raise ValueError(
                f"{self.cfg.run_dir} holds a fine-tuning run's snapshots up to {kimg:.3f} kimg but no training state "
                "to continue it from (its training-state-*.pt files are gone or cannot be read), and a new run there "
                "would replace its snapshots. To fine-tune on from its newest network, start a new run from it in "
                f"another folder: --resume {Path(self.cfg.run_dir) / newest.name} (resume=) and a new --run-dir "
                f"(run_dir=); to start over in {self.cfg.run_dir}, empty it first")
        if resumed < kimg - 1e-9 and self.is_main:
            warn(f"{self.cfg.run_dir}: resuming at {resumed:.3f} kimg, its newest training state that can be read; "
                 f"its snapshots after it, up to {kimg:.3f} kimg, have none and are replaced as the run goes on")

    def _take_run_dir(self) -> None:
        """Hold the run folder unless this Trainer does (the main process, for all)."""
        if self._held is None:
            held = contextlib.ExitStack()
            held.enter_context(hold_run_dir(self.cfg.run_dir))
            self._held = held

    def _take_existing_run_dir(self) -> None:
        """(Main process.) Hold a run folder that holds a run, before anything is read; of a new one, check only that
        it can be written (a probe file, removed): it is taken before the run's first write (`_take_new_run_dir`)."""
        if has_run(self.run_dir):
            self._take_run_dir()
        else:
            check_file_target(self.run_dir / LATEST_FILE)

    def _take_new_run_dir(self) -> None:
        """(Main process.) Hold a run folder that held no run when this Trainer started, now that the run's checks
        passed, before its first file is written; refused when a run was started there meanwhile."""
        if self._held is None:
            self._take_run_dir()
            if has_states(self.run_dir):  # decided "a new run" before another one saved there
                raise BlockingIOError(f"{self.cfg.run_dir}: another fine-tuning run was started in this folder while "
                                      "this one was starting; run the same command again to continue it")
            others = [entry for entry in self.run_dir.iterdir() if not entry.name.startswith(".")
                      and entry.name != DATASET_CACHE] if self.run_dir.is_dir() else []
            if others:  # a folder of photos given as --run-dir took the run's files without a word
                warn(f"{self.cfg.run_dir} holds {counted(len(others), 'file')} (e.g. {others[0].name}) and no "
                     "fine-tuning run: the run's snapshots, fakes and metrics go in among them; a new folder of its "
                     "own (--run-dir, run_dir=) keeps them apart")

    def close(self) -> None:
        """Release the run folder without training (`run()` does so when it ends or fails; it takes it again)."""
        held, self._held = self._held, None
        if held is not None:
            held.close()

    @contextlib.contextmanager
    def _holding_run_dir(self) -> Iterator[None]:
        """Hold the run folder while the body runs, as `run()` does: taken unless this Trainer holds it (a
        BlockingIOError naming the holder where another run has it), and released after the body where it was not
        held before."""
        held = self._held is not None
        self.dist.on_main(self._take_run_dir)
        try:
            yield
        finally:
            if not held:
                self.close()

    def _load_run(self, folder: str) -> tuple[Generator, Discriminator, Generator]:
        """G, D and G_ema of another run's newest valid training state (chosen by the main process, so that
        every process starts from the same file); `base_state` records which."""
        chosen: dict = {}

        def find() -> str:
            found = newest_state(folder)
            if found is None:
                raise ValueError(no_state_message(folder))
            chosen["path"], chosen["state"] = found
            return str(found[0])

        path = self.dist.on_main(find)
        state = chosen.get("state") or torch.load(path, map_location="cpu", weights_only=True)
        G, D, G_ema = _empty_networks(state)
        for name, net in (("G", G), ("D", D), ("G_ema", G_ema)):
            net.load_state_dict(state[name])
        self.base_state = {"run": str(folder), "state": Path(path).name, "kimg": state["cur_nimg"] / 1000}
        return G, D, G_ema

    def _check_sizes(self) -> None:
        """Check resolutions and the batch split; set `batch_gpu` and `num_micro` (micro-batches)."""
        cfg, G, D = self.cfg, self.G, self.D
        res = G.img_resolution
        if D.img_resolution != res:
            raise CheckpointError(f"{cfg.resume}: its G makes {res} px images but its D reads {D.img_resolution} px")
        _check_resolution(cfg, res)
        world = self.dist.world_size
        self.batch_gpu = cfg.batch_gpu or cfg.batch_size // world
        if self.batch_gpu < 1 or cfg.batch_size % (self.batch_gpu * world):
            raise ValueError(f"{option_value('batch_size', cfg.batch_size)} must be divisible by "
                             f"{option_value('batch_gpu', self.batch_gpu)} x the number of processes ({world})")
        self.num_micro = cfg.batch_size // (self.batch_gpu * world)
        group = min(D.config.mbstd_group_size or self.batch_gpu, self.batch_gpu)
        if self.batch_gpu % group:
            raise ValueError(_batch_split_message(cfg, self.batch_gpu, group, world))

    @torch.no_grad()
    def _share_frozen_layers(self) -> None:
        """At the start of a run, G's frozen tensors become G_ema's, so that G trains around the layers the
        result keeps and G_ema's stay bit for bit (the lerp of two equal tensors is that tensor). Their buffers too
        (the mapping's `w_avg`, the blocks' `noise_const`): `update_ema` copies G's into G_ema, and a base whose G
        and G_ema hold different noise (rosinality's, which averages parameters alone) changed the const-noise
        images of the frozen blocks (thirty-eighth session's audit)."""
        for ema, net in ((dict(self.G_ema.named_parameters()), self.G.named_parameters()),
                         (dict(self.G_ema.named_buffers()), self.G.named_buffers())):
            for name, tensor in net:
                if name.startswith(self.g_frozen):
                    tensor.copy_(ema[name])

    def _hparams(self, which: str) -> tuple[float, tuple]:
        cfg = self.cfg
        if which == "G":
            return lazy_regularization(self.lr, cfg.betas, cfg.pl_interval if cfg.pl_weight > 0 else None)
        return lazy_regularization(self.lr, cfg.betas, cfg.r1_interval if self.gamma > 0 else None)

    def _seed(self, *extra: int) -> None:
        """Seed torch's global RNGs (the synthesis noise draws from them) per process."""
        seed = np.random.SeedSequence([self.cfg.seed, self.dist.rank, *extra]).generate_state(1)[0]
        torch.manual_seed(int(seed))

    def _metric_setup(self) -> tuple[tuple[str, ...], Path | None]:
        """Which quality metrics the main process computes at snapshots, and the Inception weights' path (fetched
        by the main process alone). metric='auto' means KID on CUDA, and goes without it (with a warning) when
        the weights cannot be had; an explicit 'kid' / 'fid' stops with the reason instead."""
        cfg = self.cfg
        names = cfg.resolved_metrics(self.device.type)
        if not names:
            return (), None

        def weights() -> Path | None:
            try:
                return inception_weights(progress=self.progress)
            except MetricUnavailable as exc:
                if cfg.metric != "auto":
                    raise MetricUnavailable(f"{option_value('metric', cfg.metric)}: {exc}") from None
                warn(f"training without a quality metric: {exc}")
                return None

        path = self.dist.on_main(weights)
        return (names, path) if path is not None else ((), None)

    def _load_dataset(self, state: dict | None) -> ImageDataset:
        """The training images at the model's resolution; the main process prepares and caches them first, and
        removes the run's caches of other files (the folder's images changed between resumes: each cache is a
        full copy of the data set, ~900 MB for 300 images at 1024 px). A run folder inside the data folder is
        refused first; too few images for a resumed run (`state`) say how they changed since its last snapshot."""
        cfg = self.cfg
        _check_run_dir_outside_data(cfg)
        cache_dir = self.run_dir / DATASET_CACHE
        try:
            dataset = self.dist.main_first(lambda: ImageDataset(
                cfg.data, self.G.img_resolution, prepare=cfg.prepare, xflip=cfg.mirror, cache_dir=cache_dir,
                progress=self.progress, on_accept=self._take_new_run_dir if self.is_main else None,
                device=self.device, say=write_line if self.is_main and not self.progress else None))
        except TooFewImagesError as exc:
            if state is None or not (changes := data_changes(state, exc.files, exc.digests)):
                raise
            raise TooFewImagesError(f"{exc}. The images in {cfg.data} changed since the run's last snapshot "
                                    f"({changes}): put back those it trained on, or add others", exc.files,
                                    exc.digests) from None
        if self.is_main:
            for stale in cache_dir.glob("*.pt"):
                if stale.name != dataset.cache_path.name:
                    stale.unlink(missing_ok=True)
        return dataset

    # ---- one minibatch

    def step(self, reals: torch.Tensor) -> None:
        """Train on one minibatch (this process's share [B, 3, R, R] on the device): the phases that are due,
        then p, w_avg (averaged over processes) and G_ema."""
        for name, interval in self.phases:
            if self.batch_idx % interval == 0:
                self.run_phase(name, reals)
        self.augment_pipe.p.fill_(self.ada.p)
        if not self.cfg.freeze_mapping:
            self.dist.all_reduce_mean_(self.G.mapping.w_avg)
        cfg = self.cfg
        update_ema(self.G_ema, self.G, ema_beta(cfg.batch_size, cfg.resolved_ema_kimg, self.cur_nimg, cfg.ema_rampup))
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
        random cutoff on come from a second z. A frozen mapping network keeps its w_avg."""
        frozen = self.cfg.freeze_mapping
        z = torch.randn([n, self.G.z_dim], device=self.device)
        ws = self.G.mapping(z, None, skip_w_avg_update=frozen)
        if frozen and torch.is_grad_enabled():
            ws.requires_grad_(True)  # the path-length regulariser differentiates the images by ws
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
        penalty = r1_penalty(real, self._discriminate(real), self.gamma)
        self._record("r1", penalty)
        return penalty * self.cfg.r1_interval

    # ---- the loop

    def run(self) -> Path:
        """Train until `kimg` thousand images; snapshot every `snapshot_kimg` and at the end. Ctrl-C (SIGINT, in the
        main thread; under torchrun, of any process) lets the minibatch finish, snapshots there, says so on stderr
        and raises KeyboardInterrupt; a second Ctrl-C stops at once (the newest complete snapshot is then where the
        run resumes). The run folder is released when this returns or fails. A full disk while saving is an OSError
        that says so, what of the snapshot being saved was written (a network without its training state is no point
        the run continues from) and where the same command continues from (`snapshots.disk_full_message`)."""
        self.dist.on_main(self._take_run_dir)
        self._said_saved = False
        self._saving = None
        try:
            with disk_full_said(self.run_dir, lambda: self._saving):  # what of a snapshot was written, if in one
                return self._run()
        except KeyboardInterrupt:
            if not self._said_saved:  # a second Ctrl-C: stopped at once, the run not saved here
                self._say_stopped_at_once()
            raise
        finally:
            self.close()

    def _run(self) -> Path:
        cfg = self.cfg
        total_nimg = _images(cfg.kimg)  # at least one minibatch
        snapshot_nimg = _images(cfg.snapshot_kimg)
        if self.is_main and self.last_snapshot is not None:
            sync_latest(self.run_dir, self.cur_nimg)
        end_nimg = math.ceil(total_nimg / cfg.batch_size) * cfg.batch_size  # a run ends with a whole minibatch
        if self.cur_nimg >= total_nimg:
            if self.is_main:
                # the same command again finds the run a little past --kimg (0.1 kimg at 8 images a minibatch ended
                # at 0.104): that run is done, it does not ask for less
                asks = "asks for less" if self.cur_nimg > end_nimg else "is done"
                warn(f"{cfg.run_dir} has trained {self.cur_nimg / 1000:g} kimg, so the run to {cfg.kimg:g} kimg "
                     f"{asks}: nothing to train. To train on, give a larger --kimg (kimg=)")
            return self._kept(self.run_dir / self.last_snapshot)
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            _write_json(self.run_dir / CONFIG_FILE, self._recorded_config())
            trim_metrics(self.run_dir / METRICS_FILE, self.cur_nimg)
        loader = infinite_loader(self.dataset, cfg.batch_size // self.dist.world_size, seed=cfg.seed,
                                 rank=self.dist.rank, world_size=self.dist.world_size, device=self.device,
                                 start_batch=self.batch_idx)
        last_nimg = max(self.cur_nimg, end_nimg)
        # in kimg, set from the images counted (integers: float kimg increments add up past the total). Not counted
        # in images shown with unit_scale=1/1000: tqdm then took the rate as (n * unit_scale - initial) / elapsed, a
        # resumed run's bar showing a negative remaining time (`[00:05<-00:02`), and its last line always
        bar = progress_bar(total=last_nimg / 1000, initial=self.cur_nimg / 1000, desc="fine-tuning",
                           disable=not self.progress,
                           bar_format="{l_bar}{bar}| {n:.3f}/{total:.3f} kimg [{elapsed}<{remaining}{postfix}]")
        bar.format_meter = _fitted_meter(bar.format_meter)  # tqdm's own, which `display` calls through the bar
        self._bar = bar  # the snapshot's metric says so on it (`_metric_said`)
        if self.is_main and not self.progress:  # else nothing said it till a snapshot
            begun = f"resumed at {self.cur_nimg / 1000:.3f} kimg" if self.cur_nimg else "started"
            rounded = (f", --kimg {cfg.kimg:g} rounded up to whole minibatches of {cfg.batch_size}"
                       if last_nimg != round(cfg.kimg * 1000) else "")  # it said 0.012 for --kimg 0.01 unexplained
            print(f"{self.run_dir}: {begun}, training to {last_nimg / 1000:.3f} kimg{rounded} (a line per snapshot)",
                  flush=True)
        if self.is_main and self.cur_nimg and callable(getattr(self.callback, "resumed", None)):
            # a notebook's viewer (`notebook.snapshot_viewer`): the run's newest grid and plots, below the bar just
            # shown; with bars nothing said the run resumed till its next snapshot (forty-third session's audit)
            self.callback.resumed(self.cur_nimg)
        self._start_tick()
        started = time.perf_counter()

        def snapshot(quality: bool = True) -> None:
            info = self._snapshot(quality=quality)  # the folder held (`run`)
            if self.is_main and not self.progress:  # a line instead of the bar (which shows the same numbers)
                postfix = {**self._postfix(), **{k: f"{info[k]:.4g}" for k in ("kid", "fid") if k in info}}
                print(f"fine-tuning {self.cur_nimg / 1000:.3f}/{last_nimg / 1000:.3f} kimg "
                      f"[{bar.format_interval(time.perf_counter() - started)}, "
                      f"{', '.join(f'{k}={v}' for k, v in postfix.items())}]: {self.last_snapshot}", flush=True)

        stop = False
        # the bar is closed however the loop ends, so that what follows (a message, a traceback) starts a line
        # SIGTERM and SIGHUP too, as one Ctrl-C (they ended a run unsaved), but not under torchrun, which stops its
        # other processes with SIGTERM when one fails: they would wait at the end of the minibatch for the one that is
        # gone (and its launcher takes SIGHUP itself)
        signals = (signal.SIGINT,) if self.dist.world_size > 1 else (
            signal.SIGINT, signal.SIGTERM, *([SIGHUP] if SIGHUP is not None else []))

        def say_stopping(signum: int) -> None:
            if signum == SIGHUP:
                after_hang_up()  # a closed terminal fails every write: the line and the bar go nowhere instead
            if self.is_main:
                said = {signal.SIGINT: STOPPING, SIGHUP: HANGING_UP}.get(signum, TERMINATING)
                write_line(said, file=sys.stderr)

        with bar, self._ctrl_c.deferred(say_stopping, signals):
            while self.cur_nimg < total_nimg and not stop:
                before = self.cur_nimg
                self.step(next(loader))
                bar.set_postfix(self._postfix(), refresh=False)  # first: the update draws it (it lagged a minibatch)
                bar.update(self.cur_nimg / 1000 - bar.n)
                due = self.cur_nimg >= total_nimg or self.cur_nimg // snapshot_nimg > before // snapshot_nimg
                if due:
                    snapshot()
                stop = self.dist.any_true(self._ctrl_c.pressed)  # under torchrun, every process stops at this minibatch
                if stop and not due:  # off the snapshot_kimg grid: later snapshots stay on it (`due` counts images)
                    snapshot(quality=False)
        if stop:
            # every process waits for the main one's files: under torchrun, the first process to end with an error
            # (this KeyboardInterrupt) gets the others killed
            self.dist.barrier()
            self._say_interrupted(total_nimg)
            raise KeyboardInterrupt
        return self.run_dir / self.last_snapshot

    def _kept(self, snapshot: Path) -> Path:
        """The last snapshot of a run that is done, or a FileNotFoundError that says it was deleted: `finetune()`
        returned the path of a file that is not there (only the command line said so)."""
        if not snapshot.is_file():
            raise FileNotFoundError(f"{snapshot}, the last snapshot of the run in {self.cfg.run_dir}, is not there any "
                                    "more (deleted?): give a larger --kimg (kimg=) to train on and write a new one")
        return snapshot

    def _say_stopped_at_once(self) -> None:
        """Tell the user (stderr, main process) where a run stopped at once by Ctrl-C (a second one) continues from:
        its newest training state (a snapshot cut short counts as not taken). It said only "interrupted", as if the run
        had been saved there."""
        if self.is_main:
            nimg = newest_state_nimg(self.run_dir)
            if nimg is not None and nimg == self.cur_nimg:  # stopped after its snapshot (in the callback): all saved
                then = (", the end of the run" if nimg >= _images(self.cfg.kimg)
                        else ": run the same fine-tuning again to continue from it")
                print(f"fine-tuning stopped at {nimg / 1000:.3f} kimg, saved there ({snapshot_name(nimg)} and its "
                      f"training state){then}", file=sys.stderr, flush=True)
                return
            where = (f"continue from {snapshot_name(nimg)} ({nimg / 1000:.3f} kimg)" if nimg is not None
                     else "start it again (no training state was saved)")  # "its network saved ... (nothing was saved)"
            network = snapshot_name(self.cur_nimg)  # written, when the stop came while its training state was
            saved = (f"its network saved ({network}) but not its training state" if nimg != self.cur_nimg
                     and (self.run_dir / network).is_file() else "not saved there")
            print(f"fine-tuning stopped at once at {self.cur_nimg / 1000:.3f} kimg, {saved}: run the same "
                  f"fine-tuning again to {where}", file=sys.stderr, flush=True)

    def _say_interrupted(self, total_nimg: int) -> None:
        """Tell the user (stderr, main process) where a run stopped by Ctrl-C was saved and how to continue it."""
        self._said_saved = True
        if self.is_main:
            then = ("; run the same fine-tuning again to continue from there" if self.cur_nimg < total_nimg
                    else ", the end of the run")
            print(f"fine-tuning interrupted at {self.cur_nimg / 1000:.3f} kimg: saved {self.last_snapshot} and the "
                  f"training state in {self.run_dir}{then}", file=sys.stderr, flush=True)

    def _postfix(self) -> dict[str, str]:
        shown = {"G": self.latest.get("loss_G"), "D": self.latest.get("loss_D"), "p": self.ada.p, "r_t": self.ada.rt}
        return {k: f"{v:.3f}" for k, v in shown.items() if v is not None}

    def _start_tick(self) -> None:
        self.stats = {}
        self.tick_start = (time.perf_counter(), self.cur_nimg)

    # ---- snapshots and resume

    def snapshot(self, *, quality: bool = True) -> dict:
        """Write the network, the fakes grid, the quality metric, a metrics line, the training state and latest.json,
        in this order (main process only); every process must call it. Returns the metrics (with paths and the grid
        on the main process; `sec_per_kimg` since the Trainer was made or its last snapshot). The quality metric takes
        minutes: it is left out with `quality=False` (a run stopping at Ctrl-C) and when Ctrl-C is pressed before or
        while it is computed. Losses that are no longer finite are said once (the run went on to exit 0 and to suggest
        blending its broken model).

        Outside `run()` (a loop of one's own: `step`, then `snapshot`) it holds the run folder while it writes, as
        `run()` does: a Trainer whose `run()` ended released it, and its snapshot went into the folder of the run
        that took it since, latest.json naming the stale network (forty-fourth session's audit); that is now the
        BlockingIOError that names the holder."""
        with self._holding_run_dir():
            if self.dataset is None:  # a finished run read none; its training state records the files
                self.dataset = self._load_dataset(None)
            return self._snapshot(quality=quality)

    def _snapshot(self, *, quality: bool = True) -> dict:
        """`snapshot()`, the run folder held (`run()` holds it throughout)."""
        info = self._tick_metrics()
        diverged = [k for k in ("loss_G", "loss_D") if info.get(k) is not None and not math.isfinite(info[k])]
        if diverged and self.is_main and not self._diverged_said:
            self._diverged_said = True
            warn(f"{' and '.join(diverged)} became {info[diverged[0]]} by {info['kimg']:g} kimg: the training "
                 f"diverged and the snapshots from here on are broken; start again from the base with a lower "
                 f"{option_value('lr', self.lr)}")
        self._check_processes_agree()
        rng = self.dist.all_gather(_rng_state(self.device))
        nimg = self.cur_nimg
        self.last_snapshot = snapshot_name(nimg)
        if self.is_main:
            # what is written so far, for the message of a full disk: a network written without its training state
            # is a complete file, but no point the run continues from (the same command redoes this snapshot)
            self._saving = saving = SnapshotWrites(nimg)
            meta = {"finetune": {"base": self.cfg.resume, "data": self.cfg.data, "kimg": nimg / 1000}}
            if self.base_state is not None:
                meta["finetune"]["base_state"] = self.base_state
            save_network(self.run_dir / self.last_snapshot, Networks(self.G_ema, self.G, self.D, meta=meta))
            saving.written.append(SnapshotWrites.NETWORK)
            fakes = self.fakes_grid()
            save_image(fakes, self.run_dir / fakes_name(nimg))
            saving.written.append(SnapshotWrites.FAKES)
            if quality:
                with self._metric_said():
                    info.update(self._ctrl_c.unless_pressed(self.quality))
            records = append_metrics(self.run_dir / METRICS_FILE, info)
            saving.written.append(SnapshotWrites.METRICS)
            plot_metrics(records, self.run_dir / "metrics.png")
            saving.written.append(SnapshotWrites.PLOT)
            save_state(self.run_dir, self._state(rng))  # a snapshot cut short before it is redone on resume
            saving.written.append(SnapshotWrites.STATE)
            write_latest(self.run_dir, latest_record(nimg))  # last: it names only complete files
            self._saving = None
            info.update(network=self.run_dir / self.last_snapshot, fakes_path=self.run_dir / fakes_name(nimg),
                        fakes=fakes, plot_path=self.run_dir / "metrics.png")
            if self.callback is not None:
                self.callback(info)
        self._start_tick()
        return info

    @contextlib.contextmanager
    def _metric_said(self) -> Iterator[None]:
        """Say that the snapshot's quality metric is being computed while the body computes it (main process): on the
        run's bar, whose clock goes on (redrawn every second; in a log as often as its updates), else in a line.
        For tens of seconds a snapshot (minutes on a CPU) the bar stood still, its clock stopped, and with
        --no-progress nothing was said (forty-second session's audit)."""
        bar = self._bar  # a Trainer's snapshot() called outside run() has none, or a closed one (disabled)
        if not (self.is_main and self.metrics):
            yield
            return
        doing = f"computing {' and '.join(name.upper() for name in self.metrics)}"
        if bar is None or bar.disable:
            if not self.progress:
                print(f"{self.run_dir}: {doing} of {self.cfg.metric_images} generated images for the snapshot at "
                      f"{self.cur_nimg / 1000:.3f} kimg...", flush=True)
            yield
            return
        shown = bar.postfix
        bar.set_postfix_str(f"{shown}, {doing}..." if shown else f"{doing}...")
        done = threading.Event()

        def tick() -> None:
            while not done.wait(max(1.0, bar.mininterval)):
                bar.refresh()

        ticking = threading.Thread(target=tick, name="toonlib-metric-clock", daemon=True)
        ticking.start()
        try:
            yield
        finally:
            done.set()
            ticking.join()
            bar.set_postfix_str(shown, refresh=False)  # the next minibatch draws the bar without the note

    def quality(self) -> dict[str, float]:
        """G_ema's quality metrics against the training images ({} when off; a finished run reads them now); the
        RNG streams are left as they were, so runs with and without a metric train identically. Under torchrun every
        process calls it."""
        if not self.metrics:
            return {}
        if self.dataset is None:  # a finished run read none at its start: AttributeError on None (33rd session)
            with self._holding_run_dir():  # after run(), which released the folder: held for the read (its cache
                self.dataset = self._load_dataset(None)  # rewritten was "another fine-tuning run was started")
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            return image_quality(self.G_ema, self.dataset.images, self.metrics, self.metric_weights,
                                 num_images=self.cfg.metric_images, batch_size=self.batch_gpu,
                                 seed=self.cfg.seed, force_fp32=self.force_fp32,
                                 cache_root=self.run_dir / METRIC_CACHE,
                                 reals_key=self.dataset.content_key)

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

    def _recorded_config(self) -> dict:
        """The settings as config.json and the training states record them: paths resolved (the data and the base
        since `_setup`, the run folder here), so the record names them from any folder."""
        return {**self.cfg.to_dict(), "run_dir": str(self.run_dir.resolve())}

    def _state(self, rng: list[dict]) -> dict:
        return {
            "config": self._recorded_config(),
            "networks": {"G": self.G.config.to_dict(), "D": self.D.config.to_dict()},
            "G": _cpu_state(self.G), "D": _cpu_state(self.D), "G_ema": _cpu_state(self.G_ema),
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "ada": self.ada.state_dict(), "augment_p": float(self.augment_pipe.p), "pl_mean": self.pl_mean.cpu(),
            "cur_nimg": self.cur_nimg, "batch_idx": self.batch_idx, "last_snapshot": self.last_snapshot,
            "world_size": self.dist.world_size, "rng": rng, "base_state": self.base_state,
            "data_files": self.dataset.files,  # what it was trained on: a resumed run says what changed
            "data_digests": self.dataset.digests,  # and their contents: the same images uploaded again are no change
        }

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


class _CtrlC:
    """Ctrl-C (SIGINT) deferred to a point the training loop chooses (`deferred`); SIGINT is what Ctrl-C sends in a
    terminal and what a Jupyter kernel's interrupt sends, into the main thread. SIGTERM (`kill`, `timeout`, a job
    scheduler) and SIGHUP (a closed terminal) may be deferred the same way."""

    def __init__(self) -> None:
        self.pressed = False  # within `deferred`: Ctrl-C was pressed
        self._abortable = False  # within `unless_pressed`: the first Ctrl-C raises KeyboardInterrupt there

    @contextlib.contextmanager
    def deferred(self, on_press: Callable[[int], None] | None = None,
                 signals: tuple[int, ...] = (signal.SIGINT,)) -> Iterator[None]:
        """Within the body, the first of `signals` sets `pressed` (and calls `on_press` with the signal) instead of
        raising or ending the process, so the body can stop where it chooses; the handlers that were there before are
        put back at that moment, so a second signal does what it did before (Python's default: KeyboardInterrupt at
        once for Ctrl-C, the end of the process for SIGTERM). They are put back when the body ends or fails, too.
        Nothing is installed outside the main thread (signal.signal raises there), nor for a signal that is ignored
        (SIG_IGN) or handled outside Python (that handler could not be put back): there it keeps its behaviour."""
        main = threading.current_thread() is threading.main_thread()
        previous = {signum: handler for signum in signals
                    if main and (handler := signal.getsignal(signum)) is not None and handler != signal.SIG_IGN}
        if not previous:
            yield
            return

        def put_back() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        def press(signum: int, frame: FrameType | None) -> None:
            put_back()
            self.pressed = True
            if on_press is not None:
                # RuntimeError: the main thread was inside a write to the same stream (a reentrant call); OSError: a
                # stream that cannot be written (a pipe whose reader ended); the notice is left out rather than
                # failing the minibatch there
                with contextlib.suppress(RuntimeError, OSError):
                    on_press(signum)
            if self._abortable:
                raise KeyboardInterrupt

        for signum in previous:
            signal.signal(signum, press)
        try:
            yield
        finally:
            put_back()
            self.pressed = False

    def unless_pressed(self, work: Callable[[], dict]) -> dict:
        """`work()`, or {} when Ctrl-C is pressed before it or while it runs (it is then left unfinished)."""
        if self.pressed:
            return {}
        self._abortable = True
        try:
            return work()
        except KeyboardInterrupt:
            if not self.pressed:  # not the first Ctrl-C of `deferred`
                raise
            return {}
        finally:
            self._abortable = False


#: The narrowest the fine-tuning bar gets in a terminal (tqdm's width for a bar of no known width): the numbers
#: beside it give way first (`_fitted_meter`).
BAR_MIN_CELLS = 10
#: The bar's live numbers (`Trainer._postfix`), in the order they give way where the terminal is too narrow for all
#: of them: the losses first (each snapshot logs them in metrics.jsonl), then r_t, then p.
_GIVE_WAY = ("G", "D", "r_t", "p")


def _fitted_meter(format_meter: Callable[..., str]) -> Callable[..., str]:
    """tqdm's `format_meter` for the fine-tuning bar, fitted to the terminal's width (`ncols`): where the line with a
    bar of `BAR_MIN_CELLS` is wider, its live numbers are left out whole, in `_GIVE_WAY`'s order. tqdm cut the line
    at the width instead: at 80 columns the bar was one cell wide, r_t and the closing ']' were gone, and an hour
    into a run `p=0.123` showed as `p=0.1` (forty-second session's audit). A log's line (no width) is kept whole."""
    def fitted(**meter) -> str:
        width, postfix = meter.get("ncols"), meter.get("postfix")
        if isinstance(width, int) and width > 0 and isinstance(postfix, str) and postfix:
            shown = postfix.split(", ")
            for name in (None, *_GIVE_WAY):
                shown = [item for item in shown if item.partition("=")[0] != name]
                # with no width, tqdm draws a bar of BAR_MIN_CELLS (its default)
                if disp_len(format_meter(**{**meter, "ncols": None, "postfix": ", ".join(shown)})) <= width:
                    break
            meter = {**meter, "postfix": ", ".join(shown)}
        return format_meter(**meter)

    return fitted


def _images(kimg: float) -> int:
    """`kimg` as a count of images, at least one."""
    return max(1, round(kimg * 1000))


def _set_hparams(opt: torch.optim.Optimizer, lr: float, betas: tuple) -> None:
    for group in opt.param_groups:
        group["lr"], group["betas"] = lr, betas


def _load_base(source: str, progress: bool) -> tuple[Generator, Discriminator, Generator]:
    """G, D and G_ema of the base checkpoint (G defaults to a copy of G_ema); D is required. A URL or registry name is
    downloaded first where need be, its bar shown when `progress`; else (`finetune(progress=False)`, `--no-progress`)
    a line as it starts and one as it ends (minutes of a 1024 px base passed without a word; audit). The end says
    whether this run waited for another process's download of it (it said "downloaded" of a download it only waited
    for, `fetch` saying nothing of the wait; forty-third session's audit)."""
    from ..checkpoints import check_source
    from ..download import cache_state, fetch

    downloading = not progress and (is_url(source) or source in MODELS) and not Path(source).exists() and \
        cache_state(source) != "cached"
    if downloading:
        check_source(source)  # refused before any download or line, as load_network refuses it
        write_line(f"{source}: downloading the base model")
        waited: list[str] = []  # whose download `fetch` waited for (it says the wait as it starts)
        fetch(source, progress=False, cache_option=None, on_wait=waited.append)  # as load_network fetches it
        write_line(f"{source}: downloaded" + (f" (this run waited for the download of {waited[0]})" if waited else ""))
    nets = load_network(source, progress=progress)
    if nets.D is None:
        raise CheckpointError(
            f"{source} has no discriminator (D): transfer learning fine-tunes the base model's D together with "
            "its G, and a randomly initialised D ruins the generator. Start from a checkpoint with D, e.g. the "
            "registry models 'ffhq-256-noaug', 'ffhq-512-noaug', 'ffhq-1024-noaug' or NVIDIA's ffhq.pkl "
            "('ffhq-1024').")
    G = nets.G if nets.G is not None else copy.deepcopy(nets.G_ema)
    return G, nets.D, nets.G_ema


def _batch_split_message(cfg: TrainConfig, batch_gpu: int, group: int, world: int) -> str:
    """Why D cannot take micro-batches of `batch_gpu` images (its minibatch-stddev layer splits each into groups of
    `group`, or takes them all as one when fewer), and which settings would do, naming the options the user gave."""
    divisor = next((n for n in range(group, 1, -1) if batch_gpu % n == 0), None)
    other_gpu = option_value("batch_gpu", divisor) if divisor is not None else ""  # each user's words (audit)
    if cfg.batch_gpu is None:  # no micro-batch was asked for: the batch size is what the user chose
        per_process = f" x {world} processes" if world > 1 else ""
        example = math.ceil(cfg.batch_size / (group * world)) * group * world
        return (f"{option_value('batch_size', cfg.batch_size)} does not split into the groups of {group} images of "
                f"D's minibatch-stddev layer ({batch_gpu} images a process): give a {option_both('batch_size')} "
                f"that is a multiple of {group}{per_process} (e.g. {example}) or at most {group}{per_process}"
                + (f", or keep it with micro-batches of {divisor} images, {other_gpu} (gradient accumulation)"
                   if other_gpu else ""))
    return (f"{option_value('batch_gpu', batch_gpu)} must be at most {group} or a multiple of {group}, D's "
            f"minibatch-stddev group size" + (f", e.g. {other_gpu}" if other_gpu else ""))


def _check_resolution(cfg: TrainConfig, res: int) -> None:
    """Refuse a `resolution` other than the base model's `res`: fine-tuning keeps the model's resolution."""
    if cfg.resolution is not None and cfg.resolution != res:
        registry = f"ffhq-{cfg.resolution}-noaug"
        raise ValueError(
            f"{option_value('resolution', cfg.resolution)}: the base model {cfg.resume} makes {res}x{res} images "
            f"and fine-tuning keeps the model's resolution. Leave {option_both('resolution')} unset (the images "
            f"are then resized to {res}) or start from a model of {cfg.resolution} px"  # not "a 8 px model"
            + (f" (e.g. '{registry}')." if registry in MODELS else " with its discriminator."))


def _check_run_dir_outside_data(cfg: TrainConfig) -> None:
    """Refuse a run folder inside the data folder (or the data folder itself): its fakes grids and plots would be
    read as training images when the run resumes; and another run's folder as the data (`--data runs/a` for
    `--resume runs/a`: its fakes grids and metrics.png were trained on without a word)."""
    data, run_dir = user_path(cfg.data).resolve(), user_path(cfg.run_dir).resolve()
    if data.is_dir() and run_dir.is_relative_to(data):
        where = "is" if run_dir == data else "is inside"
        raise ValueError(f"{option_value('run_dir', cfg.run_dir)} {where} the data folder {cfg.data}: the run's "
                         "images (fakes, metrics.png) would become training images. Put the run folder elsewhere, "
                         f"e.g. {data.parent / 'runs' / data.name}, or the images in a folder of their own "
                         "(--data, data=)")  # a notebook's data_path: its run folder is runs/<run_name>
    if data.is_file() and _is_checkpoint(data):  # a torch .pt is a zip: "found 0 usable images ... (no image files"
        raise ValueError(f"{option_value('data', cfg.data)} is a model checkpoint, not training images: give the "
                         "folder or .zip of your faces; to start from that model, give it as "
                         f"{option_value('resume', cfg.data)}")
    if data.is_dir() and has_run(data):
        raise ValueError(f"{option_value('data', cfg.data)} is a fine-tuning run's folder, whose images (fakes grids, "
                         "metrics.png) are no training faces: give the folder of your faces; to go on from that "
                         f"run, give it as {option_value('resume', cfg.data)}")


def _is_checkpoint(path: Path) -> bool:
    """Whether the file `path` starts as a model checkpoint does (`files.looks_like_checkpoint`) and, a zip, holds no
    images (a zip of faces whose first member is a data.pkl is a data set)."""
    try:
        with path.open("rb") as file:
            head = file.read(1024)
        return looks_like_checkpoint(head) and not (zipfile.is_zipfile(path) and image_files(path))
    except (OSError, ValueError):  # unreadable here: said where the data is read
        return False


def _empty_networks(state: dict) -> tuple[Generator, Discriminator, Generator]:
    """Networks of a training state's architecture (G, D, G_ema), weights not loaded."""
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


def _write_json(path: Path, obj: dict) -> None:
    with atomic_write_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def finetune(config: TrainConfig | None = None, *, progress: bool = True,
             callback: Callable[[dict], None] | None = None, **settings: object) -> Path:
    """Fine-tune `config.resume` (a checkpoint, or a run folder: see TrainConfig) on `config.data` into
    `config.run_dir` (resuming the run there if any); returns the last network snapshot's path. The settings are a
    TrainConfig or its fields as keywords: `finetune(data="faces/", resume="ffhq-256-noaug", run_dir="runs/toon")`.
    `progress=False`: no progress bars, and one line per snapshot on stdout instead. `callback(info)` gets each
    snapshot's metrics, paths (network, fakes_path, plot_path) and fakes grid (a PIL image). A run already done
    returns its last snapshot, a FileNotFoundError if that was deleted. Under torchrun, every process calls this;
    only the first writes files and downloads. Ctrl-C saves the run at the end of the minibatch, then raises
    KeyboardInterrupt (`Trainer.run`). The caller's torch RNG state is left as it was."""
    config = _config_of(config, settings)
    check_flag("progress", progress)  # "no" showed the bars
    dist, started = init_distributed(config.device)
    try:
        with torch.random.fork_rng(devices=[dist.device] if dist.device.type == "cuda" else []):
            return Trainer(config, dist=dist, progress=progress, callback=callback).run()
    finally:
        if started:
            torch_dist.destroy_process_group()


def _config_of(config: object, settings: dict[str, object]) -> TrainConfig:
    """`finetune`'s TrainConfig: `config`, or one of the keyword `settings`; a TypeError that shows both forms
    for anything else (a name that is no setting, a required one missing)."""
    fields = [field.name for field in dataclasses.fields(TrainConfig)]
    unknown = [name for name in settings if name not in fields]
    missing = [name for name in ("data", "resume", "run_dir") if name not in settings]
    if config is None and not unknown and not missing:
        return TrainConfig(**settings)
    if isinstance(config, TrainConfig) and not settings:
        return config
    example = "data='faces/', resume='ffhq-256-noaug', run_dir='runs/toon'"
    if unknown:
        close = {name: difflib.get_close_matches(name, fields + ["progress", "callback"], n=1) for name in unknown}
        got = ", ".join(f"{name!r}" + (f" (did you mean {close[name][0]!r}?)" if close[name] else "")
                        for name in unknown)
        got = f"{got}, which {'is no setting' if len(unknown) == 1 else 'are no settings'} of TrainConfig"
    elif config is None:
        got = f"no {' or '.join(missing)}" if settings else "nothing"
    elif isinstance(config, TrainConfig):
        got = (f"a TrainConfig and keyword settings ({', '.join(settings)}): change a TrainConfig with "
               "dataclasses.replace(config, kimg=20)")
    elif isinstance(config, dict):
        got = "a dict: pass its settings as keywords, finetune(**settings)"
    else:
        got = f"{type(config).__name__} {config!r}"[:200]
    raise TypeError(f"finetune takes a TrainConfig, finetune(TrainConfig({example})), or its settings as keywords, "
                    f"finetune({example}); got {got}")
