"""Image helpers, the swap-resolution grid and the notebook widgets, driven programmatically.

The same tests run under ipywidgets 8 and 7 (whose FileUpload value format differs); how the widgets look
and respond in a real browser is tested in test_browser_notebooks.py.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime
import html
import io
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import INTERRUPTS, keyboard_interrupt, tiny_generator

from toonlib.blending import blend, swap_resolution_grid
from toonlib.images import from_pil, labelled_grid, save_image, to_pil, to_uint8
from toonlib.networks import parse_seeds, z_from_seeds
from toonlib.notebook import display_size
from toonlib.projection import ProjectionResult
from toonlib.widgets import blend_explorer, layer_chart, uploaded_files


def test_tensor_pil_round_trip_and_rounding():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 1, 4).expand(1, 3, 1, 4)
    assert to_uint8(x)[0, 0, :, 0].tolist() == [0, 128, 255, 255]
    img = torch.rand(3, 8, 8) * 2 - 1
    back = from_pil(to_pil(img))
    assert back.shape == (1, 3, 8, 8)
    assert (back[0] - img).abs().max() <= 1 / 127.5 + 1e-6


def test_save_image_takes_what_render_and_arrays_give(tmp_path):
    """render() draws [N, 3, H, W]: one latent's image saves as it is (it was "'list' object has no attribute
    'save'"), a batch is refused saying what to do; arrays save as read_image reads them."""
    drawn = torch.rand(1, 3, 8, 8) * 2 - 1
    save_image(drawn, tmp_path / "one.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "one.png")), to_uint8(drawn[0]))
    with pytest.raises(ValueError, match="writes one image, got a batch of 2: save each of to_pil"):
        save_image(torch.zeros(2, 3, 8, 8), tmp_path / "two.png")
    pixels = np.random.RandomState(0).randint(0, 256, (8, 8, 3), dtype=np.uint8)
    save_image(pixels, tmp_path / "array.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "array.png")), pixels)
    with pytest.raises(TypeError, match=r"expected an image tensor \[C, H, W\] .*got ndarray: for an array"):
        to_pil(pixels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["array.png", "one.png"]


def test_save_image_writes_the_format_its_suffix_names(tmp_path):
    """PNG data went into `toon.txt` and a suffix-less `toon` without a word; an RGBA or palette image saved as
    .jpg was Pillow's "cannot write mode RGBA as JPEG": it is written as read_image reads it, alpha on white."""
    for name in ("toon.txt", "toon"):
        with pytest.raises(ValueError, match=rf"cannot save an image as '.*{name}': the format follows the file's "
                                             rf"suffix, .*; name it .*{name.split('.')[0]}.png"):
            save_image(torch.zeros(3, 4, 4), tmp_path / name)
    half = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    save_image(half, tmp_path / "clear.jpg")
    save_image(half.convert("P"), tmp_path / "palette.JPG")
    assert Image.open(tmp_path / "clear.jpg").format == "JPEG"
    assert np.asarray(Image.open(tmp_path / "clear.jpg")).min() >= 250  # transparent: white
    save_image(half, tmp_path / "kept.png")
    assert Image.open(tmp_path / "kept.png").mode == "RGBA"  # PNG keeps the alpha
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clear.jpg", "kept.png", "palette.JPG"]


def test_save_image_and_to_pil_name_a_wrong_argument(tmp_path):
    """Swapped arguments and lists were AttributeErrors; a uint8 tensor (0 .. 255) came out white, a channels-last
    one "Cannot handle this data type: (1, 1, 8), |u1"."""
    with pytest.raises(TypeError, match=r"save_image\(image, path\) .* got str, Image \(swapped\)"):
        save_image(str(tmp_path / "a.png"), Image.new("RGB", (4, 4)))
    with pytest.raises(TypeError, match="takes a PIL image, an image array or an image tensor, got list"):
        save_image([Image.new("RGB", (4, 4))], tmp_path / "a.png")
    with pytest.raises(TypeError, match=r"got torch.uint8: for 0 .. 255 values use images.float\(\) / 127.5 - 1"):
        to_pil(torch.full((3, 4, 4), 255, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"got shape \[8, 8, 3\]: channels last\? use images.movedim\(-1, -3\)"):
        save_image(torch.zeros(8, 8, 3), tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []



def test_to_pil_refuses_a_latent_and_draws_grey_batches():
    """A latent (`result.w`, [1, 18, 512]) came out as a grey 512 x 18 strip, three ([3, 18, 512]) as a colour one;
    a result object was "got ProjectionResult"; a batch of grey images failed in Pillow
    ("Cannot handle this data type: (1, 1, 1), |u1")."""
    G = tiny_generator(0)
    ws = G.mapping(torch.randn(3, G.z_dim), None)
    for latent in (ws[:1], ws, ws[:, :1]):
        with pytest.raises(TypeError, match=r"looks like a latent \[N, num_ws, w_dim\], not a picture: draw it first, "
                                            r"e.g. to_pil\(toonlib.projection.render\(G, w\)\)"):
            to_pil(latent)
    result = ProjectionResult(ws[:1], torch.zeros(1, 3, 16, 16), {}, np.zeros((1, 1)), "w+", 1)
    with pytest.raises(TypeError, match=r"got ProjectionResult: pass its .images"):
        to_pil(result)
    grey = to_pil(torch.linspace(-1, 1, 2 * 64).reshape(2, 1, 8, 8))
    assert [(image.mode, image.size) for image in grey] == [("L", (8, 8))] * 2
    assert np.asarray(grey[1])[-1, -1] == 255 and np.asarray(grey[0])[0, 0] == 0
    assert to_pil(torch.zeros(1, 18, 18)).size == (18, 18)  # a small square grey picture is still a picture

def test_grid_layout_and_atomic_save(tmp_path):
    cells = [[Image.new("RGB", (10, 10), c) for c in ("red", "green")] for _ in range(3)]
    grid = labelled_grid(cells, row_labels=["a", "b", "c"], col_labels=["x", "y"], cell=20)
    plain = labelled_grid(cells, cell=20, pad=0)
    assert plain.size == (40, 60)
    assert grid.width > 40 and grid.height > 60  # room for the labels
    save_image(grid, tmp_path / "grid.png")
    assert Image.open(tmp_path / "grid.png").size == grid.size


def test_seeds():
    assert parse_seeds("0-2, 5") == [0, 1, 2, 5]
    assert parse_seeds("1 2") == [1, 2] and parse_seeds("0 - 2 7") == [0, 1, 2, 7]  # '1 2' was seed 12
    with pytest.raises(ValueError, match="^bad seed list 'a-b': use numbers"):
        parse_seeds("a-b")
    with pytest.raises(ValueError, match="^seeds = '3-1': the range 3-1 runs backwards; write 1-3$"):
        parse_seeds("3-1", parameter="seeds")  # a notebook's parameter, named
    z = z_from_seeds([3], 4)
    assert torch.allclose(z[0], torch.from_numpy(np.random.RandomState(3).randn(4)).float())


def test_swap_resolution_grid_columns():
    base, toon = tiny_generator(0), tiny_generator(1)
    hard = swap_resolution_grid(toon, base, seeds=[0, 1], cell=32)  # base, swaps 4..16, toon (swap 32 is the toon)
    smooth = swap_resolution_grid(toon, base, seeds=[0, 1], cell=32, blend_width=1.0)  # a smooth swap 32 is not
    given = swap_resolution_grid(toon, base, seeds=[0, 1], cell=32, swap_resolutions=[4, 8, 16, 32])
    assert hard.height > 2 * 32 and hard.width > 5 * 32
    assert smooth.width == given.width == hard.width + 32 + 4  # one more column (cell + pad)


def _png(value: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(value)).convert("RGB"))


def _shown_size(image_widget) -> tuple[int, int]:
    """The size an Image widget asks for: its picture's pixel size (height follows the width), never stretched."""
    width = image_widget.layout.width
    assert width.endswith("px") and image_widget.layout.height == "auto" and image_widget.layout.max_width == "100%"
    picture = _png(image_widget.value)
    assert int(width[:-2]) == picture.shape[1]
    return picture.shape[1], picture.shape[0]


@pytest.mark.parametrize("bf16, expected", [(True, "bfloat16 in hardware: a projection step at 1024 px takes about"),
                                           (False, "float32, no bfloat16 in hardware: a projection step at 1024 px "
                                                   "takes 3-11 s")])
def test_device_report_says_what_a_cpu_runtime_can_expect(monkeypatch, bf16, expected):
    from toonlib import notebook, runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "native_bf16", lambda device: bf16)
    report = notebook.device_report(print_it=False)
    assert "No GPU: toonlib will run on the CPU" in report and expected in report
    assert "the e4e inversion mode takes seconds" in report and "Runtime > Change runtime type > GPU" in report
    assert notebook.CPU_TRAINING not in report  # notebook 01 alone: fine-tuning on the CPU takes days
    assert notebook.device_report(print_it=False, training=True).endswith(f"\n{notebook.CPU_TRAINING}")


def test_display_size_is_an_integer_multiple_up_to_the_bound():
    assert [display_size(s, 192) for s in (32, 48, 50, 100, 192, 256, 1024)] == [192, 192, 150, 100, 192, 192, 192]
    with pytest.raises(ValueError, match="sides >= 1 px, got size=0"):  # was a ZeroDivisionError
        display_size(0, 192)


def test_uploads_never_replace_other_content(tmp_path):
    """An upload of a name the folder already holds with other content (an earlier photo) gets a number; the
    same content keeps its file; two files of one name in one upload both survive. Each keeps the name the user
    chose, for messages."""
    from toonlib.notebook import save_uploads

    first = save_uploads({"me.jpg": b"one"}, tmp_path)
    os.utime(first[0].path, ns=(1, 1))  # its file's time: rewritten with the same content, a resumed fine-tuning run
    assert save_uploads({"me.jpg": b"one"}, tmp_path) == first  # called its images "replaced" (01's uploads)
    assert first[0].path.stat().st_mtime_ns == 1
    second = save_uploads({"me.jpg": b"two", "b/me.jpg": b"three"}, tmp_path)
    assert [u.path.name for u in first + second] == ["me.jpg", "me-1.jpg", "me-2.jpg"]
    assert [u.name for u in first + second] == ["me.jpg"] * 3
    assert [Path(u).read_bytes() for u in first + second] == [b"one", b"two", b"three"]  # path-like


def test_show_and_offer_download_say_what_is_missing(tmp_path, monkeypatch, capsys):
    from toonlib.notebook import offer_download, show

    with pytest.raises(ValueError, match="no images to show"):
        show([])
    with pytest.raises(FileNotFoundError, match="no file at .*nope.jpg to download"):  # it printed "saved ..."
        offer_download(tmp_path / "nope.jpg")
    monkeypatch.setenv("HOME", str(tmp_path))  # a panel's save('~/toon.png') wrote there, then found "no file"
    (tmp_path / "toon.png").write_bytes(b"png")
    offer_download("~/toon.png")
    assert capsys.readouterr().out == f"saved {tmp_path / 'toon.png'}\n"
    # in Colab the file (on Drive, say) was not named at all: the browser's download alone was started
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "fake_colab"))
    monkeypatch.setenv("FAKE_COLAB_LOG", str(tmp_path / "colab.log"))
    try:
        offer_download("~/toon.png")
    finally:  # imported here alone: forgotten, or every later test would be "in Colab"
        for name in [m for m in sys.modules if m == "google" or m.startswith("google.")]:
            del sys.modules[name]
    assert capsys.readouterr().out == f"saved {tmp_path / 'toon.png'}; your browser downloads a copy\n"
    assert (tmp_path / "colab.log").read_text() == f"download {tmp_path / 'toon.png'}\n"


def _runs(row: np.ndarray, color: tuple[int, int, int]) -> int:
    """How many separate stretches of `color` a row of pixels has."""
    hit = np.all(row == color, axis=-1).astype(np.int8)
    return int(np.count_nonzero(np.diff(np.concatenate([[0], hit])) == 1))


def test_layer_chart_shows_each_layers_model_and_marks_b4_conv1():
    from PIL import ImageColor

    from toonlib.blending import layer_weights
    from toonlib.widgets import HIGH_COLOR, LOW_COLOR

    low, high = ImageColor.getrgb(LOW_COLOR), ImageColor.getrgb(HIGH_COLOR)
    G = tiny_generator(0)
    charts = {res: np.asarray(layer_chart(layer_weights(G, res))) for res in (4, 16, 32)}
    n = len(layer_weights(G, 4))  # 12 layers at 32 px
    # Swapping at 32 px takes every layer from the toon model: one toon bar per layer, except b4.conv1,
    # which is drawn apart (hatched) although its weight is 0 like the others.
    assert max(_runs(row, low) for row in charts[32]) == n - 1
    assert max(_runs(row, high) for row in charts[32]) == 1  # the legend's swatch only
    assert max(_runs(row, low) for row in charts[4]) == 2  # b4.const and b4.torgb; b4.conv1 hatched between
    assert max(_runs(row, high) for row in charts[4]) == n - 3
    assert (np.all(charts[16] == low, axis=-1).sum() > np.all(charts[4] == low, axis=-1).sum())


def test_blend_explorer_renders_and_reacts():
    base, toon = tiny_generator(0), tiny_generator(1)
    explorer = blend_explorer(base, toon, seeds=[0, 1], cell=96)
    assert explorer.cell == 96  # 3 x the 32 px model: an integer multiple up to the bound

    first = _png(explorer.image.value)
    assert _shown_size(explorer.image) == (first.shape[1], first.shape[0])
    assert first.shape[0] > 2 * 96 and first.shape[1] > 3 * 96
    chart = explorer.chart.value
    explorer.swap_res.value = 4
    assert not np.array_equal(first, _png(explorer.image.value))
    assert explorer.chart.value != chart
    assert "toon up to 4 px" in explorer.status.value
    expected = blend(toon, base, 4).state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in explorer.blended.state_dict().items())
    # The same blended generator is re-mixed in place, never rebuilt.
    blended = explorer.blended
    explorer.blend_width.value = 1.0
    assert explorer.blended is blended and "smooth" in explorer.status.value
    explorer.seeds.value = "0-2"
    three_rows = _png(explorer.image.value)
    assert three_rows.shape[0] > first.shape[0]
    assert _shown_size(explorer.image) == (three_rows.shape[1], three_rows.shape[0])
    explorer.seeds.value = "x"
    assert "bad seed list" in explorer.status.value
    explorer.swap_res.value = 8  # the blend's words took the message's place, the box still holding "x"
    assert _status_text(explorer).endswith("\nbad seed list 'x': use numbers and ranges such as '0-3,7'; the faces "
                                           "shown are seeds 0, 1, 2") and "toon up to 8 px" in explorer.status.value
    # the truncation moved meanwhile: its faces could not be drawn, and the status line said the seeds' error alone,
    # the faces still those of the truncation before (thirty-eighth session's audit)
    grid = explorer.image.value
    explorer.truncation.value = 0.0
    assert explorer.image.value == grid and _status_text(explorer).endswith(
        "the faces shown are seeds 0, 1, 2 at truncation ψ 0.70") and "toon up to 8 px" in explorer.status.value
    explorer.seeds.value = "1"
    assert "bad seed list" not in explorer.status.value and "toon up to 8 px" in explorer.status.value


def test_blend_explorer_says_what_it_cannot_draw_and_keeps_what_it_drew(monkeypatch):
    """02's seeds box took 0-9999: the pictures of every seed in one batch ran out of memory (~0.5 GB a face at
    1024 px) inside the widget's callback, which said nothing; the new seeds were kept beside the old pictures, so
    every slider move failed the same way. A grid takes 32 seeds, drawn four at a time; an error is said in the
    status line, and the seeds and pictures drawn before stay."""
    base, toon = tiny_generator(0), tiny_generator(1)
    with pytest.raises(ValueError, match=r"^seeds: 40 faces, more than the 32 the explorer draws; give fewer"):
        blend_explorer(base, toon, seeds=range(40))  # it came up blank, every slider move an AttributeError
    # seeds the box refuses came up blank too (a result's w, floats, -1, 2**33): refused before the models are read
    for seeds in ([-1, 2], [0.5, 1.7], [2**33], np.array([1.0, 2.0]), [True], torch.tensor([True, False])):
        with pytest.raises(ValueError, match=r"^seeds are whole numbers from 0 to 4294967295, one face each"):
            blend_explorer("missing.safetensors", toon, seeds=seeds)
    with pytest.raises(TypeError, match=r"got a float tensor of shape \[1, 8, 512\]: a latent is no seed"):
        blend_explorer("missing.safetensors", toon, seeds=torch.zeros(1, 8, 512))
    with pytest.raises(TypeError, match=r"^seeds is a list of whole numbers, such as \[5\] or range\(4\)"):
        blend_explorer("missing.safetensors", toon, seeds=torch.tensor(5))  # one seed: "iteration over a 0-d tensor"
    assert blend_explorer(base, toon, seeds=np.arange(2), cell=32)._seeds == [0, 1]  # NumPy's and torch's integers
    assert blend_explorer(base, toon, seeds=torch.tensor([3]), cell=32)._seeds == [3]
    explorer = blend_explorer(base, toon, seeds=[0, 1], cell=32)
    explorer.seeds.value = "0-32"
    assert "33 seeds, more than the 32 taken here" in explorer.status.value and explorer._seeds == [0, 1]
    with pytest.raises(ValueError, match="33 seeds, more than the 32 taken here"):
        explorer.swap_resolution_grid()  # every seed in one batch a column
    batches = []
    synthesis = type(base.synthesis).forward
    monkeypatch.setattr(type(base.synthesis), "forward",
                        lambda self, ws, **kw: batches.append(len(ws)) or synthesis(self, ws, **kw))
    explorer.seeds.value = "0-9"
    assert explorer._seeds == list(range(10)) and max(batches) == 4  # four at a time
    drawn = explorer.image.value

    def out_of_memory(self, ws, **kw):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1073741824 bytes.")
    monkeypatch.setattr(type(base.synthesis), "forward", out_of_memory)
    explorer.seeds.value = "0-20"
    assert _status_text(explorer) == ("RuntimeError: DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                                      "1073741824 bytes.\nThe faces shown are the last ones drawn.")
    assert explorer._seeds == list(range(10)) and explorer.image.value == drawn
    # the kernel's interrupt stops a slider's re-render, said so (it went on to the end in JupyterLab, unsaid;
    # thirty-eighth session's audit)
    monkeypatch.setattr(type(base.synthesis), "forward", lambda self, ws, **kw: keyboard_interrupt())
    explorer.swap_res.value = 4
    assert _status_text(explorer) == "Interrupted.\nThe faces shown are the last ones drawn."
    assert explorer.image.value == drawn
    monkeypatch.setattr(type(base.synthesis), "forward", synthesis)
    explorer.swap_res.value = 8  # the sliders draw the seeds shown
    assert explorer._seeds == list(range(10)) and "toon up to 8 px" in explorer.status.value


def test_blend_explorer_saves_the_blend_its_sliders_show(tmp_path, capsys):
    """Notebook 02 saved the parameters' blend whatever the sliders said; the explorer saves its own."""
    from toonlib.checkpoints import load_network

    base, toon = tiny_generator(0), tiny_generator(1)
    explorer = blend_explorer(base, toon, seeds=[0], swap_res=32)
    explorer.swap_res.value, explorer.level.value = 8, 1
    assert explorer.save(tmp_path / "blend.safetensors") == tmp_path / "blend.safetensors"
    expected = blend(toon, base, 8, level=1).state_dict()
    saved = load_network(tmp_path / "blend.safetensors").G_ema.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in saved.items())
    assert f"saved {tmp_path / 'blend.safetensors'}: toon up to 8 px (level 1), FFHQ above; hard switch" in \
        capsys.readouterr().out
    assert load_network(tmp_path / "blend.safetensors").meta["blend"] == {  # for `toonlib info`: made in memory
        "toon": "an unsaved generator", "base": "an unsaved generator", "swap_res": 8, "level": 1, "blend_width": None}
    named = blend_explorer(base, toon, seeds=[0], swap_res=16, blend_width=0.5, sources=("ffhq.pkl", "cartoon.pkl"))
    named.save(tmp_path / "named.safetensors")
    assert load_network(tmp_path / "named.safetensors").meta["blend"] == {
        "toon": "cartoon.pkl", "base": "ffhq.pkl", "swap_res": 16, "level": 0, "blend_width": 0.5}


def test_the_blend_explorers_level_buttons_say_which_layers_come_from_the_toon_model():
    """The "conv1" button's tooltip said "the swap block's conv0 from the toon model, the rest from FFHQ", where level 1
    takes the whole swap block and the next block's conv0 from the toon model (thirty-ninth session's audit)."""
    from toonlib.blending import layer_weights

    base, toon = tiny_generator(0), tiny_generator(1)
    explorer = blend_explorer(base, toon, seeds=[0], swap_res=16, cell=32)
    conv0, conv1 = explorer.level.tooltips

    def from_toon(level: int) -> set[str]:
        return {layer.name for layer in layer_weights(base, 16, level) if layer.weight == 0.0}

    assert {"synthesis.b16.conv0", "synthesis.b16.conv1", "synthesis.b16.torgb"} <= from_toon(0)
    assert not any(name.startswith("synthesis.b32.") for name in from_toon(0))
    assert from_toon(1) - from_toon(0) == {"synthesis.b32.conv0"}
    assert conv0 == ("the whole swap block from the toon model, the blocks above from FFHQ (a smooth switch is "
                     "centred on the swap block's conv0)")
    assert conv1 == ("the whole swap block and the next block's conv0 from the toon model, the rest from FFHQ (a "
                     "smooth switch is centred on the swap block's conv1)")
    centred = {level: {layer.name for layer in layer_weights(base, 16, level, 1.0) if layer.weight == 0.5}
               for level in (0, 1)}
    assert centred == {0: {"synthesis.b16.conv0"}, 1: {"synthesis.b16.conv1", "synthesis.b16.torgb"}}


@pytest.mark.filterwarnings("ignore::toonlib.blending.LineageWarning")  # unrelated tiny models
def test_the_blend_explorer_refuses_to_save_over_a_model_it_blends(tmp_path, capsys):
    """Notebook 02's save cell with `output` set to the toon model's own file replaced the fine-tuned toon model by
    the blend without a word, where `toonlib blend -o` refuses it (thirty-ninth session's audit); Toonify's layout,
    its toon named "toon.safetensors (G)", too."""
    from tiny import write_toonify_models

    base, toon, _, _ = write_toonify_models(tmp_path)
    before = toon.read_bytes(), base.read_bytes()
    for toon_name in (str(toon), f"{toon} (G)"):
        explorer = blend_explorer(str(base), toon_name, seeds=[0], swap_res=8, cell=32)
        for path, model in ((toon, "toon"), (tmp_path / "." / base.name, "base")):
            with pytest.raises(ValueError) as error:
                explorer.save(path)
            assert str(error.value) == (f"the path {path} is the {model} model's file: writing there would replace "
                                        "that model; give another output file")
    assert (toon.read_bytes(), base.read_bytes()) == before
    assert explorer.save(tmp_path / "blend.safetensors") == tmp_path / "blend.safetensors"
    assert "saved " in capsys.readouterr().out


def test_a_blend_explorer_of_generators_made_in_memory_names_no_model_by_its_column_labels(tmp_path, capsys):
    """The explorer of two in-memory generators recorded its column labels as models: `toonlib info` said "blend of
    toon up to 8 px ..., FFHQ above" and the re-blend advice "give its toon model, toon, as the toon", where `blend()`
    records "an unsaved generator" (thirty-ninth session's audit)."""
    from toonlib import cli

    base, toon = tiny_generator(0), tiny_generator(1)
    explorer = blend_explorer(base, toon, seeds=[0], swap_res=8, cell=32)
    assert "toon up to 8 px" in explorer.status.value  # the column labels stay the explorer's words
    path = explorer.save(tmp_path / "blend.safetensors")
    capsys.readouterr()
    assert cli.main(["info", str(path)]) == 0
    assert ("blend of an unsaved generator up to 8 px (level 0), an unsaved generator above; hard switch"
            in capsys.readouterr().out.splitlines())
    with pytest.raises(ValueError) as error:
        blend(str(path), base, 16)
    assert "give its toon model as the toon, or name the blend's network" in str(error.value)
    assert "FFHQ" not in str(error.value)


def test_blend_explorer_draws_every_swap_resolution_at_its_sliders_settings():
    """Notebook 02's grid of every swap resolution used the parameters cell's level, width, truncation and seeds
    whatever the explorer's controls above it said, and skipped their checks: the explorer draws it at its own."""
    base, toon = tiny_generator(0), tiny_generator(1)
    explorer = blend_explorer(base, toon, seeds=[0, 1], swap_res=8)
    explorer.level.value, explorer.blend_width.value, explorer.truncation.value = 1, 1.0, 0.5
    explorer.seeds.value = "3"
    drawn = explorer.swap_resolution_grid(cell=32)
    expected = swap_resolution_grid(toon, base, [3], level=1, blend_width=1.0, truncation_psi=0.5, cell=32)
    assert drawn.size == expected.size and np.array_equal(np.asarray(drawn), np.asarray(expected))
    explorer.blend_width.value = 0.0  # a hard switch, as the explorer's slider means it: no "swap 32" column
    assert explorer.swap_resolution_grid(cell=32).size == swap_resolution_grid(toon, base, [3], cell=32).size
    explorer.seeds.value = "x"  # the explorer says so in its status line; the grid is not drawn for older seeds
    with pytest.raises(ValueError) as error:
        explorer.swap_resolution_grid()
    assert str(error.value) == "the explorer's seeds: bad seed list 'x': use numbers and ranges such as '0-3,7'"


@pytest.mark.filterwarnings("ignore:precision='bf16' on a CPU without bfloat16")  # emulated: slow, not wrong
def test_blend_explorer_previews_in_bfloat16_where_the_cpu_computes_it(monkeypatch):
    """'auto' draws the pictures in bfloat16 on CPUs that compute it in hardware (a slider move ~1.7x faster on
    an AMX Xeon), within about a level of float32's, and exactly as float32 elsewhere; the blend is the same. A bad
    precision is refused before the models are read."""
    import toonlib.runtime

    base, toon = tiny_generator(0), tiny_generator(1)

    def grid(precision: str, native: bool) -> np.ndarray:
        monkeypatch.setattr(toonlib.runtime, "native_bf16", lambda device: native)
        explorer = blend_explorer(base, toon, seeds=[0, 1], swap_res=8, precision=precision)
        assert all(torch.equal(v, w) for v, w in zip(explorer.blended.state_dict().values(),
                                                    blend(toon, base, 8).state_dict().values()))
        return _png(explorer.image.value).astype(np.int16)

    exact, bf16 = grid("fp32", True), grid("bf16", True)
    assert np.array_equal(grid("auto", False), exact) and np.array_equal(grid("auto", True), bf16)
    assert 0 < np.abs(bf16 - exact).mean() < 1 and np.abs(bf16 - exact).max() < 16
    with pytest.raises(ValueError, match="precision must be one of"):
        blend_explorer("ffhq-1024-tf", "toonify-blended-tf", seeds=[0], precision="half")  # no download first


@pytest.mark.parametrize("setting, message", [
    ({"level": 2}, "level must be 0 or 1 (0: the swap block's conv0, 1: its conv1), got 2"),
    ({"swap_res": 5}, "swap_res must be 4, 8, 16 or 32 (the models' resolutions, px), got 5"),
    ({"swap_res": 64}, "swap_res must be 4, 8, 16 or 32 (the models' resolutions, px), got 64"),  # was clamped to 32
    ({"truncation_psi": 5}, "truncation_psi must be a number from 0 to 1, got 5"),  # was clamped to 1
    # was accepted, then failed later; any width `toonlib blend` takes is taken (forty-second session's audit)
    ({"blend_width": -1}, "blend_width must be None or 0 (hard switch) or a positive number, got -1")])
def test_blend_explorer_refuses_a_setting_its_controls_cannot_show(setting, message):
    """Notebook 02's parameters out of the controls' choices were ipywidgets TraitError tracebacks, or clamped by
    a slider while the notebook's grid used the value given: a ValueError (one line in a notebook) naming what is
    allowed."""
    with pytest.raises(ValueError) as error:
        blend_explorer(tiny_generator(0), tiny_generator(1), seeds=[0], **setting)
    assert str(error.value) == message


def test_blend_explorer_takes_any_width_toonlib_blend_takes(tmp_path, capsys):
    """Notebook 02 refused a smooth width above its slider's 3 that `toonlib blend --blend-width 5` and `blend` take
    (forty-second session's audit): the explorer takes it, its slider widened, and saves that blend."""
    from toonlib.checkpoints import load_network
    from toonlib.widgets import check_explorer_settings

    check_explorer_settings(16, blend_width=5.0)
    base, toon = tiny_generator(0), tiny_generator(1)
    explorer = blend_explorer(base, toon, seeds=[0], swap_res=16, blend_width=5.0)
    assert explorer.blend_width.value == 5.0 and explorer.blend_width.max == 5.0
    assert "smooth switch, width 5.0" in explorer.status.value
    explorer.save(tmp_path / "wide.safetensors")
    assert load_network(tmp_path / "wide.safetensors").meta["blend"]["blend_width"] == 5.0
    assert torch.equal(load_network(tmp_path / "wide.safetensors").G_ema.synthesis.b16.conv0.weight,
                       blend(toon, base, 16, blend_width=5.0).synthesis.b16.conv0.weight)


def test_frame_scrubber_captions_each_frame_with_its_step():
    from toonlib.widgets import FrameScrubber

    frames = [np.full((4, 8, 3), i * 50, np.uint8) for i in range(3)]
    scrubber = FrameScrubber(frames, steps_between=2, last_step=3, bound=16)
    last = scrubber.image.value
    assert scrubber.slider.value == 3 and "frame 3 of 3: step 3" in scrubber.caption.value  # the slider read 2
    assert (scrubber.slider.min, scrubber.slider.max) == (1, 3)  # 1-based, as the caption
    assert _shown_size(scrubber.image) == (32, 16)  # 4 x 8 frames shown 4x, target | projection kept 2:1
    scrubber.slider.value = 2
    assert "frame 2 of 3: step 2" in scrubber.caption.value
    scrubber.slider.value = 1
    assert scrubber.image.value != last and "frame 1 of 3: step 0" in scrubber.caption.value
    with pytest.raises(ValueError, match="save_every"):
        FrameScrubber([])


def test_uploaded_files_reads_both_ipywidgets_formats():
    v8 = ({"name": "me.jpg", "type": "image/jpeg", "size": 3, "content": memoryview(b"abc"), "last_modified": 0},)
    v7 = {"me.jpg": {"metadata": {"name": "me.jpg", "type": "image/jpeg", "size": 3}, "content": b"abc"}}
    assert uploaded_files(v8) == uploaded_files(v7) == {"me.jpg": b"abc"}
    assert uploaded_files(()) == uploaded_files({}) == {}


def _upload(upload_widget, name: str, data: bytes) -> None:
    """What the browser does when a file is chosen, in this ipywidgets version's value format."""
    import ipywidgets

    if ipywidgets.__version__.startswith("7."):
        upload_widget.set_trait("value", {name: {"metadata": {"name": name, "size": len(data)}, "content": data}})
    else:
        upload_widget.value = ({"name": name, "type": "", "size": len(data), "content": memoryview(data),
                                "last_modified": datetime.datetime.now(datetime.timezone.utc)},)


def _rotated_jpeg() -> bytes:
    """A 40 x 20 JPEG whose EXIF says: rotate 90 degrees to show it upright (20 x 40)."""
    image = Image.new("RGB", (40, 20), "red")
    exif = image.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


@pytest.fixture
def toonifier(tmp_path, monkeypatch, random_vgg_torch_home):
    from tiny import write_toonify_models

    from toonlib.pipeline import Toonifier

    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    base_path, toon_path, _, _ = write_toonify_models(tmp_path)
    return Toonifier(base_path, toon_path, detector="dlib")


def test_toonify_panel_uploads_runs_the_chosen_steps_and_reblends(toonifier, tmp_path):
    from tiny import write_photos

    from toonlib.projection import load_latent
    from toonlib.widgets import ToonifyPanel

    photos = write_photos(tmp_path / "photos")
    panel = ToonifyPanel(toonifier, steps=2, folder=tmp_path / "uploads")
    assert panel.upload is not None and panel.run_button.disabled and "Upload a photo" in panel.status.value
    # iPhone photos are offered in the file picker: some pickers grey out .heic under "image/*" alone
    assert {"image/*", ".heic", ".heif", ".avif"} <= set(panel.upload.accept.split(","))
    _upload(panel.upload, "rotated.jpg", _rotated_jpeg())
    assert _shown_size(panel.photo_image)[0] < _shown_size(panel.photo_image)[1]  # EXIF applied: upright
    _upload(panel.upload, "hopper.jpg", (photos / "hopper.jpg").read_bytes())
    assert panel.photo.path == tmp_path / "uploads" / "hopper.jpg" and not panel.run_button.disabled

    assert [mode for _, mode in panel.inversion.options] == ["optimize"]  # no models given for other modes
    panel.steps.value = 3
    panel.run_button.click()
    assert "done: 3 steps" in panel.status.value, panel.status.value
    assert panel.result.losses.shape == (3,) and panel.progress.value == panel.progress.max == 3
    toon = panel.tiles["toon"][1].value
    assert _shown_size(panel.tiles["toon"][1]) == (384, 384)  # the 32 px toon at 12x
    w = panel.result.w.clone()
    panel.status.value = "an error of a run since (a failed download)"
    panel.swap_res.value = 32  # everything from the toon model: re-rendered, not projected again
    assert panel.tiles["toon"][1].value != toon and "blend at 32 px" in panel.tiles["toon"][0].value
    assert "Re-rendered the last toon (optimise) with the blend at 32 px." in panel.status.value  # not the error
    assert torch.equal(panel.result.w, w)
    assert np.array_equal(np.asarray(panel.result.toon), to_uint8(toonifier.generator.synthesis(w))[0])
    panel.swap_res.value = "published"
    assert panel.tiles["toon"][1].value == toon and toonifier.generator is toonifier.published_blend
    with pytest.raises(IsADirectoryError, match=r"^cannot write \.: it is a folder; name a file$"):
        panel.save(".")  # 04's empty output parameter: it failed naming the files beside it ('.' has no name)
    panel.save(tmp_path / "toon.png")  # the toon alone: the minutes of the inversion were lost with the kernel
    assert Image.open(tmp_path / "toon.png").size == (32, 32)
    assert Image.open(tmp_path / "toon-pasted.png").size == panel.result.pasted.size
    assert torch.equal(load_latent(tmp_path / "toon-latent.npz"), w)

    class Encoder:  # a mode whose result has no reconstruction (psp-toonify), as a stand-in
        def __init__(self, toonifier) -> None:
            self.toonifier = toonifier

        def __getattr__(self, name: str):
            return getattr(self.toonifier, name)

        def __call__(self, *args, **kwargs):
            return dataclasses.replace(self.toonifier(*args, **kwargs), reconstruction=None)

    assert panel.tiles["reconstruction"][1].value
    panel.toonifiers["optimize"] = Encoder(toonifier)
    panel.run_button.click()
    assert panel.result.reconstruction is None and "no reconstruction" in panel.tiles["reconstruction"][0].value
    assert panel.tiles["reconstruction"][1].value == b""  # the last run's picture stayed under that caption


def test_toonify_panel_shows_the_errors_the_pipeline_raises(toonifier, tmp_path):
    """The pipeline's messages, the uploaded photo named as the user chose it, then what to do next."""
    from tiny import write_photos

    from toonlib.align import NoFaceError
    from toonlib.images import ImageReadError
    from toonlib.widgets import ToonifyPanel

    photos = write_photos(tmp_path / "photos")
    panel = ToonifyPanel(toonifier, steps=2, folder=tmp_path / "uploads")
    panel.save(tmp_path / "nothing.png")  # no toon yet: a hint, no error
    assert not (tmp_path / "nothing.png").exists()
    _upload(panel.upload, "notes.txt", b"not an image")
    with pytest.raises(ImageReadError) as not_an_image:
        toonifier(tmp_path / "uploads" / "notes.txt")
    named = str(not_an_image.value).replace(str(tmp_path / "uploads" / "notes.txt"), "notes.txt")
    assert html.escape(named) in panel.status.value and panel.run_button.disabled
    _upload(panel.upload, "coffee.png", (photos / "coffee.png").read_bytes())
    panel.run_button.click()
    with pytest.raises(NoFaceError) as no_face:
        toonifier(tmp_path / "uploads" / "coffee.png")
    named = str(no_face.value).replace(str(tmp_path / "uploads" / "coffee.png"), "coffee.png")
    assert html.escape(named) in panel.status.value and panel.result is None
    assert not panel.run_button.disabled  # ready for another try


def test_a_swap_that_cannot_be_drawn_is_said_and_the_slider_put_back(tmp_path, monkeypatch, random_vgg_torch_home):
    """04 with a blend saved by 02 as its toon model: the slider moved to 16 px, the toon stayed the published blend's
    and the caption said so; the error reached the kernel's log alone, and the save cell saved the old toon."""
    from tiny import tiny_generator, write_photos

    from toonlib.blending import blend
    from toonlib.checkpoints import save_network
    from toonlib.pipeline import Toonifier
    from toonlib.widgets import ToonifyPanel

    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    base, toon = tiny_generator(0), tiny_generator(1)
    save_network(tmp_path / "base.safetensors", base)
    save_network(tmp_path / "blended.safetensors", blend(toon, base, 8))  # G_ema alone: a blend, no toon model
    toonifier = Toonifier(tmp_path / "base.safetensors", tmp_path / "blended.safetensors", detector="dlib")
    photos = write_photos(tmp_path / "photos")
    panel = ToonifyPanel(toonifier, steps=1, folder=tmp_path / "uploads")
    _upload(panel.upload, "hopper.jpg", (photos / "hopper.jpg").read_bytes())
    panel.run_button.click()
    toon = panel.tiles["toon"][1].value
    assert panel.result is not None and toon
    panel.swap_res.value = 16
    said = _status_text(panel)
    assert "is a blend already" in said and said.endswith("The toon shown is still the published blend."), said
    assert panel.swap_res.value == "published" and "published blend" in panel.tiles["toon"][0].value
    assert toonifier.blend_setting == (None, 0, None)  # the notebook's later cells draw with it
    assert panel.tiles["toon"][1].value == toon
    panel.save(tmp_path / "toon.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "toon.png")), np.asarray(panel.result.toon))


def test_the_toonify_panels_save_keeps_the_photo_and_says_what_it_replaced(toonifier, tmp_path, capsys):
    """04's save cell wrote the toon over the photo when output named it (or its pasted toon, output `hopper` of a
    photo `hopper-pasted.jpg`), and over an earlier toon without a word, where 02's and 03's saves and
    `toonlib toonify` say "(it replaced the file that was there)" (forty-first session)."""
    from tiny import write_photos

    from toonlib.widgets import ToonifyPanel

    photos = write_photos(tmp_path / "photos")
    (photos / "hopper-pasted.jpg").write_bytes((photos / "hopper.jpg").read_bytes())
    panel = ToonifyPanel(toonifier, steps=1, folder=tmp_path / "uploads")
    for name in ("hopper.jpg", "hopper-pasted.jpg"):
        panel.set_photo(photos / name)
        panel.run_button.click()
        assert panel.result is not None
        photo = (photos / name).read_bytes()
        with pytest.raises(ValueError, match=rf"{re.escape(name)}: it is an input photo; choose another path$"):
            panel.save(photos / "hopper.jpg")
        assert (photos / name).read_bytes() == photo
    assert "saved" not in capsys.readouterr().out
    for said in ("", " (it replaced the file that was there)"):  # the second: another photo's toon, later
        panel.save(tmp_path / "toon.png")
        lines = capsys.readouterr().out.splitlines()
        assert lines[:2] == [f"saved {tmp_path / 'toon.png'}{said}", f"saved {tmp_path / 'toon-pasted.png'}{said}"]
        assert lines[2].startswith(f"saved {tmp_path / 'toon-latent.npz'}{said}: the face's latent"), lines


def test_a_swap_that_fails_while_drawing_leaves_the_toonifier_and_the_result_as_they_were(toonifier, tmp_path,
                                                                                          monkeypatch):
    """A move that failed after the re-blend (memory, while drawing) put the slider back but left the toonifier at
    the new blend, which the notebook's later cells drew with."""
    from tiny import write_photos

    from toonlib.widgets import ToonifyPanel

    photos = write_photos(tmp_path / "photos")
    panel = ToonifyPanel(toonifier, steps=1, folder=tmp_path / "uploads")
    _upload(panel.upload, "hopper.jpg", (photos / "hopper.jpg").read_bytes())
    panel.run_button.click()
    toon = panel.result.toon

    def out_of_memory(w):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
    monkeypatch.setattr(toonifier, "render", out_of_memory)
    panel.swap_res.value = 16
    assert "can't allocate memory" in _status_text(panel) and panel.swap_res.value == "published"
    assert toonifier.blend_setting == (None, 0, None) and panel.result.toon is toon


def _status_text(panel) -> str:
    """The panel's status line as a person reads it (HTML tags dropped, entities decoded)."""
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", panel.status.value))


def test_panel_messages_name_the_photo_the_user_uploaded_and_say_what_to_do(toonifier, tmp_path):
    """A photo's errors named its saved copy (`.../uploads/me-1.jpg`, a second me.jpg), not the me.jpg the user
    chose, behind the exception's class name, and did not say how to go on."""
    from tiny import write_photos

    from toonlib.widgets import ToonifyPanel

    photos = write_photos(tmp_path / "photos")
    panel = ToonifyPanel(toonifier, steps=1, folder=tmp_path / "uploads")
    _upload(panel.upload, "me.jpg", (photos / "hopper.jpg").read_bytes())
    _upload(panel.upload, "me.jpg", (photos / "coffee.png").read_bytes())  # saved as me-1.jpg: other content
    assert panel.photo.path.name == "me-1.jpg" and _status_text(panel).startswith("me.jpg: ")
    panel.run_button.click()
    assert _status_text(panel) == ("no face was found in 'me.jpg'; use a larger, frontal, well-lit photo in which the "
                                   "face is at least ~100 px wide, the head upright.\n"  # a sentence of its own
                                   "Upload another photo (the photo button above), then press Run.")
    _upload(panel.upload, "notes.jpg", b"not an image")
    text = _status_text(panel)
    assert text.startswith("cannot read 'notes.jpg' as an image") and "uploads" not in text, text
    assert text.endswith("\nUpload another photo (the photo button above), then press Run.")


def test_a_photo_path_that_cannot_be_used_says_to_change_photo_path(toonifier, tmp_path, monkeypatch):
    """A photo given by photo_path was followed by "Run the photo cell again to upload another photo" (Colab): that
    cell gives the same photo_path back, so the parameter is what to change."""
    from tiny import write_photos

    from toonlib import widgets
    from toonlib.widgets import ToonifyPanel

    coffee = write_photos(tmp_path / "photos") / "coffee.png"  # no face
    panel = ToonifyPanel(toonifier, steps=1, folder=tmp_path / "uploads")
    panel._showing_errors(lambda: (panel.set_photo(coffee), panel.run()), coffee)
    assert _status_text(panel).endswith("\nUpload another photo (the photo button above), then press Run, or set "
                                        "photo_path in the parameters cell to another photo and run the cells again.")
    monkeypatch.setattr(widgets, "in_colab", lambda: True)  # Colab's panel: no upload button
    colab = ToonifyPanel(toonifier, steps=1, folder=tmp_path / "uploads")
    assert colab.upload is None
    colab._showing_errors(lambda: (colab.set_photo(coffee), colab.run()), coffee)
    assert _status_text(colab).endswith("\nSet photo_path in the parameters cell to another photo (or leave it empty "
                                        "to upload one) and run the cells again.")


@pytest.mark.parametrize("stop", INTERRUPTS)
def test_a_stopped_run_says_so_and_runs_again(toonifier, tmp_path, monkeypatch, stop):
    """The kernel's interrupt during a Run (a long projection) escaped the panel: the status line kept its last
    "step ... of ..." and the Run button's callback failed into the log."""
    from tiny import write_photos

    from toonlib.widgets import ToonifyPanel

    panel = ToonifyPanel(toonifier, steps=3, folder=tmp_path / "uploads")
    panel.set_photo(write_photos(tmp_path / "photos") / "hopper.jpg")
    run = panel._run

    def interrupted(photo, steps, report) -> None:
        report(0, 0.5)
        stop()

    monkeypatch.setattr(panel, "_run", interrupted)
    try:
        panel.run_button.click()
    except KeyboardInterrupt:
        pytest.fail("the interrupt escaped the panel")
    assert _status_text(panel) == "Interrupted. Press Run to start again."
    assert not panel.run_button.disabled and panel.progress.value == 1
    monkeypatch.setattr(panel, "_run", run)
    panel.run_button.click()
    assert panel.result is not None and "done: 3 steps" in panel.status.value
    monkeypatch.setattr(panel, "_run", interrupted)  # a result shown: it passed for the interrupted run's
    panel.run_button.click()
    assert _status_text(panel) == ("Interrupted. Press Run to start again. The results shown are from the run "
                                   "before.")

    def failed(photo, steps, report) -> None:  # an encoder's download offline, say: it showed the old toon unsaid
        raise OSError("could not download 'e4e-ffhq': no internet connection")

    monkeypatch.setattr(panel, "_run", failed)
    panel.run_button.click()
    assert _status_text(panel).endswith("no internet connection\nThe results shown are from the run before.")


@pytest.mark.parametrize("colab", [False, True])
def test_the_save_cell_after_an_interrupted_run_says_to_press_run(toonifier, tmp_path, monkeypatch, capsys, colab):
    """After an interrupted Run, the photo still loaded, the save cell said to upload a photo (Colab: to run the photo
    cell again, another upload dialog) where pressing Run would do (forty-fourth session's audit). A photo whose Run
    found no face still gets the advice to choose another."""
    from tiny import write_photos

    from toonlib import widgets
    from toonlib.widgets import ToonifyPanel

    monkeypatch.setattr(widgets, "in_colab", lambda: colab)
    photos = write_photos(tmp_path / "photos")
    panel = ToonifyPanel(toonifier, steps=3, folder=tmp_path / "uploads")
    panel.set_photo(photos / "hopper.jpg")
    run = panel._run
    monkeypatch.setattr(panel, "_run", lambda photo, steps, report: keyboard_interrupt())
    panel.run_button.click()
    assert _status_text(panel) == "Interrupted. Press Run to start again."
    panel.save(tmp_path / "toon.png")
    assert capsys.readouterr().out == ("No toon yet for hopper.jpg: press Run in the panel above and let it finish, "
                                       "then run this cell again.\n")
    assert not (tmp_path / "toon.png").exists()
    monkeypatch.setattr(panel, "_run", run)
    panel.set_photo(photos / "coffee.png")  # no face: Run fails on the photo itself
    panel.run_button.click()
    assert _status_text(panel).startswith("no face was found in ")
    panel.save(tmp_path / "toon.png")
    upload = "run the photo cell above again to upload a photo" if colab else "upload a photo in the panel above"
    assert capsys.readouterr().out.startswith(f"No toon yet: {upload}")


def test_photo_panels_refuse_settings_their_controls_cannot_show(toonifier):
    """Notebooks 03 and 04 with a parameter out of the controls' choices were ipywidgets TraitError tracebacks
    (space = "z", a swap_res the model has no layer of), and steps = 0 ran one step and saved it: a ValueError (one
    line in a notebook) naming what is allowed."""
    from toonlib.widgets import ProjectionPanel, ToonifyPanel

    G = tiny_generator(0)
    with pytest.raises(ValueError) as error:
        ProjectionPanel(G, space="z")
    assert str(error.value) == ("space must be 'w+' or 'w' (W+: one w per layer, as Toonify; W: one w for all "
                                "layers), got 'z'")
    for make in (lambda: ProjectionPanel(G, steps=0), lambda: ToonifyPanel(toonifier, steps=0)):
        with pytest.raises(ValueError) as error:
            make()
        assert str(error.value) == "steps must be a whole number >= 1, got 0"
    with pytest.raises(ValueError, match="^detector must be 'auto', 'face_alignment' or 'dlib', got 'x'$"):
        ProjectionPanel(G, detector="x")  # 03's detector = "x" was said only when Run was pressed
    # a video named as another format: refused by `save_video` after the first Run's projection (forty-fifth session)
    with pytest.raises(ValueError, match=r"^ProjectionPanel\(video=\) writes an H.264 video \(MP4\), and 'x.gif' names "
                                         r"an image \(\.gif\): nothing was written; name it 'x.mp4'"):
        ProjectionPanel(G, video="x.gif")
    # a swap resolution the panel's slider has no stop for: the Toonifier refuses it now, before any panel is built
    with pytest.raises(ValueError, match="swap_res 64 is above the 32 px of the toon model"):
        toonifier.set_blend(64)
    assert ToonifyPanel(toonifier).swap_res.value == "published"


def test_toonify_panel_starts_at_the_swap_resolution_it_is_given(toonifier, tmp_path):
    """Notebook 04's photo cell run again made a panel that started at the blend the last panel's slider had left in
    the shared toonifier, not at the notebook's swap_res: a panel starts at the `swap_res` it is given (None: the
    published blend; by default the toonifier's) and runs there."""
    from tiny import write_photos

    from toonlib.widgets import ToonifyPanel

    photo = write_photos(tmp_path / "photos") / "hopper.jpg"
    last = ToonifyPanel(toonifier, steps=1, folder=tmp_path / "uploads")
    last.set_photo(photo)
    last.run()
    last.swap_res.value = 16  # re-blends the toonifier the panels share
    assert toonifier.blend_setting[0] == 16
    assert ToonifyPanel(toonifier, steps=1, folder=tmp_path / "uploads").swap_res.value == 16  # the toonifier's
    assert ToonifyPanel(toonifier, swap_res=None, folder=tmp_path / "uploads").swap_res.value == "published"
    panel = ToonifyPanel(toonifier, steps=1, swap_res=8, folder=tmp_path / "uploads")
    assert panel.swap_res.value == 8
    panel.set_photo(photo)
    panel.run()
    assert toonifier.blend_setting[0] == 8 and "toon, blend at 8 px" in panel.tiles["toon"][0].value
    with pytest.raises(ValueError) as error:
        ToonifyPanel(toonifier, swap_res=64)
    assert str(error.value) == ("swap_res must be None, 4, 8, 16 or 32 (None: the published blend; a resolution of "
                                "the models, px), got 64")


def test_toonify_panel_keeps_the_toonifiers_level_and_blend_width(tmp_path, random_vgg_torch_home, monkeypatch):
    """A toonifier made with level=1, blend_width=1.5 drew the panel's toons at the plain level-0, hard-switch blend
    (the caption saying "blend at 16 px"), and was left at it for the caller's own calls (forty-second session's
    audit): the panel keeps its shape at every swap resolution and says it."""
    from tiny import write_photos, write_toonify_models

    from toonlib.pipeline import Toonifier
    from toonlib.widgets import ToonifyPanel

    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    base_path, toon_path, base, toon = write_toonify_models(tmp_path)
    toonifier = Toonifier(base_path, toon_path, swap_res=16, level=1, blend_width=1.5, detector="dlib")
    panel = ToonifyPanel(toonifier, steps=1, folder=tmp_path / "uploads")
    panel.set_photo(write_photos(tmp_path / "photos") / "hopper.jpg")
    panel.run()
    w = panel.result.w
    shaped = to_uint8(blend(toon, base, 16, level=1, blend_width=1.5).synthesis(w))[0]
    assert np.array_equal(np.asarray(panel.result.toon), shaped)
    assert "toon, blend at 16 px, level 1, smooth width 1.5" in panel.tiles["toon"][0].value
    assert toonifier.blend_setting == (16, 1, 1.5)
    panel.swap_res.value = "published"
    panel.swap_res.value = 8  # its shape again, though the published blend has none
    assert toonifier.blend_setting == (8, 1, 1.5)
    shaped = to_uint8(blend(toon, base, 8, level=1, blend_width=1.5).synthesis(w))[0]
    assert np.array_equal(np.asarray(panel.result.toon), shaped)
    assert "with the blend at 8 px, level 1, smooth width 1.5." in panel.status.value


def test_toonify_panels_steps_start_at_each_modes_own_steps(toonifier, tmp_path):
    """Notebook 04's panel ran e4e+optimize at its 500 steps, where the command line and the API run 100 (forty-second
    session's audit): without steps the slider starts at the mode's own and follows a change of mode, unless the
    user moved it; a start given is every mode's, 500 as well (it was taken for none, e4e+optimize starting at 100:
    forty-third session's audit)."""
    from toonlib.widgets import ToonifyPanel

    models = dict(base=str(tmp_path / "base.safetensors"), toon=str(tmp_path / "toon.safetensors"), detector="dlib")
    panel = ToonifyPanel(toonifier, models=models, folder=tmp_path / "uploads")
    assert panel.steps.value == 500
    panel.inversion.value = "e4e+optimize"
    assert panel.steps.value == 100
    panel.inversion.value = "e4e"  # no steps: the slider is off, as it was
    panel.inversion.value = "optimize"
    assert panel.steps.value == 500
    panel.steps.value = 300  # the user's
    panel.inversion.value = "e4e+optimize"
    assert panel.steps.value == 300
    for steps in (500, 2):
        panel = ToonifyPanel(toonifier, steps=steps, models=models, folder=tmp_path / "uploads")
        panel.inversion.value = "e4e+optimize"
        assert panel.steps.value == steps
        panel.inversion.value = "optimize"
        assert panel.steps.value == steps


def test_toonify_panels_steps_keep_a_value_the_user_chose_through_a_round_trip_of_modes(toonifier, tmp_path):
    """The user's 100 in optimise was kept in e4e+optimize, whose start 100 is, then taken for unmoved there and put
    back to 500 in optimise; the user's 500 in e4e+optimize the same way (forty-fourth session's audit)."""
    from toonlib.widgets import ToonifyPanel

    models = dict(base=str(tmp_path / "base.safetensors"), toon=str(tmp_path / "toon.safetensors"), detector="dlib")
    for first, second, chosen in (("optimize", "e4e+optimize", 100), ("e4e+optimize", "optimize", 500)):
        panel = ToonifyPanel(toonifier, models=models, folder=tmp_path / "uploads")
        panel.inversion.value = first
        panel.steps.value = chosen  # the user's
        for mode in (second, "e4e", first, second, first):
            panel.inversion.value = mode
            assert panel.steps.value == chosen, (first, mode)
    panel = ToonifyPanel(toonifier, models=models, folder=tmp_path / "uploads")
    for mode, start in (("e4e+optimize", 100), ("optimize", 500), ("e4e+optimize", 100)):  # not moved: it follows
        panel.inversion.value = mode
        assert panel.steps.value == start


def test_projection_panel_runs_the_chosen_steps(tmp_path, monkeypatch, random_vgg_torch_home, capsys):
    from tiny import write_photos

    from toonlib.widgets import ProjectionPanel

    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    photos = write_photos(tmp_path / "photos")
    from toonlib import align

    asked, backend = [], align._get_backend  # the face detector on G's device (it took the default, CUDA)
    monkeypatch.setattr(align, "_get_backend",
                        lambda detector, device: asked.append(device) or backend(detector, device))
    panel = ProjectionPanel(tiny_generator(0), steps=2, frame_every=1, detector="dlib", video=tmp_path / "p.mp4")
    with pytest.raises(ValueError, match="Upload a photo"):
        panel.run()
    panel.set_photo(photos / "hopper.jpg")
    panel.steps.value = 4
    panel.space.value = "w"
    panel.run_button.click()
    assert panel.result is not None, panel.status.value
    assert panel.result.steps == 4 and panel.result.space == "w" and panel.progress.value == 4
    assert (tmp_path / "p.mp4").stat().st_size > 0 and "done: 4 steps" in panel.status.value
    assert asked == ["cpu"]
    panel.save(tmp_path / "w.npz")
    assert (tmp_path / "w.npz").exists() and "saved" in capsys.readouterr().out


def test_toonify_panel_loads_another_inversion_mode_when_chosen(tmp_path, encoder_checkpoint):
    """With the Toonifier arguments (`models`), the panel offers every mode and builds a mode's toonifier on its
    first run; the encoder-only modes take no steps. Tiny e4e checkpoint from the encoder reference recipe."""
    from tiny import write_photos

    from toonlib.blending import blend as blend_models
    from toonlib.checkpoints import Networks, load_network, save_network
    from toonlib.pipeline import INVERT_MODES, Toonifier
    from toonlib.widgets import ToonifyPanel

    e4e = encoder_checkpoint("e4e_tiny")
    base = load_network(e4e).G_ema
    toon = copy.deepcopy(base)
    with torch.no_grad():
        for param in toon.synthesis.parameters():
            param.add_(0.05 * param.std().nan_to_num(0) * torch.randn_like(param))
    save_network(tmp_path / "base.safetensors", base)
    save_network(tmp_path / "toon.safetensors", Networks(G_ema=blend_models(toon, base, 8), G=toon))
    models = dict(base=tmp_path / "base.safetensors", toon=tmp_path / "toon.safetensors", detector="dlib",
                  device="cpu", encoder=e4e)
    panel = ToonifyPanel(Toonifier(**{**models, "encoder": None}), steps=2, models=models,
                         folder=tmp_path / "uploads")
    assert [mode for _, mode in panel.inversion.options] == list(INVERT_MODES)
    # names short enough for the closed menu at a phone's width; what the chosen one does in a line that wraps
    assert [name for name, _ in panel.inversion.options] == ["optimise", "e4e encoder", "pSp encoder",
                                                             "e4e, then optimise", "pSp Toonify encoder"]
    assert "slow, closest to the photo" in panel.inversion_detail.value and not panel.steps.disabled
    panel.inversion.value = "e4e"
    assert panel.steps.disabled  # one pass of the encoder: no projection steps
    assert "one pass" in panel.inversion_detail.value and panel.inversion_detail.layout.display is None
    panel.inversion.value = "e4e+optimize"  # its name says it all
    assert panel.inversion_detail.layout.display == "none" and not panel.steps.disabled
    panel.inversion.value = "e4e"
    panel.set_photo(write_photos(tmp_path / "photos") / "hopper.jpg")
    panel.run_button.click()
    assert panel.result is not None, panel.status.value
    assert panel.result.invert == "e4e" and set(panel.toonifiers) == {"optimize", "e4e"}
    assert "done: e4e encoder (one pass)" in panel.status.value
    assert torch.equal(panel.result.w, panel.toonifiers["e4e"].encoder.encode(panel.result.aligned))
    toon_image = panel.tiles["toon"][1].value
    panel.swap_res.value = 16  # re-rendered by the e4e toonifier's generator
    assert panel.tiles["toon"][1].value != toon_image
    assert panel.toonifiers["e4e"].blend_setting[0] == 16
    # a panel started in an encoder mode builds the optimize mode from `models` without their encoder (refused there)
    panel = ToonifyPanel(panel.toonifiers["e4e"], steps=2, models=models, folder=tmp_path / "uploads")
    panel.inversion.value = "optimize"
    assert panel.toonifier.invert == "optimize" and panel.toonifier.encoder is None


def test_the_saved_latents_command_draws_it_with_the_panels_models_from_any_folder(tmp_path, monkeypatch, capsys,
                                                                                  random_vgg_torch_home):
    """04's save cell said `toonlib toonify face-latent.npz -o face-16.png --swap-res 16`: the file's name alone (with
    Drive mounted the latent is there, not in the shell's folder) and no models (the registry's, where 04 had the
    user's own): as printed it failed, offline or with another folder."""
    import shlex

    from tiny import write_photos, write_toonify_models

    import toonlib.cli
    from toonlib.pipeline import Toonifier
    from toonlib.widgets import ToonifyPanel

    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    write_toonify_models(tmp_path / "my models")
    monkeypatch.chdir(tmp_path)  # 04's folder: its models and its output (no Drive) relative to it
    models = dict(base="my models/base.safetensors", toon="my models/toon.safetensors", toon_network=None,
                  detector="dlib")
    photo = write_photos(tmp_path / "photos") / "hopper.jpg"
    for given in (models, None):  # the panel of 04, and one made without `models` (its toonifier's are taken)
        panel = ToonifyPanel(Toonifier(**models), steps=1, models=given, folder=tmp_path / "uploads")
        panel.set_photo(photo)
        panel.run_button.click()
        panel.save(Path("face.png"))
        command = re.search(r"\(`(toonlib toonify .*)` draws it at another blend", capsys.readouterr().out).group(1)
        assert "--toon-network" not in command and "--swap-res 16" in command
        with monkeypatch.context() as elsewhere:
            (tmp_path / "elsewhere").mkdir(exist_ok=True)
            elsewhere.chdir(tmp_path / "elsewhere")
            elsewhere.setenv("TOONLIB_CACHE", str(tmp_path / "empty cache"))  # offline: no registry model at hand
            assert toonlib.cli.main(shlex.split(command)[1:]) == 0
        assert Image.open(tmp_path / "face-16.png").size == (32, 32)
        (tmp_path / "face-16.png").unlink()


def test_a_new_photo_clears_the_results_of_the_one_before(toonifier, tmp_path, capsys):
    """The panel showed the last photo's aligned face, toon and pasted photo under a newly uploaded photo (and the
    slider re-rendered them, save wrote them); a file that is no image left the photo before on show."""
    from tiny import write_photos

    from toonlib.widgets import ToonifyPanel

    photos = write_photos(tmp_path / "photos")
    panel = ToonifyPanel(toonifier, steps=1, folder=tmp_path / "uploads")
    _upload(panel.upload, "hopper.jpg", (photos / "hopper.jpg").read_bytes())
    panel.run_button.click()
    assert "done: 1 step (optimise)" in panel.status.value, panel.status.value  # as the menu names it
    assert all(image.value for _, image in panel.tiles.values())
    _upload(panel.upload, "astronaut.png", (photos / "astronaut.png").read_bytes())
    assert panel.result is None and not any(image.value for _, image in panel.tiles.values())
    assert panel.photo_image.value and not panel.run_button.disabled
    panel.save(tmp_path / "toon.png")
    assert "No toon yet" in capsys.readouterr().out and not (tmp_path / "toon.png").exists()
    _upload(panel.upload, "notes.txt", b"not an image")
    assert panel.photo is None and not panel.photo_image.value and panel.run_button.disabled
    assert "cannot read &#x27;notes.txt&#x27; as an image" in panel.status.value


def test_projection_panel_clears_its_results_and_shows_the_video_as_wide_as_the_frames(
        tmp_path, monkeypatch, random_vgg_torch_home):
    """The video of a 32 px model was shown 64 x 32 px, its controls unusable; it is as wide as the scrubber's
    frames. A new photo clears the plots, video and scrubber of the photo before."""
    import IPython.display
    from tiny import write_photos

    from toonlib.widgets import FrameScrubber, ProjectionPanel

    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objects, **kwargs: shown.extend(objects))
    photos = write_photos(tmp_path / "photos")
    panel = ProjectionPanel(tiny_generator(0), steps=2, frame_every=1, detector="dlib", video=tmp_path / "p.mp4")
    panel.set_photo(photos / "hopper.jpg")
    panel.run_button.click()
    assert panel.result is not None, panel.status.value
    [video] = [obj for obj in shown if isinstance(obj, IPython.display.Video)]
    assert video.width == 512  # the 64 x 32 px frames (target | projection) at 8x, like the scrubber's
    assert 'style="max-width: 100%; height: auto"' in video._repr_html_()  # narrower in an output of 370 px
    import imageio_ffmpeg

    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "p.mp4"))
    assert frames == 2 and seconds >= 2, (frames, seconds)  # at 30 fps it was over in 0.07 s ("0:00 / 0:00")
    [scrubber] = [obj for obj in shown if isinstance(obj, FrameScrubber)]
    assert scrubber.slider.value == 2 and "frame 2 of 2" in scrubber.caption.value  # the slider read 1
    cleared = []
    monkeypatch.setattr(panel.output, "clear_output", lambda *args, **kwargs: cleared.append(True))
    panel.set_photo(photos / "astronaut.png")
    assert panel.result is None and cleared


def test_progress_bars_span_a_notebook_output_and_wrap(monkeypatch, capsys):
    """Fine-tuning's live numbers squeezed the notebook bar to nothing at a 1024 px window, and at a 360 px output ran
    past its edge (tqdm writes their spaces as figure spaces, which never break); in a terminal the bar follows the
    window's width. The notebook's bar was taken for a log's (tqdm.auto's class is its own subclass there): it was
    updated every 10 s and not erased."""
    import tqdm.asyncio
    import tqdm.auto
    import tqdm.notebook

    from toonlib.messages import LOG_PROGRESS_INTERVAL, _erasable, progress_bar

    class AutoBar(tqdm.notebook.tqdm, tqdm.asyncio.tqdm):  # what tqdm.auto defines in a notebook's kernel
        pass

    AutoBar.__module__ = "tqdm.auto"
    monkeypatch.setattr(tqdm.auto, "tqdm", AutoBar)
    bar = progress_bar(total=4, desc="fine-tuning")
    bar.set_postfix({"G": "1.206", "D": "0.512", "p": "0.000", "r_t": "0.125"})
    bar.update(4)
    assert bar.mininterval != LOG_PROGRESS_INTERVAL and _erasable(bar)
    bar.close()
    assert bar.container.layout.width == "100%" and bar.container.layout.flex_flow == "row wrap"
    assert "fine-tuning: 100%" in repr(bar.container)  # its text (what a log or a plain front end shows) works
    numbers = bar.container.children[-1].value
    assert "G=1.206, D=0.512, p=0.000, r_t=0.125" in numbers and "\u2007" not in numbers  # spaces that break
    monkeypatch.undo()
    with progress_bar(total=4, desc="fine-tuning") as bar:
        assert bar.dynamic_ncols


def test_a_one_step_loss_plot_shows_its_step():
    from toonlib.notebook import plot_losses

    [line] = plot_losses(np.array([0.5])).axes[0].lines
    assert line.get_marker() == "o"
    [line] = plot_losses(np.linspace(1, 0, 500)).axes[0].lines
    assert line.get_marker() in ("None", None, "")


def test_a_short_loss_plot_has_whole_steps_on_its_axis():
    """A 3-step projection's plot had ticks at 0.25, 0.5, ... steps."""
    from toonlib.notebook import plot_losses

    figure = plot_losses(np.array([0.5, 0.4, 0.3]))
    figure.canvas.draw()
    ticks = figure.axes[0].get_xticks()
    assert len(ticks) >= 2 and all(tick == round(tick) for tick in ticks), ticks
    figure = plot_losses(np.array([0.5]))  # one step (03 with steps = 1): ticked from -0.06 to 0.06
    figure.canvas.draw()
    low, high = figure.axes[0].get_xlim()
    assert [tick for tick in figure.axes[0].get_xticks() if low <= tick <= high] == [0]


def test_save_image_warns_of_a_zero_to_one_tensor(tmp_path):
    """A [0, 1] tensor (torchvision's to_tensor) was saved as a washed-out picture without a word: it is warned of,
    with what to pass; a [-1, 1] one (what a generator draws) saves silently, and a refused name warns of nothing."""
    zero_to_one = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match=r"the image tensor's values all lie in 0 \.\. [\d.]+; save_image reads a "
                                         r"tensor as \[-1, 1\].*pass x \* 2 - 1"):
        save_image(zero_to_one, tmp_path / "pale.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "pale.png")), to_uint8(zero_to_one))  # saved all the same
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_image(zero_to_one * 2 - 1, tmp_path / "drawn.png")
        with pytest.raises(ValueError, match="the format follows the file's suffix"):
            save_image(zero_to_one, tmp_path / "pale.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drawn.png", "pale.png"]


def test_a_tensor_of_0_to_255_values_is_warned_of_with_what_to_pass(tmp_path):
    """to_pil of a float tensor in 0 .. 255 (torch.from_numpy(array).float()) came out nearly all white without a word;
    save_image warned of it with the advice for a [0, 1] tensor (x * 2 - 1)."""
    pixels = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0)) * 255
    told = (r"^the image tensor's values all lie in 0 \.\. [\d.]+; toonlib reads .*For 0 \.\. 255 values pass "
            r"x / 127\.5 - 1$")
    with pytest.warns(UserWarning, match=told):
        to_pil(pixels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_image(pixels, tmp_path / "white.png")
    assert len(caught) == 1 and re.match(told, str(caught[0].message))  # not also "pass x * 2 - 1"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_pil(pixels / 127.5 - 1)
        to_pil(torch.full((3, 4, 4), 1.5))  # beyond [-1, 1] a little, as a generator draws: no 0 .. 255 tensor


def test_a_panels_status_line_names_what_a_notebook_sets(toonifier, tmp_path, monkeypatch):
    """The photo panels' status line said "or use dlib's landmarks: --detector dlib (detector='dlib')" where the same
    error raised in a cell said "detector='dlib'" (a notebook has no command line; audit); with the notebook's
    parameters as `brief_errors` was given them, `base=` is said as the notebook's `base_model=`."""
    from toonlib import notebook
    from toonlib.widgets import ToonifyPanel

    panel = ToonifyPanel(toonifier, steps=1, folder=tmp_path / "uploads")

    def fail():
        raise ValueError("face-alignment is not usable here: use dlib's landmarks: --detector dlib (detector='dlib'), "
                         "or pair it with another base=x.pkl")

    monkeypatch.setattr(notebook, "_NOTEBOOK_PARAMETERS", {"base": "base_model"})
    panel._showing_errors(fail, None)
    text = _status_text(panel)
    assert "use dlib's landmarks: detector='dlib', or pair it with another base_model=x.pkl" in text, text


def test_a_panel_made_before_the_set_up_cell_ran_again_refuses_to_run_and_save(toonifier, tmp_path, capsys):
    """04's set-up cell run again with another toon_model: the panel still shown kept the models before, and its Run
    and the save cell used them under the new parameter, nothing said (thirty-ninth session's audit). Every set-up cell
    calls `brief_errors` first, which counts them; a panel made before the last one refuses."""
    from tiny import write_photos

    from toonlib import notebook
    from toonlib.notebook import NotebookStop
    from toonlib.widgets import ProjectionPanel, ToonifyPanel

    said = "The set-up cell ran again since this panel was made: run the photo cell again."
    photos = write_photos(tmp_path / "photos")
    notebook.brief_errors()  # the set-up cell (outside IPython it counts all the same)
    panel = ToonifyPanel(toonifier, steps=1, folder=tmp_path / "uploads")
    projection = ProjectionPanel(tiny_generator(0), steps=1, detector="dlib")
    panel.set_photo(photos / "hopper.jpg")
    panel.run_button.click()
    assert "done: 1 step" in panel.status.value, panel.status.value
    notebook.brief_errors()  # the set-up cell run again
    panel.run_button.click()
    assert _status_text(panel) == f"{said}\nThe results shown are from the run before.", _status_text(panel)
    panel.swap_res.value = 16  # no re-render with the models before either: said, the slider put back
    assert _status_text(panel).startswith(said) and panel.swap_res.value == "published"
    for stale in (panel, projection):  # the save cell
        with pytest.raises(NotebookStop, match=rf"^{re.escape(said)}$"):
            stale.save(tmp_path / "me.png")
    assert not list(tmp_path.glob("me*")) and "saved" not in capsys.readouterr().out
    fresh = ToonifyPanel(toonifier, steps=1, folder=tmp_path / "uploads")  # the photo cell run again
    fresh.set_photo(photos / "hopper.jpg")
    fresh.run_button.click()
    assert "done: 1 step" in fresh.status.value, fresh.status.value
    fresh.save(tmp_path / "me.png")
    assert (tmp_path / "me.png").is_file()


def test_a_new_panel_stops_the_run_of_the_panel_before(toonifier, tmp_path, capsys):
    """04's photo cell run again during a Run (JupyterLab runs a widget's callback in a thread of the kernel, its
    subshell): the Run went on unseen, holding the CPU and the subshell, so the new panel's Run waited behind it
    (thirty-ninth session's audit). The new panel stops it, and the old panel says why."""
    import threading
    import time

    from tiny import write_photos

    from toonlib.widgets import ToonifyPanel, toonify_panel

    photos = write_photos(tmp_path / "photos")
    old = ToonifyPanel(toonifier, steps=1000, folder=tmp_path / "uploads")
    old.set_photo(photos / "hopper.jpg")
    started, given_up = threading.Event(), threading.Event()

    def projecting(photo, steps, report) -> None:  # a long projection, step by step
        step = 0
        while not given_up.is_set():
            report(step, 0.5)
            started.set()
            step += 1
            time.sleep(0.01)

    old._run = projecting
    subshell = threading.Thread(target=old.run_button.click, daemon=True)  # the Run click, in the subshell's thread
    subshell.start()
    try:
        assert started.wait(30)
        new = toonify_panel(toonifier, photos / "hopper.jpg", steps=2, folder=tmp_path / "uploads")
        subshell.join(10)
        stopped = not subshell.is_alive()
    finally:
        given_up.set()
        subshell.join(10)
    assert stopped, "the run of the panel before went on"
    assert _status_text(old) == "Interrupted. A new panel was made (the photo cell ran again): use that one."
    assert not old.run_button.disabled
    assert "done: 2 steps" in new.status.value, new.status.value  # and the new one ran at once
    new.run_button.click()  # a Run of its own afterwards: nothing of the one before in its way
    assert "done: 2 steps" in new.status.value, new.status.value


def test_the_device_report_of_the_finetuning_notebook_leaves_projection_out(monkeypatch):
    """01's set-up cell said how long a projection step and the e4e mode take, which that notebook does neither of
    (thirty-ninth session's audit): with `training` it says what training on the CPU is like instead."""
    from toonlib import notebook, runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "native_bf16", lambda device: True)
    report = notebook.device_report(print_it=False, training=True)
    assert "projection" not in report and "e4e" not in report and "bfloat16" not in report, report
    assert report.endswith(f"cores). In Colab choose Runtime > Change runtime type > GPU.\n{notebook.CPU_TRAINING}")
    assert "e4e inversion mode takes seconds" in notebook.device_report(print_it=False)


def _finished_projection(G) -> ProjectionResult:
    """A `ProjectionResult` as a finished Run leaves it (one step), without the minutes of one."""
    return ProjectionResult(w=torch.zeros(1, G.num_ws, G.w_dim), images=torch.zeros(1, 3, G.img_resolution,
                                                                                    G.img_resolution),
                            noise={}, losses=np.array([[0.5]]), space="w+", steps=1)


def test_the_projection_panels_save_keeps_the_model_and_the_photo_and_says_what_it_replaced(tmp_path, capsys):
    """03's save cell wrote the latent over whatever its path named: the model file (then no network) and the user's
    photo; and over an earlier latent without a word, where `toonlib project` says "(it replaced the file that was
    there)" (fortieth session's audit)."""
    from tiny import write_photos

    from toonlib.checkpoints import load_generator, save_network
    from toonlib.widgets import ProjectionPanel

    save_network(tmp_path / "base.safetensors", tiny_generator(0))
    photos = write_photos(tmp_path / "photos")
    model, photo = (tmp_path / "base.safetensors").read_bytes(), (photos / "hopper.jpg").read_bytes()
    panel = ProjectionPanel(load_generator(tmp_path / "base.safetensors"), steps=1, detector="dlib")
    panel.set_photo(photos / "hopper.jpg")
    panel.result = _finished_projection(panel.G)
    with pytest.raises(ValueError, match=r"is the base model's file: writing there would replace that model"):
        panel.save(tmp_path / "base.safetensors")
    with pytest.raises(ValueError, match=r"hopper\.jpg: it is an input photo; choose another path"):
        panel.save(photos / "hopper.jpg")
    assert (tmp_path / "base.safetensors").read_bytes() == model and (photos / "hopper.jpg").read_bytes() == photo
    assert "saved" not in capsys.readouterr().out
    panel.save(tmp_path / "w.npz")
    assert capsys.readouterr().out.strip() == f"saved {tmp_path / 'w.npz'}: hopper.jpg projected in W+, 1 step"
    panel.save(tmp_path / "w.npz")  # another photo's, an hour later
    assert capsys.readouterr().out.strip() == (f"saved {tmp_path / 'w.npz'} (it replaced the file that was there): "
                                               "hopper.jpg projected in W+, 1 step")


def test_a_projection_is_saved_after_the_set_up_cell_loaded_its_model_again(tmp_path, capsys):
    """03's set-up cell run again with nothing changed: the save cell refused the finished projection, of the same
    model, the only way out a projection again (up to an hour on a CPU; fortieth session's audit). It saves it; after a
    set-up of another model it still refuses."""
    from toonlib import notebook
    from toonlib.checkpoints import save_network
    from toonlib.notebook import SET_UP_AGAIN, NotebookStop
    from toonlib.widgets import ProjectionPanel

    for name, seed in (("base.safetensors", 0), ("other.safetensors", 1)):
        save_network(tmp_path / name, tiny_generator(seed))
    model = str(tmp_path / "base.safetensors")
    notebook.brief_errors()  # the set-up cell
    panel = ProjectionPanel(notebook.load_model(model), steps=1, detector="dlib")
    panel.result = _finished_projection(panel.G)
    notebook.brief_errors()  # the set-up cell run again, unchanged
    notebook.load_model(model)
    panel.save(tmp_path / "w.npz")
    assert (tmp_path / "w.npz").is_file() and capsys.readouterr().out.startswith("saved")
    notebook.brief_errors()  # and with another model
    notebook.load_model(str(tmp_path / "other.safetensors"))
    with pytest.raises(NotebookStop, match=rf"^{re.escape(SET_UP_AGAIN)}$"):
        panel.save(tmp_path / "w2.npz")
    notebook.brief_errors()  # a set-up cell that stopped before its model loaded
    with pytest.raises(NotebookStop, match=rf"^{re.escape(SET_UP_AGAIN)}$"):
        panel.save(tmp_path / "w2.npz")
    assert not (tmp_path / "w2.npz").exists()


def test_a_blend_explorer_made_before_the_set_up_ran_again_neither_draws_nor_saves(tmp_path, capsys):
    """02 run through, then another base_model and its set-up and loading cells run again: the grid and save cells
    used the explorer of the models before, and the saved file's record named the old base (fortieth session's
    audit). The grid, the save and the sliders now say to run the cells that make a new one."""
    from toonlib import notebook
    from toonlib.checkpoints import save_network
    from toonlib.notebook import NotebookStop, load_blend_models

    said = ("The set-up cell ran again since this explorer was made: run the cell that loads the models and the "
            "explorer's cell again.")
    base, toon = tiny_generator(0), tiny_generator(1)
    notebook.brief_errors()  # the set-up cell
    explorer = blend_explorer(base, toon, seeds=[0])
    notebook.brief_errors()  # run again
    for action in (explorer.swap_resolution_grid, lambda: explorer.save(tmp_path / "blend.safetensors")):
        with pytest.raises(NotebookStop, match=rf"^{re.escape(said)}$"):
            action()
    drawn = explorer.image.value
    explorer.swap_res.value = 8
    assert _status_text(explorer).startswith(said) and explorer.image.value == drawn
    for name, G in (("base.safetensors", base), ("toon.safetensors", toon)):
        save_network(tmp_path / name, G)
    fresh = blend_explorer(base, toon, seeds=[0])  # the explorer cell run again: it goes on
    fresh.save(tmp_path / "blend.safetensors")
    load_blend_models(str(tmp_path / "base.safetensors"), str(tmp_path / "toon.safetensors"))  # 02's loading cell
    with pytest.raises(NotebookStop, match=rf"^{re.escape(said)}$"):
        fresh.save(tmp_path / "blend2.safetensors")
    assert not (tmp_path / "blend2.safetensors").exists()


def test_the_blend_explorers_save_says_what_it_replaced_and_its_grid_shows_its_progress(tmp_path, capsys):
    """02's save replaced an earlier blend without a word, and its grid cell drew for a minute on a CPU with nothing
    shown (fortieth session's audit): the save says "(it replaced the file that was there)", as `toonlib blend` does,
    and the grid shows a bar of its columns, which ends complete."""
    explorer = blend_explorer(tiny_generator(0), tiny_generator(1), seeds=[0], swap_res=8)
    explorer.save(tmp_path / "blend.safetensors")
    assert capsys.readouterr().out.strip() == (f"saved {tmp_path / 'blend.safetensors'}: toon up to 8 px (level 0), "
                                               "FFHQ above; hard switch")
    explorer.save(tmp_path / "blend.safetensors")
    assert capsys.readouterr().out.strip() == (f"saved {tmp_path / 'blend.safetensors'} (it replaced the file that "
                                               "was there): toon up to 8 px (level 0), FFHQ above; hard switch")
    explorer.swap_resolution_grid(cell=32)
    columns = len(explorer.base.synthesis.block_resolutions) - 1 + 2  # base, every swap but the last, toon
    bar = capsys.readouterr().err.strip().split("\r")[-1]
    assert bar.startswith("grid: 100%") and f"{columns}/{columns}" in bar, bar


def test_the_projection_panel_says_it_prepares_the_projection_after_finding_the_face(tmp_path, monkeypatch,
                                                                                    random_vgg_torch_home):
    """03's Run said "finding the face..." while LPIPS' VGG16 (553 MB) downloaded, then the first step (fortieth
    session's audit): the status says what it does before the projection's first step."""
    from tiny import write_photos

    from toonlib.widgets import ProjectionPanel

    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    panel = ProjectionPanel(tiny_generator(0), steps=1, frame_every=1, detector="dlib")
    panel.set_photo(write_photos(tmp_path / "photos") / "hopper.jpg")
    said = []
    panel.status.observe(lambda change: said.append(html.unescape(re.sub(r"<[^>]+>", "", change["new"]))),
                         names="value")
    panel.run_button.click()
    assert "done: 1 step" in said[-1], said
    preparing = [i for i, text in enumerate(said) if text.startswith("preparing the projection")]
    assert preparing and said[preparing[0] - 1] == "finding the face..." and said[preparing[0] + 1].startswith(
        "step 1 of 1"), said


# --------------------------------------------------------------------------------------------
# Forty-first session's audit of notebook 04


def test_the_toonify_panels_save_loads_no_models_of_the_mode_its_menu_shows(toonifier, tmp_path, capsys):
    """04's save cell after "e4e encoder" was picked in the inversion menu, with no Run since, loaded (and downloaded,
    ~1 GB) that mode's models to write the text of a command: offline it stopped half done, the latent's line unsaid,
    and the status line stayed "loading the models of e4e encoder (one pass)..." (forty-first session's audit)."""
    from tiny import write_photos

    from toonlib.widgets import ToonifyPanel

    models = dict(base=tmp_path / "base.safetensors", toon=tmp_path / "toon.safetensors", detector="dlib",
                  encoder=tmp_path / "e4e.pt")  # the e4e mode's encoder, not at hand (offline, never downloaded)
    panel = ToonifyPanel(toonifier, steps=1, models=models, folder=tmp_path / "uploads")
    panel.set_photo(write_photos(tmp_path / "photos") / "hopper.jpg")
    panel.run_button.click()
    done = panel.status.value
    assert "done: 1 step (optimise)" in done, done
    panel.inversion.value = "e4e"  # looked at, not run
    panel.save(tmp_path / "toon.png")
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [f"saved {tmp_path / 'toon.png'}", f"saved {tmp_path / 'toon-pasted.png'}"], lines
    assert lines[2].startswith(f"saved {tmp_path / 'toon-latent.npz'}: the face's latent (`toonlib toonify "), lines
    assert panel.status.value == done and set(panel.toonifiers) == {"optimize"}  # nothing loaded, nothing said


def test_a_new_photo_empties_the_progress_bar_of_the_run_before(toonifier, tmp_path):
    """04's bar stayed full ("2 / 2") beside a new photo that had not been run (forty-first session's audit)."""
    from tiny import write_photos

    from toonlib.widgets import ToonifyPanel

    photos = write_photos(tmp_path / "photos")
    panel = ToonifyPanel(toonifier, steps=2, folder=tmp_path / "uploads")
    panel.set_photo(photos / "hopper.jpg")
    panel.run_button.click()
    assert panel.progress.value == panel.progress.max == 2, panel.status.value
    panel.set_photo(photos / "coffee.png")
    assert panel.progress.value == 0 and _status_text(panel) == "coffee.png: 600 x 400 px. Press Run."


def test_the_toonify_panel_says_it_toonified_the_largest_of_the_faces_found(toonifier, tmp_path):
    """04's panel toonified the largest face of a group photo and said nothing of the others (its run asks for the
    largest, which silences the pipeline's warning; that names --all-faces, which the panel has not): the pasted photo
    showed one toon beside an untouched face (forty-first session's audit). The done line says it."""
    from tiny import write_photos

    from toonlib.widgets import ToonifyPanel

    photos = write_photos(tmp_path / "photos")
    panel = ToonifyPanel(toonifier, steps=1, folder=tmp_path / "uploads")
    _upload(panel.upload, "us.jpg", _two_faces_jpeg(photos))
    panel.run_button.click()
    text = _status_text(panel)
    assert text.startswith("done: 1 step (optimise), distance ") and text.endswith(
        ". 2 faces were found in us.jpg: the largest was toonified (to toonify another, crop the photo around it; "
        "`toonlib toonify --all-faces` toonifies each). Move the swap resolution to re-render the same face."), text
    assert panel.result.faces_in_photo == 2  # the result says it too
    panel.set_photo(photos / "hopper.jpg")  # one face: nothing more said
    panel.run_button.click()
    assert "faces were found" not in _status_text(panel) and "done: 1 step" in _status_text(panel)


def test_a_save_refused_over_the_photo_names_the_notebooks_output_parameter(toonifier, tmp_path, monkeypatch):
    """04's save cell with output set to the photo said "choose another path", an argument of `ToonifyPanel.save` its
    user never wrote, and 03's the same (forty-first session's audit): their set-up cells give `brief_errors` the
    parameter, `{"path": "output"}`; Python's callers read "path" still."""
    from tiny import write_photos

    from toonlib import notebook
    from toonlib.checkpoints import load_generator, save_network
    from toonlib.widgets import ProjectionPanel, ToonifyPanel

    photos = write_photos(tmp_path / "photos")
    panel = ToonifyPanel(toonifier, steps=1, folder=tmp_path / "uploads")
    panel.set_photo(photos / "hopper.jpg")
    panel.run_button.click()
    save_network(tmp_path / "model.safetensors", tiny_generator(0))
    projection = ProjectionPanel(load_generator(tmp_path / "model.safetensors"), steps=1, detector="dlib")
    projection.set_photo(photos / "hopper.jpg")
    projection.result = _finished_projection(projection.G)
    monkeypatch.setattr(notebook, "_NOTEBOOK_PARAMETERS", {"path": "output"})  # as the set-up cells give them
    for save in (panel.save, projection.save):
        with pytest.raises(ValueError) as error:
            save(photos / "hopper.jpg")
        assert str(error.value).endswith(": it is an input photo; choose another output (in the parameters cell)")
    monkeypatch.setattr(notebook, "_NOTEBOOK_PARAMETERS", {})  # Python: the argument
    with pytest.raises(ValueError, match=r": it is an input photo; choose another path$"):
        panel.save(photos / "hopper.jpg")
    assert not list(tmp_path.glob("*.png")) and not list(photos.glob("hopper-*"))


def test_a_paste_back_that_is_not_true_or_false_is_refused_when_the_panel_is_made(toonifier):
    """04's `paste_back = 'no'` was refused only at Run, after the photo was read, as "TypeError: paste_back must be
    True or False, got 'no'" in the status line (forty-first session's audit): the photo cell says it, one line."""
    from toonlib.widgets import ToonifyPanel

    for value in ("no", 1, None):
        with pytest.raises(ValueError) as error:
            ToonifyPanel(toonifier, paste_back=value)
        assert str(error.value) == f"paste_back must be True or False, got {value!r}"
    assert ToonifyPanel(toonifier, paste_back=False).paste_back is False


@pytest.mark.filterwarnings("ignore::toonlib.blending.LineageWarning")  # unrelated tiny models
def test_the_blend_explorer_says_every_layer_is_the_toon_models_at_the_top_swap_resolution(tmp_path, capsys):
    """02 at the models' top swap resolution said "toon up to 32 px (level 0), FFHQ above; hard switch" in its status
    line and its save, where every layer of that blend is the toon model's (forty-second session's audit)."""
    explorer = blend_explorer(tiny_generator(0), tiny_generator(1), seeds=[0], swap_res=32, cell=32)
    top = "toon up to 32 px (level {}), the top resolution: every layer is the toon model's, none FFHQ's; hard switch"
    assert _status_text(explorer) == top.format(0)
    explorer.level.value = 1
    assert _status_text(explorer) == top.format(1)
    explorer.save(tmp_path / "blend.safetensors")
    assert capsys.readouterr().out.strip() == f"saved {tmp_path / 'blend.safetensors'}: {top.format(1)}"
    explorer.blend_width.value = 1.0  # a smooth switch there takes the top layers partly from FFHQ
    assert _status_text(explorer) == "toon up to 32 px (level 1), FFHQ above; smooth switch, width 1.0"
    explorer.blend_width.value, explorer.swap_res.value = 0.0, 16
    assert _status_text(explorer) == "toon up to 16 px (level 1), FFHQ above; hard switch"


@pytest.mark.filterwarnings("ignore::toonlib.blending.LineageWarning")  # unrelated tiny models
def test_the_blend_explorers_save_refused_over_a_model_names_the_notebooks_output_parameter(tmp_path, monkeypatch):
    """02's save cell with output set to the toon model's file said "the path toon.safetensors is the toon model's
    file", an argument its users never wrote, where 03's and 04's name `output` (forty-second session's audit): with
    the parameter its set-up cell gives `brief_errors`, the explorer names it; Python's callers read "the path"."""
    from tiny import write_toonify_models

    from toonlib import notebook

    base, toon, _, _ = write_toonify_models(tmp_path)
    explorer = blend_explorer(str(base), str(toon), seeds=[0], swap_res=8, cell=32)
    monkeypatch.setattr(notebook, "_NOTEBOOK_PARAMETERS", {"path": "output"})  # as 02's set-up cell gives them
    with pytest.raises(ValueError) as error:
        explorer.save(toon)
    assert str(error.value) == (f"output = {toon} is the toon model's file: writing there would replace that model; "
                                "give another output file")
    monkeypatch.setattr(notebook, "_NOTEBOOK_PARAMETERS", {})
    with pytest.raises(ValueError, match=r"^the path .* is the base model's file"):
        explorer.save(base)


def _projection_panel(tmp_path: Path, steps: int = 1):
    """A `ProjectionPanel` of a tiny model, its uploads in `tmp_path`."""
    from toonlib.widgets import ProjectionPanel

    return ProjectionPanel(tiny_generator(0), steps=steps, frame_every=1, detector="dlib", folder=tmp_path / "uploads")


def test_the_projection_panels_done_line_names_the_space_its_run_used(tmp_path, monkeypatch, random_vgg_torch_home):
    """03's "latent space" toggle clicked to W while a W+ Run went: the done line said "in W" of the W+ latent the
    save cell then saved (forty-second session's audit). It names the space the Run used."""
    from tiny import write_photos

    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    panel = _projection_panel(tmp_path, steps=2)
    panel.set_photo(write_photos(tmp_path / "photos") / "hopper.jpg")
    report = panel._report

    def clicked_meanwhile(step: int, distance: float, w=None) -> None:
        panel.space.value = "w"  # the toggle clicked while the bar moves
        report(step, distance, w)

    monkeypatch.setattr(panel, "_report", clicked_meanwhile)
    panel.run_button.click()
    assert panel.result is not None and panel.result.space == "w+", _status_text(panel)
    assert re.fullmatch(r"done: 2 steps \(optimise\), distance [\d.]+ in W\+", _status_text(panel)), _status_text(panel)


def _two_faces_jpeg(photos: Path) -> bytes:
    """A JPEG of two faces side by side, Hopper's and the astronaut's (the astronaut's the larger)."""
    hopper, astronaut = (Image.open(photos / name).convert("RGB") for name in ("hopper.jpg", "astronaut.png"))
    hopper = hopper.resize((round(hopper.width * 512 / hopper.height), 512))
    two = Image.new("RGB", (hopper.width + 512, 512))
    two.paste(hopper, (0, 0))
    two.paste(astronaut.resize((512, 512)), (hopper.width, 0))
    buffer = io.BytesIO()
    two.save(buffer, "JPEG")
    return buffer.getvalue()


def test_the_projection_panel_says_it_projected_the_largest_of_the_faces_found(tmp_path, monkeypatch, capsys,
                                                                               random_vgg_torch_home):
    """03 projected the largest face of a group photo and said nothing of the others, in its done line or its save,
    where 04's panel says it (forty-second session's audit): both say it, in 04's words."""
    from tiny import write_photos

    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    panel = _projection_panel(tmp_path)
    _upload(panel.upload, "us.jpg", _two_faces_jpeg(write_photos(tmp_path / "photos")))
    panel.run_button.click()
    text = _status_text(panel)
    assert text.startswith("done: 1 step (optimise), distance ") and text.endswith(
        " in W+. 2 faces were found in us.jpg: the largest was projected (to project another, crop the photo around "
        "it)."), text
    capsys.readouterr()  # the Run's pictures, shown outside a notebook
    panel.save(tmp_path / "w.npz")
    assert capsys.readouterr().out.strip() == (f"saved {tmp_path / 'w.npz'}: the largest of 2 faces in us.jpg "
                                               "projected in W+, 1 step")


def test_the_projection_panels_save_says_which_runs_latent_it_saves(tmp_path, monkeypatch, capsys,
                                                                    random_vgg_torch_home):
    """03's save said the path alone: after a Run interrupted, it saved the Run before's latent, unsaid (forty-second
    session's audit). It says the photo, the space and the steps, and that the last Run did not finish."""
    from tiny import write_photos

    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    panel = _projection_panel(tmp_path, steps=2)
    panel.set_photo(write_photos(tmp_path / "photos") / "hopper.jpg")
    panel.run_button.click()
    capsys.readouterr()  # the Run's pictures, shown outside a notebook
    panel.save(tmp_path / "w.npz")
    assert capsys.readouterr().out.strip() == f"saved {tmp_path / 'w.npz'}: hopper.jpg projected in W+, 2 steps"

    def interrupted(step: int, distance: float, w=None) -> None:
        keyboard_interrupt()

    panel.steps.value, panel.space.value = 5, "w"
    monkeypatch.setattr(panel, "_report", interrupted)
    panel.run_button.click()
    assert _status_text(panel) == ("Interrupted. Press Run to start again. The results shown are from the run "
                                   "before.")
    panel.save(tmp_path / "w.npz")
    assert capsys.readouterr().out.strip() == (
        f"saved {tmp_path / 'w.npz'} (it replaced the file that was there): hopper.jpg projected in W+, 2 steps (the "
        "Run before the last one, which did not finish)")


def test_the_toonify_panels_save_writes_its_three_files_all_or_none(toonifier, tmp_path, capsys, monkeypatch):
    """04's save wrote the toon, the pasted photo and the latent one after another: a stop while the large pasted photo
    was encoded left the new face's toon beside the last face's pasted photo and latent, and a folder at
    `-latent.npz`, or a `-pasted.png` name too long (Python's raw "[Errno 36]"), was said after the toon was written
    (forty-fifth session's audit). Each is checked first, and they replace their files together, as `toonlib toonify`
    writes them."""
    from tiny import write_photos

    import toonlib.images
    from toonlib.widgets import ToonifyPanel

    photos = write_photos(tmp_path / "photos")
    panel = ToonifyPanel(toonifier, steps=1, folder=tmp_path / "uploads")
    panel.set_photo(photos / "hopper.jpg")
    panel.run_button.click()
    out = tmp_path / "out"
    panel.save(out / "toon.png")
    names = ["toon-latent.npz", "toon-pasted.png", "toon.png"]
    assert sorted(os.listdir(out)) == names
    for name in names:  # the last face's files
        (out / name).write_bytes(f"the last face's {name}".encode())
    capsys.readouterr()
    save_image = toonlib.images.save_image

    def stopped_at_the_pasted_photo(image, path):
        if Path(path).name.endswith("-pasted.png"):
            raise KeyboardInterrupt
        save_image(image, path)

    monkeypatch.setattr(toonlib.images, "save_image", stopped_at_the_pasted_photo)
    with pytest.raises(KeyboardInterrupt):
        panel.save(out / "toon.png")
    monkeypatch.undo()
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == {
        name: f"the last face's {name}".encode() for name in names}  # none replaced, no temporary file left
    assert "saved" not in capsys.readouterr().out

    (out / "me-latent.npz").mkdir()
    with pytest.raises(IsADirectoryError, match=rf"^cannot write {re.escape(str(out / 'me-latent.npz'))}: it is a "
                                                r"folder; name a file$"):
        panel.save(out / "me.png")
    long = out / ("x" * 248 + ".png")  # its -pasted.png: 259 bytes
    with pytest.raises(OSError, match=rf"^cannot write {re.escape(str(out / ('x' * 248)))}-pasted\.png: its name is "
                                      r"259 bytes long, and file names here take 255 at most; choose a shorter name$"):
        panel.save(long)
    assert sorted(os.listdir(out)) == ["me-latent.npz", *names] and "saved" not in capsys.readouterr().out


def test_the_blend_explorers_save_says_a_name_too_long_or_a_folder_name_before_writing(tmp_path):
    """02's save of a name too long raised Python's raw "[Errno 36] File name too long: 'zzz...'" (asking whether a
    file was there), and of 'blends/' wrote a file `blends` (forty-fifth session's audit)."""
    explorer = blend_explorer(tiny_generator(0), tiny_generator(1), seeds=[0], swap_res=8)
    long = tmp_path / ("z" * 300 + ".safetensors")
    with pytest.raises(OSError, match=rf"^cannot write {re.escape(str(long))}: its name is 312 bytes long, and file "
                                      r"names here take 255 at most; choose a shorter name$"):
        explorer.save(long)
    with pytest.raises(IsADirectoryError, match=rf"^cannot write {re.escape(str(tmp_path))}/blends/: it names a "
                                                r"folder \(it ends with '/'\); name a file in it, or drop the '/'$"):
        explorer.save(f"{tmp_path}/blends/")
    assert os.listdir(tmp_path) == []
