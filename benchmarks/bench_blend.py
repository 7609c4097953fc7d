"""Time of one blend-explorer slider update: re-mix the blended generator in place and render 4 seeds.

    python benchmarks/bench_blend.py [--resolutions 256 1024] [--repeats 3] [--threads 2] [--precisions auto fp32]

Full-size config-F generators with random weights (the cost is the same as with real ones), swapped at 8, 16 and 32
px (those below the resolution). The
update is exactly what `toonlib.widgets.BlendExplorer.render` does per slider move: `Blender.set`
(in-place lerp of every synthesis parameter) plus one synthesis of the cached ws, batch 4, under the explorer's
`precision` (its default 'auto': bfloat16 on CPUs that compute it in hardware). The base and toon images are cached by
the explorer and not re-rendered. Interleaved swap resolutions and precisions, min and median over repeats.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from spawned import at_least, resolution

from toonlib.blending import Blender
from toonlib.networks import Generator, z_from_seeds
from toonlib.runtime import autocast, resolve_precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=resolution(16), nargs="+", default=[256, 1024],
                        help="powers of two from 16 (swap resolutions 8, 16, 32 below each)")
    parser.add_argument("--repeats", type=at_least(1), default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=["auto", "fp32"], choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {args.threads} CPU threads, config F, 4 seeds per update; seconds, min / "
          "median over repeats\n")
    print(f"{'device':6} {'res':>5} {'precision':>15} | {'re-mix (Blender.set)':>20} | {'render 4 seeds':>15} | "
          f"{'update total':>13}")
    print("-" * 88)
    for device in devices:
        for res in args.resolutions:
            torch.manual_seed(0)
            base = Generator(img_resolution=res).eval().requires_grad_(False).to(device)
            toon = copy.deepcopy(base)  # a fine-tuned stand-in, as the explorer blends: two unrelated generators
            with torch.no_grad():  # drew toonlib's "two different faces" warning on every run
                for p in toon.synthesis.parameters():
                    p.add_(0.05 * p.std(correction=0) * torch.randn_like(p))
            blender = Blender(low=toon, high=base)
            ws = base.mapping(z_from_seeds(range(4), base.z_dim, device), None, truncation_psi=0.7)
            dtypes = {p: resolve_precision(p, torch.device(device)) for p in args.precisions}
            mix = {p: [] for p in args.precisions}
            render = {p: [] for p in args.precisions}
            swaps = [swap for swap in (8, 16, 32) if swap < res]  # below the model's own (16 px: 8 alone)
            with torch.no_grad():
                for dtype in dtypes.values():  # warm-up
                    with autocast(torch.device(device), dtype):
                        blender.set(swaps[0]).synthesis(ws)
                for _ in range(args.repeats):
                    for swap in swaps:
                        for precision, dtype in dtypes.items():
                            start = time.perf_counter()
                            G = blender.set(swap)
                            if device == "cuda":
                                torch.cuda.synchronize()
                            mixed = time.perf_counter()
                            with autocast(torch.device(device), dtype):
                                G.synthesis(ws)
                            if device == "cuda":
                                torch.cuda.synchronize()
                            mix[precision].append(mixed - start)
                            render[precision].append(time.perf_counter() - mixed)
            fmt = lambda v: f"{min(v):6.3f} / {statistics.median(v):6.3f}"  # noqa: E731
            for precision, dtype in dtypes.items():
                total = [a + b for a, b in zip(mix[precision], render[precision])]
                label = f"{precision} ({str(dtype or torch.float32).removeprefix('torch.')})"
                print(f"{device:6} {res:5d} {label:>15} | {fmt(mix[precision]):>20} | {fmt(render[precision]):>15} | "
                      f"{fmt(total):>13}")


if __name__ == "__main__":
    main()
