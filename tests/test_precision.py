"""Reduced-precision projection keeps the result (issue #12's bar for choosing it automatically): bfloat16
autocast ends with the same final LPIPS as float32 within 1% and draws the same toon, mean |difference|
below 1/255, on tiny base and toon models. (float16 autocast is for CUDA; this suite runs on the CPU.)

The result is compared where the fit has slowed down (60 steps; the distance then falls ~0.2% a step): mid-descent
the two trajectories are apart by as much as the distance moves in a step or two (on an AVX512-BF16 CPU: bf16 -1.0%
after 15 steps, -0.2% after 30, +0.3% after 60, -0.04% after 80)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from tiny import random_lpips, tiny_generator

from toonlib.blending import blend
from toonlib.losses import PerceptualDistance
from toonlib.projection import project, render

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_precision import toon_like  # noqa: E402

STEPS = 60


@pytest.fixture(scope="module")
def projections():
    net = random_lpips()
    base = tiny_generator(0)
    with torch.no_grad():
        ws = base.mapping(torch.randn(2, base.z_dim, generator=torch.Generator().manual_seed(1)), None)
        targets = base.synthesis(ws, noise_mode="const")
    run = dict(steps=STEPS, lpips_net=net, w_avg_samples=1000, progress=False, device="cpu")
    results = {p: project(base, targets, "w+", precision=p, **run) for p in ("fp32", "bf16")}
    with torch.no_grad():  # every result's final distance, measured the same way: LPIPS in float32
        distance = PerceptualDistance(net, targets)
        final = {p: distance(result.images) for p, result in results.items()}
    return _toon_of(base), targets, results, final


def _toon_of(base):
    """A blend of the base with a toon model 'fine-tuned' from it (its weights moved by 30% of their spread)."""
    return blend(toon_like(base), base, 16)


def test_bf16_keeps_the_final_distance_within_one_percent(projections):
    _, _, results, final = projections
    fp32, bf16 = final["fp32"].sum().item(), final["bf16"].sum().item()
    assert fp32 < 0.6 * results["fp32"].losses[0].sum()  # the projection moved: the comparison is of a fit
    assert abs(bf16 - fp32) <= 0.01 * fp32


def test_bf16_draws_the_same_toon(projections):
    toon, _, results, _ = projections
    toons = {p: render(toon, results[p].w) for p in results}
    difference = (toons["bf16"] - toons["fp32"]).abs().mean() * 127.5  # images in [-1, 1] -> 0..255 levels
    assert difference < 1.0
    assert not torch.equal(results["bf16"].w, results["fp32"].w)  # bf16 really ran: not the same numbers
