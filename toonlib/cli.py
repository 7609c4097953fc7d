"""The `toonlib` console script. Each sub-command is a thin wrapper over the Python API."""
from __future__ import annotations

import argparse
import sys
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
