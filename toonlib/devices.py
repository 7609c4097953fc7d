"""Which torch device toonlib computes on: the one home of "CUDA when available, else the CPU"."""
from __future__ import annotations

import torch

from .messages import counted

__all__ = ["default_device"]


def default_device(device: torch.device | str | None = None,
                   none_means: str = "CUDA when available, else the CPU") -> torch.device:
    """`device` as a `torch.device`; None means CUDA when available, else the CPU.

    A device this machine does not have is a ValueError that says what to pass instead, raised before any
    model is read (torch would say "Found no NVIDIA driver" once the first tensor moved there). `none_means`: what
    None means to the caller, as those messages say it (the checkpoint loaders keep None on the CPU)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device: use 'cpu', 'cuda', 'cuda:1', ... or None "
                         f"({none_means})") from exc
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device={str(device)!r}, but torch finds no CUDA GPU here (no GPU or driver, or a "
                             "CPU-only torch build): pass device='cpu' or None (the CPU when there is no GPU)")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device={str(device)!r}, but this machine has {counted(count, 'CUDA GPU')} "
                             f"(cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})")
    elif device.type == "meta":  # shapes without data: a model there computes nothing (autocast: "unknown device")
        raise ValueError("device='meta' holds no data (its tensors are shapes alone), so nothing can run there: pass "
                         f"device='cpu', 'cuda' or None ({none_means})")
    elif device.type != "cpu":  # mps, xpu, ...: torch says "not linked with support" only once a model moves there
        try:
            torch.empty(0, device=device)
        except Exception as exc:  # RuntimeError, AssertionError, ModuleNotFoundError (hpu), ... by backend
            raise ValueError(f"device={str(device)!r}, but torch has no {device.type} device here (none on this "
                             "machine, or a torch build without it): pass device='cpu', or None "
                             f"({none_means})") from exc
    return device
