"""Speed and memory of the StyleGAN2 generator (config F, random weights) at 256 and 1024 px.

    python benchmarks/bench_networks.py [--resolutions 256 1024] [--repeats 5] [--threads 2]

For each device (CPU, and CUDA when present) and resolution it prints: forward time (batch 1,
const noise, no grad), forward+backward time to w (what one projection step costs in the
generator), and peak memory. Each measurement runs in its own process so peak RSS is its own.
The min and median over repeats are reported, because these machines have bursts of 3-10x slowdowns;
the variants run one after the other (all forwards, then all forward+backward passes), not interleaved,
so compare rows of one run only.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

from spawned import at_least, in_child

RESOLUTIONS = [2 ** k for k in range(2, 11)]  # the generator's: 4 to 1024 px


def _measure(device: str, res: int, repeats: int, threads: int, queue) -> None:
    import torch

    from toonlib.networks import Generator

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    G = Generator(img_resolution=res).eval().requires_grad_(False).to(device)
    ws = G.mapping(torch.randn(1, G.z_dim, device=device), None)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def forward():
        with torch.no_grad():
            G.synthesis(ws, noise_mode="const")

    def forward_backward():
        w = ws.detach().requires_grad_(True)
        G.synthesis(w, noise_mode="const").square().mean().backward()

    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = {}
    for name, fn in (("forward", forward), ("forward_backward", forward_backward)):
        fn()  # warm-up (allocator, cuDNN autotuning)
        sync()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
                else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_rss) / 1024)
        results[name] = (min(times), statistics.median(times), peak)
    queue.put(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 1024], choices=RESOLUTIONS)
    parser.add_argument("--repeats", type=at_least(1), default=5)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args()

    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {args.threads} CPU threads, config F (fp32), batch 1, const noise; "
          f"times in s (min / median of {args.repeats}); peak memory above the loaded model\n")
    header = f"{'device':6} {'res':>5} | {'forward':>17} | {'fwd+bwd to w':>17} | {'peak MiB fwd':>12} {'fwd+bwd':>8}"
    print(header)
    print("-" * len(header))
    for device in devices:
        for res in args.resolutions:
            r = in_child(_measure, device, res, args.repeats, args.threads)
            f, fb = r["forward"], r["forward_backward"]
            print(f"{device:6} {res:5d} | {f[0]:7.3f} / {f[1]:7.3f} | {fb[0]:7.3f} / {fb[1]:7.3f} | "
                  f"{f[2]:12.0f} {fb[2]:8.0f}")


if __name__ == "__main__":
    main()
