"""The ways in that run on a GPU, on tiny random models, each on `--device` against the same call on the CPU.

    python benchmarks/check_cuda.py [--device cuda] [--steps 30] [--out DIR]

The test suite runs on CPUs (CI has no GPU); this script is what a session with a GPU runs to see that the
device paths work as a user calls them: `project` (W and W+, 'auto' precision, as CUDA graphs replay it, inside
torch.no_grad(), of a float16 generator, a batch), `render` and `blend` of its latents, and `finetune` (ADA on,
float16 layers on CUDA, metric off: the real KID needs Inception's weights) followed by a resume. Each row says
whether it ran, its seconds on the device and how far its numbers are from the CPU's. A row fails when its call
raises, gives non-finite numbers or warns (a user would see the warning). Device and CPU differ by float rounding
(TF32 convolutions are on by default in torch), which a projection's steps grow: the rows show those differences,
which fail nothing. With `--out`, the table goes to DIR/check_cuda.md. The exit status is 1 when a row failed.
"""
from __future__ import annotations

import argparse
import copy
import functools
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from spawned import at_least  # noqa: E402
from tiny import random_lpips, tiny_generator  # noqa: E402

import toonlib  # noqa: E402
from toonlib.checkpoints import Networks, save_network  # noqa: E402
from toonlib.networks import Discriminator, Generator  # noqa: E402
from toonlib.projection import ProjectionResult, render  # noqa: E402

STEPS = 30  # projection steps of each call (--steps)


def _finite(*arrays: torch.Tensor | np.ndarray) -> None:
    for a in arrays:
        if not torch.isfinite(torch.as_tensor(a)).all():
            raise ValueError("non-finite numbers in the result")


def _gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float().cpu() - b.detach().float().cpu()).abs().max())


@functools.cache
def _lpips() -> torch.nn.Module:
    return random_lpips()  # one for every call (project moves it to the call's device)


def _projection(device: str, steps: int, **kwargs) -> ProjectionResult:
    G, net = tiny_generator(0), _lpips()
    target = render(tiny_generator(0), torch.randn(1, G.num_ws, G.w_dim) * 0.3 + G.mapping.w_avg)
    return toonlib.project(kwargs.pop("G", G), kwargs.pop("target", target), kwargs.pop("space", "w+"), steps,
                           lpips_net=net, device=device, progress=False, w_avg_samples=1000, **kwargs)


def check_project(device: str, steps: int, space: str) -> str:
    mine, cpu = _projection(device, steps, space=space), _projection("cpu", steps, space=space)
    _finite(mine.w, mine.losses)
    return (f"final distance {float(mine.losses[-1].sum()):.4f} (CPU {float(cpu.losses[-1].sum()):.4f}); "
            f"max abs(w - CPU's) {_gap(mine.w, cpu.w):.2e} after {steps} steps")


def check_project_variants(device: str, steps: int) -> str:
    plain = _projection(device, steps)
    with torch.no_grad():
        no_grad = _projection(device, steps)
    half = _projection(device, steps, G=tiny_generator(0).half())
    batch = _projection(device, steps, target=render(tiny_generator(0), torch.randn(3, 1, 16) * 0.3), seed=[0, 1, 2])
    _finite(no_grad.w, half.w, batch.w)
    return (f"under no_grad: max abs(w - outside) {_gap(no_grad.w, plain.w):.2e}; G.half(): "
            f"{_gap(half.w, plain.w):.2e}; batch of 3 ran ({tuple(batch.w.shape)})")


def check_render_blend(device: str) -> str:
    base = tiny_generator(0)
    toon = copy.deepcopy(base)  # a fine-tuned model's stand-in: its base's weights, moved a little
    with torch.no_grad():
        for param in toon.parameters():
            param.add_(0.1 * param.std(correction=0) * torch.randn_like(param))
    w = torch.randn(2, base.num_ws, base.w_dim) * 0.3 + base.mapping.w_avg
    on_device = render(toonlib.blend(toon.to(device), base.to(device), 8), w.to(device))
    on_cpu = render(toonlib.blend(toon.cpu(), base.cpu(), 8), w)
    _finite(on_device)
    return f"blend at 8 px, render: max abs(image - CPU's) {_gap(on_device, on_cpu):.2e} (images in [-1, 1])"


def _training_base(root: Path) -> tuple[Path, Path]:
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    blobs = [(x, y, r) for x in range(5, 11) for y in range(5, 11) for r in range(2, 5)]  # each image its own: copies
    for i, index in enumerate(rng.choice(len(blobs), 32, replace=False)):  # are warned of, a "warned" row
        image = Image.new("RGB", (16, 16), (230, 150, 60))
        x, y, r = blobs[index]
        ImageDraw.Draw(image).ellipse([x - r, y - r, x + r, y + r], fill=(30, 40, 160))
        image.save(data / f"{i:02d}.png")
    torch.manual_seed(0)
    sizes = dict(img_resolution=16, channel_base=256, channel_max=32, num_fp16_res=2, conv_clamp=256)
    G = Generator(z_dim=32, w_dim=32, **sizes)
    save_network(root / "base.safetensors", Networks(G_ema=copy.deepcopy(G), G=G, D=Discriminator(**sizes)))
    return data, root / "base.safetensors"


def check_finetune(device: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        data, base = _training_base(Path(tmp))
        settings = dict(data=str(data), resume=str(base), run_dir=str(Path(tmp) / "run"), prepare="none",
                        batch_size=4, snapshot_kimg=0.008, image_seeds=(0, 1, 2, 3), metric="none", device=device)
        infos: list[dict] = []
        first = toonlib.finetune(kimg=0.016, progress=False, callback=infos.append, **settings)
        last = toonlib.finetune(kimg=0.032, progress=False, callback=infos.append, **settings)  # resumes the run
        G = toonlib.load_generator(last)
        image = render(G, G.mapping(torch.randn(1, G.z_dim), None))
        _finite(image, *(p for p in G.parameters()))
        kimgs = [info.get("kimg") for info in infos]
        return f"{len(infos)} snapshots (kimg {kimgs}); resumed from {Path(first).name} to {Path(last).name}"


CHECKS = {
    "project W+ (auto precision)": lambda device, steps: check_project(device, steps, "w+"),
    "project W (auto precision)": lambda device, steps: check_project(device, steps, "w"),
    "project: no_grad, float16 G, batch": check_project_variants,
    "blend + render": lambda device, steps: check_render_blend(device),  # no projection steps
    "finetune (ADA, fp16 layers) + resume": lambda device, steps: check_finetune(device),
}


def table_row(title: str, ok: str, seconds: float, said: str) -> str:
    """A row of check_cuda.md: a '|' in a cell (an error's or a warning's text) escaped, else it ended the cell when
    rendered and the rest of the cell was lost (forty-second session's audit)."""
    cells = (title, ok, f"{seconds:.1f}", said)
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="the device checked against the CPU (--device cpu: the CPU "
                        "against itself, as the tests run it)")
    parser.add_argument("--steps", type=at_least(1), default=STEPS, help="projection steps of each call")
    parser.add_argument("--out", type=Path, help="folder for check_cuda.md")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():  # it checked the CPU against itself: "yes"
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device here; --device cpu "
                     "checks the CPU against itself")
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    lines = [f"{name}, torch {torch.__version__}, toonlib's ways in on {args.device} against the CPU\n",
             "| check | ran | seconds | against the CPU |", "|---|---|---|---|"]
    failed = 0
    for title, check in CHECKS.items():
        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                said, ok = check(args.device, args.steps), "yes"
            except Exception as error:  # reported in the row; the others still run
                said, ok = f"{type(error).__name__}: {error}".replace("\n", " ")[:400], "**no**"
                traceback.print_exc()
        warned = sorted({f"{w.category.__name__}: {str(w.message)[:200]}" for w in caught})
        if warned:  # a user would see them
            said, ok = f"{said}; warned: {' / '.join(warned)}", "**warned**" if ok == "yes" else ok
        failed += ok != "yes"
        lines.append(table_row(title, ok, time.perf_counter() - started, said))
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    print("\n" + text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "check_cuda.md").write_text(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
