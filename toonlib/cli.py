"""The `toonlib` console script. Each sub-command is a thin wrapper over the Python API.

Exit status (also in `--help`): 0 all done; 1 photos of a folder failed (the others were written);
2 bad usage, a missing or unreadable model, weights file or photo, or a photo without a face; 130 interrupted
(Ctrl-C); 141 output closed early (`| head`), nothing printed. Expected failures end in one short message naming
the cause and the fix, never a traceback; warnings are one line each too (`toonlib COMMAND: warning: ...`).
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
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

from .messages import expected_errors, interrupted

Command = Callable[[argparse.Namespace], int]

BATCH_STATUS = "  1  photos of a folder failed (the others were written)\n"  # the one command that toonifies several
EXIT_STATUS = ("exit status:\n  0  all done\n" + BATCH_STATUS
               + "  2  bad usage; a missing or unreadable model, weights file or photo; no face\n"
               "  130  interrupted (Ctrl-C)\n  141  output closed early (`toonlib models | head`), nothing printed")
#: The `examples:` of each command's --help, as typed (`# ...`: what it writes), from the README's "Command line".
EXAMPLES = {
    "convert": ["toonlib convert stylegan2-ffhq-config-f.pkl ffhq.safetensors"],
    "info": ["toonlib info ffhq.safetensors"],
    "fetch": ["toonlib fetch ffhq-1024-tf toonify-blended-tf"],
    "models": ["toonlib models"],
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
DEFAULT_GRID_SEEDS = "0-5"  # blend --grid's rows
MAX_GRID_SEEDS = 32  # blend --grid renders each column's rows in one batch: ~0.5 GB of memory a row at 1024 px
MAX_ALIGN_SIZE = 8192  # align --size: 8x FFHQ's 1024 px; a crop that size already takes ~1 GB of memory
DEFAULT_VIDEO_EVERY = 5  # project --video: steps between frames
DEFAULT_TRUNCATION_PSI = 0.7  # blend --grid's latents
MAX_SEED = 2**32 - 1  # --seed, as blend --seeds (NumPy's seeds, networks.parse_seeds); torch overflowed past 2**64


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

    value = _number()(text)
    try:
        check_setting(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("swap_res ", "")) from None
    return value


def _describe(nets) -> str:
    cfg, meta = nets.config, nets.meta
    parts = [f"{cfg.img_resolution}x{cfg.img_resolution}", f"z {cfg.z_dim}", f"w {cfg.w_dim} x {nets.G_ema.num_ws}",
             f"mapping {cfg.mapping_layers} layers", "G_ema" + (" + G" if nets.G else "") + (" + D" if nets.D else "")]
    if meta.get("encoder_type"):
        kind = meta["encoder_type"]
        parts.append(f"G_ema is the decoder of {'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind} encoder "
                     "checkpoint")
    if meta.get("G_ema_from") == "g":
        parts.append("G_ema read from 'g' (the file has no g_ema)")
    return f"{meta.get('format', '?')} checkpoint: " + ", ".join(parts)


def _check_output_suffix(output: str, command: str, suffixes: str | tuple[str, ...], kind: str, name: str,
                         advice: str = "") -> None:
    """Refuse (before any download or work) an output name whose suffix is not one of the file `command` writes
    there (the first of `suffixes` is suggested), or where no file can be written (a folder, or under a file). A
    folder (`-o out/`, or one that exists) is told the file to name in it: `name` and the first suffix."""
    from .files import check_file_target

    suffixes = (suffixes,) if isinstance(suffixes, str) else suffixes
    if output.endswith(("/", os.sep)) or Path(output).is_dir():  # Path() drops the '/' that says "a folder"
        raise ValueError(f"{output} names a folder, but {command} writes one file there, {kind}: name it, e.g. "
                         f"{Path(output) / (name + suffixes[0])}")
    output = Path(output)
    check_file_target(output)
    if output.suffix.lower() not in suffixes:
        raise ValueError(f"{output}: {command} writes {kind}; name the output {output.with_suffix(suffixes[0])} (tools "
                         f"that pick their reader by the suffix would misread a {output.suffix or 'suffix-less'} file)"
                         + advice)


def _only_with(value: object, option: str, needed: object, needed_option: str, why: str) -> None:
    """Refuse an option given without the one it belongs to (it would be ignored without a word)."""
    if value is not None and not needed:
        raise ValueError(f"{option} goes with {needed_option} ({why}); add {needed_option}, or leave {option} out")


def _check_native_output(output: str, command: str, name: str) -> None:
    """`_check_output_suffix` for toonlib's format (`*.safetensors`)."""
    from .checkpoints import NATIVE_SUFFIX

    _check_output_suffix(output, command, NATIVE_SUFFIX, "toonlib's format, a safetensors file", name)


def _refuse_to_replace_model(output: str, *models: tuple[str, str]) -> None:
    """Refuse (ValueError) an output file that is one of the model files read, given as (source, option) pairs:
    `blend -o` onto its --toon replaced a fine-tuning snapshot's G and D by the blend."""
    from .files import user_path

    target = user_path(output)
    for source, option in models:
        path = user_path(source)
        if target.is_file() and path.is_file() and os.path.samefile(path, target):
            raise ValueError(f"-o {output} is the {option} model's file: writing there would replace that model (a "
                             "fine-tuning snapshot's G and D with it); give another output file")


def _check_image_output(output: str | None, command: str, name: str) -> None:
    """`_check_output_suffix` for an image (PNG suggested; None: no such output asked for)."""
    from .images import IMAGE_SUFFIXES

    if output is not None:
        _check_output_suffix(output, command, (".png", *IMAGE_SUFFIXES), "an image (PNG, JPEG, WebP, ...)", name)


def _fetch_named_models(*models: tuple[str | None, str]) -> None:
    """Download the registry models named by (value, option) pairs before any is loaded, so that a failed
    download says which option takes a local file instead (e.g. `--base PATH`). Paths are left alone. Every value
    is checked first: a misspelt `--base` fails at once, not after the `--toon` download."""
    from .checkpoints import ENCODER_KINDS, GENERATOR_KINDS, check_source
    from .download import fetch
    from .models import MODELS

    for value, option in models:
        if isinstance(value, str):
            check_source(value, f"{option} {value}", kinds=ENCODER_KINDS if option == "--encoder" else GENERATOR_KINDS)
    for value, option in models:
        if isinstance(value, str) and value in MODELS and not Path(value).exists():
            fetch(value, local_option=option)


def _fetch_toonify_models(args: argparse.Namespace, mode: str) -> None:
    """`_fetch_named_models` for what a Toonifier in inversion mode `mode` loads at once."""
    from .pipeline import DEFAULT_ENCODERS, default_base

    wanted = []
    if mode != "psp-toonify":  # that mode's encoder holds its own decoder; base and toon load only to re-blend
        wanted += [(args.base if args.base is not None else default_base(args.toon), "--base"), (args.toon, "--toon")]
    if mode != "optimize":
        wanted.append((args.encoder if args.encoder is not None else DEFAULT_ENCODERS[mode], "--encoder"))
    _fetch_named_models(*wanted)


def cmd_convert(args: argparse.Namespace) -> int:
    from .checkpoints import load_network, save_network

    _check_native_output(args.output, "convert", Path(args.input).stem)
    _refuse_to_replace_model(args.output, (args.input, "input"))
    nets = load_network(args.input)
    print(_describe(nets))
    save_network(args.output, nets)
    print(f"wrote {args.output}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .checkpoints import load_network

    nets = load_network(args.checkpoint)
    print(_describe(nets))
    for line in _history(nets.meta):
        print(line)
    for key, value in nets.config.to_dict().items():
        print(f"  {key}: {value}")
    return 0


def _history(meta: dict) -> list[str]:
    """Where a toonlib file's weights came from, as its meta records it: the fine-tuning run that wrote a snapshot
    (`toonlib finetune`), the file and format a converted one was read from (`toonlib convert`), the models and
    setting of a blend (`toonlib blend`, the notebook's blend explorer)."""
    from .blending import describe_blend

    lines = []
    finetune = meta.get("finetune")
    if isinstance(finetune, dict):
        lines.append(f"fine-tuned from {finetune.get('base')} on {finetune.get('data')}, "
                     f"{finetune.get('kimg')} kimg ({round(1000 * float(finetune.get('kimg') or 0))} images shown)")
    origin = meta.get("origin")
    if isinstance(origin, dict) and origin.get("format") not in (None, "toonlib") and origin.get("source"):
        lines.append(f"converted from {origin['source']} ({origin['format']} format)")
    if isinstance(meta.get("blend"), dict):
        lines.append(f"blend of {describe_blend(meta['blend'])}")
    return lines


def cmd_fetch(args: argparse.Namespace) -> int:
    """Download each model or weights file into its place; one failure does not stop the others."""
    from .download import DownloadError, fetch
    from .files import is_url
    from .models import get_model

    for name in args.names:  # an unknown name fails before any download starts
        if not is_url(name):
            get_model(name)
    failed = 0
    for name in args.names:
        try:
            print(fetch(name, cache_dir=args.cache_dir))
        except DownloadError as exc:
            failed += 1
            print(f"toonlib fetch: error: {exc}", file=sys.stderr)
    if args.cache_dir is not None and failed < len(args.names):
        print(f"the other commands find models there with TOONLIB_CACHE={args.cache_dir} set (or given by path)",
              file=sys.stderr)
    return 2 if failed else 0


MODELS_LEGEND = """\
CACHED: cached = on this machine; - = not downloaded yet (`toonlib fetch NAME` downloads it).
TOON: unblended = a fine-tuned toon model, blended with its base at any swap resolution (--swap-res);
      blended = a published blend, fixed swap resolution; blended+G = blended, and its G network is the
      un-blended toon model (the swap resolution stays adjustable).
BASE: the model a toon model was fine-tuned from, or whose latents an encoder makes: its base (--base) for
      blending and inversion.
KIND: stylegan2 / encoder = toonlib's cache; lpips-vgg, face-alignment, fid = torch hub's folder, where those
      libraries look for them."""


def cmd_models(args: argparse.Namespace) -> int:
    """List every registry entry with its kind and whether it is on this machine."""
    from .download import cache_dir, local_path, torch_hub_checkpoints
    from .models import MODELS

    # every file looked up first: a --cache-dir (or $TOONLIB_CACHE) that is a file fails before anything is printed
    cached = {name: "cached" if local_path(name, cache_dir=args.cache_dir).is_file() else "-" for name in MODELS}
    print(f"toonlib cache: {cache_dir() if args.cache_dir is None else args.cache_dir}")
    print(f"torch hub folder: {torch_hub_checkpoints()}")
    base_width = max(len("BASE"), *(len(info.lineage or "") for info in MODELS.values()))
    print(f"{'NAME':28} {'KIND':14} {'RES':>5}  {'TOON':9}  {'BASE':{base_width}}  {'CACHED':6}  DESCRIPTION")
    for info in MODELS.values():
        toon = "blended+G" if info.toon == "blended" and info.reblend_network == "G" else info.toon or ""
        res = str(info.resolution or "")
        print(f"{info.name:28} {info.kind:14} {res:>5}  {toon:9}  {info.lineage or '':{base_width}}  "
              f"{cached[info.name]:6}  {info.description}")
    print(MODELS_LEGEND)
    return 0


def cmd_blend(args: argparse.Namespace) -> int:
    from .blending import blend, blend_record, check_setting, swap_resolution_grid, toon_generator
    from .checkpoints import Networks, load_generator, save_network
    from .images import save_image
    from .networks import parse_seeds
    from .pipeline import check_swap_res, toon_network_of

    _check_native_output(args.output, "blend", "blended")
    _refuse_to_replace_model(args.output, (args.toon, "--toon"), (args.base, "--base"))
    check_setting(args.swap_res, args.level, args.blend_width)
    _check_image_output(args.grid, "blend", "grid")
    _only_with(args.seeds, "--seeds", args.grid, "--grid", "they are the grid's rows")
    _only_with(args.truncation_psi, "--truncation-psi", args.grid, "--grid", "it shapes the grid's faces")
    seeds = (parse_seeds(args.seeds or DEFAULT_GRID_SEEDS, max_count=MAX_GRID_SEEDS) if args.grid
             else [])  # before anything is loaded or written
    toon_network_of(args.toon, args.toon_network)  # a registry model that holds only a blend: before the download
    check_swap_res(args.swap_res, args.toon)
    _fetch_named_models((args.toon, "--toon"), (args.base, "--base"))
    low = toon_generator(args.toon, args.toon_network)  # as toonify --swap-res takes it
    check_swap_res(args.swap_res, low)
    high = load_generator(args.base, which=args.base_network)
    blended = blend(low, high, args.swap_res, level=args.level, blend_width=args.blend_width)
    record = blend_record(args.toon, args.base, args.swap_res, args.level, args.blend_width)
    save_network(args.output, Networks(G_ema=blended, meta={"blend": record}))
    print(f"wrote {args.output}")
    if args.grid:
        grid = swap_resolution_grid(low, high, seeds, level=args.level,
                                    blend_width=args.blend_width,
                                    truncation_psi=DEFAULT_TRUNCATION_PSI if args.truncation_psi is None
                                    else args.truncation_psi)
        save_image(grid, args.grid)
        print(f"wrote {args.grid}")
    return 0


def _face_stem(stem: str, face: int | None) -> str:
    """`stem` of an output of face `face` (0: the largest), counted from 1 as the web app counts them (`-face1`,
    `-face2`, ...); None: not numbered (--all-faces numbers every face, one found too)."""
    return stem if face is None else f"{stem}-face{face + 1}"


def cmd_align(args: argparse.Namespace) -> int:
    from .align import align_face, align_faces
    from .images import save_image

    _check_image_output(args.output, "align", Path(args.photo).stem + "-aligned")
    output = Path(args.output)
    _refuse_to_overwrite(args.photo, [output], "-o")
    # the largest face alone unless --all-faces: aligning the others too warned of their size, unwritten
    faces = (align_faces(args.photo, output_size=args.size, detector=args.detector) if args.all_faces
             else [align_face(args.photo, output_size=args.size, detector=args.detector)])
    for i, face in enumerate(faces):
        out = output.with_name(_face_stem(output.stem, i if args.all_faces else None) + output.suffix)
        _refuse_to_overwrite(args.photo, [out], "-o")  # a numbered name, unknown before the faces were found
        save_image(face.image, out)
        print(f"wrote {out} (face {face.face_size:.0f} px in the photo)")
    return 0


def cmd_project(args: argparse.Namespace) -> int:
    from .checkpoints import load_generator
    from .devices import default_device
    from .images import read_image, save_image, to_pil
    from .messages import counted
    from .projection import project, require_video_writer, save_video

    _check_output_suffix(args.output, "project", ".npz", "the latent as an .npz file (NVIDIA's projected_w.npz)",
                         Path(args.image).stem, "; pass --image-out for the picture")
    _check_image_output(args.image_out, "project", "reconstruction")
    _only_with(args.video_every, "--video-every", args.video, "--video", "the video's frames")
    if args.video:
        _check_output_suffix(args.video, "project", ".mp4", "an H.264 video (MP4)", "projection")
        require_video_writer()
    target = read_image(args.image)  # a bad photo fails before any model is downloaded
    for option, output in (("-o", args.output), ("--image-out", args.image_out), ("--video", args.video)):
        if output is not None:
            _refuse_to_overwrite(args.image, [Path(output)], option)
    if target.width != target.height:
        warnings.warn(f"{args.image} is {target.width}x{target.height}, not square: project takes an FFHQ-aligned face "
                      "(`toonlib align PHOTO -o aligned.png`, or `toonlib toonify` for the whole way); projecting its "
                      "centre square", stacklevel=2)
    _fetch_named_models((args.base, "--base"))
    G = load_generator(args.base, device=default_device())
    if target.width == target.height != G.img_resolution:  # an aligned crop is most often the model's size
        warnings.warn(f"{args.image} is {target.width}x{target.height}, not the base model's {G.img_resolution} px: "
                      "project takes an FFHQ-aligned face (`toonlib align PHOTO -o aligned.png --size "
                      f"{G.img_resolution}`, or `toonlib toonify` for the whole way); if it is one, it is resized",
                      stacklevel=2)
    result = project(G, target, space=args.space, steps=args.steps, seed=args.seed,
                     save_every=(args.video_every or DEFAULT_VIDEO_EVERY) if args.video else None)
    result.save(args.output)
    print(f"wrote {args.output} (final LPIPS {result.losses[-1, 0]:.4f} after {counted(result.steps, 'step')})")
    if args.image_out:
        save_image(to_pil(result.images[0]), args.image_out)
        print(f"wrote {args.image_out}")
    if args.video:
        save_video(result, args.video)
        print(f"wrote {args.video}")
    return 0


TOONIFY_KINDS = ("toon", "aligned", "reconstruction", "pasted")  # the images toonify writes per face (result fields)


def _toonify_outputs(output: Path, photos: list[Path], source_is_folder: bool
                     ) -> Callable[[Path, int | None, str], Path]:
    """Where `toonify` writes: a function (photo, face number or None, kind) -> path.

    A folder (the default): `<folder>/<photo>-<kind>.png`, where photos of one name (me.jpg, me.png) keep their
    suffix apart (`me-jpg-toon.png`). One photo and `-o` ending in an image suffix: the toon at exactly that path
    and the other images beside it (`<stem>-aligned<suffix>`).
    """
    from .images import IMAGE_SUFFIXES

    if output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir():  # an existing folder stays a folder
        if source_is_folder:
            raise ValueError(f"-o {output} names an image file, but the input is a folder of photos: "
                             "give a folder for -o (each photo gets its own <name>-toon.png there)")

        def image_path(photo: Path, face: int | None, kind: str) -> Path:
            stem = _face_stem(output.stem, face)
            return output.with_name(f"{stem}{'' if kind == 'toon' else '-' + kind}{output.suffix}")
        return image_path

    if output.exists() and not output.is_dir():
        raise ValueError(f"-o {output} is a file, but toonify writes a folder of images there: give a folder "
                         "(it is created), or for one photo an image name such as toon.png")
    if output.suffix and not output.exists() and not source_is_folder:
        raise ValueError(f"-o {output}: toonify writes one photo's images to an image file "
                         f"({', '.join(IMAGE_SUFFIXES)}) or into a folder, and it writes no {output.suffix} images: "
                         f"name it {output.with_suffix('.png')}, or, to name a folder so, create it first")
    stems = Counter(photo.stem for photo in photos)

    def folder_path(photo: Path, face: int | None, kind: str) -> Path:
        stem = _face_stem(photo.stem + (f"-{photo.suffix[1:].lower()}" if stems[photo.stem] > 1 else ""), face)
        return output / f"{stem}-{kind}.png"
    return folder_path


def _photos_to_toonify(name: str) -> list[Path]:
    """The photos named on the command line, checked before any model is loaded or downloaded."""
    from .files import is_url
    from .images import IMAGE_SUFFIXES, read_image
    from .pipeline import photos_in

    if is_url(name):  # before Path() folds its '//'
        read_image(name)  # refused, saying what to do
    source = Path(name)
    if source.is_dir():
        photos = photos_in(source)
        if not photos:
            raise ValueError(f"no photos in the folder {source} (looked for {', '.join(IMAGE_SUFFIXES)})")
        return photos
    if not source.exists():
        raise FileNotFoundError(f"no photo or folder at {source}")
    read_image(source)  # raises ImageReadError for a file that is not an image
    return [source]


def cmd_toonify(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .files import check_file_target
    from .images import save_image
    from .pipeline import Toonifier, paste_faces
    from .projection import save_latent

    if Path(args.photos).suffix.lower() in LATENT_SUFFIXES:
        return _toonify_latent(args)
    source = Path(args.photos)
    photos = _photos_to_toonify(args.photos)
    output_path = _toonify_outputs(Path(args.output), photos, source.is_dir())
    first = 0 if args.all_faces else None  # the first face's number
    # With --all-faces, one pasted photo carries every face's toon (-pasted.png), the other images are per face.
    per_face = [kind for kind in TOONIFY_KINDS if not (args.all_faces and kind == "pasted")]
    check_file_target(output_path(photos[0], first, "toon"))  # a parent that is a file, a folder that is read-only
    _check_toonify_options(args)
    _refuse_to_overwrite(photos, [output_path(photo, first, kind) for photo in photos for kind in per_face]
                         + ([output_path(photo, None, "pasted") for photo in photos] if args.all_faces else []),
                         folder=source if source.is_dir() else None)
    _fetch_toonify_models(args, args.invert)
    toonifier = Toonifier(args.base, args.toon, swap_res=args.swap_res, level=args.level,
                          blend_width=args.blend_width, toon_network=args.toon_network, detector=args.detector,
                          invert=args.invert, encoder=args.encoder)  # it checks swap_res against its toon model
    if args.invert == "optimize" and toonifier.device.type == "cpu":  # the default: say there is a faster way
        print("toonlib toonify: projecting on the CPU takes minutes a photo (the bar below counts them down); "
              "--invert e4e takes seconds (README: Inversion modes)", file=sys.stderr)
    failed = 0
    written: list[Path] = []
    one = len(photos) == 1  # one photo: the projection's step bar; a folder: a bar of photos
    outcomes = toonifier.toonify_many(photos, batch_size=args.batch_size or 4, all_faces=args.all_faces,
                                      space=args.space or "w+",
                                      steps=args.steps, seed=args.seed or 0,
                                      paste_back=args.paste_back and not args.all_faces,  # pasted below, together
                                      progress=one)
    for photo, outcome in tqdm(outcomes, total=len(photos), desc="toonify", unit="photo", disable=one):
        if isinstance(outcome, Exception):
            if one:  # nothing was written: the photo is unusable, as `align` says of it (exit status 2)
                raise outcome
            failed += 1
            tqdm.write(f"skipped {photo}: {_for_command_line(outcome)}", file=sys.stderr)
            continue
        for i, result in enumerate(outcome):
            face = i if args.all_faces else None
            for kind in per_face:
                image, target = getattr(result, kind), output_path(photo, face, kind)
                if image is None:
                    continue
                _refuse_to_overwrite(photos, [target])  # a numbered face's name, unknown before the faces were found
                save_image(image, target)
                written.append(target)
            target = output_path(photo, face, "latent").with_suffix(".npz")  # toonify LATENT re-blends it
            save_latent(result.w, target)
            written.append(target)
            if not args.no_identity:
                tqdm.write(f"{output_path(photo, face, 'toon').name}: {_identity(result)}")
        if args.all_faces and args.paste_back and outcome:
            target = output_path(photo, None, "pasted")
            save_image(paste_faces(outcome[0].photo, [(result.toon, result.quad) for result in outcome]), target)
            written.append(target)
    if one:
        print("wrote " + ", ".join(str(path) for path in written))
    elif failed == len(photos):
        print(f"no photo was toonified: all {failed} failed (above)")
    else:
        print(f"toonified {len(photos) - failed} of {len(photos)} photos into {args.output}")
    return 1 if failed else 0


#: Suffixes of the latent files `toonify` takes instead of a photo: its own and `project`'s .npz (NVIDIA's
#: projected_w.npz too), rosinality's projector output (.pt).
LATENT_SUFFIXES = (".npz", ".pt")


def _toonify_latent(args: argparse.Namespace) -> int:
    """`toonify LATENT`: the toon of latents an earlier toonify or `project` saved, with the toon model re-blended
    as asked (another --swap-res in seconds, where the photo's projection took minutes)."""
    from .files import check_file_target, user_path
    from .images import IMAGE_SUFFIXES, save_image
    from .pipeline import Toonifier
    from .projection import load_latent

    photo_options = (("--invert", args.invert != "optimize"), ("--encoder", args.encoder), ("--steps", args.steps),
                     ("--space", args.space), ("--seed", args.seed), ("--batch-size", args.batch_size),
                     ("--paste-back", args.paste_back), ("--all-faces", args.all_faces))
    for option, given in photo_options:
        if given:
            raise ValueError(f"{option} is about the photo, and {args.photos} is a latent, the photo already "
                             f"inverted: leave {option} out, or toonify the photo itself")
    ws = load_latent(args.photos)  # a file that is no latent fails before any model is downloaded
    stem = user_path(args.photos).stem.removesuffix("-latent")
    output = Path(args.output)
    if output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir():
        targets = [output] if len(ws) == 1 else [output.with_name(f"{output.stem}-{i + 1}{output.suffix}")
                                                 for i in range(len(ws))]
    elif not output.is_dir() and (output.exists() or output.suffix):
        raise ValueError(f"-o {output}: the toon of a latent is written to an image file ({', '.join(IMAGE_SUFFIXES)})"
                         f" or into a folder: name it {output.with_suffix('.png')}, or give a folder")
    else:
        targets = [output / (f"{stem}-toon.png" if len(ws) == 1 else f"{stem}-{i + 1}-toon.png")
                   for i in range(len(ws))]
    check_file_target(targets[0])
    _check_toonify_options(args)
    _fetch_toonify_models(args, "optimize")
    toonifier = Toonifier(args.base, args.toon, swap_res=args.swap_res, level=args.level,
                          blend_width=args.blend_width, toon_network=args.toon_network, detector=args.detector)
    G = toonifier.generator
    if tuple(ws.shape[1:]) != (G.num_ws, G.w_dim):
        raise ValueError(f"{args.photos} holds latents of shape {list(ws.shape)}, and the toon model ({args.toon}, "
                         f"{G.img_resolution} px) takes [N, {G.num_ws}, {G.w_dim}]: they belong to another model; "
                         "toonify them with the toon model of that model's size, or toonify the photo again")
    toons = toonifier.render(ws)
    for toon, target in zip(toons if isinstance(toons, list) else [toons], targets):
        save_image(toon, target)
    print("wrote " + ", ".join(str(path) for path in targets))
    return 0


def _check_toonify_options(args: argparse.Namespace) -> None:
    """Refuse toonify options that would be ignored, by the names typed (`pipeline.check_options` says the same
    in Python's names)."""
    from .encoders import check_encoder_mode
    from .options import OPTIMIZING_MODES
    from .pipeline import check_options, check_swap_res

    for option, value in (("--steps", args.steps), ("--space", args.space), ("--seed", args.seed)):
        if value is not None and args.invert not in OPTIMIZING_MODES:
            raise ValueError(f"{option} is a projection option and --invert {args.invert} runs no projection: use "
                             f"--invert optimize or e4e+optimize, or leave {option} out")
    check_encoder_mode(args.invert, args.encoder)  # before its download: one for 'optimize', or of the other space
    why = "it shapes a re-blend of the toon model"
    _only_with(args.level or None, "--level", args.swap_res, "--swap-res", why)
    _only_with(args.blend_width, "--blend-width", args.swap_res, "--swap-res", why)
    check_swap_res(args.swap_res, args.toon)
    check_options(args.invert, steps=args.steps, space=args.space or "w+", swap_res=args.swap_res, level=args.level,
                  blend_width=args.blend_width)


def _refuse_to_overwrite(inputs: str | Path | list[Path], targets: list[Path], option: str = "-o",
                         folder: Path | None = None) -> None:
    """Refuse (ValueError) to write any of `targets` over one of the input photos (those of `folder`, if given)."""
    from .files import user_path

    inputs = {user_path(p).resolve() for p in ([inputs] if isinstance(inputs, (str, Path)) else inputs)}
    clash = next((target for target in targets if user_path(target).resolve() in inputs), None)
    if clash is None:
        return
    if folder is not None and user_path(clash).parent.resolve() == user_path(folder).resolve():
        # `toonify photos/ -o photos/` worked once; run again, its toons were photos to toonify
        raise ValueError(f"refusing to overwrite {clash}: -o is the photos folder itself, so the toons of an earlier "
                         f"run there are read as photos now; write them to another folder, e.g. -o "
                         f"{user_path(folder).resolve().name}-toons/ (and move out the earlier ones)")
    raise ValueError(f"refusing to overwrite {clash}: it is an input photo; choose another {option}")


def _identity(result) -> str:
    """The identity report of a toonified face, or why there is none (dlib is an optional extra)."""
    from .identity import identity_report

    try:
        return str(identity_report(result))
    except ImportError as exc:
        return f"identity not measured ({exc}); pip install 'toonlib[dlib]', or pass --no-identity"


def cmd_finetune(args: argparse.Namespace) -> int:
    from .train import config_from_args, finetune

    path = finetune(config_from_args(args), progress=args.progress)
    print(f"last snapshot: {path}")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    from .app import ToonApp, check_port, check_settings, launch, require_gradio
    from .pipeline import Toonifier, check_swap_res

    require_gradio()  # before any model is downloaded
    max_pixels = int(args.max_megapixels * 1e6)
    check_settings(args.steps, args.max_steps, max_pixels)
    check_port(args.host, args.port)
    modes = list(dict.fromkeys(args.invert))
    if args.encoder is not None and sum(mode != "optimize" for mode in modes) != 1:
        raise ValueError(f"--encoder names the checkpoint of one encoder mode, but --invert offers {modes}: "
                         "offer one encoder mode, or leave out --encoder (each mode then uses its registry encoder)")
    for mode in modes:
        _fetch_toonify_models(args, mode)
    toonifiers = [Toonifier(args.base, args.toon, toon_network=args.toon_network, detector=args.detector, invert=mode,
                            encoder=None if mode == "optimize" else args.encoder)  # the encoder mode's encoder
                  for mode in modes]  # one per mode offered, each with its models
    check_swap_res(args.swap_res, toonifiers[0].published_blend)
    app = ToonApp(toonifiers, swap_res=args.swap_res, steps=args.steps, max_steps=args.max_steps,
                  max_pixels=max_pixels)
    launch(app, host=args.host, port=args.port, share=args.share)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="toonlib", description="Toonify faces with StyleGAN2 network blending.",
                                     epilog="`toonlib COMMAND --help` (or `toonlib help COMMAND`) shows a command's "
                                            "options, their defaults and examples.\n\n" + EXIT_STATUS,
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

    p = sub.add_parser("blend", help="blend a toon model (low resolutions) with a base model (high resolutions)")
    p.add_argument("--toon", "--low", dest="toon", required=True,
                   help="the toon model, which gives the low-resolution layers (path, URL or name)")
    p.add_argument("--base", "--high", dest="base", required=True,
                   help="the base FFHQ model, which gives the high-resolution layers (path, URL or name)")
    p.add_argument("--toon-network", "--low-network", dest="toon_network", default=None, choices=["G_ema", "G"],
                   help="which generator of --toon (default: for a registry name the registry's choice, its un-blended "
                        "toon model, as toonify takes it: G of toonify-blended-tf, whose G_ema is already blended; "
                        "for a file as toonify takes it: a training snapshot's G_ema, else its G if it has one, as "
                        "Toonify's file)")
    p.add_argument("--base-network", "--high-network", dest="base_network", default="G_ema", choices=["G_ema", "G"],
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

    p = sub.add_parser("align", help="crop and align a face like FFHQ")
    p.add_argument("photo", help="a photo with a face (jpg, png, ...)")
    p.add_argument("-o", "--output", required=True,
                   help="aligned image (PNG); with --all-faces numbered -face1, -face2, ... (largest first)")
    p.add_argument("--size", type=_number(high=MAX_ALIGN_SIZE), default=1024,
                   help=f"output size in px, the model's resolution (default 1024, FFHQ's; at most {MAX_ALIGN_SIZE}, "
                        "8x that: larger crops only enlarge the photo's pixels, and run out of memory)")
    _add_detector(p)
    p.add_argument("--all-faces", action="store_true", help="every face, largest first (default: the largest)")
    p.set_defaults(func=cmd_align)

    p = sub.add_parser("project", help="find the latent that makes the base model reproduce an aligned face")
    p.add_argument("image", help="an aligned face (see `toonlib align`)")
    p.add_argument("--base", "--model", dest="base", default="ffhq-1024-tf",
                   help="the base model to project into: path, URL or name (default: ffhq-1024-tf)")
    p.add_argument("--space", default="w+", choices=["w+", "w"],
                   help="w+: one w per layer (Toonify's choice, default); w: one w for all layers")
    p.add_argument("--steps", type=_number(), default=None, help="optimisation steps (default 500 for w+, 1000 for w)")
    p.add_argument("--seed", type=_number(low=0, high=MAX_SEED), default=0,
                   help="random seed of the noise maps and latent noise (default 0)")
    p.add_argument("-o", "--output", required=True, help="latent file (.npz, key 'w' like NVIDIA's projected_w; "
                                                         "`toonlib toonify LATENT.npz -o toon.png` draws its toon)")
    p.add_argument("--image-out", help="also save the reconstruction (PNG)")
    p.add_argument("--video", help="also save a target | projection video (.mp4, needs imageio-ffmpeg)")
    p.add_argument("--video-every", type=_number(),
                   help=f"steps between video frames (default {DEFAULT_VIDEO_EVERY})")
    p.set_defaults(func=cmd_project)

    from .options import INVERT_MODES

    p = sub.add_parser("toonify", help="toonify a photo or a folder of photos")
    p.add_argument("photos", help="a photo or a folder of photos; or a latent file an earlier toonify or `toonlib "
                                  "project` wrote (.npz): its toon, re-blended as asked, in seconds")
    p.add_argument("-o", "--output", required=True,
                   help="output folder (<name>-toon.png, -aligned, -reconstruction, -pasted, -latent.npz); for one "
                        "photo also an image file: the toon there, the others beside it (out.png, out-aligned.png, "
                        "..., out-latent.npz)")
    _add_toonifier_models(p, "used with --swap-res")
    p.add_argument("--invert", default="optimize", choices=INVERT_MODES,
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
    p.add_argument("--space", default=None, choices=["w+", "w"],
                   help="w+: one w per layer (Toonify's choice, default); w: one w for all layers")
    p.add_argument("--steps", type=_number(), default=None,
                   help="projection steps (default 500 in w+, 1000 in w; 100 with --invert e4e+optimize)")
    p.add_argument("--seed", type=_number(low=0, high=MAX_SEED), default=None,
                   help="random seed of the projection (default 0)")
    p.add_argument("--batch-size", type=_number(), default=None, help="photos projected together (default: 4)")
    p.add_argument("--paste-back", action="store_true", help="also write the toon face pasted into the photo "
                                                             "(with --all-faces, every face's toon in one photo)")
    p.add_argument("--all-faces", action="store_true", help="every face of each photo (default: the largest)")
    _add_detector(p)
    p.set_defaults(func=cmd_toonify)

    from .train import add_train_arguments

    p = sub.add_parser("finetune", help="fine-tune a StyleGAN2 model (with its D) on a folder of faces; resumes",
                       description="Transfer learning with ADA. For several GPUs: "
                                   "torchrun --nproc_per_node=N -m toonlib.train ... (same options).")
    add_train_arguments(p)
    p.epilog = _examples("finetune") + p.epilog  # fine-tuning's own exit statuses
    p.set_defaults(func=cmd_finetune)

    from .options import DEFAULT_STEPS, DEFAULT_SWAP_RES, INVERT_MODES, MAX_PIXELS, MAX_STEPS

    p = sub.add_parser("app", help="the Toonify web app in your browser (Gradio; pip install 'toonlib[app]')")
    _add_toonifier_models(p, "re-blended at the swap resolution chosen on the page")
    p.add_argument("--swap-res", type=_swap_res, default=DEFAULT_SWAP_RES,
                   help=f"the swap resolution chosen first on the page, in px (default {DEFAULT_SWAP_RES})")
    _add_detector(p)
    p.add_argument("--invert", nargs="+", default=["optimize"], choices=INVERT_MODES, metavar="MODE",
                   help="the inversion modes offered, the first selected: optimize (projection, default), e4e or "
                        "psp (one encoder pass: fast), e4e+optimize, psp-toonify; each mode loads its own models")
    p.add_argument("--encoder", default=None,
                   help="encoder checkpoint for the one encoder mode in --invert (path, URL or name; default: "
                        "e4e-ffhq, psp-ffhq or psp-toonify)")
    p.add_argument("--steps", type=_number(), default=DEFAULT_STEPS,
                   help=f"where the optimisation-steps slider starts (default {DEFAULT_STEPS})")
    p.add_argument("--max-steps", type=_number(), default=MAX_STEPS,
                   help=f"the steps slider's end (default {MAX_STEPS})")
    p.add_argument("--max-megapixels", type=_number(float, 0), default=MAX_PIXELS / 1e6,
                   help=f"larger photos are refused (default {MAX_PIXELS / 1e6:.0f})")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0: your network)")
    p.add_argument("--port", type=_number(int, 1, 65535), default=None,
                   help="port (default: the first free one from 7860)")
    p.add_argument("--share", action="store_true", help="also a public *.gradio.live link (Colab; needs internet)")
    p.set_defaults(func=cmd_app)
    return parser


def _add_toonifier_models(p: argparse.ArgumentParser, toon_network_use: str) -> None:
    """--base, --toon and --toon-network of the commands that make a `Toonifier` (toonify, app)."""
    p.add_argument("--base", default=None,
                   help="base model photos are inverted into (default: the toon model's own base, its lineage in "
                        "`toonlib models`; FFHQ 1024 for a file)")
    p.add_argument("--toon", default="toonify-blended-tf",
                   help="toon checkpoint: path, URL or name (default: toonify-blended-tf, Toonify's)")
    p.add_argument("--toon-network", default=None, choices=["G", "G_ema"],
                   help=f"the toon model inside --toon, {toon_network_use} (default: the registry's choice; for a "
                        "file a training snapshot's G_ema (toonlib finetune's, NVIDIA's, rosinality's), else its G if "
                        "it has one, as Toonify's file, else its G_ema)")


def _add_detector(p: argparse.ArgumentParser) -> None:
    """--detector of the commands that find faces (align, toonify, app)."""
    from .options import DETECTORS

    p.add_argument("--detector", default="auto", choices=DETECTORS, type=lambda text: text.replace("-", "_"),
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
        kwargs.setdefault("epilog", _examples(name) + (EXIT_STATUS if name == "toonify"
                                                       else EXIT_STATUS.replace(BATCH_STATUS, "")))
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
    try:
        try:
            return _run(_parse(argv))
        finally:
            sys.stdout.flush()  # a reader gone away (`| head`) shows here, not as a traceback at exit
    except BrokenPipeError:  # stdout's reader went away: stop quietly, as command-line tools do (128 + SIGPIPE)
        with contextlib.suppress(OSError, ValueError):  # nothing more reaches the closed pipe, even at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:  # outside a command (while the arguments are parsed): no traceback either
        print("toonlib: interrupted", file=sys.stderr)
        return 130


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed arguments; what the sub-command does not take is refused with that sub-command's usage (argparse
    would show the top level's, `toonlib [-h] [--version] COMMAND ...`)."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # `toonlib` alone: what it can do (argparse said only "the following arguments are required")
        parser.print_help(sys.stderr)
        parser.exit(2, "\ntoonlib: error: no command given: pick one of the COMMANDs above\n")
    if argv[0] == "help":  # `toonlib help` is `toonlib --help`, `toonlib help toonify` is `toonlib toonify --help`
        argv = [argv[1], "--help"] if len(argv) > 1 and not argv[1].startswith("-") else ["--help"]
    leading = list(itertools.takewhile(lambda arg: arg.startswith("-"), argv))  # the options before the command
    if stray := [arg for arg in leading if arg.split("=")[0] not in _option_names(parser)]:
        parser.error(f"unrecognized arguments: {' '.join(stray)}" + _did_you_mean(stray, _option_names(parser))
                     + "\n  (a command's options go after the command: toonlib COMMAND --help)")
    commands = parser.subcommands.names()
    if len(argv) > len(leading) and (word := argv[len(leading)]) not in commands:
        parser.error(f"no command {word!r}" + (_did_you_mean([word], commands) or
                                               f"; the commands are {', '.join(commands)} (`toonlib --help` says "
                                               "what each does)"))
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = parser.subcommands.parser(args.command)
        options = [arg.split("=")[0] for arg in extra if arg.startswith("-")]
        if args.command == "toonify" and not options:
            command.error(f"toonify takes one photo or one folder of photos, got also {' '.join(extra)}: put the "
                          "photos in a folder and give the folder")
        command.error(f"unrecognized arguments: {' '.join(extra)}" + _did_you_mean(options, _option_names(command)))
    return args


def _option_names(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string `parser` takes (`-o`, `--output`, ...)."""
    return [name for action in parser._actions for name in action.option_strings]


def _did_you_mean(words: Sequence[str], known: Sequence[str]) -> str:
    """Lines of `word: did you mean X?` for the words close to a known one (misspellings), else ''."""
    return "".join(f"\n  {word.split('=')[0]}: did you mean {close[0]}?" for word in words
                   if (close := difflib.get_close_matches(word.split("=")[0], known, n=1, cutoff=0.75)))


def _run(args: argparse.Namespace) -> int:
    """The command `args` names: its expected failures one line each, its warnings too (`_show_warning`)."""
    with warnings.catch_warnings():
        warnings.showwarning = functools.partial(_show_warning, args.command, set())
        try:
            return args.func(args)
        except BaseException as exc:
            if interrupted(exc):
                print(f"toonlib {args.command}: interrupted", file=sys.stderr)
                return 130
            # Asked only now: `expected_errors` imports torch, and Ctrl-C may have cut torch's own import short
            # (`toonlib app` in its first seconds), when importing it again raises a RuntimeError of pybind11's.
            if isinstance(exc, BrokenPipeError) or not isinstance(exc, expected_errors()):
                raise  # BrokenPipeError is no error of the command's: `main` stops quietly
            print(f"toonlib {args.command}: error: {_for_command_line(exc)}", file=sys.stderr)
            return 2


#: Python's words in the API's messages, and the command line's: (pattern, replacement) for `re.sub`.
_COMMAND_LINE_WORDS = (
    (r"\bdevice='([^']*)'", r"--device \1"),  # devices.default_device
    (r"\binvert='([^']*)'", r"--invert \1"),  # encoders.check_encoder_mode
    (r"\b(encoder|invert)=(?=\s)", r"--\1"),
    (r"^swap_res (\d+) is above the (\d+) px of the toon model", r"--swap-res \1 is above the \2 px of the --toon "
     "model"),  # pipeline.check_swap_res
    (r" or None \(((?:the CPU|CUDA) when)", r", or leave --device out (\1"),
    (r"(--[\w-]+ [^\s(]+) \(\w+=[^()]*\)", r"\1"),  # TrainConfig's '--resolution 64 (resolution=64)'
    (r"\((--[\w-]+), \w+=\)", r"(\1)"),  # download's '(--cache-dir, cache_dir=)'
    (r" \(for a generator checkpoint use toonlib\.load_network\)",  # encoders.load_encoder of a generator's file
     "; a generator goes to --base or --toon, and --encoder takes a pSp / e4e file (e4e-ffhq, psp-ffhq, psp-toonify)"),
    (r"Downscale the photo, or, for a file you trust, set PIL\.Image\.MAX_IMAGE_PIXELS = None before reading it",
     "Downscale it: a face needs a few megapixels at most"),  # images.read_image of a 200-megapixel photo
)


def _for_command_line(message: BaseException | str) -> str:
    """An error's or warning's message in the command line's words (`_COMMAND_LINE_WORDS`); an OSError's bare
    `[Errno 13] Permission denied: 'secret.pkl'` as `secret.pkl: permission denied; ...`."""
    if isinstance(message, OSError) and message.filename is not None and message.strerror and str(
            message).startswith("[Errno"):
        text = f"{message.filename}: {message.strerror[:1].lower()}{message.strerror[1:]}"
        if isinstance(message, PermissionError):
            text += f"; check its permissions (ls -ld {message.filename}) or give another file"
    else:
        text = str(message)
    for pattern, replacement in _COMMAND_LINE_WORDS:
        text = re.sub(pattern, replacement, text)
    return text


def _show_warning(command: str, shown: set[str], message: Warning | str, category: type[Warning], filename: str,
                  lineno: int, file: object = None, line: str | None = None) -> None:
    """`warnings.showwarning` for the command line: `toonlib COMMAND: warning: ...`, not a source file's line, and
    each text once (`blend --grid` checks the same two models twice)."""
    if str(message) not in shown:
        shown.add(str(message))
        print(f"toonlib {command}: warning: {_for_command_line(message)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
