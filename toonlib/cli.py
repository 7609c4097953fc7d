"""The `toonlib` console script: its arguments (`build_parser`), their checks while parsing, and `main`, which runs a
command (the bodies are `commands.cmd_*`, each a thin wrapper over the Python API) and turns its end into an exit
status.

Exit status (also in `--help`): 0 all done; 1 some of several photos failed (the others were written); 2 bad usage, a
missing or unreadable model, weights file or photo, or a photo without a face; 130 interrupted (Ctrl-C, SIGTERM or
SIGHUP: `messages.run_program`); 141 output closed early (`| head`), nothing more printed (a folder's `toonify` says on
stderr how many photos it toonified). `finetune` has its own (`train.arguments.EXIT_STATUS`, in `toonlib finetune
--help`): 0 done, also when the run had already reached --kimg; 2 bad usage, unusable images, checkpoint or settings,
the run folder in use, a full disk; 130 interrupted, the run saved for the same command to continue. Expected failures
end in one short message naming the cause and the fix, never a traceback; warnings are one line each too (`toonlib
COMMAND: warning: ...`).
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import itertools
import math
import os
import re
import sys
import textwrap
import warnings
from typing import Callable, Sequence

from .commands import (
    DEFAULT_GRID_SEEDS,
    DEFAULT_TRUNCATION_PSI,
    DEFAULT_VIDEO_EVERY,
    cmd_align,
    cmd_app,
    cmd_blend,
    cmd_convert,
    cmd_fetch,
    cmd_finetune,
    cmd_info,
    cmd_models,
    cmd_project,
    cmd_remove,
    cmd_toonify,
    for_command_line,
)
from .messages import (
    expected_errors,
    install_line,
    interrupted,
    interrupts_held,
    run_program,
    stdout_failure,
    write_line,
)

#: The commands that read photos, and those of them that look for a face in it (`project` takes an aligned face; the
#: app's photos come through its page, and their faults are said there).
_PHOTO_COMMANDS, _FACE_COMMANDS = ("align", "project", "toonify"), ("align", "toonify")


def exit_statuses(command: str | None = None) -> str:
    """The exit statuses `toonlib --help` lists (`command` None), or those of one command's --help: status 1 is
    toonify's alone, a photo that of the commands that read photos, "no face" that of those that look for one (every
    command listed toonify's; thirty-ninth session's audit)."""
    toonify, photos = command in (None, "toonify"), command is None or command in _PHOTO_COMMANDS
    faces = command is None or command in _FACE_COMMANDS
    rows = [("0", "all done"),
            *[("1", "some of several photos failed (the others were written)")] * toonify,
            ("2", "bad usage; a missing or unreadable " + ("model, weights file or photo" if photos else
                                                           "model or weights file") + "; no face" * faces),
            ("130", "interrupted (Ctrl-C, SIGTERM: kill, timeout, or SIGHUP: a closed terminal)"),
            ("141", "output closed early (`toonlib models | head`), nothing more printed"
             + " (`toonify` of a folder says on stderr how many photos it toonified)" * toonify)]
    return "exit status:\n" + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in rows)


#: The exit statuses of the `toonlib` command, as its --help and the README list them.
EXIT_STATUS = exit_statuses()
#: The `examples:` of each command's --help, as typed (`# ...`: what it writes), from the README's "Command line".
EXAMPLES = {
    "convert": ["toonlib convert stylegan2-ffhq-config-f.pkl ffhq.safetensors"],
    "info": ["toonlib info ffhq.safetensors"],
    "fetch": ["toonlib fetch ffhq-1024-tf toonify-blended-tf"],
    "models": ["toonlib models"],
    "remove": ["toonlib remove ffhq-1024-tf toonify-blended-tf"],
    "blend": ["toonlib blend --toon toon.pkl --base ffhq.pkl --swap-res 32 -o blended.safetensors",
              "toonlib blend --toon toonify-blended-tf --base ffhq-1024-tf --swap-res 16 -o b.safetensors "
              "--grid grid.png"],
    "align": ["toonlib align me.jpg -o aligned.png",
              "toonlib align group.jpg -o face.png --all-faces   # face-face1.png, face-face2.png, ..."],
    "project": ["toonlib project aligned.png -o latent.npz --image-out reconstruction.png"],
    "toonify": ["toonlib toonify me.jpg -o me-toon.png --paste-back  # me-toon.png, me-toon-aligned.png, ...",
                "toonlib toonify photos/ -o toons/ --swap-res 32     # toons/<photo>-toon.png, ...",
                "toonlib toonify me.jpg -o me-toon.png --invert e4e  # seconds, not minutes",
                "toonlib toonify me-toon-latent.npz -o me-16.png --swap-res 16  # that face re-blended, in seconds"],
    "finetune": ["toonlib finetune --data faces/ --resume ffhq-256-noaug --run-dir runs/toon --kimg 20"],
    "app": ["toonlib app",
            "toonlib app --invert e4e optimize --host 0.0.0.0   # e4e first; open to your network"],
}

NETWORKS = ("G_ema", "G")  # what --toon-network and --base-network pick in a checkpoint


def _examples(command: str) -> str:
    """The `examples:` section of `command`'s --help (`EXAMPLES`), which goes before its exit statuses."""
    return "examples:\n" + "".join(f"  {line}\n" for line in EXAMPLES[command]) + "\n"


def _number(kind: type = int, low: float = 1, high: float | None = None, low_allowed: bool = False
            ) -> Callable[[str], int | float]:
    """An argparse `type`: a whole number in [low, high] (`kind` int) or a finite number above `low` (float; from
    `low` with `low_allowed`; any with low -inf), refused while the arguments are parsed, before anything is
    downloaded, loaded or written."""
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if kind is int and not (value >= low and (high is None or value <= high)):
            raise argparse.ArgumentTypeError(f"must be {f'between {low} and {high}' if high else f'>= {low}'}, "
                                             f"got {text}")
        if kind is float and not (math.isfinite(value) and (value >= low if low_allowed else value > low)):
            bound = f" {'>=' if low_allowed else '>'} {low}" if math.isfinite(low) else ""
            raise argparse.ArgumentTypeError(f"must be a finite number{bound}, got {text}")
        return value
    return parse


def _swap_res(text: str) -> int:
    """An argparse `type` for --swap-res: a power of two >= 4 (`blending.check_setting`)."""
    from .blending import check_setting

    value = _number(low=-math.inf)(text)  # 0 and below: the power-of-two message, not ">= 1" (1 is refused too)
    try:
        check_setting(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("swap_res ", "")) from None
    return value


def _seed(text: str) -> int:
    """An argparse `type` for --seed: a whole number in `options.SEED_RANGE`, Python's seed= range, said as seed=
    says it: 0 to 2**32 - 1 here left a latent made with seed=2**40 or seed=-5 not to be made again here
    (forty-third session's audit)."""
    from .options import SEED_RANGE

    value = _number(low=-math.inf)(text)
    if not SEED_RANGE[0] <= value <= SEED_RANGE[1]:
        raise argparse.ArgumentTypeError(f"must be a whole number from -2**63 to 2**64 - 1 (what torch's random "
                                         f"generator takes), got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose help and version meet an output that takes nothing as the commands' output does: a
    reader gone away (`toonlib --help | head` once `head` ended) exits 141 (`main`), a full disk is said, exit 2.
    argparse dropped the write's error and exited 0 (forty-fifth session's README audit)."""

    def _print_message(self, message: str, file=None) -> None:
        file = file or sys.stderr
        if not message or file is None:  # None: Python started with that stream closed (`2>&-`)
            return
        try:
            file.write(message)
            file.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            if file is sys.stderr:  # nowhere left to say it
                return
            self.exit(2, f"{self.prog}: error: {stdout_failure(exc)}\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .options import MAX_GRID_SEEDS

    parser = _Parser(prog="toonlib", description="Toonify faces with StyleGAN2 network blending.",
                     epilog="`toonlib COMMAND --help` (or `toonlib help COMMAND`) shows a command's options, their "
                            "defaults and examples.\n\n" + EXIT_STATUS,
                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"toonlib {__version__}")
    sub = parser.subcommands = _Subcommands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))

    p = sub.add_parser("convert", help="convert any supported StyleGAN2 checkpoint to toonlib's format")
    p.add_argument("input", help="checkpoint path, URL or model name (NVIDIA/TF .pkl, rosinality/pSp/e4e .pt, "
                                 "toonlib .safetensors or .pt)")
    p.add_argument("output", help="output file ending in .safetensors (toonlib's format), written atomically")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("info", help="show what a checkpoint holds")
    p.add_argument("checkpoint", help="checkpoint path, URL or model name")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("fetch", help="download models and weights into their places (see `toonlib models`)",
                       description="Download registry files (StyleGAN models, encoders, and the weights of LPIPS, "
                                   "face-alignment and FID) or URLs, resuming broken downloads; exit status 2 if any "
                                   "failed.")
    p.add_argument("names", nargs="+", help="registry names (`toonlib models` lists them) or URLs")
    p.add_argument("--cache-dir", help="toonlib's cache folder instead of $TOONLIB_CACHE / Drive / ~/.cache/toonlib "
                                       "(auxiliary weights always go to torch hub's folder); the other commands "
                                       "look there when TOONLIB_CACHE names it")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("models", help="list every known model and weights file, its kind and whether it is here")
    p.add_argument("--cache-dir", help="toonlib's cache folder instead of $TOONLIB_CACHE / Drive / ~/.cache/toonlib")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("remove", help="delete downloaded models and weights from this machine, to free space",
                       description="Delete registry files or URLs that `toonlib fetch` downloaded (and their partial "
                                   "downloads), or other files of the cache by name, as `toonlib models` lists them; "
                                   "a command that needs one downloads it again. The weights of other libraries "
                                   "(lpips-vgg16, face-alignment-*, inception-fid) are in torch hub's folder, "
                                   "whatever --cache-dir says.")
    p.add_argument("names", nargs="+", help="registry names (`toonlib models` lists them), URLs, or file names of "
                                            "the cache (NAME.part: that partial download alone)")
    p.add_argument("--cache-dir", help="toonlib's cache folder instead of $TOONLIB_CACHE / Drive / ~/.cache/toonlib")
    p.set_defaults(func=cmd_remove)

    p = sub.add_parser("blend", help="blend a toon model (low resolutions) with a base model (high resolutions)")
    p.add_argument("--toon", "--low", dest="toon", required=True,
                   help="the toon model, which gives the low-resolution layers (path, URL or name)")
    p.add_argument("--base", "--high", dest="base", default=None,
                   help="the base FFHQ model, which gives the high-resolution layers (path, URL or name; default: the "
                        "toon model's own base, as toonify takes it: its lineage in `toonlib models`, the base a "
                        "`toonlib finetune` run recorded, else ffhq-1024-tf)")
    p.add_argument("--toon-network", "--low-network", dest="toon_network", default=None, choices=NETWORKS,
                   type=_as_written(NETWORKS),
                   help="which generator of --toon (default: for a registry name the registry's choice, its un-blended "
                        "toon model, as toonify takes it: G of toonify-blended-tf, whose G_ema is already blended; "
                        "for a file as toonify takes it: a training snapshot's G_ema, else its G if it has one, as "
                        "Toonify's file)")
    p.add_argument("--base-network", "--high-network", dest="base_network", default=None, choices=NETWORKS,
                   type=_as_written(NETWORKS),
                   help="which generator of --base (default: G_ema)")
    p.add_argument("--swap-res", type=_swap_res, required=True,
                   help="resolution of the last block taken from --toon: 4, 8, ..., up to the models' resolution")
    p.add_argument("--level", type=int, default=0, choices=[0, 1],
                   help="1 also keeps the next block's first conv from --toon (default 0)")
    p.add_argument("--blend-width", type=_number(float, 0, low_allowed=True), default=None,
                   help="smooth switch width in layers (centred 1.5 layers below the hard switch); default or 0: "
                        "hard switch")
    p.add_argument("-o", "--output", required=True, help="blended network file (.safetensors, toonlib's format)")
    p.add_argument("--grid", help="also save a PNG grid: rows = seeds; columns = --base, every swap resolution "
                                  "(with a hard switch below the model's own, which is the toon), "
                                  "--toon")
    p.add_argument("--seeds", help=f"seeds of the grid rows, e.g. 0-5 or 1,7,42 (default {DEFAULT_GRID_SEEDS}; at most "
                                   f"{MAX_GRID_SEEDS}: each column renders its rows at once, ~0.5 GB a row at 1024 px)")
    p.add_argument("--truncation-psi", type=_number(float, -math.inf), default=None,
                   help="with --grid: truncation of the grid's latents towards the mean face (1 = none; default "
                        f"{DEFAULT_TRUNCATION_PSI})")
    p.set_defaults(func=cmd_blend)

    from .options import MAX_ALIGN_SIZE

    p = sub.add_parser("align", help="crop and align a face like FFHQ")
    p.add_argument("photo", help="a photo with a face (jpg, png, ...)")
    p.add_argument("-o", "--output", required=True,
                   help="aligned image (PNG keeps every pixel; JPEG, WebP, GIF, AVIF and HEIC lose some, and "
                        "`toonlib project` of it fits their artefacts); with --all-faces numbered -face1, -face2, ... "
                        "(largest first)")
    p.add_argument("--size", type=_number(low=4, high=MAX_ALIGN_SIZE), default=1024,  # no StyleGAN2 is smaller
                   help=f"output size in px, the model's resolution (default 1024, FFHQ's; at most {MAX_ALIGN_SIZE}, "
                        "8x that: larger crops only enlarge the photo's pixels, and run out of memory)")
    _add_detector(p)
    _add_face_choice(p, "every face, largest first (default: the largest)", "its crop at -o")
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("project", help="find the latent that makes the base model reproduce an aligned face")
    p.add_argument("image", help="an aligned face (see `toonlib align`)")
    p.add_argument("--base", "--model", dest="base", default="ffhq-1024-tf",
                   help="the base model to project into: path, URL or name (default: ffhq-1024-tf)")
    p.add_argument("--space", default="w+", choices=["w+", "w"], type=_as_written(["w+", "w"]),
                   help="w+: one w per layer (Toonify's choice, default); w: one w for all layers")
    p.add_argument("--steps", type=_number(), default=None, help="optimisation steps (default 500 for w+, 1000 for w)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="random seed of the noise maps and latent noise (default 0; -2**63 to 2**64 - 1, as "
                        "Python's seed=)")
    p.add_argument("-o", "--output", required=True, help="latent file (.npz, key 'w' like NVIDIA's projected_w; "
                                                         "`toonlib toonify LATENT.npz -o toon.png` draws its toon)")
    p.add_argument("--image-out", help="also save the reconstruction (PNG)")
    p.add_argument("--video", help="also save a target | projection video (.mp4, needs imageio-ffmpeg)")
    p.add_argument("--video-every", type=_number(),
                   help=f"steps between video frames (default {DEFAULT_VIDEO_EVERY})")
    p.set_defaults(func=cmd_project)

    from .options import INVERT_MODES

    p = sub.add_parser("toonify", help="toonify a photo or a folder of photos")
    p.add_argument("photos", nargs="+", help="photos or folders of photos (toonlib toonify *.jpg -o toons/; a "
                                             "folder's images named as toonify's outputs, <name>-toon.png, -aligned, "
                                             "-reconstruction, -pasted, are left out: name them to toonify them); or "
                                             "a latent file an earlier toonify or `toonlib project` wrote (.npz; "
                                             "rosinality's projector's, e4e's or JoJoGAN's .pt): its toon, "
                                             "re-blended as asked, in seconds")
    p.add_argument("-o", "--output", required=True,
                   help="output folder (<name>-toon.png, -aligned, -reconstruction, -pasted, -latent.npz); for one "
                        "photo also an image file: the toon there, the others beside it (out.png, out-aligned.png, "
                        "..., out-latent.npz). A latent's toon in a folder: <name>[-<toon model>][-16px...]-toon.png, "
                        "named by a --toon other than the default and the re-blend")
    _add_toonifier_models(p, "used with --swap-res")
    p.add_argument("--invert", default="optimize", choices=INVERT_MODES, type=_as_written(INVERT_MODES),
                   help="how the photo becomes a latent: optimize (projection, default; slow), e4e or psp (one "
                        "encoder pass: seconds), e4e+optimize (e4e, then 100 projection steps), psp-toonify "
                        "(pSp's Toonify encoder, straight to the toon)")
    p.add_argument("--encoder", default=None,
                   help="encoder checkpoint for --invert (path, URL or name; default: e4e-ffhq, psp-ffhq or "
                        "psp-toonify)")
    p.add_argument("--no-identity", action="store_true",
                   help="do not print the identity report (dlib face-recognition distances: photo to "
                        "reconstruction and to toon)")
    p.add_argument("--swap-res", type=_swap_res, default=None,
                   help="re-blend at this resolution (default: as published)")
    p.add_argument("--level", type=int, default=0, choices=[0, 1],
                   help="with --swap-res: 1 also keeps the next block's first conv from the toon model (default 0)")
    p.add_argument("--blend-width", type=_number(float, 0, low_allowed=True), default=None,
                   help="with --swap-res: smooth switch width in layers (default or 0: hard switch)")
    p.add_argument("--space", default=None, choices=["w+", "w"], type=_as_written(["w+", "w"]),
                   help="w+: one w per layer (Toonify's choice, default); w: one w for all layers")
    p.add_argument("--steps", type=_number(), default=None,
                   help="projection steps (default 500 in w+, 1000 in w; 100 with --invert e4e+optimize)")
    p.add_argument("--seed", type=_seed, default=None,
                   help="random seed of the projection (default 0; -2**63 to 2**64 - 1, as Python's seed=)")
    p.add_argument("--batch-size", type=_number(), default=None, help="photos projected together (default: 4)")
    p.add_argument("--paste-back", action="store_true", help="also write the toon face pasted into the photo "
                                                             "(with --all-faces, every face's toon in one photo)")
    _add_face_choice(p, "every face of each photo (default: the largest)",
                     "its files in a folder: me-face2-toon.png, ...; -o toon.png: that file")
    _add_detector(p)
    p.set_defaults(func=cmd_toonify)

    from .train import add_train_arguments

    p = sub.add_parser("finetune", help="fine-tune a StyleGAN2 model (with its D) on a folder of faces; resumes",
                       description="Transfer learning with ADA. For several GPUs: "
                                   "torchrun --nproc_per_node=N -m toonlib.train ... (same options).")
    add_train_arguments(p)
    p.epilog = _examples("finetune") + p.epilog  # fine-tuning's own exit statuses
    p.set_defaults(func=cmd_finetune)

    from .options import DEFAULT_STEPS, DEFAULT_SWAP_RES, INVERT_MODES, MAX_PIXELS, MAX_STEPS, PORTS

    p = sub.add_parser("app", help=f"the Toonify web app in your browser (Gradio; {install_line('app')})")
    _add_toonifier_models(p, "re-blended at the swap resolution chosen on the page")
    p.add_argument("--swap-res", type=_swap_res, default=DEFAULT_SWAP_RES,
                   help=f"the swap resolution chosen first on the page, in px (default {DEFAULT_SWAP_RES})")
    _add_detector(p)
    p.add_argument("--invert", nargs="+", default=["optimize"], choices=INVERT_MODES, type=_as_written(INVERT_MODES),
                   metavar="MODE",
                   help="the inversion modes offered, the first selected: optimize (projection, default), e4e or "
                        "psp (one encoder pass: fast), e4e+optimize, psp-toonify; each mode loads its own models")
    p.add_argument("--encoder", default=None,
                   help="encoder checkpoint for the one encoder mode in --invert (path, URL or name; default: "
                        "e4e-ffhq, psp-ffhq or psp-toonify)")
    p.add_argument("--steps", type=_number(), default=None,  # unset: each mode's own (`pipeline.start_steps`)
                   help=f"where the optimisation-steps slider starts, in every mode that optimises (default: each "
                        f"mode's own, {DEFAULT_STEPS} for optimize and 100 for e4e+optimize)")
    p.add_argument("--max-steps", type=_number(), default=MAX_STEPS,
                   help=f"the steps slider's end (default {MAX_STEPS})")
    p.add_argument("--max-megapixels", type=_number(float, 1e-6, low_allowed=True), default=MAX_PIXELS / 1e6,
                   help=f"larger photos are refused (default {MAX_PIXELS / 1e6:.0f})")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0: your network)")
    p.add_argument("--port", type=_number(int, *PORTS), default=None,  # launch's port= takes the same (`check_port`)
                   help="port (default: the first free one from 7860)")
    p.add_argument("--share", action="store_true", help="also a public *.gradio.live link (Colab; needs internet)")
    p.set_defaults(func=cmd_app)
    return parser


def _add_toonifier_models(p: argparse.ArgumentParser, toon_network_use: str) -> None:
    """--base, --toon and --toon-network of the commands that make a `Toonifier` (toonify, app)."""
    p.add_argument("--base", default=None,
                   help="base model photos are inverted into (default: the toon model's own base: its lineage in "
                        "`toonlib models`, the base a `toonlib finetune` run recorded, else ffhq-1024-tf)")
    p.add_argument("--toon", default="toonify-blended-tf",
                   help="toon checkpoint: path, URL or name (default: toonify-blended-tf, Toonify's)")
    p.add_argument("--toon-network", default=None, choices=NETWORKS, type=_as_written(NETWORKS),
                   help=f"the toon model inside --toon, {toon_network_use} (default: the registry's choice; for a "
                        "file a training snapshot's G_ema (toonlib finetune's, NVIDIA's, rosinality's), else its G if "
                        "it has one, as Toonify's file, else its G_ema)")


def _as_written(choices: Sequence[str]) -> Callable[[str], str]:
    """An argparse type for a choice option: the choice as the option lists it, whatever its case and `-` for `_`
    (`--space W`, `--toon-network g_ema`, `--detector face-alignment`); anything else as given, for argparse's
    "invalid choice"."""
    folded = {choice.lower().replace("-", "_"): choice for choice in choices}
    return lambda text: folded.get(text.lower().replace("-", "_"), text)


def _add_face_choice(p: argparse.ArgumentParser, every: str, named: str) -> None:
    """--all-faces and --face N of the commands that find faces (align, toonify): one of the two. A group photo's other
    faces were the Python API's and the web app's alone (forty-fourth session)."""
    faces = p.add_mutually_exclusive_group()
    faces.add_argument("--all-faces", action="store_true", help=every)
    faces.add_argument("--face", type=_face_number, metavar="N",
                       help=f"the Nth largest face alone (1: the largest, 2: the next, ..., as --all-faces numbers "
                            f"them); {named}")


def _face_number(text: str) -> int:
    """An argparse `type` for --face: a whole number from 1, the largest face (the API's face_index= counts from 0)."""
    try:
        return _number()(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}: --face N counts the faces from 1, the largest, as --all-faces "
                                         "numbers them (-face1, -face2, ...)") from None


def _add_detector(p: argparse.ArgumentParser) -> None:
    """--detector of the commands that find faces (align, toonify, app)."""
    from .options import DETECTORS

    p.add_argument("--detector", default="auto", choices=DETECTORS, type=_as_written(DETECTORS),
                   help="face landmarks: face_alignment (the face-alignment package; downloads its weights once), "
                        "dlib (offline), or auto (the default: face_alignment when its weights are here or can be "
                        "downloaded, else dlib)")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the lines of descriptions and epilogs as written, and wraps those longer than the help's width that are
    not indented (`fetch`'s and `finetune`'s descriptions ran off as one line; the exit-status table stays)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent)
                         if len(indent + line) > width and not line.startswith(" ") else indent + line
                         for line in text.splitlines())


class _Subcommands:
    """`add_parser` that gives every sub-command its help as description and its examples and exit statuses as
    epilog."""

    def __init__(self, subparsers):
        self._subparsers = subparsers

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        kwargs.setdefault("description", kwargs.get("help"))
        kwargs.setdefault("epilog", _examples(name) + exit_statuses(name))
        kwargs.setdefault("formatter_class", _HelpFormatter)
        return self._subparsers.add_parser(name, **kwargs)

    def names(self) -> list[str]:
        """The sub-commands' names, in the order of `toonlib --help`."""
        return list(self._subparsers.choices)

    def parser(self, name: str) -> argparse.ArgumentParser:
        """The sub-command's own parser (its usage in errors about its arguments)."""
        return self._subparsers.choices[name]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `toonlib` command line; returns the exit status (see `EXIT_STATUS`)."""
    args = None
    try:
        try:
            args = _parse(argv)
            return _run(args)
        finally:
            sys.stdout.flush()  # a reader gone away (`| head`) shows here, not as a traceback at exit
    except BrokenPipeError:  # stdout's reader went away: stop quietly, as command-line tools do (128 + SIGPIPE)
        training = getattr(args, "command", None) == "finetune" and not getattr(args, "finished", False)
        return output_closed("toonlib finetune" if training else None, getattr(args, "run_dir", None),
                             getattr(args, "kimg", None))
    except KeyboardInterrupt:  # outside a command (while the arguments are parsed): no traceback either
        print("toonlib: interrupted", file=sys.stderr)
        return 130


def output_closed(training: str | None, run_dir: str | None = None, kimg: float | None = None) -> int:
    """Stop quietly where stdout's reader went away (`| head`): nothing more reaches the closed pipe, even at exit;
    `training`, the name of a fine-tuning program whose run it stopped, says so and where the run in `run_dir` (to
    `kimg`, TrainConfig's default when None) is saved (nothing before its first snapshot). Returns 141."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if training is not None:  # hours of training ended without a word (thirty-second session's CLI audit)
        from .train.config import TrainConfig
        from .train.loop import _images
        from .train.snapshots import newest_state_nimg

        # before the run's first snapshot it said the run was saved, where no run folder existed (thirty-eighth
        # session's audit); a run saved at its --kimg was said to be continued by the same command, which finds it
        # done (forty-second session's audit)
        saved = None if run_dir is None else newest_state_nimg(run_dir)
        done = saved is not None and saved >= _images(TrainConfig.kimg if kimg is None else kimg)
        where = ("; the run is complete (its last snapshot is saved)" if done else
                 "; the run is saved up to its newest snapshot, and the same command continues it" if saved is not None
                 else " before the run's first snapshot: nothing was saved, and the same command starts it again")
        with contextlib.suppress(OSError, ValueError):  # `2>&1 | head` stderr is the closed pipe too
            print(f"{training}: stopped: its output was closed (the reader of a pipe, such as `| head`, ended)"
                  f"{where}", file=sys.stderr, flush=True)
    return 141


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed arguments; what the sub-command does not take is refused with that sub-command's usage (argparse
    would show the top level's, `toonlib [-h] [--version] COMMAND ...`)."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # `toonlib` alone: what it can do (argparse said only "the following arguments are required")
        parser.print_help(sys.stderr)
        parser.exit(2, "\ntoonlib: error: no command given: pick one of the COMMANDs above\n")
    if argv[0] in ("-h", "--help") and len(argv) == 2 and argv[1] in parser.subcommands.names():
        argv = ["help", *argv[1:]]  # `toonlib --help toonify` showed the top level's help, not toonify's
    if argv[0] == "help":  # `toonlib help` is `toonlib --help`, `toonlib help toonify` is `toonlib toonify --help`
        if len(argv) > 2:  # the words after the command were ignored without a word
            parser.error(f"help takes one command name, got {' '.join(argv[1:])!r}: toonlib help {argv[1]}")
        if len(argv) > 1 and argv[1].startswith("-") and argv[1] not in ("-h", "--help"):  # `help -x`: help
            parser.error(f"help takes a command name, not an option ({argv[1]}): toonlib help COMMAND, or toonlib "
                         "--help for the commands")
        argv = [argv[1], "--help"] if len(argv) > 1 and not argv[1].startswith("-") and argv[1] != "help" \
            else ["--help"]  # `toonlib help help` too
    leading = list(itertools.takewhile(lambda arg: arg.startswith("-"), argv))  # the options before the command
    if stray := [arg for arg in leading if arg.split("=")[0] not in _option_names(parser)]:
        parser.error(f"unrecognized arguments: {' '.join(stray)}" + _did_you_mean(stray, _option_names(parser))
                     + "\n  (a command's options go after the command: toonlib COMMAND --help)")
    commands = parser.subcommands.names()
    if len(argv) > len(leading) and (word := argv[len(leading)]) not in commands:
        parser.error(f"no command {word!r}" + (_did_you_mean([word], commands) or _COMMAND_HINTS.get(word.lower(), "")
                                               or f"; the commands are {', '.join(commands)} (`toonlib --help` says "
                                               "what each does)"))
    if len(argv) > len(leading):  # before argparse, whose "arguments are required: -o" hid a misspelt `--ouput`
        _refuse_unknown_options(parser, argv[len(leading)], argv[len(leading) + 1:])
        _refuse_words(parser.subcommands.parser(argv[len(leading)]), argv[len(leading)], argv[len(leading) + 1:])
        _refuse_both_names(parser.subcommands.parser(argv[len(leading)]), argv[len(leading) + 1:])
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = parser.subcommands.parser(args.command)
        options = [arg.split("=")[0] for arg in extra if arg.startswith("-")]
        if args.command == "toonify" and not options:  # photos after an option: `toonify a.jpg -o toons/ b.jpg`
            args.photos += extra
        else:
            several = "" if options else {  # thirty-fourth and thirty-eighth sessions' CLI audits: argparse's alone
                "project": "\n  toonlib project takes one aligned face; `toonlib toonify PHOTOS... -o toons/` projects "
                           "several and writes each face's -latent.npz",
                "align": "\n  toonlib align takes one photo (--all-faces: each face in it); `toonlib toonify PHOTOS... "
                         "-o toons/` aligns several and writes each face's -aligned.png"}.get(args.command, "")
            command.error(f"unrecognized arguments: {' '.join(extra)}"
                          + _did_you_mean(options, _option_names(command)) + several)
    _refuse_empty(parser.subcommands.parser(args.command), args)
    return args


def _refuse_unknown_options(parser: argparse.ArgumentParser, name: str, args: Sequence[str]) -> None:
    """Refuse the options command `name` does not take (argparse's abbreviations, `--out`, are taken), each with the
    option it looks like a misspelling of, or else the commands that take it (`project --invert e4e`: toonify's)."""
    command = parser.subcommands.parser(name)
    names = _option_names(command)

    def known(arg: str) -> bool:
        option = arg.split("=")[0]
        if option.startswith("--"):
            return option in names or any(name.startswith(option) for name in names if name.startswith("--"))
        return arg[:2] in names  # `-o` or `-oout.png`

    def takes_value(option: str) -> bool:
        return any(option in action.option_strings and action.nargs != 0 for action in command._actions)

    args = list(itertools.takewhile(lambda arg: arg != "--", args))  # after `--`, only positional arguments
    # `-0 out.png`, a zero for the letter: argparse took it for a negative number, a photo, and said -o is missing
    zeros = [arg for i, arg in enumerate(args) if "-o" in names and re.fullmatch(r"-0\S*", arg)
             and not (i and takes_value(args[i - 1].split("=")[0]))]
    if zeros:
        command.error(f"{zeros[0]}: a zero, taken for a negative number: did you mean -o (the letter o)?")
    unknown = [arg for arg in args if re.match(r"--?[A-Za-z]", arg) and not known(arg)]
    shown = [arg for i, arg in enumerate(args)  # with the values after them, as argparse lists what it did not take
             if arg in unknown or (not arg.startswith("-") and i and args[i - 1] in unknown and "=" not in args[i - 1])]
    if not unknown:
        return
    # `--face-index 1` got no hint (forty-third session's audit): the option that chooses one face, and how it counts
    faces = [arg for arg in unknown if name in ("toonify", "align") and arg.casefold().startswith("--face")]
    hints = _did_you_mean([arg for arg in unknown if arg not in faces], names) + "".join(
        f"\n  {arg.split('=')[0]}: did you mean --face N? It chooses one face of a photo, counted from 1, the "
        f"largest, as --all-faces numbers them (-face1, -face2, ...; the Python API's face_index= counts from 0)"
        for arg in faces)
    for arg in unknown:
        if os.path.exists(arg):  # a photo named `-me.jpg`: "unrecognized arguments" alone (audit)
            hints += (f"\n  {arg} is a {'folder' if os.path.isdir(arg) else 'file'} here: a name that starts with '-' "
                      f"is read as an option; write ./{arg}")
    for option in (arg.split("=")[0] for arg in unknown if not os.path.exists(arg)):
        if option in ("-o", "--output") and any(action.dest == "output" and not action.option_strings
                                                for action in command._actions):
            hints += f"\n  {option}: {name} takes its output as an argument, with no option: {EXAMPLES[name][0]}"
            continue
        if option == "--device" and name in ("align", "project", "toonify", "app"):  # those that take the GPU: "an
            # option of toonlib finetune" said nothing of how to choose it there
            hints += (f"\n  --device: toonlib {name} uses the GPU (CUDA) where there is one, else the CPU; for the "
                      f"CPU run CUDA_VISIBLE_DEVICES= toonlib {name} ..., for the second GPU CUDA_VISIBLE_DEVICES=1")
            continue
        others = [f"toonlib {other}" for other in parser.subcommands.names()
                  if option in _option_names(parser.subcommands.parser(other))]
        if others and f"\n  {option}:" not in hints:
            hints += f"\n  {option}: an option of {', '.join(others)}"
    command.error(f"unrecognized arguments: {' '.join(shown)}{hints}")


def _refuse_words(command: argparse.ArgumentParser, name: str, args: Sequence[str]) -> None:
    """Refuse words given to a command that takes everything as options (`toonlib blend toon.pkl ffhq.pkl`): argparse
    said only which options were required, not that the two models go as --toon and --base."""
    if any(not action.option_strings for action in command._actions) or {"-h", "--help"} & set(args):
        return  # a command with arguments, or its --help asked for (`blend toon.pkl --help` shows the help)
    takes = {option: action.nargs for action in command._actions for option in action.option_strings}
    words, values = [], 0
    for arg in args:
        if arg.startswith("-") and arg != "-" and not re.fullmatch(r"-\.?\d.*", arg):  # a negative number is a value
            nargs = next((nargs for option, nargs in takes.items()  # argparse's abbreviations too
                          if option == arg.split("=")[0] or option.startswith(arg) and arg.startswith("--")), 0)
            count = {None: 1, "?": 1, "+": len(args), "*": len(args)}.get(nargs, nargs)
            attached = "=" in arg or (arg[:2] in takes and len(arg) > 2 and not arg.startswith("--"))  # `-ob.pt`
            values = count - 1 if attached else count
        elif values:
            values -= 1
        else:
            words.append(arg)
    if words:
        # `models FILE` is asked what that model is: `info` says it (forty-fourth session's audit)
        about = (f"\n  to see what a checkpoint holds: toonlib info {words[0] if len(words) == 1 else 'FILE'}"
                 if name == "models" else "")
        command.error(f"unrecognized arguments: {' '.join(words)}\n  toonlib {name} takes only options "
                      f"(toonlib {name} --help): {EXAMPLES[name][0]}{about}")


def _refuse_both_names(command: argparse.ArgumentParser, args: Sequence[str]) -> None:
    """Refuse an option given under two of its names (`blend --toon a.pkl --low b.pkl`): argparse kept the last
    without a word, and the first model was dropped."""
    given = {arg.split("=")[0] for arg in itertools.takewhile(lambda arg: arg != "--", args)}
    for action in command._actions:
        used = [name for name in action.option_strings if name.startswith("--") and name in given]
        if len(used) > 1:
            command.error(f"{' and '.join(used)} are names of one option: give it once")


def _refuse_empty(command: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse an empty argument, what an unset shell variable gives (`toonlib toonify "$PHOTO" -o "$OUT"`): an empty
    photo path toonified the current folder, an empty -o wrote into it, an empty --video was no video."""
    for action in command._actions:
        value = getattr(args, action.dest, None)
        if action.dest not in _EMPTY_ALLOWED and action.default != "" and (
                value == "" or (isinstance(value, list) and "" in value)):
            name = "/".join(action.option_strings) or action.metavar or action.dest
            command.error(f"argument {name}: it is empty (''), which an unset shell variable gives: give "
                          f"{_EMPTY_ADVICE.get(action.dest, 'a value')}")


#: The arguments whose empty value means something: `app --host ''`, Gradio's default host.
_EMPTY_ALLOWED = frozenset({"host"})
#: What `_refuse_empty` asks for instead of an empty argument, by its dest (else "a value").
_EMPTY_ADVICE = {**dict.fromkeys(("input", "output", "checkpoint", "cache_dir", "grid", "photo", "image", "image_out",
                                  "video", "photos", "data", "run_dir"), "a path"),
                 **dict.fromkeys(("toon", "base", "encoder", "resume"), "a model: a path, URL or name (`toonlib "
                                                                        "models`)"),
                 "names": "a registry name (`toonlib models`) or URL"}


def _option_names(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string `parser` takes (`-o`, `--output`, ...)."""
    return [name for action in parser._actions for name in action.option_strings]


#: What a command that toonlib does not have is done with (`toonlib resume` listed every command, finetune's resuming
#: unsaid; thirty-third session's audit).
_COMMAND_HINTS = {
    **dict.fromkeys(("resume", "continue"), "; a fine-tuning run continues when the same `toonlib finetune` command "
                                            "runs again (from its run folder's newest training state)"),
    "train": "; fine-tuning is `toonlib finetune` (toonlib finetune --help)",
    "render": "; `toonlib toonify LATENT.npz -o toon.png` draws a saved latent's toon",
    **dict.fromkeys(("download", "pull"), "; `toonlib fetch NAME` downloads a model (`toonlib models` lists them)"),
}


def _did_you_mean(words: Sequence[str], known: Sequence[str]) -> str:
    """Lines of `word: did you mean X?` for the words close to a known one (misspellings), else ''; caps lock's too
    (`toonlib TOONIFY`, `--SWAP-RES` got no suggestion; thirty-ninth session's audit)."""
    folded = {name.casefold(): name for name in known}
    return "".join(f"\n  {word.split('=')[0]}: did you mean {folded[close[0]]}?" for word in words
                   if (close := difflib.get_close_matches(word.split("=")[0].casefold(), folded, n=1, cutoff=0.75)))


#: The commands that never load a network: they stay quick, torch unimported.
_WITHOUT_TORCH = frozenset({"models", "remove"})


def _run(args: argparse.Namespace) -> int:
    """The command `args` names: its expected failures one line each, its warnings too (`_show_warning`)."""
    with warnings.catch_warnings():
        warnings.showwarning = functools.partial(_show_warning, args.command, set())
        try:
            if args.command not in _WITHOUT_TORCH:
                with interrupts_held():  # a Ctrl-C while they load was lost or became numpy's ImportError
                    import torch  # noqa: F401  (numpy with it)
            return args.func(args)
        except BaseException as exc:
            if interrupted(exc):
                print(f"toonlib {args.command}: interrupted", file=sys.stderr)
                return 130
            # Asked only now: `expected_errors` imports torch, and Ctrl-C may have cut torch's own import short
            # (`toonlib app` in its first seconds), when importing it again raises a RuntimeError of pybind11's.
            if isinstance(exc, BrokenPipeError) or not isinstance(exc, expected_errors()):
                raise  # BrokenPipeError is no error of the command's: `main` stops quietly
            print(f"toonlib {args.command}: error: {_asked_by(args, exc)}{for_command_line(exc)}", file=sys.stderr)
            return 2


def _asked_by(args: argparse.Namespace, exc: BaseException) -> str:
    """'--base-network G: ' before the error of a checkpoint without the network that option asked for (the message
    named the file alone): the option whose network is the missing one and whose file is the checkpoint's."""
    from .checkpoints import MissingNetworkError, split_network
    from .files import user_path

    if not isinstance(exc, MissingNetworkError) or exc.source is None:
        return ""

    def names(file: object) -> set[str]:  # the checkpoint's meta["source"] is the path as typed, ~ expanded
        file = split_network(file)[0] if isinstance(file, str) else file
        return {str(file), str(user_path(file))} if isinstance(file, str) and file else set()

    asked = [f"--{network.replace('_', '-')} {exc.which}" for network, file in (("toon_network", "toon"),
                                                                              ("base_network", "base"))
             if getattr(args, network, None) == exc.which and exc.source in names(getattr(args, file, None))]
    return f"{asked[0]}: " if len(asked) == 1 else ""


def _show_warning(command: str, shown: set[str], message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: object = None, line: str | None = None) -> None:
    """`warnings.showwarning` for the command line: `toonlib COMMAND: warning: ...`, not a source file's line, and
    each text once (`blend --grid` checks the same two models twice)."""
    if str(message) not in shown:
        shown.add(str(message))
        write_line(f"toonlib {command}: warning: {for_command_line(message)}", file=sys.stderr)


def program() -> None:
    """The `toonlib` program (its console script, `python -m toonlib`): `main()` as the process (`run_program`)."""
    run_program(main)


if __name__ == "__main__":
    program()
