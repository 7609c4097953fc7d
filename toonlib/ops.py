"""Pure-PyTorch primitives of StyleGAN2: FIR resampling, bias + activation, modulated convolution.

Nothing here is compiled: every op is a composition of standard PyTorch calls, so the same code
runs on CPU and CUDA, in float32 and float16, and is differentiable. The semantics follow the
reference (non-CUDA) ops of NVIDIA's stylegan2-ada-pytorch, so networks built on them compute the
same functions as the published checkpoints.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

Padding = tuple[int, int, int, int]  # (x0, x1, y0, y1), like NVIDIA's upfirdn2d

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2)
ACTIVATION_GAINS = {"linear": 1.0, "lrelu": LRELU_GAIN}


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """Separable FIR taps -> normalised 2-D filter (outer product, sum 1), float32."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 1:
        f = f[:, None] * f[None, :]
    return f / f.sum()


def _depthwise_fir(x: torch.Tensor, f: torch.Tensor, gain: float, pad: Padding, stride: int = 1) -> torch.Tensor:
    """Pad (or crop) by `pad`, then convolve every channel with the same 2-D filter (a true
    convolution: the filter is flipped). Symmetric padding is left to conv2d, which saves a copy."""
    channels = x.shape[1]
    kernel = (f * gain).flip([0, 1]).to(x.dtype)
    kernel = kernel[None, None].repeat(channels, 1, 1, 1)
    x0, x1, y0, y1 = pad
    if x0 == x1 >= 0 and y0 == y1 >= 0:
        return F.conv2d(x, kernel, stride=stride, padding=(y0, x0), groups=channels)
    x = F.pad(x, [x0, x1, y0, y1])  # negative amounts crop, as in the reference
    return F.conv2d(x, kernel, stride=stride, groups=channels)


def upfirdn2d(
    x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1, pad: Padding = (0, 0, 0, 0), gain: float = 1.0
) -> torch.Tensor:
    """Upsample by zero insertion, pad (or crop), apply the FIR filter, keep every `down`-th pixel.

    `f` is a normalised 2-D filter from `setup_filter`; `gain` scales its taps (the caller passes
    up**2 when upsampling so that the image keeps its brightness).
    """
    if up > 1:
        n, c, h, w = x.shape
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    return _depthwise_fir(x, f, gain, pad, stride=down)


def upsample2d(x: torch.Tensor, f: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """2x FIR upsampling that preserves brightness (NVIDIA's `upsample2d`)."""
    taps = f.shape[-1]
    pad = ((taps + factor - 1) // 2, (taps - factor) // 2)
    return upfirdn2d(x, f, up=factor, pad=(pad[0], pad[1], pad[0], pad[1]), gain=factor**2)


def downsample2d(x: torch.Tensor, f: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """2x FIR downsampling (NVIDIA's `downsample2d`)."""
    taps = f.shape[-1]
    pad = ((taps - factor + 1) // 2, (taps - factor) // 2)
    return upfirdn2d(x, f, down=factor, pad=(pad[0], pad[1], pad[0], pad[1]))


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """Add a per-channel bias (dim 1), apply the activation, scale by `gain`, clamp to +-`clamp`.

    `gain` defaults to the activation's own gain (sqrt(2) for leaky ReLU, 1 for linear).
    `inplace=True` overwrites `x` when no gradient is recorded for it (inference), which saves memory
    traffic; pass it only for a tensor nothing else uses (a layer's fresh convolution output). With
    gradients the out-of-place ops run (measured as fast as in-place under autograd, and simpler).
    """
    if activation not in ACTIVATION_GAINS:
        raise ValueError(f"unknown activation {activation!r}; expected 'linear' or 'lrelu'")
    if gain is None:
        gain = ACTIVATION_GAINS[activation]
    if not inplace or x.requires_grad:
        return _bias_act_out_of_place(x, bias, activation, gain, clamp)
    if bias is not None:
        x.add_(_per_channel(bias, x))
    if gain != 1:
        x.mul_(gain)  # before the (positively homogeneous) leaky ReLU: same result, one pass
    if activation == "lrelu":
        x = F.leaky_relu_(x, LRELU_SLOPE)
    if clamp is not None and clamp >= 0:
        x.clamp_(-clamp, clamp)
    return x


def _per_channel(bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return bias.to(x.dtype).reshape([-1 if i == 1 else 1 for i in range(x.ndim)])


def _bias_act_out_of_place(x: torch.Tensor, bias: torch.Tensor | None, activation: str, gain: float,
                           clamp: float | None) -> torch.Tensor:
    if bias is not None:
        x = x + _per_channel(bias, x)
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def conv2d_resample(
    x: torch.Tensor,
    weight: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> torch.Tensor:
    """2-D convolution (cross-correlation, like `F.conv2d`) fused with 2x FIR up- or downsampling.

    Up: transposed strided convolution followed by the FIR filter. Down: FIR filter followed by a
    strided convolution (a 1x1 kernel is applied after the downsampling, which is cheaper).
    """
    if up > 1 and down > 1:
        raise ValueError("conv2d_resample does either up- or downsampling, not both")
    out_channels, in_per_group, kh, kw = weight.shape
    weight = weight.to(x.dtype)
    taps = f.shape[-1] if f is not None else 1

    if down > 1:
        p0 = padding + (taps - down + 1) // 2
        p1 = padding + (taps - down) // 2
        if kh == 1 and kw == 1:
            x = upfirdn2d(x, f, down=down, pad=(p0, p1, p0, p1))
            return F.conv2d(x, weight, groups=groups)
        x = upfirdn2d(x, f, pad=(p0, p1, p0, p1))
        return F.conv2d(x, weight, stride=down, groups=groups)

    if up > 1:
        p0 = padding + (taps + up - 1) // 2 - (kw - 1)
        p1 = padding + (taps - up) // 2 - (kw - up)
        # conv_transpose2d wants [in, out/groups, kh, kw]; the kernel is used unflipped.
        weight = weight.reshape(groups, out_channels // groups, in_per_group, kh, kw)
        weight = weight.transpose(1, 2).reshape(groups * in_per_group, out_channels // groups, kh, kw)
        trim = max(min(-p0, -p1), 0)
        x = F.conv_transpose2d(x, weight, stride=up, padding=trim, groups=groups)
        return upfirdn2d(x, f, pad=(p0 + trim, p1 + trim, p0 + trim, p1 + trim), gain=up**2)

    return F.conv2d(x, weight, padding=padding, groups=groups)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale `x` to unit mean square along `dim` (the mapping network's input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    fused: bool = True,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution: scale input channels by `styles`, normalise (demodulate)
    each output channel, convolve, add `noise`.

    fused=True builds one kernel per sample and runs a single grouped convolution; fused=False
    scales the activations instead and shares one kernel across the batch. Both compute the
    same function; which is faster depends on the device and batch size.
    """
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape

    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise so that float16 intermediates cannot overflow (the result is unchanged).
        peak = weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
        weight = weight * (1 / math.sqrt(in_channels * kh * kw) / peak)
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    dcoefs = None
    if demodulate:
        # sum over (i, kh, kw) of (w * s_i)^2 = sum_i s_i^2 * sum_(kh, kw) w^2: no [N, O, I, kh, kw] temporary.
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]

    if not fused:
        x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
        x = conv2d_resample(x, weight, f=resample_filter, up=up, padding=padding)
        if dcoefs is not None and noise is not None:
            return torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(batch, -1, 1, 1))
        if dcoefs is not None:
            return x.mul_(dcoefs.to(x.dtype).reshape(batch, -1, 1, 1))
        if noise is not None:
            return x.add_(noise.to(x.dtype))
        return x

    scale = styles.reshape(batch, 1, -1)
    if dcoefs is not None:
        scale = scale * dcoefs.reshape(batch, -1, 1)  # [N, O, I]
    kernel = (weight.unsqueeze(0) * scale.unsqueeze(-1).unsqueeze(-1)).reshape(-1, in_channels, kh, kw)
    x = x.reshape(1, -1, *x.shape[2:])
    x = conv2d_resample(x, kernel, f=resample_filter, up=up, padding=padding, groups=batch)
    x = x.reshape(batch, -1, *x.shape[2:])
    if noise is not None:
        x = x.add_(noise.to(x.dtype))  # x is the convolution's fresh output: safe in place, also for autograd
    return x


def minibatch_stddev(x: torch.Tensor, group_size: int | None, num_channels: int = 1) -> torch.Tensor:
    """Append the per-group standard deviation as `num_channels` extra feature maps.

    Groups are strided: with M = N / G groups, sample n belongs to group n mod M (NVIDIA's layout).
    """
    n, c, h, w = x.shape
    g = n if group_size is None else min(group_size, n)
    if n % g != 0:
        raise ValueError(f"minibatch-stddev: batch size {n} is not a multiple of the group size {g}")
    y = x.reshape(g, -1, num_channels, c // num_channels, h, w)
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + 1e-8).sqrt()
    y = y.mean(dim=[2, 3, 4]).reshape(-1, num_channels, 1, 1)
    y = y.repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)
