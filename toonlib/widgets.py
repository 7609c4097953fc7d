"""Interactive ipywidgets UIs for notebooks (core widgets only; ipywidgets 7.6+ and 8.x).

    from toonlib.widgets import blend_explorer
    blend_explorer(base_G, toon_G, seeds=[0, 1, 2, 3])     # display it as the last line of a cell

Every UI is a flex box that wraps: its controls sit beside the images on a wide output and above them
on a narrow one, so they stay whole from 800 to 1600 px of output width and beyond. Images are shown
at their pixel size, an integer multiple of the model's resolution up to a bound (`display_size`),
never stretched to the width of the page. Every widget a user touches has a `toonlib-*` CSS class.

Importing this module imports ipywidgets; nothing else in toonlib does at import time.
"""
from __future__ import annotations

import html
import io
import numbers
import os
import shlex
import tempfile
from pathlib import Path
from types import EllipsisType
from typing import Callable, Sequence

import torch
from PIL import Image, ImageDraw

from .align import NoFaceError, check_detector
from .blending import (
    KEPT_LOW,
    UNSAVED,
    Blender,
    LayerWeight,
    blend_record,
    check_blend_width,
    check_setting,
    check_swap_res,
    describe_blend,
    layer_weights,
    swap_resolution_grid,
    toon_generator,
)
from .checkpoints import GeneratorLike, load_generator
from .files import (
    StagedFiles,
    check_file_target,
    refuse_to_overwrite_input,
    replaced_note,
    replacing_note,
    resolved_source,
    user_path,
)
from .images import UPLOAD_ACCEPT, ImageReadError, labelled_grid, read_image, text_font, to_pil
from .messages import check_count, check_flag, counted, expected_errors, interrupted
from .networks import check_seeds, parse_seeds, z_from_seeds
from .notebook import (
    EXPLORER_SET_UP_AGAIN,
    NotebookStop,
    StopRequests,
    UploadedFile,
    check_same_set_up,
    check_set_up,
    display_size,
    in_colab,
    in_these_words,
    interrupt_requests,
    notebook_parameter,
    offer_download,
    require_widgets,
    save_uploads,
    set_up_count,
)
from .options import MAX_GRID_SEEDS
from .pipeline import INVERT_LABELS, OPTIMIZING_MODES
from .projection import check_video_path, require_video_writer
from .runtime import autocast, check_precision, resolve_precision

widgets = require_widgets()  # ipywidgets, or the `notebook` extra's install line (no traceback through this module)

__all__ = ["PROJECTION_MODES", "BlendExplorer", "FrameScrubber", "ProjectionPanel", "ToonifyPanel", "blend_explorer",
           "check_explorer_settings", "layer_chart", "projection_panel", "toonify_panel", "uploaded_files"]

#: The modes the projection panel offers (the toonify panel offers `pipeline.INVERT_MODES`).
PROJECTION_MODES = ("optimize",)
#: Slider style that shows the whole description, however long (the default cuts it at about 80 px).
FULL_LABEL = {"description_width": "initial"}
#: The blend explorer's slider of smooth widths (notebook 02's Colab slider offers the same); a wider width given, which
#: `toonlib blend` takes too, widens it.
BLEND_WIDTHS = (0.0, 3.0)
LOW_COLOR, HIGH_COLOR = "#e07b39", "#3b6fb6"  # the toon (low-res) model and FFHQ (high-res) in the layer chart


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _scaled(image: Image.Image, bound: int) -> Image.Image:
    """`image` with its longer side at `display_size(longer side, bound)`, aspect kept."""
    side = max(image.size)
    size = display_size(side, bound)
    if size == side:
        return image
    return image.resize((max(1, round(image.width * size / side)), max(1, round(image.height * size / side))),
                        Image.Resampling.LANCZOS)


def _image_widget(css_class: str) -> widgets.Image:
    """An Image widget shown at its picture's pixel size, shrunk (aspect kept) only where the output is narrower."""
    image = widgets.Image(format="png", layout=widgets.Layout(flex="0 0 auto", max_width="100%", height="auto",
                                                              object_fit="contain", margin="0"))
    image.add_class(css_class)
    return image


def _show(widget: widgets.Image, image: Image.Image) -> None:
    """Put `image` into `widget` and size the widget to the image's pixels."""
    widget.value = _png(image)
    widget.layout.width = f"{image.width}px"


def _wrap(children: Sequence[widgets.Widget], css_class: str) -> widgets.Box:
    """A row that wraps its children onto new lines when the output is too narrow for them side by side."""
    box = widgets.Box(list(children), layout=widgets.Layout(display="flex", flex_flow="row wrap",
                                                            align_items="flex-start", width="100%"))
    box.add_class(css_class)
    return box


def _wrapping() -> widgets.Layout:
    """A slider's or a progress bar's layout: the column's width; on a phone, the track and the readout wrap under the
    label (the height follows: a 30 px track beside the label left ~3 px to each of ten stops). The margin ipywidgets
    gives its other controls, which a SelectionSlider lacks: its handle at the first stop stood past the output."""
    return widgets.Layout(width="auto", height="auto", flex_flow="row wrap", margin="2px")


def _column(children: Sequence[widgets.Widget], min_width: int = 340, max_width: int = 540) -> widgets.VBox:
    """The controls column: as wide as the output allows between `min_width` and `max_width` px, its space to the
    results included (padding: a margin would add to the width, past the edge of a narrow output); on an output
    narrower than `min_width` (a phone), as wide as the output."""
    return widgets.VBox(list(children), layout=widgets.Layout(flex=f"1 1 {min_width}px",
                                                              min_width=f"min({min_width}px, 100%)",
                                                              max_width=f"{max_width}px", padding="0 16px 8px 0"))


def _tile(caption: widgets.HTML, image: widgets.Image) -> widgets.VBox:
    """An image with its caption above it, hidden while the image has no picture; never wider than its row (the
    image shrinks, aspect kept, where the output is narrower than its picture)."""
    tile = widgets.VBox([caption, image], layout=widgets.Layout(flex="0 0 auto", max_width="100%",
                                                                padding="0 12px 8px 0"))

    def follow(_=None) -> None:
        tile.layout.display = "flex" if image.value else "none"

    image.observe(follow, names="value")
    follow()
    return tile


def _styled(control: widgets.Widget, css_class: str) -> widgets.Widget:
    control.add_class(css_class)
    return control


def _message(text: str, error: bool = False) -> str:
    """Status-line HTML: `text` escaped, in red for an error; its line breaks kept, and long words (paths, web
    addresses) broken where the line ends instead of running past the panel's edge. Wrapped lines are spaced as
    text (an inline block with its own line height: the HTML widget's line height is a control's, 28 px)."""
    color = "#c62828" if error else "inherit"
    return (f'<span style="color:{color}; white-space:pre-line; overflow-wrap:anywhere; min-width:0; '
            'display:inline-block; max-width:100%; line-height:1.4">'
            f'{html.escape(text)}</span>')


def _short(name: str, limit: int = 18) -> str:
    return name if len(name) <= limit else name[:limit - 1] + "…"


def _mode_words(mode: str) -> tuple[str, str]:
    """An inversion mode's label (`INVERT_LABELS`) in two parts: its name, "optimise", and what the parenthesis
    after it says, "slow, closest to the photo" ("" where there is none)."""
    name, _, detail = INVERT_LABELS.get(mode, mode).partition(" (")
    return name, detail.removesuffix(")")


def _check_choice(name: str, value: object, allowed: Sequence, note: str = "") -> None:
    """Raise ValueError unless `value` is one of `allowed`, the values its control offers (named in the message, with
    `note` after them), instead of the control's error about its options."""
    if value not in allowed:
        *others, last = [repr(a) for a in allowed]
        listed = f"{', '.join(others)} or {last}" if others else last
        raise ValueError(f"{name} must be {listed}{note}, got {value!r}")


def _check_range(name: str, value: object, low: float, high: float) -> None:
    """Raise ValueError unless `value` is a number from `low` to `high`, the range of its slider (which would clamp
    it silently)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
        raise ValueError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")


# --------------------------------------------------------------------------------------------
# Blend explorer


def layer_chart(weights: Sequence[LayerWeight], low: str = "toon", high: str = "FFHQ", width: int = 360
                ) -> Image.Image:
    """Where each synthesis layer of a blend comes from: one bar per layer, the share of `high` on top
    of the share of `low`, grouped by resolution along the x axis (forward order: const/conv0, conv1,
    toRGB). `synthesis.b4.conv1`, which always stays with the low-res model, is hatched and footnoted."""
    title_font, font = text_font(14), text_font(12)
    resolutions = sorted({w.resolution for w in weights})
    left, right, gap = 8, 8, 5
    slot = (width - left - right - gap * (len(resolutions) - 1)) / len(weights)
    top, bar_h = 42, 80
    bottom = top + bar_h
    height = bottom + 66
    chart = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(chart)
    draw.text((width // 2, 2), "where each layer comes from", fill="black", font=title_font, anchor="ma")
    x = left
    for color, name in ((LOW_COLOR, low), (HIGH_COLOR, high)):
        draw.rectangle([x, 24, x + 11, 35], fill=color)
        draw.text((x + 16, 30), name, fill="black", font=font, anchor="lm")
        x += 16 + draw.textlength(name, font=font) + 18
    x = left
    for res in resolutions:
        group = [w for w in weights if w.resolution == res]
        for layer in group:
            x0, x1 = round(x) + 1, round(x + slot) - 1
            if layer.name == KEPT_LOW:
                chart.paste(_hatched(x1 - x0 + 1, bar_h + 1), (x0, top))
            else:
                split = top + round(layer.weight * bar_h)  # high's share on top, low's below
                if split > top:
                    draw.rectangle([x0, top, x1, split - 1], fill=HIGH_COLOR)
                if split < bottom:
                    draw.rectangle([x0, split, x1, bottom - 1], fill=LOW_COLOR)
            x += slot
        draw.text((x - slot * len(group) / 2, bottom + 4), str(res), fill="black", font=font, anchor="ma")
        x += gap
    notes = ("resolution (px); per block: const/conv0, conv1, toRGB",
             f"hatched: 4 px conv1, always from {low}", "(as in Toonify's original blend_models.py)")
    for i, note in enumerate(notes):
        draw.text((width // 2, bottom + 20 + 15 * i), note, fill="#444444", font=font, anchor="ma")
    return chart


def _hatched(width: int, height: int, spacing: int = 6) -> Image.Image:
    """A white box with a grey outline and grey diagonal hatching."""
    box = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(box)
    for start in range(-width, height, spacing):
        draw.line([0, start + width, width, start], fill="#888888")
    draw.rectangle([0, 0, width - 1, height - 1], outline="#888888")
    return box


def _error_text(exc: BaseException) -> str:
    """An error as a widget's status line says it, in the notebook's words (`notebook.in_these_words`): a fixable one
    (`messages.expected_errors`) by its message alone, others with their type (a bug's `KeyError: 'x'` said nothing
    alone). A `notebook.NotebookStop` is a message too."""
    return in_these_words(str(exc) if isinstance(exc, (*expected_errors(), NotebookStop))
                          else f"{type(exc).__name__}: {exc}")


class BlendExplorer:
    """Sliders over the blend settings; shows base | toon | blend for each seed and the layer weights.

    The ws, the base images and the toon images are computed once per (seeds, truncation); a slider
    move only re-mixes the blended generator's parameters in place and renders it. `cell` bounds the
    side of each face in the grid (an integer multiple of the model's resolution when smaller);
    `names` label the base and toon columns; `sources` name the base and toon models as the user gave them (registry
    name, path), which `save` records in the file (`toonlib info` shows them; default: the checkpoints they were
    loaded from, `Generator.loaded_from`, else `blending.UNSAVED`, as `blend` records a generator made in memory).
    `precision` is the pictures' (`runtime.resolve_precision`): 'auto' renders them in bfloat16 on CPUs that compute
    it in hardware, a slider move ~2x faster there, off by about a level of 255 from float32 on average; 'fp32'
    renders them as `G.synthesis` does. The blend `save` writes is the
    same either way. Attributes: the controls (`swap_res`, `level`, `blend_width`, `seeds`, `truncation`), the outputs
    (`image`, `chart`, `status`) and `widget` (the whole UI). `render()` redraws; `blended` is the current blended
    generator; `swap_resolution_grid()` draws the controls' seeds, level, width and truncation at every swap
    resolution.
    """

    def __init__(self, base: GeneratorLike, toon: GeneratorLike, seeds: Sequence[int] = (0, 1, 2, 3),
                 swap_res: int = 16, level: int = 0, blend_width: float = 0.0, truncation_psi: float = 0.7,
                 cell: int = 192, names: tuple[str, str] = ("FFHQ", "toon"), sources: tuple[str, str] | None = None,
                 precision: str = "auto"):
        check_precision(precision)  # before the models are read (and perhaps downloaded)
        seeds = check_seeds(seeds)
        if len(seeds) > MAX_GRID_SEEDS:  # the box would refuse them, the explorer drawing nothing
            raise ValueError(f"seeds: {len(seeds)} faces, more than the {MAX_GRID_SEEDS} the explorer draws; give "
                             "fewer, such as 0-5")
        check_explorer_settings(swap_res, level, blend_width, truncation_psi, toon=toon)
        blend_width = blend_width or 0.0  # None, as `blend` takes it: the slider's hard switch
        self._set_up = set_up_count()  # the notebook's set-up whose models it has (`_check_set_up`)
        self.base, self.toon = load_generator(base), toon_generator(toon)  # a registry name: its un-blended toon
        self._dtype = resolve_precision(precision, self.base.device)
        # not the column labels: "FFHQ" was recorded as a base file that the re-blend advice then sent users to
        # (thirty-ninth session's audit)
        self.sources = sources or (self.base.loaded_from or UNSAVED, self.toon.loaded_from or UNSAVED)
        self.blender = Blender(low=self.toon, high=self.base)
        self.names = names
        self.cell = display_size(self.base.img_resolution, cell)
        resolutions = self.base.synthesis.block_resolutions
        _check_choice("swap_res", swap_res, resolutions, " (the models' resolutions, px)")
        wide = _wrapping()
        self.swap_res = widgets.SelectionSlider(options=[(f"{r} px", r) for r in resolutions],
                                                value=swap_res, description="swap resolution",
                                                continuous_update=False, style=FULL_LABEL, layout=wide)
        self.level = widgets.ToggleButtons(options=[("conv0", 0), ("conv1", 1)], value=level,
                                           description="swap level", style=FULL_LABEL,
                                           # conv1 said "the swap block's conv0 from the toon model", less than
                                           # it takes (thirty-ninth session's audit): `blend`'s level rule
                                           tooltips=["the whole swap block from the toon model, the blocks above from "
                                                     "FFHQ (a smooth switch is centred on the swap block's conv0)",
                                                     "the whole swap block and the next block's conv0 from the toon "
                                                     "model, the rest from FFHQ (a smooth switch is centred on the "
                                                     "swap block's conv1)"])
        self.blend_width = widgets.FloatSlider(value=blend_width, min=BLEND_WIDTHS[0],
                                               max=max(BLEND_WIDTHS[1], blend_width), step=0.1,
                                               description="smooth width (0: hard switch)",
                                               continuous_update=False, style=FULL_LABEL, layout=wide)
        self.seeds = widgets.Text(value=",".join(str(s) for s in seeds), description="seeds",
                                  continuous_update=False, style=FULL_LABEL, layout=widgets.Layout(width="auto"))
        self.truncation = widgets.FloatSlider(value=truncation_psi, min=0.0, max=1.0, step=0.05,
                                              description="truncation ψ", continuous_update=False,
                                              style=FULL_LABEL, layout=wide)
        for control, css in ((self.swap_res, "swap-res"), (self.level, "level"), (self.blend_width, "blend-width"),
                             (self.seeds, "seeds"), (self.truncation, "truncation")):
            _styled(control, f"toonlib-{css}")
        self._seeds: list[int] | None = None  # the faces drawn: their seeds and truncation
        self._psi: float | None = None
        self.image = _image_widget("toonlib-grid")
        self.chart = _image_widget("toonlib-chart")
        self.status = _styled(widgets.HTML(), "toonlib-status")
        for control in (self.swap_res, self.level, self.blend_width):
            control.observe(lambda _: self._showing_errors(self.render), names="value")
        for control in (self.seeds, self.truncation):
            control.observe(lambda _: self._showing_errors(self._new_latents), names="value")
        controls = _column([self.swap_res, self.level, self.blend_width, self.seeds, self.truncation, self.chart,
                            self.status], min_width=360)
        images = widgets.VBox([self.image], layout=widgets.Layout(flex="0 1 auto", max_width="100%", overflow="auto"))
        self.widget = _wrap([controls, images], "toonlib-explorer")
        self._new_latents()

    def _showing_errors(self, action: Callable[[], None]) -> None:
        """Run a control's `action`, which the kernel's interrupt stops (`notebook.interrupt_requests`: a 1024 px
        grid of 32 seeds drew on through Kernel > Interrupt in JupyterLab, thirty-eighth session's audit); an error it
        raises (memory run out), or the stop, is said in the status line: in a widget's callback it reached the
        kernel's log alone, the controls showing what was never drawn."""
        try:
            with interrupt_requests():
                self._check_set_up()
                action()
        except (KeyboardInterrupt, Exception) as exc:
            text = "Interrupted." if interrupted(exc) else _error_text(exc)
            self.status.value = _message(f"{text}\nThe faces shown are the last ones drawn.", error=True)

    def _check_set_up(self) -> None:
        """`NotebookStop` (`notebook.EXPLORER_SET_UP_AGAIN`) once notebook 02's set-up ran again since the explorer was
        made: its grid and save cells and its sliders went on with the models before, and the saved file's record named
        the base before (fortieth session's audit)."""
        check_same_set_up(self._set_up, again=EXPLORER_SET_UP_AGAIN)

    @torch.no_grad()
    def _new_latents(self) -> None:
        try:
            seeds = parse_seeds(self.seeds.value, max_count=MAX_GRID_SEEDS)  # each face kept three times, as pictures
        except ValueError as exc:
            if self._seeds is None:  # nothing drawn yet
                self.status.value = _message(str(exc), error=True)
            else:  # a truncation moved: the faces stay the shown seeds' at their truncation (it said the error alone)
                self._say_setting()
            return
        z = z_from_seeds(seeds, self.base.z_dim, self.base.device)
        psi = self.truncation.value
        ws = self.base.mapping(z, None, truncation_psi=psi)
        pictures = self._pictures(self.base, ws), self._pictures(self.toon, ws)
        # kept only once drawn: a failure (memory) left new seeds beside old pictures, and every slider move failed
        self._seeds, self._psi, self._ws, (self._base_images, self._toon_images) = seeds, psi, ws, pictures
        self.render()

    def _pictures(self, G, ws: torch.Tensor | None = None) -> list[Image.Image]:
        """The seeds' pictures by `G` (of latents `ws`, by default the explorer's), at the explorer's precision, four
        at a time: a batch of all the seeds took ~0.5 GB a face at 1024 px."""
        ws = self._ws if ws is None else ws
        pictures = []
        with autocast(G.device, self._dtype):
            for part in ws.to(G.device).split(4):
                pictures += to_pil(G.synthesis(part))
        return pictures

    @property
    def blended(self):
        return self.blender.G

    @torch.no_grad()
    def render(self) -> None:
        """Re-blend with the current slider values and redraw the image grid and the layer chart."""
        swap_res, level, width = self.swap_res.value, self.level.value, self.blend_width.value or None
        weights = layer_weights(self.blended, swap_res, level, width)
        blended = self._pictures(self.blender.set(swap_res, level, width))
        rows = [[b, t, m] for b, t, m in zip(self._base_images, self._toon_images, blended)]
        labels = [_short(self.names[0]), _short(self.names[1]), f"blend at {swap_res} px"]
        _show(self.image, labelled_grid(rows, row_labels=[f"seed {s}" for s in self._seeds], col_labels=labels,
                                        cell=self.cell))
        _show(self.chart, layer_chart(weights, low=self.names[1], high=self.names[0]))
        self._say_setting()

    def _say_setting(self) -> None:
        """The status line: the blend in words; seeds the box refuses stay said, with the seeds (and truncation) the
        faces shown have: a slider move put the blend's words in their place."""
        try:
            parse_seeds(self.seeds.value, max_count=MAX_GRID_SEEDS)
        except ValueError as exc:
            shown = ", ".join(map(str, self._seeds))
            psi = f" at truncation ψ {self._psi:.2f}" if self._psi != self.truncation.value else ""
            self.status.value = _message(f"{self.setting}\n{exc}; the faces shown are seeds {shown}{psi}", error=True)
        else:
            self.status.value = _message(self.setting)

    @property
    def setting(self) -> str:
        """The sliders' blend in words: the toon model up to which resolution and level, hard or smooth switch; at a
        setting that takes every layer from the toon model (the top swap resolution, a hard switch), that: "FFHQ above"
        named layers there are none of (forty-second session's audit)."""
        swap_res, level, width = self.swap_res.value, self.level.value, self.blend_width.value or None
        if all(layer.weight == 0.0 for layer in layer_weights(self.base.config, swap_res, level, width)):
            base, toon = self.names
            return (f"{toon} up to {swap_res} px (level {level}), the top resolution: every layer is the {toon} "
                    f"model's, none {base}'s; hard switch")
        return describe_blend(self._record(self.names))

    def _record(self, names: Sequence[str]) -> dict:
        """The sliders' blend as `blending.blend_record`, the models named by `names` (base, toon)."""
        return blend_record(names[1], names[0], self.swap_res.value, self.level.value, self.blend_width.value)

    def swap_resolution_grid(self, cell: int = 128, progress: bool = True) -> Image.Image:
        """`blending.swap_resolution_grid` of the models at the controls' current seeds, level, smooth width and
        truncation (the explorer's swap resolution aside: it draws them all), each face at `cell` px, with a bar of its
        columns (`progress`: 02's grid cell was a minute on a CPU with nothing shown; fortieth session's audit). Raises
        ValueError for seeds the explorer refuses (its status line says so), instead of drawing older ones."""
        self._check_set_up()
        try:
            seeds = parse_seeds(self.seeds.value, max_count=MAX_GRID_SEEDS)
        except ValueError as exc:
            raise ValueError(f"the explorer's seeds: {exc}") from None
        return swap_resolution_grid(self.toon, self.base, seeds, level=self.level.value,
                                    blend_width=self.blend_width.value or None,
                                    truncation_psi=self.truncation.value, cell=cell, progress=progress)

    def save(self, path: str | os.PathLike) -> Path:
        """Save the blend the sliders show now (`save_network`, toonlib's format) and print where and which blend
        it is, and whether it replaced a file (`files.replaced_note`, as `toonlib blend` says it); in Colab the browser
        downloads a copy (`notebook.offer_download`: without Drive the file was on the runtime alone, lost at
        disconnect; fortieth session's audit). Returns the path written. A path that is the toon's or the base's own
        file is refused (ValueError), as `toonlib blend -o` refuses it, naming the notebook's parameter (`_output`)."""
        from .checkpoints import Networks, refuse_to_replace_model, save_network
        self._check_set_up()
        # first: a name too long was Python's raw "[Errno 36] File name too long" from the checks below (forty-fifth
        # session's audit), and 'blends/' is a folder's name
        check_file_target(path)
        # the toon model's file was replaced by the blend without a word (thirty-ninth session's audit)
        refuse_to_replace_model(path, (self.toon.loaded_from, "toon"), (self.base.loaded_from, "base"),
                                 named=_output())
        self.blended.set_origin(blend_record=self._record(self.sources))  # the models as the notebook named them
        replaced = replaced_note(path)  # asked before it is written
        saved = save_network(path, Networks(G_ema=self.blended))
        offer_download(saved, f"{replaced}: {self.setting}")  # in full, as the other notebooks' saves say it
        return saved

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def check_explorer_settings(swap_res: int, level: int = 0, blend_width: float = 0.0, truncation_psi: float = 0.7,
                            toon: object = None, seeds: str | None = None) -> None:
    """ValueError for a setting `BlendExplorer` would refuse, said before any model is read (notebook 02's set-up
    cell: it was said once both models had downloaded): `level` and `truncation_psi` outside their controls' ranges,
    a `blend_width` no blend takes (`blending.check_blend_width`; None: a hard switch, as 0), a `swap_res` that is no
    resolution, or above a registry toon model's (`toon`, its name), and the notebook's `seeds` text where it is no
    seed list or holds more than the explorer draws (`MAX_GRID_SEEDS`)."""
    if seeds is not None:
        parse_seeds(seeds, max_count=MAX_GRID_SEEDS, parameter="seeds")
    if getattr(toon, "img_resolution", None) is None:  # a name: the explorer checks against the models' once read
        check_setting(swap_res)
        check_swap_res(swap_res, toon)
    _check_choice("level", level, (0, 1), " (0: the swap block's conv0, 1: its conv1)")
    check_blend_width(blend_width)  # any the command line takes (the slider widens to it)
    _check_range("truncation_psi", truncation_psi, 0, 1)


def blend_explorer(base: GeneratorLike, toon: GeneratorLike, seeds: Sequence[int] = (0, 1, 2, 3),
                   **kwargs) -> BlendExplorer:
    """An interactive blend explorer (see `BlendExplorer`); display it as the last line of a cell."""
    check_set_up(base=base, toon=toon)
    return BlendExplorer(base, toon, seeds=seeds, **kwargs)


# --------------------------------------------------------------------------------------------
# Projection frames


class FrameScrubber:
    """A slider over saved frames (`ProjectionResult.frames`: target | projection every `steps_between` steps,
    and at the last step `last_step` when given), each shown with a caption saying which step it is."""

    def __init__(self, frames: Sequence, steps_between: int = 1, last_step: int | None = None, bound: int = 256):
        if not frames:
            raise ValueError("no frames to show: project with save_every=k to keep frames")
        self.frames, self.steps_between, self.last_step, self.bound = frames, steps_between, last_step, bound
        self.slider = _styled(widgets.IntSlider(value=len(frames), min=1, max=len(frames),  # 1-based, as the caption
                                                description="frame", style=FULL_LABEL, layout=_wrapping()),
                              "toonlib-frame")
        self.slider.layout.max_width = "540px"  # as wide as the frames at most; on a phone its track wraps
        self.caption = _styled(widgets.HTML(), "toonlib-caption")
        self.image = _image_widget("toonlib-frame-image")
        self.slider.observe(lambda _: self.render(), names="value")
        self.widget = widgets.VBox([self.slider, self.caption, self.image])
        self.render()

    def step(self, index: int) -> int:
        """The projection step frame `index` shows."""
        if self.last_step is not None and index == len(self.frames) - 1:
            return self.last_step
        return index * self.steps_between

    def render(self) -> None:
        index = self.slider.value - 1
        frame = Image.fromarray(self.frames[index])
        _show(self.image, _scaled(frame, self.bound * max(1, frame.width // frame.height)))
        self.caption.value = _message(f"frame {index + 1} of {len(self.frames)}: step {self.step(index)}; "
                                      "left the target, right the projection")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


# --------------------------------------------------------------------------------------------
# Photo panels: upload, parameters, Run, progress, results


def uploaded_files(value) -> dict[str, bytes]:
    """A FileUpload's `value` as {file name: content}, from ipywidgets 8 (a tuple of dicts with 'name'
    and a memoryview 'content') or ipywidgets 7 (a dict: name -> {'metadata', 'content'})."""
    if isinstance(value, dict):
        return {name: bytes(item["content"]) for name, item in value.items()}
    return {item["name"]: bytes(item["content"]) for item in value}


class _PhotoPanel:
    """The common part of the photo panels: an upload button (outside Colab, whose notebooks use its
    upload dialog), a steps slider, the inversion mode, a Run button, a progress bar and a status line.

    `modes` are the inversion modes offered, by name in a menu (short enough for a phone's width) with what the
    chosen one does in a line under it; the steps slider is enabled for the modes in `OPTIMIZING_MODES`.
    Subclasses add their controls (`_extra_controls`), their results (`results`, `_clear_results`) and `_run`.

    A panel made before a notebook's set-up cell ran again refuses to run and save (`notebook.check_same_set_up`): it
    has the models of the set-up before. A new panel displayed (`_start`: the photo cell run again) stops the Run of
    the panel before, which no status line shows any more (thirty-ninth session's audit: it kept the CPU and the
    kernel's subshell, the new panel's Run waiting behind it, and the first Kernel > Interrupt stopped it).
    """

    css_class = "toonlib-panel"
    #: The panel whose Run is going, with that Run's `notebook.StopRequests`; None while none is.
    _running: tuple[_PhotoPanel, StopRequests] | None = None

    def __init__(self, steps: int, modes: Sequence[str], mode: str, folder: str | os.PathLike):
        check_count("steps", steps)
        self._set_up = set_up_count()  # the set-up cell's run whose models this panel has
        self._replaced = False  # its Run stopped by a new panel's
        self.result = None  # the last run's result (the subclass's kind), None before one and after a new photo
        self.folder = Path(folder)
        self.photo: str | os.PathLike | None = None
        self._photo_refused = False  # the photo's Run failed on the photo itself (no face found): Run again will too
        self.upload = None
        if not in_colab():
            self.upload = _styled(widgets.FileUpload(accept=UPLOAD_ACCEPT, multiple=False, description="photo"),
                                  "toonlib-upload")
            self.upload.observe(self._on_upload, names="value")
        wide = _wrapping()
        self.steps = _styled(widgets.IntSlider(value=steps, min=1, max=max(1000, steps), description="projection steps",
                                               continuous_update=False, style=FULL_LABEL, layout=wide),
                             "toonlib-steps")
        self.inversion = _styled(widgets.Dropdown(options=[(_mode_words(m)[0], m) for m in modes], value=mode,
                                                  description="inversion", style=FULL_LABEL,
                                                  layout=widgets.Layout(width="auto")), "toonlib-inversion")
        self.inversion_detail = _styled(widgets.HTML(), "toonlib-inversion-detail")
        self.inversion.observe(lambda _: self._mode_changed(), names="value")
        self.run_button = _styled(widgets.Button(description="Run", button_style="primary", icon="play",
                                                 disabled=True, tooltip="invert the photo with these settings"),
                                  "toonlib-run")
        self.run_button.on_click(lambda _: self._showing_errors(self.run))
        self.progress = _styled(widgets.IntProgress(value=0, min=0, max=steps, description="progress",
                                                    style=FULL_LABEL, layout=wide), "toonlib-progress")
        self.status = _styled(widgets.HTML(_message(self._waiting_message())), "toonlib-status")
        self.photo_image = _image_widget("toonlib-photo")
        self.photo_caption = widgets.HTML(_message("your photo"))
        upload = [self.upload] if self.upload is not None else []
        self.controls = _column(upload + self._extra_controls() + [self.inversion, self.inversion_detail, self.steps,
                                                                     self.run_button, self.progress, self.status])
        self.widget = _wrap([self.controls, self.results()], self.css_class)
        self._mode_changed()

    def _waiting_message(self) -> str:
        if self.upload is None:
            return "No photo yet: run the photo cell again to upload one."
        return "Upload a photo (or set photo_path in the parameters cell), then press Run."

    def _another_photo_message(self, photo: str | os.PathLike | None) -> str:
        """What to do after a photo that cannot be used: choose another, where this front end offers it (a photo
        given by photo_path comes back when the photo cell runs again: that parameter is what to change)."""
        upload = ("Upload another photo (the photo button above), then press Run" if self.upload is not None
                  else "Run the photo cell again to upload another photo")
        if isinstance(photo, UploadedFile) or photo is None:
            return upload + "."
        if self.upload is not None:
            return f"{upload}, or set photo_path in the parameters cell to another photo and run the cells again."
        return ("Set photo_path in the parameters cell to another photo (or leave it empty to upload one) and run "
                "the cells again.")

    def _no_result_message(self, what: str) -> str:
        """What `save` says before the first result: how to get one here (Colab has no upload button); with a photo
        loaded that Run can take (not pressed yet, or interrupted, or failed on other than the photo), to press Run: it
        said to upload one (forty-fourth session's audit)."""
        if self.photo is not None and not self._photo_refused:
            return (f"No {what} yet for {_photo_name(self.photo)}: press Run in the panel above and let it finish, "
                    "then run this cell again.")
        if self.upload is None:
            return f"No {what} yet: run the photo cell above again to upload a photo, then run this cell again."
        return f"No {what} yet: upload a photo in the panel above and press Run, then run this cell again."

    def _mode_changed(self) -> None:
        """Say what the chosen mode does (hidden where its label says no more than its name); enable the steps
        slider for the modes that optimise."""
        detail = _mode_words(self.inversion.value)[1]
        self.inversion_detail.value = _message(detail)
        self.inversion_detail.layout.display = None if detail else "none"
        self.steps.disabled = self.inversion.value not in OPTIMIZING_MODES

    def _extra_controls(self) -> list[widgets.Widget]:
        return []

    def results(self) -> widgets.Widget:
        raise NotImplementedError

    def _clear_results(self) -> None:
        """Forget and hide the results of the photo before."""
        raise NotImplementedError

    def set_photo(self, photo: str | os.PathLike) -> None:
        """Use `photo` (a path, or an `UploadedFile`) from now on and show it (upright, EXIF applied); the results of
        the photo before are cleared. Raises `ImageReadError` if unreadable, leaving no photo (Run disabled)."""
        self.photo, self.run_button.disabled, self.photo_image.value = None, True, b""
        self._photo_refused = False
        self.progress.value = 0  # the last run's full bar stood beside a photo not run (forty-first session's audit)
        self._clear_results()
        image = read_image(photo)
        self.photo = photo
        _show(self.photo_image, _scaled(image, 256))
        self.run_button.disabled = False
        self.status.value = _message(f"{_photo_name(photo)}: {image.width} x {image.height} px. Press Run.")

    def _on_upload(self, change: dict) -> None:
        files = uploaded_files(change["new"])
        if not files:
            return
        name, data = next(iter(files.items()))
        [upload] = save_uploads({name: data}, self.folder)
        self._showing_errors(lambda: self.set_photo(upload), upload)

    def run(self) -> None:
        """Run on the current photo with the panel's settings (errors are raised)."""
        check_same_set_up(self._set_up)
        if self.photo is None:
            raise ValueError(self._waiting_message())
        steps = self.steps.value if self.inversion.value in OPTIMIZING_MODES else None
        self.progress.max, self.progress.value = steps or 1, 0
        self.run_button.disabled, self._replaced = True, False
        try:
            with interrupt_requests() as requests:
                _PhotoPanel._running = (self, requests)
                try:
                    self._run(self.photo, steps, self._report)
                finally:
                    if _PhotoPanel._running is not None and _PhotoPanel._running[0] is self:
                        _PhotoPanel._running = None
        finally:
            self.run_button.disabled = False
        self.progress.value = self.progress.max

    def _stop_the_run_before(self) -> None:
        """Stop the Run of another panel that is going (in the kernel's subshell, while the photo cell makes this
        one), saying why in its status line."""
        running = _PhotoPanel._running
        if running is None or running[0] is self:
            return
        panel, requests = running
        panel._replaced = True
        if not requests.stop():  # it ended meanwhile (or runs in the main thread, which this cell could not run beside)
            panel._replaced = False

    def _report(self, step: int, distance: float, _w=None) -> None:
        """Show a step's progress."""
        self.progress.value = step + 1
        self.status.value = _message(f"step {step + 1} of {self.progress.max}: distance {distance:.4f}")

    def _showing_errors(self, action: Callable[[], None], photo: str | os.PathLike | None = None,
                        shown: Callable[[], str] | None = None) -> None:
        """Call `action` on `photo` (default: the current photo); an exception it raises is shown in the status line
        instead (a widget callback's would only reach the log, the photo cell's would be a traceback through the
        panel's code), and so is a stop with the kernel's interrupt. A fixable error (`messages.expected_errors`)
        shows as its message alone, an uploaded photo named as the user chose it (not its saved copy); a photo that
        cannot be used is followed by how to choose another. `shown()`: what the results shown are then, where not
        the run before's."""
        photo = photo or self.photo
        try:
            action()
        except (KeyboardInterrupt, Exception) as exc:
            # the results of a run before stay shown (and saved by the save cell): said, not passed for this one's
            before = (f" {shown()}" if shown is not None else " The results shown are from the run before."
                      if self.result is not None else "")
            if interrupted(exc):
                again = " Press Run to start again." if self.photo is not None else ""
                if self._replaced:  # stopped by a new panel
                    again = " A new panel was made (the photo cell ran again): use that one."
                self.status.value = _message(f"Interrupted.{again}{before}", error=True)
                return
            text = _error_text(exc)
            if isinstance(photo, UploadedFile):
                text = text.replace(os.fspath(photo), photo.name)
            if isinstance(exc, (ImageReadError, NoFaceError)):  # a sentence of its own ("...~100 px wide Upload")
                self._photo_refused = True
                text = text.rstrip(".") + ".\n" + self._another_photo_message(photo)
            self.status.value = _message(text + (f"\n{before.strip()}" if before else ""), error=True)

    def _run(self, photo, steps: int | None, report: Callable) -> None:
        raise NotImplementedError

    def _start(self, photo: str | os.PathLike | None) -> None:
        """Stop the Run of the panel before, display this one, then run it at once when a photo is given (progress
        shows while it runs)."""
        from IPython.display import display

        self._stop_the_run_before()
        display(self.widget)
        if photo:
            def start() -> None:
                self.set_photo(photo)
                self.run()

            self._showing_errors(start, photo)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _photo_name(photo: str | os.PathLike) -> str:
    """A panel's photo as its messages name it: an upload by the name its user chose, a path by its file's name."""
    return photo.name if isinstance(photo, UploadedFile) else Path(photo).name


def _path_option() -> str:
    """What a panel's `save` says to choose again when it refuses its path: the notebook's parameter for it where its
    set-up cell named one (`brief_errors({"path": "output"})`: "choose another path" named an argument 03's and 04's
    users never wrote; forty-first session's audit), else the argument, for Python's callers."""
    parameter = notebook_parameter("path")
    return "path" if parameter is None else f"{parameter} (in the parameters cell)"


def _output() -> str:
    """How a `save` that refuses its path as a model's file names it (`checkpoints.refuse_to_replace_model`'s `named`):
    by the notebook's parameter where its set-up cell named one, "output = toon.safetensors is the toon model's file"
    (02's said "the path", an argument its users never wrote; forty-second session's audit), else "the path"."""
    parameter = notebook_parameter("path")
    return "the path" if parameter is None else f"{parameter} ="


def _video_fps(frames: int, seconds: float = 2.0, most: int = 30) -> int:
    """The frame rate at which `frames` frames play for `seconds` or more (a 3-frame video at 30 fps was over in
    0.1 s, its player reading 0:00 / 0:00), up to `most` frames a second."""
    return max(1, min(most, int(frames / seconds)))


def _preparing_projection() -> str:
    """The status line while a projection is prepared, before its first step: LPIPS built (its 553 MB of VGG16 weights
    downloaded the first time, `losses.build_lpips`), the generator's kernels transformed."""
    from .losses import lpips_needs_weights

    return ("preparing the projection (LPIPS: its VGG16 weights, 553 MB, are downloaded the first time)..."
            if lpips_needs_weights() else "preparing the projection...")


def _done(mode: str, losses) -> str:
    """The status line after a run: the mode (as the menu names it: "optimise", not the id "optimize"), and the steps
    and final distance when it projected."""
    if len(losses) == 0:
        return f"done: {INVERT_LABELS.get(mode, mode)}"
    return f"done: {counted(len(losses), 'step')} ({_mode_words(mode)[0]}), distance {float(losses[-1]):.4f}"


#: What a panel does to the largest face of a group photo (`_other_faces`): the verb's past, and what else does each.
_LARGEST_FACE = {"toonify": ("toonified", "; `toonlib toonify --all-faces` toonifies each"),
                 "project": ("projected", "")}


def _other_faces(result, photo: str | os.PathLike, verb: str = "toonify") -> str:
    """What the done line says of a group photo's other faces, in the panel's words ("" for a photo of one face):
    `result` (a pipeline's result, an `align.AlignedFace`) says how many were found. The panel toonifies (or, `verb`
    'project', projects) the largest, and a photo of two showed one toon beside an untouched face, unsaid (forty-first
    session's audit; 03's the same, forty-second session's; the pipeline's warning, which names --all-faces, is for
    its callers that ask for no face)."""
    if result.faces_in_photo < 2:
        return ""
    done, each = _LARGEST_FACE[verb]
    return (f"{result.faces_in_photo} faces were found in {_photo_name(photo)}: the largest was {done} (to {verb} "
            f"another, crop the photo around it{each}). ")


class ToonifyPanel(_PhotoPanel):
    """Photo -> toon with `toonlib.pipeline.Toonifier`s: choose the inversion mode, the steps and the blend, press
    Run; moving the swap-resolution slider afterwards re-renders the same latent (no new inversion).

    `toonifier` is used for its own mode (`invert`); `models`, the `Toonifier` arguments (base, toon,
    toon_network, detector, ...), make the toonifier of any other mode the first time it runs (without them
    only `toonifier`'s mode is offered). `swap_res` is the blend the slider starts at: None, the published blend,
    or a swap resolution of the models; by default the toonifier's. Each run and slider move sets the slider's blend
    on the toonifier, with the level and blend_width the toonifier had when the panel was made (the caption says
    them), so a notebook cell that makes its panel again passes its `swap_res` parameter (it started where the last
    panel's slider left the toonifier). `steps`: where the steps slider starts, in every mode that optimises; None
    (the default), each mode's own, as the API runs it (`pipeline.start_steps`: 500 for optimise, 100 for e4e then
    optimise), the slider following a change of mode unless it was moved. `result` is the last `ToonifyResult` (its
    `toon` and `pasted` follow the slider), None before the first run.
    """

    css_class = "toonlib-toonify"

    def __init__(self, toonifier, steps: int | None = None, paste_back: bool = True, models: dict | None = None,
                 folder: str | os.PathLike = "uploads", swap_res: int | None | EllipsisType = ...):
        from .pipeline import INVERT_MODES, start_steps

        resolutions = toonifier.published_blend.synthesis.block_resolutions
        if swap_res is ...:
            swap_res = toonifier.blend_setting[0]  # one of the resolutions: the Toonifier refuses others
        _check_choice("swap_res", swap_res, (None, *resolutions),
                      " (None: the published blend; a resolution of the models, px)")
        try:  # when the panel is made, one line in the photo cell: 04's paste_back = 'no' was refused at Run, after the
            check_flag("paste_back", paste_back)  # photo was read, as a TypeError (forty-first session's audit)
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        self.toonifiers = {toonifier.invert: toonifier}
        # each toonifier's blend shape (level, blend_width), kept at every swap resolution the slider sets
        # (`Toonifier.set_swap_res`): they were dropped, unsaid (forty-second session's audit)
        self._shapes = {toonifier.invert: toonifier.blend_setting[1:]}
        self.models, self.paste_back = models, paste_back
        self.swap_res = _styled(widgets.SelectionSlider(
            options=[("published", "published")] + [(f"{r} px", r) for r in resolutions],
            value="published" if swap_res is None else swap_res,
            description="swap resolution", continuous_update=False, style=FULL_LABEL,
            layout=_wrapping()), "toonlib-swap-res")
        self._restoring: int | str | None = None  # the value the slider is put back to after a failed move
        self.swap_res.observe(self._on_swap_res, names="value")
        self.tiles = {key: (widgets.HTML(_message(caption)), _image_widget(f"toonlib-{key}"))
                      for key, caption in (("toon", "toon"), ("pasted", "pasted back"), ("aligned", "aligned"),
                                           ("reconstruction", "FFHQ reconstruction"))}
        modes = INVERT_MODES if models is not None else (toonifier.invert,)
        if steps is not None:
            check_count("steps", steps)
        self._starts = start_steps(steps)  # each mode's start: the steps given, or each mode's own (None)
        # whether the user moved the steps slider: until then a change of mode moves it to the new mode's start. Its
        # value alone (at the start of the mode before?) took the user's 100 in optimise, kept through e4e+optimize
        # whose start it is, for unmoved, and put back 500 (forty-fourth session's audit)
        self._steps_moved, self._following_mode = False, False  # the latter: while `_mode_changed` moves it
        start = self._starts[toonifier.invert if toonifier.invert in self._starts else "optimize"]
        super().__init__(start, modes, toonifier.invert, folder)
        self.steps.observe(self._on_steps, names="value")

    def _on_steps(self, _change: dict) -> None:
        """A move of the steps slider not the panel's own (`_mode_changed`'s): the user's, kept from now on."""
        if not self._following_mode:
            self._steps_moved = True

    def _mode_changed(self) -> None:
        """As a photo panel does; and the steps slider goes to the new mode's start (`pipeline.start_steps`) unless the
        user moved it: e4e+optimize ran optimise's 500 steps, where the API runs 100."""
        super()._mode_changed()
        mode = self.inversion.value
        if mode in self._starts and not self._steps_moved:
            self._following_mode = True
            try:
                self.steps.value = self._starts[mode]
            finally:
                self._following_mode = False

    @property
    def toonifier(self):
        """The toonifier of the selected inversion mode (loaded from `models` on first use)."""
        mode = self.inversion.value
        if mode not in self.toonifiers:
            from .pipeline import Toonifier

            self.status.value = _message(f"loading the models of {INVERT_LABELS.get(mode, mode)}...")
            arguments = {**self.models, "invert": mode}
            if mode == "optimize":  # `models`' encoder is the encoder modes' (Toonifier refuses one here)
                arguments.pop("encoder", None)
            self.toonifiers[mode] = Toonifier(**arguments)
            self._shapes[mode] = self.toonifiers[mode].blend_setting[1:]
        return self.toonifiers[mode]

    def _extra_controls(self) -> list[widgets.Widget]:
        return [self.swap_res]

    def results(self) -> widgets.Widget:
        """The toon first, beside the controls (below them on a narrow output) where the slider's changes show without
        scrolling, then the photo in the toon, the photo, its aligned face and its reconstruction."""
        tiles = [_tile(*self.tiles["toon"]), _tile(*self.tiles["pasted"]), _tile(self.photo_caption, self.photo_image),
                 _tile(*self.tiles["aligned"]), _tile(*self.tiles["reconstruction"])]
        return widgets.Box(tiles, layout=widgets.Layout(display="flex", flex_flow="row wrap", flex="1 1 400px",
                                                        min_width="0"))

    def _clear_results(self) -> None:
        self.result = None
        for _, image in self.tiles.values():
            image.value = b""

    def _blend(self) -> int | None:
        """The slider's swap resolution; None for the published blend."""
        return None if self.swap_res.value == "published" else self.swap_res.value

    def _run(self, photo, steps: int | None, report: Callable) -> None:
        from .losses import lpips_needs_weights
        from .notebook import prepare_lpips

        toonifier = self.toonifier
        if toonifier.invert in OPTIMIZING_MODES and lpips_needs_weights():  # a mode the set-up cell did not prepare:
            self.status.value = _message(_preparing_projection())  # said, not "finding the face..." (fortieth audit)
            prepare_lpips(toonifier.device, toonifier.invert)
        self.status.value = _message("finding the face...")
        toonifier.set_swap_res(self._blend(), self._shapes[toonifier.invert])
        reporting = {"callback": report} if toonifier.invert in OPTIMIZING_MODES else {}  # the encoders: no steps
        # the largest face (face_index 0): the panel offers no other, and the others' warning named --all-faces, which
        # it has not (review of the thirty-third session); the done line says the others (`_other_faces`)
        result = toonifier(photo, face_index=0, steps=steps, paste_back=self.paste_back, progress=False, **reporting)
        side = display_size(result.aligned.width, 192)
        _show(self.tiles["aligned"][1], result.aligned.resize((side, side), Image.Resampling.LANCZOS))
        if result.reconstruction is not None:
            _show(self.tiles["reconstruction"][1], result.reconstruction.resize((side, side), Image.Resampling.LANCZOS))
        else:  # the last run's stayed under this run's caption
            self.tiles["reconstruction"][1].value = b""
        self.tiles["reconstruction"][0].value = _message("FFHQ reconstruction" if result.reconstruction is not None
                                                         else f"no reconstruction ({result.invert})")
        self.result = result
        self._show_toon()
        self.status.value = _message(f"{_done(result.invert, result.losses)}. {_other_faces(result, photo)}Move the "
                                     "swap resolution to re-render the same face.")

    def _on_swap_res(self, change: dict) -> None:
        """Re-render at the slider's new blend; where that fails (a toon file that is a blend already, which no
        re-blend takes), say why in the status line and put the slider back: the error only reached the kernel's
        log, the slider showing a blend the toon was not drawn with, which the save cell then saved as the old one."""
        if change["new"] == self._restoring:
            return

        def reblend() -> None:
            try:
                self._reblend()
            except BaseException:
                self._restoring = change["old"]
                try:
                    self.swap_res.value = change["old"]
                finally:
                    self._restoring = None
                raise
        self._showing_errors(reblend, shown=lambda: f"The toon shown is still the {self._blend_text()}.")

    def _reblend(self) -> None:
        """Draw the last toon at the slider's blend; failing, the toonifier keeps the blend it had, and the result its
        pictures (the save cell saved a toon of one blend under another)."""
        check_same_set_up(self._set_up)
        if self.result is None:
            return
        from .pipeline import paste

        toonifier = self.toonifiers[self.result.invert]
        before = toonifier.blend_setting
        try:
            toonifier.set_swap_res(self._blend(), self._shapes[self.result.invert])
            toon = toonifier.render(self.result.w)
            pasted = paste(self.result.photo, toon, self.result.quad) if self.paste_back else self.result.pasted
        except BaseException:
            toonifier.set_blend(*before)
            raise
        self.result.toon, self.result.pasted = toon, pasted
        self._show_toon()
        mode = _mode_words(self.result.invert)[0]  # "optimise"
        self.status.value = _message(f"Re-rendered the last toon ({mode}) with the {self._blend_text()}.")  # not an
        # error of a run since (a download that failed) over a toon that is drawn

    def _blend_text(self) -> str:
        """The slider's blend in words, with the shape of the toonifier that drew the toon (`pipeline.blend_words`)."""
        from .pipeline import blend_words

        mode = self.result.invert if self.result is not None else self.inversion.value
        return blend_words(self._blend(), *self._shapes.get(mode, (0, None)))

    def _show_toon(self) -> None:
        result = self.result
        self.tiles["toon"][0].value = _message(f"toon, {self._blend_text()}")
        _show(self.tiles["toon"][1], _scaled(result.toon, 384))
        if result.pasted is not None:
            _show(self.tiles["pasted"][1], _scaled(result.pasted, 384))

    def save(self, path: str | os.PathLike) -> None:
        """Save the toon shown (at the current swap resolution) at `path`, and beside it, as `toonlib toonify` names
        them, the toon pasted into the photo (`<name>-pasted.png`, when there is one) and the face's latent
        (`<name>-latent.npz`: `toonlib toonify` of it re-blends the face in seconds, where the inversion took
        minutes), all or none (`files.StagedFiles`, each checked first); or say what to do when there is no toon yet,
        and whether each replaced a file (`files.replacing_note`).
        Refused: a path whose files would be written over the photo (ValueError; a photo named `me.png` was replaced
        by its toon, or by `me-pasted.png` of output `me`), and (`NotebookStop`) a panel made before the set-up cell
        ran again: its toon is of the models before."""
        check_same_set_up(self._set_up)
        if self.result is None:
            print(self._no_result_message("toon"))
            return
        from .images import save_image
        from .projection import check_latent_path, save_latent

        check_file_target(path)  # '.', a folder, 'toon.png/': said, not a failure to name the files beside it
        path = user_path(path)  # '~/toon.png' in the home folder, where offer_download looks for it too
        pasted, latent = (path.with_name(f"{path.stem}-{kind}") for kind in (f"pasted{path.suffix}", "latent.npz"))
        images = [(self.result.toon, path)] + ([(self.result.pasted, pasted)] if self.result.pasted is not None else [])
        if self.photo is not None:
            refuse_to_overwrite_input(self.photo, [path, pasted, latent], _path_option())
        # each, before any is written: a folder at `-latent.npz`, or a `-pasted.png` name too long, was said after the
        # toon and the pasted photo were written (forty-fifth session's audit)
        for target in [target for _, target in images[1:]] + [latent]:  # the toon's: above
            check_file_target(target)
        check_latent_path(latent, "save_latent")  # save_latent's own sees the temporary file
        # all or none, as `toonlib toonify` writes them (`files.StagedFiles`): a stop while the large pasted photo was
        # encoded left the new face's toon beside the last face's latent (forty-fifth session's audit)
        with StagedFiles() as staged:
            for image, target in images:
                save_image(image, staged.stage(target))
            save_latent(self.result.w, staged.stage(latent))
        for _, target in images:
            offer_download(target, replacing_note(int(target in staged.replaced)))
        command = self._redraw_command(latent, path)
        print(f"saved {latent.resolve()}{replacing_note(int(latent in staged.replaced))}: the face's latent"
              + (f" (`{command}` draws it at another blend in seconds)" if command else ""))

    def _redraw_command(self, latent: Path, path: Path) -> str | None:
        """The `toonlib toonify` command that draws the saved `latent` at another blend, from any folder: whole paths,
        and the models of the toonifier that made it where the command's defaults are others (None where a model was
        given as an object, which no command can name). It named the latent's file alone (with Drive mounted, 04 saves
        it there, and the shell's folder is another) and the registry's models, where 04 may have the user's own."""
        from .pipeline import DEFAULT_BASE, DEFAULT_TOON

        # the toonifier that made it, which ran: `self.toonifier` is the menu's mode, whose models it loaded (and
        # downloaded) into a save cell that then failed half done (forty-first session's audit)
        models = self.toonifiers[self.result.invert].sources
        if not all(isinstance(models[name], (str, os.PathLike)) for name in ("base", "toon")):
            return None
        toon, base, network = (resolved_source(models["toon"]), resolved_source(models["base"]),
                               models["toon_network"])
        options = [("-o", path.resolve().with_name(f"{path.stem}-16.png")), ("--swap-res", 16)]
        options += [("--toon", toon)] if toon != DEFAULT_TOON else []
        options += [("--base", base)] if toon != DEFAULT_TOON or base != DEFAULT_BASE else []
        options += [("--toon-network", network)] if network is not None else []
        return " ".join(["toonlib toonify", shlex.quote(str(latent.resolve()))]
                        + [f"{option} {shlex.quote(str(value))}" for option, value in options])


def toonify_panel(toonifier, photo: str | os.PathLike | None = None, **kwargs) -> ToonifyPanel:
    """Display a `ToonifyPanel` (keyword arguments: its settings, `swap_res` where its slider starts); with `photo`,
    toonify it at once."""
    check_set_up(toonifier=toonifier)
    panel = ToonifyPanel(toonifier, **kwargs)
    panel._start(photo)
    return panel


class ProjectionPanel(_PhotoPanel):
    """Photo -> latent in `G` (FFHQ): choose the steps and the space, press Run; shows the aligned photo, the
    projection, the loss curve, a video and a frame scrubber. `result` is the last `ProjectionResult`. The video is
    embedded in the output; `video`, a path, keeps a copy there too."""

    css_class = "toonlib-projection"

    def __init__(self, G: GeneratorLike, steps: int = 500, space: str = "w+", frame_every: int = 10,
                 detector: str = "auto", video: str | os.PathLike | None = None,
                 folder: str | os.PathLike = "uploads"):
        _check_choice("space", space, ("w+", "w"), " (W+: one w per layer, as Toonify; W: one w for all layers)")
        check_count("frame_every", frame_every)
        check_detector(detector)  # when the panel is made: it was said only when Run was pressed
        # the video of every Run: without imageio-ffmpeg a Run projected to its end, then showed a traceback, no
        # scrubber, its status line "done" (forty-second session's audit)
        require_video_writer()
        if video is not None:  # 'x.gif' was refused by `save_video` only after the first Run's projection
            check_video_path(video, "ProjectionPanel(video=)")
        self.G, self.frame_every, self.detector = load_generator(G), frame_every, detector
        self.video = None if video is None else Path(video)
        self.space = _styled(widgets.ToggleButtons(options=[("W+ (Toonify)", "w+"), ("W", "w")], value=space,
                                                   description="latent space", style=FULL_LABEL), "toonlib-space")
        self.output = widgets.Output(layout=widgets.Layout(flex="1 1 400px", min_width="0"))
        self._faces_in_photo = 1  # of the photo of `result`: what `save` says it saved
        self._unfinished = False  # a Run since `result`'s stopped before its own (interrupted, failed)
        super().__init__(steps, PROJECTION_MODES, PROJECTION_MODES[0], folder)

    def _extra_controls(self) -> list[widgets.Widget]:
        return [self.space]

    def results(self) -> widgets.Widget:
        return widgets.Box([_tile(self.photo_caption, self.photo_image), self.output],
                           layout=widgets.Layout(display="flex", flex_flow="row wrap", flex="1 1 400px",
                                                 min_width="0"))

    def _clear_results(self) -> None:
        self.result, self._faces_in_photo, self._unfinished = None, 1, False
        self.output.clear_output()

    def _run(self, photo, steps: int, report: Callable) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import Video, clear_output, display

        from .align import align_face
        from .notebook import plot_losses, show
        from .projection import project, save_video

        # the settings read now, which the done line says: the space toggle moved during a Run changed its words, not
        # the space it ran in (forty-second session's audit)
        mode, space = self.inversion.value, self.space.value
        self._unfinished = self.result is not None  # until this Run's result replaces the one before
        self.status.value = _message("finding the face...")
        face = align_face(photo, output_size=self.G.img_resolution, detector=self.detector,
                          device=str(next(self.G.parameters()).device))
        self.status.value = _message(_preparing_projection())  # it said "finding the face..." through LPIPS' download
        result = project(self.G, face.image, space=space, steps=steps, save_every=self.frame_every,
                         callback=report, progress=False)
        self.result, self._faces_in_photo, self._unfinished = result, face.faces_in_photo, False
        with self.output:
            clear_output(wait=True)
            show([face.image, to_pil(result.images[0])], ["aligned", f"projection, {counted(result.steps, 'step')}"])
            figure = plot_losses(result.losses)
            display(figure)
            plt.close(figure)
            if result.frames:
                # target | projection, side by side: shown as wide as the scrubber, narrower in a narrow output;
                # embedded, so kept nowhere unasked (a fixed projection.mp4 replaced the user's own file of that name)
                with tempfile.TemporaryDirectory() as scratch:
                    video = self.video or Path(scratch) / "projection.mp4"
                    save_video(result, video, fps=_video_fps(len(result.frames)))
                    display(Video(str(video), embed=True, width=display_size(result.frames[0].shape[1], 512),
                                  html_attributes='controls style="max-width: 100%; height: auto"'))
                display(FrameScrubber(result.frames, self.frame_every, last_step=result.steps - 1))
        # a group photo's other faces, said as 04's panel says them (forty-second session's audit)
        others = _other_faces(face, photo, "project")
        self.status.value = _message(f"{_done(mode, result.losses[:, 0])} in {result.space.upper()}"
                                     + (f". {others.rstrip()}" if others else ""))

    def save(self, path: str | os.PathLike) -> None:
        """Save the latent (`ProjectionResult.save`) and say where, which (`_saved_words`), and whether it replaced a
        file (`files.replaced_note`, as `toonlib project` says it: an hour's latent was replaced without a word), or say
        what to do when there is none yet. Refused: a path that is the model's file or the photo's (they were replaced
        by the latent; fortieth session's audit), and (`NotebookStop`) a panel made before the set-up cell ran again,
        unless that loaded the panel's model again (`notebook.check_same_set_up(model=)`: the latent is of the same
        model)."""
        from .checkpoints import refuse_to_replace_model

        check_same_set_up(self._set_up, model=self.G.loaded_from)
        if self.result is None:
            print(self._no_result_message("projection"))
            return
        path = user_path(path)
        refuse_to_replace_model(path, (self.G.loaded_from, "base"), named=_output())
        if self.photo is not None:
            refuse_to_overwrite_input(self.photo, [path], _path_option())
        replaced = replaced_note(path)  # asked before it is written
        self.result.save(path)
        offer_download(path, f"{replaced}: {self._saved_words()}")

    def _saved_words(self) -> str:
        """Which latent `save` saves: its photo (the largest face of a group photo), space and steps, and, where a Run
        stopped since (interrupted, failed), that it is the Run's before. The save gave the path alone, and after an
        interrupted Run saved the run before's latent unsaid (forty-second session's audit). Saved, not refused: that
        result is whole, and may be an hour's work."""
        photo = "the photo" if self.photo is None else _photo_name(self.photo)
        if self._faces_in_photo > 1:
            photo = f"the largest of {self._faces_in_photo} faces in {photo}"
        words = f"{photo} projected in {self.result.space.upper()}, {counted(self.result.steps, 'step')}"
        return words + (" (the Run before the last one, which did not finish)" if self._unfinished else "")


def projection_panel(G: GeneratorLike, photo: str | os.PathLike | None = None, **kwargs) -> ProjectionPanel:
    """Display a `ProjectionPanel` (keyword arguments: its settings); with `photo`, project it at once."""
    check_set_up(G=G)
    panel = ProjectionPanel(G, **kwargs)
    panel._start(photo)
    return panel
