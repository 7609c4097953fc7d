"""Seconds per projection step (synthesis + LPIPS-VGG + backward + Adam) at 256 and 1024 px.

    python benchmarks/bench_projection.py [--resolutions 256 1024] [--rounds 3] [--steps 3] [--threads 2]

Config-F generators with random weights, LPIPS-VGG with a random trunk (`pnet_rand=True`: the same
compute as the real metric, and it needs no download), batch 1, W+, float32 unless `--precision` says otherwise
(`project()`'s own default, 'auto', is bfloat16 on CPUs that compute it in hardware). Steps are timed through
`toonlib.projection.project`'s callback (one step = the time between two callbacks), so what is measured is
exactly the public code path. Resolutions are interleaved round by round (A B A B ...) and the min
and median are reported, because these machines have bursts of 3-10x slowdowns.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

from spawned import at_least, resolution


def step_times(G, target, net, steps: int, precision: str = "fp32") -> list[float]:
    from toonlib.projection import project

    stamps: list[float] = []
    project(G, target, steps=steps + 1, lpips_net=net, w_avg_samples=1000, progress=False, precision=precision,
            callback=lambda step, dist, w: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps, stamps[1:])]


def bench_device(device: str, resolutions: list[int], rounds: int, steps: int,
                 precision: str) -> dict[int, list[float]]:
    import lpips
    import torch

    from toonlib.networks import Generator

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).to(device)
    models = {res: Generator(img_resolution=res).to(device) for res in resolutions}
    targets = {res: torch.rand(1, 3, res, res) * 2 - 1 for res in resolutions}
    for res in resolutions:  # warm-up: allocator, cuDNN autotuning
        step_times(models[res], targets[res], net, 1, precision)
    times: dict[int, list[float]] = {res: [] for res in resolutions}
    for _ in range(rounds):
        for res in resolutions:
            times[res] += step_times(models[res], targets[res], net, steps, precision)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=resolution(16), nargs="+", default=[256, 1024],
                        help="generator resolutions, powers of two from 16 to 1024")
    parser.add_argument("--rounds", type=at_least(1), default=3)
    parser.add_argument("--steps", type=at_least(1), default=3, help="timed steps per round")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "auto", "bf16", "fp16"],
                        help="project()'s precision (default here: fp32; project()'s own default is 'auto', "
                        "bfloat16 on CPUs that compute it in hardware)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {args.threads} CPU threads, config F, precision={args.precision!r}, W+, "
          f"batch 1; seconds per projection step, {args.rounds} rounds x {args.steps} steps\n")
    header = f"{'device':6} {'res':>5} | {'min':>7} {'median':>7} {'n':>3}"
    print(header)
    print("-" * len(header))
    for device in devices:
        for res, t in bench_device(device, args.resolutions, args.rounds, args.steps, args.precision).items():
            print(f"{device:6} {res:5d} | {min(t):7.3f} {statistics.median(t):7.3f} {len(t):3d}")


if __name__ == "__main__":
    main()
