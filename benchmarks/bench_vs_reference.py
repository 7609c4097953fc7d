"""toonlib against a reference StyleGAN2 (benchmarks/reference_ops.py: the papers' math composed plainly, as NVIDIA's
reference ops compute it on a CPU, and the papers' projector and training loops), and optionally against an older
toonlib, on the same random config-F weights.

    python benchmarks/bench_vs_reference.py [--before /tmp/toonlib-before] [--rounds 2] [--steps 3]
           [--cases project forward train batch] [--resolutions 256 1024] [--threads 2] [--precisions auto fp32 bf16]
           [--tuned-reference] [--untuned-toonlib] [--reference-before /tmp/toonlib-before]

Cases (each measurement in its own process, the implementations interleaved round by round, A B C A B C ...):

* project: seconds per projection step (synthesis + VGG16 LPIPS + backward + Adam + noise renormalisation) in W
  and W+, batch 1: `toonlib.project` (timed between its callbacks) and the StyleGAN2 paper's projector loop.
* forward: generator forward, batch 1, const noise, no autograd. toonlib's plain column is `G.synthesis` in float32,
  exact as a forward outside projection must be; a --precisions column renders under that precision's autocast, as
  the blend explorer's pictures do (`BlendExplorer(precision='auto')`: bfloat16 on CPUs that compute it).
* train: one fine-tuning minibatch at 256 px, batch 4, ADA on (p = 0.2, --ada-p): seconds of Gmain + Dmain + Dreg / 16
  (R1 every 16 minibatches) and + Greg / 4 (path length every 4, NVIDIA's default), each phase timed on its own
  through toonlib's public `TrainConfig` / `Trainer.run_phase` and the reference training phases.
* batch: photos per second projecting N = 1, 2, 4, 8 targets at once (W+, 256 px), toonlib only.

--precisions adds toonlib at these precisions (auto, fp32, bf16, fp16) as columns of its own: projection in W and W+
at every resolution, and the forward (above). The plain toonlib column's projection is `precision='auto'`, what a user
gets, and the first line says what that resolves to on this machine (bfloat16 on CPUs with AVX512-BF16 or AMX, else
float32).

--tuned-reference adds the reference once more with toonlib's malloc settings (`toonlib.runtime.tune_allocator`)
in its process: what the allocator alone gives, apart from the rest of toonlib's changes. --untuned-toonlib adds
toonlib once more with `TOONLIB_MALLOC=default` (glibc's own malloc behaviour, the opt-out): what the setting costs
in memory and gains in time. --reference-before adds the reference of another checkout (its
benchmarks/reference_ops.py) as a column of its own: a rewritten reference checked to cost what the old one did.

Reported: min and median seconds per step over all timed steps, CPU seconds per step (user + system of the
process, which also shows time the kernel spends zeroing pages), and peak RSS during the timed loop
(VmHWM, reset after set-up) and over the whole process. Every process runs as a user gets it: glibc malloc,
nothing preloaded, `TOONLIB_MALLOC` unset (toonlib tunes its own process, see toonlib/runtime.py). 256 px is
NVIDIA's published FFHQ-256 architecture (channel_base 16384), 1024 px is config F (32768).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spawned import at_least

HERE = Path(__file__).resolve().parent
CHANNEL_BASE = {256: 16384, 512: 32768, 1024: 32768}
TRAIN_BATCH = 4
ADA_P = 0.2  # the default of --ada-p


# --------------------------------------------------------------------------------------------
# Worker side (one process per measurement)


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


class _Clock:
    """Wall and CPU stamps; `reset_peak` restarts the kernel's peak-RSS counter (VmHWM) at the current RSS."""

    setup_peak_mb = 0.0

    def __init__(self):
        self.wall, self.cpu = [], []

    def stamp(self) -> None:
        r = resource.getrusage(resource.RUSAGE_SELF)
        self.wall.append(time.perf_counter())
        self.cpu.append(r.ru_utime + r.ru_stime)

    @staticmethod
    def reset_peak() -> None:
        _Clock.setup_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM and ru_maxrss
        except OSError:
            pass

    def result(self, skip: int) -> dict:
        diff = lambda xs: [b - a for a, b in zip(xs, xs[1:])][skip:]  # noqa: E731
        loop_peak = _status_kib("VmHWM") / 1024
        return {"wall": diff(self.wall), "cpu": diff(self.cpu), "loop_peak_mb": loop_peak,
                "process_peak_mb": max(loop_peak, _Clock.setup_peak_mb)}


def _generator(impl: str, res: int, weights: str):
    import torch

    if impl == "reference":
        import reference_ops as ref

        G = ref.Generator(img_resolution=res, channel_base=CHANNEL_BASE[res])
    else:
        from toonlib.networks import Generator

        G = Generator(img_resolution=res, channel_base=CHANNEL_BASE[res])
    G.load_state_dict(torch.load(weights, weights_only=True))
    return G.eval().requires_grad_(False)


def _work_project(impl: str, res: int, space: str, batch: int, steps: int, warmup: int, weights: str,
                  precision: str | None) -> dict:
    import torch

    G = _generator(impl, res, weights)
    targets = torch.rand(batch, 3, res, res, generator=torch.Generator().manual_seed(1)) * 2 - 1
    clock = _Clock()

    def callback(*_):
        if len(clock.wall) == warmup:
            clock.reset_peak()
        clock.stamp()

    if impl == "reference":
        import reference_ops as ref

        torch.manual_seed(0)
        ref.project_steps(G, targets, ref.VGG16Features(), space=space, num_steps=warmup + 1 + steps,
                          w_avg_samples=1000, callback=callback)
    else:
        import warnings

        import lpips

        from toonlib import project  # the public name: an older toonlib's module was toonlib/project.py

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            net = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
        extra = {} if precision is None else {"precision": precision}
        project(G, targets, space=space, steps=warmup + 1 + steps, lpips_net=net,
                w_avg_samples=1000, progress=False, callback=callback, **extra)
    return clock.result(skip=warmup)


def _work_forward(impl: str, res: int, steps: int, warmup: int, weights: str, precision: str | None) -> dict:
    import contextlib

    import torch

    G = _generator(impl, res, weights)
    if precision is None:
        context = contextlib.nullcontext
    else:
        from toonlib.runtime import autocast, resolve_precision

        dtype = resolve_precision(precision, torch.device("cpu"))
        context = lambda: autocast(torch.device("cpu"), dtype)  # noqa: E731
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, 512, generator=torch.Generator().manual_seed(2)), None)
    clock = _Clock()
    for i in range(warmup + 1 + steps):
        if i == warmup:
            clock.reset_peak()
        with torch.no_grad(), context():
            G.synthesis(ws, noise_mode="const")
        clock.stamp()
    return clock.result(skip=warmup)


def _work_train(impl: str, res: int, steps: int, weights: str, d_weights: str, ada_p: float) -> dict:
    import torch

    reals = torch.rand(TRAIN_BATCH, 3, res, res, generator=torch.Generator().manual_seed(3)) * 2 - 1
    torch.manual_seed(0)
    if impl == "reference":
        import reference_ops as ref

        G = ref.Generator(img_resolution=res, channel_base=CHANNEL_BASE[res])
        D = ref.Discriminator(img_resolution=res, channel_base=CHANNEL_BASE[res])
        G.load_state_dict(torch.load(weights, weights_only=True))
        D.load_state_dict(torch.load(d_weights, weights_only=True))
        run_phase = ref.train_phase_fn(G, D, TRAIN_BATCH, ada_p=ada_p)
        return _time_phases(run_phase, reals, steps)

    import numpy as np
    from PIL import Image

    from toonlib.checkpoints import Networks, save_network
    from toonlib.networks import Discriminator, Generator
    from toonlib.train import TrainConfig, Trainer

    G = Generator(img_resolution=res, channel_base=CHANNEL_BASE[res])
    D = Discriminator(img_resolution=res, channel_base=CHANNEL_BASE[res])
    G.load_state_dict(torch.load(weights, weights_only=True))
    D.load_state_dict(torch.load(d_weights, weights_only=True))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        rng = np.random.default_rng(0)
        for i in range(8):  # the dataset needs at least 8 images; the timed minibatches are `reals`
            Image.fromarray(rng.integers(0, 256, (res, res, 3), dtype=np.uint8)).save(root / "data" / f"{i}.png")
        save_network(root / "base.safetensors", Networks(G_ema=G, G=G, D=D))
        del G, D
        config = TrainConfig(data=str(root / "data"), resume=str(root / "base.safetensors"), run_dir=str(root / "run"),
                             batch_size=TRAIN_BATCH, prepare="none", pl_weight=2, augment="ada", augment_p=ada_p,
                             device="cpu")
        trainer = Trainer(config, progress=False)
        return _time_phases(trainer.run_phase, reals, steps)


def _time_phases(run_phase, reals, repeats: int) -> dict:
    """Every phase once as warm-up, then `repeats` rounds of Gmain Greg Dmain Dreg, each phase timed alone."""
    phases = ("Gmain", "Greg", "Dmain", "Dreg")
    for phase in phases:
        run_phase(phase, reals)
    _Clock.reset_peak()
    out = {p: {"wall": [], "cpu": []} for p in phases}
    for _ in range(repeats):
        for phase in phases:
            clock = _Clock()
            clock.stamp()
            run_phase(phase, reals)
            clock.stamp()
            r = clock.result(skip=0)
            out[phase]["wall"] += r["wall"]
            out[phase]["cpu"] += r["cpu"]
    last = _Clock().result(skip=0)
    return {"phases": out, "loop_peak_mb": last["loop_peak_mb"], "process_peak_mb": last["process_peak_mb"]}


def worker(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    if spec.get("reference_dir"):  # --reference-before: that checkout's reference_ops, not this one's
        sys.path.insert(0, spec["reference_dir"])
        import reference_ops

        if Path(reference_ops.__file__).resolve().parent != Path(spec["reference_dir"]).resolve():
            raise RuntimeError(f"reference_ops came from {reference_ops.__file__}, not {spec['reference_dir']}")
    if spec.get("root") is not None:  # the toonlib measured is the one asked for: said before the work, not after
        import toonlib  # noqa: F401

        _check_toonlib_root(spec["root"])
    if spec.get("tune_allocator"):
        from toonlib.runtime import tune_allocator

        if not tune_allocator():
            raise RuntimeError("toonlib.runtime.tune_allocator() could not set glibc's malloc tunables here")
    case = spec["case"]
    if case in ("project", "batch"):
        result = _work_project(spec["impl"], spec["res"], spec["space"], spec["batch"], spec["steps"],
                               spec["warmup"], spec["weights"], spec.get("precision"))
    elif case == "forward":
        result = _work_forward(spec["impl"], spec["res"], spec["steps"], spec["warmup"], spec["weights"],
                               spec.get("precision"))
    else:
        result = _work_train(spec["impl"], spec["res"], spec["steps"], spec["weights"], spec["d_weights"],
                             spec["ada_p"])
    _check_toonlib_root(spec.get("root"))
    if spec.get("untuned"):
        from toonlib.runtime import allocator_tuned

        if allocator_tuned():
            raise RuntimeError("TOONLIB_MALLOC=default did not keep toonlib from tuning malloc")
    return result


def _check_toonlib_root(root: str | None) -> None:
    """Every toonlib module this process ran came from `root` (an editable install of another checkout can
    otherwise fill in modules that an older toonlib lacks)."""
    if root is None:
        return
    strays = [m.__file__ for name, m in list(sys.modules.items())
              if name.split(".")[0] == "toonlib" and getattr(m, "__file__", None)
              and not Path(m.__file__).resolve().is_relative_to(Path(root).resolve())]
    if strays:
        raise RuntimeError(f"toonlib modules from outside {root}: {strays}")


# --------------------------------------------------------------------------------------------
# Parent side


def run_worker(spec: dict, before: str | None, reference_before: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "TOONLIB_MALLOC", "MALLOC_CONF")}
    env["GLIBC_TUNABLES"] = ""
    impl = spec["impl"]
    # this checkout's toonlib, whatever is installed (another checkout's script measured the installed one, and
    # said so after the measurement; thirty-third session's audit); the reference process imports none
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), before if impl == "before" else str(HERE.parent)])
    roots = {"before": before, "after": str(HERE.parent)}
    if impl.startswith("after:"):  # toonlib at a given precision
        spec = {**spec, "precision": impl.split(":")[1]}
        impl = "after"
    if impl == "untuned":  # toonlib with its malloc setting turned off
        env["TOONLIB_MALLOC"] = "default"
        spec, impl = {**spec, "untuned": True}, "after"
    if impl == "tuned":  # the reference, with toonlib's malloc settings (toonlib's runtime module from this checkout)
        spec = {**spec, "impl": "reference", "tune_allocator": True}
    if impl == "reference_before":  # another checkout's reference
        spec = {**spec, "impl": "reference", "reference_dir": str(Path(reference_before) / "benchmarks")}
    spec = {**spec, "impl": "toonlib" if impl in roots else spec["impl"], "root": roots.get(impl)}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def reference_generator(res: int):
    """The benchmarks' random generator at `res` (reference_ops, seeded with `res`; NVIDIA's channel base)."""
    import torch

    sys.path.insert(0, str(HERE))
    import reference_ops as ref

    torch.manual_seed(res)
    return ref.Generator(img_resolution=res, channel_base=CHANNEL_BASE[res])


def make_weights(folder: Path, resolutions: list[int]) -> dict[int, dict[str, str]]:
    """Random config-F weights, one state dict per resolution (G and D), shared by every implementation."""
    import reference_ops as ref
    import torch

    out = {}
    for res in resolutions:
        G = reference_generator(res)
        D = ref.Discriminator(img_resolution=res, channel_base=CHANNEL_BASE[res])  # drawn after G, as before
        paths = {"G": str(folder / f"G{res}.pt"), "D": str(folder / f"D{res}.pt")}
        torch.save(G.state_dict(), paths["G"])
        torch.save(D.state_dict(), paths["D"])
        out[res] = paths
    return out


def _auto_precision() -> str:
    """What `project(precision='auto')` computes in on this machine's CPU (this checkout's toonlib says)."""
    import torch

    sys.path.insert(0, str(HERE.parent))
    from toonlib.runtime import resolve_precision

    return {None: "float32", torch.bfloat16: "bfloat16"}[resolve_precision("auto", torch.device("cpu"))]


def _probability(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--before", help="root of an older toonlib checkout to compare as well (a git worktree)")
    parser.add_argument("--cases", nargs="+", default=["project", "forward", "train", "batch"],
                        choices=["project", "forward", "train", "batch"])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 1024], choices=sorted(CHANNEL_BASE))
    parser.add_argument("--rounds", type=at_least(1), default=2, help="processes per implementation and case")
    parser.add_argument("--steps", type=at_least(1), default=3, help="timed steps per process (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every process")
    parser.add_argument("--precisions", nargs="+", default=[], choices=["auto", "fp32", "bf16", "fp16"],
                        help="also measure toonlib's projection and forward at these precisions (columns of their own)")
    parser.add_argument("--tuned-reference", action="store_true",
                        help="also measure the reference with toonlib's malloc settings (project, forward)")
    parser.add_argument("--untuned-toonlib", action="store_true",
                        help="also measure toonlib with TOONLIB_MALLOC=default (project, forward)")
    parser.add_argument("--ada-p", type=_probability, default=ADA_P,
                        help=f"the augmentation probability of the train case (default {ADA_P}; its cost depends on "
                             "the random draws, 0 leaves them all identity)")
    parser.add_argument("--reference-before", metavar="ROOT",
                        help="also measure the reference of another checkout (its benchmarks/reference_ops.py)")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.before and not (Path(args.before) / "toonlib" / "__init__.py").is_file():  # it failed at its first turn
        parser.error(f"--before {args.before}: no toonlib/__init__.py there (give the root of a checkout or worktree)")
    if args.reference_before and not (Path(args.reference_before) / "benchmarks" / "reference_ops.py").is_file():
        parser.error(f"--reference-before {args.reference_before}: no benchmarks/reference_ops.py there "
                     "(give the root of a checkout or worktree)")

    precisions = [f"after:{p}" for p in args.precisions]
    impls = (["reference", "after"] + (["before"] if args.before else []) + (["tuned"] if args.tuned_reference else [])
             + (["untuned"] if args.untuned_toonlib else []) + precisions
             + (["reference_before"] if args.reference_before else []))
    names = _names(precisions)
    print(f"load average at start: {Path('/proc/loadavg').read_text().split()[:3]}; {os.cpu_count()} CPUs, "
          f"{args.threads} threads; {args.rounds} rounds x {args.steps} timed steps; implementations: "
          + ", ".join(names[i] for i in impls) + f"; toonlib's precision='auto' is {_auto_precision()} here",
          flush=True)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        weights = make_weights(Path(tmp), sorted(set(args.resolutions) | ({256} if "train" in args.cases else set())))
        jobs = []  # (key, spec) in the order they run: interleaved implementations, round by round
        base = {"threads": args.threads, "steps": args.steps, "warmup": 1}
        for r in range(args.rounds):
            order = impls[r % len(impls):] + impls[:r % len(impls)]
            for res in args.resolutions:
                w = weights[res]["G"]
                for impl in order:
                    if "project" in args.cases:
                        for space in ("w", "w+"):
                            jobs.append((("project", res, space, impl), {**base, "case": "project", "impl": impl,
                                         "res": res, "space": space, "batch": 1, "weights": w}))
                    if "forward" in args.cases:  # G.synthesis: float32, or under a --precisions autocast
                        jobs.append((("forward", res, impl), {**base, "case": "forward", "impl": impl, "res": res,
                                                              "weights": w, "steps": args.steps + 2}))
            if "train" in args.cases:
                for impl in [i for i in order if i not in ("tuned", "untuned") and i not in precisions]:
                    jobs.append((("train", 256, impl), {**base, "case": "train", "impl": impl, "res": 256,
                                                        "weights": weights[256]["G"], "d_weights": weights[256]["D"],
                                                        "steps": max(1, args.steps - 1), "ada_p": args.ada_p}))
        if "batch" in args.cases:
            res = min(args.resolutions)
            for n in (1, 2, 4, 8):
                jobs.append((("batch", res, n), {**base, "case": "batch", "impl": "after", "res": res, "space": "w+",
                                                 "batch": n, "weights": weights[res]["G"], "steps": 2}))
        results: dict[tuple, list[dict]] = {}
        for i, (key, spec) in enumerate(jobs):
            print(f"  [{i + 1}/{len(jobs)}] {_job_label(key, names)} ...", end="", flush=True, file=sys.stderr)
            results.setdefault(key, []).append(run_worker(spec, args.before, args.reference_before))
            print(f" {time.time() - started:.0f} s", flush=True, file=sys.stderr)

    print(f"load average at end: {Path('/proc/loadavg').read_text().split()[:3]}; "
          f"total {time.time() - started:.0f} s\n")
    report(results, args, impls, names)


def _names(precisions: list[str]) -> dict[str, str]:
    """Each implementation's name in the tables and progress lines ('after' is this checkout's toonlib; `precisions`:
    the 'after:<precision>' columns of --precisions)."""
    return {"reference": "reference", "after": "toonlib", "before": "toonlib before",
            "tuned": "reference malloc-tuned", "untuned": "toonlib TOONLIB_MALLOC=default",
            "reference_before": "reference before", **{i: f"toonlib {i.split(':')[1]}" for i in precisions}}


def _job_label(key: tuple, names: dict[str, str]) -> str:
    """A job's key as its progress line says it, each implementation by the table's name: "forward 256 toonlib" (it
    said "('forward', 256, 'after')", the script's own name for toonlib; forty-second session's audit)."""
    return " ".join(names.get(part, part) if isinstance(part, str) else str(part) for part in key)


def _merge(runs: list[dict]) -> dict:
    return {"wall": sum((r["wall"] for r in runs), []), "cpu": sum((r["cpu"] for r in runs), []),
            "loop_peak_mb": max(r["loop_peak_mb"] for r in runs),
            "process_peak_mb": max(r["process_peak_mb"] for r in runs)}


def report(results: dict, args, impls: list[str], names: dict[str, str]) -> None:
    def table(title: str, rows: list[tuple[str, dict[str, dict]]]) -> None:
        cols = [i for i in impls if all(i in by_impl for _, by_impl in rows)]
        print(title)
        head = f"| case | {' | '.join(names[i] + ' s/step min / med' for i in cols)} | " \
               f"{' | '.join('CPU s/step ' + names[i] + ' (med)' for i in cols)} | " \
               f"{' | '.join('speedup ' + names[i] + ' (reference med / med)' for i in cols if i != 'reference')} | " \
               f"peak RSS MB loop ({' / '.join(names[i] for i in cols)}) | " \
               f"peak RSS MB process ({' / '.join(names[i] for i in cols)}) |"
        print(head)
        print("|" + "---|" * (head.count("|") - 1))
        for label, by_impl in rows:
            cells = [label]
            med = {i: statistics.median(by_impl[i]["wall"]) for i in cols}
            cells += [f"{min(by_impl[i]['wall']):.2f} / {med[i]:.2f}" for i in cols]
            cells += [f"{statistics.median(by_impl[i]['cpu']):.2f}" for i in cols]
            cells += [f"{med['reference'] / med[i]:.2f}x" for i in cols if i != "reference"]
            cells.append(" / ".join(f"{by_impl[i]['loop_peak_mb']:.0f}" for i in cols))
            cells.append(" / ".join(f"{by_impl[i]['process_peak_mb']:.0f}" for i in cols))
            print("| " + " | ".join(cells) + " |")
        print()

    title = "Seconds per step, reference = benchmarks/reference_ops.py (plain ops, as NVIDIA's reference ops compute):"
    for case in ("project", "forward"):
        rows = []
        for res in args.resolutions:
            for space in ("w", "w+") if case == "project" else (None,):
                key = (case, res, space) if space else (case, res)
                if key + ("after",) in results:
                    # the forward runs no autocast: its plain toonlib column is float32 too, whatever `precision='auto'`
                    # is here (a table filed it under "auto = bf16"; thirty-third session's audit)
                    autocast = [i.split(":", 1)[1] for i in impls if i.startswith("after:")]  # --precisions' columns
                    label = (f"projection step {res} px {space.upper()}" if space
                             else f"forward {res} px (no grad; toonlib float32"
                             + (f", {', '.join(autocast)} under autocast)" if autocast else ")"))  # audit
                    rows.append((label, {i: _merge(results[key + (i,)]) for i in impls if key + (i,) in results}))
        if rows:
            table(title, rows)

    if ("train", 256, "after") in results:
        impls = [i for i in impls if ("train", 256, i) in results]  # --tuned-reference, --untuned-toonlib: not trained
        others = [i for i in impls if i != "reference"]
        print(f"Fine-tuning at 256 px, batch {TRAIN_BATCH}, ADA p = {args.ada_p}: seconds per minibatch from per-phase "
              "medians (min over runs in brackets)")
        print(f"| | {' | '.join(names[i] for i in impls)} | {' | '.join('speedup ' + names[i] for i in others)} |")
        print("|" + "---|" * (1 + len(impls) + len(others)))
        per = {}
        for i in impls:
            runs = results[("train", 256, i)]
            phases = {p: sum((r["phases"][p]["wall"] for r in runs), []) for p in runs[0]["phases"]}
            per[i] = {p: (statistics.median(t), min(t)) for p, t in phases.items()}
        for label, with_pl in (("Gmain + Dmain + Dreg/16", False), ("+ Greg/4 (path length, NVIDIA's default)", True)):
            def step(i, k, with_pl=with_pl):
                t = {p: v[k] for p, v in per[i].items()}
                return t["Gmain"] + t["Dmain"] + t["Dreg"] / 16 + (t["Greg"] / 4 if with_pl else 0)
            cells = [f"{step(i, 0):.2f} ({step(i, 1):.2f})" for i in impls]
            cells += [f"{step('reference', 0) / step(i, 0):.2f}x" for i in others]
            print(f"| {label} | " + " | ".join(cells) + " |")
        for p in ("Gmain", "Greg", "Dmain", "Dreg"):
            print(f"| {p} | " + " | ".join(f"{per[i][p][0]:.2f} ({per[i][p][1]:.2f})" for i in impls)
                  + " | " + " | ".join(f"{per['reference'][p][0] / per[i][p][0]:.2f}x" for i in others) + " |")
        peaks = " / ".join(f"{max(r['process_peak_mb'] for r in results[('train', 256, i)]):.0f}" for i in impls)
        print(f"peak RSS MB, process ({' / '.join(names[i] for i in impls)}): {peaks}\n")

    batch = [k for k in results if k[0] == "batch"]
    if batch:
        print(f"Batch projection, toonlib, W+ {batch[0][1]} px: photos per second")
        print("| N | s/step (med) | photos/s | vs N=1 | peak RSS MB loop |")
        print("|---|---|---|---|---|")
        base = None
        for key in sorted(batch, key=lambda k: k[2]):
            r = _merge(results[key])
            rate = key[2] / statistics.median(r["wall"])
            base = base or rate
            print(f"| {key[2]} | {statistics.median(r['wall']):.2f} | {rate:.3f} | {rate / base:.2f}x | "
                  f"{r['loop_peak_mb']:.0f} |")
        print()



if __name__ == "__main__":
    main()
