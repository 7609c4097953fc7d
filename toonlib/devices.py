"""Which torch device toonlib computes on: the one home of "CUDA when available, else the CPU"."""
from __future__ import annotations

import torch

__all__ = ["default_device"]


def default_device(device: torch.device | str | None = None) -> torch.device:
    """`device` as a `torch.device`; None means CUDA when available, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
