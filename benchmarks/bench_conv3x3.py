"""Where Winograd pays: a 3x3 convolution (padding 1, batch 1, float32, CPU) by oneDNN's direct algorithm and by
NNPACK's Winograd transforms, at the shapes a projection step runs (the generator's 3x3 layers at 256 and 1024
px, and LPIPS' VGG16 trunk at 256 px), and which of the two `toonlib.ops.conv3x3` picks inside `ops.winograd()`.

    python benchmarks/bench_conv3x3.py [--rounds 7] [--threads 2]

Each call is timed cache-cold (a 64 MiB buffer is written between calls), the two algorithms alternate
call by call, median and min over the rounds. NNPACK transforms the whole kernel on every call, which is
why it loses at small images with many channels (docs/design.md section 3, `ops.WINOGRAD_MIN_SIZE`).
"""
from __future__ import annotations

import argparse
import statistics
import time

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
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    from toonlib import ops, runtime

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
    print("| in -> out channels @ side | oneDNN direct | NNPACK Winograd | direct / Winograd | conv3x3 picks |")
    print("|---|---|---|---|---|")
    for cin, cout, side in SHAPES:
        x = torch.randn(1, cin, side, side)
        w = torch.randn(cout, cin, 3, 3)
        direct = lambda x=x, w=w: F.conv2d(x, w, padding=1)  # noqa: E731
        winograd = lambda x=x, w=w: torch._nnpack_spatial_convolution(x, w, None, [1, 1])  # noqa: E731
        direct(), winograd()
        times: dict[str, list[float]] = {"direct": [], "winograd": []}
        for _ in range(args.rounds):
            times["direct"].append(timed(direct))
            times["winograd"].append(timed(winograd))
        with torch.no_grad(), ops.winograd():
            picked = "Winograd" if not torch.equal(ops.conv3x3(x, w), direct()) else "direct"
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        low = {k: min(v) * 1e3 for k, v in times.items()}
        print(f"| {cin} -> {cout} @ {side} | {med['direct']:.1f} ({low['direct']:.1f}) | "
              f"{med['winograd']:.1f} ({low['winograd']:.1f}) | {med['direct'] / med['winograd']:.2f} | {picked} |")


if __name__ == "__main__":
    main()
