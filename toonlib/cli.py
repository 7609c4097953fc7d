"""The `toonlib` console script. Each sub-command is a thin wrapper over the Python API."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

Command = Callable[[argparse.Namespace], int]


def _describe(nets) -> str:
    cfg = nets.config
    parts = [f"{cfg.img_resolution}x{cfg.img_resolution}", f"z {cfg.z_dim}", f"w {cfg.w_dim} x {nets.G_ema.num_ws}",
             f"mapping {cfg.mapping_layers} layers", "G_ema" + (" + G" if nets.G else "") + (" + D" if nets.D else "")]
    return f"{nets.meta.get('format', '?')} checkpoint: " + ", ".join(parts)


def cmd_convert(args: argparse.Namespace) -> int:
    from .checkpoints import load_network, save_network

    nets = load_network(args.input)
    print(_describe(nets))
    save_network(args.output, nets)
    print(f"wrote {args.output}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .checkpoints import load_network

    nets = load_network(args.checkpoint)
    print(_describe(nets))
    for key, value in nets.config.to_dict().items():
        print(f"  {key}: {value}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from .download import fetch

    for name in args.names:
        print(fetch(name, cache_dir=args.cache_dir))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .download import cache_dir
    from .models import MODELS

    folder = cache_dir() if args.cache_dir is None else args.cache_dir
    print(f"cache folder: {folder}")
    for info in MODELS.values():
        cached = "cached" if (Path(folder) / info.filename).is_file() else "-"
        print(f"{info.name:28} {info.resolution:5d}px  {info.format:10}  {cached:6}  {info.description}")
    return 0


def cmd_blend(args: argparse.Namespace) -> int:
    from .blend import blend, swap_resolution_grid
    from .checkpoints import load_generator, save_network
    from .images import save_image
    from .networks import parse_seeds

    low = load_generator(args.low, which=args.low_network)
    high = load_generator(args.high, which=args.high_network)
    blended = blend(low, high, args.swap_res, level=args.level, blend_width=args.blend_width)
    save_network(args.output, blended)
    print(f"wrote {args.output}")
    if args.grid:
        grid = swap_resolution_grid(low, high, parse_seeds(args.seeds), level=args.level,
                                    blend_width=args.blend_width, truncation_psi=args.truncation_psi)
        save_image(grid, args.grid)
        print(f"wrote {args.grid}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toonlib", description="Toonify faces with StyleGAN2 network blending.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert any supported StyleGAN2 checkpoint to toonlib's format")
    p.add_argument("input", help="checkpoint path, URL or model name (NVIDIA/TF .pkl, rosinality .pt, toonlib .pt)")
    p.add_argument("output", help="output file (.pt), written atomically")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("info", help="show what a checkpoint holds")
    p.add_argument("checkpoint", help="checkpoint path, URL or model name")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("fetch", help="download pretrained models into the cache (see `toonlib models`)")
    p.add_argument("names", nargs="+", help="model names or URLs")
    p.add_argument("--cache-dir", help="instead of $TOONLIB_CACHE / Drive / ~/.cache/toonlib")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("models", help="list the known pretrained models and which are cached")
    p.add_argument("--cache-dir", help="instead of $TOONLIB_CACHE / Drive / ~/.cache/toonlib")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("blend", help="blend a toon model (low resolutions) with a base model (high resolutions)")
    p.add_argument("--low", required=True, help="low-res model: the toon model (path, URL or name)")
    p.add_argument("--high", required=True, help="high-res model: the base FFHQ model (path, URL or name)")
    p.add_argument("--low-network", default="G_ema", choices=["G_ema", "G"],
                   help="which generator of --low (Toonify's own file keeps its toon model as G)")
    p.add_argument("--high-network", default="G_ema", choices=["G_ema", "G"])
    p.add_argument("--swap-res", type=int, required=True, help="resolution of the last block taken from --low")
    p.add_argument("--level", type=int, default=0, choices=[0, 1],
                   help="1 also keeps the next block's first conv from --low")
    p.add_argument("--blend-width", type=float, default=None,
                   help="smooth switch width in layers (centred 1.5 layers below the hard switch); default hard")
    p.add_argument("-o", "--output", required=True, help="blended network file (.pt, toonlib format)")
    p.add_argument("--grid", help="also save a PNG grid: rows = seeds, columns = swap resolutions")
    p.add_argument("--seeds", default="0-5", help="seeds of the grid rows, e.g. 0-5 or 1,7,42")
    p.add_argument("--truncation-psi", type=float, default=0.7)
    p.set_defaults(func=cmd_blend)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .checkpoints import CheckpointError
    from .download import DownloadError

    try:
        return args.func(args)
    except (CheckpointError, DownloadError, FileNotFoundError, ValueError) as exc:
        print(f"toonlib {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
