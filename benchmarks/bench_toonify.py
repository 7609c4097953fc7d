"""Seconds and peak memory to toonify one photo end to end, per `--invert` mode, at 1024 px.

    python benchmarks/bench_toonify.py [--rounds 3] [--steps 3] [--threads 2] [--modes e4e psp ...]

End to end = `Toonifier(...)(photo)` on examples/grace_hopper.jpg: read the photo, find the landmarks (dlib:
face-alignment's weights need a download), the FFHQ crop at 1024 px, the inversion, the reconstruction
(the base model's rendering; none in 'psp-toonify') and the toon (the blended model's rendering). Models
are loaded before the clock starts. Networks are full size with random weights, which cost the same as
trained ones: config-F generators (base, a toon model, their blend at 64 px) and IR-SE50 pSp / e4e encoders
with 18 W+ entries. LPIPS-VGG has a random trunk (`pnet_rand=True`: same compute, no download).

The optimising modes run `--steps` projection steps; the table adds what their default step count
(500 for 'optimize', 100 for 'e4e+optimize') would take: measured time + (default - steps) x the median
step (steps timed through `project`'s callback). Modes are interleaved round by round (A B C A B C ...)
and the min and median are reported, because these machines have bursts of 3-10x slowdowns. A second
table splits the encoder modes into their stages.

Memory is measured in a fresh process per mode that loads only that mode's networks and toonifies one
photo: "models" is what the process holds once they are loaded (CPU: resident memory; CUDA: allocated),
"peak" the most it held, loading included (CPU: VmHWM; CUDA: `torch.cuda.max_memory_allocated`).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

from spawned import at_least

PHOTO = Path(__file__).parent.parent / "examples" / "grace_hopper.jpg"
MODES = ("e4e", "psp", "psp-toonify", "e4e+optimize", "optimize")
DEFAULT_STEPS = {"optimize": 500, "e4e+optimize": 100}


def _encoder_kind(mode: str) -> str | None:
    return None if mode == "optimize" else "e4e" if mode.startswith("e4e") else "psp"


def toonifiers(device: str, modes: list[str]):
    """One Toonifier per mode over shared full-size random networks (base, a perturbed toon copy, their blend),
    the encoders those modes use, and a random-trunk LPIPS when a mode optimises."""
    import lpips
    import torch

    from toonlib.blending import blend
    from toonlib.checkpoints import Networks
    from toonlib.encoders import Encoder
    from toonlib.networks import Generator
    from toonlib.pipeline import Toonifier

    torch.manual_seed(0)
    base = Generator(img_resolution=1024).eval().requires_grad_(False)
    toon = copy.deepcopy(base)
    with torch.no_grad():
        for p in toon.synthesis.parameters():
            p.add_(0.05 * p.std(correction=0) * torch.randn_like(p))
    checkpoint = Networks(G_ema=blend(toon, base, 64), G=toon)
    kinds = {_encoder_kind(mode) for mode in modes} - {None}
    encoders = {kind: Encoder(kind, n_styles=base.num_ws).eval().requires_grad_(False) for kind in kinds}
    net = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).to(device) if set(modes) & set(DEFAULT_STEPS) else None
    made = {mode: Toonifier(base, checkpoint, invert=mode, encoder=encoders.get(_encoder_kind(mode)),
                            detector="dlib", device=device) for mode in modes}
    return made, net


def run(toonifier, net, steps: int, device: str) -> tuple[float, list[float]]:
    """(seconds, projection step times) of one photo through the toonifier."""
    import torch

    kwargs, stamps = {}, []
    if toonifier.invert in DEFAULT_STEPS:
        kwargs = dict(steps=steps, lpips_net=net, callback=lambda step, dist, w: stamps.append(time.perf_counter()))
    start = time.perf_counter()
    toonifier(PHOTO, progress=False, **kwargs)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, [b - a for a, b in zip(stamps, stamps[1:])]


def stages(toonifier, device: str) -> dict[str, float]:
    """Seconds of each stage of an encoder mode: landmarks + crop, encoder, one rendering."""
    import torch

    from toonlib.images import read_image
    from toonlib.projection import render

    def timed(fn):
        start = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - start

    photo = read_image(PHOTO)
    faces, t_align = timed(lambda: toonifier.align(photo))
    codes, t_encode = timed(lambda: toonifier.encoder.encode([f.image for f in faces]))
    _, t_render = timed(lambda: render(toonifier.generator, codes))
    return {"align": t_align, "encode": t_encode, "render": t_render}


def memory_of(mode: str, device: str, steps: int) -> tuple[float, float]:
    """(models MiB, peak MiB) of this process after loading `mode`'s networks and toonifying one photo."""
    import torch

    made, net = toonifiers(device, [mode])
    if device == "cuda":
        models = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/statm") as f:
            models = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    run(made[mode], net, steps, device)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:  # VmHWM: this process's own peak (ru_maxrss would include the parent's memory at fork time)
        with open("/proc/self/status") as f:
            peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    return models / 2**20, peak / 2**20


def measure_memory(mode: str, device: str, steps: int, threads: int) -> tuple[float, float] | None:
    """`memory_of` in a fresh process, so that no other mode's networks or freed memory count; None when that process
    failed, its error printed: the timings measured before are still reported (a bare CalledProcessError lost them
    all and hid the child's message; forty-second session's audit)."""
    done = subprocess.run([sys.executable, __file__, "--memory-of", mode, "--modes", mode, "--device", device,
                           "--steps", str(steps), "--threads", str(threads)], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"the memory of {mode} could not be measured (its process ended with exit status {done.returncode}):\n"
              f"{done.stderr.strip()}", file=sys.stderr)
        return None
    models, peak = done.stdout.split()[-2:]
    return float(models), float(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="projection steps of the optimising modes")
    parser.add_argument("--threads", type=at_least(1), default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--memory-of", choices=MODES, help=argparse.SUPPRESS)  # measure_memory's child process
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:  # all the work ran, then the table failed on no data (thirty-third session's audit)
        parser.error("--rounds must be at least 1")
    # the modes this process runs: a memory child runs one (it checked every mode, refused the --steps 1 of an
    # encoder-only run, and the run lost its timings; forty-second session's audit)
    modes = [args.memory_of] if args.memory_of else args.modes
    if args.steps < 2 and set(modes) & set(DEFAULT_STEPS):
        parser.error("--steps must be at least 2 for the modes that optimise: a step is timed between two callbacks")

    import torch

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)  # e.g. "the face is small": the example photo's face is 327 px
    if args.memory_of:
        print(*memory_of(args.memory_of, args.device, args.steps))
        return
    from toonlib import runtime

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    runtime.tune_allocator()  # what toonlib does when it builds its first network (unless TOONLIB_MALLOC=default)
    allocator = os.environ.get("LD_PRELOAD", "") or (
        "glibc malloc, tuned by toonlib.runtime" if runtime.allocator_tuned() else "glibc malloc")
    print(f"torch {torch.__version__}, {args.threads} CPU threads, allocator: {allocator}; config-F generators and "
          f"IR-SE50 encoders (random weights, fp32), 1024 px, one photo ({PHOTO.name}), dlib landmarks; "
          f"{args.rounds} rounds, modes interleaved")
    if "cuda" not in devices:
        print("no CUDA device: CPU only")
    for device in devices:
        made, net = toonifiers(device, args.modes)
        for toonifier in made.values():  # warm-up: landmark models, allocator, cuDNN autotuning
            run(toonifier, net, 1, device)
        seconds = {m: [] for m in made}
        step_times = {m: [] for m in made}
        parts = {m: [] for m in made if m in ("e4e", "psp", "psp-toonify")}
        for _ in range(args.rounds):
            for mode, toonifier in made.items():
                t, steps = run(toonifier, net, args.steps, device)
                seconds[mode].append(t)
                step_times[mode] += steps
                if mode in parts:
                    parts[mode].append(stages(toonifier, device))
        del made, net
        memory = {mode: measure_memory(mode, device, args.steps, args.threads) for mode in seconds}
        print(f"\n{device}: seconds per photo (end to end) and memory (MiB)")
        header = (f"{'mode':13} | {'min s':>7} {'median s':>8} | {'models':>7} {'peak':>7} | {'steps':>5} "
                  f"{'s/step':>7} | {'default steps':>13} {'est. s':>8}")
        print(header)
        print("-" * len(header))
        for mode in seconds:
            used = (f"{memory[mode][0]:7.0f} {memory[mode][1]:7.0f}" if memory[mode] is not None
                    else f"{'-':>7} {'-':>7}")  # its process failed: its error is above
            line = f"{mode:13} | {min(seconds[mode]):7.2f} {statistics.median(seconds[mode]):8.2f} | {used} | "
            if mode in DEFAULT_STEPS:
                per_step = statistics.median(step_times[mode])
                full = statistics.median(seconds[mode]) + (DEFAULT_STEPS[mode] - args.steps) * per_step
                line += f"{args.steps:5d} {per_step:7.2f} | {DEFAULT_STEPS[mode]:13d} {full:8.0f}"
            else:
                line += f"{'-':>5} {'-':>7} | {'-':>13} {'-':>8}"
            print(line)
        if parts:
            print(f"\n{device}: stages of the encoder modes, median seconds (landmarks + crop / encoder / one render)")
            for mode, rows in parts.items():
                cells = "  ".join(f"{k} {statistics.median(r[k] for r in rows):5.2f}" for k in rows[0])
                print(f"{mode:13} | {cells}")


if __name__ == "__main__":
    main()
