"""Image helpers, the swap-resolution grid and the blend explorer widget, driven programmatically."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import tiny_generator

from toonlib.blending import blend, swap_resolution_grid
from toonlib.images import bar_chart, from_pil, labelled_grid, save_image, to_pil, to_uint8
from toonlib.networks import parse_seeds, z_from_seeds
from toonlib.widgets import blend_explorer


def test_tensor_pil_round_trip_and_rounding():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 1, 4).expand(1, 3, 1, 4)
    assert to_uint8(x)[0, 0, :, 0].tolist() == [0, 128, 255, 255]
    img = torch.rand(3, 8, 8) * 2 - 1
    back = from_pil(to_pil(img))
    assert back.shape == (1, 3, 8, 8)
    assert (back[0] - img).abs().max() <= 1 / 127.5 + 1e-6


def test_grid_layout_and_atomic_save(tmp_path):
    cells = [[Image.new("RGB", (10, 10), c) for c in ("red", "green")] for _ in range(3)]
    grid = labelled_grid(cells, row_labels=["a", "b", "c"], col_labels=["x", "y"], cell=20)
    plain = labelled_grid(cells, cell=20, pad=0)
    assert plain.size == (40, 60)
    assert grid.width > 40 and grid.height > 60  # room for the labels
    save_image(grid, tmp_path / "grid.png")
    assert Image.open(tmp_path / "grid.png").size == grid.size
    chart = np.asarray(bar_chart([0.0, 1.0], height=50))
    assert (chart[:, :chart.shape[1] // 2] == 255).mean() > (chart[:, chart.shape[1] // 2:] == 255).mean()


def test_seeds():
    assert parse_seeds("0-2, 5") == [0, 1, 2, 5]
    with pytest.raises(ValueError, match="bad seed list"):
        parse_seeds("a-b")
    z = z_from_seeds([3], 4)
    assert torch.allclose(z[0], torch.from_numpy(np.random.RandomState(3).randn(4)).float())


def test_swap_resolution_grid_columns():
    base, toon = tiny_generator(0), tiny_generator(1)
    grid = swap_resolution_grid(toon, base, seeds=[0, 1], cell=32)
    assert grid.height > 2 * 32 and grid.width > 6 * 32  # base, 4 swaps (4..32), toon


def test_blend_explorer_renders_and_reacts():
    base, toon = tiny_generator(0), tiny_generator(1)
    explorer = blend_explorer(base, toon, seeds=[0, 1], cell=32)

    def shown() -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(explorer.image.value)))

    first = shown()
    assert first.shape[0] > 2 * 32
    chart = explorer.chart.value
    explorer.swap_res.value = 4
    assert not np.array_equal(first, shown())
    assert explorer.chart.value != chart
    expected = blend(toon, base, 4).state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in explorer.blended.state_dict().items())
    # The same blended generator is re-mixed in place, never rebuilt.
    blended = explorer.blended
    explorer.blend_width.value = 1.0
    assert explorer.blended is blended and "smooth" in explorer.status.value
    explorer.seeds.value = "0-2"
    assert shown().shape[0] > first.shape[0]  # three rows now
    explorer.seeds.value = "x"
    assert "bad seed list" in explorer.status.value


def test_toon_slider_reblends_the_same_latent():
    from toonlib.blending import blend as blend_models
    from toonlib.checkpoints import Networks
    from toonlib.pipeline import Toonifier
    from toonlib.widgets import ToonSlider

    base, toon = tiny_generator(0), tiny_generator(1)
    toonifier = Toonifier(base, Networks(G_ema=blend_models(toon, base, 8), G=toon))
    w = base.mapping(z_from_seeds([0], base.z_dim), None)
    slider = ToonSlider(toonifier, w, cell=32)
    published = slider.image.value
    slider.swap_res.value = 32  # everything from the toon model
    assert slider.image.value != published
    expected = toon.synthesis(w)
    assert torch.allclose(toonifier.generator.synthesis(w), expected)
    slider.swap_res.value = "published"
    assert slider.image.value == published and toonifier.generator is toonifier.published_blend


def test_frame_scrubber():
    from toonlib.widgets import FrameScrubber

    frames = [np.full((4, 8, 3), i * 50, np.uint8) for i in range(3)]
    scrubber = FrameScrubber(frames)
    last = scrubber.image.value
    scrubber.slider.value = 0
    assert scrubber.image.value != last
    with pytest.raises(ValueError, match="save_every"):
        FrameScrubber([])
