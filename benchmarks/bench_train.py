"""Fine-tuning speed and memory: config F (random weights, random data) at 256 px on the CPU, 1024 px on CUDA.

    python benchmarks/bench_train.py [--cpu-resolution 256] [--cuda-resolution 1024] [--batch 4] [--repeats 2]

Each case runs in its own process (peak memory is its own) through the real `toonlib.train.Trainer`
(TrainConfig defaults: R1 every 16 minibatches, ADA with p = 0, style mixing, fp16 blocks on CUDA as
NVIDIA's configs have them). Every phase is timed separately, the phases interleaved (Gmain Greg Dmain
Dreg, Gmain ...), and seconds per kimg are extrapolated with lazy regularisation amortised:
(1000 / batch) * (Gmain + Dmain + Dreg / 16), and with the optional path-length regulariser + Greg / 4.
Snapshots (network files, fakes grid) are not included. Min and median over repeats are reported,
because these machines have bursts of 3-10x slowdowns.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import tempfile
import time
from pathlib import Path

PHASES = ("Gmain", "Greg", "Dmain", "Dreg")


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
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        rng = np.random.default_rng(0)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (res, res, 3), dtype=np.uint8)).save(root / "data" / f"{i}.png")
        G = Generator(img_resolution=res, **fp16)
        save_network(root / "base.pt", Networks(G_ema=G, G=G, D=Discriminator(img_resolution=res, **fp16)))
        del G
        config = TrainConfig(data=str(root / "data"), resume=str(root / "base.pt"), run_dir=str(root / "run"),
                             batch_size=batch, prepare="none", pl_weight=2, device=device)
        trainer = Trainer(config, progress=False)
        reals = torch.rand(batch, 3, res, res, device=device) * 2 - 1

        def timed(phase: str) -> float:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            trainer.run_phase(phase, reals)
            if device == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start

        for phase in PHASES:
            timed(phase)  # warm-up (allocator, cuDNN autotuning)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = {phase: [] for phase in PHASES}
        for _ in range(repeats):
            for phase in PHASES:
                times[phase].append(timed(phase))
        peak = (torch.cuda.max_memory_allocated() / 2**30 if device == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    queue.put({"times": times, "peak_gib": peak})


def measure(device: str, res: int, batch: int, repeats: int, threads: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(device, res, batch, repeats, threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def sec_per_kimg(times: dict[str, float], batch: int, with_pl: bool) -> float:
    step = times["Gmain"] + times["Dmain"] + times["Dreg"] / 16 + (times["Greg"] / 4 if with_pl else 0)
    return 1000 / batch * step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-resolution", type=int, default=256)
    parser.add_argument("--cuda-resolution", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args()

    import torch

    cases = [("cpu", args.cpu_resolution)] + ([("cuda", args.cuda_resolution)] if torch.cuda.is_available() else [])
    print(f"config F, batch {args.batch}, {args.repeats} repeats, {args.threads} CPU threads; seconds (min / median)")
    header = (f"{'device':6} {'res':>5} " + " ".join(f"{p:>15}" for p in PHASES)
              + f" {'s/kimg':>15} {'s/kimg +pl':>15} {'peak GiB':>9}")
    print(header)
    for device, res in cases:
        result = measure(device, res, args.batch, args.repeats, args.threads)
        times = result["times"]
        best = {p: min(t) for p, t in times.items()}
        median = {p: statistics.median(t) for p, t in times.items()}
        cells = [f"{best[p]:7.2f}/{median[p]:7.2f}" for p in PHASES]
        for with_pl in (False, True):
            fast, typical = sec_per_kimg(best, args.batch, with_pl), sec_per_kimg(median, args.batch, with_pl)
            cells.append(f"{fast:7.0f}/{typical:7.0f}")
        print(f"{device:6} {res:5d} " + " ".join(f"{c:>15}" for c in cells) + f" {result['peak_gib']:9.2f}")
    if not torch.cuda.is_available():
        print("(no CUDA device: the 1024 px GPU case was skipped)")


if __name__ == "__main__":
    main()
