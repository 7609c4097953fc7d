"""pSp and e4e: encoders that map a face photo to StyleGAN2 W+ codes in one forward pass.

    encoder = load_encoder("e4e_ffhq_encode.pt")        # or a registry name / URL
    codes = encoder.encode([aligned_face])               # [N, n_styles, 512] W+, latent_avg included
    toon = render(G_blend, codes)

Both read the published checkpoints (`torch.save({'state_dict', 'opts', 'latent_avg'})`, encoder weights
under `encoder.`, a rosinality generator under `decoder.`; see docs/design.md section 13) with
`torch.load(weights_only=True)`. Written from the papers and the checkpoints' parameter names:

* IR-SE50 backbone (ArcFace's "improved residual" ResNet-50 with squeeze-and-excitation): `input_layer`
  (conv 3x3, BN, PReLU) then `body`, 24 bottlenecks in 4 stages of 3, 4, 14, 3 units at 64, 128, 256,
  512 channels, each stage starting with a stride-2 unit. A unit is `res_layer` (BN, conv 3x3, PReLU,
  conv 3x3 with the stride, BN, SE) plus `shortcut_layer` (a strided subsample when the width is kept,
  else conv 1x1 + BN).
* pSp's `GradualStyleEncoder` (Richardson et al. 2021): a feature pyramid over the stage outputs c1
  (64 px), c2 (32 px), c3 (16 px): p2 = up(c3) + latlayer1(c2), p1 = up(p2) + latlayer2(c1) (bilinear,
  align_corners=True); W+ entries 0-2 ("coarse") read c3, 3-6 read p2, 7+ read p1, each through its own
  map2style block `styles.{i}` (stride-2 3x3 convs with leaky ReLU(0.01) down to 1x1, then an
  equalised-lr linear layer).
* e4e's `Encoder4Editing` (Tov et al. 2021): the same network, but entry 0 is one w for every layer and
  entry i > 0 adds its block's output to it as an offset: codes[i] = styles[0](c3) + styles[i](f_i).

Codes include `latent_avg` (the checkpoints' `start_from_latent_avg`): encoder(x) + latent_avg.
"""
from __future__ import annotations

import math
import os
import re
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from . import models
from .checkpoints import (
    _LEGACY_TORCH_MAGIC,  # how pre-zip torch.save files start
    ENCODER_KINDS,
    _torch_load,  # torch.load(weights_only=True), memory-mapped where the file system allows
    _unsafe_globals,  # what a torch file asks for that weights-only loading refused
    content_kind,
    not_a_torch_zip,
    unfinished_download,
)
from .checkpoints import _folder_problem as folder_problem  # what a folder given as a checkpoint is told
from .checkpoints import _public_name as public_name  # a URL as messages show it
from .checkpoints import _resolve as resolve_source  # path, URL or registry name -> local file
from .checkpoints.common import _short as shortened  # a long list of names, its first few
from .checkpoints.common import damaged_download, damaged_file
from .checkpoints.safe_pickle import refusal
from .devices import default_device
from .files import is_url, looks_like_pickle, safetensors_header_length, user_path
from .images import ImageInput, check_image_tensor, describe_source, pillow_format, read_image, warn_if_not_a_crop
from .messages import counted
from .options import INVERT_MODES

__all__ = ["ENCODER_TYPES", "INPUT_SIZE", "Encoder", "EncoderError", "check_encoder_mode", "encoder_from_checkpoint",
           "encoder_input", "holds_decoder", "load_encoder"]

#: Encoder types (the checkpoints' `opts['encoder_type']`) that `load_encoder` reads, by paper.
ENCODER_TYPES = {"GradualStyleEncoder": "pSp", "Encoder4Editing": "e4e"}
#: The encoders' input size: the FFHQ-aligned face resized to 256 x 256.
INPUT_SIZE = 256

_STAGES = ((64, 3), (128, 4), (256, 14), (512, 3))  # IR-SE50: (width, units) per stage
_TAPS = (6, 20, 23)  # body units whose outputs are c1 (64 px), c2 (32 px), c3 (16 px)
_COARSE, _MIDDLE = 3, 7  # W+ entries < 3 read c3, < 7 read p2, the rest p1
_SPATIAL = (16, 32, 64)  # the input size of the coarse / middle / fine map2style blocks
_W_ONLY = {"BackboneEncoderUsingLastLayerIntoW": "pSp's W encoder (one w from the last backbone layer)",
           "BackboneEncoderUsingLastLayerIntoWPlus": "pSp's W+ encoder from the last backbone layer"}
_RESTYLE = ("BackboneEncoder", "ResNetBackboneEncoder", "ResNetGradualStyleEncoder", "ProgressiveBackboneEncoder",
            "ResNetProgressiveBackboneEncoder")


class EncoderError(ValueError):
    """A file that is not a pSp / e4e encoder checkpoint toonlib can run; the message says why."""


class _SqueezeExcite(nn.Module):
    """Channel gating: x * sigmoid(fc2(relu(fc1(mean over the image)))), reduction 16, no biases."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class _Subsample(nn.Module):
    """Every `stride`-th pixel: the identity shortcut of a unit that keeps its width (no parameters)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::self.stride, ::self.stride]


class _Unit(nn.Module):
    """One IR-SE bottleneck: res_layer(x) + shortcut_layer(x)."""

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        if in_channels == channels:
            self.shortcut_layer: nn.Module = _Subsample(stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                                nn.BatchNorm2d(channels))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(channels),
            _SqueezeExcite(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def _ir_se50_body() -> nn.Sequential:
    units, width = [], 64
    for channels, count in _STAGES:
        for i in range(count):
            units.append(_Unit(width, channels, 2 if i == 0 else 1))
            width = channels
    return nn.Sequential(*units)


class _EqualLinear(nn.Module):
    """Linear layer with the equalised learning rate of StyleGAN2 (weight scaled by 1/sqrt(fan_in) at run time)."""

    def __init__(self, features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(features, features))
        self.bias = nn.Parameter(torch.zeros(features))
        self.scale = 1 / math.sqrt(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class _MapToStyle(nn.Module):
    """map2style: stride-2 convs with leaky ReLU(0.01) from `spatial` px down to 1 px, then a linear layer."""

    def __init__(self, spatial: int, channels: int = 512):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(channels, channels, 3, 2, 1), nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = _EqualLinear(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).flatten(1))


class Encoder(nn.Module):
    """A pSp (`GradualStyleEncoder`) or e4e (`Encoder4Editing`) encoder with its `latent_avg`.

    `forward(x)` takes images [N, 3, 256, 256] in [-1, 1] (see `encoder_input`) and returns W+ codes
    [N, n_styles, 512] with `latent_avg` added; `encode(photos)` does the preprocessing too.
    `kind` is "psp" or "e4e"; `meta` holds the checkpoint's `opts`, where it came from (`source`) and whether the file
    holds its decoder (`has_decoder`).
    """

    kind: str
    n_styles: int
    meta: dict

    def __init__(self, kind: str, n_styles: int, latent_avg: torch.Tensor | None = None, meta: dict | None = None):
        super().__init__()
        if kind not in ("psp", "e4e"):
            raise ValueError(f"kind must be 'psp' or 'e4e', got {kind!r}")
        self.kind, self.n_styles, self.meta = kind, n_styles, dict(meta or {})
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        self.body = _ir_se50_body()
        self.styles = nn.ModuleList(_MapToStyle(_SPATIAL[_level(i)]) for i in range(n_styles))
        self.latlayer1 = nn.Conv2d(256, 512, 1)
        self.latlayer2 = nn.Conv2d(128, 512, 1)
        avg = torch.zeros(n_styles, 512) if latent_avg is None else latent_avg.float().expand(n_styles, 512).clone()
        self.register_buffer("latent_avg", avg)
        self.to(memory_format=torch.channels_last)  # ~30% faster convolutions on the CPU (measured)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """W+ codes [N, n_styles, 512] of images [N, 3, 256, 256] in [-1, 1] (`encoder_input`)."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or list(x.shape[1:]) != [3, INPUT_SIZE, INPUT_SIZE]:
            got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__  # failed in a conv, or at x.to
            raise ValueError(f"the encoder takes images [N, 3, {INPUT_SIZE}, {INPUT_SIZE}] in [-1, 1], got {got}: for "
                             "photos (paths, PIL images, arrays) use encoder.encode(photos), which prepares them")
        check_image_tensor(x, "the encoder's input", "the encoder")  # 0 .. 255 gave codes hundreds off, silently
        return self._codes(x)

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        """`forward` of images it has checked, or `encode` prepared (checked once: a pale photo, in range, was
        warned of as a [0, 1] tensor)."""
        x = self.input_layer(x.to(self.latent_avg).contiguous(memory_format=torch.channels_last))
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in _TAPS:
                taps.append(x)
        c1, c2, c3 = taps
        features = [c3]  # the pyramid level each W+ entry reads, built only as far as needed
        if self.n_styles > _COARSE:
            features.append(_upsample_add(c3, self.latlayer1(c2)))
        if self.n_styles > _MIDDLE:
            features.append(_upsample_add(features[1], self.latlayer2(c1)))
        deltas = [style(features[_level(i)]) for i, style in enumerate(self.styles)]
        if self.kind == "e4e":  # one w for every layer plus per-entry offsets
            deltas = [deltas[0]] + [deltas[0] + d for d in deltas[1:]]
        return torch.stack(deltas, dim=1) + self.latent_avg

    def extra_repr(self) -> str:
        """What the encoder is and makes, atop `repr(encoder)`'s module tree (hundreds of IR-SE50 layers)."""
        source = f", source={self.meta['source']!r}" if "source" in self.meta else ""
        return f"kind={self.kind!r}, n_styles={self.n_styles}{source}"

    def encode(self, photos: ImageInput | torch.Tensor | Sequence[ImageInput | torch.Tensor]) -> torch.Tensor:
        """W+ codes [N, n_styles, 512] (on the CPU) of FFHQ-aligned face crops (any size; see `encoder_input`, which
        warns of an image that cannot be one: not square), given as photos or image tensors in [-1, 1], or a list of
        them. It runs in eval mode whatever the encoder's mode, which it leaves as it was: in train mode, BatchNorm
        normalised with the photos' own statistics and moved the encoder's running ones (forty-first session's
        audit); `forward`, as any module's, runs in the mode it is in."""
        x = encoder_input(photos)  # outside torch.no_grad's decorator, whose frame its warning named as the caller
        training = [module for module in self.modules() if module.training]  # each module's mode, as it was
        try:
            with torch.no_grad():
                return self.eval()._codes(x.to(self.latent_avg.device)).float().cpu()
        finally:
            for module in training:
                module.training = True


def _level(index: int) -> int:
    return 0 if index < _COARSE else 1 if index < _MIDDLE else 2


def _upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    return F.interpolate(top, size=lateral.shape[2:], mode="bilinear", align_corners=True) + lateral


def encoder_input(photos: ImageInput | torch.Tensor | Sequence[ImageInput | torch.Tensor]) -> torch.Tensor:
    """FFHQ-aligned face crop(s) as the encoders were trained on them: [N, 3, 256, 256] in [-1, 1].

    Each image (path, PIL image, uint8 array, ...) is read upright as RGB, resized to 256 x 256 with PIL's
    bilinear filter (what the pSp / e4e inference transform `torchvision.transforms.Resize((256, 256))`
    does to a PIL image) and scaled as (pixel / 255 - 0.5) / 0.5. A float tensor [3, H, W] or [N, 3, H, W] in
    [-1, 1] (what a generator draws, as `project` takes it; in a list too) is checked as `project` checks it and
    resized with antialiased bilinear interpolation. Pass the aligned crop
    (`toonlib.align_face(photo).image`), not the whole photo: an image that is not square cannot be one, and is
    encoded with a warning (`images.warn_if_not_a_crop`).
    """
    if isinstance(photos, torch.Tensor):  # what a generator draws, as project takes it
        return _tensor_input(photos, "the image tensor")
    stacked = isinstance(photos, np.ndarray) and photos.ndim == 4  # [N, H, W, C]: N images, as `project` takes them
    items = list(photos) if stacked else photos if isinstance(photos, (list, tuple)) else [photos]
    if not items:
        raise ValueError("no image given")
    parts = []
    for i, item in enumerate(items):
        # a list of tensors, as `project` takes them: refused as no image (thirty-ninth session's audit)
        if isinstance(item, torch.Tensor):
            parts.append(_tensor_input(item, f"photos[{i}]" if len(items) > 1 else "the image tensor"))
            continue
        image = read_image(item)
        name = describe_source(item)
        name = f"photos[{i}]" if len(items) > 1 and name == "the image" else name
        warn_if_not_a_crop(image, name, "the encoder", f"encoding it squashed to {INPUT_SIZE} x {INPUT_SIZE}")
        if image.size != (INPUT_SIZE, INPUT_SIZE):
            image = image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
        parts.append((x / 255 - 0.5) / 0.5)
    return torch.cat(parts).contiguous()


def _tensor_input(x: torch.Tensor, what: str) -> torch.Tensor:
    """An image tensor [3, H, W] or [N, 3, H, W] in [-1, 1] as the encoder takes it (`encoder_input`); `what`: how the
    messages call it."""
    x = check_image_tensor(x, what, "the encoder").float().cpu()
    warn_if_not_a_crop(x, what, "the encoder", f"encoding it squashed to {INPUT_SIZE} x {INPUT_SIZE}")
    if x.shape[2:] != (INPUT_SIZE, INPUT_SIZE):  # PIL's bilinear filter, as the photos get
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
    return x.contiguous()


def load_encoder(source: str | os.PathLike, device: torch.device | str | None = None) -> Encoder:
    """The pSp or e4e encoder of a published checkpoint: a path, an http(s) URL or a registry name.

    Returns an `Encoder` in eval mode with gradients off, on `device` (default: CUDA when available).
    Reads `GradualStyleEncoder` (pSp: psp_ffhq_encode.pt, psp_ffhq_toonify.pt) and `Encoder4Editing`
    (e4e: e4e_ffhq_encode.pt) checkpoints with any number of W+ entries; other encoder types (pSp's
    W-only backbones, ReStyle's iterative encoders, sketch / segmentation encoders) raise `EncoderError`.
    The file's decoder is read by `toonlib.load_network(same file)`.
    """
    if not isinstance(source, (str, os.PathLike)):  # None or a model failed inside pathlib
        loaded = ": that is loaded already" if isinstance(source, Encoder) else ""
        raise TypeError(f"load_encoder reads a pSp / e4e checkpoint: a path, an http(s) URL or a registry name "
                        f"(`toonlib models`); got {type(source).__name__}{loaded}")
    device = default_device(device)  # a device this machine lacks fails before the download
    path = resolve_source(source, kinds=ENCODER_KINDS)
    if path.is_dir():
        raise EncoderError(folder_problem(path, ENCODER_KINDS))
    with open(path, "rb") as f:
        head = f.read(64)
    # an empty file or a saved Drive page was "starts with b''", "a generator goes to --base" (audit)
    if problem := unfinished_download(head, str(path), "a pSp / e4e checkpoint"):
        raise EncoderError(problem)
    block, head = head, head[:len(_LEGACY_TORCH_MAGIC)]
    zipped = head.startswith(b"PK")  # torch's zip format can be memory-mapped: the decoder is never read
    problem = not_a_torch_zip(path, str(path)) if zipped else None
    if problem:
        raise EncoderError(problem)
    if not (zipped or head == _LEGACY_TORCH_MAGIC):
        if kind := pillow_format(path):  # what --encoder me.jpg gets (it was "this file starts with b'\xff\xd8...'")
            raise EncoderError(f"{path} is a {kind} image, not a pSp / e4e checkpoint (those are torch.save files)")
        if safetensors_header_length(head) is not None or looks_like_pickle(head):
            raise EncoderError(f"{path} is a generator checkpoint (a network pickle or a toonlib file), not a pSp / "
                               "e4e checkpoint (for a generator checkpoint use toonlib.load_network)")
        # said without its bytes, as `toonlib info` says such a file (a credentials file's were quoted; forty-fourth
        # session's audit)
        raise EncoderError(f"{path} is not a pSp / e4e checkpoint: those are torch.save files, this is "
                           f"{content_kind(block)} (for a generator checkpoint use toonlib.load_network)")
    try:
        checkpoint = _torch_load(path, zipped)  # `opts` saved as an argparse.Namespace are read too
    except Exception as exc:  # torch raises many types for bad files; all mean "unreadable"
        unsafe = _unsafe_globals(path, exc)
        if unsafe:  # not damaged: it asks for code (torch's own advice, turning weights_only off, is not passed on)
            raise EncoderError(refusal(str(path), "torch file", unsafe)) from None
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        message = f"{path} cannot be read as a torch checkpoint ({message.split('. ')[0]}). {damaged_file()}"
        cached = path != user_path(source)  # damaged since it was downloaded
        raise EncoderError(damaged_download(message, public_name(source)) if cached else message) from None
    encoder = encoder_from_checkpoint(checkpoint, str(path))
    return encoder.to(device)


def holds_decoder(encoder: object) -> bool:
    """Whether `encoder` (as `Toonifier(encoder=)` takes it; None: the mode's default) comes with the decoder its codes
    belong to, which draws psp-toonify's codes; without one (a file saved with its `encoder.` weights alone, an
    `Encoder` object) the toon model's published blend draws them, so that mode reads the toon model and the base.
    Registry names and URLs hold theirs (the published files do); a file this cannot read counts as holding one
    (`load_encoder` says what is wrong with it)."""
    if isinstance(encoder, Encoder):
        return False
    if not isinstance(encoder, (str, os.PathLike)) or (isinstance(encoder, str) and (encoder in models.MODELS
                                                                                     or is_url(encoder))):
        return True
    path = user_path(encoder)
    try:
        with open(path, "rb") as f:
            zipped = f.read(2) == b"PK"
        state = _torch_load(path, zipped)["state_dict"]  # memory-mapped: the weights are not read
        return any(str(key).startswith("decoder.") for key in state)
    except Exception:  # not there, not a torch file, no state_dict: load_encoder's errors say so
        return True


def check_encoder_mode(invert: str, encoder: object) -> None:
    """ValueError, before any download, for an encoder given to inversion mode 'optimize', which uses none, and for a
    registry encoder whose codes belong to another space than mode `invert` reads them in: psp-toonify's are latents
    of its blended toon decoder, e4e-ffhq's and psp-ffhq's of the FFHQ base (each would draw a wrong image, and
    nothing else would say so). A path whose file name is a registry encoder's (the name its authors publish it
    under, `psp_ffhq_toonify.pt`) is that encoder, and so is an `Encoder` loaded from one (by its `meta['source']`:
    one of psp-toonify ran in e4e mode without a word; thirty-third session's audit); other paths and objects pass."""
    if encoder is not None and invert == "optimize":
        raise ValueError(f"encoder= is the encoder of an invert= mode that uses one "
                         f"({', '.join(mode for mode in INVERT_MODES if mode != 'optimize')}), and invert='optimize' "
                         "(the default) starts from the mean face without one: add invert='e4e+optimize', say, or "
                         "leave encoder= out")
    if isinstance(encoder, Encoder) and isinstance(encoder.meta.get("source"), str):
        encoder = encoder.meta["source"]  # the registry name or file it was loaded from
    info = models.MODELS.get(encoder) if isinstance(encoder, str) else None
    shown = repr(encoder)
    if info is None and isinstance(encoder, (str, os.PathLike)):  # the same file by its path ran without a word
        name = os.path.basename(os.fspath(encoder))
        info = next((entry for entry in models.MODELS.values() if entry.kind == "encoder" and entry.filename == name),
                    None)
        shown = f"{os.fspath(encoder)} ({info.name})" if info is not None else shown
    if info is None or info.kind != "encoder" or (invert == "psp-toonify") == (info.toon is not None):
        return
    toonify = [name for name, entry in models.MODELS.items() if entry.kind == "encoder" and entry.toon is not None]
    if invert == "psp-toonify":
        raise ValueError(f"{shown} makes latents of the FFHQ base, not of a toon model: in psp-toonify mode its "
                         f"decoder, FFHQ, would draw the photo itself as the toon. Use invert mode e4e or psp with it, "
                         f"or leave the encoder out (psp-toonify mode uses {toonify[0]!r})")
    raise ValueError(f"{shown} makes latents of its blended toon decoder, not of the base model: invert mode "
                     f"{invert} would render them with the base. Use it in psp-toonify mode, or leave the encoder "
                     f"out ({invert} mode uses its registry encoder)")


def encoder_from_checkpoint(checkpoint: object, source: str = "the checkpoint") -> Encoder:
    """Build the `Encoder` of a loaded pSp / e4e checkpoint dict (see `load_encoder`), on the CPU."""
    if not (isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict)):
        got = type(checkpoint).__name__
        if isinstance(checkpoint, dict):  # all 485 names of a state dict made a 15,000-character message
            got = f"a dict of {counted(len(checkpoint), 'key')}: {shortened(sorted(map(repr, checkpoint)), 12)}"
            if {"input_layer.0.weight", "encoder.input_layer.0.weight"} & set(checkpoint):
                got += (" (weights alone, a state dict: give the checkpoint the authors published, such as "
                        "e4e_ffhq_encode.pt, which holds them with their 'opts' and 'latent_avg')")
        raise EncoderError(f"{source} is not a pSp / e4e checkpoint: expected a dict with 'state_dict', 'opts' and "
                           f"'latent_avg', got {got}")
    opts = checkpoint.get("opts") or {}
    opts = opts if isinstance(opts, dict) else vars(opts)
    kind = _kind(opts.get("encoder_type"), source)
    prefix = "encoder."
    state = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    first = state.get("input_layer.0.weight")
    if first is None:
        raise EncoderError(f"{source} has no encoder weights (no 'encoder.input_layer.0.weight')")
    if first.shape[1] != 3:
        what = ("a ReStyle encoder (photo + current reconstruction)" if first.shape[1] == 6
                else "a sketch / segmentation-map encoder")
        raise EncoderError(f"{source} takes {first.shape[1]} input channels: {what}. load_encoder reads photo "
                           "encoders (3 channels): pSp GradualStyleEncoder and e4e Encoder4Editing checkpoints")
    n_styles = 1 + max((int(m.group(1)) for k in state if (m := re.match(r"styles\.(\d+)\.", k))), default=-1)
    if n_styles < 1:
        raise EncoderError(f"{source} has no map2style blocks ('encoder.styles.*'): not a pSp / e4e encoder")
    latent_avg = checkpoint.get("latent_avg")
    if opts.get("start_from_latent_avg", False):
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.shape[-1] != 512 or latent_avg.ndim > 2 or (
                latent_avg.ndim == 2 and latent_avg.shape[0] not in (1, n_styles)):
            shape = list(latent_avg.shape) if isinstance(latent_avg, torch.Tensor) else latent_avg
            raise EncoderError(f"{source}: opts say start_from_latent_avg but 'latent_avg' is {shape}, "
                               f"expected a tensor [512] or [{n_styles}, 512]")
    else:
        latent_avg = None  # codes are the encoder's output as it is
    meta = {"source": source, "encoder_type": opts.get("encoder_type"), "opts": dict(opts),
            "has_decoder": any(k.startswith("decoder.") for k in checkpoint["state_dict"])}
    latent_avg = torch.zeros(n_styles, 512) if latent_avg is None else latent_avg  # a real tensor, not a meta one
    with torch.device("meta"):  # shapes only: every weight is loaded below (drawing 267 M initial weights took ~1 s)
        encoder = Encoder(kind, n_styles, latent_avg, meta)
    _load_state(encoder, state, source)
    return encoder.eval().requires_grad_(False)


def _kind(encoder_type: object, source: str) -> str:
    supported = ", ".join(f"{name} ({paper})" for name, paper in ENCODER_TYPES.items())
    if encoder_type in ENCODER_TYPES:
        return ENCODER_TYPES[encoder_type].lower()
    if encoder_type in _W_ONLY:
        why = f"{_W_ONLY[encoder_type]} is not supported"
    elif encoder_type in _RESTYLE:
        why = "ReStyle's iterative encoders (several passes through the decoder) are not supported"
    elif encoder_type is None:
        why = "its opts name no encoder_type (pSp and e4e files have the same weights; opts tell them apart)"
    else:
        why = "this encoder type is unknown"
    raise EncoderError(f"{source}: encoder type {encoder_type!r}: {why}. Supported: {supported}")


def _load_state(encoder: Encoder, state: dict[str, torch.Tensor], source: str) -> None:
    expected = {k: v for k, v in encoder.state_dict().items() if k != "latent_avg"}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {list(state[k].shape)} (expected {list(v.shape)})" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    problems = [f"{what} {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
    if problems:
        raise EncoderError(f"{source}: the encoder weights do not fit an IR-SE50 {encoder.kind} encoder with "
                           f"{encoder.n_styles} W+ entries: {'; '.join(problems)}")
    # Copies, each made once: the file's tensors are memory-mapped (a file changed in place under a running app would
    # crash it), in float32, and 4-D ones channels-last, as the constructor lays the encoder out.
    weights = {k: torch.empty_like(v, dtype=torch.float32 if v.is_floating_point() else v.dtype,
                                   memory_format=torch.channels_last if v.ndim == 4 else torch.contiguous_format
                                   ).copy_(v) for k, v in state.items()}
    encoder.load_state_dict({**weights, "latent_avg": encoder.latent_avg}, strict=True, assign=True)

