"""toonlib's first own format (version 1), read-only: a torch file read with weights_only=True.

    {"format": "toonlib", "version": 1,
     "config": {"G": GeneratorConfig dict, "D": DiscriminatorConfig dict or None},
     "G_ema": state dict, "G": state dict (optional), "D": state dict (optional), "meta": dict}

toonlib now writes safetensors (`native.py`); files in this layout keep loading.
"""
from __future__ import annotations

from ..networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from .common import CheckpointError, Networks, build_network
from .native import checked_meta

FORMAT = "toonlib"
VERSION = 1


def is_native_torch(obj: object) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def read(obj: dict, source: str = "") -> Networks:
    """Networks from a loaded version-1 dict; `meta["format"]` is "toonlib" like the current format's."""
    version = obj.get("version")
    if version != VERSION:
        raise CheckpointError(f"{source}: toonlib torch-format checkpoint version {version!r}; this toonlib reads "
                              f"version {VERSION} of that layout. Upgrade toonlib (pip install -U toonlib).")
    try:
        g_config = GeneratorConfig.from_dict(obj["config"]["G"])
        d_config = obj["config"].get("D")
        d_config = DiscriminatorConfig.from_dict(d_config) if d_config else None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: invalid toonlib checkpoint config ({exc})") from None
    if "G_ema" not in obj:  # it was a KeyError traceback (thirty-ninth session's audit), as `native.read` says it
        raise CheckpointError(f"{source}: toonlib file without G_ema weights")
    G_ema = build_network(Generator, g_config, obj["G_ema"], f"{source} [G_ema]")
    G = build_network(Generator, g_config, obj["G"], f"{source} [G]") if "G" in obj else None
    D = None
    if "D" in obj:
        if d_config is None:
            raise CheckpointError(f"{source}: toonlib checkpoint has D weights but no D config")
        D = build_network(Discriminator, d_config, obj["D"], f"{source} [D]")
    meta = {**checked_meta(obj.get("meta"), source), "format": FORMAT, "source": source}
    return Networks(G_ema=G_ema, G=G, D=D, meta=meta)
