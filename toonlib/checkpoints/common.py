"""What every checkpoint reader returns, and the error they raise."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Union

import torch

from ..files import is_url
from ..networks import Discriminator, Generator, GeneratorConfig, uninitialized


class CheckpointError(ValueError):
    """A file that is not a checkpoint toonlib can read; the message says why and what to do."""


class MissingNetworkError(CheckpointError):
    """A checkpoint without the generator asked for (`which`: its G, of a file that holds G_ema only); `source`: the
    checkpoint as it was named (its `meta["source"]`), or None."""

    def __init__(self, message: str, which: str, source: str | None = None) -> None:
        super().__init__(message)
        self.which, self.source = which, source


_DAMAGED = "A truncated download or a damaged file"


def damaged_file(again: str = "download it again") -> str:
    """What a reader's error says of a file it cannot parse (a pickle, torch or safetensors file cut short or damaged):
    one sentence for every format; `again` is how to get the file again."""
    return f"{_DAMAGED}: delete it and {again}."


def without_damage_advice(message: str) -> str:
    """A reader's error `message` without its `damaged_file` sentence, for where other advice replaces it."""
    return message.split(f" {_DAMAGED}: ")[0]


def damaged_download(message: str, name: str) -> str:
    """A reader's error `message` of the download cache's copy of `name` (a registry name, or a URL as shown): the
    advice says so and how to download it anew. It said "delete it and download it again" of the cache file alone,
    and `toonlib fetch NAME` found the file there and did nothing (thirty-third session's audit). A URL is shown
    without its query and login, which name its cache file: deleting that file (the message names it) is the way."""
    how, what = ("delete that file", name) if is_url(name) else (f"`toonlib remove {name}` deletes it", repr(name))
    return (f"{without_damage_advice(message)} It is the cached download of {what}: {how}, and the next use "
            "downloads it again.")


@dataclass(repr=False)
class Networks:
    """The networks of one checkpoint.

    G_ema: the generator to sample from (NVIDIA's G_ema, TF's Gs, rosinality's g_ema).
    G, D: the training generator and the discriminator, when the file has them (fine-tuning needs D).
    config: G_ema's architecture. meta: where it came from (format, source, and format-specific notes).
    """

    G_ema: Generator
    G: Generator | None = None
    D: Discriminator | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse what is not a network in its place: a path or None as G_ema was taken as the generator and failed
        far from here ("'str' object has no attribute 'blend_record'")."""
        for name, kind, optional in (("G_ema", Generator, False), ("G", Generator, True), ("D", Discriminator, True)):
            net = getattr(self, name)
            if not (isinstance(net, kind) or (optional and net is None)):
                load = " (load_network(path) reads a checkpoint's networks)" if isinstance(net, (str, os.PathLike)) \
                    else ""
                raise TypeError(f"Networks' {name} is a {kind.__name__}{' or None' if optional else ''}, got "
                                f"{type(net).__name__}{load}")
        if not isinstance(self.meta, dict):
            raise TypeError(f"Networks' meta is a dict, got {type(self.meta).__name__}")

    @property
    def config(self) -> GeneratorConfig:
        """G_ema's architecture."""
        return self.G_ema.config

    def __repr__(self) -> str:
        """Each network's architecture and where they came from, on one line (not three module trees)."""
        nets = ", ".join(f"{name}={'None' if net is None else f'{type(net).__name__}({net.extra_repr()})'}"
                         for name, net in (("G_ema", self.G_ema), ("G", self.G), ("D", self.D)))
        shown = [f"{key!r}: {self.meta[key]!r}" for key in ("format", "source") if key in self.meta]
        if len(self.meta) > len(shown):
            shown.append("...")
        return f"Networks({nets}, meta={{{', '.join(shown)}}})"


def build_network(cls, config, state: dict[str, torch.Tensor], what: str):
    """Construct `cls(config)` in eval mode and load `state` into it, exactly (no missing or extra keys).

    The FIR `resample_filter` buffers are defined by the config; where `state` lacks them (TF and
    rosinality files do not store them) the constructor's values are kept.
    """
    with uninitialized():  # every weight is loaded below
        net = cls(config).eval().requires_grad_(False)
    expected = net.state_dict()
    state = {**{k: v for k, v in expected.items() if k.endswith("resample_filter")}, **state}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k} {list(state[k].shape)} (expected {list(v.shape)})"
                   for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected {_short(unexpected)}")
    if wrong_shape:
        problems.append(f"wrong shape {_short(wrong_shape)}")
    if problems:
        raise CheckpointError(f"{what}: the weights do not fit a StyleGAN2 network of the recorded "
                              f"architecture: {'; '.join(problems)}")
    net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    return net


def _short(items: list[str], limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


#: What functions that need a generator accept: a `Generator`, a `Networks` (its G_ema unless told
#: otherwise) or a checkpoint path, URL or registry name (see `toonlib.checkpoints.load_generator`).
GeneratorLike = Union[Generator, Networks, str, os.PathLike]
