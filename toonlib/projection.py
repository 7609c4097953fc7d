"""Projection: find the latent w (and noise maps) from which a generator draws a given image.

The recipe is StyleGAN2's projector (Karras et al. 2020; stylegan2-ada-pytorch `projector.py`),
re-implemented from its description (docs/design.md section 7):

    result = project(G, photo)                 # W+, 500 steps, like Toonify
    result.save("face.npz")                    # key "w": [N, num_ws, w_dim], like projected_w.npz
    toon = render(G_blend, result.w)            # constant noise, as toonify draws its toons
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import importlib.util
import math
import numbers
import os
import queue
import shutil
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence, Union

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from . import convolution, runtime
from .checkpoints import _LEGACY_TORCH_MAGIC, GeneratorLike, _torch_load, check_not_an_image, load_generator
from .checkpoints.native_torch import is_native_torch
from .checkpoints.psp import is_psp
from .checkpoints.rosinality import is_projector_output, is_rosinality
from .devices import default_device
from .files import atomic_write_path, looks_like_pickle, safetensors_header_length, user_path
from .images import (
    GIVE_AS_A_MODEL,
    check_image_tensor,
    from_pil,
    image_attribute_hint,
    latent_shaped,
    read_image,
    to_uint8,
    warn_if_not_a_crop,
)
from .losses import PerceptualDistance, build_lpips, noise_regularization, normalize_noise_
from .messages import check_callback, check_count, check_flag, check_number, install_line, progress_bar, summary, warn
from .options import SEED_RANGE

Target = Union[PIL.Image.Image, np.ndarray, torch.Tensor, Sequence[Union[PIL.Image.Image, np.ndarray, torch.Tensor]]]
Callback = Callable[[int, float, torch.Tensor], None]

SPACES = ("w", "w+")
DEFAULT_STEPS = {"w": 1000, "w+": 500}
DEFAULT_INIT_STEPS = 100  # steps when starting from a given latent (an encoder's), in either space
LPIPS_RESOLUTION = 256  # images larger than this are area-downsampled before the distance
W_AVG_SEED = 123
LR_RAMPDOWN = 0.25
LR_RAMPUP = 0.05
LATENT_NOISE_FACTOR = 0.05
LATENT_NOISE_RAMP = 0.75
#: Latents `render` synthesises together: a 1024 px latent took ~0.5 GB while drawn, and `toonlib toonify` of e4e's
#: latents.pt (one latent per photo of a test set, often hundreds) drew them all at once (forty-fifth session's
#: audit).
RENDER_BATCH = 4
#: What `save_video` and `toonlib project --video` write, and the suffix it is named with.
VIDEO_FILE, VIDEO_SUFFIX = "an H.264 video (MP4)", ".mp4"


def default_steps(space: str, from_init: bool = False) -> int:
    """The steps `project` takes without `steps`: `DEFAULT_STEPS[space]`, or `DEFAULT_INIT_STEPS` from a given
    latent (`init`, an encoder's)."""
    return DEFAULT_INIT_STEPS if from_init else DEFAULT_STEPS[space]


@dataclass(repr=False, eq=False)  # compared by identity: a generated == compared w tensors and raised
class ProjectionResult:
    """What `project` found for N target images.

    w: [N, num_ws, w_dim] float32 on the CPU (in 'w' space the one w repeated over the layers).
    images: [N, 3, H, W] in [-1, 1], `w` rendered with the optimised noise maps (None when loaded).
    noise: optimised noise maps, buffer name (`synthesis.b{res}.conv{0,1}.noise_const`) -> [N, 1, res, res].
    losses: [steps, N] LPIPS distance of each target at each step (the noise regulariser excluded).
    space: 'w' or 'w+'. steps: steps run (fewer than asked when early stopping).
    frames: uint8 [N*H, 2*W, 3] images (target | current, one row per target) every `save_every` steps; none where
    `project`'s `on_frame` took them as they were made.
    """

    w: torch.Tensor
    images: torch.Tensor | None
    noise: dict[str, torch.Tensor]
    losses: np.ndarray
    space: str
    steps: int
    frames: list[np.ndarray] = field(default_factory=list)

    def __repr__(self) -> str:
        """What was found, on one line (the dataclass's printed every noise map: ~12,000 characters)."""
        if len(self.losses):
            final = ", ".join(f"{d:.4f}" for d in self.losses[-1])
            steps = f"steps={self.steps}, w={summary(self.w)}, final distance=[{final}]"
        else:  # a latent file alone, as NVIDIA's projected_w.npz: it said "steps=0, final distance=[]"
            steps = f"w={summary(self.w)}, steps and distances not stored"
        return (f"ProjectionResult(space={self.space!r}, {steps}, images={summary(self.images)}, "
                f"noise maps={len(self.noise)}, frames={len(self.frames)})")

    def save(self, path: str | os.PathLike) -> None:
        """Write an `.npz` (atomically): `w` as NVIDIA's projected_w.npz, plus losses and noise maps. A `path` that
        names an image (its suffix, or an image file there) is refused before anything is written (ValueError)."""
        arrays = {"w": self.w.numpy(), "losses": self.losses, "space": np.str_(self.space),
                  "steps": np.int64(self.steps)}
        arrays.update({f"noise/{name}": t.numpy() for name, t in self.noise.items()})
        check_latent_path(path, "ProjectionResult.save")
        with atomic_write_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        _warn_unless_npz(path)

    @classmethod
    def load(cls, path: str | os.PathLike, num_ws: int | None = None) -> "ProjectionResult":
        """Read a file written by `save` (images are not stored: use `render`), or any latent file `load_latent`
        reads (NVIDIA's projected_w.npz: no losses or noise maps; its space is 'w' when every layer's w is the same).
        `num_ws` as `load_latent`'s: give it (G.num_ws) for a file of W latents [N, 1, w_dim], which are repeated to
        that many layers (space 'w'); `save` writes [N, num_ws, w_dim] in either space."""
        path = user_path(path)
        w = load_latent(path, num_ws)
        stored = {}  # what `save` keeps beside the latent
        if _is_npz(path):
            with np.load(path, allow_pickle=False) as npz:
                stored = {name: npz[name] for name in npz.files if name != "w"}
        noise = {k[len("noise/"):]: torch.from_numpy(v) for k, v in stored.items() if k.startswith("noise/")}
        losses = stored.get("losses", np.zeros((0, w.shape[0]), np.float32))
        space = str(stored["space"]) if "space" in stored else "w" if bool((w == w[:, :1]).all()) else "w+"
        steps = int(stored["steps"]) if "steps" in stored else len(losses)
        return cls(w=w, images=None, noise=noise, losses=losses, space=space, steps=steps)


# --------------------------------------------------------------------------------------------
# Schedules


def learning_rate(t: float, initial: float = 0.1) -> float:
    """Learning rate at progress t = step / steps: 5% linear ramp-up, cosine ramp-down over the last 25%."""
    ramp = min(1.0, (1.0 - t) / LR_RAMPDOWN)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return initial * ramp * min(1.0, t / LR_RAMPUP)


def latent_noise_scale(t: float, w_std: float) -> float:
    """Std of the noise added to w at progress t: 0.05 * w_std, falling quadratically to 0 at t = 0.75."""
    return w_std * LATENT_NOISE_FACTOR * max(0.0, 1.0 - t / LATENT_NOISE_RAMP) ** 2


# --------------------------------------------------------------------------------------------
# Projection


@runtime.with_gradients
def project(G: GeneratorLike, target: Target, space: str = "w+", steps: int | None = None, *,
            seed: int | Sequence[int] = 0, device: str | torch.device | None = None,
            lpips_net: torch.nn.Module | None = None, noise_reg_weight: float = 1e5, initial_lr: float = 0.1,
            w_avg_samples: int = 10000, w_stats: tuple[torch.Tensor, float] | None = None,
            init: torch.Tensor | None = None, callback: Callback | None = None, save_every: int | None = None,
            early_stop: tuple[int, float] | None = None, progress: bool = True,
            precision: str = "auto", on_frame: Callable[[np.ndarray], object] | None = None) -> ProjectionResult:
    """Project target image(s) into G's W or W+ space.

    G: a generator, or what `load_generator` takes (a loaded checkpoint or a path, URL or registry name: its G_ema).
    target: a PIL image or an image array (read as `images.read_image` reads them: uint8 RGB as is, 16-bit
    scaled, transparency on white), a float tensor [3, H, W] or [N, 3, H, W] in [-1, 1], or a list of
    those; non-square images are centre-cropped and all are resized to G's resolution. NaN or infinite values are
    refused.
    space: 'w+' (one w per layer, 500 steps by default: Toonify's choice) or 'w' (one w for all
    layers, 1000 steps by default). `steps=None` takes that default.
    init: where the optimisation starts, e.g. an encoder's W+ codes: [N, num_ws, w_dim] or
    [num_ws, w_dim] for one target (default: the mean w). In 'w' space one w per target is
    optimised, so a W+ init is averaged over its layers. With `init`, `steps=None` means
    `DEFAULT_INIT_STEPS` (100): the start is already close.

    Each target gets its own w, its own noise maps and its own random stream (target i uses
    `seed + i`, or `seed[i]` for a list; a seed lies in -2**63 .. 2**64 - 1, torch's range), and the
    loss is a sum of per-target terms, so projecting a batch computes what projecting each image alone with its
    seed computes: on the CPU each target steps on its own (one intra-op thread: exactly; several side by side:
    up to the last bits of the loss, the latent the same on the machines tested); on a GPU the batch steps as one group,
    the float rounding of batched kernels differs, and hundreds of optimiser steps can grow it into a visibly
    different latent (more in bfloat16): there, compare a batch with a batch.
    NVIDIA's projector shares the noise maps across a batch; here they are per target.

    The perceptual distance is LPIPS-VGG on images in [-1, 1] (lpips' convention; NVIDIA feeds the
    same metric [0, 255] images and rescales inside), both area-downsampled to 256 px when larger.
    `lpips_net`: a prebuilt `lpips.LPIPS` model (moved to `device`); None builds the real one once.
    `callback(step, distance, w)` runs after every step (distance summed over targets, w the current
    [N, num_ws, w_dim] on `device`, not a copy); an exception it raises stops the projection there and reaches
    the caller (a stop button: raise once it is pressed). `save_every=k` keeps a frame every k steps and at the
    last; `on_frame(frame)` gets each as it is made, and none is kept (`video_writer`'s `send`: a video written while
    the projection runs, in constant memory; frames kept take 6 MiB each at 1024 px).
    `early_stop=(patience, min_delta)` stops once the summed distance has not improved by
    `min_delta` for `patience` steps. `w_stats`: G's `w_statistics`, when the caller projects
    many times with one G (they cost 10,000 mapping passes each call otherwise). The caller's G is
    never modified (it is copied once).

    `precision`: 'auto' computes the generator and LPIPS in bfloat16 (autocast) on CPUs that do bfloat16 in
    hardware (AVX512-BF16 or AMX) and in float32 elsewhere, GPUs included (measured no faster there);
    'fp32', 'bf16' or 'fp16' (CUDA; with loss scaling) choose. The latents, the noise maps and Adam stay
    float32. tests/test_precision.py checks that bfloat16 keeps the result (final LPIPS within 1%, the same
    toon within 1/255). In float32 on CPUs without AVX-512 the loop runs its 3x3 convolutions as Winograd
    transforms (`convolution.winograd`). On CUDA the step is recorded once as a CUDA graph and replayed
    (TOONLIB_CUDA_GRAPHS=off: op by op).

    Cost, config F, batch 1, on a quiet 2-core CPU (benchmarks/bench_vs_reference.py, docs/design.md section
    11; 3-4x that on a busy one): with AVX512-BF16 ('auto' = bfloat16) about 0.22 s a step at 256 px and 0.70 s at
    1024 px, 500 W+ steps at 1024 px in ~5.5 minutes; with AVX2 only about 0.8 s and 2.8 s, ~25 minutes. On an
    H200 GPU the whole call of 500 W+ steps at 1024 px took 9.5 s (benchmarks/bench_gpu.py). On the CPU the
    networks' fixed kernels are transformed once per call (`convolution.FrozenKernels`, ~280 MiB; on AVX-512, where
    the step runs channels-last (`convolution.channels_last`), their channels-last copies instead, cast to bfloat16
    in bfloat16, flipped and transposed ones too, with the demodulation energies: 106-124 MiB in bfloat16, 203-237
    MiB in float32 at 256-1024 px), and the targets of a batch step side by side on up to one worker thread per
    intra-op thread, the intra-op threads shared out among the workers, each with a copy of G (1.2-1.4x the photos
    per second of one by one on 2 AVX2 cores, 1.0-1.12x on 2 AVX-512 ones; torch's thread count is restored
    afterwards; docs/design.md section 7).
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    steps = default_steps(space, init is not None) if steps is None else steps
    check_project_options(steps=steps, save_every=save_every, w_stats=w_stats, w_avg_samples=w_avg_samples,
                          initial_lr=initial_lr, noise_reg_weight=noise_reg_weight, early_stop=early_stop,
                          lpips_net=lpips_net, callback=callback, precision=precision, progress=progress,
                          on_frame=on_frame)
    device = default_device(device) if device is not None else None
    G = load_generator(G)
    device = device if device is not None else next(G.parameters()).device
    dtype = runtime.resolve_precision(precision, device)
    G = copy.deepcopy(G).eval().requires_grad_(False).to(device, torch.float32)  # `precision` sets what it computes in
    targets = as_images(target, G.img_resolution).to(device)
    num = targets.shape[0]
    start = None if init is None else _initial_w(init, num, G.num_ws, G.w_dim).to(device)  # refused before the work
    generators = [torch.Generator().manual_seed(s) for s in _seeds(seed, num)]
    net = lpips_net if lpips_net is not None else build_lpips(device)
    # On the CPU the targets of a batch step one by one, on `workers` threads side by side, each thread with its
    # own copy of G while it steps (a step swaps G's noise buffers), or in turn on one thread: a target computes what
    # it computes alone (as one group, batched kernels rounded otherwise, and Adam grew that into another latent:
    # 0.16 in w after 3 steps). Elsewhere (a GPU) the batch steps as one group: its throughput.
    workers = runtime.side_by_side(device, num)
    groups: list[slice | None] = [slice(i, i + 1) for i in range(num)] if device.type == "cpu" else [None]  # None: all
    copies = [G] + [copy.deepcopy(G) for _ in range(workers - 1)]
    idle = queue.SimpleQueue()
    for copied in copies:
        idle.put(copied)
    layout = convolution.channels_last_pays(device, winograd=True)
    with convolution.channels_last(layout):  # the target features in the layout the steps compute in
        distances = [PerceptualDistance(net.to(device), _lpips_size(targets if part is None else targets[part]))
                     for part in groups]

    if w_stats is not None and tuple(w_stats[0].shape) not in ((1, 1, G.w_dim), (G.w_dim,)):
        raise ValueError(f"w_stats's w_avg has shape {list(w_stats[0].shape)}, and this model's is [1, 1, {G.w_dim}]: "
                         "pass w_stats=w_statistics(G) of this G, or None (computed here)")
    w_avg, w_std = w_statistics(G, w_avg_samples) if w_stats is None else (w_stats[0].to(device), w_stats[1])
    if start is None:
        start = w_avg.repeat(num, G.num_ws if space == "w+" else 1, 1)
    elif space == "w":
        start = start.mean(dim=1, keepdim=True)
    w_opt = start.requires_grad_(True)
    noise = _initial_noise(G, generators, device)
    optimizer = torch.optim.Adam([w_opt, *noise.values()], lr=initial_lr, betas=(0.9, 0.999),
                                 fused=device.type in ("cpu", "cuda"))  # one kernel per tensor, not ~10
    # float16 gradients can underflow: scale the loss (from 2**10, not 2**16: steps that overflow are
    # skipped, and with the default scale the first dozen were, which changed the result).
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0**10, enabled=dtype == torch.float16)
    stopper = _EarlyStop(*early_stop) if early_stop is not None else None
    target_u8 = to_uint8(targets)
    losses, frames = [], []
    kernels = convolution.FrozenKernels(*copies, net)  # what is derived from G's and VGG16's kernels, once a projection
    params = [w_opt, *noise.values()]
    w_noise = torch.zeros_like(w_opt)  # this step's latent noise, refilled in place (a CUDA graph reads it there)

    def group_step(g: int, capturing: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple]:
        """Forward and backward of group g's targets; the gradients are of its rows of every parameter."""
        rows = (lambda t: t) if groups[g] is None else (lambda t: t[groups[g]])
        mine = [rows(p) for p in params]  # w_opt's rows, then the noise maps' (the order of `params`)
        maps = dict(zip(noise, mine[1:]))
        generator = idle.get()
        try:
            # forward and backward (this thread)
            with convolution.winograd(kernels=kernels), convolution.channels_last(layout):
                with runtime.autocast(device, dtype, cache=not capturing):
                    images = _synthesize(generator, (mine[0] + rows(w_noise)).expand(-1, G.num_ws, -1), maps)
                    dist = distances[g](_lpips_size(images)).float()
                loss = (dist + noise_reg_weight * noise_regularization(maps.values())).sum()
                return images, dist, loss, torch.autograd.grad(scaler.scale(loss), mine)
        finally:
            idle.put(generator)

    pool: concurrent.futures.ThreadPoolExecutor | None = None  # the workers, while the steps run

    def forward_backward(capturing: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        if len(groups) == 1:
            return group_step(0, capturing)
        parts = list((pool.map if pool is not None else map)(group_step, range(len(groups)), [capturing] * len(groups)))
        grads = tuple(torch.cat(by_group) for by_group in zip(*(p[3] for p in parts)))  # the groups are rows in order
        return (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), sum(p[2] for p in parts), grads)

    step_once = _StepReplay(forward_backward, runtime.cuda_graphs(device))
    with contextlib.ExitStack() as stack:
        # closed also when a callback stops the projection (left open, it pushed the next bar down a line)
        bar = stack.enter_context(progress_bar(total=steps, desc=f"project {space}", unit="step", disable=not progress))
        if workers > 1:  # the intra-op threads shared out among the workers while they step side by side
            stack.enter_context(runtime.intra_op_threads(max(1, torch.get_num_threads() // workers)))
            pool = stack.enter_context(concurrent.futures.ThreadPoolExecutor(workers, "toonlib-project"))
        for step in range(steps):
            t = step / steps
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(t, initial_lr)
            w_noise.copy_(_latent_noise(generators, w_opt.shape[1:]) * latent_noise_scale(t, w_std))
            images, dist, _, grads = step_once()
            for p, grad in zip(params, grads):
                p.grad = grad
            scaler.step(optimizer)
            scaler.update()
            normalize_noise_(noise.values())

            losses.append(dist.detach().cpu().numpy())
            total = float(losses[-1].sum())
            bar.set_postfix(dist=f"{total:.4f}", refresh=False)  # the loss beside it squeezed the bar at 80 columns
            bar.update(1)
            last = step == steps - 1 or (stopper is not None and stopper.should_stop(total))
            if save_every and (step % save_every == 0 or last):
                # to `on_frame` as it comes: `toonlib project --video` kept every frame until the end, 3 GB at 1024 px
                # with --video-every 1 (forty-first session's audit)
                (on_frame or frames.append)(_frame(target_u8, images.detach().float()))
            if callback is not None:
                callback(step, total, w_opt.detach().expand(-1, G.num_ws, -1))
            if last:
                bar.total = step + 1  # an early stop ends the bar full: the projection is complete
                break

    w = w_opt.detach().expand(-1, G.num_ws, -1).float().cpu().contiguous()
    noise = {name: n.detach().cpu() for name, n in noise.items()}
    return ProjectionResult(w=w, images=render(G, w, noise), noise=noise,
                            losses=np.stack(losses).astype(np.float32), space=space, steps=len(losses),
                            frames=frames)


def w_statistics(G: torch.nn.Module, num_samples: int = 10000) -> tuple[torch.Tensor, float]:
    """Mean w [1, 1, w_dim] and scalar spread sqrt(E|w - w_avg|^2) of `num_samples` mapped z (seed 123), in float32
    whatever G's weights (a float16 G's spread overflowed to inf)."""
    param = next(G.parameters())
    mapping = G.mapping if param.dtype == torch.float32 else copy.deepcopy(G.mapping).float()
    z = torch.from_numpy(np.random.RandomState(W_AVG_SEED).randn(num_samples, G.z_dim)).float().to(param.device)
    with torch.no_grad():
        w = mapping(z, None, skip_w_avg_update=True)[:, :1, :]
    w_avg = w.mean(dim=0, keepdim=True)
    w_std = float((w - w_avg).square().sum() / num_samples) ** 0.5
    return w_avg, w_std


def render(G: GeneratorLike, w: torch.Tensor | np.ndarray, noise: dict[str, torch.Tensor] | None = None
           ) -> torch.Tensor:
    """Synthesise ws [N, num_ws, w_dim] (or W latents [N, 1, w_dim], one w for every layer) with const noise, or with
    the given per-target noise maps of G's (e.g. the `ProjectionResult.noise` of a projection with G); returns
    [N, 3, H, W] float32 in about [-1, 1] (not clamped) on the CPU, drawn `RENDER_BATCH` latents at a time (the
    memory of a batch is the images', not N latents' drawing). G is untouched; like `project`'s, it may be
    anything `load_generator` takes. No latents (N = 0) is a ValueError, not an empty batch: it is a slice or a file
    that missed its latents; so are latents that hold NaN or inf (they drew a picture of noise)."""
    G = load_generator(G)
    param = next(G.parameters())
    ws = latent_tensor(w, param.device)
    if ws.ndim == 3 and not ws.shape[0]:  # it failed inside the first convolution: "torch.cat(): expected a non-empty"
        raise ValueError(f"no latents to render: w has shape {list(ws.shape)}; render takes [N, {G.num_ws}, "
                         f"{G.w_dim}] with N >= 1 (it returns [N, 3, H, W])")
    if ws.ndim == 3 and ws.shape[1] == 1 and ws.shape[2] == G.w_dim:  # W latents, as an .npz may hold them
        ws = ws.expand(-1, G.num_ws, -1)
    if ws.ndim == 3 and tuple(ws.shape[1:]) != (G.num_ws, G.w_dim):  # G said the shape alone (forty-fifth session)
        raise ValueError(f"w has shape {list(ws.shape)}, and this {G.img_resolution} px generator takes [N, "
                         f"{G.num_ws}, {G.w_dim}]: {other_model(ws.shape, G)}; render them with a generator of that "
                         "model (the base they were projected into, or a toon model fine-tuned from it), or project "
                         "the photo again with this one")
    _check_finite_latents(ws, "; render takes finite latents")
    if not isinstance(noise, (dict, type(None))):
        raise TypeError(f"noise is a dict of noise maps, buffer name -> [N, 1, res, res] (ProjectionResult.noise), "
                        f"or None, got {type(noise).__name__}")
    noise = {name: torch.as_tensor(n, device=param.device, dtype=param.dtype) for name, n in (noise or {}).items()}
    shapes = {name: [1, *buf.shape] for name, buf in G.named_buffers() if name.endswith("noise_const")}
    for name, n in noise.items():  # those of another generator failed inside torch (no attribute `b64`, sizes)
        if name not in shapes or list(n.shape[1:]) != shapes[name]:
            found = (f"is not one of its {len(shapes)} maps ({', '.join(list(shapes)[:2])}, ...)" if name not in shapes
                     else f"is {list(n.shape)}, where it takes [N, {', '.join(map(str, shapes[name]))}]")
            raise ValueError(f"noise map {name!r} does not fit this {G.img_resolution} px generator: it {found}; "
                             "pass the noise maps of a projection with it, or noise=None (its own const noise)")
    for name, n in noise.items():
        if n.shape[0] != ws.shape[0]:
            raise ValueError(f"the noise maps are for {n.shape[0]} latents, w holds {ws.shape[0]} ({name} "
                             f"{list(n.shape)}): for target i of a projection pass result.w[i:i + 1] and "
                             "{name: n[i:i + 1] for name, n in result.noise.items()}")
    ws = ws.to(param.dtype)  # in G's dtype (a float64 G failed: "Input type (float) and bias type (double)")
    images = []
    with torch.no_grad():  # `RENDER_BATCH` latents at a time: the memory of a batch grew by ~0.5 GB a 1024 px latent
        # (a w of another shape goes to G whole, which says how to shape it)
        for i in range(0, len(ws), RENDER_BATCH) if ws.ndim == 3 else range(1):
            chunk = ws[i:i + RENDER_BATCH] if ws.ndim == 3 else ws
            maps = {name: n[i:i + RENDER_BATCH] for name, n in noise.items()}
            images.append(_synthesize(G, chunk, maps).float().cpu())
    return torch.cat(images).contiguous()


def other_model(shape: Sequence[int], G: torch.nn.Module) -> str:
    """Why latents of `shape` [N, layers, width] are not generator G's, as `render` and `toonlib toonify LATENT` say
    it: they belong to another model, of another size (its layers) or another latent width (w_dim). "The toon model
    of that model's size" was the command line's advice for a model of the same size and another w_dim (forty-fifth
    session's audit)."""
    layers, width = shape[1], shape[2]
    differs = []
    if layers not in (1, G.num_ws):  # W latents [N, 1, w_dim] fit a model of any size
        size = f", a {2 ** (layers // 2 + 1)} px model's" if layers % 2 == 0 and 2 <= layers <= 30 else ""
        differs.append(f"{layers} layers{size}, where this {G.img_resolution} px model takes {G.num_ws}")
    if width != G.w_dim:
        differs.append(f"{width} values wide, where this model's latents are {G.w_dim} (its w_dim)")
    return f"they belong to another model (they are {' and '.join(differs)})"


def latent_tensor(w: torch.Tensor | np.ndarray, device: torch.device | None = None) -> torch.Tensor:
    """A latent as a tensor on `device` (an array, a latent read with numpy, is taken as it is); a TypeError that
    names the attribute to pass for the result objects that hold one (`ProjectionResult.w`, `ToonifyResult.w`); a
    ValueError, as for an image tensor's dtype, naming the dtype of one that holds no floats (integers drew another
    face without a word: forty-first session's audit)."""
    if isinstance(w, (torch.Tensor, np.ndarray)):
        tensor = torch.as_tensor(w, device=device)
        if not tensor.is_floating_point():
            raise ValueError(f"a latent is a float tensor or array [N, num_ws, w_dim], got {tensor.dtype}: whole "
                             "numbers draw another face than the latent they were cut from; pass the float latent "
                             "(a result's .w, load_latent's), not a w.long() or w.int() of it")
        return tensor
    hint = f": pass its .w ({type(w).__name__}.w)" if isinstance(getattr(w, "w", None), torch.Tensor) else ""
    raise TypeError(f"a latent is a tensor or an array [N, num_ws, w_dim], got {type(w).__name__}{hint}")


def _synthesize(G: torch.nn.Module, ws: torch.Tensor, noise: dict[str, torch.Tensor]) -> torch.Tensor:
    """G.synthesis(ws, noise_mode='const') with its `noise_const` buffers swapped for `noise`."""
    prefix = "synthesis."
    swapped = {name[len(prefix):]: n for name, n in noise.items()}
    return torch.func.functional_call(G.synthesis, swapped, (ws,), {"noise_mode": "const"})


def _initial_w(init: torch.Tensor, num: int, num_ws: int, w_dim: int) -> torch.Tensor:
    """`project`'s `init` as float32 [num, num_ws, w_dim] (a [num, 1, w_dim] w is repeated over the layers)."""
    w = latent_tensor(init).detach().float().cpu()  # a result object is refused, naming its .w
    shape = list(w.shape)
    w = w[None] if w.ndim == 2 else w
    if w.ndim != 3 or w.shape[0] != num or w.shape[1] not in (1, num_ws) or w.shape[2] != w_dim:
        raise ValueError(f"init must have shape [{num}, {num_ws}, {w_dim}] (one W+ latent per target), got {shape}")
    # a NaN ran every step, then `render` blamed "a projection or an edit that diverged" (thirty-seventh session)
    _check_finite_latents(w, "; project starts from finite latents: fix init, or leave it out (the mean w)", "init: ")
    return w.expand(num, num_ws, w_dim).clone()


def check_project_options(**options: object) -> None:
    """Raise ValueError / TypeError for `project` keyword values that cannot work, of those given (`steps`,
    `save_every`, `w_stats`, `w_avg_samples`, `initial_lr`, `noise_reg_weight`, `early_stop`, `lpips_net`, `callback`,
    `precision`, `progress`, `on_frame`): cheap, before any model is loaded or photo read (`project`,
    `pipeline.check_options`)."""
    if options.get("steps") is not None:
        check_count("steps", options["steps"])
    if options.get("save_every") is not None:
        check_count("save_every (a frame every k steps)", options["save_every"])
    if options.get("w_stats") is not None:
        _check_w_stats(options["w_stats"])
    if "w_avg_samples" in options:  # checked with w_stats too, which it is ignored beside: 1 passed there alone
        check_count("w_avg_samples", options["w_avg_samples"], 2)  # the spread of one sample is no spread
    for name in ("initial_lr", "noise_reg_weight"):  # a string failed inside torch.optim, or in the first step
        if name in options:
            check_number(name, options[name])
    if options.get("early_stop") is not None:
        _EarlyStop.check(options["early_stop"])
    lpips_net = options.get("lpips_net")
    # "vgg" failed at lpips_net.to, another module at "'Linear' object has no attribute 'version'"
    lpips_parts = ("net", "lins", "scaling_layer", "version")
    if lpips_net is not None and not (isinstance(lpips_net, torch.nn.Module)
                                      and all(hasattr(lpips_net, part) for part in lpips_parts)):
        raise TypeError(f"lpips_net is a prebuilt lpips.LPIPS model, or None (LPIPS-VGG, built once), got "
                        f"{type(lpips_net).__name__}")
    check_callback(options.get("callback"), "callback(step, distance, w) after every step", 0, 0.0, None)
    if options.get("on_frame") is not None:
        if options.get("save_every") is None:  # it would get nothing, without a word
            raise ValueError("on_frame gets the frames save_every=k makes: give save_every too (a frame every k steps)")
        check_callback(options["on_frame"], "on_frame(frame) for each frame save_every makes", None)
    if "progress" in options:
        check_flag("progress", options["progress"])
    if "precision" in options:
        runtime.check_precision(options["precision"])


def _check_w_stats(w_stats: object) -> None:
    """ValueError unless `w_stats` is (w_avg, w_std) as `w_statistics` returns it: a tensor and a number >= 0."""
    if not (isinstance(w_stats, (tuple, list)) and len(w_stats) == 2 and isinstance(w_stats[0], torch.Tensor)):
        raise ValueError(f"w_stats is the pair (w_avg, w_std) that w_statistics(G) returns, got "
                         f"{type(w_stats).__name__}: pass w_stats=w_statistics(G), or None (computed here)")
    check_number("w_stats's w_std", w_stats[1])


def _seeds(seed: int | Sequence[int], num: int) -> list[int]:
    """The seed of each of `num` targets: `seed + i`, or `seed[i]` of a sequence (NumPy integers too), each within
    `SEED_RANGE` (beyond it torch raised "Overflow when unpacking long long")."""
    if _is_whole(seed):
        seeds = [int(seed) + i for i in range(num)]
    elif not isinstance(seed, (Sequence, np.ndarray)) or isinstance(seed, str) or not all(map(_is_whole, seed)):
        raise ValueError(f"seed must be a whole number (target i uses seed + i) or a list of one per target, "
                         f"got {seed!r}")
    elif len(seed) != num:
        raise ValueError(f"got {len(seed)} seeds for {num} target images")
    else:
        seeds = [int(s) for s in seed]
    for i, s in enumerate(seeds):
        if not is_seed(s):
            given = f"seed {seed} + {i} (target i uses seed + i)" if _is_whole(seed) and i else f"seed {s}"
            raise ValueError(f"{given} is out of range: a seed is a whole number in -2**63 .. 2**64 - 1 (what "
                             "torch's random generator takes)")
    return seeds


def is_seed(value: object) -> bool:
    """Whether `value` is a seed `torch.Generator.manual_seed` takes: a whole number in `SEED_RANGE`."""
    return _is_whole(value) and SEED_RANGE[0] <= value <= SEED_RANGE[1]


def _is_whole(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _initial_noise(G: torch.nn.Module, generators: list[torch.Generator],
                   device: torch.device) -> dict[str, torch.Tensor]:
    """Fresh N(0, 1) noise maps [N, 1, res, res] for every `noise_const` buffer, one stream per target."""
    shapes = {name: buf.shape for name, buf in G.named_buffers() if name.endswith("noise_const")}
    per_target = [{name: torch.randn([1, 1, *shape], generator=g) for name, shape in shapes.items()}
                  for g in generators]
    return {name: torch.cat([maps[name] for maps in per_target]).to(device).requires_grad_(True)
            for name in shapes}


def _latent_noise(generators: list[torch.Generator], shape: torch.Size) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=g) for g in generators])


GRAPH_WARMUP_STEPS = 2  # steps run op by op before the step is captured (lazy initialisation, the kernel caches)


class _StepReplay:
    """Runs a projection step's forward and backward, `compute(capturing)`, op by op; with `graphs` (CUDA), after
    `GRAPH_WARMUP_STEPS` such steps on a side stream, records it once as a CUDA graph and from then on replays that.
    compute must read only tensors that stay in place (the latents, noise maps, latent noise are updated in place)
    and returns tensors that each replay overwrites. A 1024 px step launches ~1,500 kernels, whose CPU cost (40-65 ms
    a step on an H200 machine) is 2-3x the GPU's work (~18 ms); a replay launches them all at once. If the capture
    fails, a warning says so and the steps go on op by op."""

    def __init__(self, compute: Callable[[bool], tuple], graphs: bool):
        self.compute, self.graphs, self.calls = compute, graphs, 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: tuple = ()
        # The warm-up steps and the capture share one side stream: autograd keeps the stream each leaf's gradient
        # node was made on, and a capture on another stream made torch warn of a stream mismatch (torch 2.11, H200).
        self.stream: torch.cuda.Stream | None = None  # made at the first warm-up step

    def __call__(self) -> tuple:
        self.calls += 1
        if self.graphs and self.graph is None and self.calls > GRAPH_WARMUP_STEPS:
            self._capture()
        if self.graph is not None:
            self.graph.replay()
            return self.outputs
        if not self.graphs:
            return self.compute(False)
        self.stream = self.stream or torch.cuda.Stream()  # warm-up away from the default stream, as capture expects
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            outputs = self.compute(False)
        torch.cuda.current_stream().wait_stream(self.stream)
        return outputs

    def _capture(self) -> None:
        self.graphs = False  # one attempt: from here on, a replay or op by op
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                self.outputs = self.compute(True)
        except RuntimeError as error:
            self.outputs = ()
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            warn(f"project(): recording the step as a CUDA graph failed, steps run op by op ({reason}); "
                 "set TOONLIB_CUDA_GRAPHS=off to skip the attempt", RuntimeWarning)
            return
        self.graph = graph


def _lpips_size(images: torch.Tensor) -> torch.Tensor:
    if images.shape[2] > LPIPS_RESOLUTION:
        images = F.interpolate(images, size=(LPIPS_RESOLUTION, LPIPS_RESOLUTION), mode="area")
    return images


class _EarlyStop:
    """Says stop once the value has not fallen by `min_delta` below its best for `patience` calls."""

    def __init__(self, patience: int, min_delta: float):
        self.patience, self.min_delta = patience, min_delta
        self.best, self.stale = math.inf, 0

    @staticmethod
    def check(early_stop: object) -> None:
        """Raise ValueError unless `early_stop` is (patience, min_delta): a whole number >= 1 and a number >= 0."""
        if not (isinstance(early_stop, (tuple, list)) and len(early_stop) == 2
                and isinstance(early_stop[1], numbers.Real) and early_stop[1] >= 0):
            raise ValueError(f"early_stop is (patience, min_delta): stop once the loss has not fallen by min_delta "
                             f"for patience steps, e.g. (50, 1e-4); got {early_stop!r}")
        check_count("early_stop's patience", early_stop[0])

    def should_stop(self, value: float) -> bool:
        if value < self.best - self.min_delta:
            self.best, self.stale = value, 0
        else:
            self.stale += 1
        return self.stale >= self.patience


# --------------------------------------------------------------------------------------------
# Images in and out


def as_images(target: Target, resolution: int) -> torch.Tensor:
    """Target image(s) as float32 [N, 3, resolution, resolution] in [-1, 1] (centre-cropped, resized); a stacked
    array [N, H, W, C] is N images, as a tensor [N, 3, H, W] is."""
    stacked = isinstance(target, np.ndarray) and target.ndim == 4  # it was refused as "got shape (2, 32, 32, 3)"
    items = list(target) if stacked else target if isinstance(target, (list, tuple)) else [target]
    if not items:
        raise ValueError("no target image given")
    names = [f"target[{i}]" if len(items) > 1 else "the target image" for i in range(len(items))]
    return torch.cat([_fit(_as_tensor(item, name), resolution) for item, name in zip(items, names)])


def _as_tensor(item, name: str) -> torch.Tensor:
    if isinstance(item, (PIL.Image.Image, np.ndarray)):  # read as everywhere else: 16-bit scaled, alpha on white, ...
        image = read_image(item)
        warn_if_not_a_crop(image, name, "project", "projecting its centre square")  # a whole photo, most likely
        return from_pil(image)
    if isinstance(item, torch.Tensor):
        return check_image_tensor(item, "the target image tensor", "project").float().cpu()
    if isinstance(item, (str, os.PathLike)):
        raise TypeError(f"a target is an image, not a file name ({str(item)!r}): for a photo of a face use "
                        "toonlib.align_face(path).image (the FFHQ crop projection expects), for an aligned one "
                        "PIL.Image.open(path)")
    raise TypeError(f"cannot use {type(item).__name__} as a target image (a PIL image, an image array or a float "
                    f"tensor in [-1, 1]){image_attribute_hint(item)}")


def _check_finite_latents(w: torch.Tensor, then: str, where: str = "") -> None:
    """ValueError for latents `w` that hold NaN or infinite values (`render`, `save_latent`, `load_latent`): how many,
    and `then`, what the caller does not do with them; `where`: the file's name, before."""
    bad = int((~torch.isfinite(w)).sum())
    if bad:
        raise ValueError(f"{where}the latents hold NaN or infinite values ({bad} of {w.numel()}): a projection or an "
                         f"edit that diverged{then}")


def _fit(x: torch.Tensor, resolution: int) -> torch.Tensor:
    h, w = x.shape[2:]
    size = min(h, w)
    x = x[:, :, (h - size) // 2:(h - size) // 2 + size, (w - size) // 2:(w - size) // 2 + size]
    if size != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bicubic", antialias=True, align_corners=False)
    return x.clamp(-1, 1)


def _frame(target_u8: np.ndarray, images: torch.Tensor) -> np.ndarray:
    """Target | current side by side, one row per target: uint8 [N*H, 2*W, 3]."""
    # the generator's drawing, clamped as to_uint8 clamps it (the same bytes): its warning of 0 .. 255 values is about
    # a tensor the user passed, and told `project --video` of a PNG to pass x / 127.5 - 1 (forty-third session's audit)
    pairs = np.concatenate([target_u8, to_uint8(images.clamp(-1, 1))], axis=2)
    return pairs.reshape(-1, *pairs.shape[2:])


def require_video_writer() -> None:
    """Raise ImportError, saying what to install, where `save_video` could not write (no imageio-ffmpeg): the
    command line asks before it projects, not after."""
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        raise ImportError(f"writing a video needs imageio-ffmpeg: {install_line('notebook')} (or imageio-ffmpeg)")


def check_video_path(path: str | os.PathLike, writer: str) -> None:
    """Refuse (ValueError, before any work) to write a video to `path` where it names an image (its suffix, or an
    image file there: `check_not_an_image`) or has a suffix other than .mp4, as `toonlib project --video` refuses it:
    `save_video(result, "photo.png")` replaced the photo by an MP4, and "anim.gif" was an MP4 too (forty-fifth
    session's audit). `writer`: the function named."""
    check_not_an_image(path, writer, VIDEO_FILE, VIDEO_SUFFIX)
    named = user_path(path)
    if named.suffix.lower() != VIDEO_SUFFIX:
        raise ValueError(f"{writer} writes {VIDEO_FILE}, and '{os.fspath(path)}' is named "
                         f"{named.suffix or 'without a suffix'}: nothing was written; name it "
                         f"'{named.with_suffix(VIDEO_SUFFIX).name}' (players pick their reader by the suffix)")


def save_video(result: ProjectionResult, path: str | os.PathLike, fps: int = 30) -> None:
    """Write the result's frames (project with `save_every=k`) as an H.264 .mp4 (needs imageio-ffmpeg)."""
    if not isinstance(result, ProjectionResult):  # ("out.mp4", result) failed at "'str' object has no attribute"
        raise TypeError(f"save_video takes the ProjectionResult first, then the path, got {type(result).__name__} "
                        "first: save_video(result, 'out.mp4')")
    if not result.frames:
        raise ValueError("the result has no frames: project with save_every=k to keep some")
    check_video_path(path, "save_video")
    with video_writer(path, fps) as send:
        for frame in result.frames:
            send(frame)


@contextlib.contextmanager
def video_writer(path: str | os.PathLike, fps: int = 30) -> Iterator[Callable[[np.ndarray], None]]:
    """Write an H.264 .mp4 a frame at a time (needs imageio-ffmpeg): `with video_writer(path) as send:`, then
    `send(frame)` for each uint8 [H, W, 3] frame (all of one size), which goes to ffmpeg at once, none kept:
    `project(..., save_every=k, on_frame=send)` writes the video while the projection runs. The video replaces `path`
    (atomically) when the block ends without an error; after an error nothing is written. An OSError when ffmpeg
    wrote fewer frames than it was sent (a full disk: it is said once the block ends, the projection not stopped).
    A `path` not named .mp4 is refused first (`check_video_path`)."""
    check_video_path(path, "video_writer")
    require_video_writer()
    import imageio_ffmpeg

    writer, sent = None, 0
    with atomic_write_path(path) as tmp:

        def send(frame: np.ndarray) -> None:
            nonlocal writer, sent
            sent += 1
            if writer is None:
                height, width = frame.shape[:2]
                writer = imageio_ffmpeg.write_frames(str(tmp), (width, height), fps=fps, codec="libx264",
                                                     macro_block_size=2, output_params=["-f", "mp4"])
                writer.send(None)  # start ffmpeg
            with contextlib.suppress(OSError, StopIteration):  # ffmpeg has stopped: said below, with the count
                writer.send(np.ascontiguousarray(frame))

        try:
            yield send
        finally:
            if writer is not None:
                writer.close()
        if not sent:
            raise ValueError(f"no frames were sent to the video {path}: nothing was written")
        # imageio-ffmpeg does not check ffmpeg's exit status: on a full disk an empty file replaced the video that was
        # there, "wrote" said (thirty-fifth session's audit)
        try:
            written = imageio_ffmpeg.count_frames_and_secs(str(tmp))[0] if tmp.stat().st_size else 0
        except (RuntimeError, OSError):  # no readable video
            written = 0
        if written < sent:  # (ffmpeg's own lines go to the terminal, or a notebook server's log)
            free = shutil.disk_usage(tmp.parent).free
            raise OSError(f"cannot write {path}: the video ffmpeg wrote holds {written} of its {sent} frames "
                          f"({free / 1e6:.0f} MB free there; ffmpeg's own messages say why)")


# --------------------------------------------------------------------------------------------
# Reading latents written by other projectors


def save_latent(w: torch.Tensor | np.ndarray, path: str | os.PathLike) -> None:
    """Write latents [N, num_ws, w_dim] atomically as an `.npz` with key `w`, as NVIDIA's projected_w.npz: what
    `load_latent` and `toonlib toonify LATENT.npz` read (`ToonifyResult.w`, `ProjectionResult.w`). A `path` that
    names an image (its suffix, or an image file there) is refused before anything is written (ValueError)."""
    if isinstance(w, (str, os.PathLike)) and isinstance(path, (torch.Tensor, np.ndarray)):
        raise TypeError("save_latent(w, path) takes the latents first, then the path (swapped)")
    w = latent_tensor(w).detach().float().cpu()
    if w.ndim != 3:
        one = " (one latent [num_ws, w_dim]: pass w[None])" if w.ndim == 2 else ""
        raise ValueError(f"latents have shape {list(w.shape)}, expected [N, num_ws, w_dim]{one}")
    # written, it was refused only when rendered, far from where it went wrong
    _check_finite_latents(w, "; nothing was written (a latent file holds finite latents)")
    if w.numel() == 0:  # written, it drew nothing when read back
        raise ValueError(f"the latents are empty (shape {list(w.shape)}): nothing was written (a latent file holds "
                         "at least one latent)")
    check_latent_path(path, "save_latent")
    with atomic_write_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, w=w.numpy())
    _warn_unless_npz(path)


def check_latent_path(path: str | os.PathLike, writer: str) -> None:
    """Refuse (ValueError, before any work) to write latents to `path` where it names an image (its suffix, or an
    image file there: `checkpoints.check_not_an_image`), as `save_latent` and `ProjectionResult.save` do; asked
    first by the callers that write them under a temporary name (`toonlib project`, notebook 04's save), where
    the writer's own check sees the temporary file. `writer`: the function or command named."""
    check_not_an_image(path, writer, "latents as an .npz file (NVIDIA's projected_w.npz)", ".npz")


def _warn_unless_npz(path: str | os.PathLike) -> None:
    """Warn that latents written to `path` are an .npz file under another suffix (`save_latent`,
    `ProjectionResult.save`): `toonlib toonify me.png` of one took it for a photo, and refused it."""
    path = user_path(path)
    if path.suffix.lower() != ".npz":
        warn(f"wrote latents, an .npz file, to '{path}': tools choose their reader by the suffix (`toonlib toonify` "
             f"reads latents from .npz files, images from others); name it '{path.with_suffix('.npz').name}'")


def load_latent(path: str | os.PathLike, num_ws: int | None = None) -> torch.Tensor:
    """Latents from a file as float32 [N, num_ws, w_dim].

    Reads toonlib's and NVIDIA's `.npz` (key `w`: W+ latents [N, num_ws, w_dim], or W latents [N, 1, w_dim]),
    rosinality's projector output (a torch file: image name -> {'latent': [n_latent, w_dim] (W+) or [w_dim] (W),
    ...}, stacked in file order), e4e's (`scripts/inference.py`'s latents.pt: a tensor [N, n_styles, w_dim]) and
    JoJoGAN's (`inversion_codes/NAME.pt`: {'latent': [n_styles, w_dim]}). A W latent is repeated to `num_ws` layers
    when it is given (W latents stay [N, 1, w_dim] without it, which `render` takes too; a rosinality file that mixes
    W and W+ latents needs it); when `num_ws` is given, W+ latents must have that many layers.

    A 2-D `w` [rows, w_dim] is one W+ latent (`result.w[0]`); one whose rows are not `num_ws` is refused, saying so:
    it is another model's W+ latent, or W latents (`G.mapping(z)[:, 0]`), which are saved as [N, 1, w_dim].
    Latents that hold NaN or inf are refused, naming the file, and so are a file of no latents (N = 0) and an .npz
    whose 'w' holds no real numbers.
    """
    if num_ws is not None:
        check_count("num_ws", num_ws)  # "8" failed inside torch's repeat, 0 gave latents of no layers
    path = user_path(path)
    if path.is_dir():  # a folder and a missing file failed inside torch.load ("[Errno 21] Is a directory")
        raise IsADirectoryError(f"{path} is a folder, not a latent file: name the .npz (or .pt) file in it")
    if not path.exists():
        raise FileNotFoundError(f"no latent file at {path}")
    # a copy or sync cut short was "not a latent file (expected an .npz with key 'w', ...)", of a latent file
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_TORCH_MAGIC))
    if not head:
        raise ValueError(f"{path} is empty (0 bytes): a copy or download cut short? Copy it again, or toonify or "
                         "project the photo again")
    if head.startswith(b"PK\x03\x04") and not zipfile.is_zipfile(path):  # an .npz or torch zip without its end
        raise ValueError(f"{path} is cut short or damaged (a zip file without its end, as an .npz or torch latent "
                         "file is): copy it again, or toonify or project the photo again")
    if _is_npz(path):
        with np.load(path, allow_pickle=False) as npz:
            if "w" not in npz.files:
                raise ValueError(f"{path}: an .npz latent file needs a key 'w', found {npz.files}")
            try:  # an object array: numpy's "Object arrays cannot be loaded when allow_pickle=False", no file named
                w = npz["w"]
            except ValueError:
                w = None
            if w is None or w.dtype.kind not in "fiu":  # strings, complex numbers (read as their real part), ...
                kind = "it holds Python objects" if w is None else f"its dtype is {w.dtype}"
                raise ValueError(f"{path}: its 'w' is not an array of real numbers ({kind}), not latents: a latent "
                                 "file holds a float array [N, num_ws, w_dim] (np.savez(path, w=latents))")
            w = torch.from_numpy(w)
        if w.ndim == 2 and num_ws not in (None, w.shape[0]):  # another model's W+ latent, or W latents?
            raise ValueError(f"{path}: w has shape {list(w.shape)}, one W+ latent of {w.shape[0]} layers, and this "
                             f"model takes {num_ws}: a latent of another model; W latents are read as [N, 1, "
                             f"{w.shape[1]}] (np.savez(path, w=w[:, None]))")
        w = w[None] if w.ndim == 2 else w
    else:
        # toonlib's models, and NVIDIA's pickles (named by their classes: another pickle may hold latents)
        if safetensors_header_length(head) is not None or (looks_like_pickle(head) and _nvidia_pickle(path)):
            raise ValueError(f"{path}: it is a model checkpoint, not a latent file: {GIVE_AS_A_MODEL}")  # as torch's
        try:
            with warnings.catch_warnings():  # torch's own warnings about what is not a torch file: refused below
                warnings.simplefilter("ignore")
                data = _torch_load(path, zipfile.is_zipfile(path))  # a model's too (its safe globals): named below
        except OSError:  # no permission: as it is
            raise
        except Exception:  # torch raises many types for what is not a torch file (advising weights_only=False)
            data = None  # refused below, saying what a latent file is
        if (isinstance(data, torch.Tensor) and data.is_floating_point() and data.ndim in (2, 3)
                and latent_shaped(data.shape)):  # not an image's [3, H, W]
            w = data.detach()  # e4e's latents.pt (one latent: [n_styles, w_dim])
            w = w[None] if w.ndim == 2 else w
        elif isinstance(data, dict) and set(data) == {"latent"} and isinstance(data["latent"], torch.Tensor):
            w = _rosinality_latent(path.name, data, num_ws, path)[None]  # JoJoGAN's e4e inversion of one photo
        else:
            w = _projector_latents(data, num_ws, path)
    if w.ndim == 3 and num_ws is not None and w.shape[1] == 1:  # W latents [N, 1, w_dim], repeated to the layers
        w = w.repeat(1, num_ws, 1)
    if w.ndim != 3 or (num_ws is not None and w.shape[1] != num_ws):
        raise ValueError(f"{path}: latents have shape {list(w.shape)}, expected [N, {num_ws or 'num_ws'}, w_dim]")
    if not w.shape[0]:  # the CLI failed at an IndexError, the API read it, and `render` said "no latents" far from it
        raise ValueError(f"{path} holds no latents (shape {list(w.shape)}): nothing to draw from it; toonify or "
                         "project the photos again")
    # first: a float64 1e300 is inf in float32. A copy: torch maps a zip file's tensors (`_torch_load`), which a
    # file saved over them changed under the caller, or crashed Python with a bus error (the review)
    w = w.to(torch.float32, copy=True)
    # read, it was refused only when rendered, without the file's name
    _check_finite_latents(w, " wrote them; project the photo again", f"{path}: ")
    return w


def _projector_latents(data: object, num_ws: int | None, path: os.PathLike) -> torch.Tensor:
    """The latents of rosinality's projector output (image name -> {'latent': ...}), stacked in file order."""
    latents = [_rosinality_latent(name, entry, num_ws, path) for name, entry in _entries(data, path)]
    if len(shapes := sorted({tuple(latent.shape) for latent in latents})) > 1:  # W [1, w_dim] beside W+?
        if len(shapes) == 2 and shapes[0][0] == 1 and shapes[0][1] == shapes[1][1]:
            raise ValueError(f"{path}: it holds W latents and W+ latents of {shapes[1][0]} layers; pass num_ws to "
                             "repeat the W ones to the model's layers")
        raise ValueError(f"{path}: its latents have different shapes ({', '.join(str(list(s)) for s in shapes)}): "
                         "latents of different models")
    return torch.stack(latents)


def _nvidia_pickle(path: os.PathLike) -> bool:
    """Whether a pickle's first 64 KiB name the modules of NVIDIA's network pickles: `dnnlib` (TensorFlow's) or
    `torch_utils.persistence` (PyTorch's)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return b"dnnlib" in head or b"torch_utils.persistence" in head


def _is_npz(path: str | os.PathLike) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.endswith(".npy") for name in zf.namelist())


def _entries(data, path) -> list:
    latents = is_projector_output(data)
    if not latents and (is_rosinality(data) or is_psp(data) or is_native_torch(data)):  # "not a latent file" alone
        raise ValueError(f"{path}: it is a model checkpoint, not a latent file: {GIVE_AS_A_MODEL}")
    from .train.snapshots import is_training_state  # an error's words: the training package only then

    if not latents and is_training_state(data):
        raise ValueError(f"{path}: it is a fine-tuning run's training state, not a latent file: the run's "
                         "network-snapshot-*.safetensors files are its models")
    if not latents:
        raise ValueError(f"{path}: not a latent file (expected an .npz with key 'w', rosinality's projector output: "
                         "image name -> {'latent': tensor, ...}, e4e's latents.pt: a tensor [N, n_styles, w_dim], or "
                         "JoJoGAN's {'latent': tensor})")
    return list(data.items())


def _rosinality_latent(name: str, entry: dict, num_ws: int | None, path) -> torch.Tensor:
    latent = entry["latent"].detach()
    if latent.ndim == 1:  # rosinality's projector without --w_plus, its default: [1, w_dim] as an .npz's W latents
        return latent[None] if num_ws is None else latent.expand(num_ws, -1)
    if latent.ndim != 2:
        raise ValueError(f"{path}: {name!r} latent has shape {list(latent.shape)}, expected [w_dim] or "
                         "[n_latent, w_dim]")
    return latent
