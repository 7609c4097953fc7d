"""Run-time settings toonlib applies to its own process: the C allocator's tunables and the compute precision.

Allocator. PyTorch's CPU tensors come from the C library's `malloc`. glibc serves blocks above its mmap
threshold (128 KiB, adapting up to 32 MiB) with freshly mapped pages and unmaps them again on `free`, so
every large activation (a 1024 px layer's is 128 MiB) is page-faulted and zeroed by the kernel anew on
every pass: on a 2-core machine a 1024 px generator forward took ~0.55 M minor page faults and ~1.8 s of
system time next to ~4.5 s of arithmetic (docs/design.md section 11). `tune_allocator()` raises glibc's
mmap threshold to 1 GiB and its trim threshold to 2 GiB (`mallopt`), so freed blocks stay in the heap and
the next pass reuses them, which is what tcmalloc or jemalloc would do if preloaded. The price: the process
keeps up to 2 GiB of freed memory for reuse instead of returning it to the system at once. toonlib calls
it when it builds its first network; set `TOONLIB_MALLOC=default` in the environment to keep glibc's own
behaviour. Other C libraries (musl, macOS, Windows) are left alone.

Precision. `resolve_precision` turns 'auto' | 'fp32' | 'bf16' | 'fp16' into the dtype an `autocast`
region computes in (None: plain float32); `autocast` opens that region.

CUDA graphs. On a GPU, `project()` records its step once as a CUDA graph and replays it (`cuda_graphs`);
set `TOONLIB_CUDA_GRAPHS=off` to run every step op by op instead.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
from typing import Callable, Iterator, TypeVar

import torch

from .messages import warn

__all__ = ["ALLOCATOR_ENV", "CUDA_GRAPHS_ENV", "PRECISIONS", "allocator_tuned", "autocast", "cuda_graphs",
           "check_precision", "native_bf16", "resolve_precision", "tune_allocator", "with_gradients"]

ALLOCATOR_ENV = "TOONLIB_MALLOC"  # "default" (or "off", "0"): leave glibc's malloc as it is
CUDA_GRAPHS_ENV = "TOONLIB_CUDA_GRAPHS"  # "off" (or "0", "default"): projection steps run op by op on CUDA too
_OPT_OUT = ("default", "off", "0", "false", "no")

# glibc <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
MMAP_THRESHOLD = 1 << 30  # blocks this large still get their own mapping (and go back to the system on free)
TRIM_THRESHOLD = (1 << 31) - 1  # free memory kept at the top of the heap before it is returned

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

_state: dict[str, bool] = {}


def tune_allocator(libc: object | None = None) -> bool:
    """Keep freed large blocks in glibc's heap for reuse (see the module doc); once per process.

    Returns whether the tunables are in effect: False when `TOONLIB_MALLOC=default` opts out or the C
    library is not glibc. `libc` is for tests (an object with a `mallopt(param, value)` method).
    """
    if "tuned" in _state:
        return _state["tuned"]
    tuned = False
    if os.environ.get(ALLOCATOR_ENV, "").strip().lower() not in _OPT_OUT:
        if libc is None and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(None)
        if libc is not None:
            tuned = _set_tunables(libc)
    _state["tuned"] = tuned
    return tuned


def _set_tunables(libc) -> bool:
    """mallopt returns 1 on success. Old glibc refuses thresholds above 32 MiB: then large blocks are
    served from the heap by switching mmap off (M_MMAP_MAX = 0) instead."""
    if not libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and not libc.mallopt(M_MMAP_MAX, 0):
        return False
    return bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def allocator_tuned() -> bool:
    """Whether `tune_allocator` has changed this process's malloc settings."""
    return _state.get("tuned", False)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 in hardware: CUDA GPUs from Ampere on, CPUs with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_precision(precision: str) -> None:
    """ValueError unless `precision` is one of `PRECISIONS`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device` (None: float32 throughout).

    'auto' picks bfloat16 on CPUs that compute it natively (see `native_bf16`) and float32 elsewhere, CUDA
    included: there projection replays its step as a CUDA graph, and bfloat16 was no faster (500 W+ steps at
    1024 px on an H200: 9.5 s fp32, 9.6 s bf16; docs/design.md section 11). 'fp16' is meant for CUDA (with loss
    scaling, see `projection.project`).
    """
    check_precision(precision)
    if precision == "auto":
        return torch.bfloat16 if device.type == "cpu" and native_bf16(device) else None
    dtype = _DTYPES[precision]
    if device.type == "cpu" and dtype == torch.float16:
        warn("precision='fp16' on the CPU: float16 is meant for CUDA GPUs (with loss scaling), not measured on CPUs; "
             "precision='auto' picks bfloat16 on CPUs that compute it in hardware, else float32")
    elif device.type == "cpu" and dtype == torch.bfloat16 and not native_bf16(device):
        warn("precision='bf16' on a CPU without bfloat16 in hardware (AVX512-BF16 or AMX): emulated, a projection "
             "step measured 160x slower than in float32; precision='auto' picks float32 here")
    return dtype


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None, cache: bool = True) -> Iterator[None]:
    """`torch.autocast` to `dtype` on `device`'s type, or nothing when dtype is None. `cache=False` while a CUDA
    graph is captured (autocast's cache of weight casts must not outlive the capture)."""
    if dtype is None:
        yield
    else:
        with torch.autocast(device.type, dtype=dtype, cache_enabled=cache):
            yield


def side_by_side(device: torch.device, num: int) -> int:
    """How many worker threads `project()` steps a batch of `num` targets on, side by side, sharing torch's intra-op
    threads out among them: on the CPU up to one per intra-op thread (a step on one thread does about 2/3 of its
    work on two, docs/design.md section 11), else 1 (the batch steps as one)."""
    return min(num, torch.get_num_threads()) if device.type == "cpu" else 1


@contextlib.contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to `count` for this block, then restored (it is process-wide)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cuda_graphs(device: torch.device) -> bool:
    """Whether `project()` replays its step as a CUDA graph on `device`: on CUDA devices, unless the environment
    variable TOONLIB_CUDA_GRAPHS is 'off' (or '0', 'false', 'no', 'default')."""
    return device.type == "cuda" and os.environ.get(CUDA_GRAPHS_ENV, "").strip().lower() not in _OPT_OUT


_Function = TypeVar("_Function", bound=Callable)


def with_gradients(function: _Function) -> _Function:
    """`function` run with autograd on, whatever its caller's `torch.no_grad()` or `torch.inference_mode()` (where
    inference code usually runs): an optimisation inside it failed there with torch's "element 0 of tensors does not
    require grad". A wrapper of toonlib's own, not torch's decorators: `messages.warn` names the caller's line."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with torch.inference_mode(False), torch.enable_grad():
            return function(*args, **kwargs)
    return wrapper  # type: ignore[return-value]

