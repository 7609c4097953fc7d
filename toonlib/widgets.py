"""Interactive ipywidgets UIs for notebooks (core widgets only; ipywidgets 7.7 and 8.x).

    from toonlib.widgets import blend_explorer
    blend_explorer(base_G, toon_G, seeds=[0, 1, 2, 3])     # display it as the last line of a cell

Importing this module imports ipywidgets; nothing else in toonlib does at import time.
"""
from __future__ import annotations

import io
from typing import Sequence

import ipywidgets as widgets
import torch
from PIL import Image

from .blending import Blender, layer_weights
from .checkpoints import GeneratorLike, load_generator
from .images import bar_chart, labelled_grid, to_pil
from .networks import parse_seeds, z_from_seeds


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class BlendExplorer:
    """Sliders over the blend settings; shows base | toon | blended for each seed and the layer weights.

    The ws, the base images and the toon images are computed once per (seeds, truncation); a slider
    move only re-mixes the blended generator's parameters in place and renders it.
    Attributes: the controls (`swap_res`, `level`, `blend_width`, `seeds`, `truncation`), the outputs
    (`image`, `chart`, `status`) and `widget` (the whole UI). `render()` redraws; `blended` is the
    current blended generator.
    """

    def __init__(self, base: GeneratorLike, toon: GeneratorLike, seeds: Sequence[int] = (0, 1, 2, 3),
                 swap_res: int = 16, level: int = 0, blend_width: float = 0.0, truncation_psi: float = 0.7,
                 cell: int = 192):
        self.base, self.toon = load_generator(base), load_generator(toon)
        self.blender = Blender(low=self.toon, high=self.base)
        self.cell = cell
        resolutions = self.base.synthesis.block_resolutions
        self.swap_res = widgets.SelectionSlider(options=resolutions, value=min(swap_res, resolutions[-1]),
                                                description="swap res", continuous_update=False)
        self.level = widgets.ToggleButtons(options=[("conv0", 0), ("conv1", 1)], value=level, description="level")
        self.blend_width = widgets.FloatSlider(value=blend_width, min=0.0, max=3.0, step=0.1,
                                               description="width", continuous_update=False)
        self.seeds = widgets.Text(value=",".join(str(s) for s in seeds), description="seeds",
                                  continuous_update=False)
        self.truncation = widgets.FloatSlider(value=truncation_psi, min=0.0, max=1.0, step=0.05,
                                              description="truncation", continuous_update=False)
        self.image = widgets.Image(format="png")
        self.chart = widgets.Image(format="png")
        self.status = widgets.Label()
        for control in (self.swap_res, self.level, self.blend_width):
            control.observe(lambda _: self.render(), names="value")
        for control in (self.seeds, self.truncation):
            control.observe(lambda _: self._new_latents(), names="value")
        controls = widgets.VBox([self.swap_res, self.level, self.blend_width, self.seeds, self.truncation,
                                 self.chart, self.status])
        self.widget = widgets.HBox([controls, self.image])
        self._new_latents()

    @torch.no_grad()
    def _new_latents(self) -> None:
        try:
            seeds = parse_seeds(self.seeds.value)
        except ValueError as exc:
            self.status.value = str(exc)
            return
        self._seeds = seeds
        z = z_from_seeds(seeds, self.base.z_dim, self.base.device)
        self._ws = self.base.mapping(z, None, truncation_psi=self.truncation.value)
        self._base_images = to_pil(self.base.synthesis(self._ws))
        self._toon_images = to_pil(self.toon.synthesis(self._ws.to(self.toon.device)))
        self.render()

    @property
    def blended(self):
        return self.blender.G

    @torch.no_grad()
    def render(self) -> None:
        """Re-blend with the current slider values and redraw the image grid and the weight chart."""
        width = self.blend_width.value or None
        weights = layer_weights(self.blended, self.swap_res.value, self.level.value, width)
        blended = to_pil(self.blender.set(self.swap_res.value, self.level.value, width).synthesis(self._ws))
        rows = [[b, t, m] for b, t, m in zip(self._base_images, self._toon_images, blended)]
        grid = labelled_grid(rows, row_labels=[f"seed {s}" for s in self._seeds],
                             col_labels=["base", "toon", "blended"], cell=self.cell)
        self.image.value = _png(grid)
        self.chart.value = _png(bar_chart([w.weight for w in weights], title="share of base model per layer"))
        mode = f"smooth, width {width}" if width else "hard"
        self.status.value = f"swap at {self.swap_res.value} px, level {self.level.value}, {mode}"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def blend_explorer(base: GeneratorLike, toon: GeneratorLike, seeds: Sequence[int] = (0, 1, 2, 3),
                   **kwargs) -> BlendExplorer:
    """An interactive blend explorer (see `BlendExplorer`); display it as the last line of a cell."""
    return BlendExplorer(base, toon, seeds=seeds, **kwargs)


class FrameScrubber:
    """A slider over saved frames (e.g. `ProjectionResult.frames`: target | projection at each step)."""

    def __init__(self, frames: Sequence, steps_between: int = 1):
        if not frames:
            raise ValueError("no frames to show: project with save_every=k to keep frames")
        self.frames = frames
        self.slider = widgets.IntSlider(value=len(frames) - 1, min=0, max=len(frames) - 1,
                                        description=f"frame (x{steps_between} steps)")
        self.image = widgets.Image(format="png")
        self.slider.observe(lambda _: self.render(), names="value")
        self.widget = widgets.VBox([self.slider, self.image])
        self.render()

    def render(self) -> None:
        self.image.value = _png(Image.fromarray(self.frames[self.slider.value]))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


class ToonSlider:
    """Re-renders one latent with the toon model blended at the chosen swap resolution.

    `toonifier` is a `toonlib.pipeline.Toonifier`; the option "published" is its published blend.
    """

    def __init__(self, toonifier, w, cell: int = 384):
        self.toonifier, self.w, self.cell = toonifier, w, cell
        options = ["published"] + list(toonifier.base.synthesis.block_resolutions)
        self.swap_res = widgets.SelectionSlider(options=options, value="published", description="swap res",
                                                continuous_update=False)
        self.image = widgets.Image(format="png")
        self.swap_res.observe(lambda _: self.render(), names="value")
        self.widget = widgets.VBox([self.swap_res, self.image])
        self.render()

    def render(self) -> None:
        value = self.swap_res.value
        self.toonifier.set_blend(None if value == "published" else value)
        self.image.value = _png(self.toonifier.render(self.w).resize((self.cell, self.cell)))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
