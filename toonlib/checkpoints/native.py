"""toonlib's own checkpoint format: plain tensors and JSON-able dicts, read with weights_only=True.

    {"format": "toonlib", "version": 1,
     "config": {"G": GeneratorConfig dict, "D": DiscriminatorConfig dict or None},
     "G_ema": state dict, "G": state dict (optional), "D": state dict (optional), "meta": dict}
"""
from __future__ import annotations

import json
import os

import torch

from ..files import atomic_write_path
from ..networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from .common import CheckpointError, Networks, build_network

FORMAT = "toonlib"
VERSION = 1


def is_native(obj: object) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def to_dict(nets: Networks) -> dict:
    """The native-format dict of `nets` (tensors moved to the CPU, float32)."""

    def state(net):
        return {k: v.detach().to("cpu", torch.float32).clone() for k, v in net.state_dict().items()}

    out = {"format": FORMAT, "version": VERSION,
           "config": {"G": nets.G_ema.config.to_dict(), "D": nets.D.config.to_dict() if nets.D else None},
           "G_ema": state(nets.G_ema), "meta": _meta_for_saving(nets.meta)}
    if nets.G is not None:
        out["G"] = state(nets.G)
    if nets.D is not None:
        out["D"] = state(nets.D)
    return out


def _meta_for_saving(meta: dict) -> dict:
    """Keep the user's meta as plain JSON values (weights_only loading accepts nothing else) and
    remember which file and format the weights originally came from."""
    out = {k: v for k, v in meta.items() if k not in ("format", "source")}
    out.setdefault("origin", {"format": meta.get("format"), "source": str(meta.get("source", ""))})
    return json.loads(json.dumps(out, default=_json_value))


def _json_value(value):
    """numpy scalars and arrays (found in old pickles' kwargs) as Python numbers and lists; else text."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def save(nets: Networks, path: str | os.PathLike) -> None:
    with atomic_write_path(path) as tmp:
        torch.save(to_dict(nets), tmp)


def read(obj: dict, source: str = "") -> Networks:
    version = obj.get("version")
    if version != VERSION:
        raise CheckpointError(f"{source}: toonlib checkpoint version {version!r}; this toonlib reads version "
                              f"{VERSION}. Upgrade toonlib (pip install -U toonlib).")
    try:
        g_config = GeneratorConfig.from_dict(obj["config"]["G"])
        d_config = obj["config"].get("D")
        d_config = DiscriminatorConfig.from_dict(d_config) if d_config else None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: invalid toonlib checkpoint config ({exc})") from None
    G_ema = build_network(Generator, g_config, obj["G_ema"], f"{source} [G_ema]")
    G = build_network(Generator, g_config, obj["G"], f"{source} [G]") if "G" in obj else None
    D = None
    if "D" in obj:
        if d_config is None:
            raise CheckpointError(f"{source}: toonlib checkpoint has D weights but no D config")
        D = build_network(Discriminator, d_config, obj["D"], f"{source} [D]")
    meta = {**(obj.get("meta") or {}), "format": FORMAT, "source": source}
    return Networks(G_ema=G_ema, G=G, D=D, meta=meta)
