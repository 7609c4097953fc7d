"""Rebuild the pSp / e4e reference checkpoints from their recipes (tests/fixtures/encoders/README.md).

The weights (~580 MB each) are never stored: `build_checkpoint(recipe, path)` writes the exact file the
reference outputs were computed from, tensor by tensor, in a few seconds.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import torch

ENCODER_FIXTURES = Path(__file__).parent / "fixtures" / "encoders"  # copied from the shared reference data


def recipe(name: str) -> dict:
    """The recipe of `name` ('psp_tiny' or 'e4e_tiny') as a dict."""
    return json.loads((ENCODER_FIXTURES / f"{name}_recipe.json").read_text())


def reference(name: str) -> dict[str, np.ndarray]:
    """The reference outputs of `name` ('psp_tiny' or 'e4e_tiny'): x, encoder_out, codes, images."""
    with np.load(ENCODER_FIXTURES / f"{name}_ref.npz") as npz:
        return {key: npz[key] for key in npz.files}


def _tensor(entry: dict, seed: int) -> torch.Tensor:
    shape = tuple(entry["shape"])
    if entry["rule"] == "zero":
        return torch.zeros(shape, dtype=torch.int64 if entry["dtype"] == "int64" else torch.float32)
    x = np.random.RandomState(zlib.crc32(entry["key"].encode()) ^ seed).standard_normal(shape)
    if entry["rule"] == "abs":
        x = np.abs(x)
    elif entry["rule"] != "normal":
        raise ValueError(f"unknown recipe rule {entry['rule']!r}")
    return torch.from_numpy((x * entry["scale"] + entry["offset"]).astype(np.float32))


def build_checkpoint(name: str, path: str | Path) -> Path:
    """Write the checkpoint of recipe `name` to `path`, laid out like the published pSp / e4e files."""
    spec = recipe(name)
    seed = spec["seed"]
    state_dict = {entry["key"]: _tensor(entry, seed) for entry in spec["state_dict"]}
    torch.save({"state_dict": state_dict, "opts": spec["opts"], "latent_avg": _tensor(spec["latent_avg"], seed)},
               path)
    return Path(path)
