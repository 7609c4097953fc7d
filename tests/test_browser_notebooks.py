"""The notebooks' widgets in a real browser: JupyterLab on 127.0.0.1 with tiny checkpoints, driven by headless
Chromium through Playwright (tests/browser.py).

What a person sees and does: notebooks 02, 03 and 04 run from the Run menu; the blend explorer, the projection panel
(its frame scrubber moved with the keyboard) and the toonify panel show every control whole, uncovered and clickable,
with full labels and menu choices, and nothing past the output's edge, at 800, 1024 and 1600 px windows (JupyterLab's
file browser open, so the output area is about 370, 590 and 1170 px wide) and at a phone's 360 px with the file browser
closed (about 245 px); 04's toon shows beside or right under its slider; images are never stretched; a keyboard move of
a swap-resolution slider changes the image, and 02 saves the blend the slider shows; the upload button takes a photo;
the steps chosen with the keyboard are the steps the projection runs; a file that is no image clears the photo before
and says so, naming the file the user chose and what to do, in a status line that wraps. Notebook 01 run as shipped (no
data_path) stops with a message, not a traceback, that wraps. Screenshots go to $TOONLIB_SCREENSHOTS (default: a temp
folder printed by the tests) and failures name theirs; the update latencies measured through the browser are written to
latency.json there.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import nbformat
import pytest
import torch
from browser import assert_usable, chromium, jupyter, page_at, screenshot, screenshots_on_failure
from tiny import tiny_generator, write_photos

from notebooks import prepare
from toonlib.blending import blend
from toonlib.checkpoints import Networks, save_network

WIDTHS = (800, 1024, 1600)
PHONE = 360  # a phone's window, the file browser closed (as in Colab): an output about 245 px wide
OPEN_WIDTH = 1024  # where the notebooks open and run (at 800 px JupyterLab folds the kernel name into a menu)
WAIT_MS = 600_000  # the longest wait for a notebook or a projection on a busy 2-core machine (not a time limit)
HANDLE = ".noUi-handle, .ui-slider-handle"  # a slider's handle: ipywidgets 8 (noUiSlider), 7 (jQuery UI)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("TOONLIB_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots: {folder}")
    return folder


def _toon_of(base_seed: int):
    """A tiny 'fine-tuned' toon model: the base model with every weight moved by about a third."""
    import torch

    toon = tiny_generator(base_seed)
    torch.manual_seed(99)
    with torch.no_grad():
        for param in toon.parameters():
            param.add_(0.35 * param.abs().mean() * torch.randn_like(param))
    return toon


@pytest.fixture(scope="module")
def lab(tmp_path_factory, random_vgg_torch_home, request):
    """JupyterLab over a folder with tiny models (a base and a toon model 'fine-tuned' from it), photos and
    notebooks 01 (its data_path left empty), 02 and 04 prepared as CI runs them."""
    root = tmp_path_factory.mktemp("lab")
    base, toon = tiny_generator(0), _toon_of(0)
    save_network(root / "base.safetensors", base)
    save_network(root / "toon-ft.safetensors", toon)
    # laid out like Toonify's file
    save_network(root / "toon.safetensors", Networks(G_ema=blend(toon, base, 8), G=toon))
    write_photos(root / "photos")
    common = {"base_model": "base.safetensors", "use_drive": False}
    from test_notebooks import _finetune_files

    (root / "ft").mkdir()
    _finetune_files(root / "ft")  # a base with its discriminator, and 12 images, for 01-train
    # data_path empty, as shipped; its base has a discriminator (the set-up cell refuses one without, before the data)
    notebooks = {"01.ipynb": prepare("01_finetune.ipynb", {**common, "base_model": "ft/base.safetensors"}),
                 "01-train.ipynb": prepare("01_finetune.ipynb", {"data_path": "ft/faces", "use_drive": False,
                                                                  "base_model": "ft/base.safetensors", "kimg": 0.012,
                                                                  "batch_size": 4, "snapshot_kimg": 0.004}),
                 "02.ipynb": prepare("02_blend.ipynb", {**common, "toon_model": "toon-ft.safetensors",
                                                        "toon_network": "G_ema", "swap_res": 8,
                                                        "output": "blend.safetensors"}),
                 "03.ipynb": prepare("03_project.ipynb", {"model": "base.safetensors", "use_drive": False,
                                                         "photo_path": "photos/hopper.jpg", "steps": 4,
                                                         "frame_every": 1, "detector": "dlib", "output": "w.npz"}),
                 "04.ipynb": prepare("04_toonify.ipynb", {**common, "toon_model": "toon.safetensors", "steps": 2,
                                                         "detector": "dlib", "output": "me.png"})}
    for name, nb in notebooks.items():
        nbformat.write(nb, root / name)
    server = jupyter(root, env={"TORCH_HOME": str(random_vgg_torch_home), "TOONLIB_CACHE": str(root / "cache")})
    request.addfinalizer(server.stop)
    server.start()
    server.root = root
    return server


@pytest.fixture(scope="module")
def browser():
    with chromium() as context:
        yield context


def _run_all(page, marker: str) -> None:
    """Run every cell from JupyterLab's Run menu and wait until the output `marker` shows."""
    page.locator(".jp-Notebook").wait_for(timeout=WAIT_MS)
    _accept_kernel(page)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator('li[data-command="runmenu:run-all"]').click()
    try:
        page.get_by_text(marker).first.wait_for(timeout=WAIT_MS)
    except Exception as exc:
        errors = page.locator(".jp-OutputArea-output", has_text="Error").all_inner_texts()
        raise AssertionError(f"{marker!r} never showed; error outputs: {errors[-3:]}") from exc


def _accept_kernel(page) -> None:
    """Wait until the notebook's kernel is idle; accept JupyterLab's "Select Kernel" dialog (Python 3) if it asks,
    which it does when the kernel list arrives late on a busy machine."""
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    idle = page.locator('.jp-NotebookPanel:has(.jp-Toolbar-kernelName[aria-label^="Python 3"]) '
                        '.jp-Notebook-ExecutionIndicator[data-status="idle"]')
    deadline = time.monotonic() + WAIT_MS / 1000
    while not idle.count():
        assert time.monotonic() < deadline, "the kernel never became idle"
        if dialog.count():
            dialog.locator(".jp-mod-accept").click()
        page.wait_for_timeout(250)


def _run_cell(page, code: str) -> None:
    """Run the code cell whose source contains `code` again (click into it, Shift+Enter), as a person does."""
    cell = page.locator(".jp-CodeCell", has=page.locator(".jp-InputArea-editor", has_text=code))
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")


def _image_bytes(locator) -> str:
    """The bytes the browser shows in an <img> (its blob: or data: URL, fetched in the page), base64."""
    return locator.evaluate("""async img => {
        const data = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
        let text = ''; for (const b of data) text += String.fromCharCode(b); return btoa(text); }""")


def _assert_not_stretched(locator, name: str) -> None:
    """An <img> is shown at its pixel size, or shrunk with its aspect kept where the output is narrower."""
    # A picture the kernel is replacing (the layer chart re-drawn by a level click whose render had not yet reached
    # the page when the status already read as wanted) has no natural size until the new one loads, and decode()
    # rejects when the src changes under it: read once, it was 0 now and then (CI, 2026-12-02). Wait up to 10 s for
    # a loaded picture; one that never loads is still read as 0 and fails below.
    size = locator.evaluate("""async img => {
        for (let i = 0; i < 50; i++) {
            try { await img.decode(); } catch (e) {}
            if (img.complete && img.naturalWidth > 0) break;
            await new Promise(r => setTimeout(r, 200)); }
        const r = img.getBoundingClientRect();
        return {w: r.width, h: r.height, nw: img.naturalWidth, nh: img.naturalHeight,
                room: img.closest('.jp-OutputArea-output, .output_subarea').getBoundingClientRect().width}; }""")
    assert size["nw"] > 0, f"{name} shows no picture"
    assert size["w"] <= size["nw"] + 0.5, f"{name} is stretched: {size}"
    assert abs(size["h"] / size["w"] - size["nh"] / size["nw"]) < 0.02, f"{name} is distorted: {size}"
    if size["nw"] <= size["room"] - 40:
        assert abs(size["w"] - size["nw"]) < 0.5, f"{name} is shrunk although it fits: {size}"


def _assert_labels_whole(widget, name: str) -> None:
    """Descriptions, readouts and the choices of menus are not cut off (no ellipsis: their text fits their box). A
    closed menu shows its choice on one line, so every choice must fit it: 04's inversion menu, whose choices were
    "optimise (slow, closest to the photo)" and longer, cut them off at a phone's width (the longest at 800 px too)."""
    cut = widget.evaluate("""root => {
        const cut = [...root.querySelectorAll('.widget-label, .widget-readout, label')]
            .filter(e => e.offsetParent && e.scrollWidth > e.clientWidth + 1).map(e => e.textContent);
        const text = document.createElement('canvas').getContext('2d');
        for (const menu of [...root.querySelectorAll('select')].filter(e => e.offsetParent)) {
            const style = getComputedStyle(menu);
            text.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
            const room = menu.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
            cut.push(...[...menu.options].filter(o => text.measureText(o.text).width > room + 0.5)
                .map(o => `menu choice ${o.text}: ${Math.round(text.measureText(o.text).width)} px in ${room}`));
        }
        return cut; }""")
    assert cut == [], f"{name}: labels cut off: {cut}"


def _assert_apart(control, image, name: str) -> None:
    """A control and an image do not overlap."""
    a, b = control.bounding_box(), image.bounding_box()
    overlap = (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
               and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])
    assert not overlap, f"{name} overlaps the image: {a} / {b}"


def _assert_inside(widget, name: str, slack: float = 4) -> None:
    """Nothing in the widget runs past the right edge of its output area, where it would be cut off (`slack` px for
    a widget's own margin beside a full-width picture)."""
    past = widget.evaluate("""(root, slack) => {
        const edge = root.closest('.jp-OutputArea-output, .output_subarea').getBoundingClientRect().right;
        return [...root.querySelectorAll('*')].filter(e => e.getClientRects().length
                                                    && e.getBoundingClientRect().right > edge + slack)
            .map(e => `${e.tagName}.${[...e.classList].join('.')}: `
                      + `${Math.round(e.getBoundingClientRect().right - edge)} px past the edge: `
                      + (e.textContent || '').slice(0, 60)); }""", slack)
    assert past == [], f"{name}: cut off at the output's edge: {past}"


def _assert_no_sideways_scroll(widget, name: str) -> None:
    """No box of the widget (ipywidgets' boxes scroll what overflows them) has a horizontal scrollbar: a control of
    width 100% plus its margins, or a column with a margin beside its min-width, ran a few px past its box."""
    scrolling = widget.evaluate("""root => [root, ...root.querySelectorAll('*')]
        .filter(e => e.scrollWidth > e.clientWidth + 0.5 && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX))
        .map(e => `${e.tagName}.${[...e.classList].join('.')}: ${e.scrollWidth} px in ${e.clientWidth}`)""")
    assert scrolling == [], f"{name}: scrolls sideways: {scrolling}"


#: The shortest slider track a person can drag to each stop of (04's swap resolution has ten at 1024 px).
MIN_TRACK = 120


def _assert_tracks_long(widget, name: str) -> None:
    """Every slider's track has room: 04's swap-resolution slider shrank to a 30 px stub beside its label at a phone's
    width (~3 px a stop) while the steps slider under it, whose parts wrap, kept 212 px."""
    tracks = widget.evaluate("""root => [...root.querySelectorAll('.widget-slider .slider-container')]
        .map(e => [[...e.closest('.widget-slider').classList].find(c => c.startsWith('toonlib-')) || '?',
                   e.getBoundingClientRect().width])""")
    short = [(owner, round(width)) for owner, width in tracks if width < MIN_TRACK]
    assert tracks and not short, f"{name}: slider tracks shorter than {MIN_TRACK} px: {short}"


def _assert_text_spacing(status, name: str) -> None:
    """A status message's lines are spaced as text, not as a row of controls (the HTML widget's 28 px)."""
    spacing = status.locator("span").first.evaluate("""span => { const style = getComputedStyle(span);
        return [parseFloat(style.lineHeight), parseFloat(style.fontSize)]; }""")
    assert spacing[0] <= 1.5 * spacing[1], f"{name}: lines {spacing[0]} px apart for a {spacing[1]} px font"


def _move_slider(page, slider, key: str, image, readout: str, latencies: dict, label: str) -> None:
    """Focus a slider's handle, press `key`, and wait until the readout says `readout` and `image` changed."""
    before, source = _image_bytes(image), image.get_attribute("src")
    slider.locator(HANDLE).first.focus()
    start = time.perf_counter()
    page.keyboard.press(key)
    page.wait_for_function("([img, before]) => img.src !== before", arg=[image.element_handle(), source],
                           polling="raf", timeout=WAIT_MS)
    latencies[label] = round(time.perf_counter() - start, 3)
    slider.locator(".widget-readout").get_by_text(readout, exact=True).wait_for()
    assert _image_bytes(image) != before, f"{label}: the picture did not change"


def _widget_screenshot(page, widget, path: Path) -> None:
    """A screenshot of the whole widget: the window is made tall enough for it, at the same width."""
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": width, "height": 2000})
    widget.scroll_into_view_if_needed()
    widget.screenshot(path=str(path))
    page.set_viewport_size({"width": width, "height": 900})


def _toggle_file_browser(page) -> None:
    """Close JupyterLab's file browser (the left sidebar's open tab), or open it again."""
    page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="filebrowser"]').click()


def _check_at_widths(page, shots: Path, notebook: str, part: str, widget, controls: dict, images: dict, *,
                     apart_from, no_click: tuple[str, ...] = (), settle=lambda: None) -> None:
    """At every width in WIDTHS, and at PHONE with the file browser closed: the widget's labels whole, each control
    usable (clicked unless named in `no_click`) and clear of `apart_from`, then (after `settle`) no image stretched;
    screenshots of the window and of the widget, named `<notebook>-window-<width>` and `<notebook>-<part>-<width>`."""
    for width in (*WIDTHS, PHONE):
        if width == PHONE:
            _toggle_file_browser(page)
        page.set_viewport_size({"width": width, "height": 900})
        with screenshots_on_failure(page, shots, f"{notebook}-{part}-{width}"):
            widget.scroll_into_view_if_needed()
            _assert_labels_whole(widget, part)
            _assert_inside(widget, f"{part} at {width} px")
            _assert_no_sideways_scroll(widget, f"{part} at {width} px")
            _assert_tracks_long(widget, f"{part} at {width} px")
            for name, control in controls.items():
                assert_usable(control, f"{name} at {width} px", click=name not in no_click)
                _assert_apart(control, apart_from, f"{name} at {width} px")
            settle()
            for name, image in images.items():
                image.scroll_into_view_if_needed()
                _assert_not_stretched(image, f"{name} at {width} px")
            _assert_inside(widget, f"{part} at {width} px")
            screenshot(page, shots, f"{notebook}-window-{width}")
            _widget_screenshot(page, widget, shots / f"{notebook}-{part}-{width}.png")
    _toggle_file_browser(page)
    page.set_viewport_size({"width": WIDTHS[-1], "height": 900})  # as the checks at WIDTHS left it


def _record(shots: Path, latencies: dict) -> None:
    path = shots / "latency.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**known, **latencies}, indent=1))
    print(f"update latency through the browser (s): {latencies}")


def test_blend_explorer_fits_and_reacts_in_jupyterlab(lab, browser, shots):
    page = page_at(browser, lab.url(f"lab/tree/02.ipynb?reset&{lab.url_token}"), width=OPEN_WIDTH)
    with screenshots_on_failure(page, shots, "02-run"):
        _run_all(page, f"saved {lab.root / 'blend.safetensors'}")
    assert (lab.root / "blend.safetensors").exists()
    explorer = page.locator(".toonlib-explorer")
    grid, chart = explorer.locator("img.toonlib-grid"), explorer.locator("img.toonlib-chart")
    status = explorer.locator(".toonlib-status")
    controls = {"swap-resolution slider": explorer.locator(".toonlib-swap-res").locator(HANDLE).first,
                "smooth-width slider": explorer.locator(".toonlib-blend-width").locator(HANDLE).first,
                "truncation slider": explorer.locator(".toonlib-truncation").locator(HANDLE).first,
                "seeds box": explorer.locator(".toonlib-seeds input"),
                "level conv1": explorer.locator(".toonlib-level button", has_text="conv1"),
                "level conv0": explorer.locator(".toonlib-level button", has_text="conv0")}
    _check_at_widths(page, shots, "02", "explorer", explorer, controls, {"image grid": grid, "layer chart": chart},
                     apart_from=grid,  # after the clicks' re-renders are done:
                     settle=lambda: status.get_by_text("toon up to 8 px (level 0)").wait_for())
    latencies = {}
    with screenshots_on_failure(page, shots, "02-keyboard"):
        swap = explorer.locator(".toonlib-swap-res")
        _move_slider(page, swap, "ArrowRight", grid, "16 px", latencies, "explorer swap 8 -> 16 px")
        status.get_by_text("toon up to 16 px").wait_for()
        _move_slider(page, swap, "ArrowLeft", grid, "8 px", latencies, "explorer swap 16 -> 8 px")
        status.get_by_text("toon up to 8 px").wait_for()
    with screenshots_on_failure(page, shots, "02-save"):  # the blend the slider shows, not the parameters' 8 px
        _move_slider(page, swap, "ArrowRight", grid, "16 px", latencies, "explorer swap 8 -> 16 px, to save")
        _run_cell(page, "explorer.save(")
        # Run All saved the parameters' blend there first: said since the fortieth session's audit
        page.get_by_text(f"saved {lab.root / 'blend.safetensors'} (it replaced the file that was there): toon up to "
                         "16 px").wait_for(timeout=WAIT_MS)
    from toonlib.checkpoints import load_network

    expected = blend(load_network(lab.root / "toon-ft.safetensors").G_ema,
                     load_network(lab.root / "base.safetensors").G_ema, 16)
    saved = load_network(lab.root / "blend.safetensors").G_ema.state_dict()
    assert all(torch.equal(v, expected.state_dict()[k]) for k, v in saved.items()), "the saved blend is not at 16 px"
    _record(shots, latencies)
    page.close()


def test_toonify_notebook_uploads_runs_the_chosen_steps_and_reblends(lab, browser, shots):
    page = page_at(browser, lab.url(f"lab/tree/04.ipynb?reset&{lab.url_token}"), width=OPEN_WIDTH)
    with screenshots_on_failure(page, shots, "04-run"):
        _run_all(page, "No toon yet")  # photo_path empty outside Colab: the panel waits for an upload
    panel = page.locator(".toonlib-toonify")
    status, steps = panel.locator(".toonlib-status"), panel.locator(".toonlib-steps")
    with screenshots_on_failure(page, shots, "04-upload"):
        with page.expect_file_chooser() as chooser:  # what a click on the upload button opens
            panel.locator(".toonlib-upload").first.click()
        chooser.value.set_files(str(lab.root / "photos" / "hopper.jpg"))
        status.get_by_text(re.compile(r"hopper\.jpg: \d+ x \d+ px\. Press Run\.")).wait_for(timeout=WAIT_MS)
        _assert_not_stretched(panel.locator("img.toonlib-photo"), "uploaded photo")
        steps.locator(HANDLE).first.focus()
        # One key press, one state update (the slider sends its value when it is let go): ipywidgets holds a second
        # update until the kernel has answered the first, while a click goes out at once, so after two presses the
        # click reached the kernel before "4" did (the run did 3 steps), unless a fixed 1 s wait was long enough
        # (forty-fourth session's audit). Sent at once, the update reaches the kernel before the click.
        page.keyboard.press("ArrowRight")
        steps.locator(".widget-readout").get_by_text("3", exact=True).wait_for()
        panel.locator(".toonlib-run").click()
        status.get_by_text(re.compile(r"done: \d+ steps?")).wait_for(timeout=WAIT_MS)
        assert "done: 3 steps" in status.inner_text(), status.inner_text()  # not a wait for "3" that a 2 never ends
        filled = panel.locator(".toonlib-progress .progress-bar").evaluate(
            "bar => bar.getBoundingClientRect().width / bar.parentElement.getBoundingClientRect().width")
        assert filled > 0.99, f"the progress bar is {filled:.0%} full after the run"
    toon = panel.locator("img.toonlib-toon")
    controls = {"upload button": panel.locator(".toonlib-upload").first,
                "swap-resolution slider": panel.locator(".toonlib-swap-res").locator(HANDLE).first,
                "steps slider": steps.locator(HANDLE).first,
                "inversion menu": panel.locator(".toonlib-inversion select"),
                "Run button": panel.locator(".toonlib-run")}
    images = {name: panel.locator(f"img.toonlib-{name}") for name in ("photo", "aligned", "reconstruction", "toon",
                                                                       "pasted")}
    _check_at_widths(page, shots, "04", "panel", panel, controls, images, apart_from=toon,
                     no_click=("upload button", "Run button"))
    for width in WIDTHS:  # the toon, the result, shows with the panel's top (its slider), before the steps to it
        page.set_viewport_size({"width": width, "height": 900})
        with screenshots_on_failure(page, shots, f"04-toon-in-view-{width}"):
            panel.evaluate("panel => panel.scrollIntoView({block: 'start'})")
            top, photo = toon.bounding_box()["y"], panel.locator("img.toonlib-photo").bounding_box()["y"]
            assert top < 900 - 150 and top <= photo, f"the toon is out of view at {width} px: top {top}, photo {photo}"
    latencies = {}
    with screenshots_on_failure(page, shots, "04-keyboard"):
        swap = panel.locator(".toonlib-swap-res")
        _move_slider(page, swap, "ArrowRight", toon, "4 px", latencies, "toonify swap published -> 4 px")
        panel.get_by_text("toon, blend at 4 px").wait_for()
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})
    with screenshots_on_failure(page, shots, f"04-not-an-image-{WIDTHS[0]}"):  # the message wraps; no stale photo
        not_an_image = lab.root / "a_photo_whose_name_is_too_long_for_one_line_of_the_panel.jpg"
        not_an_image.write_bytes(b"not an image")
        with page.expect_file_chooser() as chooser:
            panel.locator(".toonlib-upload").first.click()
        chooser.value.set_files(str(not_an_image))
        status.get_by_text(f"cannot read '{not_an_image.name}' as an image").wait_for(timeout=WAIT_MS)
        said = status.inner_text()
        assert "uploads/" not in said and said.endswith("Upload another photo (the photo button above), then press "
                                                        "Run."), said
        _assert_inside(panel, f"panel with an error at {WIDTHS[0]} px")
        _assert_no_sideways_scroll(panel, f"panel with an error at {WIDTHS[0]} px")
        assert status.bounding_box()["height"] > 40, "the message did not wrap"  # so its line spacing shows
        _assert_text_spacing(status, f"the error at {WIDTHS[0]} px")
        for name in images:
            assert not panel.locator(f"img.toonlib-{name}").is_visible(), f"the {name} before is still shown"
        screenshot(page, shots, f"04-not-an-image-{WIDTHS[0]}")
    _record(shots, latencies)
    page.close()


def test_projection_panel_fits_a_phone_and_its_frames_are_chosen(lab, browser, shots):
    """Notebook 03's frame scrubber kept its label beside a 101 px track at a phone's width (2 px a frame of the
    default 51; thirty-eighth session's audit): its track wraps under the label as the other sliders' do."""
    page = page_at(browser, lab.url(f"lab/tree/03.ipynb?reset&{lab.url_token}"), width=OPEN_WIDTH)
    with screenshots_on_failure(page, shots, "03-run"):
        _run_all(page, "saved ")
    panel = page.locator(".toonlib-projection")
    panel.locator(".toonlib-status").get_by_text("done: 4 steps").wait_for(timeout=WAIT_MS)
    frame = panel.locator(".toonlib-frame")
    image = panel.locator("img.toonlib-frame-image")
    controls = {"steps slider": panel.locator(".toonlib-steps").locator(HANDLE).first,
                "frame slider": frame.locator(HANDLE).first,
                "latent space W": panel.locator(".toonlib-space button", has_text="W").last,
                "Run button": panel.locator(".toonlib-run")}
    _check_at_widths(page, shots, "03", "panel", panel, controls, {"frame": image}, apart_from=image,
                     no_click=("Run button",))
    latencies = {}
    with screenshots_on_failure(page, shots, "03-keyboard"):
        _move_slider(page, frame, "Home", image, "1", latencies, "projection frame last -> 1")
        panel.locator(".toonlib-caption").get_by_text("frame 1 of", exact=False).wait_for()
    _record(shots, latencies)
    page.close()


def test_finetune_notebooks_training_output_fits_a_phone(lab, browser, shots):
    """At a 360 px output the fine-tuning bar's numbers (`G=... D=... p=...`) ran 84 px past its edge: tqdm writes
    their spaces as figure spaces, which never break a line. At outputs of 610-740 px (an 800 px window, Colab's
    width) the numbers fitted beside the bar, which shrank to 2 px (thirty-ninth session's audit)."""
    page = page_at(browser, lab.url(f"lab/tree/01-train.ipynb?reset&{lab.url_token}"), width=OPEN_WIDTH)
    with screenshots_on_failure(page, shots, "01-train"):
        _run_all(page, "Blend it in 02_blend.ipynb")
    _toggle_file_browser(page)
    for window in (OPEN_WIDTH, 800, 760, 476):  # outputs of about 870, 620, 580 and 360 px
        page.set_viewport_size({"width": window, "height": 900})
        page.wait_for_timeout(300)
        with screenshots_on_failure(page, shots, f"01-train-{window}"):
            bar = page.locator(".jp-OutputArea-output .widget-html-content", has_text="kimg [").first
            assert "p=0.000" in bar.inner_text()
            past = page.evaluate("""() => [...document.querySelectorAll('.jp-OutputArea-output *')].filter(e => {
                const edge = e.closest('.jp-OutputArea-output').getBoundingClientRect().right;
                return e.getClientRects().length && e.getBoundingClientRect().right > edge + 2; })
                .map(e => e.tagName + '.' + [...e.classList].join('.'))""")
            assert past == [], f"past the output's edge in a {window} px window: {past}"
            widths = page.evaluate("""() => [...document.querySelectorAll('.jp-OutputArea-output .widget-hbox')]
                .filter(box => box.innerText.includes('kimg ['))
                .map(box => box.querySelector('.widget-hprogress').getBoundingClientRect().width)""")
            assert widths and min(widths) >= 100, f"the bar is {widths} px wide in a {window} px window"
            screenshot(page, shots, f"01-train-{window}")
    _toggle_file_browser(page)
    page.close()


def test_finetune_notebook_without_data_stops_with_a_message_that_wraps(lab, browser, shots):
    """Run All of notebook 01 as shipped outside Colab (data_path empty) ended in a RuntimeError traceback through
    toonlib's code; it stops at the set-up cell with what to set, in lines that wrap at every width."""
    page = page_at(browser, lab.url(f"lab/tree/01.ipynb?reset&{lab.url_token}"), width=OPEN_WIDTH)
    with screenshots_on_failure(page, shots, "01-run"):
        _run_all(page, "No training images: data_path is empty.")
    error = page.locator(".jp-OutputArea-output", has_text="No training images")
    text = error.inner_text()
    assert text.startswith("No training images: data_path is empty.\nSet data_path in the parameters cell") and \
        'e.g. data_path = "toons"' in text, text
    assert "Traceback" not in text and "File " not in text and "Error" not in text, text
    assert not page.get_by_text("fine-tuning").count(), "Run All went on past the stop"
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        with screenshots_on_failure(page, shots, f"01-no-data-{width}"):
            error.scroll_into_view_if_needed()
            past = error.evaluate("""out => { const edge = out.closest('.jp-OutputArea').getBoundingClientRect().right;
                return [out, ...out.querySelectorAll('*')].filter(e => e.scrollWidth > e.clientWidth + 1
                    || e.getBoundingClientRect().right > edge + 1).map(e => e.tagName); }""")
            assert past == [], f"the message runs past the output's edge at {width} px: {past}"
            screenshot(page, shots, f"01-no-data-{width}")
    page.close()


def test_finetune_notebooks_progress_bars_show_above_the_fakes_grid_and_the_plots(lab, browser, shots):
    """01's training cell showed the fakes grid and the plots above the progress bars: the first snapshot's grid and
    plots (~1500 px at 1024 px models) pushed the bar that counts the run out of a 900 px window, after every snapshot
    a scroll to find it (forty-first session's audit). The bars come right under the line of numbers, the grid and the
    plots below them."""
    nbformat.write(prepare("01_finetune.ipynb", {"data_path": "ft/faces", "use_drive": False, "run_name": "order",
                                                 "base_model": "ft/base.safetensors", "kimg": 0.012, "batch_size": 4,
                                                 "snapshot_kimg": 0.004}), lab.root / "01-order.ipynb")
    page = page_at(browser, lab.url(f"lab/tree/01-order.ipynb?reset&{lab.url_token}"), width=OPEN_WIDTH)
    with screenshots_on_failure(page, shots, "01-order"):
        _run_all(page, "Blend it in 02_blend.ipynb")
        cell = page.locator(".jp-CodeCell", has=page.locator(".jp-InputArea-editor", has_text="run_training("))
        cell.scroll_into_view_if_needed()
        parts = {"line": cell.locator(".jp-OutputArea-output", has_text="kimg 0.012"),
                 "bars": cell.locator(".jp-OutputArea-output .widget-hprogress"),  # preparing images, fine-tuning
                 "images": cell.locator(".jp-OutputArea-output img")}  # the fakes grid, the plots
        boxes = {name: [part.nth(i).bounding_box() for i in range(part.count())] for name, part in parts.items()}
        screenshot(page, shots, "01-order")
    assert [len(found) for found in boxes.values()] == [1, 2, 2], boxes
    assert boxes["line"][0]["y"] < min(box["y"] for box in boxes["bars"]), boxes
    assert max(box["y"] + box["height"] for box in boxes["bars"]) <= min(box["y"] for box in boxes["images"]), boxes
    page.close()
