"""README.md is tested: its `toonlib` command lines and its Python blocks run as written, offline, on the CPU.

The README is parsed here (```bash lines that start with `toonlib`, ```python blocks), so what runs is what the
README says. Each item runs in README order, in-process (`toonlib.cli.main` is the console script's function),
in a temporary working directory holding the files the README names: `me.jpg`, `photos/`, `faces/`,
`examples/grace_hopper.jpg` (real photos), `toon.pkl` and `ffhq.pkl` (NVIDIA pickles),
`stylegan2-ffhq-config-f.pkl` (a TF pickle). Registry names resolve through the real path: tiny models sit in a
temporary `$TOONLIB_CACHE` under the registry's file names (a cached file without a published checksum is used
as it is): for `e4e-ffhq` the e4e reference checkpoint (tests/fixtures/encoders) with a small 32 px decoder whose
W+ is 8 x 512 like the encoder's codes; that decoder is the base, `ffhq-1024-tf`, and a slightly moved copy of it
the toon model of `toonify-blended-tf` (both in toonlib's format: formats are detected from a file's content, and
each reader has its own tests); NVIDIA's `ada_tiny.pkl` is `ffhq-256-noaug`. `$TORCH_HOME` holds a random VGG16
(LPIPS builds through its real code), face-alignment's weights are absent (so `--detector auto` falls back to
dlib, as documented offline), and every HTTP request goes to a closed port: nothing is downloaded. Web-app lines
start the real app without blocking, and their server must answer on its port before it is stopped.

Substitutions, because some lines are slow by nature even with tiny models (measured on a 2-core machine:
a projection step ~0.5-1 s, a fine-tuning step ~1 s):
* projection's default step count (500, `toonlib.projection.DEFAULT_STEPS`) is 1 here; the README's lines
  rely on that default and pass no `--steps`;
* `toonlib finetune ... --kimg 20` runs with `--kimg 0.008` (one batch of 8).

Every README line needs an entry in CLI_CHECKS (every Python block one in PYTHON_CHECKS) that says what it must
produce: a new or changed line fails until its check is written.
"""
from __future__ import annotations

import contextlib
import copy
import glob
import io
import os
import re
import shlex
import shutil
import time
import traceback
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from browser import free_port, port_is_free
from encoder_fixtures import _tensor, recipe
from nvidia_pickles import FIXTURE as ADA_TINY
from nvidia_pickles import modified_fixture, write
from PIL import Image
from test_cross_format import to_rosinality
from tiny import tiny_generator, write_photos

import toonlib
from toonlib import cli, download, losses, projection
from toonlib.blending import LineageWarning, blend
from toonlib.checkpoints import Networks, load_network, save_network
from toonlib.images import to_pil
from toonlib.models import MODELS
from toonlib.networks import Generator
from toonlib.projection import load_latent, render

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
TF_TINY = REPO / "tests" / "fixtures" / "tf_tiny.pkl"
PROJECTION_STEPS = 1  # instead of 500 (see the module docstring)
KIMG = ("20", "0.008")  # finetune's --kimg as the README gives it, and as run here
CACHED = ("ffhq-1024-tf", "toonify-blended-tf", "e4e-ffhq", "ffhq-256-noaug", "lpips-vgg16")  # lpips: $TORCH_HOME


# ---------------------------------------------------------------------------------------------------------------
# The README's items


@dataclass(frozen=True)
class Item:
    kind: str  # "cli" or "python"
    section: str
    line: int  # README line number
    text: str  # the command (comment removed, as shlex reads it) or the block's source

    @property
    def id(self) -> str:
        first = self.text if self.kind == "cli" else self.text.splitlines()[0]
        return f"{self.section}:{self.line}:{first}"


def readme_items(text: str) -> list[Item]:
    """The ```bash lines that call `toonlib` and the ```python blocks of a README, in order."""
    items, section, fence, body, start = [], "", None, [], 0
    for number, line in enumerate(text.splitlines(), 1):
        if fence is None:
            if line.startswith("## "):
                section = line[3:].strip()
            match = re.fullmatch(r"```(\w*)\s*", line)
            if match:
                fence, body, start = match.group(1), [], number + 1
        elif line.strip() == "```":
            if fence == "python":
                items.append(Item("python", section, start, "\n".join(body)))
            elif fence == "bash":
                for offset, command in enumerate(body):
                    argv = shlex.split(command, comments=True)
                    if argv[:1] == ["toonlib"]:
                        items.append(Item("cli", section, start + offset, shlex.join(argv)))
            fence = None
        else:
            body.append(line)
    return items


def bash_lines(text: str, section: str) -> list[str]:
    """The commands of the ```bash blocks in a README section (comments removed)."""
    lines, current, fence = [], "", None
    for line in text.splitlines():
        if fence is None:
            if line.startswith("## "):
                current = line[3:].strip()
            fence = line[3:].strip() if line.startswith("```") else None
        elif line.strip() == "```":
            fence = None
        elif fence == "bash" and current == section and shlex.split(line, comments=True):
            lines.append(shlex.join(shlex.split(line, comments=True)))
    return lines


ITEMS = readme_items(README.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------------
# The sandbox: a working directory with the README's files, a cache with tiny registry models, no network


@dataclass
class Sandbox:
    work: Path
    cache: Path
    base: Generator  # ffhq-1024-tf here
    toon: Generator  # toonify-blended-tf's G here (its G_ema: the blend at 8 px)
    servers: list = field(default_factory=list)


@dataclass
class Outcome:
    status: int | None = None
    out: str = ""
    err: str = ""
    written: set = field(default_factory=set)  # files created or changed in the working directory
    namespace: dict = field(default_factory=dict)  # a Python block's names
    url: str | None = None  # a web app's address
    page: str = ""  # what the app answered there
    config: str = ""  # the app's Gradio config (JSON text)
    seconds: float = 0.0
    failure: str | None = None  # the traceback of a crash or of a failed check


def fine_tuned(G: Generator, seed: int = 5, amount: float = 0.05) -> Generator:
    """G with every synthesis parameter moved by `amount` of its spread: a stand-in for a fine-tuned G."""
    child = copy.deepcopy(G)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in child.synthesis.parameters():
            if param.numel() > 1:
                param.add_(amount * param.std() * torch.randn(param.shape, generator=generator))
    return child


def _move_synthesis(snapshot: dict) -> None:
    """Fine-tune ada_tiny's G_ema a little (in the pickle's own objects): a toon model of ffhq.pkl."""
    generator = torch.Generator().manual_seed(7)

    def visit(obj) -> None:
        for param in obj.state.get("_parameters", {}).values():
            if param is not None and param.numel() > 1:
                param.data.add_(0.05 * param.std() * torch.randn(param.shape, generator=generator))
        for child in obj.state.get("_modules", {}).values():
            if child is not None:
                visit(child)

    visit(snapshot["G_ema"].state["_modules"]["synthesis"])


def write_e4e(path: Path, decoder: Generator) -> Path:
    """The e4e reference checkpoint (tests/fixtures/encoders) with `decoder` in place of its 512-channel one."""
    spec = recipe("e4e_tiny")
    state = {entry["key"]: _tensor(entry, spec["seed"]) for entry in spec["state_dict"]
             if not entry["key"].startswith("decoder.")}
    state.update({f"decoder.{key}": tensor for key, tensor in to_rosinality(decoder).items()})
    torch.save({"state_dict": state, "opts": spec["opts"], "latent_avg": _tensor(spec["latent_avg"], spec["seed"])},
               path)
    return path


def build_sandbox(root: Path) -> Sandbox:
    cache, work = root / "cache", root / "work"
    cache.mkdir()
    # The base: 32 px, 8 W+ entries of 512 like the e4e encoder's codes, few channels (cheap to run).
    e4e = write_e4e(cache / MODELS["e4e-ffhq"].filename, tiny_generator(3, z_dim=512, w_dim=512))
    base = load_network(e4e).G_ema  # the encoder's decoder, as read from its file: its codes are this base's latents
    toon = fine_tuned(base)
    save_network(cache / MODELS["ffhq-1024-tf"].filename, base)
    save_network(cache / MODELS["toonify-blended-tf"].filename, Networks(G_ema=blend(toon, base, 8), G=toon))
    shutil.copy(ADA_TINY, cache / MODELS["ffhq-256-noaug"].filename)  # an NVIDIA snapshot with its D

    photos = write_photos(work / "photos")  # astronaut, hopper, a photo without a face, a broken file
    (work / "examples").mkdir()
    shutil.copy(REPO / "examples" / "grace_hopper.jpg", work / "examples")
    Image.open(photos / "astronaut.png").convert("RGB").save(work / "me.jpg", quality=95)
    (work / "faces").mkdir()  # fine-tuning wants 8 images at least
    for name in ("astronaut.png", "hopper.jpg", "coffee.png"):
        image = Image.open(photos / name).convert("RGB")
        for turn in range(3 if name != "coffee.png" else 2):
            image.rotate(90 * turn).save(work / "faces" / f"{Path(name).stem}-{turn}.png")
    shutil.copy(ADA_TINY, work / "ffhq.pkl")
    write(modified_fixture(_move_synthesis), work / "toon.pkl")
    shutil.copy(TF_TINY, work / "stylegan2-ffhq-config-f.pkl")
    return Sandbox(work=work, cache=cache, base=base, toon=toon)


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}




def _get(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=60) as response:
        assert response.status == 200, (url, response.status)
        return response.read().decode("utf-8", errors="replace")


def run_item(item: Item, box: Sandbox) -> Outcome:
    outcome = Outcome()
    before = _files(box.work)
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("error", LineageWarning)  # the sandbox's models are parent and child
            if item.kind == "python":
                exec(compile(item.text, f"{README}:{item.line}", "exec"), outcome.namespace)
            else:
                argv = shlex.split(item.text)[1:]
                try:
                    outcome.status = cli.main(CLI_CHECKS[item.text].argv(argv) if item.text in CLI_CHECKS
                                              else argv)
                except SystemExit as exc:  # --help, --version
                    outcome.status = exc.code
                if box.servers:  # a web app: it must answer on its port, then it stops
                    server = box.servers.pop()
                    try:
                        outcome.url = f"http://127.0.0.1:{server.server_port}/"
                        outcome.page = _get(outcome.url)
                        outcome.config = _get(outcome.url + "config")
                    finally:
                        server.close()
    except Exception:
        outcome.failure = traceback.format_exc()
    outcome.seconds = time.monotonic() - start
    outcome.out, outcome.err = out.getvalue(), err.getvalue()
    after = _files(box.work)
    outcome.written = {path for path, stamp in after.items() if before.get(path) != stamp}
    return outcome


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, random_vgg_torch_home) -> dict[Item, Outcome]:
    """Every README item, run in README order in one sandbox and checked right after it ran."""
    root = tmp_path_factory.mktemp("readme")
    box = build_sandbox(root)
    results: dict[Item, Outcome] = {}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"TOONLIB_CACHE": box.cache, "TORCH_HOME": random_vgg_torch_home, "HOME": root / "home",
                            "GRADIO_TEMP_DIR": root / "gradio", "MPLCONFIGDIR": root / "matplotlib"}.items():
            patch.setenv(name, str(value))
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            patch.setenv(name, "http://127.0.0.1:9")  # a closed port: every download fails at once
        for name in ("NO_PROXY", "no_proxy"):
            patch.setenv(name, "localhost,127.0.0.1,0.0.0.0")  # the web app's own address
        patch.setattr(download, "RETRY_DELAYS", ())  # offline is offline: no waiting between attempts
        patch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU machine, whatever this one has
        patch.setitem(projection.DEFAULT_STEPS, "w+", PROJECTION_STEPS)
        patch.setitem(projection.DEFAULT_STEPS, "w", PROJECTION_STEPS)
        patch.setattr(losses, "_LPIPS_CACHE", {})  # built here, from $TORCH_HOME's VGG16
        from toonlib import align, app

        patch.setattr(align, "_BACKENDS", {})  # --detector auto decides here, without face-alignment's weights
        launch = app.launch

        def launch_and_return(toon_app, host="127.0.0.1", port=None, share=False, block=True):
            box.servers.append(launch(toon_app, host=host, port=port, share=share, block=False))

        patch.setattr(app, "launch", launch_and_return)
        patch.chdir(box.work)
        for item in ITEMS:
            outcome = run_item(item, box)
            results[item] = outcome
            if outcome.failure is None:
                checks = CLI_CHECKS if item.kind == "cli" else PYTHON_CHECKS
                key = item.text if item.kind == "cli" else _python_key(item)
                if key is not None and key in checks:
                    try:
                        checks[key].check(outcome, box)
                    except Exception:
                        outcome.failure = traceback.format_exc()
    print("\n".join(f"{o.seconds:6.1f} s  {i.id}" for i, o in results.items()))
    return results


# ---------------------------------------------------------------------------------------------------------------
# What each line must do


@dataclass
class Cli:
    status: int
    check: Callable[[Outcome, Sandbox], None]
    substitute: tuple[str, str, str] | None = None  # (option, README value, value run here)

    def argv(self, argv: list[str]) -> list[str]:
        argv = [name for arg in argv for name in (sorted(glob.glob(arg)) if "*" in arg else [arg])]  # as a shell
        if self.substitute is None:
            return argv
        option, written, used = self.substitute
        index = argv.index(option) + 1
        assert argv[index] == written, f"the README's {option} is {argv[index]}, this test expects {written}"
        return [*argv[:index], used, *argv[index + 1:]]


def image_size(path: str | Path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()
        return image.size


def assert_toonified(out: Outcome, stem: str, folder: str, photo: Path, kinds=("toon", "aligned", "reconstruction")):
    expected = {f"{folder}{stem}-{kind}.png" for kind in kinds}
    assert expected <= out.written, (expected, out.written)
    for kind in kinds:
        size = image_size(f"{folder}{stem}-{kind}.png")
        assert size == (image_size(photo) if kind == "pasted" else (32, 32)), (kind, size)


def check_first_example(out: Outcome, box: Sandbox) -> None:
    photo = box.work / "examples" / "grace_hopper.jpg"
    kinds = ("toon", "aligned", "reconstruction", "pasted")
    assert out.written == {f"toons/grace_hopper-{kind}.png" for kind in kinds} | {"toons/grace_hopper-latent.npz"}
    assert_toonified(out, "grace_hopper", "toons/", photo, kinds)
    assert "wrote toons/grace_hopper-toon.png" in out.out
    assert "grace_hopper-toon.png: " in out.out  # the identity report, one line per face
    assert "--invert e4e takes seconds" in out.err  # on a CPU, the README's next sentence
    toon, reconstruction = (np.asarray(Image.open(f"toons/grace_hopper-{k}.png")) for k in ("toon", "reconstruction"))
    assert not np.array_equal(toon, reconstruction)


def check_version(out: Outcome, box: Sandbox) -> None:
    assert out.out.strip() == f"toonlib {toonlib.__version__}"


def check_commands(out: Outcome, box: Sandbox) -> None:
    assert out.err.startswith("usage: toonlib") and out.out == ""
    for command in ("toonify", "fetch", "models", "remove", "align", "project", "blend", "finetune", "convert", "info",
                    "app"):
        assert re.search(rf"^    {command} +\w", out.err, re.M), command  # listed, with what it does
    assert out.err.rstrip().endswith("no command given: pick one of the COMMANDs above")


def check_help(out: Outcome, box: Sandbox) -> None:
    assert out.out.startswith("usage: toonlib toonify")
    assert "--invert" in out.out and out.out.rstrip().endswith(cli.EXIT_STATUS)
    assert "examples:\n  toonlib toonify me.jpg -o me-toon.png --paste-back" in out.out


def check_models(out: Outcome, box: Sandbox) -> None:
    assert f"toonlib cache: {box.cache}" in out.out
    rows = {line.split()[0]: line.split() for line in out.out.splitlines()[3:] if line.split()[:1] != []}
    for name in MODELS:
        assert ("cached" in rows[name]) == (name in CACHED), rows[name]


def check_fetch(out: Outcome, box: Sandbox) -> None:
    names = ("ffhq-1024-tf", "toonify-blended-tf")
    assert out.out.split() == [str(box.cache / MODELS[name].filename) for name in names]
    assert not list(box.cache.glob("*.part*"))  # nothing was downloaded: the cached files were used as they are


def check_remove(out: Outcome, box: Sandbox) -> None:
    path = box.cache / MODELS["ffhq-256-noaug"].filename
    assert out.out.startswith(f"removed ffhq-256-noaug: {path} (") and not path.exists()


def check_toonify_to_file(out: Outcome, box: Sandbox) -> None:
    names = ("me-toon.png", "me-toon-aligned.png", "me-toon-reconstruction.png", "me-toon-pasted.png",
             "me-toon-latent.npz")
    assert out.written == set(names)
    assert [image_size(name) for name in names[:3]] == [(32, 32)] * 3
    assert image_size("me-toon-pasted.png") == image_size("me.jpg")
    assert f"wrote {', '.join(names)}" in out.out


def check_toonify_latent(out: Outcome, box: Sandbox) -> None:
    assert out.written == {"me-16.png"} and out.out.strip() == "wrote me-16.png"
    toon = load_network(box.cache / MODELS["toonify-blended-tf"].filename).G
    base = load_network(box.cache / MODELS["ffhq-1024-tf"].filename).G_ema
    expected = to_pil(render(blend(toon, base, 16), load_latent("me-toon-latent.npz"))[0])
    assert np.array_equal(np.asarray(Image.open("me-16.png")), np.asarray(expected))
    assert not np.array_equal(np.asarray(Image.open("me-16.png")), np.asarray(Image.open("me-toon.png")))


def check_toonify_folder(out: Outcome, box: Sandbox) -> None:
    kinds = ("toon", "aligned", "reconstruction")
    assert out.written == {f"toons/{stem}-{kind}" for stem in ("astronaut", "hopper")
                           for kind in (*(f"{kind}.png" for kind in kinds), "latent.npz")}
    assert_toonified(out, "astronaut", "toons/", box.work / "photos" / "astronaut.png")
    skipped = [line for line in out.err.split("\n") if line.startswith("skipped ")]  # each on a line of its own
    assert [line.split(":")[0] for line in skipped] == ["skipped photos/broken.jpg", "skipped photos/coffee.png"], \
        out.err
    assert "toonified 2 of 4 photos into toons/" in out.out


def check_toonify_glob(out: Outcome, box: Sandbox) -> None:
    jpegs = sorted(Path(".").glob("*.jpg"))  # what the shell gives for *.jpg in the README's folder
    expected = {f"toons/{photo.stem}-{kind}" for photo in jpegs for kind in ("toon.png", "aligned.png",
                                                                             "reconstruction.png", "latent.npz")}
    assert jpegs and out.written == expected, (jpegs, out.written)
    assert_toonified(out, "me", "toons/", box.work / "me.jpg")


def check_align(out: Outcome, box: Sandbox) -> None:
    assert out.written == {"aligned.png"}
    assert image_size("aligned.png") == (1024, 1024)
    assert out.out.startswith("wrote aligned.png (its crop ")


def check_project(out: Outcome, box: Sandbox) -> None:
    assert out.written == {"latent.npz", "reconstruction.png", "projection.mp4"}
    with np.load("latent.npz") as npz:
        assert npz["w"].shape == (1, box.base.num_ws, box.base.w_dim)
    # the latent as the toon and NVIDIA's proj.png draw it, with const noise (it was drawn with the optimised noise)
    drawn = np.asarray(to_pil(render(box.base, load_latent("latent.npz"))[0]))
    assert np.array_equal(np.asarray(Image.open("reconstruction.png").convert("RGB")), drawn)
    assert Path("projection.mp4").read_bytes()[4:8] == b"ftyp"  # an MP4 container
    assert f"after {PROJECTION_STEPS} step{'s' if PROJECTION_STEPS != 1 else ''})" in out.out


def check_blend(out: Outcome, box: Sandbox) -> None:
    assert out.written == {"blended.safetensors", "grid.png"}
    toon, base = load_network("toon.pkl").G_ema, load_network("ffhq.pkl").G_ema
    expected = blend(toon, base, 32).state_dict()
    written = load_network("blended.safetensors")
    assert written.meta["format"] == "toonlib"
    for name, tensor in written.G_ema.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    width, height = image_size("grid.png")
    assert height >= 6 * 128 and 5 * 128 <= width < 6 * 128  # 6 seeds; base, swap 4, 8, 16, toon (swap 32 = toon)


def check_finetune(out: Outcome, box: Sandbox) -> None:
    snapshot = "runs/toon/network-snapshot-000000008.safetensors"
    assert {snapshot, "runs/toon/fakes-000000008.png", "runs/toon/latest.json", "runs/toon/metrics.jsonl"} \
        <= out.written
    last, blend_line, toonify_line = out.out.strip().splitlines()[-3:]
    assert last == f"last snapshot: {snapshot}"
    nets = load_network(snapshot)
    assert nets.G is not None and nets.D is not None and nets.G_ema.img_resolution == 32
    # the commands it prints next run as printed: the blend (its base the run's, ffhq-256-noaug) in a folder of its own
    blend_command = blend_line[blend_line.index("toonlib "):].replace(snapshot, str(box.work / snapshot))
    # half the model's 32 px: a blend (at 32 px every layer is the toon model's)
    assert f"toonlib toonify photo.jpg --toon {snapshot} --swap-res 16 -o toons/" in toonify_line
    folder, here = box.work.parent / "next", os.getcwd()
    folder.mkdir()
    os.chdir(folder)
    try:
        assert cli.main(shlex.split(blend_command)[1:]) == 0
    finally:
        os.chdir(here)
    toon = load_network(box.work / snapshot).G_ema
    expected = blend(toon, load_network(box.cache / MODELS["ffhq-256-noaug"].filename).G_ema, 16)
    written = load_network(folder / "blended.safetensors").G_ema
    assert load_network(folder / "blended.safetensors").meta["blend"]["base"] == "ffhq-256-noaug (G_ema)"
    assert all(torch.equal(a, b) for a, b in zip(written.state_dict().values(), expected.state_dict().values()))


def check_convert(out: Outcome, box: Sandbox) -> None:
    assert out.written == {"ffhq.safetensors"}
    assert out.out.startswith("tensorflow checkpoint: 32x32")
    original, converted = load_network("stylegan2-ffhq-config-f.pkl"), load_network("ffhq.safetensors")
    for net in ("G_ema", "G", "D"):
        a, b = getattr(original, net).state_dict(), getattr(converted, net).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), net


def check_info(out: Outcome, box: Sandbox) -> None:
    assert out.written == set()
    assert out.out.startswith("toonlib checkpoint: 32x32") and "img_resolution: 32" in out.out
    assert out.out.splitlines()[1] == "converted from stylegan2-ffhq-config-f.pkl (tensorflow format)"


def check_toonify_e4e(out: Outcome, box: Sandbox) -> None:
    assert out.written == {f"toons/me-{kind}" for kind in ("toon.png", "aligned.png", "reconstruction.png",
                                                          "latent.npz")}
    assert_toonified(out, "me", "toons/", box.work / "me.jpg")
    assert "projecting on the CPU" not in out.err  # the advice to use an encoder, given in the default mode


def check_app(*modes: str) -> Callable[[Outcome, Sandbox], None]:
    """The app answered on its port with its page, offering `modes` (the first selected)."""
    def check(out: Outcome, box: Sandbox) -> None:
        from toonlib.pipeline import INVERT_LABELS

        assert out.url is not None and "<html" in out.page.lower()
        assert "Toonify yourself" in out.config
        offered = [mode for mode in INVERT_LABELS if INVERT_LABELS[mode] in out.config]
        assert offered == sorted(modes, key=list(INVERT_LABELS).index), offered
        assert out.written == set()
    return check


def _port_8080(argv: list[str]) -> list[str]:
    """`--port 8080` as written when that port is free here, else another free port (the line is the same)."""
    if port_is_free("0.0.0.0", 8080):
        return argv
    index = argv.index("--port") + 1
    return [*argv[:index], str(free_port()), *argv[index + 1:]]


class AppOnPort(Cli):
    def argv(self, argv: list[str]) -> list[str]:
        return _port_8080(argv)


CLI_CHECKS: dict[str, Cli] = {
    "toonlib toonify examples/grace_hopper.jpg -o toons/ --paste-back": Cli(0, check_first_example),
    "toonlib --version": Cli(0, check_version),
    "toonlib": Cli(2, check_commands),
    "toonlib toonify --help": Cli(0, check_help),
    "toonlib models": Cli(0, check_models),
    "toonlib fetch ffhq-1024-tf toonify-blended-tf": Cli(0, check_fetch),
    "toonlib toonify me.jpg -o me-toon.png --paste-back": Cli(0, check_toonify_to_file),
    "toonlib toonify me-toon-latent.npz -o me-16.png --swap-res 16": Cli(0, check_toonify_latent),
    "toonlib toonify photos/ -o toons/ --swap-res 32": Cli(1, check_toonify_folder),  # 1: two bad photos
    "toonlib toonify '*.jpg' -o toons/": Cli(0, check_toonify_glob),
    "toonlib align me.jpg -o aligned.png": Cli(0, check_align),
    "toonlib project aligned.png -o latent.npz --image-out reconstruction.png --video projection.mp4":
        Cli(0, check_project),
    "toonlib blend --toon toon.pkl --base ffhq.pkl --swap-res 32 -o blended.safetensors --grid grid.png --seeds 0-5":
        Cli(0, check_blend),
    "toonlib finetune --data faces/ --resume ffhq-256-noaug --run-dir runs/toon --kimg 20":
        Cli(0, check_finetune, substitute=("--kimg", *KIMG)),
    "toonlib convert stylegan2-ffhq-config-f.pkl ffhq.safetensors": Cli(0, check_convert),
    "toonlib remove ffhq-256-noaug": Cli(0, check_remove),
    "toonlib info ffhq.safetensors": Cli(0, check_info),
    "toonlib toonify me.jpg -o toons/ --invert e4e --swap-res 16": Cli(0, check_toonify_e4e),
    "toonlib app": Cli(0, check_app("optimize")),
    "toonlib app --invert e4e optimize": Cli(0, check_app("e4e", "optimize")),
    "toonlib app --host 0.0.0.0 --port 8080": AppOnPort(0, check_app("optimize")),
}


# Python blocks: keyed by a line each block has (one key per block).


@dataclass
class Py:
    check: Callable[[Outcome, Sandbox], None]


def check_python(out: Outcome, box: Sandbox) -> None:
    names = out.namespace
    assert out.written == {"toon.png", "pasted.png", "toon-16.png", "me-w.npz", "all-faces.png",
                           "blended.safetensors", "me.npz", "me-blended.png"}
    assert torch.equal(names["w"], names["result"].w)  # save_latent / load_latent: the same numbers
    [face] = names["faces"]  # me.jpg has one face, projected as alone: the same latent, drawn at the 16 px blend
    assert names["faces"]._repr_png_().startswith(b"\x89PNG")  # in a notebook, pictures (a list showed as text)
    assert np.array_equal(np.asarray(face.toon), np.asarray(Image.open("toon-16.png")))
    assert image_size("all-faces.png") == image_size("me.jpg")
    assert not np.array_equal(np.asarray(Image.open("all-faces.png")), np.asarray(Image.open("pasted.png")))
    assert image_size("toon.png") == image_size("toon-16.png") == (32, 32)
    assert image_size("pasted.png") == image_size("me.jpg")
    assert not np.array_equal(np.asarray(Image.open("toon.png")), np.asarray(Image.open("toon-16.png")))
    assert names["toonifier"].device == torch.device("cpu")
    assert tuple(names["ws"].shape) == (4, box.base.num_ws, box.base.w_dim)
    assert tuple(names["images"].shape) == (4, 3, 32, 32)
    assert isinstance(names["toon_G"], Generator) and isinstance(names["blended"], Generator)
    toon_state = names["toon_G"].state_dict()
    assert all(torch.equal(toon_state[name], tensor) for name, tensor in box.toon.state_dict().items())
    blended = load_network("blended.safetensors")
    assert blended.G_ema.img_resolution == 32
    assert blended.meta["blend"] == {"toon": "toonify-blended-tf (G)", "base": "ffhq-1024-tf", "swap_res": 32,
                                     "level": 0, "blend_width": None}  # its comment: `toonlib info` names them
    assert tuple(names["projection"].w.shape) == (1, box.base.num_ws, box.base.w_dim)
    assert names["projection"].steps == PROJECTION_STEPS
    with np.load("me.npz") as npz:
        assert np.array_equal(npz["w"], names["projection"].w.numpy())
    assert image_size("me-blended.png") == (32, 32)


def check_python_e4e(out: Outcome, box: Sandbox) -> None:
    names = out.namespace
    assert out.written == set()
    assert names["result"].invert == "e4e"
    assert torch.equal(names["codes"], names["result"].w)  # the Toonifier's latent is the encoder's codes
    assert tuple(names["codes"].shape) == (1, box.base.num_ws, 512)


PYTHON_CHECKS: dict[str, Py] = {
    "toonifier = Toonifier()": Py(check_python),
    'toonifier = Toonifier(invert="e4e")': Py(check_python_e4e),
}


def _python_key(item: Item) -> str | None:
    keys = [key for key in PYTHON_CHECKS if any(line.startswith(key) for line in item.text.splitlines())]
    return keys[0] if len(keys) == 1 else None


# ---------------------------------------------------------------------------------------------------------------
# Tests


def test_the_readme_has_commands_and_python():
    kinds = [item.kind for item in ITEMS]
    assert kinds.count("cli") >= 10 and kinds.count("python") >= 2, kinds


def test_every_readme_line_has_a_check():
    lines = [item.text for item in ITEMS if item.kind == "cli"]
    assert sorted(set(lines)) == sorted(CLI_CHECKS), "README lines without a check here, or checks without a line"
    blocks = [item for item in ITEMS if item.kind == "python"]
    assert [_python_key(block) is not None for block in blocks] == [True] * len(blocks), \
        "every README Python block needs exactly one PYTHON_CHECKS key"
    assert sorted(_python_key(block) for block in blocks) == sorted(PYTHON_CHECKS)


@pytest.mark.parametrize("item", ITEMS, ids=[item.id for item in ITEMS])
def test_readme_item(item, outcomes):
    outcome = outcomes[item]
    context = f"README.md line {item.line}:\n{item.text}\n--- stdout:\n{outcome.out[-3000:]}\n--- stderr:\n" \
              f"{outcome.err[-3000:]}"
    assert outcome.failure is None, f"{context}\n--- failure:\n{outcome.failure}"
    if item.kind == "cli":
        assert item.text in CLI_CHECKS, f"{context}\nno check in tests/test_readme.py for this README line"
        assert outcome.status == CLI_CHECKS[item.text].status, context
    else:
        assert _python_key(item) is not None, f"{context}\nno check in tests/test_readme.py for this README block"


def test_the_test_command_is_what_ci_runs():
    """The README's Tests section installs what .ci/run installs and runs exactly its test command."""
    ci = [shlex.split(line, comments=True) for line in (REPO / ".ci" / "run").read_text().splitlines()]
    ci = [argv for argv in ci if argv]
    readme = [shlex.split(line) for line in bash_lines(README.read_text(encoding="utf-8"), "Tests")]
    assert readme[-1] == ci[-1] == ["python", "-m", "pytest", "-q"]
    [install] = [argv for argv in ci if argv[:4] == ["python", "-m", "pip", "install"] and "-e" in argv]
    assert ["pip", "install", "-e", install[install.index("-e") + 1]] in readme  # the same extras
    assert any(argv[-3:] == ["apt-get", "install", "chromium"] for argv in readme)


def test_the_exit_statuses_are_the_clis():
    """The README's exit statuses are those `toonlib --help` lists."""
    text = " ".join(README.read_text(encoding="utf-8").split())
    statuses = [line.split(maxsplit=1) for line in cli.EXIT_STATUS.splitlines()[1:]]
    assert [code for code, _ in statuses] == ["0", "1", "2", "130", "141"]
    for code, meaning in statuses:
        assert f"{code} {meaning}" in text, (code, meaning)


def test_the_extras_the_readme_names_exist():
    pyproject = (REPO / "pyproject.toml").read_text()
    section = pyproject.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    extras = set(re.findall(r"^(\w+) = \[", section, re.MULTILINE))
    text = README.read_text(encoding="utf-8")
    named = {name for group in re.findall(r'toonlib\[([\w,]+)\]|"\.\[([\w,]+)\]"', text) for part in group
             for name in part.split(",") if name}
    assert named and named <= extras, named - extras
    table = set(re.findall(r"^\| `(\w+)` \|", text.split("## Install", 1)[1].split("\n## ", 1)[0], re.MULTILINE))
    assert table == extras, "the Install section's table of extras lists every extra of pyproject.toml"


def test_the_readme_images_show_on_pypi_too():
    """PyPI shows README.md without the repository's files, so a relative image link is a broken image there
    (forty-second session's extras audit): each image is the repository's own file by its raw URL on main."""
    pyproject = (REPO / "pyproject.toml").read_text()
    [source] = re.findall(r'^Source = "https://github\.com/([\w.-]+/[\w.-]+)"$', pyproject, re.MULTILINE)
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", README.read_text(encoding="utf-8"))
    own = [link for link in links if "colab-badge" not in link]
    assert own, "README shows a picture of the app"
    prefix = f"https://raw.githubusercontent.com/{source}/main/"
    for link in own:
        assert link.startswith(prefix), link
        assert (REPO / link.removeprefix(prefix)).is_file(), link
