"""Where Winograd pays: a 3x3 convolution (padding 1, batch 1, float32, CPU) by oneDNN's direct algorithm, by
NNPACK's Winograd F(6x6, 3x3) and by toonlib's F(2x2, 3x3) and F(4x4, 3x3) on a kernel transformed beforehand
(`convolution.FrozenKernels`), at the shapes a projection step runs (the generator's 3x3 layers at 256 and 1024 px,
and LPIPS' VGG16 trunk at 256 px), and which one `toonlib.convolution.conv3x3` picks inside projection's
`convolution.winograd(kernels=...)`.

    python benchmarks/bench_conv3x3.py [--rounds 7] [--threads 2]

Each call is timed cache-cold (a 64 MiB buffer is written between calls), the algorithms alternate call by
call, median and min over the rounds. NNPACK transforms the whole kernel on every call, which is why it loses
at small images with many channels; F(2x2, 3x3) saves less arithmetic per tile but its kernel transform is done
once per projection (docs/design.md section 3, `convolution.WINOGRAD_MIN_SIZE`,
`convolution.CACHED_WINOGRAD_MIN_SIZE`).
"""
from __future__ import annotations

import argparse
import statistics
import time

from spawned import at_least

# (in channels, out channels, image side): the generator's conv1 layers (config F / FFHQ-256 channel counts),
# VGG16's convolutions at 256 px, and their input gradients (channels swapped), each shape once.
SHAPES = sorted({
    *[(512, 512, s) for s in (4, 8, 16, 32)], (512, 512, 64), (256, 256, 128), (128, 128, 256), (64, 64, 512),
    (32, 32, 1024), (256, 256, 64), (128, 128, 128), (64, 64, 256),
    (3, 64, 256), (64, 3, 256), (64, 128, 128), (128, 64, 128), (128, 256, 64), (256, 128, 64),
    (256, 512, 32), (512, 256, 32), (512, 512, 16),
}, key=lambda s: (s[2], s[0], s[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=at_least(1), default=7)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    from toonlib import convolution, runtime

    torch.set_num_threads(args.threads)
    runtime.tune_allocator()  # as in a toonlib process
    if not torch.backends.nnpack.is_available():
        raise SystemExit("this PyTorch build has no NNPACK: conv3x3 always uses oneDNN")
    flush = torch.empty(16 * 1024 * 1024)

    def timed(fn) -> float:
        flush.fill_(1.0)
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    print(f"torch {torch.__version__}, {args.threads} threads, batch 1, fp32, cache-cold, {args.rounds} rounds; "
          f"ms per call, median (min)\n")
    names = {"direct": "oneDNN direct", "nnpack": "NNPACK F(6x6,3x3)", "f23": "F(2x2,3x3) cached",
             "f43": "F(4x4,3x3) cached"}
    print(f"| in -> out channels @ side | {' | '.join(names.values())} | conv3x3 picks |")
    print("|---|---|---|---|---|---|")
    for cin, cout, side in SHAPES:
        x = torch.randn(1, cin, side, side)
        w = torch.randn(cout, cin, 3, 3)
        f23, f43 = (convolution._winograd_kernel(w, tiling) for tiling in (convolution._F23, convolution._F43))
        calls = {
            "direct": lambda x=x, w=w: F.conv2d(x, w, padding=1),
            "nnpack": lambda x=x, w=w: torch._nnpack_spatial_convolution(x, w, None, [1, 1]),
            "f23": lambda x=x, t=f23: convolution._winograd_forward(x, t),
            "f43": lambda x=x, t=f43: convolution._winograd_forward(x, t),
        }
        times: dict[str, list[float]] = {name: [] for name in calls}
        for call in calls.values():
            call()
        for _ in range(args.rounds):
            for name, call in calls.items():
                times[name].append(timed(call))
        kernels = convolution.FrozenKernels(w)
        with torch.no_grad(), convolution.winograd(kernels=kernels):
            y = convolution.conv3x3(x, w)
        picked = ("f23" if kernels.nbytes == f23.nbytes else "f43" if kernels.nbytes == f43.nbytes
                  else "direct" if torch.equal(y, calls["direct"]()) else "nnpack")
        cells = [f"{statistics.median(times[name]) * 1e3:.1f} ({min(times[name]) * 1e3:.1f})" for name in calls]
        print(f"| {cin} -> {cout} @ {side} | {' | '.join(cells)} | {names[picked]} |")

if __name__ == "__main__":
    main()
