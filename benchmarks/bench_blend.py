"""Time of one blend-explorer slider update: re-mix the blended generator in place and render 4 seeds.

    python benchmarks/bench_blend.py [--resolutions 256 1024] [--repeats 3] [--threads 2]

Full-size config-F generators with random weights (the cost is the same as with real ones). The
update is exactly what `toonlib.widgets.BlendExplorer.render` does per slider move: `Blender.set`
(in-place lerp of every synthesis parameter) plus one synthesis of the cached ws, batch 4. The
base and toon images are cached by the explorer and not re-rendered. Interleaved swap resolutions,
min and median over repeats.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from toonlib.blending import Blender
from toonlib.networks import Generator, z_from_seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {args.threads} CPU threads, config F, 4 seeds per update; seconds\n")
    print(f"{'device':6} {'res':>5} | {'re-mix (Blender.set)':>20} | {'render 4 seeds':>15} | {'update total':>13}")
    print("-" * 72)
    for device in devices:
        for res in args.resolutions:
            torch.manual_seed(0)
            toon = Generator(img_resolution=res).eval().requires_grad_(False).to(device)
            base = Generator(img_resolution=res).eval().requires_grad_(False).to(device)
            blender = Blender(low=toon, high=base)
            ws = base.mapping(z_from_seeds(range(4), base.z_dim, device), None, truncation_psi=0.7)
            mix, render = [], []
            with torch.no_grad():
                blender.set(16).synthesis(ws)  # warm-up
                for _ in range(args.repeats):
                    for swap in (8, 16, 32):
                        start = time.perf_counter()
                        G = blender.set(swap)
                        if device == "cuda":
                            torch.cuda.synchronize()
                        mixed = time.perf_counter()
                        G.synthesis(ws)
                        if device == "cuda":
                            torch.cuda.synchronize()
                        mix.append(mixed - start)
                        render.append(time.perf_counter() - mixed)
            total = [a + b for a, b in zip(mix, render)]
            fmt = lambda v: f"{min(v):6.3f} / {statistics.median(v):6.3f}"  # noqa: E731
            print(f"{device:6} {res:5d} | {fmt(mix):>20} | {fmt(render):>15} | {fmt(total):>13}")


if __name__ == "__main__":
    main()
