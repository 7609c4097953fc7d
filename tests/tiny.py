"""Tiny random generators for tests: 32 px, few channels, images scaled into about [-1, 1]."""
from __future__ import annotations

import torch

from toonlib.networks import Generator

TINY = dict(z_dim=16, w_dim=16, img_resolution=32, channel_base=128, channel_max=16)


def tiny_generator(seed: int, **overrides) -> Generator:
    """A random generator whose biases and noise strengths are non-zero and whose images lie in ~[-1, 1]."""
    torch.manual_seed(seed)
    G = Generator(**{**TINY, **overrides}).eval()
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith(("bias", "noise_strength")) and "affine" not in name:
                param.add_(0.2 * torch.randn_like(param))
            if name.endswith("torgb.weight"):
                param.mul_(0.15)
    return G.requires_grad_(False)
