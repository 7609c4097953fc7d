"""Pure-PyTorch primitives of StyleGAN2: FIR resampling, bias + activation, modulated convolution.

Nothing here is compiled: every op is a composition of standard PyTorch calls, so the same code
runs on CPU and CUDA, in float32 and float16, and is differentiable. The semantics follow the
reference (non-CUDA) ops of NVIDIA's stylegan2-ada-pytorch, so networks built on them compute the
same functions as the published checkpoints. How their convolutions run (Winograd 3x3 convolutions, channels-last,
the frozen-kernel cache) is convolution.py's.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .convolution import (
    _cached_winograd,
    _derived,
    _frozen,
    _kernel,
    _layout,
    _per_sample,
    channels_last_active,
    conv3x3,
    conv3x3_input_grad,
)

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


def _depthwise_fir(x: torch.Tensor, f: torch.Tensor, gain: float, pad: Padding, stride: int = 1,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
    """Pad (or crop) by `pad`, then convolve every channel with the same 2-D filter (a true
    convolution: the filter is flipped), plus an optional per-channel `bias`. Symmetric padding is
    left to conv2d, which saves a copy."""
    channels = x.shape[1]
    kernel = (f * gain).flip([0, 1]).to(x.dtype)
    kernel = kernel[None, None].repeat(channels, 1, 1, 1)
    x0, x1, y0, y1 = pad
    if x0 == x1 >= 0 and y0 == y1 >= 0:
        return F.conv2d(x, kernel, bias, stride=stride, padding=(y0, x0), groups=channels)
    x = F.pad(x, [x0, x1, y0, y1])  # negative amounts crop, as in the reference
    return F.conv2d(x, kernel, bias, stride=stride, groups=channels)


def upfirdn2d(
    x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1, pad: Padding = (0, 0, 0, 0), gain: float = 1.0
) -> torch.Tensor:
    """Upsample by zero insertion, pad (or crop), apply the FIR filter, keep every `down`-th pixel.

    `f` is a normalised 2-D filter from `setup_filter`; `gain` scales its taps (the caller passes
    up**2 when upsampling so that the image keeps its brightness). Upsampling runs as one strided
    depthwise transposed convolution: the inserted zeros are never materialised or multiplied.
    """
    if up > 1:
        x = _upsample_fir(x, f, up, pad, gain)
        return x if down == 1 else x[:, :, ::down, ::down]
    return _depthwise_fir(x, f, gain, pad, stride=down)


def _upsample_fir(x: torch.Tensor, f: torch.Tensor, up: int, pad: Padding, gain: float) -> torch.Tensor:
    """Zero insertion + pad + FIR as `conv_transpose2d(stride=up, groups=C)` with the unflipped filter
    (a transposed convolution scatters, i.e. convolves), then the crop / pad that `pad` asks for."""
    channels, taps = x.shape[1], f.shape[-1]
    kernel = (f * gain).to(x.dtype)[None, None].repeat(channels, 1, 1, 1)
    x0, x1, y0, y1 = pad
    # Output of the full transposed convolution, minus what zero insertion + pad + filter gives:
    # `taps - 1 - p0` surplus samples before, `taps - up - p1` after (negative = missing, zero-padded).
    cut = (taps - 1 - x0, taps - up - x1, taps - 1 - y0, taps - up - y1)
    trim_x, trim_y = max(min(cut[0], cut[1]), 0), max(min(cut[2], cut[3]), 0)
    x = F.conv_transpose2d(x, kernel, stride=up, padding=(trim_y, trim_x), groups=channels)
    rest = [trim_x - cut[0], trim_x - cut[1], trim_y - cut[2], trim_y - cut[3]]
    return F.pad(x, rest) if any(rest) else x


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
    `inplace=True` overwrites `x` (pass it only for a tensor nothing else uses, such as a layer's fresh
    convolution output): two passes over memory instead of four, and under autograd only the result
    is kept for the backward pass (the gradient mask is read from it), like NVIDIA's CUDA kernel.
    Differentiable twice (R1 and path-length regularisation differentiate through gradients).
    """
    if activation not in ACTIVATION_GAINS:
        raise ValueError(f"unknown activation {activation!r}; expected 'linear' or 'lrelu'")
    if gain is None:
        gain = ACTIVATION_GAINS[activation]
    clamp = clamp if clamp is not None and clamp >= 0 else None
    if inplace and bias is None and gain == 1 and activation == "linear" and clamp is None:
        return x
    if inplace:
        return _BiasActInPlace.apply(x, bias, activation, float(gain), clamp)
    if bias is not None:
        x = x + _per_channel(bias, x)
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def _per_channel(bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return bias.to(x.dtype).reshape([-1 if i == 1 else 1 for i in range(x.ndim)])


def _activate_(y: torch.Tensor, activation: str, clamp: float | None) -> torch.Tensor:
    """In place: leaky ReLU (positively homogeneous, so it may follow the gain), then the clamp."""
    if activation == "lrelu":
        F.leaky_relu_(y, LRELU_SLOPE)
    if clamp is not None:
        y.clamp_(-clamp, clamp)
    return y


def _activation_grad(grad: torch.Tensor, y: torch.Tensor, activation: str, clamp: float | None) -> torch.Tensor:
    """d(result)/d(pre-activation) applied to `grad`, without the gain, read from the result `y`: leaky
    ReLU's slope where y < 0 (the gain is positive, so signs agree), zero where the clamp bit."""
    grad = grad.to(y.dtype)
    if activation == "lrelu":
        grad = torch.ops.aten.leaky_relu_backward(grad, y, LRELU_SLOPE, True)
    if clamp is not None:
        grad = grad * (y.abs() < clamp)
    return grad


class _BiasActInPlace(torch.autograd.Function):
    """`bias_act` overwriting its input; saves only the result (whose signs give the gradient mask)."""

    @staticmethod
    def forward(ctx, x, bias, activation, gain, clamp):
        if bias is not None:  # x * gain + bias * gain in one pass
            torch.addcmul(_per_channel(bias, x) * gain, x, x.new_tensor(gain), out=x)
        elif gain != 1:
            x.mul_(gain)
        y = _activate_(x, activation, clamp)
        ctx.mark_dirty(y)
        ctx.save_for_backward(y)
        ctx.bias_shape = None if bias is None else bias.shape
        ctx.activation, ctx.gain, ctx.clamp = activation, gain, clamp
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        gx = _activation_grad(grad, y, ctx.activation, ctx.clamp) * ctx.gain
        gb = None
        if ctx.needs_input_grad[1]:
            gb = gx.sum(dim=[i for i in range(gx.ndim) if i != 1]).reshape(ctx.bias_shape)
        return gx, gb, None, None, None


def conv2d_resample(
    x: torch.Tensor,
    weight: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """2-D convolution (cross-correlation, like `F.conv2d`) fused with 2x FIR up- or downsampling.

    Up: transposed strided convolution followed by the FIR filter. Down: FIR filter followed by a
    strided convolution (a 1x1 kernel is applied after the downsampling, which is cheaper). `bias`
    (one value per output channel) is added by the last convolution, at no extra pass over memory.
    """
    if up > 1 and down > 1:
        raise ValueError("conv2d_resample does either up- or downsampling, not both")
    weight = weight.to(x.dtype)
    bias = None if bias is None else bias.to(x.dtype)
    if down > 1:
        p0, p1 = _down_padding(f, down, padding)
        if weight.shape[2:] == (1, 1):
            x = upfirdn2d(x, f, down=down, pad=(p0, p1, p0, p1))
            return F.conv2d(x, weight, bias, groups=groups)
        x = upfirdn2d(x, f, pad=(p0, p1, p0, p1))
        return F.conv2d(x, weight, bias, stride=down, groups=groups)
    if up > 1:
        p0, p1, trim = _up_geometry(f, up, padding, weight.shape[-1])
        transposed = _kernel(weight, x.dtype, f"transposed{groups}/", lambda w: _transposed(w, groups))
        x = F.conv_transpose2d(_layout(x), transposed, stride=up, padding=trim, groups=groups)
        return _depthwise_fir(x, f, up**2, (p0 + trim, p1 + trim, p0 + trim, p1 + trim), bias=bias)
    if groups == 1 and padding == 1 and weight.shape[2:] == (3, 3):
        return conv3x3(x, weight, bias)
    return F.conv2d(x, weight, bias, padding=padding, groups=groups)


def _down_padding(f: torch.Tensor, down: int, padding: int) -> tuple[int, int]:
    taps = f.shape[-1]
    return padding + (taps - down + 1) // 2, padding + (taps - down) // 2


def _up_geometry(f: torch.Tensor, up: int, padding: int, kernel: int) -> tuple[int, int, int]:
    """FIR padding (p0, p1) after a transposed convolution, and the padding `trim` that the
    transposed convolution itself crops (NVIDIA's conv2d_resample arithmetic)."""
    taps = f.shape[-1]
    p0 = padding + (taps + up - 1) // 2 - (kernel - 1)
    p1 = padding + (taps - up) // 2 - (kernel - up)
    return p0, p1, max(min(-p0, -p1), 0)


def _transposed(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """[out, in/groups, kh, kw] -> conv_transpose2d's [in, out/groups, kh, kw] (the kernel is used unflipped), a view
    where it can be; `_kernel` makes it contiguous in the context's layout (a convolution would copy a strided kernel
    on every call, so the frozen-kernel cache keeps the copy; `_modulated_kernels` writes per-sample kernels so that
    there is nothing to copy)."""
    out_channels, in_per_group, kh, kw = weight.shape
    weight = weight.reshape(groups, out_channels // groups, in_per_group, kh, kw)
    return weight.transpose(1, 2).reshape(groups * in_per_group, out_channels // groups, kh, kw)


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
    bias: torch.Tensor | None = None,
    activation: str = "linear",
    gain: float = 1.0,
    clamp: float | None = None,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution: scale input channels by `styles`, normalise (demodulate)
    each output channel, convolve, add `noise`; then optionally `bias`, `activation`, `gain`, `clamp`
    as `bias_act` does them (a synthesis layer is one call).

    fused=True builds one kernel per sample and runs a single grouped convolution; fused=False
    scales the activations instead and shares one kernel across the batch. Both compute the
    same function; which is faster depends on the device and batch size. The backward pass is the
    same for both and never differentiates a per-sample kernel: it runs one transposed convolution
    of the shared kernel and reads the style and demodulation gradients from per-channel dot products
    with tensors that are alive anyway (the input and the result). So under autograd a layer keeps
    no tensor of its own, and without weight gradients (projection) it costs 2 convolutions, not 3.
    """
    out_channels, in_channels, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        # Pre-normalise so that float16 intermediates cannot overflow (the result is unchanged).
        peak = weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True)
        weight = weight * (1 / math.sqrt(in_channels * kh * kw) / peak)
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    dcoefs = None
    if demodulate:
        # sum over (i, kh, kw) of (w * s_i)^2 = sum_i s_i^2 * sum_(kh, kw) w^2: no [N, O, I, kh, kw] temporary.
        energy = _derived("energy", weight, _demodulation_energy)  # [O, I], one pass over the weight
        squares = styles.square()
        if fused:  # row by row: a sample's numbers do not depend on the batch
            dcoefs = _per_sample(lambda i: squares[i:i + 1] @ energy.t(), styles.shape[0])
        else:
            dcoefs = squares @ energy.t()
        dcoefs = (dcoefs + 1e-8).rsqrt()  # [N, O]
    if activation not in ACTIVATION_GAINS:
        raise ValueError(f"unknown activation {activation!r}; expected 'linear' or 'lrelu'")
    if noise is not None:
        noise = noise.reshape([-1, 1, *noise.shape[-2:]]) if noise.ndim != 4 else noise
    clamp = clamp if clamp is not None and clamp >= 0 else None
    return _ModulatedConv.apply(_layout(x), weight, styles, dcoefs, noise, bias, resample_filter, up, padding,
                                activation, float(gain), clamp, fused)


DOT_SLICE = 1 << 21  # values of a sample's channels that `_channel_dot` converts at once (8 MiB in float32)


def _demodulation_energy(weight: torch.Tensor) -> torch.Tensor:
    """Sum of squares of each [out, in] 2-D kernel of `weight`, [O, I]."""
    return torch.linalg.vector_norm(weight, dim=(2, 3)).square()


def _channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum over (H, W) of a * b, per sample and channel, in float32 or wider: a [N, C, H, W], b [N, C, H, W] or one
    map per sample [N | 1, 1, H, W]. float32 and wider: batched matrix products of one row, no temporary of a's size.
    bfloat16 / float16 (whose one-row matrix products are 5x slower): `vecdot` of a slice of channels at a time
    converted to float32 (`DOT_SLICE` values a sample, so the temporaries stay small). Channels-last a (and b): the
    same, a slice of pixels at a time, except bfloat16 on the CPU (projection on AVX-512): `_onednn_dot`."""
    n, c, h, w = a.shape
    if c > 1 and h * w > 1 and a.is_contiguous(memory_format=torch.channels_last):
        if a.dtype == b.dtype == torch.bfloat16 and a.device.type == "cpu":
            return _per_sample(lambda i: _onednn_dot(a[i:i + 1], b[i:i + 1] if b.shape[0] > 1 else b), n).float()
        a = a.permute(0, 2, 3, 1).reshape(n, h * w, c)  # views: [N, pixels, C]
        b = (b.reshape(b.shape[0], 1, h * w).transpose(1, 2) if b.shape[1] == 1
             else b.permute(0, 2, 3, 1).reshape(n, h * w, c))
        step, wide = max(1, DOT_SLICE // c), torch.promote_types(a.dtype, torch.float32)
        return sum(torch.linalg.vecdot(a[:, i:i + step].to(wide), b[:, i:i + step].to(wide), dim=1)
                   for i in range(0, h * w, step))
    if a.dtype.itemsize >= 4:
        if b.shape[1] == 1 and c != 1:
            return torch.matmul(a.reshape(n, c, h * w), b.reshape(b.shape[0], h * w, 1)).reshape(n, c)
        return torch.matmul(a.reshape(n * c, 1, h * w), b.reshape(n * c, h * w, 1)).reshape(n, c)
    a, b = a.reshape(n, c, h * w), b.reshape(b.shape[0], b.shape[1], h * w)
    step = max(1, DOT_SLICE // (h * w))
    parts = [torch.linalg.vecdot(a[:, i:i + step].float(), (b if b.shape[1] == 1 else b[:, i:i + step]).float())
             for i in range(0, c, step)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _onednn_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`_channel_dot` of one bfloat16 channels-last sample, [1, C] bfloat16, by oneDNN: a matrix-vector product for
    one map b, else the weight gradient of a depthwise 1x1 convolution. Both sum the exact products in float32 and
    round that sum once, so each result is within 2^-8 (< 0.4%) of the float32 sum however much the terms cancel,
    where rounding every product would not be (up to 21% off); 3-4x faster than converting to float32 first (a
    256 px projection step 5-8% faster)."""
    c = a.shape[1]
    if b.shape[1] == 1:
        return torch.mm(a.permute(0, 2, 3, 1).reshape(-1, c).t(), b.reshape(-1, 1)).reshape(1, c)
    return torch.nn.grad.conv2d_weight(b.contiguous(memory_format=torch.channels_last), (c, 1, 1, 1), a,
                                       groups=c).reshape(1, c)


class _ModulatedConv(torch.autograd.Function):
    """Modulated convolution + noise + bias + activation + gain + clamp, one fresh tensor in the forward
    pass; the backward pass derived by hand (see `modulated_conv2d`). All arithmetic is in x's dtype.

    fused: every sample is convolved with its own kernel, in the forward and the backward pass, so a
    sample's numbers do not depend on the rest of the batch. Otherwise one kernel serves the batch."""

    @staticmethod
    def forward(ctx, x, weight, styles, dcoefs, noise, bias, f, up, padding, activation, gain, clamp, fused):
        dtype = x.dtype
        batch = x.shape[0]
        scale = _output_scale(styles, dcoefs, weight.shape[0], gain).to(dtype)  # [N, O]
        # A frozen kernel (inside `winograd(kernels=...)`) is shared, with what is derived from it, where the input
        # is smaller than the kernel or the convolution runs on its cached Winograd transform: the input carries
        # the styles. Image by image all the same, so a sample's numbers still do not depend on the batch.
        shared = _frozen(weight) is not None and (
            x.shape[2] * x.shape[3] <= weight.shape[0] * weight.shape[2] * weight.shape[3]
            or (_is_conv3x3(weight, up, padding) and _cached_winograd(x, weight) is not None))
        if fused and not shared:
            outer = scale.reshape(batch, -1, 1) * styles.to(dtype).reshape(batch, 1, -1)  # [N, O, I]
            kernel = _modulated_kernels(weight, outer, transposed=up > 1)
            b = None if bias is None else bias.to(dtype) * gain
            y = _per_sample(lambda i: conv2d_resample(x[i:i + 1], kernel[i], f, up=up, padding=padding, bias=b), batch)
            if noise is not None:
                y.add_(noise.to(dtype) * gain)
        else:
            w = _kernel(weight, dtype)
            xs = x * styles.to(dtype).reshape(batch, -1, 1, 1)
            if shared:
                y = _per_sample(lambda i: conv2d_resample(xs[i:i + 1], w, f, up=up, padding=padding), batch)
            else:
                y = conv2d_resample(xs, w, f, up=up, padding=padding)
            scale = scale.reshape(batch, -1, 1, 1)
            if noise is not None:
                torch.addcmul(noise.to(dtype) * gain, y, scale, out=y)
            else:
                y.mul_(scale)
            if bias is not None:
                y.add_(_per_channel(bias, y) * gain)
        _activate_(y, activation, clamp)
        ctx.save_for_backward(x, weight, styles, dcoefs, noise, bias, f, y)
        ctx.up, ctx.padding, ctx.activation, ctx.gain, ctx.clamp = up, padding, activation, gain, clamp
        ctx.fused, ctx.shared = fused and not shared, shared
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, styles, dcoefs, noise, bias, f, y = ctx.saved_tensors
        need_x, need_weight, need_styles, need_dcoefs, need_noise, need_bias = ctx.needs_input_grad[:6]
        gain, up, padding = ctx.gain, ctx.up, ctx.padding
        dtype = y.dtype
        grad = _layout(grad.to(dtype))
        u = _activation_grad(grad, y, ctx.activation, ctx.clamp)  # = d loss / d pre-activation, over gain
        g_bias = g_noise = g_dcoefs = g_x = g_weight = g_styles = None
        if need_bias:
            g_bias = (u.sum(dim=[0, 2, 3]) * gain).to(bias.dtype)
        if need_noise:
            g_noise = (u.sum(dim=1, keepdim=True) * gain).sum_to_size(noise.shape).to(noise.dtype)
        if need_dcoefs:
            # pre-activation z = c * d + noise + bias (c the plain convolution), and grad_z * z = grad * y
            # (y = gain * slope * z), so dL/dd = sum(grad_z * c) needs no copy of c.
            kept = y if ctx.clamp is None else y * (y.abs() < ctx.clamp)
            total = _channel_dot(grad, kept)
            if noise is not None:
                total = total - gain * _channel_dot(u, noise.to(dtype))
            if bias is not None:
                total = total - gain * u.sum(dim=[2, 3]) * bias.to(dtype)
            g_dcoefs = (total / dcoefs.to(dtype)).to(dcoefs.dtype)
        if not (need_x or need_styles or need_weight):
            return g_x, g_weight, g_styles, g_dcoefs, g_noise, g_bias, *[None] * 7
        w = _kernel(weight, dtype)
        batch = x.shape[0]
        scale = _output_scale(styles, dcoefs, w.shape[0], gain).to(dtype)  # [N, O]
        trim = 0
        if up > 1:  # the FIR filter's adjoint first (it acts per channel, so it commutes with the scale)
            p0, p1, trim = _up_geometry(f, up, padding, w.shape[-1])
            taps = f.shape[-1]
            pad = (taps - 1 - p0 - trim, taps - 1 - p1 - trim)
            u = _depthwise_fir(u, f.flip([0, 1]), up**2, (pad[0], pad[1], pad[0], pad[1]))
        if need_x or need_styles:  # g_xs: gradient of the modulated input x * styles
            if ctx.fused:
                kernels = w.unsqueeze(0) * scale.reshape(*scale.shape, 1, 1, 1)  # the scale rides on the kernel
                g_xs = _per_sample(lambda i: _conv_input_grad(u[i:i + 1], kernels[i], up, padding, trim), batch)
            else:
                us = u * scale.reshape(*scale.shape, 1, 1)
                if ctx.shared:
                    g_xs = _per_sample(lambda i: _conv_input_grad(us[i:i + 1], w, up, padding, trim), batch)
                else:
                    g_xs = _conv_input_grad(us, w, up, padding, trim)
            s = styles.to(dtype).reshape(*styles.shape, 1, 1)
            if need_styles:
                g_styles = _channel_dot(g_xs, x.to(dtype)).to(styles.dtype)
            if need_x:  # in place (one full-size tensor less at the peak) unless this pass is differentiated itself
                g_x = (g_xs * s if torch.is_grad_enabled() else g_xs.mul_(s)).to(x.dtype)
        if need_weight:
            gc = u * scale.reshape(*scale.shape, 1, 1)
            xs = x.to(dtype) * styles.to(dtype).reshape(*styles.shape, 1, 1)
            if up > 1:  # <convT(xs, Wt), g> = <conv(g, Wt), xs>: the weight gradient of a strided convolution
                g_weight = torch.nn.grad.conv2d_weight(gc, w.transpose(0, 1).shape, xs, stride=up, padding=trim)
                g_weight = g_weight.transpose(0, 1)
            else:
                g_weight = torch.nn.grad.conv2d_weight(xs, w.shape, gc, padding=padding)
            g_weight = g_weight.to(weight.dtype)
        return g_x, g_weight, g_styles, g_dcoefs, g_noise, g_bias, *[None] * 7


def _modulated_kernels(weight: torch.Tensor, outer: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """One kernel per sample, weight [O, I, kh, kw] times outer [N, O, I] in outer's dtype, [N, O, I, kh, kw], each laid
    out in memory the way its convolution reads it, made so by the product itself (no copy of the weight first, none
    of the kernels after): inside `channels_last()` channels-last, and for a transposed convolution (`transposed`,
    the upsampling layers) as the kernel [I, O, kh, kw] that `_transposed` makes of it, a view then."""
    # the memory order of the dimensions (N, O, I, kh, kw) of the product
    order = {(False, False): (0, 1, 2, 3, 4), (False, True): (0, 1, 3, 4, 2),
             (True, False): (0, 2, 1, 3, 4), (True, True): (0, 2, 3, 4, 1)}[transposed, channels_last_active()]
    # a cached cast where there is one; else the weight as it is, not copied to the product's layout first
    source = _kernel(weight, outer.dtype) if _frozen(weight) is not None else weight.to(outer.dtype)
    factors = (source.unsqueeze(0), outer.reshape(*outer.shape, 1, 1))
    sizes = (outer.shape[0], *weight.shape)
    products = outer.new_empty([sizes[d] for d in order])
    torch.mul(*(f.permute(order) for f in factors), out=products)
    return products.permute([order.index(d) for d in range(5)])


def _output_scale(styles: torch.Tensor, dcoefs: torch.Tensor | None, out_channels: int, gain: float) -> torch.Tensor:
    """What multiplies each output channel of the plain convolution: demodulation times gain, [N, O]."""
    if dcoefs is None:
        return styles.new_full([styles.shape[0], out_channels], gain)
    return dcoefs * gain


def _is_conv3x3(weight: torch.Tensor, up: int, padding: int) -> bool:
    return up == 1 and padding == 1 and weight.shape[2:] == (3, 3)


def _conv_input_grad(grad: torch.Tensor, weight: torch.Tensor, up: int, padding: int, trim: int) -> torch.Tensor:
    """Adjoint of the plain convolution with `weight` (up == 1) or of the strided transposed convolution (up > 1,
    after the FIR adjoint): the gradient with respect to the convolution's input."""
    if up > 1:  # [in, out, kh, kw], the same (contiguous) kernel as the forward pass's transposed convolution
        kernel = _kernel(weight, grad.dtype, "transposed1/", lambda w: _transposed(w, 1))
        return F.conv2d(_layout(grad), kernel, stride=up, padding=trim)
    if _is_conv3x3(weight, up, padding):
        return conv3x3_input_grad(grad, weight)
    return F.conv_transpose2d(grad, weight, padding=padding)


def max_pool2d(x: torch.Tensor, size: int) -> torch.Tensor:
    """`F.max_pool2d(x, size)`: the maximum of each size x size window, windows side by side (stride = size). Its
    backward pass puts each gradient at its window's maximum with `max_unpool2d`, the same numbers as PyTorch's own
    backward in under half its time on the CPU (VGG16's pools in projection, bfloat16 channels-last: 64 x 256 x 256
    0.69 vs 1.68 ms, 128 x 128 x 128 0.22 vs 0.97 ms)."""
    return _MaxPool.apply(x, size)


class _MaxPool(torch.autograd.Function):
    """`max_pool2d`'s autograd function: keeps only the argmax indices for the backward pass, not the input."""

    @staticmethod
    def forward(ctx, x, size):
        y, indices = F.max_pool2d_with_indices(x, size, size)
        ctx.save_for_backward(indices)
        ctx.size, ctx.image_size = size, x.shape[-2:]
        return y

    @staticmethod
    def backward(ctx, grad):
        (indices,) = ctx.saved_tensors
        return F.max_unpool2d(grad, indices, ctx.size, ctx.size, output_size=ctx.image_size), None


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
