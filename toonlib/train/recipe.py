"""The formulas of the StyleGAN2 / ADA training recipe and which layers a run freezes (docs/design.md section 8)."""
from __future__ import annotations

import torch

from ..networks import Discriminator, Generator
from .config import option_value

__all__ = ["d_layer_names", "ema_beta", "frozen_d_prefixes", "frozen_g_prefixes", "lazy_regularization",
           "update_ema"]


def lazy_regularization(lr: float, betas: tuple[float, float], interval: int | None) -> tuple[float, tuple]:
    """Adam's lr and betas for a network regularised every `interval` minibatches (None: not regularised).

    The regulariser's gradient is scaled by `interval`; so that the optimiser sees the same effective
    step, with c = interval / (interval + 1), lr becomes lr * c and each beta becomes beta ** c.
    """
    if interval is None:
        return lr, tuple(betas)
    c = interval / (interval + 1)
    return lr * c, tuple(beta**c for beta in betas)


def ema_beta(batch_size: int, ema_kimg: float, cur_nimg: int, rampup: float | None) -> float:
    """G_ema's decay per minibatch for a half-life of `ema_kimg` kimg; with `rampup` (off when fine-tuning)
    the half-life is at most `cur_nimg * rampup` images, so G_ema starts as a copy of G."""
    ema_nimg = ema_kimg * 1000
    if rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(G_ema: Generator, G: Generator, beta: float) -> None:
    """G_ema's parameters <- G + beta * (G_ema - G) (torch.lerp); its buffers (w_avg, noise) <- G's.
    A parameter equal in both stays bit for bit (frozen layers)."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


def d_layer_names(D: Discriminator) -> list[str]:
    """D's layers in Freeze-D order: from the top-resolution block down, fromrgb, conv0, conv1, skip."""
    names = []
    for res in D.block_resolutions:
        block = getattr(D, f"b{res}")
        names += [f"b{res}.{layer}" for layer in ("fromrgb", "conv0", "conv1", "skip") if hasattr(block, layer)]
    return names


def frozen_d_prefixes(D: Discriminator, freeze_d: int) -> tuple[str, ...]:
    """Parameter-name prefixes of D's first `freeze_d` layers (Freeze-D, Mo et al. 2020)."""
    layers = d_layer_names(D)
    if freeze_d > len(layers):
        raise ValueError(f"{option_value('freeze_d', freeze_d)} asks for more layers than D has that can be frozen: "
                         f"{len(layers)} ({', '.join(layers)})")
    return tuple(f"{name}." for name in layers[:freeze_d])


def frozen_g_prefixes(G: Generator, freeze_g: int, freeze_mapping: bool) -> tuple[str, ...]:
    """Parameter-name prefixes of the generator's frozen parts: the synthesis blocks b4 ... b{freeze_g}
    (FreezeG) and, with `freeze_mapping`, the mapping network (FreezeSG's frozen style vectors)."""
    resolutions = G.synthesis.block_resolutions
    if freeze_g > resolutions[-1]:
        raise ValueError(f"{option_value('freeze_g', freeze_g)}: the generator's blocks go up to {resolutions[-1]} "
                         f"px; choose one of {resolutions[:-1]} (freezing every block would leave nothing to train)")
    if freeze_g == resolutions[-1]:
        raise ValueError(f"{option_value('freeze_g', freeze_g)} freezes every synthesis block of this {freeze_g} px "
                         f"generator: choose a lower resolution, one of {resolutions[:-1]}")
    prefixes = tuple(f"synthesis.b{res}." for res in resolutions if res <= freeze_g)
    return prefixes + (("mapping.",) if freeze_mapping else ())
