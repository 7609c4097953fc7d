"""Does reduced precision keep a projection's result? The same target projected in float32 and at --precision, and,
for calibration, in float32 once more with the target moved by 1e-6 (how far apart rounding alone puts two
projections); each result's final LPIPS (measured the same way, in float32) and the toon it draws.

    python benchmarks/bench_precision.py [--precision bf16] [--steps 200] [--space w+] [--resolution 256]
    python benchmarks/bench_precision.py --base ffhq.pkl --toon toon.pkl [--target face.png] [--swap-res 32]

Issue #12's bar for choosing a precision automatically: final LPIPS within 1% of float32's and the same toon,
mean |difference| below 1/255. Without --base: a seeded random generator at --resolution (NVIDIA's FFHQ-256
channel counts at 256 px, config F above), LPIPS with a random VGG16 trunk, a target rendered by that generator
at psi 0.7, and as "toon" model a copy whose weights moved by 30% of their spread. Random networks project
chaotically, which the calibration row shows; real weights (--base and the --toon fine-tuned from it, real
LPIPS, an aligned --target face) are what settle the question. On the CPU, bfloat16 is only fast with
AVX512-BF16 or AMX (`toonlib.runtime.native_bf16`).
"""
from __future__ import annotations

import argparse
import copy
import time
import warnings

from spawned import at_least, resolution


def toon_like(base, spread: float = 0.3, seed: int = 2):
    """A stand-in for a toon model fine-tuned from `base`: a copy whose weights moved by `spread` of their spread
    (also tests/test_precision.py's and bench_gpu.py's), on `base`'s device."""
    import torch

    toon = copy.deepcopy(base)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in toon.parameters():
            drawn = torch.randn(param.shape, generator=generator).to(param.device)
            param.add_(spread * param.std(correction=0) * drawn)
    return toon


def _models(args):
    import torch

    from toonlib import load_generator
    from toonlib.networks import Generator

    if args.base:
        base = load_generator(args.base)
        return base, load_generator(args.toon)
    torch.manual_seed(0)
    res = args.resolution
    base = Generator(img_resolution=res, channel_base=16384 if res <= 256 else 32768).eval().requires_grad_(False)
    return base, toon_like(base)


def _target(args, base):
    import torch

    from toonlib.projection import as_images

    if args.target:
        from PIL import Image

        return as_images(Image.open(args.target), base.img_resolution)
    with torch.no_grad():
        z = torch.randn(1, base.z_dim, generator=torch.Generator().manual_seed(5))
        # clamped: a random generator's images leave [-1, 1], which `project` refuses (it failed at every size; audit)
        return base.synthesis(base.mapping(z, None, truncation_psi=0.7), noise_mode="const").clamp(-1, 1).cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp16"])
    parser.add_argument("--steps", type=at_least(1), default=200)
    parser.add_argument("--space", default="w+", choices=["w", "w+"])
    parser.add_argument("--resolution", type=resolution(16), default=256,
                        help="of the random generator (without --base): a power of two from 16 to 1024")
    parser.add_argument("--base", help="the base generator (checkpoint path, URL or registry name)")
    parser.add_argument("--toon", help="the toon generator fine-tuned from --base")
    parser.add_argument("--target", help="an aligned face image (default: one rendered by the base)")
    parser.add_argument("--swap-res", type=int, default=32, help="the blend's swap resolution")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if bool(args.base) != bool(args.toon):
        parser.error("--base and --toon go together")

    import torch

    from toonlib import blend, project
    from toonlib.losses import PerceptualDistance, build_lpips
    from toonlib.projection import _lpips_size, render

    if args.threads:
        torch.set_num_threads(args.threads)
    base, toon = _models(args)
    target = _target(args, base)
    if args.base:
        net = build_lpips()  # the real LPIPS-VGG, as project() uses it
    else:
        import lpips

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            net = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
    nudged = target + 1e-6 * torch.randn(target.shape, generator=torch.Generator().manual_seed(9))
    runs = {"fp32": ("fp32", target), "fp32, target moved by 1e-6": ("fp32", nudged),
            args.precision: (args.precision, target)}
    results, seconds = {}, {}
    for name, (precision, image) in runs.items():
        start = time.perf_counter()
        results[name] = project(base, image, space=args.space, steps=args.steps, lpips_net=net, progress=False,
                                precision=precision)
        seconds[name] = time.perf_counter() - start
        print(f"  {name}: {seconds[name]:.0f} s", flush=True)

    blended = blend(toon, base, args.swap_res)
    distance = PerceptualDistance(net, _lpips_size(target))  # as project() measures it
    with torch.no_grad():
        final = {name: float(distance(_lpips_size(r.images)).sum()) for name, r in results.items()}
    toons = {name: render(blended, r.w, r.noise) for name, r in results.items()}
    print(f"\n{args.steps} {args.space.upper()} steps, {base.img_resolution} px, "
          f"{'given weights' if args.base else 'random weights'}; final LPIPS in float32; toon blended at "
          f"{args.swap_res} px\n")
    print("| run | final LPIPS | vs fp32 | toon mean abs diff vs fp32 (0-255 levels) | seconds |")
    print("|---|---|---|---|---|")
    for name in results:
        diff = float((toons[name] - toons["fp32"]).abs().mean() * 127.5)
        print(f"| {name} | {final[name]:.5f} | {(final[name] - final['fp32']) / final['fp32']:+.2%} | {diff:.2f} | "
              f"{seconds[name]:.0f} |")
    kept = (abs(final[args.precision] - final["fp32"]) <= 0.01 * final["fp32"]
            and float((toons[args.precision] - toons["fp32"]).abs().mean() * 127.5) < 1)
    print(f"\n{args.precision} {'keeps' if kept else 'does not keep'} the result by issue #12's bar "
          "(final LPIPS within 1%, toon within 1/255); compare with the calibration row before concluding.")


if __name__ == "__main__":
    main()
