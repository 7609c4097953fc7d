"""Registry of known pretrained models: where to get them and what they are.

Each entry lists its sources in the order `download.fetch` tries them: direct URLs first, then
Google Drive file ids written as `gdrive:<id>`. Checksums and sizes are given only where known.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

__all__ = ["MODELS", "ModelInfo", "UnknownModelError", "get_model"]

_NVIDIA_LICENSE = "Nvidia Source Code License-NC"
_ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained"
_NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files"


@dataclass(frozen=True)
class ModelInfo:
    """One downloadable checkpoint."""

    name: str
    description: str
    sources: tuple[str, ...]  # direct URLs, then "gdrive:<file id>"
    filename: str  # name of the file in the cache folder
    format: str  # "tensorflow" | "nvidia" | "rosinality"
    resolution: int
    license: str
    origin: str  # project page
    sha256: str | None = None
    size: int | None = None  # bytes


class UnknownModelError(KeyError, ValueError):
    """A model name that is not in the registry (catchable as KeyError or ValueError)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def _noaug(resolution: int, filename: str) -> ModelInfo:
    return ModelInfo(
        name=f"ffhq-{resolution}-noaug",
        description=f"FFHQ {resolution}x{resolution} StyleGAN2 without augmentation: "
                    "stylegan2-ada-pytorch's transfer-learning source network",
        sources=(f"{_ADA}/transfer-learning-source-nets/{filename}",),
        filename=filename,
        format="nvidia",
        resolution=resolution,
        license=_NVIDIA_LICENSE,
        origin="https://github.com/NVlabs/stylegan2-ada-pytorch",
    )


_ENTRIES = (
    ModelInfo(
        name="ffhq-1024-tf",
        description="FFHQ 1024x1024 StyleGAN2 config-f, the original TensorFlow pickle",
        sources=("https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks/stylegan2-ffhq-config-f.pkl",),
        filename="stylegan2-ffhq-config-f.pkl",
        format="tensorflow",
        resolution=1024,
        license=_NVIDIA_LICENSE,
        origin="https://github.com/NVlabs/stylegan2",
    ),
    ModelInfo(
        name="ffhq-1024",
        description="FFHQ 1024x1024 StyleGAN2, PyTorch pickle (stylegan2-ada-pytorch, mirrored on NGC)",
        sources=(f"{_ADA}/ffhq.pkl", f"{_NGC}/stylegan2-ffhq-1024x1024.pkl"),
        filename="ffhq.pkl",
        format="nvidia",
        resolution=1024,
        license=_NVIDIA_LICENSE,
        origin="https://github.com/NVlabs/stylegan2-ada-pytorch",
    ),
    _noaug(256, "ffhq-res256-mirror-paper256-noaug.pkl"),
    _noaug(512, "ffhq-res512-mirror-stylegan2-noaug.pkl"),
    _noaug(1024, "ffhq-res1024-mirror-stylegan2-noaug.pkl"),
    ModelInfo(
        name="toonify-blended-tf",
        description="The original Toonify model: the cartoon-fine-tuned G and D and the blended Gs "
                    "(TensorFlow pickle)",
        sources=("gdrive:1H73TfV5gQ9ot7slSed_l-lim9X7pMRiU",),
        filename="ffhq-cartoon-blended-64.pkl",
        format="tensorflow",
        resolution=1024,
        license=f"{_NVIDIA_LICENSE} (fine-tuned from NVIDIA's FFHQ model)",
        origin="https://github.com/justinpinkney/toonify",
    ),
    ModelInfo(
        name="toonify-blended-rosinality",
        description="The blended Toonify generator in rosinality/stylegan2-pytorch format (.pt)",
        sources=("gdrive:1r3XVCt_WYUKFZFxhNH-xO2dTtF6B5szu",),
        filename="ffhq_cartoon_blended.pt",
        format="rosinality",
        resolution=1024,
        license=f"{_NVIDIA_LICENSE} (fine-tuned from NVIDIA's FFHQ model)",
        origin="https://github.com/justinpinkney/toonify",
    ),
)

MODELS: dict[str, ModelInfo] = {info.name: info for info in _ENTRIES}


def get_model(name: str) -> ModelInfo:
    """The registry entry called `name`; an unknown name raises `UnknownModelError` with suggestions."""
    try:
        return MODELS[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(name, MODELS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownModelError(f"unknown model {name!r}.{hint} Known models: {', '.join(sorted(MODELS))}") from None
