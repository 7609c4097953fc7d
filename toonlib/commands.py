"""The bodies of the `toonlib` commands (`cmd_*`, which `cli.build_parser` dispatches to) and the checks they share:
output names refused before any download or work, models fetched before they load, the command line's words for the
API's messages (`for_command_line`). Each command is a thin wrapper over the Python API; `cli.py` parses the
arguments, runs a command and turns its expected failures into one line and an exit status.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import sys
import textwrap
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Iterable, Iterator, NoReturn

from .files import refuse_to_overwrite_input, replaced_note, replacing_note
from .options import MAX_GRID_SEEDS

if TYPE_CHECKING:
    from .models import ModelInfo

DEFAULT_GRID_SEEDS = "0-5"  # blend --grid's rows
DEFAULT_VIDEO_EVERY = 5  # project --video: steps between frames
CPU_HINT_STEPS = 100  # toonify names the encoders on a CPU by default and from this many --steps (~a minute at 1024 px)
DEFAULT_TRUNCATION_PSI = 0.7  # blend --grid's latents


#: The inversion modes of each encoder paper's checkpoints, as `toonlib info` names them.
_ENCODER_MODES = {"e4e": "toonify --invert e4e or e4e+optimize",
                  "pSp": "toonify --invert psp, or psp-toonify where its decoder draws toons"}


def _describe(nets) -> str:
    """`toonlib info`'s first line: the format, and the generator's shape; for a pSp / e4e checkpoint, the encoder
    first (the generator is its decoder)."""
    cfg, meta = nets.config, nets.meta
    parts = [f"{cfg.img_resolution}x{cfg.img_resolution}", f"z {cfg.z_dim}", f"w {cfg.w_dim} x {nets.G_ema.num_ws}",
             f"mapping {cfg.mapping_layers} layers", "G_ema" + (" + G" if nets.G else "") + (" + D" if nets.D else "")]
    if meta.get("G_ema_from") == "g":
        parts.append("G_ema read from 'g' (the file has no g_ema)")
    head = f"{meta.get('format', '?')} checkpoint: "
    if kind := meta.get("encoder_type"):
        from .encoders import ENCODER_TYPES
        from .messages import with_article

        paper = ENCODER_TYPES.get(kind, kind)
        if meta.get("format") == "psp":
            modes = f"; {_ENCODER_MODES[paper]}" if paper in _ENCODER_MODES else ""
            head += f"{with_article(paper)} encoder ({kind}{modes}) and its decoder, "
        else:  # `toonlib convert` of an encoder's checkpoint: its decoder alone
            head += f"the decoder of {with_article(paper)} encoder (the encoder is not in this file), "
    return head + ", ".join(parts)


def _check_output_suffix(output: str, command: str, suffixes: str | tuple[str, ...], kind: str, name: str,
                         advice: str = "", option: str = "-o", numbered: bool = False) -> None:
    """Refuse (before any download or work) an output name whose suffix is not one of the file `command` writes
    there (the first of `suffixes` is suggested), or where no file can be written (a folder, or under a file). A
    folder (`-o out/`, or one that exists) is told the file to name in it: `name` and the first suffix. An output of
    another `option` than `-o` (`--grid`, `--video`) is named with it: "the output" was -o's too. `numbered`: the
    name is numbered per face (`--all-faces`), which a folder is told."""
    from .files import check_file_target

    shown, named = (output, "the output") if option == "-o" else (f"{option} {output}", "it")
    suffixes = (suffixes,) if isinstance(suffixes, str) else suffixes
    if output.endswith(("/", os.sep)) and Path(output).is_file():  # its advice named a path under a file (audit)
        raise NotADirectoryError(f"{shown}: {Path(output)} is a file, not a folder: give a folder, or name the "
                                 f"output file, e.g. {name + suffixes[0]}")
    if output.endswith(("/", os.sep)) or Path(output).is_dir():  # Path() drops the '/' that says "a folder"
        example = Path(output) / (name + suffixes[0])
        if numbered:
            raise ValueError(f"{shown} names a folder, but {command} --all-faces takes a file name, {kind}, and "
                             f"numbers it per face: name it, e.g. {example} (written as "
                             f"{example.with_stem(_face_stem(name, 0))}, {_face_stem(name, 1)}{suffixes[0]}, ...)")
        raise ValueError(f"{shown} names a folder, but {command} writes one file there, {kind}: name it, e.g. "
                         f"{example}")
    output = Path(output)
    check_file_target(output)
    if output.suffix.lower() not in suffixes:
        raise ValueError(f"{shown}: {command} writes {kind}; name {named} {output.with_suffix(suffixes[0])} "
                         f"(tools that pick their reader by the suffix would misread a {output.suffix or 'suffix-less'}"
                         " file)" + advice)


def _only_with(value: object, option: str, needed: object, needed_option: str, why: str) -> None:
    """Refuse an option given without the one it belongs to (it would be ignored without a word)."""
    if value is not None and not needed:
        raise ValueError(f"{option} goes with {needed_option} ({why}); add {needed_option}, or leave {option} out")


def _check_native_output(output: str, command: str, name: str) -> None:
    """`_check_output_suffix` for toonlib's format (`*.safetensors`); `-` (stdout) is said to be no file name: it was
    told to name the output `-.safetensors` (forty-fourth session's audit)."""
    from .checkpoints import NATIVE_SUFFIX

    if output == "-":
        raise ValueError(f"{command} writes a file, not to the standard output ('-'): name the output file, e.g. "
                         f"{name}{NATIVE_SUFFIX}")
    _check_output_suffix(output, command, NATIVE_SUFFIX, "toonlib's format, a safetensors file", name)


def _check_image_output(output: str | None, command: str, name: str, option: str = "-o",
                        numbered: bool = False) -> None:
    """`_check_output_suffix` for an image (PNG suggested; None: no such output asked for), of a format this Pillow
    writes (`images.image_file_format`)."""
    from .images import IMAGE_SUFFIXES, image_file_format

    if output is not None:
        _check_output_suffix(output, command, (".png", *IMAGE_SUFFIXES), "an image (PNG, JPEG, WebP, ...)", name,
                             option=option, numbered=numbered)
        image_file_format(output)  # before the work: `.avif` on a Pillow older than 11.3 failed after a projection


def _fetch_named_models(*models: tuple[str | None, str], pathless: Collection[str] = ()) -> None:
    """Download the registry models and URLs named by (value, option) pairs before any is loaded, so that a failed
    download says which option takes a local file instead (e.g. `--base PATH`), unless the command refuses a path
    there (`pathless`: the app's --encoder with several encoder modes). Paths are left alone. Every value is checked
    first: a misspelt `--base` fails at once, not after the `--toon` download."""
    from .checkpoints import ENCODER_KINDS, GENERATOR_KINDS, check_source, split_network
    from .download import DownloadError, cache_state, fetch, local_path
    from .files import is_url
    from .models import MODELS

    for value, option in models:
        if isinstance(value, str) and option.startswith("-"):  # not LPIPS' VGG16, which no option names
            check_source(value, f"{option} {value}", kinds=ENCODER_KINDS if option == "--encoder" else GENERATOR_KINDS)
    named = [(name, option) for name, option in ((split_network(value)[0], option) for value, option in models)
             if isinstance(name, str) and (name in MODELS or is_url(name)) and not Path(name).exists()]  # 'x (G)'
    # (a URL too: its failure named no option, its advice a hashed cache name to save a file as; audit)
    for name, option in named:
        try:
            fetch(name, local_option=None if option in pathless else option, cache_option=None)  # no --cache-dir
        except DownloadError as exc:
            # LPIPS' weights, named by no option, are said with what needs them (review: "could not download
            # 'lpips-vgg16'" alone dropped why a projection needs 553 MB of VGG16)
            said = (f"the projection's loss (LPIPS) needs torchvision's ImageNet VGG16 weights: {exc}"
                    if option == LPIPS else str(exc))
            if not exc.offline:
                if option != LPIPS:
                    raise
                raise DownloadError(said, exc.path, exc.reason, exc.offline) from None
            # the others this command needs and lacks, said now: offline, `toonlib app` said one per run
            missing = {other: option for other, option in named if other != name and cache_state(other) == "-"}
            # a URL's file is saved under a hashed cache name: its option takes the file saved anywhere (review)
            places = {other: f"save it anywhere and pass its path: {option} PATH" if is_url(other) else
                      f"save it as {local_path(other)}" for other, option in missing.items()}
            raise DownloadError(said + "".join(
                f"\nThis command needs {other!r} too, also not on this machine: `toonlib fetch {other}` once "
                f"online, or {place}" for other, place in places.items()), exc.path, exc.reason, exc.offline) from None


def _fetch_toonify_models(args: argparse.Namespace, *modes: str, base: bool = True, encoder_path: bool = True) -> None:
    """`_fetch_named_models` for what Toonifiers in inversion modes `modes` load at once, in one call (offline, the
    app's `--invert psp e4e` named one missing encoder per run), LPIPS' VGG16 too where a mode projects; no modes: a
    latent's toon, which inverts nothing; `base=False`: the toon model alone (a latent's toon drawn by its published
    blend); `encoder_path=False`: --encoder takes no path (the app offering several encoder modes), so a failed
    download does not offer it."""
    from .encoders import holds_decoder
    from .options import OPTIMIZING_MODES
    from .pipeline import (
        DEFAULT_ENCODERS,
        check_default_base,
        check_not_a_base,
        check_not_a_toon,
        check_not_an_encoder,
        default_base,
    )

    wanted = []
    check_not_a_toon(args.base, f"--base {args.base}", "give it as --toon")
    check_not_an_encoder(args.toon, f"--toon {args.toon}", "give it as --encoder with --invert {mode}")
    check_not_a_base(args.toon, f"--toon {args.toon}", "give it as --base")
    # psp-toonify's encoder holds its own decoder, base and toon loaded only to re-blend (an encoder file without one
    # draws with the toon's published blend: they load at once); with --swap-res they are read at once, to re-blend:
    # offline, only the toon was said missing, after the encoder had loaded (thirty-ninth session's audit)
    reblend = getattr(args, "swap_res", None) is not None
    if not base:
        wanted.append((args.toon, "--toon"))
    elif not modes or any(mode != "psp-toonify" or not holds_decoder(args.encoder) or reblend for mode in modes):
        named = args.base if args.base is not None else default_base(args.toon)
        check_default_base(args.toon, named)
        wanted += [(named, "--base"), (args.toon, "--toon")]
    wanted += [(args.encoder if args.encoder is not None else DEFAULT_ENCODERS[mode], "--encoder") for mode in modes
               if mode != "optimize"]
    if any(mode in OPTIMIZING_MODES for mode in modes):
        wanted += _lpips_weights()
    _fetch_named_models(*dict.fromkeys(wanted), pathless=(LPIPS,) + (() if encoder_path else ("--encoder",)))


#: How `_fetch_named_models` names LPIPS' VGG16, which no option takes a path of.
LPIPS = "LPIPS"


def _lpips_weights() -> list[tuple[str, str]]:
    """LPIPS' VGG16 as `_fetch_named_models` takes it, for the commands that project, unless an LPIPS is built in
    this process already: it was fetched at the first projection step, offline after a folder's first batch was read
    and aligned, unnamed among the files the command said it needed (thirty-ninth session's audit)."""
    from .losses import VGG16_WEIGHTS, lpips_needs_weights

    return [(VGG16_WEIGHTS, LPIPS)] if lpips_needs_weights() else []


def _print_now(*lines: str) -> OSError | None:
    """Print `lines` on stdout, flushed; what stdout raised (it took nothing) is returned, not raised, so that a
    command writes its other files all the same (`blend --grid`), then `_stdout_failed`."""
    try:
        print(*lines, sep="\n", flush=True)
    except OSError as exc:
        return exc
    return None


def _stdout_failed(exc: OSError, done: str = "") -> NoReturn:
    """Raise stdout's failure `exc`, said as the standard output's, with what the command did (`done`: "out.safetensors
    was written all the same"): "[Errno 28] No space left on device" of `> /dev/full` alone read as the output file's
    disk, where `convert` had written nothing (forty-fourth session's audit). A reader gone away (`| true`, `| head`)
    stays a BrokenPipeError, `cli.main`'s quiet exit 141."""
    from .messages import stdout_failure

    if isinstance(exc, BrokenPipeError):
        raise exc
    raise OSError(stdout_failure(exc) + (f"; {done}" if done else "")) from None


def _say(*lines: str, done: str = "") -> None:
    """Print `lines` on stdout, flushed: a model command's report of what it did (`done`, said where stdout takes
    nothing: `_stdout_failed`), printed once it is done."""
    if (failed := _print_now(*lines)) is not None:
        _stdout_failed(failed, done)


def cmd_convert(args: argparse.Namespace) -> int:
    from .checkpoints import load_network, refuse_to_replace_model, save_network, split_network

    file, which = split_network(args.input)
    if which is not None:  # "toon.pkl (G)", as info's and blend records name it: load_network's Python advice
        raise ValueError(f"{args.input!r} names the {which} of {file}, and convert writes every network of a file: "
                         f"give {file} (its {which} is converted with the others)")
    _check_native_output(args.output, "convert", Path(args.input).stem)
    refuse_to_replace_model(args.output, (args.input, "input"), named="the output")
    nets = load_network(args.input)
    replaced = replaced_note(args.output)
    save_network(args.output, nets)
    # the file itself holds the encoder (a pSp / e4e checkpoint), not a converted decoder that records its kind
    encoder = (f" (its decoder alone: toonlib's format holds generators; --encoder takes {args.input} itself)"
               if nets.meta.get("encoder_type") and nets.meta.get("format") == "psp" else "")
    # said once the file is written: the description printed first stopped the conversion where stdout took nothing
    # (`| true`, `> /dev/full`), while blend wrote its file (forty-fourth session's audit)
    _say(_describe(nets), f"wrote {args.output}{encoder}{replaced}", done=f"{args.output} was written all the same")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .checkpoints import load_network

    nets = load_network(args.checkpoint)
    lines = [_describe(nets), *_registry_lines(args.checkpoint), *_history(nets.meta)]
    if nets.meta.get("w_avg") == "computed":  # truncation pulls towards it: unsaid (forty-first session's audit)
        lines.append("mean w (the centre of truncation): estimated from its mapping network; the file records none of "
                     "its own")
    parts = [("generator", nets.config)] + ([("discriminator (D)", nets.D.config)] if nets.D is not None else [])
    for part, config in parts:  # D's config was unsaid, its first line's "+ D" alone (forty-first session's audit)
        lines.append(f"{part}:")
        lines += [f"  {key}: {value}" for key, value in config.to_dict().items()]
    _say(*lines)  # `> /dev/full` said as the standard output's: "[Errno 28]" alone read as the checkpoint's disk
    return 0


def _history(meta: dict) -> list[str]:
    """Where a toonlib file's weights came from, as its meta records it: the fine-tuning run that wrote a snapshot
    (`toonlib finetune`), the file and format a converted one was read from (`toonlib convert`), the models and
    setting of a blend (`toonlib blend`, the notebook's blend explorer)."""
    import math

    from .blending import describe_blend

    lines = []
    finetune = meta.get("finetune")
    if isinstance(finetune, dict):
        kimg = finetune.get("kimg") or 0
        # a kimg that is no number (a file edited by hand) is shown as it is: it stopped `info` with "could not
        # convert string to float" and no file named (thirty-ninth session's audit)
        shown = (f" ({round(1000 * kimg)} images shown)" if isinstance(kimg, (int, float)) and math.isfinite(kimg)
                 else "")
        lines.append(f"fine-tuned from {finetune.get('base')} on {finetune.get('data')}, "
                     f"{finetune.get('kimg')} kimg{shown}")
    origin = meta.get("origin")
    if isinstance(origin, dict) and origin.get("format") not in (None, "toonlib") and origin.get("source"):
        lines.append(f"converted from {origin['source']} ({origin['format']} format)")
    if isinstance(meta.get("blend"), dict):
        lines.append(f"blend of {describe_blend(meta['blend'])}")
    return lines


def cmd_fetch(args: argparse.Namespace) -> int:
    """Download each model or weights file into its place; one failure does not stop the others."""
    from .download import DownloadError, cache_dir, fetch, fetch_source
    from .files import is_url
    from .models import get_model

    for name in args.names:  # an unknown name or a local file fails before any download starts
        if not is_url(fetch_source(name)):
            get_model(name)
    failed = 0
    fetched = []
    for name in args.names:
        try:
            path = fetch(name, cache_dir=args.cache_dir, cache_option="--cache-dir")  # its advice: this option's
        except (DownloadError, OSError) as exc:  # this disk's failures too (a full disk, a read-only folder)
            failed += 1
            print(f"toonlib fetch: error: {for_command_line(exc)}", file=sys.stderr)
            continue
        fetched.append(path)
        # outside the try: a closed stdout (`| head -1`) is main's exit 141, not a failed download; a full one, the
        # standard output's error (it was "[Errno 28] No space left on device", as if the cache's disk were full)
        _say(str(path), done=f"it was fetched all the same: {path}")
    cache = None if args.cache_dir is None else cache_dir(args.cache_dir)
    if any(path.parent == cache for path in fetched):  # not for torch hub's files alone
        print(f"the other commands find models there with TOONLIB_CACHE={cache} set (or given by path)",
              file=sys.stderr)
    return 2 if failed else 0


def cmd_remove(args: argparse.Namespace) -> int:
    """Delete each downloaded model or weights file (`download.remove`); one failure does not stop the others."""
    from .download import dangling_folder, removable, remove
    from .files import is_url

    for name in args.names:  # all known before any is deleted: a misspelt name stops the command
        removable(name, cache_dir=args.cache_dir)
    failed, total = 0, 0
    for name in args.names:
        try:
            removed = remove(name, cache_dir=args.cache_dir)
        except OSError as exc:
            failed += 1
            print(f"toonlib remove: error: {for_command_line(exc)}", file=sys.stderr)
            continue
        total += removed.freed
        path = removed.path
        if is_url(name):  # its login and token said in no message, as fetch's (forty-second session's audit)
            from .checkpoints import _public_name  # (it imports torch: only for a URL)

            name = _public_name(name)
        elif os.path.basename(name) != name:  # the path `fetch` printed: said by its file's name
            name = os.path.basename(name)
        what = (("" if removed.target is None else "the link ") + f"{path}"
                + (" and its partial download" if removed.partial else "") if removed.file
                else f"the partial download of {path.name}")
        kept = "" if removed.target is None else f"; its target {removed.target} is kept"
        unreachable = None if path.parent.is_dir() else dangling_folder(path.parent)  # a drive not mounted
        nowhere = ("" if path.parent.is_dir() else f"; {path.parent} is {unreachable}" if unreachable
                   else f"; there is no folder {path.parent}")  # a --cache-dir misspelt?
        gone = removed.file or removed.partial
        _say(f"removed {name}: {what} ({_file_size(removed.freed)}{kept})" if gone
             else f"{name}: not on this machine ({path}{nowhere})",
             done=f"{what} was removed all the same" if gone else "")
    if len(args.names) > 1 and total:
        _say(f"freed {_file_size(total)}")
    return 2 if failed else 0


#: The values of `toonlib models`' TOON column (`_toon_column`), in words: its legend's, and `toonlib info` of a
#: registry model's (forty-fourth session's audit: `info toonify-blended-tf` said nothing of its G or its base).
TOON_WORDS = {
    "unblended": "a fine-tuned toon model, blended with its base at any swap resolution (--swap-res)",
    "blended": "a published blend, fixed swap resolution",
    "blended+G": "blended (its G_ema), and its G network is the un-blended toon model (the swap resolution stays "
                 "adjustable)",
}
_TOON_LEGEND = "\n".join(textwrap.wrap("TOON: " + "; ".join(f"{value} = {words}" for value, words in TOON_WORDS.items())
                                       + ".", 106, subsequent_indent=" " * 6, break_on_hyphens=False))
MODELS_LEGEND = f"""\
CACHED: cached = on this machine; - = not downloaded yet; damaged = a file cut short, empty or a web page
      (`toonlib fetch NAME` downloads it, again where damaged)
{_TOON_LEGEND}
BASE: the model a toon model was fine-tuned from, or whose latents an encoder makes: its base (--base) for
      blending and inversion.
KIND: stylegan2 / encoder = toonlib's cache; lpips-vgg, face-alignment, fid = torch hub's folder, where those
      libraries look for them.
SIZE: of the file on this machine. `toonlib remove NAME` deletes it, to free the space."""


def cmd_models(args: argparse.Namespace) -> int:
    """List every registry entry with its kind and whether it is on this machine."""
    from .download import cache_dir, cache_state, dangling_folder, local_path, torch_hub_checkpoints
    from .models import MODELS

    # every file looked up first: a --cache-dir (or $TOONLIB_CACHE) that is a file fails before anything is printed
    cached = {name: cache_state(name, cache_dir=args.cache_dir) for name in MODELS}
    paths = {name: local_path(name, cache_dir=args.cache_dir) for name in MODELS}
    sizes = {name: path.stat().st_size for name, path in paths.items() if cached[name] != "-"}
    cache = cache_dir(args.cache_dir)  # absolute, as the paths it is compared with (a relative one listed each twice)
    # a misspelt --cache-dir listed every model as missing without a word (`toonlib remove` says so); a link to a drive
    # not mounted was "no such folder yet", as if a download would make it (fortieth session's audit)
    lines = []
    for label, folder in (("toonlib cache", cache), ("torch hub folder", torch_hub_checkpoints())):
        unreachable = None if folder.is_dir() else dangling_folder(folder)
        missing = folder == cache and not folder.is_dir()
        note = (f", {unreachable}: mount that drive or create the folder to download there" if unreachable
                else " (no such folder yet: nothing downloaded there)" if missing else "")
        lines.append(f"{label}: {folder}{note}")
    base_width = max(len("BASE"), *(len(info.lineage or "") for info in MODELS.values()))
    lines.append(f"{'NAME':28} {'KIND':14} {'RES':>5}  {'TOON':9}  {'BASE':{base_width}}  {'CACHED':7}  {'SIZE':>8}  "
                 "DESCRIPTION")
    for info in MODELS.values():
        res = str(info.resolution or "")
        size = _file_size(sizes[info.name]) if info.name in sizes else ""
        lines.append(f"{info.name:28} {info.kind:14} {res:>5}  {_toon_column(info):9}  "
                     f"{info.lineage or '':{base_width}}  {cached[info.name]:7}  {size:>8}  {info.description}")
    lines.append(_disk_use(sizes, paths, cache, damaged={name for name, state in cached.items() if state == "damaged"}))
    _say(*lines, MODELS_LEGEND)  # `> /dev/full` said as the standard output's, not "[Errno 28]" (of the cache's disk?)
    return 0


def _toon_column(info: ModelInfo) -> str:
    """`toonlib models`' TOON value of registry model `info` (a `models.ModelInfo`), said in words by `TOON_WORDS`:
    '' for a model that is no toon model."""
    return "blended+G" if info.toon == "blended" and info.reblend_network == "G" else info.toon or ""


def _registry_lines(source: str) -> list[str]:
    """What `toonlib models` says of the registry model `toonlib info` was given, by its name or as its file in the
    cache, in the words of its legend: its description, TOON and BASE (`info toonify-blended-tf` said nothing of its
    un-blended G nor of its base, ffhq-1024-tf, where README sends users for a model's base; forty-fourth session's
    audit); nothing for other files."""
    from .checkpoints import split_network
    from .download import local_path
    from .files import is_url, user_path
    from .models import MODELS, registry_name_of_file

    name = split_network(source)[0]
    if not isinstance(name, str) or is_url(name):
        return []
    if name not in MODELS:  # the cache's copy alone, not another file that has its name
        filed = registry_name_of_file(name)
        try:  # a cache folder set wrong ($TOONLIB_CACHE a file) is no concern of a file given by its path
            cached = filed is not None and user_path(name).resolve() == local_path(filed).resolve()
        except (OSError, ValueError):
            cached = False
        if not cached:
            return []
        name = filed
    info = MODELS[name]
    lines = [f"registry model {name}: {info.description}"]
    if toon := _toon_column(info):
        lines.append(f"  TOON {toon}: {TOON_WORDS[toon]}")
    if info.lineage:
        made = "whose latents it makes" if info.kind == "encoder" else "it was fine-tuned from"
        lines.append(f"  BASE {info.lineage}: the model {made}, its base (--base) for "
                     + ("inversion" if info.kind == "encoder" else "blending and inversion"))
    return lines


def _file_size(size: int) -> str:
    """A file size as `toonlib models` prints it: 3 significant figures or more, in kB, MB or GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.{2 if value < 10 else 1 if value < 100 else 0}f} {unit}"
    return f"{size} B"


def _disk_use(sizes: dict[str, int], paths: dict[str, Path], cache: Path, damaged: Collection[str] = ()) -> str:
    """The line under `toonlib models`' table: what the listed files take (the `damaged` ones said apart: they were
    counted "on this machine", which the legend says of cached files; forty-second session's audit), and the cache's
    other files (downloaded by URL, put there by hand, partial downloads), which the table does not list. A partial
    download is listed as its `.part` name, the name `toonlib remove` takes, with the bytes it frees: a Drive file's
    are in its `.gdown` folder (listed was its 42-byte `.source` record alone, the megabytes unsaid; thirty-third
    session's audit). So are the partial downloads of the registry's files in torch hub's folder (LPIPS' 553 MB VGG16
    was unsaid, fortieth session's audit)."""
    from .download import disk_bytes, partial_of
    from .models import MODELS

    listed = {paths[name] for name in sizes}
    sized: dict[str, int] = {}
    for path in cache.iterdir() if cache.is_dir() else ():
        partial = partial_of(path.name)  # its file, record and Drive folder
        if path not in listed and not path.name.startswith(".") and (path.is_file() or partial):
            name = partial or path.name
            sized[name] = sized.get(name, 0) + disk_bytes(path)
    others = sorted(sized)
    partial = [name for name in others if name.endswith(".part")]
    whole = [size for name, size in sizes.items() if name not in damaged]
    said = f"on this machine: {len(whole)} of these files, {_file_size(sum(whole))}"
    if len(whole) < len(sizes):
        bad = [size for name, size in sizes.items() if name in damaged]
        said += (f"; {len(bad)} damaged {'file takes' if len(bad) == 1 else 'files take'} {_file_size(sum(bad))} "
                 f"(`toonlib fetch NAME` downloads {'it' if len(bad) == 1 else 'them'} again)")
    if others:
        extra, what = _other_files(others, sized, cache)
        if len(partial) < len(others):
            what = "downloaded by URL or put there" + ("; .part: partial downloads" if partial else "")
        said += f"\nthe cache also holds {extra} ({what})"
    hub = {path for name, path in paths.items() if MODELS[name].home == "torch-hub"}
    for folder in {path.parent for path in hub} - {cache}:  # torch hub's folder, unless it is the cache (said above)
        hub_sized: dict[str, int] = {}
        for path in folder.iterdir() if folder.is_dir() else ():
            partial = partial_of(path.name)  # torch hub's other files are the libraries' own: not listed
            if partial is not None and folder / partial.removesuffix(".part") in hub:
                hub_sized[partial] = hub_sized.get(partial, 0) + disk_bytes(path)
        if hub_sized:
            extra, what = _other_files(sorted(hub_sized), hub_sized, folder)
            said += f"\ntorch hub's folder also holds {extra} ({what})"
    return said


def _other_files(names: list[str], sized: dict[str, int], folder: Path) -> tuple[str, str]:
    """`toonlib models`' list of `names` (files of `folder`, partial downloads by their `.part` names) with their
    sizes, and what they are when all are partial downloads. One that another process is downloading now, or of a
    server recorded as sending whole files only, is said so (`download.partial_download_state`): both were "resumed
    by the next fetch" (forty-second session's audit). A download in progress names the process that downloads it
    (`download.partial_downloader`), and where all are in progress, the line's end alone says so: it was said twice,
    "(262 kB, being downloaded now) (downloads in progress)" (forty-third session's audit)."""
    from .download import partial_download_state, partial_downloader

    said = {"downloading": ", being downloaded now",
            "starts over": ", of no use: its server sends whole files only, the next fetch starts over"}
    states = {name: state for name in names if name.endswith(".part")
              and (state := partial_download_state(folder / name)) in said}
    by = {name: partial_downloader(folder / name) for name, state in states.items() if state == "downloading"}
    in_progress = len(by) == len(names)
    notes = {name: said[state] + (f" by {by[name]}" if by.get(name) else "") for name, state in states.items()}
    if in_progress:  # "(downloads in progress)" at the line's end: each file's size so far, and who downloads it
        notes = {name: " so far" + (f", by {who}" if who else "") for name, who in by.items()}
    extra = ", ".join(f"{name} ({_file_size(sized[name])}{notes.get(name, '')})" for name in names)
    if not notes:
        what = "partial downloads, resumed by the next fetch"
    elif in_progress:
        what = "a download in progress" if len(names) == 1 else "downloads in progress"
    elif len(notes) < len(names):
        what = "partial downloads; the others are resumed by the next fetch"
    else:
        what = "partial downloads"
    return extra, what


def cmd_blend(args: argparse.Namespace) -> int:
    from .blending import (
        PAIR_WITH_ITS_BASE,
        blend,
        check_compatible,
        check_setting,
        check_swap_res,
        swap_resolution_grid,
        toon_generator,
    )
    from .checkpoints import load_generator, refuse_to_replace_model, save_network
    from .images import save_image
    from .networks import parse_seeds
    from .pipeline import (
        DEFAULT_BASE,
        check_default_base,
        check_not_a_base,
        check_not_a_toon,
        check_not_an_encoder,
        default_base,
        missing_recorded_base,
        toon_network_of,
    )

    check_not_an_encoder(args.toon, f"--toon {args.toon}",
                         "an encoder inverts photos (toonlib toonify --invert {mode})")
    check_not_a_toon(args.base, f"--base {args.base}", "give it as --toon")
    check_not_a_base(args.toon, f"--toon {args.toon}", "give it as --base")
    defaulted = args.base is None
    if defaulted:  # as toonify pairs them
        args.base = default_base(args.toon)
    _check_native_output(args.output, "blend", "blended")
    refuse_to_replace_model(args.output, (args.toon, "--toon"), (args.base, "--base"))
    check_setting(args.swap_res, args.level, args.blend_width)
    _check_image_output(args.grid, "blend", "grid", option="--grid")
    _only_with(args.seeds, "--seeds", args.grid, "--grid", "they are the grid's rows")
    _only_with(args.truncation_psi, "--truncation-psi", args.grid, "--grid", "it shapes the grid's faces")
    seeds = (parse_seeds(args.seeds or DEFAULT_GRID_SEEDS, max_count=MAX_GRID_SEEDS) if args.grid
             else [])  # before anything is loaded or written
    toon_network_of(args.toon, args.toon_network)  # a registry model that holds only a blend: before the download
    check_swap_res(args.swap_res, args.toon)
    check_default_base(args.toon, args.base)
    _fetch_named_models((args.toon, "--toon"), (args.base, "--base"))
    low = toon_generator(args.toon, args.toon_network)  # as toonify --swap-res takes it
    check_swap_res(args.swap_res, low)
    high = load_generator(args.base, which=args.base_network)
    try:  # named by the options and files given: blend's own check said "low-res" and "high-res", and listed the
        # layers a resolution adds (forty-fourth session's audit)
        check_compatible(low, high, names=(f"--toon {args.toon}", f"the base {args.base}" if defaulted
                                           else f"--base {args.base}"))
    except ValueError as exc:  # "the generators have different architectures"
        if not defaulted:
            raise ValueError(f"{exc}\n{PAIR_WITH_ITS_BASE[:1].upper()}{PAIR_WITH_ITS_BASE[1:]}.") from None
        missing = missing_recorded_base(args.toon)
        whose = ("toonlib's default" + (f" (the toon model records its base {missing}, which is not there)"
                                        if missing else "") if args.base == DEFAULT_BASE
                 else "the one the toon model records")
        raise ValueError(f"{exc}\nNo --base was given, so the base was {whose}, '{args.base}': name the base the toon "
                         "model was fine-tuned from with --base.") from None
    blended = blend(low, high, args.swap_res, level=args.level, blend_width=args.blend_width)
    replaced = replaced_note(args.output)
    save_network(args.output, blended)  # with its record: the models as given and the setting
    # said before the grid's minutes; a stdout that takes nothing does not stop the grid, its failure said after it
    # (forty-fourth session's audit: convert's and blend's files depended on stdout, each in its own way)
    failed = _print_now(f"wrote {args.output}{replaced}")
    if args.grid:
        grid = swap_resolution_grid(low, high, seeds, level=args.level,
                                    blend_width=args.blend_width,
                                    truncation_psi=DEFAULT_TRUNCATION_PSI if args.truncation_psi is None
                                    else args.truncation_psi, progress=True)
        replaced = replaced_note(args.grid)
        save_image(grid, args.grid)
        failed = failed or _print_now(f"wrote {args.grid}{replaced}")
    if failed is not None:
        _stdout_failed(failed, f"{args.output} and {args.grid} were written all the same" if args.grid
                       else f"{args.output} was written all the same")
    return 0


def _face_stem(stem: str, face: int | None) -> str:
    """`stem` of an output of face `face` (0: the largest), counted from 1 as the web app counts them (`-face1`,
    `-face2`, ...); None: not numbered (--all-faces numbers every face, one found too)."""
    return stem if face is None else f"{stem}-face{face + 1}"


def _chosen_face(args: argparse.Namespace) -> int | None:
    """The API's `face_index` of `--face N` (counted from 1, the largest, as --all-faces numbers the faces); None: no
    --face."""
    return None if args.face is None else args.face - 1


def _beyond_the_faces(exc: BaseException, photo: object = None) -> BaseException:
    """A `--face` beyond the faces `photo` has (`align.FaceIndexError`, which the command line would show as a
    traceback) as a `NoFaceError` in --face's words, naming `photo` when given: no such face, exit status 2 as a photo
    without a face; any other error as it is."""
    from .align import FaceIndexError, NoFaceError
    from .messages import counted

    if not isinstance(exc, FaceIndexError) or exc.face_index is None:
        return exc
    # face_index N - 1, counted from 0: in --face's count, from 1
    named = "" if photo is None else f"{photo}: "
    return NoFaceError(f"{named}--face {exc.face_index + 1} asks for a face beyond the {counted(exc.count, 'face')} "
                       "found (--face 1 is the largest; --all-faces takes each)")


def _refuse_a_folder(path: str, takes: str, does: str) -> None:
    """ValueError for a folder given to a command that `takes` one image, saying what the toonify of that folder
    `does`: "cannot read 'photos/' as an image: it is a folder" showed no way on (thirty-fourth and thirty-eighth
    sessions' CLI audits)."""
    from .files import user_path

    if user_path(path).is_dir():
        raise ValueError(f"{path} is a folder, and {takes}: `toonlib toonify {shlex.quote(path)} -o toons/` {does}")


def cmd_align(args: argparse.Namespace) -> int:
    from .align import align_face, align_faces, say_other_faces
    from .images import save_image

    _refuse_a_folder(args.photo, "align takes one photo", "aligns every photo in it and writes each face's "
                     "-aligned.png")
    _check_image_output(args.output, "align", Path(args.photo).stem + ("" if args.all_faces else "-aligned"),
                        numbered=args.all_faces)
    output = Path(args.output)
    refuse_to_overwrite_input(args.photo, [output], "-o")
    # the largest face (or --face's) alone unless --all-faces: aligning the others too warned of their size, unwritten
    try:
        faces = (align_faces(args.photo, output_size=args.size, detector=args.detector) if args.all_faces
                 else [align_face(args.photo, output_size=args.size, detector=args.detector,
                                  face_index=_chosen_face(args))])
    except IndexError as exc:
        raise _beyond_the_faces(exc, args.photo) from None
    if not args.all_faces and args.face is None:
        say_other_faces(faces[0], repr(args.photo))
    for i, face in enumerate(faces):
        out = output.with_name(_face_stem(output.stem, i if args.all_faces else None) + output.suffix)
        refuse_to_overwrite_input(args.photo, [out], "-o")  # a numbered name, unknown before the faces were found
        replaced = replaced_note(out)
        save_image(face.image, out)
        # the crop square's side, as the small-face warning says it (about twice the face's width)
        print(f"wrote {out} (its crop {face.face_size:.0f} px wide in the photo){replaced}")
    return 0


def cmd_project(args: argparse.Namespace) -> int:
    from .checkpoints import load_generator
    from .devices import default_device
    from .files import StagedFiles
    from .images import NotACropWarning, read_image, save_image, to_pil, warn_if_not_a_crop
    from .messages import counted, warn
    from .pipeline import check_not_a_toon
    from .projection import (
        VIDEO_FILE,
        VIDEO_SUFFIX,
        check_latent_path,
        project,
        render,
        require_video_writer,
        video_writer,
    )

    # a latent of the toon model, which a toon drawn from it reads as FFHQ's: the wrong face, without a word (said, not
    # refused: a cartoon inverted into its own toon model is a latent of use)
    try:
        check_not_a_toon(args.base, f"--base {args.base}", "a photo to toonify is projected into its base; the "
                         "latent made here is the toon model's own, and `toonlib toonify` of it draws another face")
    except ValueError as exc:
        warn(str(exc))
    latent_file = "the latent as an .npz file (NVIDIA's projected_w.npz)"
    _check_output_suffix(args.output, "project", ".npz", latent_file, Path(args.image).stem,
                         "; pass --image-out for the picture")
    check_latent_path(args.output, "project")  # an image file named .npz: `result.save`'s own sees its temporary file
    _check_image_output(args.image_out, "project", "reconstruction", option="--image-out")
    _only_with(args.video_every, "--video-every", args.video, "--video", "the video's frames")
    if args.video:
        _check_output_suffix(args.video, "project", VIDEO_SUFFIX, VIDEO_FILE, "projection", option="--video")
        require_video_writer()
    _refuse_a_folder(args.image, "project takes one aligned face", "projects every photo in it and writes each "
                     "face's -latent.npz")
    target = read_image(args.image)  # a bad photo fails before any model is downloaded
    for option, output in (("-o", args.output), ("--image-out", args.image_out), ("--video", args.video)):
        if output is not None:
            refuse_to_overwrite_input(args.image, [Path(output)], option)
    warn_if_not_a_crop(target, args.image, "project", "projecting its centre square",
                       advice="`toonlib align PHOTO -o aligned.png`, or `toonlib toonify` for the whole way")
    _fetch_named_models((args.base, "--base"), *_lpips_weights(), pathless=(LPIPS,))
    G = load_generator(args.base, device=default_device())
    if target.width == target.height != G.img_resolution:  # an aligned crop is most often the model's size
        warnings.warn(f"{args.image} is {target.width}x{target.height}, not the base model's {G.img_resolution} px: "
                      "project takes an FFHQ-aligned face (`toonlib align PHOTO -o aligned.png --size "
                      f"{G.img_resolution}`, or `toonlib toonify` for the whole way); if it is one, it is resized",
                      stacklevel=2)
    # the latent and its picture are written under temporary names and replace their files together, the video just
    # before them: the picture was rendered and written after the latent had replaced its file, and a Ctrl-C meanwhile
    # left this run's latent beside the last run's picture (forty-fifth session's audit)
    with StagedFiles() as staged:  # on leaving it, each file replaces its own; on an error, none does
        latent = staged.stage(args.output)
        image = staged.stage(args.image_out) if args.image_out else None
        # each frame goes to ffmpeg as it is made: kept until the end, 500 of them at 1024 px were 3 GB (forty-first
        # session's audit); the video replaces its file at the end of this block, its frames counted
        with video_writer(args.video) if args.video else contextlib.nullcontext() as send:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotACropWarning)  # said above, naming the file and the command's advice
                result = project(G, target, space=args.space, steps=args.steps, seed=args.seed,
                                 save_every=(args.video_every or DEFAULT_VIDEO_EVERY) if args.video else None,
                                 on_frame=send)
            picture = to_pil(render(G, result.w)[0]) if image else None  # const noise, as NVIDIA's proj.png, the toon
            result.save(latent)
            if picture is not None:
                save_image(picture, image)
            video_replaced = replaced_note(args.video) if args.video else ""
    replaced = [replacing_note(int(path in staged.replaced)) for path in staged.written]  # asked before the renames
    print(f"wrote {args.output} (final LPIPS {result.losses[-1, 0]:.4f} after {counted(result.steps, 'step')})"
          f"{replaced[0]}")
    if args.image_out:
        print(f"wrote {args.image_out}{replaced[1]}")
    if args.video:
        print(f"wrote {args.video}{video_replaced}")
    return 0


TOONIFY_KINDS = ("toon", "aligned", "reconstruction", "pasted")  # the images toonify writes per face (result fields)
#: The end of the stem of an image toonify wrote: `<name>-toon`, `-aligned`, ... (`<name>-face2-toon` in a folder), and
#: beside a one-photo `-o me-toon.png` with --all-faces, `me-toon-face2` (`_toonify_outputs`; `-o toons.png`'s
#: `toons-face2`: `_NUMBERED_STEM`).
_OUTPUT_STEM = re.compile(rf"-(?:{'|'.join(TOONIFY_KINDS)})(?:-face[0-9]+)?$")


#: The stem of a face's toon beside a one-photo `-o toons.png --all-faces`: `toons-face2`, which names no kind.
_NUMBERED_STEM = re.compile(r"-face[0-9]+$")


def _is_toonify_output(image: Path) -> bool:
    """Whether `image` is named as an image toonify writes (`_OUTPUT_STEM`), or is a face's toon of a one-photo
    `-o NAME.png --all-faces` (`NAME-face2.png`, the latent `NAME-face2-latent.npz` beside it: a folder run took those
    toons for photos; forty-third session's audit): a folder's run takes it for no photo, nor a folder of such images
    for one that holds photos."""
    return _OUTPUT_STEM.search(image.stem) is not None or (
        _NUMBERED_STEM.search(image.stem) is not None and image.with_name(f"{image.stem}-latent.npz").is_file())


def _toonify_outputs(output: Path, photos: list[Path], several: str | None, folder: bool = False,
                     chosen: int | None = None) -> Callable[[Path, int | None, str], Path]:
    """Where `toonify` writes: a function (photo, face number or None, kind: an image's, or "latent") -> path.

    A folder (the default): `<folder>/<photo>-<kind>.png` (`-latent.npz`), where photos of one name (me.jpg, me.png)
    keep their suffix apart (`me-jpg-toon.png`). One photo and `-o` ending in an image suffix: the toon at exactly that
    path and the other images beside it (`<stem>-aligned<suffix>`). `several` says what the input is when it is more
    than one photo ("a folder of photos", "3 photos"): then `-o` is a folder. `folder`: `-o` was given with a trailing
    '/', a folder whatever its name (`-o run.2024.12.03/`, `-o toons.png/`). `chosen`: the face --face chose (0: the
    largest), whose files are numbered in a folder as --all-faces numbers them, and named by `-o` as it is given.
    """
    from .files import visible_stem
    from .images import IMAGE_SUFFIXES, image_file_format

    if output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir() and not folder:  # a folder stays one
        if several:
            raise ValueError(f"-o {output} names an image file, but the input is {several}: "
                             "give a folder for -o (each photo gets its own <name>-toon.png there)")
        image_file_format(output)  # one this Pillow writes, before the work (`.avif` below Pillow 11.3)

        def image_path(photo: Path, face: int | None, kind: str) -> Path:
            stem = _face_stem(output.stem, None if face == chosen else face)  # --face's face: at -o itself
            suffix = ".npz" if kind == "latent" else output.suffix
            return output.with_name(f"{stem}{'' if kind == 'toon' else '-' + kind}{suffix}")
        return image_path

    if output.exists() and not output.is_dir():
        raise ValueError(f"-o {output} is a file, but toonify writes a folder of images there: give a folder "
                         "(it is created), or for one photo an image name such as toon.png")
    if output.suffix and not output.exists() and not several and not folder:
        raise ValueError(f"-o {output}: toonify writes one photo's images to an image file "
                         f"({', '.join(IMAGE_SUFFIXES)}) or into a folder, and it writes no {output.suffix} images: "
                         f"name it {output.with_suffix('.png')}, or give a folder ({output}/: a folder whatever its "
                         "name)")
    # `.me.jpg`'s files named as me.jpg's: hidden, they were out of sight in ls, Finder and a later `toonify -o` folder
    stems = Counter(visible_stem(photo).casefold() for photo in photos)
    named = {photo: visible_stem(photo) + (f"-{photo.suffix[1:].lower()}" if stems[visible_stem(photo).casefold()] > 1
                                           else "") for photo in photos}
    # a name two photos would get (me.jpg in two folders; me.jpg and me.JPG in one, whose suffixes keep nothing
    # apart; me.jpg, me.png and me-jpg.png): the second one's toons replaced the first's, "toonified 2 of 2"
    by_name: dict[str, list[Path]] = {}
    for photo, name in named.items():
        by_name.setdefault(name.casefold(), []).append(photo)
    if clash := next((paths for paths in by_name.values() if len(paths) > 1), None):
        # the case remark where it is the cause (me.jpg and me.JPG), not of a/x.jpg and b/x.jpg (audit)
        case = len({photo.name for photo in clash}) > 1 and len({photo.name.casefold() for photo in clash}) == 1
        raise ValueError(f"{len(clash)} photos would get the same file names in -o, {named[clash[0]]}-*.png "
                         f"({', '.join(map(str, clash))}"
                         f"{'; names that differ in case alone are one file on macOS and Windows' if case else ''}): "
                         "rename one, or toonify them into separate folders (one -o folder each: with one -o, the "
                         "second one's files would replace the first one's)")

    def folder_path(photo: Path, face: int | None, kind: str) -> Path:
        return output / f"{_face_stem(named[photo], face)}-{kind}{'.npz' if kind == 'latent' else '.png'}"
    return folder_path


def _photos_to_toonify(names: list[str]) -> list[Path]:
    """The photos named on the command line (photos and folders of photos), checked before any model is loaded or
    downloaded, each once however its path is written (`d/me.jpg` and its absolute path, `d/` and `d/me.jpg`; a link
    to a photo stays a photo of its own name)."""
    from .files import dangling_link, is_pipe
    from .images import read_image

    photos: dict[str, Path] = {}
    given = {os.path.abspath(name) for name in names}  # `photos/ photos/2023/`: its sub-folder is not left out
    for name in names:
        for photo in _photos_named(name, given):
            photos.setdefault(os.path.abspath(photo), photo)
    # links into a drive not mounted are skipped and counted beside readable photos; all of them, none is readable:
    # said before the models load (an album on a USB stick)
    gone = {photo: link for photo in photos.values() if (link := dangling_link(photo))}
    if photos and len(gone) == len(photos):
        first, link = next(iter(gone.items()))
        raise FileNotFoundError(f"{first} is {link}" + (f"; so are all {len(photos)} photos given" if len(photos) > 1
                                                        else ""))
    only = next(iter(photos.values())) if len(photos) == 1 else None
    # the only photo, read to see that it is one (a folder's: skipped); not a pipe (`/dev/stdin`, `<(curl ...)`),
    # which is read once: the toonify's own read found it empty (audit); /dev/null is ("the file is empty")
    if only is not None and not is_pipe(only) and not any(Path(name).is_dir() for name in names):
        read_image(only)
    return list(photos.values())


def _expanded(name: str) -> list[str]:
    """A photo argument as the shell would pass it: `~` expanded, and a pattern it did not expand (quoted, typed in
    Windows' cmd or PowerShell, or given by a program) as the photos and folders it matches. Both were "no photo or
    folder at ..." (thirty-third session's audit)."""
    import glob

    from .files import is_url
    from .images import IMAGE_SUFFIXES, is_image_file

    if is_url(name):
        return [name]
    name = os.path.expanduser(name)
    if os.path.exists(name) or not glob.has_magic(name):
        return [name]
    matches = [path for path in sorted(glob.glob(name)) if is_image_file(path) or os.path.isdir(path)]
    if not matches:
        raise FileNotFoundError(f"no photo or folder matches {name} (a pattern, expanded here as the shell would: "
                                f"photos are files whose names end in {', '.join(IMAGE_SUFFIXES)})")
    return matches


def _holds_photos(folder: Path) -> bool:
    """Whether `folder` holds photos (`pipeline.photos_in`); one that cannot be listed (`lost+found`) holds none, and
    one of toonify's outputs (`-o photos/toons/`: each image named `<name>-toon.png`, `-aligned.png`, ...) holds
    toons, which a run on the photos folder was told to give too (thirty-seventh session's CLI audit)."""
    from .pipeline import photos_in

    try:
        images = photos_in(folder)
    except OSError:
        return False
    return not all(map(_is_toonify_output, images))


def _photos_named(name: str, given: Collection[str] = ()) -> list[Path]:
    """The photos one command-line argument names: a photo, or the photos of a folder; a folder's sub-folders that
    hold photos, and its images named as toonify's outputs (`_is_toonify_output`), are said to be left out, unless
    `given` (the arguments' absolute paths) holds them too."""
    from pathlib import PurePath

    from .files import backslash_hint, dangling_link, is_url, unread_address
    from .images import IMAGE_SUFFIXES, is_hidden, read_image, stdin_hint
    from .messages import counted, warn
    from .pipeline import photos_in

    if is_url(name):  # before Path() folds its '//'
        read_image(name)  # refused, saying what to do
    if unread := unread_address(name):  # file:///me.jpg was "no photo or folder at file:/me.jpg"
        raise FileNotFoundError(unread)
    source = Path(name)
    if source.is_dir():
        photos = photos_in(source)
        # toonify's outputs beside the photos (README's `toonify me.jpg -o me-toon.png` in the photos folder) were
        # photos of the next run on the folder: toons of toons, minutes each, or "no face" and exit status 1
        # (forty-first session's audit)
        outputs = [photo for photo in photos if _is_toonify_output(photo) and os.path.abspath(photo) not in given]
        photos = [photo for photo in photos if not _is_toonify_output(photo)]  # those given come as given
        them = "them" if len(outputs) > 1 else "it"
        left = (f"{counted(len(outputs), 'image')} named as toonify's outputs ({', '.join(p.name for p in outputs[:3])}"
                f"{', ...' if len(outputs) > 3 else ''}) {'are' if len(outputs) > 1 else 'is'} left out; to toonify "
                f"{them} anyway, give {them} by name, e.g. {shlex.quote(str(outputs[0]))}") if outputs else ""
        # the photos of its sub-folders (an export sorted into 2023/, 2024/) were left out unsaid (audit)
        inner = sorted(sub for sub in source.iterdir() if sub.is_dir() and not is_hidden(PurePath(sub.name))
                       and os.path.abspath(sub) not in given and _holds_photos(sub))
        deeper = (f"its sub-folder{'s' if len(inner) > 1 else ''} {', '.join(f'{sub.name}/' for sub in inner[:3])}"
                  f"{', ...' if len(inner) > 3 else ''} hold{'' if len(inner) > 1 else 's'} photos, which a folder's "
                  f"toonify leaves out: give {'them' if len(inner) > 1 else 'it'} too, e.g. "
                  f"{shlex.quote(str(source))}/*/") if inner else ""
        if not photos and not any(os.path.dirname(other) == os.path.abspath(source) for other in given):
            raise ValueError(f"no photos in the folder {source} (looked for {', '.join(IMAGE_SUFFIXES)})"
                             + "".join(f"; {said}" for said in (left, deeper) if said))
        for said in (left, deeper):
            if said:
                warn(f"{source}: {said}")
        return photos
    # a link into a missing drive (`ls` lists it) is kept: skipped and counted, or said alone (`_photos_to_toonify`)
    if not source.exists() and not dangling_link(source):
        raise FileNotFoundError(f"no photo or folder at {source}{backslash_hint(name)}{stdin_hint(name)}")
    return [source]


def cmd_toonify(args: argparse.Namespace) -> int:
    from .align import require_detector
    from .checkpoints import check_not_an_image
    from .files import check_file_path, check_file_target, check_name_length, check_replaceable, is_url
    from .messages import counted, progress_bar, write_line
    from .pipeline import Toonifier
    from .projection import DEFAULT_INIT_STEPS, default_steps

    named = [path for name in args.photos for path in _expanded(name)]  # as the shell would pass them
    args.output = os.path.expanduser(args.output)  # -o's was expanded when written, not when checked
    # `me.jpg ./me.jpg` is one photo (a URL is kept as typed: Path() folds its '//', and it is refused below)
    inputs = list({name if is_url(name) else os.path.normpath(name): name for name in named}.values())
    if latent := next((name for name in inputs if Path(name).suffix.lower() in LATENT_SUFFIXES), None):
        if len(inputs) > 1:
            raise ValueError(f"{latent} is a latent file, and a command draws the toons of one latent file: toonlib "
                             f"toonify {latent} -o ... (and the other files in commands of their own)")
        return _toonify_latent(args, latent)
    photos = _photos_to_toonify(inputs)
    folders = [name for name in inputs if Path(name).is_dir()]
    several = (None if len(photos) == 1 and not folders else "a folder of photos" if len(inputs) == 1
               else "several photos")  # one photo written two ways is one photo: `-o toon.png` takes it
    for folder in folders:
        _refuse_the_photos_folder(Path(folder), args.output)
    output_path = _toonify_outputs(Path(args.output), photos, several, args.output.endswith(("/", os.sep)),
                                   chosen=_chosen_face(args))
    # the first face's number; --face N's face is numbered as --all-faces numbers it (a folder's -face2-toon.png: runs
    # for two faces of a photo wrote the same names), and at exactly -o's image name (`_toonify_outputs`)
    first = 0 if args.all_faces else _chosen_face(args)
    # With --all-faces, one pasted photo carries every face's toon (-pasted.png), the other images are per face; none
    # without --paste-back
    per_face = [kind for kind in TOONIFY_KINDS if kind != "pasted" or (args.paste_back and not args.all_faces)]
    whole_photo = [(None, "pasted")] if args.all_faces and args.paste_back else []  # (face, kind)
    check_file_target(output_path(photos[0], first, "toon"))  # a parent that is a file, a folder that is read-only
    # named after the photo: a long name (or a write-protected file, a folder there) failed after the projection, the
    # whole run with it; in a folder run that photo is skipped, said first, as a bad photo is (one such name stopped
    # the run before any work)
    unwritable = []
    for photo in photos:
        try:
            for face, kind in [(first, kind) for kind in (*per_face, "latent")] + whole_photo:
                target = output_path(photo, face, kind)
                check_name_length(target, f"it is named after the photo {photo}: rename it" if several else
                                  f"it is named after the photo {photo} or -o: rename the photo, or give -o a short "
                                  "image name (-o toon.png)")
                check_file_path(target)  # a folder or a fifo there: each, not the first alone
                check_replaceable(target)  # a write-protected one too
        except OSError as exc:
            if not several:
                raise
            unwritable.append(photo)
            write_line(f"skipped {photo}: {for_command_line(exc)}", file=sys.stderr)
    if len(unwritable) == len(photos):
        print(f"no photo was toonified: all {len(photos)} failed (above)")
        return 2
    _check_toonify_options(args)
    # the latent too: `-latent.npz` written through a link to the photo replaced it with a zip (forty-third session's
    # audit)
    refuse_to_overwrite_input(photos, [output_path(photo, face, kind) for photo in photos
                                       for face, kind in [(first, kind) for kind in (*per_face, "latent")]
                                       + whole_photo])
    for photo in photos:  # nor over an image, before the work (a numbered face's latent: in `_write_toons`)
        check_not_an_image(output_path(photo, first, "latent"), "toonify", "latents", ".npz")
    require_detector(args.detector)  # no dlib: said before the models download (forty-second session's audit)
    _fetch_toonify_models(args, args.invert)
    toonifier = Toonifier(args.base, args.toon, swap_res=args.swap_res, level=args.level,
                          blend_width=args.blend_width, toon_network=args.toon_network, detector=args.detector,
                          invert=args.invert, encoder=args.encoder)  # it checks swap_res against its toon model
    # the default, or e4e+optimize given more steps than its own: say there is a faster way
    hinted = (args.steps is None or args.steps >= CPU_HINT_STEPS if args.invert == "optimize"
              else args.invert == "e4e+optimize" and args.steps is not None and args.steps > DEFAULT_INIT_STEPS)
    if hinted and toonifier.device.type == "cpu":
        steps = counted(args.steps or default_steps(args.space or "w+"), "step")
        bar = "the steps" if len(photos) == 1 else "the photos, and each batch's steps"  # the bars below
        print(f"toonlib toonify: projecting on the CPU can take minutes a photo at {steps} (the bar below counts "
              f"{bar}); --invert e4e takes seconds (README: Inversion modes)", file=sys.stderr)
    failed = len(unwritable)
    written: list[Path] = []
    replaced = 0  # of them, files that were there
    one = len(photos) == 1  # one photo: the projection's step bar; a folder: a bar of photos
    runs = [photo for photo in photos if photo not in unwritable]
    bar = progress_bar(total=len(runs), desc="toonify", unit="photo", disable=one)
    outcomes = toonifier.toonify_many(runs, batch_size=args.batch_size or 4, all_faces=args.all_faces,
                                      face_index=_chosen_face(args), space=args.space or "w+",
                                      steps=args.steps, seed=args.seed or 0,
                                      paste_back=args.paste_back and not args.all_faces,  # pasted below, together
                                      progress=one, **_batch_steps_shown(bar, args, one))
    toonified, writing = 0, None  # photos whose files are all written; the photo being written
    try:
        for photo, outcome in _advancing(bar, outcomes):
            if isinstance(outcome, Exception):
                if one:  # nothing was written: the photo is unusable, as `align` says of it (exit status 2)
                    raise _beyond_the_faces(outcome, photo)
                failed += 1
                write_line(f"skipped {photo}: {for_command_line(_beyond_the_faces(outcome))}", file=sys.stderr)
                continue
            writing = photo
            paths, there, reports = _write_toons(args, photos, photo, outcome, output_path, per_face)
            written, replaced = written + paths, replaced + len(there)
            writing, toonified = None, toonified + 1
            for line in reports:  # once its files are written: a reader gone away (`| head`) stops the run here
                write_line(line)
    except BrokenPipeError:  # stdout's reader went away: said on stderr, which may be that pipe too (`2>&1 | head`)
        if not one:  # it said "before the error below", no error below, and "p2's files may be incomplete" of whole
            with contextlib.suppress(OSError, ValueError):  # files (thirty-third session's audit)
                write_line(f"toonlib toonify: stopped: its output was closed (the reader of a pipe, such as `| head`, "
                           f"ended); toonified {toonified} of {len(photos)} photos into {args.output}", file=sys.stderr)
        raise
    except (KeyboardInterrupt, OSError) as exc:  # which photos are done: the same command starts again from the first
        if not one:  # (a full disk said its one line alone, the photos written before it and the one cut short unsaid)
            cut = f"; {writing}'s files were not written" if writing is not None else ""  # all or none: `_write_toons`
            what = "the interrupt" if isinstance(exc, KeyboardInterrupt) else "the error below"
            write_line(f"toonified {toonified} of {len(photos)} photos into {args.output} before {what}{cut}",
                       file=sys.stderr)
        raise
    if one:
        print("wrote " + ", ".join(str(path) for path in written) + replacing_note(replaced, len(written)))
    elif failed == len(photos):
        print(f"no photo was toonified: all {failed} failed (above)")
    else:
        print(f"toonified {len(photos) - failed} of {len(photos)} photos into {args.output}"
              f"{replacing_note(replaced, len(written))}")
    return 2 if failed == len(photos) else 1 if failed else 0


def _advancing(bar, items: Iterable) -> Iterator:
    """`items`, `bar` advanced by one once each is dealt with (a bar made before the iterator it counts)."""
    with bar:
        for item in items:
            yield item
            bar.update(1)


def _batch_steps_shown(bar, args: argparse.Namespace, one: bool) -> dict:
    """The projection's `callback` that shows a folder's batch projecting on the bar of photos ('step 37/500'), which
    moves only when a batch is done (20-80 minutes for 4 photos on a CPU); none for one photo, which shows the
    steps' own bar, or where nothing is projected."""
    from .options import OPTIMIZING_MODES
    from .projection import default_steps

    if one or args.invert not in OPTIMIZING_MODES:
        return {}
    total = args.steps or default_steps(args.space or "w+", from_init=args.invert != "optimize")

    def show(step: int, distance: float, w: object) -> None:
        bar.set_postfix_str(f"projection step {step + 1}/{total}", refresh=False)
        bar.update(0)  # drawn at the bar's pace: every step in a terminal, every few seconds in a log

    return {"callback": show}


def _write_toons(args: argparse.Namespace, photos: list[Path], photo: Path, faces: list,
                 output_path: Callable[[Path, int | None, str], Path], per_face: list[str]
                 ) -> tuple[list[Path], list[Path], list[str]]:
    """Write the pictures and latent of each toonified face of `photo` (`ToonifyResult`s), with --all-faces and
    --paste-back every face's toon in one pasted photo: all of them or none. Each is written under a temporary name
    (`files.atomic_write_path`), and they replace the files of their names once all are written: a Ctrl-C or a full
    disk while they were written one by one left the toon, the crop and the reconstruction of this run beside the
    pasted photo and the latent of the last, whose toon `toonify LATENT` then refused as "a toon drawn otherwise"
    (forty-first session's audit). Returns the paths, those of them that were there before (replaced), and each
    face's identity report line, to print."""
    from .checkpoints import check_not_an_image
    from .files import StagedFiles
    from .images import save_image
    from .pipeline import paste_faces
    from .projection import save_latent

    reports = []
    with StagedFiles() as staged:  # on leaving it, each file replaces its own; on an error, none does

        def writing(target: Path) -> Path:
            """Where `target` is written: its temporary file (`StagedFiles.stage`). A numbered face's name is unknown
            before the faces were found: checked here."""
            refuse_to_overwrite_input(photos, [target])
            return staged.stage(target)

        for i, result in enumerate(faces):
            face = i if args.all_faces else _chosen_face(args)
            for kind in per_face:
                image, target = getattr(result, kind), output_path(photo, face, kind)
                if image is None:
                    continue
                save_image(image, writing(target))
            latent = output_path(photo, face, "latent")
            check_not_an_image(latent, "toonify", "latents", ".npz")  # save_latent's own sees the temporary file
            save_latent(result.w, writing(latent))  # LATENT re-blends it
            if not args.no_identity:
                reports.append(f"{output_path(photo, face, 'toon').name}: {_identity(result)}")
        if args.all_faces and args.paste_back and faces:
            save_image(paste_faces(faces[0].photo, [(result.toon, result.quad) for result in faces]),
                       writing(output_path(photo, None, "pasted")))
    return staged.written, staged.replaced, reports


#: Suffixes of the latent files `toonify` takes instead of a photo: its own and `project`'s .npz (NVIDIA's
#: projected_w.npz too), rosinality's projector output, e4e's latents.pt and JoJoGAN's inversions (.pt).
LATENT_SUFFIXES = (".npz", ".pt")


def _toonify_latent(args: argparse.Namespace, latent: str) -> int:
    """`toonify LATENT`: the toon of latents an earlier toonify or `project` saved, with the toon model re-blended
    as asked (another --swap-res in seconds, where the photo's projection took minutes)."""
    from .checkpoints import load_generator, load_network, split_network
    from .devices import default_device
    from .files import check_file_target, user_path
    from .images import IMAGE_SUFFIXES, image_file_format, save_image, to_pil
    from .messages import progress_bar, write_line
    from .pipeline import Toonifier, is_snapshot, say_unblended
    from .projection import RENDER_BATCH, load_latent, other_model, render

    photo_options = (("--invert", args.invert != "optimize"), ("--encoder", args.encoder), ("--steps", args.steps),
                     ("--space", args.space), ("--seed", args.seed is not None), ("--batch-size", args.batch_size),
                     ("--paste-back", args.paste_back), ("--all-faces", args.all_faces), ("--face", args.face),
                     ("--detector", args.detector != "auto"), ("--no-identity", args.no_identity))
    for option, given in photo_options:
        if given:
            raise ValueError(f"{option} is about the photo, and {latent} is a latent, the photo already "
                             f"inverted: leave {option} out, or toonify the photo itself")
    ws = load_latent(latent)  # a file that is no latent fails before any model is downloaded
    drawn_with = _drawn_with(args)
    stem = user_path(latent).stem.removesuffix("-latent") + drawn_with
    output = user_path(args.output)
    folder = args.output.endswith(("/", os.sep))  # `-o toons.png/`, `-o run.v2/`: a folder, as for photos
    if output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir() and not folder:
        image_file_format(output)  # one this Pillow writes, before any model loads
        targets = [output] if len(ws) == 1 else [output.with_name(f"{output.stem}-{i + 1}{output.suffix}")
                                                 for i in range(len(ws))]
    elif not output.is_dir() and (output.exists() or (output.suffix and not folder)):
        raise ValueError(f"-o {args.output}: the toon of a latent is written to an image file "
                         f"({', '.join(IMAGE_SUFFIXES)}) or into a folder: name it {output.with_suffix('.png')}, or "
                         f"give a folder ({args.output}/: a folder whatever its name)")
    else:
        targets = [output / (f"{stem}-toon.png" if len(ws) == 1 else f"{stem}-{i + 1}-toon.png")
                   for i in range(len(ws))]
    check_file_target(targets[0])
    # a toon written through a link to the latent replaced it (forty-third session's audit)
    refuse_to_overwrite_input(latent, targets, what="the input latent")
    # without a re-blend the toon file's published blend (or a blend file) draws it: --base was ignored (the toon
    # named after it all the same), and the default base downloaded and loaded unused (thirty-fourth session's audit)
    _only_with(args.base, "--base", args.swap_res, "--swap-res", "a latent's toon reads the base only to re-blend the "
               "toon model; without --swap-res the toon file's published blend draws it")
    _check_toonify_options(args)
    _fetch_toonify_models(args, base=args.swap_res is not None)  # no mode: nothing is inverted
    if args.swap_res is None:
        file, which = split_network(args.toon)  # "toon.pkl (G)": that generator
        nets = load_network(file, default_device())
        G = load_generator(nets, which=which).eval()
        if is_snapshot(nets):
            say_unblended(G)

        def draw(ws):  # a PIL image, or a list of them, as Toonifier.render draws
            images = render(G, ws)
            return to_pil(images[0] if images.shape[0] == 1 else images)
    else:
        toonifier = Toonifier(args.base, args.toon, swap_res=args.swap_res, level=args.level,
                              blend_width=args.blend_width, toon_network=args.toon_network)
        G, draw = toonifier.generator, toonifier.render
    if ws.shape[1] == 1 != G.num_ws:  # W latents [N, 1, w_dim]: repeated to the model's layers
        ws = load_latent(latent, num_ws=G.num_ws)
    if tuple(ws.shape[1:]) != (G.num_ws, G.w_dim):
        raise ValueError(f"{latent} holds latents of shape {list(ws.shape)}, and the toon model ({args.toon}, "
                         f"{G.img_resolution} px) takes [N, {G.num_ws}, {G.w_dim}]: {other_model(ws.shape, G)}; "
                         "toonify them with a toon model fine-tuned from the base they were projected into, or "
                         f"toonify the photo again (W latents are read as [N, 1, {G.w_dim}])")
    replaced = replacing_note(sum(target.is_file() for target in targets), len(targets))
    written = 0
    bar = progress_bar(total=len(ws), desc="toonify", unit="latent", disable=len(ws) <= RENDER_BATCH)
    try:
        with bar:
            # drawn and written a few at a time: all at once, e4e's latents.pt of a test set's hundreds of photos took
            # ~0.5 GB a 1024 px latent, and no toon was written before the last was drawn (forty-fifth session's audit)
            for start in range(0, len(ws), RENDER_BATCH):
                toons = draw(ws[start:start + RENDER_BATCH])
                toons, chunk = toons if isinstance(toons, list) else [toons], targets[start:start + RENDER_BATCH]
                if not drawn_with and output.is_dir():  # the photo's own name, in a folder
                    _keep_toons_drawn_otherwise(toons, chunk, output / f"{stem}-published-toon.png")
                for toon, target in zip(toons, chunk):
                    save_image(toon, target)
                written += len(chunk)
                bar.update(len(chunk))
    except (KeyboardInterrupt, OSError, ValueError) as exc:  # which toons are there: those before it (a toon drawn
        if written:  # otherwise that is kept stops a later batch, after the toons of the first were written)
            what = "the interrupt" if isinstance(exc, KeyboardInterrupt) else "the error below"
            write_line(f"wrote the toons of {written} of {len(ws)} latents ({targets[0]} to {targets[written - 1]}) "
                       f"before {what}", file=sys.stderr)
        raise
    print("wrote " + ", ".join(str(path) for path in targets) + replaced)
    return 0


def _keep_toons_drawn_otherwise(toons: list, targets: list[Path], published: Path) -> None:
    """ValueError where a latent's toon would replace a toon of the photo's own name (`<name>-toon.png`) that was drawn
    otherwise: `toonify me.jpg -o toons/ --swap-res 16`, then `toonify toons/me-latent.npz -o toons/` replaced that
    16 px toon with the published blend's. A toon that differs by rounding alone (another device) is the same one.
    `published`: the name the message offers for the new toon."""
    import numpy as np

    from .images import ImageReadError, read_image

    for toon, target in zip(toons, targets):
        try:
            existing = read_image(target) if target.is_file() else None
        except ImageReadError:  # no image: nothing of the user's to keep as a toon
            existing = None
        if existing is not None and (existing.size != toon.size or np.abs(
                np.asarray(existing, np.int16) - np.asarray(toon, np.int16)).mean() > 2):
            raise ValueError(f"{target} is there, a toon drawn otherwise (another blend or toon model, or another "
                             "latent), and it is kept: draw the latent as it was drawn (its --swap-res, --toon), or "
                             f"name this one, e.g. -o {published}")


def _drawn_with(args: argparse.Namespace) -> str:
    """What a latent's toon in a folder is named after besides the latent: the toon model where it is not the default,
    the generator taken from it and the base where given, and the re-blend (`-mytoon-G_ema-on-ffhq2-16px-level1-
    width0.5`). `toonify toons/me-latent.npz -o toons/ --swap-res 16`, the README's way to try another blend, replaced
    the photo's own toons/me-toon.png; a redraw with another --base or --toon-network replaced the one before it."""
    from urllib.parse import urlparse

    from .checkpoints import split_network
    from .files import is_url
    from .pipeline import DEFAULT_TOON

    def stem(model: str) -> str:  # a file's or registry name's stem; a URL's path's (a Drive link's: "view?usp=...")
        name = re.sub(r"[^\w.-]+", "_", Path(urlparse(model).path if is_url(model) else model).stem)
        return name.encode()[:40].decode(errors="ignore")  # 40 bytes: two names of CJK characters passed 255

    toon, network = split_network(args.toon, args.toon_network)  # "x.pkl (G)" names its generator too
    parts = [stem(str(toon)) if args.toon != DEFAULT_TOON else None, network,
             f"on-{stem(str(args.base))}" if args.base is not None else None,
             f"{args.swap_res}px" if args.swap_res else None, f"level{args.level}" if args.level else None,
             f"width{args.blend_width:g}" if args.blend_width is not None else None]
    return "".join(f"-{part}" for part in parts if part)


def _check_toonify_options(args: argparse.Namespace) -> None:
    """Refuse toonify options that would be ignored, by the names typed (`pipeline.check_options` says the same
    in Python's names)."""
    from .blending import check_swap_res
    from .encoders import check_encoder_mode
    from .options import OPTIMIZING_MODES
    from .pipeline import DEFAULT_TOON, TOON_NETWORK_ROLE, check_options, check_reblend_models, toon_network_of

    for option, value in (("--steps", args.steps), ("--space", args.space), ("--seed", args.seed)):
        if value is not None and args.invert not in OPTIMIZING_MODES:
            raise ValueError(f"{option} is a projection option and --invert {args.invert} runs no projection: use "
                             f"--invert optimize or e4e+optimize, or leave {option} out")
    check_encoder_mode(args.invert, args.encoder)  # before its download: one for 'optimize', or of the other space
    why = "it shapes a re-blend of the toon model"
    _only_with(args.level or None, "--level", args.swap_res, "--swap-res", why)
    _only_with(args.blend_width, "--blend-width", args.swap_res, "--swap-res", why)
    _only_with(args.toon_network, "--toon-network", args.swap_res, "--swap-res", f"it {TOON_NETWORK_ROLE}")
    check_reblend_models(args.invert, args.swap_res, toon=args.toon != DEFAULT_TOON, base=args.base is not None,
                         encoder=args.encoder)
    check_swap_res(args.swap_res, args.toon)
    if args.swap_res is not None:  # a registry toon that holds only a blend, before the downloads (the models, or
        toon_network_of(args.toon, args.toon_network)  # psp-toonify's encoder, came first; thirty-ninth session)
    check_options(args.invert, steps=args.steps, space=args.space or "w+", swap_res=args.swap_res, level=args.level,
                  blend_width=args.blend_width)


def _refuse_the_photos_folder(folder: Path, output: str) -> None:
    """Refuse `toonify FOLDER -o FOLDER`: the toons written there are photos of that folder in the next run on it
    (they were toonified in turn, or skipped as faceless, one line each)."""
    from .files import user_path

    if user_path(output).resolve() == user_path(folder).resolve():
        raise ValueError(f"-o {output} is the photos folder itself, and the next run on it would take its toons for "
                         f"photos: write them to another folder, e.g. -o {user_path(folder).resolve().name}-toons/")


def _identity(result) -> str:
    """The identity report of a toonified face, or why there is none (dlib is an optional extra)."""
    from .identity import IdentityModelError, identity_report
    from .messages import install_line

    try:
        return str(identity_report(result))
    except ImportError as exc:  # a model file missing says its own fix: the extra is installed (audit)
        extra = "" if isinstance(exc, IdentityModelError) else f"{install_line('dlib')}, or "
        return f"identity not measured ({exc}); {extra}pass --no-identity"


def cmd_finetune(args: argparse.Namespace) -> int:
    from .train import config_from_args, finetune
    from .train.arguments import finished

    path = finetune(config_from_args(args), progress=args.progress)
    args.finished = True  # a closed output now ends nothing (`cli.main`)
    print(finished(path))
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    from .align import require_detector
    from .app import ToonApp, check_port, check_settings, launch, require_gradio
    from .blending import check_swap_res
    from .encoders import check_encoder_mode
    from .options import MAX_STEPS, OPTIMIZING_MODES
    from .pipeline import DEFAULT_ENCODERS, Toonifier

    require_gradio()  # before any model is downloaded
    modes = list(dict.fromkeys(args.invert))
    if not any(mode in OPTIMIZING_MODES for mode in modes):  # no steps slider: they went unread, unsaid, as
        for option, value, default in (("--steps", args.steps, None),  # toonify refuses --steps there
                                       ("--max-steps", args.max_steps, MAX_STEPS)):  # (thirty-third session's audit)
            if value != default:
                raise ValueError(f"{option} sets the optimisation-steps slider, and --invert {' '.join(modes)} "
                                 "offers no mode that optimises: add optimize or e4e+optimize to --invert, or leave "
                                 f"{option} out")
    max_pixels = int(args.max_megapixels * 1e6)
    check_settings(args.steps, args.max_steps, max_pixels, modes)
    check_port(args.host, args.port)
    # e4e and e4e+optimize read one encoder (`pipeline.DEFAULT_ENCODERS`): one --encoder serves both (it refused them
    # together; forty-fourth session's audit), not two encoders' modes
    encoders = len({DEFAULT_ENCODERS[mode] for mode in modes if mode != "optimize"})
    if args.encoder is not None and encoders != 1:
        raise ValueError(f"--encoder names the checkpoint of one encoder, but --invert offers {' '.join(modes)}: "
                         "offer the modes of one encoder (e4e and e4e+optimize share one), or leave out --encoder "
                         "(each mode then uses its registry encoder)")
    for mode in modes:  # an encoder of the other space, refused before anything is downloaded
        if mode != "optimize":
            check_encoder_mode(mode, args.encoder)
    require_detector(args.detector)  # no dlib: said before the models download (forty-second session's audit)
    # an --encoder PATH, refused above with several encoders' modes, is not offered either
    _fetch_toonify_models(args, *modes, encoder_path=encoders == 1)
    toonifiers = [Toonifier(args.base, args.toon, toon_network=args.toon_network, detector=args.detector, invert=mode,
                            encoder=None if mode == "optimize" else args.encoder)  # the encoder mode's encoder
                  for mode in modes]  # one per mode offered, each with its models
    check_swap_res(args.swap_res, toonifiers[0].published_blend)
    app = ToonApp(toonifiers, swap_res=args.swap_res, steps=args.steps, max_steps=args.max_steps,
                  max_pixels=max_pixels)
    launch(app, host=args.host, port=args.port, share=args.share)
    return 0


#: Python's words in the API's messages, and the command line's: (pattern, replacement) for `re.sub`.
_COMMAND_LINE_WORDS = (
    (r"\binvert='([^']*)'", r"--invert \1"),  # encoders.check_encoder_mode
    (r"\b(encoder|invert|toon|base)=(?=\s)", r"--\1"),  # a keyword named alone: "toon= is read only to re-blend"
    (r"\bswap_res=(?=\s)", "--swap-res"),
    (r"^swap_res (\d+) is above the (\d+) px of the toon model", r"--swap-res \1 is above the \2 px of the --toon "
     "model"),  # blending.check_swap_res
    (r",? or None \(((?:the CPU|CUDA) when)", r", or leave --device out (\1"),  # "cpu,, or leave" once
    # TrainConfig's '--resolution 64 (resolution=64)', '--betas 0.5 0.99 (betas=(0.5, 0.99))': the Python form of
    # that option's own setting, kept elsewhere ('--seed 1 ... (c_dim=10)')
    (r"--([\w-]+) ([^()]*?) \((\w+)=(?:[^()]|\([^()]*\))*\)",
     lambda m: f"--{m[1]} {m[2]}" if m[3] == m[1].replace("-", "_") else m[0]),
    # devices.default_device; after the rule above: a resumed run's '--device cpu (device='cpu')' became '--device
    # cpu (--device cpu)' (thirty-eighth session's audit)
    (r"\bdevice='([^']*)'", r"--device \1"),
    (r"\(((?:or )?--[\w-]+), \w+=\)", r"(\1)"),  # download: (--cache-dir, cache_dir=), (or --cache-dir, ...)
    (r"(--[\w-]+) \(\w+=\)", r"\1"),  # a resumed run's changed settings, '--seed (seed=): 0 -> 1'; '--kimg (kimg=)'
    (r" \(for a generator checkpoint use toonlib\.load_network\)",  # encoders.load_encoder of a generator's file
     "; a generator goes to --base or --toon, and --encoder takes a pSp / e4e file (e4e-ffhq, psp-ffhq, psp-toonify)"),
    (r"downscale it, or, for a file you trust, set PIL\.Image\.MAX_IMAGE_PIXELS = None before reading it",
     "downscale it (a face needs a few megapixels at most)"),  # images.read_image of a 200-megapixel photo
    (r"; load it with toonlib\.projection\.load_latent", "; `toonlib toonify` of it draws its toon (-o toon.png)"),
    (r"; in Python, toonifier\.render\(toonlib\.load_latent\(path\)\)", ""),  # images.unread_format of a latent
    (r"\bprepare='(\w+)' or '(\w+)'", r"--prepare \1 or \2"),  # data's non-square image with prepare='none'
    (r"\bprepare='(\w+)'", r"--prepare \1"),  # data's cartoons under 'align' (it said "use prepare='crop'"; audit)
    (r"(--toon, --base); load_network in Python\)", r"\1)"),  # download.fetch of a local file
)


def for_command_line(message: BaseException | str) -> str:
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
