"""Projection on a GPU: toonlib's `project()` against the reference projector loop over plain ops, on the same
random weights, and whether each precision keeps the result.

    python benchmarks/bench_gpu.py [--resolution 1024] [--steps 500] [--reference-steps 100] [--rounds 2]
           [--precisions fp32 bf16 fp16] [--eager] [--batch 1 2 4 8] [--budget SECONDS] [--out DIR] [--device cuda]

Each measurement runs in its own process; the implementations take turns round by round. For the reference
(benchmarks/reference_ops.py: the StyleGAN2 paper's projector loop, W+, on a plain composition of the ops, as
NVIDIA's code base computes it where its CUDA plugins are not compiled) the time is the median second per step over
`--reference-steps` steps, times `--steps`. For toonlib it is one whole `project(G, target, 'w+', steps)` call
as a user makes it (10,000-sample w statistics, LPIPS target features, the final render included), timed from
call to return in a process that ran a 3-step call first; that cold first call is reported too. On CUDA,
project() replays its step as a CUDA graph; `--eager` adds float32 with TOONLIB_CUDA_GRAPHS=off ('fp32-eager').
`--batch` adds photo-steps per second (N / seconds per step) projecting N targets at once (precision auto,
`--batch-steps` each, the steps before the graph replay left out, one process).

Then each precision's result is checked against float32's the way tests/test_precision.py checks it on tiny
models: its final LPIPS distance (measured in float32) within 1%, and the toon drawn from its latents (a blend
of G with a copy moved by 30% of each weight's spread, at 32 px) within 1/255 on average. With random weights
that projection is ill-conditioned (near-perfect fits with other latents), so read those rows against
'fp32-eager' (`--eager`): the same arithmetic in another order. Also shown: how far toonlib's forward pass on
the device is from the reference's on the device and from toonlib's on the CPU, with cuDNN's TF32 on (PyTorch's
default) and off, and how far the first `--agreement-steps` float32 steps replayed as a CUDA graph are from the
same steps op by op (before the ill-conditioning above amplifies rounding).

`--budget` (seconds) stops starting new processes once spent; what ran is reported. With `--out`, the table
goes to DIR/report.md and the raw numbers to DIR/results.json; `--profile` adds each precision's top CUDA
kernels over 5 steps, from its first process (DIR/profile_*.txt). Without a CUDA device the script stops, unless
`--device cpu` asks for the CPU (hours at the defaults).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from bench_precision import toon_like
from bench_vs_reference import CHANNEL_BASE, reference_generator
from spawned import at_least

HERE = Path(__file__).resolve().parent
WARMUP_STEPS = 3
TOON_SWAP = 32


# --------------------------------------------------------------------------------------------
# Worker side (one process per measurement)


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _peak_mb(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.device(device).type == "cuda" else None


def _generators(spec: dict):
    """toonlib's and the reference's generator with the run's weights, and the lpips net, all on spec's device."""
    import lpips
    import reference_ops as ref
    import torch

    from toonlib.networks import Generator

    res, device = spec["res"], spec["device"]
    state = torch.load(spec["weights"], weights_only=True)
    G = Generator(img_resolution=res, channel_base=CHANNEL_BASE[res])
    G_ref = ref.Generator(img_resolution=res, channel_base=CHANNEL_BASE[res])
    G.load_state_dict(state)
    G_ref.load_state_dict(state)
    torch.manual_seed(0)  # the same random VGG16 trunk in every process
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
    return (G.eval().requires_grad_(False).to(device), G_ref.eval().requires_grad_(False).to(device),
            net.eval().to(device))


def _work_toonlib(spec: dict) -> dict:
    import os

    import torch

    from toonlib import project

    if spec.get("eager"):
        os.environ["TOONLIB_CUDA_GRAPHS"] = "off"

    device, steps = spec["device"], spec["steps"]
    G, _, net = _generators(spec)
    target = torch.load(spec["target"], weights_only=True)
    run = dict(lpips_net=net, progress=False, precision=spec["precision"], device=device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        project(G, target, "w+", steps=WARMUP_STEPS, **run)
        _sync(device)
        cold = time.perf_counter() - started
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        stamps: list[float] = []
        started = time.perf_counter()
        result = project(G, target, "w+", steps=steps, callback=lambda *_: stamps.append(time.perf_counter()), **run)
        _sync(device)
        total = time.perf_counter() - started
    result.save(spec["result"])
    out = {"total": total, "cold": cold, "wall": [b - a for a, b in zip(stamps, stamps[1:])],
           "setup": stamps[0] - started, "final_lpips": float(result.losses[-1].sum()), "peak_mb": _peak_mb(device),
           "warnings": sorted({str(w.message)[:300] for w in caught if w.category is not UserWarning})}
    if spec.get("profile"):
        out["profile"] = _profile(G, target, run, device)
    return out


def _work_batch(spec: dict) -> dict:
    import torch

    from toonlib import project
    from toonlib.projection import GRAPH_WARMUP_STEPS

    device = spec["device"]
    G, _, net = _generators(spec)
    target = torch.load(spec["target"], weights_only=True)
    run = dict(lpips_net=net, progress=False, device=device)
    replayed = GRAPH_WARMUP_STEPS + 1  # steps before this index ran op by op or were recorded (on CUDA)
    rates = {}
    for n in spec["sizes"]:
        targets = target.repeat(n, 1, 1, 1)
        project(G, targets, "w+", steps=WARMUP_STEPS, **run)
        stamps: list[float] = []
        project(G, targets, "w+", steps=spec["steps"], callback=lambda *_, s=stamps: s.append(time.perf_counter()),
                **run)
        rates[n] = n / statistics.median(b - a for a, b in zip(stamps[replayed - 1:], stamps[replayed:]))
    return {"photos_per_s": rates}


def _profile(G, target, run: dict, device: str) -> str:
    """The top kernels of 5 projection steps (after the 3-step warm-up), by device time."""
    from torch.profiler import ProfilerActivity, profile

    from toonlib import project

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        project(G, target, "w+", steps=5, **run)
    key = "cuda_time_total" if device.startswith("cuda") else "cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=30, max_name_column_width=60)


def _work_reference(spec: dict) -> dict:
    import reference_ops as ref
    import torch

    device = spec["device"]
    _, G_ref, _ = _generators(spec)
    target = torch.load(spec["target"], weights_only=True)
    torch.manual_seed(0)
    vgg = ref.VGG16Features().to(device)
    ref.project_steps(G_ref, target, vgg, space="w+", num_steps=WARMUP_STEPS)
    _sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    stamps: list[float] = []

    def stamp(_step):
        _sync(device)
        stamps.append(time.perf_counter())

    started = time.perf_counter()
    ref.project_steps(G_ref, target, vgg, space="w+", num_steps=spec["steps"], callback=stamp)
    wall = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"wall": wall, "setup": stamps[0] - started, "peak_mb": _peak_mb(device)}


def _work_check(spec: dict) -> dict:
    """Final LPIPS (float32) and the toon of every precision's result, against float32's; forward agreement with
    TF32 on (PyTorch's default) and off; the first steps replayed as a CUDA graph against the same steps op by op."""
    import copy
    import os

    import torch

    from toonlib import project
    from toonlib.blending import blend
    from toonlib.losses import PerceptualDistance
    from toonlib.projection import ProjectionResult, _lpips_size, render

    device = spec["device"]
    G, G_ref, net = _generators(spec)
    target = torch.load(spec["target"], weights_only=True).to(device)
    toon = blend(toon_like(G), G, TOON_SWAP).to(device)
    distance = PerceptualDistance(net, _lpips_size(target))
    out: dict = {"precisions": {}}
    toons = {}
    for precision, path in spec["results"].items():
        result = ProjectionResult.load(path)
        with torch.no_grad():
            image = render(G, result.w, result.noise).to(device)
            out["precisions"][precision] = {"final_lpips": float(distance(_lpips_size(image)).sum())}
        toons[precision] = render(toon, result.w)
    if "fp32" in toons:
        for precision, image in toons.items():
            out["precisions"][precision]["toon_diff_levels"] = float((image - toons["fp32"]).abs().mean() * 127.5)
    out["tf32"] = {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32}
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(5)).to(device), None)
        on_cpu = copy.deepcopy(G).cpu().synthesis(ws.cpu(), noise_mode="const")
        for suffix, tf32 in (("", out["tf32"]["cudnn"]), ("_no_tf32", False)):
            torch.backends.cudnn.allow_tf32 = tf32
            mine = G.synthesis(ws, noise_mode="const").float()
            theirs = G_ref.synthesis(ws, noise_mode="const").float()
            out["forward_vs_reference" + suffix] = float((mine - theirs).abs().max())
            out["forward_vs_cpu" + suffix] = float((mine.cpu() - on_cpu).abs().max())
        torch.backends.cudnn.allow_tf32 = out["tf32"]["cudnn"]
    runs = {}
    for graphs in ("on", "off"):
        os.environ["TOONLIB_CUDA_GRAPHS"] = graphs
        runs[graphs] = project(G, target, "w+", steps=spec["agreement_steps"], lpips_net=net, precision="fp32",
                               progress=False, device=device)
    on, off = runs["on"], runs["off"]
    out["graph_vs_eager"] = {"steps": spec["agreement_steps"],
                             "loss_rel": float(abs(on.losses - off.losses).max() / abs(off.losses).max()),
                             "w_abs": float((on.w - off.w).abs().max()), "w_spread": float(off.w.std())}
    return out


def worker(spec: dict) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    work = {"toonlib": _work_toonlib, "reference": _work_reference, "check": _work_check, "batch": _work_batch}
    result = work[spec["impl"]](spec)
    result["device_name"] = torch.cuda.get_device_name() if spec["device"].startswith("cuda") else "cpu"
    result["torch"] = torch.__version__
    return result


# --------------------------------------------------------------------------------------------
# Parent side


def run_worker(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec['impl']} {spec.get('precision', '')} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_inputs(folder: Path, res: int) -> tuple[str, str]:
    """Random weights (seeded) and a target the generator can draw (const noise), saved for every process."""
    import torch

    G = reference_generator(res).eval()
    weights, target = folder / "G.pt", folder / "target.pt"
    torch.save(G.state_dict(), weights)
    with torch.no_grad():
        image = G.synthesis(G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(4)), None),
                            noise_mode="const")
    torch.save(image.clamp(-1, 1), target)
    return str(weights), str(target)


def report(runs: dict, check: dict | None, args) -> str:
    lines = []
    any_run = next(iter(runs.values()))[0]
    lines.append(f"{any_run['device_name']}, torch {any_run['torch']}; config F {args.resolution} px, W+, batch 1, "
                 f"{args.steps} steps; seconds (median over processes; min in brackets)\n")
    lines.append("| | total for the steps | s/step median (min) | cold first call (3 steps) | peak GPU MB |")
    lines.append("|---|---|---|---|---|")
    ref_total = None
    if "reference" in runs:
        walls = sum((r["wall"] for r in runs["reference"]), [])
        ref_total = statistics.median(walls) * args.steps
        peak = _peak(runs["reference"])
        lines.append(f"| reference (paper's loop, plain ops) | {ref_total:.1f} (median s/step x {args.steps}) "
                     f"| {statistics.median(walls):.4f} ({min(walls):.4f}) | | {peak} |")
    for precision in _variants(args):
        if precision not in runs:
            continue
        rs = runs[precision]
        totals = [r["total"] for r in rs]
        walls = sum((r["wall"] for r in rs), [])
        peak = _peak(rs)
        speed = f", {ref_total / statistics.median(totals):.2f}x the reference" if ref_total else ""
        lines.append(f"| toonlib precision={precision} | {statistics.median(totals):.1f} ({min(totals):.1f}){speed} "
                     f"| {statistics.median(walls):.4f} ({min(walls):.4f}) "
                     f"| {statistics.median(r['cold'] for r in rs):.1f} | {peak} |")
    if "batch" in runs:
        rates = {int(n): r for n, r in runs["batch"][0]["photos_per_s"].items()}
        one = rates.get(1)
        lines.append(f"\nBatch, precision=auto, {args.batch_steps} steps: " + ", ".join(
            f"N={n} {r:.1f} photo-steps/s" + (f" ({r / one:.2f}x)" if one else "") for n, r in rates.items()))
    found = sorted({w for rs in runs.values() for r in rs for w in r.get("warnings", [])})
    lines += [f"\nwarning: {w}" for w in found]
    if check:
        lines.append("\nResult kept? (final LPIPS measured in float32; toon = blend at "
                     f"{TOON_SWAP} px, mean |difference| to float32's in 0..255 levels)\n")
        lines.append("| precision | final LPIPS | vs fp32 | toon difference | kept (<= 1%, < 1 level) |")
        lines.append("|---|---|---|---|---|")
        base = check["precisions"].get("fp32", {}).get("final_lpips")
        for precision, c in check["precisions"].items():
            rel = (c["final_lpips"] - base) / base if base else float("nan")
            diff = c.get("toon_diff_levels", float("nan"))
            lines.append(f"| {precision} | {c['final_lpips']:.5f} | {100 * rel:+.2f}% | {diff:.3f} | "
                         f"{'yes' if abs(rel) <= 0.01 and diff < 1 else 'no'} |")
        lines.append(f"\nforward, max |toonlib - reference| on the device: {check['forward_vs_reference']:.2e}; "
                     f"max |device - CPU| (toonlib): {check['forward_vs_cpu']:.2e}; TF32 {check['tf32']}; "
                     f"with cuDNN's TF32 off: {check['forward_vs_reference_no_tf32']:.2e} and "
                     f"{check['forward_vs_cpu_no_tf32']:.2e}")
        agree = check["graph_vs_eager"]
        if args.device == "cuda":  # CUDA graphs replay on a GPU only: on the CPU the line meant nothing
            lines.append(f"CUDA graph against op by op, fp32, first {agree['steps']} steps: per-step LPIPS differs by "
                         f"at most {agree['loss_rel']:.2e} of its largest value; w by at most {agree['w_abs']:.2e} "
                         f"(w's spread {agree['w_spread']:.2f})")
    return "\n".join(lines)


def _peak(runs: list[dict]) -> str:
    """The highest peak GPU memory of `runs`, in MB; '-' where none was measured (on the CPU: it printed 0)."""
    peaks = [r["peak_mb"] for r in runs if r["peak_mb"] is not None]
    return f"{max(peaks):.0f}" if peaks else "-"


def _variants(args) -> list[str]:
    return [*args.precisions, *(["fp32-eager"] if args.eager else [])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--resolution", type=int, default=1024, choices=sorted(CHANNEL_BASE))
    parser.add_argument("--steps", type=at_least(2), default=500, help="W+ steps of each toonlib call")
    parser.add_argument("--reference-steps", type=at_least(2), default=100,
                        help="timed steps of each reference process")
    parser.add_argument("--rounds", type=at_least(1), default=2, help="processes per implementation")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"],
                        choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--eager", action="store_true", help="also float32 without CUDA graphs (fp32-eager)")
    parser.add_argument("--batch", type=int, nargs="*", default=[], help="batch sizes for photos per second")
    parser.add_argument("--batch-steps", type=int, default=50, help="steps per batch size")
    parser.add_argument("--agreement-steps", type=int, default=20,
                        help="steps of the CUDA graph against op by op comparison")
    parser.add_argument("--budget", type=float, default=float("inf"), help="seconds; no new process after that")
    parser.add_argument("--device", default=None, help="default: cuda; without a GPU the script stops unless "
                        "--device cpu asks for the CPU, where the defaults take hours (smaller --steps and "
                        "--resolution advised)")
    parser.add_argument("--profile", action="store_true", help="the top kernels of 5 steps per precision")
    parser.add_argument("--out", type=Path, help="folder for report.md, results.json (and profiles)")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    import torch

    if args.device is None and not torch.cuda.is_available():  # it ran for hours on the CPU after one line (thirty-
        # third and forty-second sessions' audits): the CPU only when asked for
        parser.error(f"torch {torch.__version__} sees no CUDA device here: --device cpu runs the benchmark on the CPU, "
                     "where the defaults take hours (smaller --steps and --resolution advised)")
    device = args.device or "cuda"
    args.device = device  # the report's: CUDA-only lines left out on the CPU
    started = time.time()
    runs: dict[str, list[dict]] = {}
    check = None
    with tempfile.TemporaryDirectory() as tmp:
        weights, target = make_inputs(Path(tmp), args.resolution)
        base = {"device": device, "res": args.resolution, "weights": weights, "target": target}
        variants = _variants(args)
        results = {p: str(Path(tmp) / f"{p}.npz") for p in variants}
        jobs = []
        for r in range(args.rounds):
            order = ["reference", *variants]
            order = order[r % len(order):] + order[:r % len(order)]
            for what in order:
                if what == "reference":
                    jobs.append(("reference", {**base, "impl": "reference", "steps": args.reference_steps}))
                else:
                    jobs.append((what, {**base, "impl": "toonlib", "precision": what.split("-")[0],
                                        "eager": what.endswith("-eager"), "steps": args.steps,
                                        "result": results[what],
                                        "profile": args.profile and r == 0}))
        if args.batch:
            jobs.insert(len(variants) + 1, ("batch", {**base, "impl": "batch", "sizes": args.batch,
                                                   "steps": args.batch_steps}))
        for i, (key, spec) in enumerate(jobs):
            if time.time() - started > args.budget:
                print(f"budget spent: {len(jobs) - i} of {len(jobs)} processes not run", file=sys.stderr)
                break
            try:
                runs.setdefault(key, []).append(run_worker(spec))
            except RuntimeError as error:  # the others still run and are reported
                print(error, file=sys.stderr)
            print(f"  [{i + 1}/{len(jobs)}] {key}: {time.time() - started:.0f} s", file=sys.stderr, flush=True)
        runs = {key: found for key, found in runs.items() if found}
        done = {p: path for p, path in results.items() if p in runs}
        if "fp32" in done and time.time() - started <= args.budget + 60:
            try:
                check = run_worker({**base, "impl": "check", "results": done, "agreement_steps": args.agreement_steps})
            except RuntimeError as error:
                print(error, file=sys.stderr)
    text = report(runs, check, args) if runs else "nothing ran (the errors are above)"
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.md").write_text(text + "\n")
        profiles = {k: [r.pop("profile") for r in v if "profile" in r] for k, v in runs.items()}
        for key, found in profiles.items():
            if found:
                (args.out / f"profile_{key}.txt").write_text(found[-1])
        (args.out / "results.json").write_text(json.dumps({"runs": runs, "check": check}, indent=1))
    if not runs:
        sys.exit(1)


if __name__ == "__main__":
    main()
