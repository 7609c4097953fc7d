"""toonlib's own format: one safetensors file, tensors and JSON only (no pickle, so loading runs no code).

    tensors   "G_ema.<name>", "G.<name>" (optional), "D.<name>" (optional): float32 state dicts
    metadata  "format": "toonlib", "version": "2",
              "config": JSON {"G": GeneratorConfig dict, "D": DiscriminatorConfig dict or null},
              "meta": JSON (where the weights came from, training notes, ...)

Files are read through safetensors' `safe_open`, which memory-maps them. The suffix is the caller's
choice (toonlib detects every format from content); `.safetensors` is the one to use, because other
tools choose their loader by the suffix. Version 1, a `torch.save` dict, is read by `native_torch.py`.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..files import atomic_write_path, safetensors_header_length
from ..networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from .common import CheckpointError, Networks, build_network, damaged_file

FORMAT = "toonlib"
VERSION = "2"
SUFFIX = ".safetensors"
NETWORKS = ("G_ema", "G", "D")


def is_safetensors(head: bytes, size: int) -> bool:
    """True when a file of `size` bytes starts like a safetensors file whose header fits in it
    (`files.safetensors_header_length`)."""
    length = safetensors_header_length(head)
    return length is not None and length <= size - 8


def save(nets: Networks, path: str | os.PathLike) -> None:
    """Write `nets` to `path` atomically (tensors moved to the CPU as float32). The file keeps one generator config,
    G_ema's: a G of another one is refused (ValueError) before anything is written, as it could not be read back."""
    if nets.G is not None and nets.G.config != nets.G_ema.config:
        differ = ", ".join(f"{name} {getattr(nets.G_ema.config, name)!r} / {getattr(nets.G.config, name)!r}"
                           for name in nets.G_ema.config.to_dict()
                           if getattr(nets.G_ema.config, name) != getattr(nets.G.config, name))
        raise ValueError(f"G_ema and G differ ({differ}): a toonlib file keeps one generator config, so this one could "
                         "not be read back; save each generator on its own (save_network(path, G))")
    tensors = {}
    for prefix, net in zip(NETWORKS, (nets.G_ema, nets.G, nets.D)):
        if net is not None:
            for name, value in net.state_dict().items():  # copies: G and G_ema may share tensors
                tensors[f"{prefix}.{name}"] = value.detach().to("cpu", torch.float32, copy=True).contiguous()
    config = {"G": nets.G_ema.config.to_dict(), "D": nets.D.config.to_dict() if nets.D is not None else None}
    metadata = {"format": FORMAT, "version": VERSION, "config": json.dumps(config),
                "meta": json.dumps(_meta_for_saving(nets.meta))}
    # in a temporary folder of toonlib's: save_file writes through a temporary file of its own beside the file it is
    # given, which a kill -9 left beside the output as `.tmpXXXXXX` (forty-first session's audit); the folder carries
    # the output's name, and the next save of that output removes a killed one's (`files.atomic_write_path`)
    with atomic_write_path(path, in_folder=True) as tmp:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as exc:  # a full disk: an OSError, which atomic_write_path says with `path`
            raise _os_error(exc) or exc from None
        _sort_metadata(tmp)


def _sort_metadata(path: str | os.PathLike) -> None:
    """Rewrite the header of the safetensors file at `path` with its metadata keys sorted, in place (the same length,
    padded with spaces as safetensors pads it): safetensors writes them in the order of a hash map, which changes from
    one save to the next, so the same blend gave a file of other bytes each run, and `cmp` or a checksum said two
    equal blends differ (forty-second session's audit). Readers look the keys up by name."""
    with open(path, "r+b") as file:
        length = safetensors_header_length(file.read(9))  # the length, and the header's "{"
        file.seek(8)
        header = json.loads(file.read(length))
        header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) <= length:  # it is the same JSON, reordered: never longer
            file.seek(8)
            file.write(text.ljust(length))


#: How safetensors words an error of the OS, the number of which it keeps: "Error while serializing: I/O error: No
#: space left on device (os error 28)" (0.8), "... IoError(Os { code: 28, kind: StorageFull, message: ... })" (0.4).
_OS_ERROR_NUMBER = re.compile(r"\(os error (\d+)\)|Os \{ code: (\d+),")


def _os_error(exc: SafetensorError) -> OSError | None:
    """The OSError that safetensors reports as a SafetensorError of its own (a full disk), else None."""
    match = _OS_ERROR_NUMBER.search(str(exc))
    if match is None:
        return None
    number = int(match[1] or match[2])
    return OSError(number, os.strerror(number))


def _meta_for_saving(meta: dict) -> dict:
    """Keep the user's meta as plain JSON values and remember which file and format the weights
    originally came from."""
    out = {k: v for k, v in meta.items() if k not in ("format", "source")}
    out.setdefault("origin", {"format": meta.get("format"), "source": str(meta.get("source", ""))})
    return json.loads(json.dumps(out, default=_json_value))


def _json_value(value):
    """numpy scalars and arrays (found in old pickles' kwargs) as Python numbers and lists; else text."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read_meta(path: str | os.PathLike) -> dict | None:
    """The meta of a toonlib file (where its weights came from), from its header alone; None for any other file."""
    return _header_json(path, "meta")


def read_resolution(path: str | os.PathLike) -> int | None:
    """The image resolution of a toonlib file's G_ema, from its header alone; None for any other file."""
    config = _header_json(path, "config")
    resolution = config.get("G", {}).get("img_resolution") if config is not None else None
    return resolution if isinstance(resolution, int) else None


def _header_json(path: str | os.PathLike, key: str) -> dict | None:
    """The JSON dict under `key` ("meta", "config") of a toonlib file's header; None for any other file."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
        if not is_safetensors(head, os.path.getsize(path)):
            return None
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
        value = json.loads(metadata.get(key) or "{}") if metadata.get("format") == FORMAT else None
    except (OSError, SafetensorError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read(path: str | os.PathLike, source: str = "") -> Networks:
    """Networks from a safetensors file written by `save`."""
    source = source or str(path)
    try:
        with safe_open(str(Path(path)), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            _check_metadata(metadata, source)
            states: dict[str, dict[str, torch.Tensor]] = {}
            for key in f.keys():
                prefix, _, name = key.partition(".")
                if prefix not in NETWORKS or not name:
                    raise CheckpointError(f"{source}: unexpected tensor {key!r} in a toonlib file "
                                          f"(names start with {', '.join(p + '.' for p in NETWORKS)})")
                states.setdefault(prefix, {})[name] = f.get_tensor(key)
    except SafetensorError as exc:
        raise CheckpointError(f"{source} is not a readable safetensors file ({exc}). "
                              f"{damaged_file('download or convert it again')}") from None
    try:
        config = json.loads(metadata["config"])
        g_config = GeneratorConfig.from_dict(config["G"])
        d_config = DiscriminatorConfig.from_dict(config["D"]) if config.get("D") else None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: invalid toonlib checkpoint config ({type(exc).__name__}: {exc})") from None
    try:  # apart from the config: meta that was no JSON was said to be an invalid config
        meta = json.loads(metadata.get("meta") or "{}")
    except ValueError as exc:
        raise CheckpointError(f"{source}: invalid toonlib checkpoint meta ({type(exc).__name__}: {exc})") from None
    meta = checked_meta(meta, source)
    if "G_ema" not in states:
        raise CheckpointError(f"{source}: toonlib file without G_ema weights")
    if "D" in states and d_config is None:
        raise CheckpointError(f"{source}: toonlib file has D weights but no D config")
    nets = {key: build_network(Discriminator if key == "D" else Generator, d_config if key == "D" else g_config,
                               state, f"{source} [{key}]") for key, state in states.items()}
    return Networks(G_ema=nets["G_ema"], G=nets.get("G"), D=nets.get("D"),
                    meta={**meta, "format": FORMAT, "source": source})


def checked_meta(meta: object, source: str) -> dict:
    """A toonlib file's meta (`save`'s JSON object; the version-1 torch dict's "meta"), refused (CheckpointError) when
    it is anything else: a file edited by another tool stopped `load_network` with "'str' object is not a mapping"
    (thirty-ninth session's audit)."""
    if meta is None:  # none recorded, as a version-1 file without "meta" is read
        return {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{source}: invalid toonlib checkpoint meta: {type(meta).__name__} data where toonlib "
                              "writes names and values (the file was changed by another tool); convert the model "
                              "again from its original file")
    return meta


def _check_metadata(metadata: dict, source: str) -> None:
    if metadata.get("format") != FORMAT:  # a file without metadata was said to have "no format 'toonlib': []"
        said = (f"its metadata names format {metadata['format']!r}" if "format" in metadata else
                f"its metadata ({', '.join(sorted(metadata))}) names no format" if metadata else "it has no metadata")
        raise CheckpointError(f"{source} is a safetensors file but not a toonlib network ({said}, where toonlib's own "
                              "name format 'toonlib'). toonlib reads StyleGAN2 checkpoints it wrote itself in this "
                              "format; convert others from their original files.")
    if metadata.get("version") != VERSION:
        raise CheckpointError(f"{source}: toonlib checkpoint version {metadata.get('version')!r}; this toonlib "
                              f"reads version {VERSION}. Upgrade toonlib (pip install -U toonlib).")
