"""Where a projection step's time goes: the generator's forward + backward and LPIPS' forward + backward, each timed
alone, set up as `toonlib.project` runs them (kernel cache, channels-last where it pays, the precision's autocast).

    python benchmarks/bench_step_parts.py [--resolutions 256 1024] [--precisions auto fp32] [--rounds 3]
           [--passes 8] [--threads 2] [--profile generator|lpips]

Config-F generators with random weights (NVIDIA's channel base, as in bench_vs_reference.py), LPIPS-VGG with a
random trunk (`pnet_rand=True`: the same compute), batch 1, W+, on the CPU. The generator's pass is differentiated
through a fixed random image (the step differentiates through LPIPS instead: the same backward pass), to the
latents and the noise maps; LPIPS' pass to the image, at the size projection feeds it. Parts are interleaved round
by round and their min and median are reported. To compare two checkouts, run this script with each on PYTHONPATH,
alternating. `--profile` adds torch.profiler's busiest operators of one part.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Callable

from bench_vs_reference import CHANNEL_BASE  # NVIDIA's channel base per resolution, as the side-by-side benchmark
from spawned import at_least


def parts(res: int, precision: str) -> dict[str, Callable[[], object]]:
    """The generator's and LPIPS' forward + backward at `res`, as closures run the way a projection step runs them."""
    import lpips
    import torch

    from toonlib import convolution, runtime
    from toonlib.losses import PerceptualDistance
    from toonlib.networks import Generator
    from toonlib.projection import _lpips_size, _synthesize

    device = torch.device("cpu")
    torch.manual_seed(0)
    G = Generator(img_resolution=res, channel_base=CHANNEL_BASE[res]).eval().requires_grad_(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval().requires_grad_(False)
    dtype = runtime.resolve_precision(precision, device)
    layout = convolution.channels_last_pays(device, winograd=True)
    target = torch.rand(1, 3, res, res) * 2 - 1
    with convolution.channels_last(layout):
        distance = PerceptualDistance(net, _lpips_size(target))
    kernels = convolution.FrozenKernels(G, net)
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim), None)
    ws.requires_grad_(True)
    noise = {name: torch.randn(1, 1, *buffer.shape, requires_grad=True)
             for name, buffer in G.named_buffers() if name.endswith("noise_const")}
    probe = torch.randn(1, 3, res, res)
    image = torch.rand(1, 3, res, res) * 2 - 1

    def generator() -> object:
        with convolution.winograd(kernels=kernels), convolution.channels_last(layout):
            with runtime.autocast(device, dtype):
                images = _synthesize(G, ws, noise)
            return torch.autograd.grad((images.float() * probe).sum(), [ws, *noise.values()])

    def perceptual() -> object:
        x = image.clone().requires_grad_(True)
        with convolution.winograd(kernels=kernels), convolution.channels_last(layout):
            with runtime.autocast(device, dtype):
                dist = distance(_lpips_size(x)).float()
            return torch.autograd.grad(dist.sum(), [x])

    return {"generator": generator, "lpips": perceptual}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 1024], choices=sorted(CHANNEL_BASE))
    parser.add_argument("--precisions", nargs="+", default=["auto", "fp32"], choices=["auto", "fp32", "bf16"])
    parser.add_argument("--rounds", type=at_least(1), default=3)
    parser.add_argument("--passes", type=at_least(1), default=8, help="timed passes of each part per round")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--profile", choices=["generator", "lpips"],
                        help="also print torch.profiler's busiest operators of this part")
    args = parser.parse_args()

    import torch

    from toonlib.runtime import resolve_precision

    torch.set_num_threads(args.threads)
    auto = resolve_precision("auto", torch.device("cpu"))
    print(f"torch {torch.__version__}, {args.threads} CPU threads ({torch.backends.cpu.get_cpu_capability()}), "
          f"precision='auto' is {'bfloat16' if auto == torch.bfloat16 else 'float32'} here; milliseconds per "
          f"forward + backward, {args.rounds} rounds x {args.passes} passes\n")
    print("| res | precision | generator min / median | LPIPS min / median |")
    print("|---|---|---|---|")
    for res in args.resolutions:
        for precision in args.precisions:
            runs = parts(res, precision)
            for run in runs.values():  # warm-up: kernel cache, allocator
                run()
                run()
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.rounds):
                for name, run in runs.items():
                    for _ in range(args.passes):
                        start = time.perf_counter()
                        run()
                        times[name].append(time.perf_counter() - start)
            cells = [f"{min(t) * 1e3:.1f} / {statistics.median(t) * 1e3:.1f}" for t in times.values()]
            print(f"| {res} | {precision} | " + " | ".join(cells) + " |", flush=True)
            if args.profile:
                from torch.profiler import ProfilerActivity, profile

                with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                    for _ in range(args.passes):
                        runs[args.profile]()
                print(prof.key_averages(group_by_input_shape=True).table(
                    sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=36,
                    max_shapes_column_width=80))


if __name__ == "__main__":
    main()
