"""Adaptive discriminator augmentation (ADA; Karras et al. 2020, "Training Generative Adversarial Networks
with Limited Data"), written from the paper's description (Section 2 and Appendix B).

Every image the discriminator sees, real or fake, goes through the same differentiable `AugmentPipe`;
`AdaptiveP` tunes its probability `p` so that D does not overfit. The "bgc" set, in the paper's order:

* geometric: x-flip, 90-degree rotations, integer translation, isotropic scaling, arbitrary rotation,
  anisotropic scaling, arbitrary rotation again, fractional translation;
* color: brightness, contrast, luma flip, hue rotation, saturation.

Each transform is applied to each sample independently with probability `p * multiplier` (the two
arbitrary rotations with `1 - sqrt(1 - p * multiplier)` each, so that at least one happens with that
probability); an applied transform draws its parameter from the paper's distribution, which for x-flip,
90-degree rotation and luma flip includes the identity (e.g. x-flip mirrors with probability p / 2).

The geometric transforms compose into one 3x3 matrix per sample that is applied once, with bilinear
`grid_sample` and reflection padding. This is simpler than the paper, which pads, upsamples 2x with a
wavelet filter, warps and downsamples: fractional transforms come out slightly blurrier, which D sees
for reals and fakes alike. The color transforms compose into one 4x4 matrix per sample applied to RGB
in [-1, 1]; the luma axis is (1, 1, 1) / sqrt(3) and contrast scales about 0 (mid-grey), as in the paper.
Samples that no transform changed come out bit for bit unchanged.

Own implementation rather than kornia: kornia has no luma flip and would add a dependency for what is a
few matrices plus `affine_grid` / `grid_sample`; owning the sampling also makes the parameters inspectable.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
TRANSFORMS = GEOMETRIC + COLOR

# Paper parameters (Appendix B). Log-normal factors are drawn as 2 ** N(0, std^2), i.e. std in log2 units.
XINT_MAX = 0.125  # integer translation: uniform in [-XINT_MAX, XINT_MAX] of the image size
SCALE_STD = 0.2  # log2
ANISO_STD = 0.2  # log2
XFRAC_STD = 0.125  # fractional translation, in units of the image size
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5  # log2
SATURATION_STD = 1.0  # log2

_LUMA_OUTER = torch.full((3, 3), 1 / 3)  # v v^T for the unit luma axis v = (1, 1, 1) / sqrt(3)


@dataclass
class AugmentParams:
    """Per-sample parameters of one draw, in the order they apply. A field is None when its transform is
    disabled; samples an enabled transform was not applied to hold its identity value (0, or 1 for factors).

    Geometric parameters live in pixel units, x to the right and y down; rotations are counterclockwise as
    displayed, so `rotate90 = k` matches `torch.rot90(image, k, dims=(-2, -1))`.
    """

    xflip: Tensor | None = None  # [N] 0 or 1: mirror left-right
    rotate90: Tensor | None = None  # [N] int64 k in 0..3: rotate by k * 90 degrees
    xint: Tensor | None = None  # [N, 2] whole-pixel translation (x, y); positive moves content right / down
    scale: Tensor | None = None  # [N] isotropic zoom factor
    rotate_pre: Tensor | None = None  # [N] angle, radians
    aniso: Tensor | None = None  # [N] x zoom factor; y gets its inverse
    rotate_post: Tensor | None = None  # [N] angle, radians
    xfrac: Tensor | None = None  # [N, 2] translation (x, y) in pixels
    brightness: Tensor | None = None  # [N] added to every channel
    contrast: Tensor | None = None  # [N] multiplies every channel
    lumaflip: Tensor | None = None  # [N] 0 or 1: negate the luma component
    hue: Tensor | None = None  # [N] rotation about the luma axis, radians
    saturation: Tensor | None = None  # [N] factor on the chroma (the component orthogonal to luma)


def _homogeneous(linear: Tensor, offset: Tensor | None = None) -> Tensor:
    """[N, k, k] linear part and [N, k] offset -> [N, k + 1, k + 1] homogeneous matrices."""
    n, k = linear.shape[:2]
    out = torch.zeros(n, k + 1, k + 1, dtype=linear.dtype, device=linear.device)
    out[:, :k, :k] = linear
    if offset is not None:
        out[:, :k, k] = offset
    out[:, k, k] = 1
    return out


def _scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    return _homogeneous(torch.diag_embed(torch.stack([sx, sy], dim=-1)))


def _rotate2d(cos: Tensor, sin: Tensor) -> Tensor:
    """Counterclockwise as displayed (the y axis points down)."""
    return _homogeneous(torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2))


def _translate2d(t: Tensor) -> Tensor:
    return _homogeneous(torch.eye(2, dtype=t.dtype, device=t.device).expand(len(t), 2, 2), t)


def _rotate90(k: Tensor) -> Tensor:
    """Exact matrices (no cos(pi / 2) rounding) for k * 90 degrees."""
    k = k % 4
    cos = torch.tensor([1.0, 0.0, -1.0, 0.0], device=k.device)[k]
    sin = torch.tensor([0.0, 1.0, 0.0, -1.0], device=k.device)[k]
    return _rotate2d(cos, sin)


def geometric_matrix(params: AugmentParams) -> Tensor | None:
    """The composed inverse transform (output pixel -> input pixel, about the image centre) as [N, 3, 3];
    None when no geometric transform is enabled."""
    inverses = []  # forward is T_n ... T_1, so the inverse is T_1^-1 ... T_n^-1
    if params.xflip is not None:
        inverses.append(_scale2d(1 - 2 * params.xflip, torch.ones_like(params.xflip)))
    if params.rotate90 is not None:
        inverses.append(_rotate90(-params.rotate90))
    if params.xint is not None:
        inverses.append(_translate2d(-params.xint))
    if params.scale is not None:
        inverses.append(_scale2d(1 / params.scale, 1 / params.scale))
    if params.rotate_pre is not None:
        inverses.append(_rotate2d(params.rotate_pre.cos(), -params.rotate_pre.sin()))
    if params.aniso is not None:
        inverses.append(_scale2d(1 / params.aniso, params.aniso))
    if params.rotate_post is not None:
        inverses.append(_rotate2d(params.rotate_post.cos(), -params.rotate_post.sin()))
    if params.xfrac is not None:
        inverses.append(_translate2d(-params.xfrac))
    return functools.reduce(torch.matmul, inverses) if inverses else None


def color_matrix(params: AugmentParams) -> Tensor | None:
    """The composed color transform of homogeneous RGB as [N, 4, 4]; None when no color transform is enabled."""
    transforms = []  # in application order
    if params.brightness is not None:
        b = params.brightness
        transforms.append(_homogeneous(torch.eye(3, device=b.device).expand(len(b), 3, 3), b[:, None].expand(-1, 3)))
    if params.contrast is not None:
        transforms.append(_homogeneous(params.contrast[:, None, None] * torch.eye(3, device=params.contrast.device)))
    if params.lumaflip is not None:
        vv = _LUMA_OUTER.to(params.lumaflip.device)
        transforms.append(_homogeneous(torch.eye(3, device=vv.device) - 2 * params.lumaflip[:, None, None] * vv))
    if params.hue is not None:
        theta = params.hue[:, None, None]
        vv = _LUMA_OUTER.to(theta.device)
        a = 3**-0.5
        cross = torch.tensor([[0, -a, a], [a, 0, -a], [-a, a, 0]], device=theta.device)  # [v]_x
        eye = torch.eye(3, device=theta.device)
        transforms.append(_homogeneous(theta.cos() * eye + theta.sin() * cross + (1 - theta.cos()) * vv))  # Rodrigues
    if params.saturation is not None:
        vv = _LUMA_OUTER.to(params.saturation.device)
        eye = torch.eye(3, device=vv.device)
        transforms.append(_homogeneous(vv + (eye - vv) * params.saturation[:, None, None]))
    return functools.reduce(lambda acc, t: t @ acc, transforms) if transforms else None


def _is_identity(matrices: Tensor) -> Tensor:
    """[N, k, k] -> [N, 1, 1, 1] bool, exact comparison with the identity."""
    eye = torch.eye(matrices.shape[-1], dtype=matrices.dtype, device=matrices.device)
    return (matrices == eye).flatten(1).all(1)[:, None, None, None]


# grid_sample's modes, as aten's grid_sampler_2d takes them: bilinear, reflection padding.
_BILINEAR, _REFLECTION = 0, 2


class _WarpImages(torch.autograd.Function):
    """`F.grid_sample(images, grid, 'bilinear', 'reflection', align_corners=False)` whose gradient with respect to
    `images` can itself be differentiated: R1 differentiates the discriminator's gradient with respect to the real
    images through the augmentation, and torch 2.5 and 2.6 have no derivative for `grid_sampler_2d_backward`
    ("derivative for aten::grid_sampler_2d_backward is not implemented"). `grid` takes no gradient (ADA's
    transforms are drawn, not learnt)."""

    @staticmethod
    def forward(ctx, images: Tensor, grid: Tensor) -> Tensor:
        ctx.save_for_backward(images, grid)
        return torch.grid_sampler_2d(images, grid, _BILINEAR, _REFLECTION, False)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:
        images, grid = ctx.saved_tensors
        return _WarpGradient.apply(grad_output, images, grid), None


class _WarpGradient(torch.autograd.Function):
    """The gradient of `_WarpImages` with respect to its images. It is linear in `grad_output` and does not depend
    on the images' values (the sampling weights come from the grid alone), so its own gradient is the warp applied
    to the incoming gradient, and none with respect to the images."""

    @staticmethod
    def forward(ctx, grad_output: Tensor, images: Tensor, grid: Tensor) -> Tensor:
        ctx.save_for_backward(grid)
        grad_images, _ = torch.ops.aten.grid_sampler_2d_backward(
            grad_output, images, grid, _BILINEAR, _REFLECTION, False, [True, False])
        return grad_images

    @staticmethod
    def backward(ctx, grad_grad: Tensor) -> tuple[Tensor, None, None]:
        (grid,) = ctx.saved_tensors
        return _WarpImages.apply(grad_grad, grid), None, None


def augment(images: Tensor, params: AugmentParams) -> Tensor:
    """Apply the given per-sample parameters to images [N, C, H, W] (C = 3 when a color transform is enabled);
    differentiable with respect to `images`. A pure function: the randomness is all in `params`."""
    n, c, h, w = images.shape
    out = images
    geometric = geometric_matrix(params)
    if geometric is not None:
        geometric = geometric.to(images.device, torch.float32)
        # Pixel units about the centre <-> affine_grid's [-1, 1] coordinates (align_corners=False).
        to_unit = torch.diag(torch.tensor([2 / w, 2 / h, 1.0], device=images.device))
        to_pixel = torch.diag(torch.tensor([w / 2, h / 2, 1.0], device=images.device))
        theta = (to_unit @ geometric @ to_pixel)[:, :2].to(images.dtype)
        grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
        warped = _WarpImages.apply(images, grid)
        out = torch.where(_is_identity(geometric), images, warped)
    color = color_matrix(params)
    if color is not None:
        if c != 3:
            raise ValueError(f"color augmentations need RGB images, got {c} channels")
        color = color.to(images.device, torch.float32)
        mixed = torch.einsum("nij,njhw->nihw", color[:, :3, :3].to(out.dtype), out)
        colored = mixed + color[:, :3, 3, None, None].to(out.dtype)
        out = torch.where(_is_identity(color), out, colored)
    return out


class AugmentPipe(torch.nn.Module):
    """ADA's augmentation pipeline: `pipe(images)` augments a batch [N, C, H, W] of images in [-1, 1].

    `p` is a 0-d buffer (saved in state dicts); the trainer sets it, e.g. `pipe.p.fill_(ada.p)`. Each keyword
    multiplies `p` for one transform (0 disables it). p = 0 returns the input itself (this check reads `p`
    back from the device once per call).

    Randomness comes from the global RNG of the images' device, or from `generator` (on that device) when
    given; under DDP seed each rank differently so that ranks augment differently. For tests and inspection,
    `sample_params` draws the per-sample parameters and the module-level `augment` applies them:
    `pipe(x, g)` equals `augment(x, pipe.sample_params(N, H, W, x.device, g))` for the same generator state.
    """

    p: Tensor

    def __init__(
        self,
        p: float = 0.0,
        xflip: float = 1,
        rotate90: float = 1,
        xint: float = 1,
        scale: float = 1,
        rotate: float = 1,
        aniso: float = 1,
        xfrac: float = 1,
        brightness: float = 1,
        contrast: float = 1,
        lumaflip: float = 1,
        hue: float = 1,
        saturation: float = 1,
    ) -> None:
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)))
        strengths = (xflip, rotate90, xint, scale, rotate, aniso, xfrac,
                     brightness, contrast, lumaflip, hue, saturation)
        self.multipliers: dict[str, float] = {name: float(m) for name, m in zip(TRANSFORMS, strengths)}

    @classmethod
    def bgc(cls, p: float = 0.0) -> AugmentPipe:
        """The paper's recommended "bgc" set: blitting, geometric and color transforms, all at multiplier 1."""
        return cls(p=p)

    def extra_repr(self) -> str:
        enabled = ", ".join(f"{name}={m:g}" for name, m in self.multipliers.items() if m)
        return f"p={float(self.p):g}, {enabled}"

    def sample_params(
        self,
        batch_size: int,
        height: int,
        width: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> AugmentParams:
        """Draw per-sample parameters for a batch of `height` x `width` images (on the buffer's device by default)."""
        device = self.p.device if device is None else torch.device(device)
        n = batch_size
        p = self.p.to(device)
        size = torch.tensor([width, height], dtype=torch.float32, device=device)

        def rand(*shape: int) -> Tensor:
            return torch.rand(n, *shape, device=device, generator=generator)

        def randn(*shape: int) -> Tensor:
            return torch.randn(n, *shape, device=device, generator=generator)

        def randint(high: int) -> Tensor:
            return torch.randint(0, high, (n,), device=device, generator=generator)

        def pick(prob: Tensor, value: Tensor, identity: float) -> Tensor:
            """`value` where a per-sample coin with probability `prob` comes up, else the identity."""
            mask = (rand() < prob).view(n, *[1] * (value.ndim - 1))
            return torch.where(mask, value, torch.full_like(value, identity))

        m = self.multipliers
        prob = {name: (p * m[name]).clamp(0, 1) for name in TRANSFORMS}
        prob["rotate"] = 1 - (1 - prob["rotate"]).sqrt()
        out = AugmentParams()
        if m["xflip"]:
            out.xflip = pick(prob["xflip"], randint(2).float(), 0)
        if m["rotate90"]:
            out.rotate90 = pick(prob["rotate90"], randint(4), 0)
        if m["xint"]:
            out.xint = pick(prob["xint"], ((rand(2) * 2 - 1) * XINT_MAX * size).round(), 0)
        if m["scale"]:
            out.scale = pick(prob["scale"], torch.exp2(randn() * SCALE_STD), 1)
        if m["rotate"]:
            out.rotate_pre = pick(prob["rotate"], (rand() * 2 - 1) * math.pi, 0)
        if m["aniso"]:
            out.aniso = pick(prob["aniso"], torch.exp2(randn() * ANISO_STD), 1)
        if m["rotate"]:
            out.rotate_post = pick(prob["rotate"], (rand() * 2 - 1) * math.pi, 0)
        if m["xfrac"]:
            out.xfrac = pick(prob["xfrac"], randn(2) * XFRAC_STD * size, 0)
        if m["brightness"]:
            out.brightness = pick(prob["brightness"], randn() * BRIGHTNESS_STD, 0)
        if m["contrast"]:
            out.contrast = pick(prob["contrast"], torch.exp2(randn() * CONTRAST_STD), 1)
        if m["lumaflip"]:
            out.lumaflip = pick(prob["lumaflip"], randint(2).float(), 0)
        if m["hue"]:
            out.hue = pick(prob["hue"], (rand() * 2 - 1) * math.pi, 0)
        if m["saturation"]:
            out.saturation = pick(prob["saturation"], torch.exp2(randn() * SATURATION_STD), 1)
        return out

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if float(self.p) == 0:
            return images
        n, _, h, w = images.shape
        return augment(images, self.sample_params(n, h, w, images.device, generator))


class AdaptiveP:
    """ADA's controller for the augmentation probability p.

    `update(real_logits)` after each discriminator step on reals accumulates the sum of sign(D(real)) and the
    number of logits (one per image). Every `interval` calls it computes the overfitting heuristic
    r_t = E[sign(D(real))] and moves p by sign(r_t - target) * images / (ada_kimg * 1000), where `images` is
    the number of logits accumulated (batch size * interval), so p can go from 0 to 1 in `ada_kimg` thousand
    images; p stays in [0, 1]. With `target=None`, p is fixed and r_t is still computed (for logging).

    DDP: the accumulator `accum` is a tensor [sum of signs, count] on the logits' device. Pass
    `all_reduce=torch.distributed.all_reduce` (an in-place sum) and call `update` on every rank at every step:
    the sums are reduced across ranks before r_t is computed, so every rank moves p identically.
    """

    def __init__(
        self,
        p: float = 0.0,
        target: float | None = 0.6,
        interval: int = 4,
        ada_kimg: float = 500,
        all_reduce: Callable[[Tensor], object] | None = None,
    ) -> None:
        self.target = target
        self.interval = interval
        self.ada_kimg = ada_kimg
        self.all_reduce = all_reduce
        self._p = float(p)
        self._rt: float | None = None
        self.accum = torch.zeros(2)
        self.num_batches = 0

    @property
    def p(self) -> float:
        return self._p

    @property
    def rt(self) -> float | None:
        """r_t of the last completed interval (None before the first)."""
        return self._rt

    def update(self, real_logits: Tensor) -> None:
        """Accumulate one minibatch of D's logits on reals; adjust p when `interval` minibatches are in."""
        logits = real_logits.detach().float()
        count = torch.tensor(float(logits.numel()), device=logits.device)
        self.accum = self.accum.to(logits.device) + torch.stack([logits.sign().sum(), count])
        self.num_batches += 1
        if self.num_batches < self.interval:
            return
        if self.all_reduce is not None:
            self.all_reduce(self.accum)
        sign_sum, count_sum = self.accum.tolist()
        self._rt = sign_sum / count_sum
        if self.target is not None:
            direction = (self._rt > self.target) - (self._rt < self.target)
            self._p = min(max(self._p + direction * count_sum / (self.ada_kimg * 1000), 0.0), 1.0)
        self.accum = torch.zeros_like(self.accum)
        self.num_batches = 0

    def state_dict(self) -> dict[str, object]:
        return {"p": self._p, "rt": self._rt, "accum": self.accum.detach().cpu().clone(),
                "num_batches": self.num_batches}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self._p = float(state["p"])
        self._rt = None if state["rt"] is None else float(state["rt"])
        self.accum = torch.as_tensor(state["accum"], dtype=torch.float32).clone()
        self.num_batches = int(state["num_batches"])
