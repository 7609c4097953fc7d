"""How toonlib's convolutions run: the contexts that choose their algorithm and memory layout, the cache of what is
derived from kernels that are not trained, and the 3x3 convolution with its Winograd algorithms.

* `winograd()`: inside it, 3x3 stride-1 float32 convolutions on the CPU (`conv3x3` and its input gradient,
  `conv3x3_input_grad`) run as Winograd transforms where that pays: toonlib's own F(2x2, 3x3) and F(4x4, 3x3) on
  kernels transformed once, or NNPACK's F(6x6, 3x3); on CPUs with AVX-512 (`WIDE_DIRECT_CONV`) none of them.
  Projection enters it; outside it the networks reproduce the reference outputs exactly.
* `channels_last()`: inside it, convolutions take their images and kernels channels-last (`_layout`, `_kernel`).
* `FrozenKernels`: what is derived from kernels that a computation does not train (Winograd transforms, casts,
  flipped, transposed and channels-last copies, demodulation energies), computed once per kernel version.

ops.py's StyleGAN2 primitives (the modulated and resampling convolutions) run their 3x3 convolutions, take their
images and kernels and read the kernel cache through this module, which imports nothing of toonlib's.
docs/design.md section 3.
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
import weakref
from typing import Callable, Iterator, NamedTuple

import torch
import torch.nn.functional as F

# Winograd algorithms for 3x3 stride-1 convolutions, used only inside `winograd()` (projection) and only where
# they pay (benchmarks/bench_conv3x3.py on a 2-core AVX2 EPYC, docs/design.md section 11):
# * toonlib's own F(m x m, 3x3) on kernels transformed once (`FrozenKernels`), with 256 channels or more from 8x8
#   pixels (F(2x2, 3x3): 1.3-1.9x less time than oneDNN's direct convolution, as accurate as it, ~3-5e-7 of the
#   output's range) and with 128 or more from 32x32 to 64x64 pixels, up to 2^20 values in and out (F(4x4, 3x3):
#   1.3-1.5x less time than F(2x2) or NNPACK there, ~1e-5 of the range, like NNPACK).
# * NNPACK's F(6x6, 3x3) (part of PyTorch's CPU builds) on larger images, or where no transform is cached, from 64x64
#   pixels and 16 channels in and out: up to 2.4x less time than the direct convolution. It transforms the whole
#   kernel on every call (~20 ms for 512x512 channels, whatever the image size), so on smaller images it is as slow
#   as the direct convolution or slower.
WINOGRAD_MIN_SIZE = 64
WINOGRAD_MIN_CHANNELS = 16
CACHED_WINOGRAD_MIN_SIZE = 8
CACHED_WINOGRAD_MIN_CHANNELS = 256
CACHED_F43_MIN_SIZE = 32
CACHED_F43_MAX_SIZE = 64
CACHED_F43_MIN_CHANNELS = 128
CACHED_F43_MAX_VALUES = 1 << 20  # larger images amortise NNPACK's kernel transform: 4x the kernel's memory buys ~9%
# On CPUs with AVX-512 (`torch.backends.cpu.get_cpu_capability()`) none of this pays: oneDNN's direct convolution
# runs at twice the vector width that NNPACK (AVX2) uses, and the cached transforms' memory-bound steps do not speed
# up with it. On a 2-core AVX-512 EPYC (bench_conv3x3) the direct convolution was the fastest at every shape of a
# projection but the largest (>= 128 channels, >= 2^30 in x out channels x pixels), where NNPACK was 1.2-1.35x faster
# alone but the 1024 px step no faster in an A/B. So with WIDE_DIRECT_CONV, `winograd()` changes nothing but the
# kernel cache: a projection step took 14% less time at 256 px (0.48 -> 0.415 s) and 4% at 1024 px than with Winograd.
WIDE_DIRECT_CONV = torch.backends.cpu.get_cpu_capability().startswith("AVX512")


class FrozenKernels:
    """Tensors derived from the kernels of networks that are not trained during a computation (projection's
    generator and VGG16): Winograd transforms, demodulation energies, transposed and flipped kernels, casts to the
    autocast dtype, channels-last copies (`channels_last()`). Covers the parameters of `frozen` (modules or tensors)
    and what is derived from them; each derived tensor is computed on first use and kept while this object lives,
    and derived again after its kernel is changed in place (version counter). Used through `winograd(kernels=...)`;
    no gradient reaches a covered kernel there."""

    def __init__(self, *frozen: torch.nn.Module | torch.Tensor) -> None:
        tensors = [t for source in frozen
                   for t in (source.parameters() if isinstance(source, torch.nn.Module) else [source])]
        self._kernels = {id(t): weakref.ref(t) for t in tensors}
        # (kind, id(source)) -> (the source, its version when derived, what was derived)
        self._store: dict[tuple[str, int], tuple[weakref.ref, int, torch.Tensor]] = {}
        # The side-by-side workers of a batch projection (projection.project) ask for the same kernels at once.
        self._lock = threading.RLock()

    def covers(self, weight: torch.Tensor) -> bool:
        """Whether `weight` is one of the frozen kernels."""
        ref = self._kernels.get(id(weight))
        return ref is not None and ref() is weight

    def get(self, kind: str, weight: torch.Tensor, derive: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """`derive(weight)` for a covered kernel, computed once per `kind` and kernel version, also when threads ask
        at once. What is derived is covered in turn (a cast of a flipped kernel is kept as well)."""
        key = (kind, id(weight))
        with self._lock:
            hit = self._store.get(key)
            # The source is checked, not only its id: the id of a tensor that was derived and replaced (its kernel
            # changed) is reused by later tensors, and what was derived from it must not be served to them.
            if hit is None or hit[0]() is not weight or hit[1] != weight._version:
                replaced = hit is not None
                hit = self._store[key] = (weakref.ref(weight), weight._version, derive(weight.detach()))
                self._kernels[id(hit[2])] = weakref.ref(hit[2])
                if replaced:
                    self._drop_orphans()
            return hit[2]

    def _drop_orphans(self) -> None:
        """Forget what was derived from tensors that no longer exist (derived ones that were replaced), and in
        turn what was derived from those."""
        while orphans := [key for key, (source, _, _) in self._store.items() if source() is None]:
            for key in orphans:
                del self._store[key]
        self._kernels = {i: ref for i, ref in self._kernels.items() if ref() is not None}

    @property
    def nbytes(self) -> int:
        """Memory held by the derived tensors."""
        return sum(derived.nbytes for _, _, derived in self._store.values())


class _Tiling(NamedTuple):
    """Winograd F(m x m, 3x3) (Lavin & Gray 2016): input tiles of t = m + 2 pixels a side, overlapping by 2, give
    output tiles of m. The 2-D transforms of a tile are Kronecker products of the 1-D ones: vec(B^T d B) =
    (B^T (x) B^T) vec(d), so each is one matrix product over all tiles."""
    m: int
    kernel: torch.Tensor  # [t*t, 9], float64: kernels are transformed once, exactly
    input: torch.Tensor  # [t*t, t*t]
    output: torch.Tensor  # [m*m, t*t]


def _tiling(bt: list[list[float]], g: list[list[float]], at: list[list[float]]) -> _Tiling:
    bt_, g_, at_ = (torch.tensor(a, dtype=torch.float64) for a in (bt, g, at))
    return _Tiling(at_.shape[0], torch.kron(g_, g_), torch.kron(bt_, bt_).float(), torch.kron(at_, at_).float())


_F23 = _tiling([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],  # interpolation points 0, 1, -1, inf
               [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
               [[1, 1, 1, 0], [0, 1, -1, -1]])
_F43 = _tiling([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],  # points 0, 1, -1, 2, -2, inf
                [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
               [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
               [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])

_WINOGRAD: contextvars.ContextVar[tuple[bool, FrozenKernels | None]] = contextvars.ContextVar(
    "toonlib_winograd", default=(False, None))


@contextlib.contextmanager
def winograd(enabled: bool = True, kernels: FrozenKernels | None = None) -> Iterator[None]:
    """Within this context, 3x3 stride-1 float32 convolutions on the CPU (`conv3x3`) and their input gradients
    run as Winograd transforms where that pays. Given `kernels`, on kernels it covers: toonlib's F(2x2, 3x3) on
    images from `CACHED_WINOGRAD_MIN_SIZE` pixels a side with `CACHED_WINOGRAD_MIN_CHANNELS` channels in and out,
    and F(4x4, 3x3) from `CACHED_F43_MIN_SIZE` to `CACHED_F43_MAX_SIZE` pixels with `CACHED_F43_MIN_CHANNELS`
    channels and up to `CACHED_F43_MAX_VALUES` values in and out. Elsewhere NNPACK's, on images of at least
    `WINOGRAD_MIN_SIZE` pixels with `WINOGRAD_MIN_CHANNELS` channels (up to 2.4x less time than oneDNN's direct
    convolution, with a relative error of ~1e-5 of the output's range instead of ~1e-7; F(4x4, 3x3) is as close,
    F(2x2, 3x3) as close as the direct one). With `kernels`, whatever is derived from a kernel it covers (its
    Winograd transform, a modulated convolution's demodulation energies, transposed and flipped kernels, casts and
    channels-last copies) is computed once and kept there, and modulated convolutions with such kernels carry the
    styles on their input instead of on a kernel per sample (where the input is the smaller). Projection uses it;
    outside it (the default) networks reproduce the reference outputs exactly. On CPUs with AVX-512
    (`WIDE_DIRECT_CONV`) every convolution stays oneDNN's direct one, which is faster there; the cache still serves
    what else is derived from a kernel."""
    token = _WINOGRAD.set((enabled and torch.backends.nnpack.is_available(), kernels if enabled else None))
    try:
        yield
    finally:
        _WINOGRAD.reset(token)


def _frozen(weight: torch.Tensor) -> FrozenKernels | None:
    """The cache for what is derived from `weight`, when there is one and it covers that kernel."""
    kernels = _WINOGRAD.get()[1]
    return kernels if kernels is not None and kernels.covers(weight) else None


def _derived(kind: str, weight: torch.Tensor, derive: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`derive(weight)`, from the frozen-kernel cache where there is one."""
    kernels = _frozen(weight)
    return derive(weight) if kernels is None else kernels.get(kind, weight, derive)


_CHANNELS_LAST: contextvars.ContextVar[bool] = contextvars.ContextVar("toonlib_channels_last", default=False)


@contextlib.contextmanager
def channels_last(enabled: bool = True) -> Iterator[None]:
    """Within this context the modulated convolutions, `conv3x3` and their input gradients take their images
    channels-last (`torch.channels_last`, converted on entry where they are not) and their kernels likewise (once
    per frozen kernel, in `FrozenKernels`), and so return channels-last images: oneDNN convolves that layout without
    reordering it, which in bfloat16 saves up to a third of a large convolution's time (docs/design.md section 11).
    The numbers are the same up to the order of float sums. Projection and the generator's eval-mode forward use
    it where `channels_last_pays`."""
    token = _CHANNELS_LAST.set(enabled)
    try:
        yield
    finally:
        _CHANNELS_LAST.reset(token)


def channels_last_active() -> bool:
    """Whether the current context is `channels_last()`."""
    return _CHANNELS_LAST.get()


def channels_last_pays(device: torch.device, winograd: bool = False) -> bool:
    """Whether convolutions on `device` compute faster channels-last (`channels_last()`): on CPUs, where oneDNN then
    convolves without reordering images to its blocked layout and back (the generator's eval-mode forward, on 2
    AVX-512 cores: 10-20% less time; a projection step: 13-14% less at 256 px), except in a computation that runs
    inside `winograd()` (`winograd=True`) on CPUs without AVX-512, where the float32 Winograd transforms tile NCHW
    images. Not on GPUs (not measured). docs/design.md section 11."""
    return device.type == "cpu" and (WIDE_DIRECT_CONV or not winograd)


def in_winograd() -> bool:
    """Whether the current context is an enabled `winograd()`."""
    enabled, kernels = _WINOGRAD.get()
    return enabled or kernels is not None


def _layout(x: torch.Tensor) -> torch.Tensor:
    """An image batch in the layout of the context (channels-last inside `channels_last()`, else as it is)."""
    return x.contiguous(memory_format=torch.channels_last) if _CHANNELS_LAST.get() and x.ndim == 4 else x


def _kernel(weight: torch.Tensor, dtype: torch.dtype, kind: str = "",
            derive: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """`derive(weight)` (default: weight) as `dtype`, contiguous in the layout of the context, from the frozen-kernel
    cache where there is one: a projection casts, flips or transposes each kernel once, not in every pass."""
    fmt = torch.channels_last if _CHANNELS_LAST.get() and weight.ndim == 4 else torch.contiguous_format
    if derive is None and weight.dtype == dtype and weight.is_contiguous(memory_format=fmt):
        return weight
    return _derived(f"{kind}as/{dtype}/{fmt}", weight,
                    lambda w: (w if derive is None else derive(w)).to(dtype).contiguous(memory_format=fmt))


def _direct(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether conv3x3 runs oneDNN's direct convolution whatever the shape: on AVX-512 CPUs (WIDE_DIRECT_CONV), off
    the CPU, outside float32 and under autocast."""
    return WIDE_DIRECT_CONV or not (x.device.type == "cpu" and x.dtype == torch.float32
                                    and weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu"))


def _cached_winograd(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor | None:
    """The Winograd transform of `weight` ([16 or 36, out, in], see `_TILINGS`) when `conv3x3(x, weight)` (and its
    input gradient) runs on cached transforms, else None."""
    kernels = _frozen(weight)
    if kernels is None or _direct(x, weight):
        return None
    size, channels = min(x.shape[2:]), min(weight.shape[:2])
    values = max(weight.shape[:2]) * x.shape[2] * x.shape[3]  # of the larger of input and output
    if (CACHED_F43_MIN_SIZE <= size <= CACHED_F43_MAX_SIZE and channels >= CACHED_F43_MIN_CHANNELS
            and values <= CACHED_F43_MAX_VALUES):
        tiling = _F43
    elif CACHED_WINOGRAD_MIN_SIZE <= size < WINOGRAD_MIN_SIZE and channels >= CACHED_WINOGRAD_MIN_CHANNELS:
        tiling = _F23
    else:
        return None
    return kernels.get(f"winograd{tiling.m}", weight, lambda w: _winograd_kernel(w, tiling))


_TILINGS = {16: _F23, 36: _F43}  # by the number of products per tile, the first dimension of a transformed kernel


def _winograd_kernel(weight: torch.Tensor, tiling: _Tiling) -> torch.Tensor:
    """The transform [t*t, out, in] of a [out, in, 3, 3] kernel, computed in float64 a block of output channels at
    a time (no float64 copy of the whole transform: 75 MB for a 512 x 512 kernel in F(4x4, 3x3))."""
    out_channels, in_channels = weight.shape[:2]
    transformed = weight.new_empty(tiling.kernel.shape[0], out_channels, in_channels)
    for start in range(0, out_channels, 64):
        block = weight[start:start + 64]
        flat = block.double().reshape(-1, 9)
        transformed[:, start:start + 64] = (tiling.kernel @ flat.t()).to(weight.dtype).reshape(-1, *block.shape[:2])
    return transformed


def conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.conv2d(x, weight, bias, padding=1)` for 3x3 kernels, by Winograd inside `winograd()` where it pays."""
    autocast = torch.is_autocast_enabled(x.device.type) and weight.dtype == torch.float32
    weight = _kernel(weight, torch.get_autocast_dtype(x.device.type) if autocast else weight.dtype)  # cast once
    x = _layout(x)
    transformed = _cached_winograd(x, weight)
    if transformed is not None:
        return _CachedWinograd.apply(x, transformed, bias)
    if not (_WINOGRAD.get()[0] and not _direct(x, weight) and min(x.shape[2:]) >= WINOGRAD_MIN_SIZE
            and min(weight.shape[:2]) >= WINOGRAD_MIN_CHANNELS):
        return F.conv2d(x, weight, bias, padding=1)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
        return _Conv3x3.apply(x, weight, bias)
    return _nnpack(x, weight, bias)


def conv3x3_input_grad(grad: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The gradient of `conv3x3(x, weight)` with respect to x, given the gradient of its output: a 3x3 convolution
    with the kernel flipped and its channels swapped, or, where conv3x3 runs on cached transforms, the exact
    adjoint of that computation (with the same transforms)."""
    transformed = _cached_winograd(grad, weight)
    if transformed is not None:
        return _winograd_images(_winograd_adjoint, grad, transformed)
    return conv3x3(grad, _kernel(weight, weight.dtype, "adjoint/", lambda w: w.flip([2, 3]).transpose(0, 1)))


def _per_sample(conv: Callable[[int], torch.Tensor], batch: int) -> torch.Tensor:
    """torch.cat([conv(0), ..., conv(batch - 1)]): one sample at a time (each with its own kernel, or with an
    algorithm whose rounding would depend on the batch), so a batch gets the numbers of its samples one by one."""
    outputs = [conv(i) for i in range(batch)]
    return outputs[0] if batch == 1 else torch.cat(outputs)


def _nnpack(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """NNPACK's single-image (inference) algorithm, image by image (its batched algorithm is another transform,
    with other rounding)."""
    weight = weight.contiguous()
    return _per_sample(lambda i: torch._nnpack_spatial_convolution(x[i:i + 1].contiguous(), weight, bias, [1, 1]),
                       x.shape[0])


class _Conv3x3(torch.autograd.Function):
    """NNPACK's 3x3 convolution, padding 1, whose input gradient is again a Winograd 3x3 convolution (with the
    kernel flipped and its channels transposed); differentiable twice. Keeps x only for a weight gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x if weight.requires_grad else None, weight)
        return _nnpack(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = conv3x3_input_grad(grad, weight)
        if ctx.needs_input_grad[1]:
            gw = torch.nn.grad.conv2d_weight(x, weight.shape, grad, padding=1)
        if ctx.needs_input_grad[2]:
            gb = grad.sum(dim=[0, 2, 3])
        return gx, gw, gb


def _winograd_forward(x: torch.Tensor, transformed: torch.Tensor) -> torch.Tensor:
    """One image [1, C, H, W] convolved (3x3, padding 1) by F(m x m, 3x3) with a transformed kernel [t*t, O, C]:
    overlapping t x t input tiles (stride m) -> t*t products of [O, C] x [C, tiles] -> m x m output tiles."""
    tiling = _TILINGS[transformed.shape[0]]
    m, t = tiling.m, tiling.m + 2
    _, channels, h, w = x.shape
    rows, cols = -(-h // m), -(-w // m)
    padded = F.pad(x, [1, m * cols + 1 - w, 1, m * rows + 1 - h])
    sc, sh, sw = padded.stride()[1:]
    tiles = padded.as_strided((t, t, channels, rows, cols), (sh, sw, sc, m * sh, m * sw))
    v = (tiling.input @ tiles.reshape(t * t, -1)).reshape(t * t, channels, rows * cols)
    products = torch.bmm(transformed, v)  # [t*t, O, tiles]
    out = (tiling.output @ products.reshape(t * t, -1)).reshape(m, m, -1, rows, cols)
    out = out.permute(2, 3, 0, 4, 1).reshape(1, -1, m * rows, m * cols)
    return out if (h, w) == (m * rows, m * cols) else out[:, :, :h, :w].contiguous()  # not a view: autograd's output


def _winograd_adjoint(grad: torch.Tensor, transformed: torch.Tensor) -> torch.Tensor:
    """The adjoint of `_winograd_forward` with respect to its image, applied to `grad` [1, O, H, W]: each step of it
    transposed, the overlapping input tiles summed back (a tile's first m rows and columns, then the 2 it shares
    with the next tile: 4 shifted adds)."""
    tiling = _TILINGS[transformed.shape[0]]
    m, t = tiling.m, tiling.m + 2
    _, out_channels, h, w = grad.shape
    rows, cols = -(-h // m), -(-w // m)
    grad = F.pad(grad, [0, m * cols - w, 0, m * rows - h])
    tiles = grad.reshape(out_channels, rows, m, cols, m).permute(2, 4, 0, 1, 3).reshape(m * m, -1)
    dm = (tiling.output.t() @ tiles).reshape(t * t, out_channels, rows * cols)
    dv = torch.bmm(transformed.transpose(1, 2), dm)  # [t*t, C, tiles]
    dt = (tiling.input.t() @ dv.reshape(t * t, -1)).reshape(t, t, -1, rows, cols)
    padded = grad.new_zeros(dt.shape[2], rows + 1, m, cols + 1, m)  # [C, rows + 1, m, cols + 1, m]: the padded image
    for i0, i in ((0, slice(0, m)), (1, slice(m, t))):
        for j0, j in ((0, slice(0, m)), (1, slice(m, t))):
            part = dt[i, j].permute(2, 3, 0, 4, 1)  # [C, rows, rows of the tile, cols, cols of the tile]
            padded[:, i0:i0 + rows, :part.shape[2], j0:j0 + cols, :part.shape[4]] += part
    return padded.reshape(1, -1, m * rows + m, m * cols + m)[:, :, 1:h + 1, 1:w + 1]


def _winograd_images(step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                     transformed: torch.Tensor) -> torch.Tensor:
    """`_winograd_forward` or `_winograd_adjoint` of every image of a batch, one at a time."""
    return _per_sample(lambda i: step(x[i:i + 1], transformed), x.shape[0])


class _CachedWinograd(torch.autograd.Function):
    """3x3 convolution, padding 1, of every image by F(m x m, 3x3) with a transformed kernel that is not trained;
    the input gradient is the exact adjoint (plain tensor operations, so differentiable again)."""

    @staticmethod
    def forward(ctx, x, transformed, bias):
        ctx.save_for_backward(transformed)
        y = _winograd_images(_winograd_forward, x, transformed)
        return y if bias is None else y.add_(bias.reshape(1, -1, 1, 1))

    @staticmethod
    def backward(ctx, grad):
        (transformed,) = ctx.saved_tensors
        gx = gb = None
        if ctx.needs_input_grad[0]:
            gx = _winograd_images(_winograd_adjoint, grad, transformed)
        if ctx.needs_input_grad[2]:
            gb = grad.sum(dim=[0, 2, 3])
        return gx, None, gb
