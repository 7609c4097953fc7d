"""Fine-tuning speed and memory: config F (random weights, random data) at 256 px on the CPU; 256 and 1024 px on CUDA.

    python benchmarks/bench_train.py [--cpu-resolutions 256] [--cuda-resolutions 256 1024] [--batch 4] [--repeats 2]

Each (device, resolution) runs in its own process (peak memory is its own) through the real
`toonlib.train.Trainer` with the default recipe (R1 every 16 minibatches, path length every 4, style mixing,
fp16 blocks on CUDA as NVIDIA's configs have them). Every phase is timed separately, with ADA on (p = 0.5,
fixed, so the augmentation's cost is real) and off (p = 0), the variants interleaved (on, off, on, off ...),
and seconds per kimg are extrapolated with lazy regularisation amortised:
(1000 / batch) * (Gmain + Dmain + Greg / 4 + Dreg / 16). A snapshot (network file, fakes grid, training
state, metrics plot; no quality metric) is timed on its own. Min and median over repeats are reported,
because these machines have bursts of 3-10x slowdowns. Peak memory: the process's maximum resident set on
the CPU, the largest CUDA allocation on a GPU.

Reference: stylegan2-ada-pytorch's README, one V100: 21.6-24.2 s/kimg at 256 px, 154-162 s/kimg at 1024 px
(its 'auto' config: batch 16 at 256, channel_base 16384; config F at 1024, batch 32 over 8 GPUs in the paper).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import resource
import statistics
import tempfile
import time
from pathlib import Path

from spawned import at_least, in_child

PHASES = ("Gmain", "Greg", "Dmain", "Dreg")
RESOLUTIONS = [2 ** k for k in range(3, 11)]  # the generator's and discriminator's: 8 to 1024 px
VARIANTS = {"ADA p=0.5": 0.5, "no ADA": 0.0}
NVIDIA_V100 = {256: "21.6-24.2", 1024: "154-162"}


def _measure(device: str, res: int, batch: int, repeats: int, threads: int, queue) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from toonlib.checkpoints import Networks, save_network
    from toonlib.networks import Discriminator, Generator
    from toonlib.train import TrainConfig, Trainer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    fp16 = dict(num_fp16_res=4, conv_clamp=256) if device == "cuda" else {}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        rng = np.random.default_rng(0)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (res, res, 3), dtype=np.uint8)).save(root / "data" / f"{i}.png")
        G = Generator(img_resolution=res, **fp16)
        save_network(root / "base.safetensors", Networks(G_ema=G, G=G, D=Discriminator(img_resolution=res, **fp16)))
        del G
        config = TrainConfig(data=str(root / "data"), resume=str(root / "base.safetensors"), run_dir=str(root / "run"),
                             batch_size=batch, prepare="none", device=device, augment="fixed", augment_p=0.5,
                             metric="none", image_seeds=tuple(range(4)))
        with contextlib.redirect_stdout(io.StringIO()):  # its image preparation's lines are no row of the table
            trainer = Trainer(config, progress=False)
        reals = torch.rand(batch, 3, res, res, device=device) * 2 - 1

        def timed(phase: str) -> float:
            sync()
            start = time.perf_counter()
            trainer.run_phase(phase, reals)
            sync()
            return time.perf_counter() - start

        for phase in PHASES:
            timed(phase)  # warm-up (allocator, cuDNN autotuning)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = {variant: {phase: [] for phase in PHASES} for variant in VARIANTS}
        for _ in range(repeats):
            for variant, p in VARIANTS.items():
                trainer.augment_pipe.p.fill_(p)
                for phase in PHASES:
                    times[variant][phase].append(timed(phase))
        trainer.run_dir.mkdir(parents=True, exist_ok=True)
        snapshot = []
        for _ in range(repeats):
            trainer._start_tick()
            sync()
            start = time.perf_counter()
            trainer.snapshot()
            sync()
            snapshot.append(time.perf_counter() - start)
            trainer.cur_nimg += batch  # the next snapshot gets its own files, as in training
        peak = (torch.cuda.max_memory_allocated() / 2**30 if device == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    queue.put({"times": times, "snapshot": snapshot, "peak_gib": peak})


def sec_per_kimg(times: dict[str, float], batch: int) -> float:
    """Seconds per 1000 real images of the default recipe (path length every 4, R1 every 16 minibatches)."""
    return 1000 / batch * (times["Gmain"] + times["Dmain"] + times["Greg"] / 4 + times["Dreg"] / 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-resolutions", type=int, nargs="*", default=[256], choices=RESOLUTIONS)
    parser.add_argument("--cuda-resolutions", type=int, nargs="*", default=[256, 1024], choices=RESOLUTIONS)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=at_least(1), default=2)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args()

    import torch

    cases = [("cpu", res) for res in args.cpu_resolutions]
    cases += [("cuda", res) for res in args.cuda_resolutions] if torch.cuda.is_available() else []
    print(f"config F, batch {args.batch}, {args.repeats} repeats, {args.threads} CPU threads; seconds (min / median)")
    print(f"{'device':6} {'res':>5} {'variant':>10} " + " ".join(f"{p:>13}" for p in PHASES)
          + f" {'s/kimg':>13} {'snapshot s':>13} {'peak GiB':>9} {'V100 s/kimg':>12}")
    for device, res in cases:
        result = in_child(_measure, device, res, args.batch, args.repeats, args.threads)
        snap = result["snapshot"]
        for variant, times in result["times"].items():
            best = {p: min(t) for p, t in times.items()}
            median = {p: statistics.median(t) for p, t in times.items()}
            cells = [f"{best[p]:6.2f}/{median[p]:6.2f}" for p in PHASES]
            cells.append(f"{sec_per_kimg(best, args.batch):6.0f}/{sec_per_kimg(median, args.batch):6.0f}")
            cells.append(f"{min(snap):6.2f}/{statistics.median(snap):6.2f}")
            reference = NVIDIA_V100.get(res, "-") if device == "cuda" else "-"
            print(f"{device:6} {res:5d} {variant:>10} " + " ".join(f"{c:>13}" for c in cells)
                  + f" {result['peak_gib']:9.2f} {reference:>12}")
    if not torch.cuda.is_available():
        print("(no CUDA device: the GPU cases were skipped; NVIDIA's V100 reference: "
              + ", ".join(f"{r} px {s} s/kimg" for r, s in NVIDIA_V100.items()) + ")")


if __name__ == "__main__":
    main()
