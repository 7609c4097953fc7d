"""StyleGAN2 generator and discriminator (Karras et al. 2020, config F) in plain PyTorch.

The module tree, parameter and buffer names and call conventions are those of NVIDIA's
stylegan2-ada-pytorch, so its state dicts load one to one:

    G = Generator(GeneratorConfig(img_resolution=256))
    ws = G.mapping(z, None, truncation_psi=0.7)        # [N, G.num_ws, G.w_dim]
    img = G.synthesis(ws, noise_mode="const")          # [N, 3, 256, 256], roughly in [-1, 1]

Layers use the equalised learning rate (weights are stored unscaled and multiplied by
1/sqrt(fan_in) at run time). Blocks at the top `num_fp16_res` resolutions compute in float16 on
CUDA; on the CPU everything runs in float32.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import numbers
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from . import convolution, ops, runtime
from .messages import check_count
from .options import MAX_SEEDS

_UNINITIALIZED: contextvars.ContextVar[bool] = contextvars.ContextVar("toonlib_uninitialized", default=False)


@contextlib.contextmanager
def uninitialized() -> Iterator[None]:
    """Within this context networks are built with their random weights (and noise maps) left uninitialised, for a
    caller that loads every one of them right after (`checkpoints.common.build_network`): drawing them took most of
    the time a checkpoint took to load, and it moved the caller's random stream."""
    token = _UNINITIALIZED.set(True)
    try:
        yield
    finally:
        _UNINITIALIZED.reset(token)


def _randn(shape: list[int]) -> torch.Tensor:
    """A new weight's initial values: standard normal, or uninitialised inside `uninitialized()`."""
    return torch.empty(shape) if _UNINITIALIZED.get() else torch.randn(shape)


NOISE_MODES = ("random", "const", "none")


# --------------------------------------------------------------------------------------------
# Configurations


class _NetworkConfig:
    """What the generator's and the discriminator's configs share: the channel table and a dict round trip."""

    _KIND = "network"  # how errors name the config

    def channels(self, res: int) -> int:
        """Feature channels of the layers at resolution `res` (NVIDIA's `min(channel_base // res, channel_max)`)."""
        return min(self.channel_base // res, self.channel_max)

    def to_dict(self) -> dict:
        """The fields as a plain dict (JSON-ready), what checkpoints store."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        """The config of a dict written by `to_dict`; unknown fields are a ValueError naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls._KIND} config field(s) {unknown}; known: {sorted(names)}")
        return cls(**d)


@dataclass
class GeneratorConfig(_NetworkConfig):
    """Everything that defines a generator's architecture (NVIDIA's names and defaults, config F).

    A config is canonical once built, so that two configs of the same network compare equal whichever
    checkpoint format they were read from: `mapping_layer_features` None (or any value with a single
    mapping layer) becomes `w_dim`; `channel_base` / `channel_max` become the smallest values that give
    the same channel count at every resolution of this model (see `canonical_channels`); numbers get one
    type (`conv_clamp`, `mapping_lr_multiplier`, `w_avg_beta` float, `resample_filter` a tuple).
    """

    _KIND = "generator"

    z_dim: int = 512
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_layer_features: int | None = None  # width of the hidden mapping layers; None = w_dim
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float = 0.995
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 0
    conv_clamp: float | None = None
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)
    use_noise: bool = True

    def __post_init__(self) -> None:
        check_resolution(self.img_resolution)
        for name in ("z_dim", "w_dim", "img_channels", "mapping_layers", "channel_base", "channel_max"):
            check_count(name, getattr(self, name))  # z_dim=0 failed with a ZeroDivisionError in a layer
        if self.mapping_layer_features is None or self.mapping_layers == 1:  # no hidden layer: width unused
            self.mapping_layer_features = self.w_dim
        self.channel_base, self.channel_max = canonical_channels(self.channel_base, self.channel_max,
                                                                 self.img_resolution)
        self.mapping_lr_multiplier = float(self.mapping_lr_multiplier)
        self.w_avg_beta = float(self.w_avg_beta)
        self.conv_clamp = None if self.conv_clamp is None else float(self.conv_clamp)
        self.resample_filter = _canonical_filter(self.resample_filter)

    @property
    def num_ws(self) -> int:
        """Number of w vectors the synthesis network consumes (2 per resolution, minus 2)."""
        return 2 * int(math.log2(self.img_resolution)) - 2



@dataclass
class DiscriminatorConfig(_NetworkConfig):
    """Architecture of a residual StyleGAN2 discriminator (NVIDIA's names and defaults)."""

    _KIND = "discriminator"

    img_resolution: int = 1024
    img_channels: int = 3
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 0
    conv_clamp: float | None = None
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)

    def __post_init__(self) -> None:
        """Canonical like `GeneratorConfig`: channel table, number types."""
        check_resolution(self.img_resolution)
        for name in ("img_channels", "channel_base", "channel_max"):
            check_count(name, getattr(self, name))
        self.channel_base, self.channel_max = canonical_channels(self.channel_base, self.channel_max,
                                                                 self.img_resolution)
        self.conv_clamp = None if self.conv_clamp is None else float(self.conv_clamp)
        self.resample_filter = _canonical_filter(self.resample_filter)



def check_resolution(res: int) -> None:
    if not (isinstance(res, int) and 4 <= res <= 1024 and res & (res - 1) == 0):
        raise ValueError(f"img_resolution must be a power of two between 4 and 1024, got {res!r}")


def canonical_channels(channel_base: int, channel_max: int, img_resolution: int) -> tuple[int, int]:
    """The smallest `(channel_base, channel_max)` with the same `min(channel_base // res, channel_max)` at
    every resolution 4..img_resolution: the channel table of a model, expressed one way.

    Valid bases for a table form an interval; its lower end is the largest `res * channels(res)`, and
    `channel_max` is the widest layer, `channels(4)`. (FFHQ's 32768 / 512 at 1024 px stay as they are.)
    """
    resolutions = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
    table = {res: min(int(channel_base) // res, int(channel_max)) for res in resolutions}
    if min(table.values()) < 1:
        raise ValueError(f"channel_base={channel_base}, channel_max={channel_max} give no channels at "
                         f"{min(r for r, c in table.items() if c < 1)} px; raise channel_base (at least "
                         f"{img_resolution} for {img_resolution} px)")
    return max(res * ch for res, ch in table.items()), table[4]


def _canonical_filter(taps) -> tuple:
    """A FIR filter as a tuple, integral taps as ints ([1., 3., 3., 1.] -> (1, 3, 3, 1))."""
    return tuple(int(t) if float(t).is_integer() else float(t) for t in taps)


def _fp16_resolution(img_resolution: int, num_fp16_res: int) -> int:
    return max(2 ** (int(math.log2(img_resolution)) + 1 - num_fp16_res), 8)


def _compute_dtype(use_fp16: bool, force_fp32: bool | None, device: torch.device, full: torch.dtype) -> torch.dtype:
    """float16 for an fp16 block unless force_fp32 (None, the default, means "on CUDA only"), else `full`:
    the parameters' dtype (float32, or float64 for numerical checks); under bfloat16 autocast (a reduced-precision
    projection) bfloat16 instead of float32, which its convolutions cast the activations to anyway (float32's range,
    so nothing can overflow; a float32 block between them cost two conversions of its input and 20-27% of a 1024 px
    bfloat16 projection step on the CPU). float16 autocast keeps float32 blocks (float16 could overflow there)."""
    if (full == torch.float32 and torch.is_autocast_enabled(device.type)
            and torch.get_autocast_dtype(device.type) == torch.bfloat16):
        full = torch.bfloat16
    if not use_fp16 or force_fp32:
        return full
    if force_fp32 is None and device.type != "cuda":
        return full
    return torch.float16


# --------------------------------------------------------------------------------------------
# Layers


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate: y = act(x @ (W * lr_mul / sqrt(in)).T + b * lr_mul)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(_randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype)
        if self.bias is None:
            x = torch.mm(x, w.t()).mul_(self.weight_gain)
        else:  # the gain scales the [N, out] product, not a copy of the weight
            b = self.bias.to(x.dtype)
            b = b * self.bias_gain if self.bias_gain != 1 else b
            x = torch.addmm(b.unsqueeze(0), x, w.t(), alpha=self.weight_gain)
        return ops.bias_act(x, None, activation=self.activation, inplace=True)


class Conv2dLayer(nn.Module):
    """Plain convolution with equalised learning rate, optional 2x FIR downsampling, bias, activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", down: int = 1, resample_filter=(1, 3, 3, 1),
                 conv_clamp: float | None = None):
        super().__init__()
        self.activation = activation
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = ops.ACTIVATION_GAINS[activation]
        self.weight = nn.Parameter(_randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        # act(conv(x, w) + b) * g = act(conv(x, w * g) + b * g) for g > 0: the gain and the bias ride on the
        # convolution, which leaves one pass (activation and clamp) over its output.
        scale = self.act_gain * gain
        w = self.weight * (self.weight_gain * scale)
        b = None if self.bias is None else self.bias * scale
        x = ops.conv2d_resample(x, w, f=self.resample_filter, down=self.down, padding=self.padding, bias=b)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, None, activation=self.activation, gain=1, clamp=clamp, inplace=True)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally upsampling 2x), noise, bias, leaky ReLU, clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 use_noise: bool = True, resample_filter=(1, 3, 3, 1), conv_clamp: float | None = None,
                 kernel_size: int = 3):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.weight = nn.Parameter(_randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", _randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", fused: bool = True,
                gain: float = 1.0) -> torch.Tensor:
        styles = _styles(self.affine, w, fused)
        noise = None
        if self.use_noise and noise_mode == "random":
            shape = [x.shape[0], 1, self.resolution, self.resolution]
            noise = torch.randn(shape, device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                                    resample_filter=self.resample_filter, fused=fused, bias=self.bias,
                                    activation="lrelu", gain=ops.LRELU_GAIN * gain, clamp=clamp)


def _styles(affine: FullyConnectedLayer, w: torch.Tensor, fused: bool) -> torch.Tensor:
    """affine(w); fused modulation takes it row by row, so that every sample's numbers (and a projection's
    result) are the same in a batch as alone: a batched matrix product may sum in another order."""
    if not fused or w.shape[0] == 1:
        return affine(w)
    return torch.cat([affine(row) for row in w.split(1)])


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to RGB, without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(_randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = True) -> torch.Tensor:
        styles = _styles(self.affine, w, fused) * self.weight_gain
        return ops.modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused, bias=self.bias,
                                    clamp=self.conv_clamp)


# --------------------------------------------------------------------------------------------
# Generator


class MappingNetwork(nn.Module):
    """z -> w: second-moment normalisation, then `num_layers` leaky-ReLU dense layers (lr x0.01)."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int = 8, layer_features: int | None = None,
                 lr_multiplier: float = 0.01, w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        hidden = w_dim if layer_features is None else layer_features
        features = [z_dim] + [hidden] * (num_layers - 1) + [w_dim]
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu",
                                        lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, skip_w_avg_update: bool = False) -> torch.Tensor:
        """Map z [N, z_dim] to ws [N, num_ws, w_dim]; `c` must be None (unconditional models only).

        In training mode the running average `w_avg` is updated. Truncation (psi != 1) moves the
        first `truncation_cutoff` ws (all when None) towards `w_avg`: w_avg + psi * (w - w_avg).
        """
        check_truncation(truncation_psi, truncation_cutoff)
        if c is not None and c.numel() > 0:
            raise ValueError("this generator is unconditional: pass c=None")
        _check_tensor("z", z)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        x = ops.normalize_2nd_moment(z.to(self.fc0.weight.dtype))
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if self.training and not skip_w_avg_update:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x = truncate(x, self.w_avg, truncation_psi, truncation_cutoff)
        return x


def check_truncation(psi: object, cutoff: object = None) -> None:
    """ValueError unless `psi` is a finite number and `cutoff` None or a whole number of ws >= 0: a NaN or infinite
    psi drew NaN images without a word, and None, a string or a float cutoff failed inside torch ("lerp() received
    an invalid combination of arguments", "slice indices must be integers") naming neither (fortieth session's
    audit)."""
    if isinstance(psi, bool) or not isinstance(psi, numbers.Real) or not math.isfinite(psi):
        given = repr(psi) if psi is None or isinstance(psi, (numbers.Number, str)) else f"a {type(psi).__name__}"
        raise ValueError(f"truncation_psi must be a finite number (1: no truncation, 0: every face the mean face), "
                         f"got {given}")
    if cutoff is not None:
        check_count("truncation_cutoff", cutoff, minimum=0)


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
    """The truncation trick on ws [N, num_ws, w_dim]: lerp from `w_avg` by `psi` for ws[:, :cutoff]."""
    if cutoff is None:
        return w_avg.lerp(ws, psi)
    return torch.cat([w_avg.lerp(ws[:, :cutoff], psi), ws[:, cutoff:]], dim=1)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (const | conv0 up) -> conv1 -> torgb, image upsampled."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 use_fp16: bool = False, resample_filter=(1, 3, 3, 1), conv_clamp: float | None = None,
                 use_noise: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.use_fp16 = use_fp16
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        layer_kwargs = dict(w_dim=w_dim, resolution=resolution, use_noise=use_noise,
                            resample_filter=resample_filter, conv_clamp=conv_clamp)
        if in_channels == 0:
            self.const = nn.Parameter(_randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, **layer_kwargs)
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer_kwargs)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: str = "const", force_fp32: bool | None = None, fused_modconv: bool | None = None):
        w_iter: Iterator[torch.Tensor] = iter(ws.unbind(dim=1))
        dtype = _compute_dtype(self.use_fp16, force_fp32, ws.device, full=ws.dtype)
        if fused_modconv is None:
            fused_modconv = (not self.training) and (dtype != torch.float16 or ws.shape[0] == 1)
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            x = x.to(dtype)
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused=fused_modconv)
        x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused=fused_modconv)
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused=fused_modconv).to(ws.dtype)
        img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, R, R], one `b{res}` block per resolution."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, conv_clamp: float | None = None,
                 resample_filter=(1, 3, 3, 1), use_noise: bool = True):
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
        fp16_resolution = _fp16_resolution(img_resolution, num_fp16_res)
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim,
                                   resolution=res, img_channels=img_channels, use_fp16=res >= fp16_resolution,
                                   resample_filter=resample_filter, conv_clamp=conv_clamp, use_noise=use_noise)
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last block's ToRGB

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def _ws_advice(self, shape: torch.Size) -> str:
        """How to reshape latents of `shape` for `forward`: one image's W+ latent, or one w per image."""
        if len(shape) != 2 or shape[1] != self.w_dim:
            return ""
        one_w = f"one w per image: repeat it over the layers, ws = w[:, None].repeat(1, {self.num_ws}, 1)"
        if shape[0] == self.num_ws:  # most likely one image's W+ latent, result.w[0]
            return f" (one image's W+ latent: ws[None], or result.w[i:i + 1] of a batch; {one_w})"
        return f" ({one_w})"
    def forward(self, ws: torch.Tensor, noise_mode: str = "const", force_fp32: bool | None = None,
                fused_modconv: bool | None = None) -> torch.Tensor:
        """Render ws [N, num_ws, w_dim]. noise_mode: 'random' (fresh noise), 'const' (stored), 'none'."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        _check_tensor("ws", ws)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim) or not ws.shape[0]:
            raise ValueError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}] with N >= 1, got {list(ws.shape)}"
                             + self._ws_advice(ws.shape))
        ws = ws.to(self.b4.const.dtype)
        # In eval mode (inference: one kernel per sample) channels-last where that pays, unless the caller chose the
        # layout (`convolution.channels_last()`, as projection does); the image comes back NCHW. A forward 10-20%
        # faster.
        chosen = convolution.channels_last_active()
        own_layout = not self.training and not chosen and convolution.channels_last_pays(
            ws.device, winograd=convolution.in_winograd())
        x = img = None
        w_idx = 0
        with convolution.channels_last(own_layout or chosen):
            for block in self.blocks():
                block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
                x, img = block(x, img, block_ws, noise_mode=noise_mode, force_fp32=force_fp32,
                               fused_modconv=fused_modconv)
                w_idx += block.num_conv
        return img.contiguous() if own_layout else img


class Generator(nn.Module):
    """StyleGAN2 generator: `G(z, c)` = `G.synthesis(G.mapping(z, c))`.

    Build it from a `GeneratorConfig` or from its fields as keyword arguments:
    `Generator(img_resolution=256)` is FFHQ's config F at 256 px. The first network built tunes glibc's malloc for
    the process (`toonlib.runtime.tune_allocator`; TOONLIB_MALLOC=default keeps glibc's own behaviour).
    """

    _origin: tuple[str | None, dict | None, torch.Tensor] | None = None  # `set_origin`'s

    def __init__(self, config: GeneratorConfig | None = None, **fields):
        super().__init__()
        runtime.tune_allocator()  # keep large freed blocks for reuse (toonlib.runtime; opt-out there)
        if config is None:
            config = GeneratorConfig(**fields)
        elif not isinstance(config, GeneratorConfig):  # a dict failed on "no attribute 'z_dim'"
            raise TypeError(f"Generator takes a GeneratorConfig or its fields as keywords (Generator(**fields) for a "
                            f"dict), got {type(config).__name__}")
        elif fields:
            config = dataclasses.replace(config, **fields)
        self.config = config
        self.z_dim = config.z_dim
        self.c_dim = 0
        self.w_dim = config.w_dim
        self.img_resolution = config.img_resolution
        self.img_channels = config.img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=config.w_dim, img_resolution=config.img_resolution, img_channels=config.img_channels,
            channel_base=config.channel_base, channel_max=config.channel_max, num_fp16_res=config.num_fp16_res,
            conv_clamp=config.conv_clamp, resample_filter=config.resample_filter, use_noise=config.use_noise)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=config.z_dim, w_dim=config.w_dim, num_ws=self.num_ws, num_layers=config.mapping_layers,
            layer_features=config.mapping_layer_features, lr_multiplier=config.mapping_lr_multiplier,
            w_avg_beta=config.w_avg_beta)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, noise_mode: str = "const", **synthesis_kwargs) -> torch.Tensor:
        """Images [N, img_channels, H, W] in about [-1, 1] of latents z [N, z_dim]: `synthesis(mapping(z, c))`."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, **synthesis_kwargs)

    @property
    def device(self) -> torch.device:
        """Where the generator's weights are."""
        return self.mapping.w_avg.device

    def set_origin(self, loaded_from: str | None = None, blend_record: dict | None = None) -> None:
        """Note where the current weights came from (`load_network`, `blending.Blender.set`); `loaded_from` and
        `blend_record` say it while the weights stay as they are now, and None once any is changed."""
        self._origin = None if loaded_from is blend_record is None else (loaded_from, blend_record,
                                                                         self._fingerprint())

    @property
    def loaded_from(self) -> str | None:
        """The checkpoint `load_network` read these weights from, as the caller named it (registry name, path or URL;
        "(G)" or "(G_ema)" after the name of a file that holds both); None when they were made or changed since."""
        return self._current_origin()[0]

    @property
    def blend_record(self) -> dict | None:
        """How `blending.blend` / `Blender.set` made these weights (`blending.blend_record`), which `save_network`
        keeps in the file; None when they were made otherwise or changed since."""
        return self._current_origin()[1]

    def _current_origin(self) -> tuple[str | None, dict | None]:
        if self._origin is None:
            return None, None
        loaded_from, record, fingerprint = self._origin
        now = self._fingerprint()
        same = now.shape == fingerprint.shape and torch.allclose(now, fingerprint, rtol=1e-12, atol=1e-12,
                                                                 equal_nan=True)  # a NaN weight is unchanged too
        return (loaded_from, record) if same else (None, None)

    def _fingerprint(self) -> torch.Tensor:
        """Each weight's and buffer's sum in float64, on the CPU: any change of a weight (a training step, an edit, a
        re-blend) changes them; a move to another device does not (the tolerance of `_current_origin`)."""
        with torch.no_grad():  # float64 where the device has it (not MPS): on the CPU otherwise
            return torch.stack([(t if t.device.type in ("cpu", "cuda") else t.cpu()).sum(dtype=torch.float64).cpu()
                                for t in self.state_dict().values()])

    def extra_repr(self) -> str:
        """The shapes users call it with, atop `repr(G)`'s module tree."""
        return (f"img_resolution={self.img_resolution}, z_dim={self.z_dim}, w_dim={self.w_dim}, "
                f"num_ws={self.num_ws}")


# --------------------------------------------------------------------------------------------
# Discriminator


class DiscriminatorBlock(nn.Module):
    """One resolution of the residual discriminator: [fromrgb] -> conv0 -> conv1 (down), + skip (down)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 use_fp16: bool = False, resample_filter=(1, 3, 3, 1), conv_clamp: float | None = None):
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.use_fp16 = use_fp16
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        conv_kwargs = dict(resample_filter=resample_filter)
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation="lrelu",
                                       conv_clamp=conv_clamp, **conv_kwargs)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation="lrelu",
                                 conv_clamp=conv_clamp, **conv_kwargs)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation="lrelu", down=2,
                                 conv_clamp=conv_clamp, **conv_kwargs)
        self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2, **conv_kwargs)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor, force_fp32: bool | None = None) -> torch.Tensor:
        dtype = _compute_dtype(self.use_fp16, force_fp32, img.device, full=self.conv0.weight.dtype)
        if self.in_channels == 0:
            x = self.fromrgb(img.to(dtype))
        else:
            x = x.to(dtype)
        y = self.skip(x, gain=np.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=np.sqrt(0.5))
        return y + x


class MinibatchStdLayer(nn.Module):
    """Appends the standard deviation over strided groups of `group_size` samples as extra channels."""

    def __init__(self, group_size: int | None, num_channels: int = 1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.minibatch_stddev(x, self.group_size, self.num_channels)


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch stddev -> conv -> fc -> out (one logit per image)."""

    def __init__(self, in_channels: int, resolution: int, mbstd_group_size: int | None = 4,
                 mbstd_num_channels: int = 1, conv_clamp: float | None = None, resample_filter=(1, 3, 3, 1),
                 img_channels: int | None = None):
        super().__init__()
        if img_channels is not None:  # a 4x4 discriminator has no blocks: read the image here
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation="lrelu",
                                       conv_clamp=conv_clamp, resample_filter=resample_filter)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation="lrelu",
                                conv_clamp=conv_clamp, resample_filter=resample_filter)
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
        dtype = self.conv.weight.dtype
        x = self.fromrgb(img.to(dtype)) if x is None else x.to(dtype)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        return self.out(x)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: `D(img, c)` -> logits [N, 1]."""

    def __init__(self, config: DiscriminatorConfig | None = None, **fields):
        super().__init__()
        runtime.tune_allocator()
        if config is None:
            config = DiscriminatorConfig(**fields)
        elif not isinstance(config, DiscriminatorConfig):
            raise TypeError(f"Discriminator takes a DiscriminatorConfig or its fields as keywords (Discriminator"
                            f"(**fields) for a dict), got {type(config).__name__}")
        elif fields:
            config = dataclasses.replace(config, **fields)
        self.config = config
        self.c_dim = 0
        self.img_resolution = config.img_resolution
        self.img_channels = config.img_channels
        log2 = int(math.log2(config.img_resolution))
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        fp16_resolution = _fp16_resolution(config.img_resolution, config.num_fp16_res)
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                in_channels=config.channels(res) if res < config.img_resolution else 0,
                tmp_channels=config.channels(res), out_channels=config.channels(res // 2), resolution=res,
                img_channels=config.img_channels, use_fp16=res >= fp16_resolution,
                resample_filter=config.resample_filter, conv_clamp=config.conv_clamp)
            setattr(self, f"b{res}", block)
        self.b4 = DiscriminatorEpilogue(config.channels(4), resolution=4, mbstd_group_size=config.mbstd_group_size,
                                        mbstd_num_channels=config.mbstd_num_channels, conv_clamp=config.conv_clamp,
                                        resample_filter=config.resample_filter,
                                        img_channels=config.img_channels if config.img_resolution == 4 else None)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None, force_fp32: bool | None = None) -> torch.Tensor:
        """Logits [N, 1] (real: high) of images [N, img_channels, H, W] in [-1, 1]."""
        if c is not None and c.numel() > 0:
            raise ValueError("this discriminator is unconditional: pass c=None")
        _check_tensor("img", img)
        size = (self.img_channels, self.img_resolution, self.img_resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != size:  # it failed at its last layer ("mat1 and mat2 shapes ...")
            raise ValueError(f"this discriminator judges images [N, {', '.join(map(str, size))}], got "
                             f"{list(img.shape)}")
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img, force_fp32=force_fp32)
        return self.b4(x, img)

    def extra_repr(self) -> str:
        """The image size it judges, atop `repr(D)`'s module tree."""
        return f"img_resolution={self.img_resolution}, img_channels={self.img_channels}"


def _check_tensor(name: str, value: object) -> None:
    """TypeError unless `value` is a torch tensor: a NumPy array failed inside ("'numpy.ndarray' object has no
    attribute 'to'")."""
    if not isinstance(value, torch.Tensor):
        advice = f": torch.from_numpy({name}).float()" if isinstance(value, np.ndarray) else ""
        raise TypeError(f"{name} is a torch tensor, got {type(value).__name__}{advice}")


def check_seeds(seeds: Iterable[int]) -> list[int]:
    """`seeds` as a list, refused where it is no list of seeds: one seed alone or a '0-3' text (TypeError, saying what
    to pass: it failed with "'int' object is not iterable"), none, or a seed that is no whole number from 0 to
    2**32 - 1 (ValueError: a float was cut to a whole number without a word, and `BlendExplorer` drew nothing)."""
    alone = isinstance(seeds, (torch.Tensor, np.ndarray)) and seeds.ndim == 0  # one seed as a 0-d tensor or array
    if isinstance(seeds, (int, np.integer, str, bytes)) or alone or not isinstance(seeds, Iterable):
        example = f"[{seeds}]" if isinstance(seeds, (int, np.integer)) else f"[{seeds.item()}]" if alone else "[0, 5]"
        parse = ": for a text such as '0-3', toonlib.networks.parse_seeds(text)" if isinstance(seeds, str) else ""
        raise TypeError(f"seeds is a list of whole numbers, such as {example} or range(4), got "
                        f"{type(seeds).__name__} {seeds!r}{parse}")
    if isinstance(seeds, torch.Tensor) and seeds.is_floating_point():  # a latent given where seeds go
        raise TypeError(f"seeds is a list of whole numbers, such as [0, 5], got a float tensor of shape "
                        f"{list(seeds.shape)}: a latent is no seed (render it with toonlib.render(G, w))")
    seeds = [int(seed) if isinstance(seed, torch.Tensor) and seed.numel() == 1 and seed.dtype != torch.bool
             and not seed.is_floating_point() else seed for seed in seeds]
    if not seeds:
        raise ValueError("seeds is empty: give at least one seed, such as [0]")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < _SEED_LIMIT:
            raise ValueError(f"seeds are whole numbers from 0 to {_SEED_LIMIT - 1}, one face each, such as [0, 5] "
                             f"or range(4); got {seed!r}")
    return [int(seed) for seed in seeds]


def z_from_seeds(seeds: Sequence[int], z_dim: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Latents for integer seeds (`check_seeds`), NVIDIA's generate.py convention: RandomState(seed).randn(z_dim)."""
    z = np.stack([np.random.RandomState(int(seed)).randn(z_dim) for seed in check_seeds(seeds)])
    return torch.from_numpy(z).to(device=device, dtype=torch.float32)


#: Seeds are NumPy `RandomState` seeds (`z_from_seeds`): 0 to 2**32 - 1.
_SEED_LIMIT = 2**32


def parse_seeds(text: str, max_count: int = MAX_SEEDS, parameter: str | None = None) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7] (the seed syntax of the CLI and the notebooks); more than `max_count` seeds, or a
    seed outside 0 to 2**32 - 1, is refused (ValueError) before any list is built. The error begins "bad seed list
    '...'", or names the notebook's `parameter` that held the list (`seeds = 'abc': ...`)."""
    bad = f"bad seed list {text!r}" if parameter is None else f"{parameter} = {text!r}"
    ranges: list[tuple[int, int]] = []
    # spaces part seeds as commas do ('1 2' was seed 12), except around a range's dash ('0 - 3')
    for part in re.split(r"[\s,]+", re.sub(r"\s*-\s*", "-", str(text).strip())):
        if not part:
            continue
        start, sep, end = part.partition("-")
        try:
            first, last = int(start), int(end) if sep else int(start)
        except ValueError:
            raise ValueError(f"{bad}: use numbers and ranges such as '0-3,7'") from None
        if last < first:
            raise ValueError(f"{bad}: the range {part} runs backwards; write {last}-{first}")
        if last >= _SEED_LIMIT:
            raise ValueError(f"{bad}: seeds go from 0 to {_SEED_LIMIT - 1}, got {last}")
        ranges.append((first, last))
    count = sum(last - first + 1 for first, last in ranges)
    if not count:
        raise ValueError(f"{bad}: no seeds")
    if count > max_count:
        raise ValueError(f"{bad}: {count} seeds, more than the {max_count} taken here; give fewer, "
                         "such as 0-5")
    return [seed for first, last in ranges for seed in range(first, last + 1)]
