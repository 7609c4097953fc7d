"""`toonlib app` through a real browser: Debian's Chromium driven by Playwright, tiny models, offline.

The app runs as `python -m toonlib app` in its own process on a free port of 127.0.0.1 (tests/browser.py's
`Server`), with tiny checkpoints, dlib landmarks and a TORCH_HOME holding a random VGG16 (LPIPS builds through
the product's own code). On a failure each test saves a screenshot and names it in its message.
"""
from __future__ import annotations

import contextlib
import io
import re
import shutil
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from browser import CHROMIUM_ARGS, Server, assert_usable, chromium, page_at, screenshots_on_failure
from PIL import Image
from tiny import write_photos, write_toonify_models

FAKE_CAMERA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]  # a test-pattern webcam
# Another machine's view of the app: a name for 127.0.0.1 that is no secure context, as an address of the network is
LAN_NAME = "toonbox.lan"
SERVER_START_S = 300  # importing gradio and torch, loading the models, LPIPS and dlib on a busy 2-core machine
TOON_S = 300  # waits for results: generous, never asserted as a speed
LONG_RUN = 5000  # steps of a projection that is cut short: minutes even on a fast machine (~20 steps/s here)
OWN_TIME_S = 60  # a short run's own time, with room for a slow machine: ~3 s here (10 steps and the alignment)


@pytest.fixture(scope="module")
def server(tmp_path_factory, random_vgg_torch_home):
    """`toonlib app` on tiny models in its own process; the module's last test stops it."""
    root = tmp_path_factory.mktemp("app_server")
    base, toon, _, _ = write_toonify_models(root)
    photos = write_photos(root / "photos")
    (photos / "notes.txt").write_text("not a photo")
    astronaut, hopper = Image.open(photos / "astronaut.png"), Image.open(photos / "hopper.jpg")
    pair = Image.new("RGB", (astronaut.width + hopper.width, hopper.height), "white")
    pair.paste(astronaut, (0, 0))
    pair.paste(hopper, (astronaut.width, 0))
    pair.save(photos / "pair.jpg")  # two faces
    app = Server([sys.executable, "-m", "toonlib", "app", "--base", str(base), "--toon", str(toon), "--detector",
                  "dlib", "--port", "{port}", "--steps", "3", "--max-steps", str(LONG_RUN), "--swap-res", "16"],
                 env={"TORCH_HOME": str(random_vgg_torch_home), "GRADIO_TEMP_DIR": str(root / "uploads")},
                 cwd=root,  # its uploads' folder inside its working folder, as `cd /tmp && toonlib app` has it
                 log=root / "server.log", timeout=SERVER_START_S)
    app.start()
    app.photos = photos
    yield app
    app.stop()


@pytest.fixture(scope="module")
def two_modes(tmp_path_factory, random_vgg_torch_home, encoder_checkpoint, server):
    """`toonlib app --invert optimize e4e` (the tiny e4e reference encoder, its own 32 px decoder as the base and as
    the toon model: what is drawn does not matter here), for the one test that switches modes; stopped with the
    module. Photos: `server`'s."""
    app = _e4e_app(tmp_path_factory.mktemp("app_two_modes"), random_vgg_torch_home, encoder_checkpoint, "--invert",
                   "optimize", "e4e", "--steps", "3", "--max-steps", str(LONG_RUN))
    app.photos = server.photos
    yield app
    app.stop()


def _e4e_app(root: Path, torch_home: Path, encoder_checkpoint, *options: str) -> Server:
    """`toonlib app OPTIONS` started in `root` with the tiny e4e reference encoder, its own 32 px decoder as the base
    and as the toon model (what is drawn does not matter to its tests)."""
    from toonlib.checkpoints import Networks, load_network, save_network

    e4e = encoder_checkpoint("e4e_tiny")
    base = load_network(e4e).G_ema
    save_network(root / "base.safetensors", base)
    save_network(root / "toon.safetensors", Networks(G_ema=base, G=base))
    app = Server([sys.executable, "-m", "toonlib", "app", "--base", str(root / "base.safetensors"), "--toon",
                  str(root / "toon.safetensors"), "--encoder", str(e4e), "--detector", "dlib", "--port", "{port}",
                  *options], env={"TORCH_HOME": str(torch_home), "GRADIO_TEMP_DIR": str(root / "uploads")},
                 log=root / "server.log", timeout=SERVER_START_S)
    app.start()
    return app


@pytest.fixture(scope="module")
def context():
    """The harness's Chromium, with a fake camera (a test pattern) that the page may use, and `LAN_NAME`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("browser.CHROMIUM_ARGS", [*CHROMIUM_ARGS, *FAKE_CAMERA,
                                                f"--host-resolver-rules=MAP {LAN_NAME} 127.0.0.1"])
        with chromium() as context:
            context.grant_permissions(["camera"])
            yield context


@pytest.fixture
def page(context, server):
    """The app in a 1280 px window; `page.requested` lists the address of every request it makes."""
    page = context.new_page()
    page.requested = []
    page.on("request", lambda request: page.requested.append(request.url))
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(server.url())
    page.wait_for_selector("#toonify")
    yield page
    page.close()


def shown_image(page, selector: str) -> tuple[str, np.ndarray]:
    """The address and the pixels of the image the page shows in `selector` (waiting for it to appear)."""
    image = page.locator(f"{selector} img")
    image.wait_for()
    src = image.get_attribute("src")
    return src, np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB"))


def press(page, slider: str, key: str) -> str:
    """Press `key` on a slider (as a keyboard user does) and return the value its number box shows."""
    page.locator(f"{slider} input[type=range]").focus()
    page.keyboard.press(key)
    return page.locator(f"{slider} input[type=number]").input_value()


def upload(page, photo) -> None:
    """Upload `photo` and wait until the page has taken it in (its new-photo event answered, after the preview
    shows)."""
    with page.expect_response(lambda response: "/gradio_api/run/predict" in response.url):
        page.locator("#photo input[type=file]").set_input_files(photo)


def expect_toast(page, text: str) -> None:
    page.locator("[data-testid='toast-body']", has_text=text).first.wait_for(timeout=60_000)


def set_steps(page, steps: int) -> None:
    box = page.locator("#steps input[type=number]")
    box.fill(str(steps))
    box.press("Enter")


def start_a_long_run(page, photo) -> None:
    """Toonify `photo` with `LONG_RUN` steps and wait until its projection runs."""
    set_steps(page, LONG_RUN)
    upload(page, photo)
    page.click("#toonify")
    page.locator("#toon", has_text="Fitting your photo").wait_for(timeout=TOON_S * 1000)


def assert_the_held_press_does_not_run(page) -> None:
    """The Toonify press the page held during a run that has now ended goes out and is answered without running: at
    once, or within seconds on a loaded machine (a run of it takes minutes, `LONG_RUN` steps)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.wait_for_timeout(1500)
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(f"!({BUSY})()", timeout=20_000)
    assert not busy(page) and "Fitting" not in page.locator("#toon").inner_text(), "the second press runs"


def toonify_within_its_own_time(page, steps: int) -> float:
    """Press Toonify (the photo uploaded, the slider at `steps`): the toon must come within `OWN_TIME_S`, not after
    another projection's remaining steps. Returns the seconds it took."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    start = time.monotonic()
    page.click("#toonify")
    try:
        page.locator("#status", has_text=f"{steps} steps").wait_for(timeout=OWN_TIME_S * 1000)
    except PlaywrightTimeout:
        raise AssertionError(f"no toon within {OWN_TIME_S} s: the models are still busy with another run") from None
    return time.monotonic() - start


BUSY = "() => getComputedStyle(document.querySelector('#toonify'), '::after').content !== 'none'"


def busy(page) -> bool:
    """Whether the Toonify button says that a toonify or a face pick waits or runs (`toonlib.app.CSS`)."""
    return page.evaluate(BUSY)


def wait_until_idle(page) -> None:
    """Wait until the page's toonify or face pick has been answered (after a moment for it to begin)."""
    page.wait_for_timeout(500)
    page.wait_for_function(f"!({BUSY})()", timeout=TOON_S * 1000)


IN_VIEW = ("selector => { const box = document.querySelector(selector).getBoundingClientRect();"
           " return box.top >= -1 && box.bottom <= window.innerHeight + 1; }")  # scrolled to: a fraction of a px off


def in_view(page, selector: str) -> bool:
    """Whether the element's box lies inside the window, top to bottom."""
    return page.evaluate(IN_VIEW, selector)


def visible_errors(page) -> list[str]:
    """The "Error" badges and toasts the page shows."""
    errors = page.get_by_text("Error", exact=True)
    return [errors.nth(i).evaluate("e => e.outerHTML") for i in range(errors.count()) if errors.nth(i).is_visible()]


def test_photo_to_toon_then_the_slider_changes_it(page, server, tmp_path, record_property):
    photo = server.photos / "hopper.jpg"
    with screenshots_on_failure(page, tmp_path, "photo-to-toon"):
        assert press(page, "#steps", "ArrowLeft") == "2"
        start = time.monotonic()
        upload(page, photo)
        page.click("#toonify")
        page.locator("#toon img").wait_for(timeout=TOON_S * 1000)
        upload_to_toon = time.monotonic() - start
        record_property("upload_to_toon_s", round(upload_to_toon, 1))
        print(f"upload to toon through the browser: {upload_to_toon:.1f} s")
        status = page.locator("#status").inner_text()
        assert "2 steps" in status and "16 px" in status, status
        src, toon = shown_image(page, "#toon")
        assert toon.shape == (32, 32, 3)
        assert shown_image(page, "#aligned")[1].shape == (32, 32, 3)
        _, pasted = shown_image(page, "#pasted")
        assert pasted.shape == np.asarray(Image.open(photo)).shape
        assert "(512 × 600 px, PNG)" in page.locator("#pasted-download").inner_text()
        assert page.evaluate("window.scrollY") == 0  # the results beside the photo: the page stays put

        # Each under its own name, not all "image.png"; the pasted photo from its own button, exact and whole (the
        # image shows a copy of display size when the photo is larger, whose download it does not offer).
        assert page.locator("#pasted button[aria-label='Download']").count() == 0
        for result, button in (("toon", "#toon button[aria-label='Download']"),
                               ("aligned", "#aligned button[aria-label='Download']"), ("pasted", "#pasted-download")):
            assert page.locator(f"#{result} button[aria-label='Share']").count() == 0  # "Must be on Spaces"
            with page.expect_download() as download:
                page.click(button)
            assert download.value.suggested_filename == f"hopper-{result}.png"
            if result == "pasted":
                with Image.open(download.value.path()) as image:
                    assert image.format == "PNG" and np.array_equal(np.asarray(image.convert("RGB")), pasted)
        assert_usable(page.locator("#pasted-download"), "the pasted photo's download", click=False)

        page.locator("#swap label", has_text="8 px").click()  # the toon model's layers up to 8 px only
        page.wait_for_function("src => document.querySelector('#toon img').src !== src", arg=src,
                               timeout=TOON_S * 1000)
        _, reblended = shown_image(page, "#toon")
        assert reblended.shape == toon.shape and not np.array_equal(reblended, toon)
        assert "8 px" in page.locator("#status").inner_text()
        assert "Toonified" not in page.locator("#status").inner_text()  # re-rendered, not projected again
        assert "(512 × 600 px, PNG)" in page.locator("#pasted-download").inner_text()
        upload(page, server.photos / "astronaut.png")  # a new photo: the results go, their download with them
        page.locator("#pasted-download").wait_for(state="hidden", timeout=10_000)
        outside = sorted({url for url in page.requested if not url.startswith((server.url(), "data:", "blob:"))})
        assert outside == [], f"the page fetched from outside the app: {outside}"


def toonify_two_faces(page, server):
    """Upload the photo of two faces and toonify it; returns the status line, once it names face 1."""
    upload(page, server.photos / "pair.jpg")
    page.click("#toonify")
    status = page.locator("#status")
    status.filter(has_text="Face 1 of 2").wait_for(timeout=TOON_S * 1000)
    return status


def test_a_second_face_is_picked_in_the_gallery(page, server, tmp_path):
    with screenshots_on_failure(page, tmp_path, "second-face"):
        status = toonify_two_faces(page, server)
        assert "Face 1 of 2 (1 more face to pick)" in status.inner_text()
        page.locator("#faces button[aria-label='Thumbnail 2 of 2']").wait_for()
        assert page.locator("#faces button[aria-label^='Thumbnail']").count() == 2
        # Every face in view, below the gallery's label (which covered the first row; a third face was cut off).
        box, label = (page.locator(selector).first.bounding_box() for selector in ("#faces", "#faces label"))
        for thumbnail in page.locator("#faces button[aria-label^='Thumbnail']").all():
            face = thumbnail.bounding_box()
            assert face["y"] >= label["y"] + label["height"] and face["y"] + face["height"] <= box["y"] + box["height"]
        assert page.locator("#faces button[aria-label='Download']").count() == 0  # the crops are no results
        _, first_pasted = shown_image(page, "#pasted")
        page.click("#faces button[aria-label='Thumbnail 2 of 2']")
        status.filter(has_text="Face 2 of 2").wait_for(timeout=TOON_S * 1000)
        assert "more" not in status.inner_text()  # none left: no "(0 more to pick below)"
        _, both_pasted = shown_image(page, "#pasted")
        changed = (first_pasted.astype(int) != both_pasted.astype(int)).any(-1)
        assert changed[:, :512].any() and not changed[:, 512:].any()  # the astronaut's face (left) joins


def test_a_phone_shows_three_faces_to_a_row(context, server, tmp_path):
    """At 360 px the picker fitted two 88 px faces to a row, a third of its width empty, and a group photo's last
    row was cut off inside its scroll box; three fit now."""
    pair = Image.open(server.photos / "pair.jpg")
    astronaut = Image.open(server.photos / "astronaut.png")
    trio = Image.new("RGB", (pair.width + astronaut.width, pair.height), "white")
    trio.paste(pair, (0, 0))
    trio.paste(astronaut, (pair.width, 0))
    trio.save(tmp_path / "trio.jpg")
    page = page_at(context, server.url(), width=360, height=740)
    try:
        page.wait_for_selector("#toonify")
        with screenshots_on_failure(page, tmp_path, "three-faces-360"):
            upload(page, tmp_path / "trio.jpg")
            page.click("#toonify")
            page.locator("#status").filter(has_text="Face 1 of 3").wait_for(timeout=TOON_S * 1000)
            page.locator("#faces button[aria-label='Thumbnail 3 of 3']").wait_for()
            thumbnails = page.locator("#faces button[aria-label^='Thumbnail']").all()
            boxes = [thumbnail.bounding_box() for thumbnail in thumbnails]
            assert len(boxes) == 3 and len({round(box["y"]) for box in boxes}) == 1, boxes
            assert page.evaluate("document.documentElement.scrollWidth") <= 360  # nothing wider than the phone
    finally:
        page.close()


def marked_faces(page) -> list[int]:
    """The faces (from 1) that the face picker marks as selected."""
    thumbnails = page.locator("#faces button[aria-label^='Thumbnail']")
    return [i + 1 for i in range(thumbnails.count())
            if "selected" in (thumbnails.nth(i).get_attribute("class") or "").split()]


def test_the_face_picker_marks_the_face_shown(page, server, tmp_path):
    """A face clicked stayed marked when its run was stopped, face 1 shown; now the mark follows the face shown."""
    with screenshots_on_failure(page, tmp_path, "face-marked"):
        status = toonify_two_faces(page, server)
        page.wait_for_function("() => document.querySelectorAll('#faces button.selected').length > 0",
                               timeout=OWN_TIME_S * 1000)
        assert marked_faces(page) == [1]
        set_steps(page, LONG_RUN)
        page.click("#faces button[aria-label='Thumbnail 2 of 2']")
        page.locator("#toon", has_text="Fitting face 2").wait_for(timeout=TOON_S * 1000)
        page.click("#stop")
        status.filter(has_text="Stopped after step").wait_for(timeout=OWN_TIME_S * 1000)
        page.wait_for_timeout(500)
        assert marked_faces(page) == [1]  # the face shown, not the one whose run was stopped
        set_steps(page, 3)
        page.click("#faces button[aria-label='Thumbnail 2 of 2']")
        status.filter(has_text="Face 2 of 2").wait_for(timeout=TOON_S * 1000)
        page.wait_for_timeout(500)
        assert marked_faces(page) == [2]


def test_bad_uploads_say_what_is_wrong(page, server, tmp_path):
    photos = server.photos
    with screenshots_on_failure(page, tmp_path, "bad-uploads"):
        upload(page, photos / "broken.jpg")  # said at once: it previewed as an empty frame, without a word
        page.locator("#status", has_text="Not toonified: cannot read 'broken.jpg' as an image").wait_for()
        upload(page, photos / "coffee.png")
        page.click("#toonify")
        page.locator("#status", has_text="Not toonified: no face was found in 'coffee.png'").wait_for(
            timeout=TOON_S * 1000)
        assert visible_errors(page) == []  # no "Error" badge on the results
        # the status line is Markdown: '__face__.jpg' was named "face.jpg" in bold, and an <i> made the rest italic
        marked = tmp_path / "__face__ *best* ~~old~~ <i>x & [y](z).png"
        marked.write_bytes((photos / "coffee.png").read_bytes())
        upload(page, marked)
        page.click("#toonify")
        page.locator("#status", has_text="no face was found in '__face__").wait_for(timeout=TOON_S * 1000)
        assert f"no face was found in '{marked.name}'" in page.locator("#status").inner_text()
        assert page.locator("#status strong, #status em, #status del, #status i, #status a").all_inner_texts() == [
            "Not toonified:"]
        huge = tmp_path / "huge.jpg"
        with open(huge, "wb") as file:
            file.truncate(60_000_000)  # over the 50 MB upload limit (a sparse file: nothing written)
        page.requested.clear()
        page.locator("#photo input[type=file]").set_input_files(huge)
        expect_toast(page, 'File(s) exceed the maximum allowed size of 50.0 Mb: "huge.jpg"')
        assert not [url for url in page.requested if "/gradio_api/upload?" in url]  # never sent
        assert page.locator("#toon img").count() == 0


def test_an_error_stays_in_the_status_line_until_the_next_photo(page, server, tmp_path):
    """A raised error's toast vanished after 10 s, leaving red "Error" badges and no word of what was wrong; kept
    until closed, it stayed beside the next photo's toon. Then a toast for a while as well piled up ("Warning (3)"
    after three presses), outlived its photo and covered the photo's Remove button on a phone. Now the status line
    alone says it, and the next photo clears it."""
    with screenshots_on_failure(page, tmp_path, "error-in-status"):
        upload(page, server.photos / "broken.jpg")
        for _ in range(3):
            with page.expect_response(lambda response: "/gradio_api/queue/join" in response.url):
                page.click("#toonify")
            wait_until_idle(page)
            assert "Not toonified: cannot read 'broken.jpg' as an image" in page.locator("#status").inner_text()
        assert page.locator("[data-testid='toast-body']").count() == 0
        assert visible_errors(page) == []
        upload(page, server.photos / "hopper.jpg")
        page.wait_for_function("() => !document.querySelector('#status').innerText.includes('Not toonified')")


def test_a_new_photo_during_a_run_gets_none_of_its_results(page, context, server, tmp_path):
    """A photo uploaded while the last one was toonified got that one's toon, aligned face and pasted photo when
    the run ended: someone else's toon beside the new photo. Now the new photo stops the run."""
    with screenshots_on_failure(page, tmp_path, "new-photo-during-run"):
        set_steps(page, 300)
        upload(page, server.photos / "hopper.jpg")
        page.click("#toonify")
        page.locator("#toon", has_text="Fitting your photo").wait_for(timeout=TOON_S * 1000)  # the projection runs
        upload(page, server.photos / "astronaut.png")
        other = page_at(context, server.url(), width=1280)  # a second visitor, queued behind that projection
        try:
            upload(other, server.photos / "astronaut.png")
            other.click("#toonify")
            other.locator("#toon img").wait_for(timeout=TOON_S * 1000)  # the models are free: the run has ended
        finally:
            other.close()
        page.wait_for_timeout(1000)
        assert page.locator("#toon img, #aligned img, #pasted img").count() == 0
        assert "Toonified" not in page.locator("#status").inner_text()
        assert visible_errors(page) == []


def test_a_new_photo_stops_the_old_photos_projection(page, server, tmp_path, record_property):
    """A new photo cancelled the old photo's toonify, but its projection ran on to its last step holding the models
    (minutes on a CPU): the new photo's toon came after the old projection's remaining time, not its own. Now the
    new photo stops the projection after its current step. The page shows the steps in words ("project w+" was
    tqdm's label), and no "Error" badge for the stopped run."""
    with screenshots_on_failure(page, tmp_path, "new-photo-stops-old-run"):
        start_a_long_run(page, server.photos / "hopper.jpg")
        progress = page.locator("#toon").inner_text()
        assert re.search(rf"\b\d+/{LONG_RUN // 1000}k steps\b", progress), progress  # Gradio writes 5000 as 5k
        set_steps(page, 10)
        upload(page, server.photos / "astronaut.png")
        took = toonify_within_its_own_time(page, 10)
        record_property("new_photo_toon_s", round(took, 1))
        print(f"the new photo's toon, its old photo's run cut short: {took:.1f} s")
        assert shown_image(page, "#pasted")[1].shape == np.asarray(Image.open(server.photos / "astronaut.png")).shape
        page.wait_for_timeout(1000)  # any late message of the stopped run
        assert visible_errors(page) == []


@pytest.mark.parametrize("over_a_run", [False, True])
def test_toonify_pressed_as_soon_as_the_photo_is_chosen(page, server, tmp_path, over_a_run):
    """A Toonify click while the photo was still uploading did nothing, no toon and no word: Gradio's page dropped
    it while the cancel of the old photo's run was unanswered (half the clicks within 100 ms of choosing the file,
    over a run), or cancelled it when it went out before the new photo's own event (3 in 14 clicks within 20 ms,
    on a fresh page). Here every click comes at once, three photos in a row."""
    photos = ["astronaut.png", "pair.jpg", "hopper.jpg"]
    with screenshots_on_failure(page, tmp_path, f"toonify-at-once-{over_a_run}"):
        for attempt, photo in enumerate(photos):
            if over_a_run:
                start_a_long_run(page, server.photos / ("hopper.jpg" if photo != "hopper.jpg" else "astronaut.png"))
            set_steps(page, 10 + attempt)
            page.locator("#photo input[type=file]").set_input_files(server.photos / photo)
            page.click("#toonify")  # not waiting for the upload
            toon = page.locator("#status", has_text=f"{10 + attempt} steps")
            try:
                toon.wait_for(timeout=OWN_TIME_S * 1000)
            except Exception:
                raise AssertionError(f"the click for photo {attempt + 1} ({photo}) was lost: "
                                     f"{page.locator('#status').inner_text()!r}") from None
            pasted = shown_image(page, "#pasted")[1]
            assert pasted.shape == np.asarray(Image.open(server.photos / photo).convert("RGB")).shape
        assert visible_errors(page) == []


def test_stop_ends_a_long_run(page, server, tmp_path):
    """A long projection (minutes on a CPU) could only be left by uploading another photo."""
    with screenshots_on_failure(page, tmp_path, "stop"):
        start_a_long_run(page, server.photos / "hopper.jpg")
        page.click("#stop")
        page.locator("#status", has_text="Stopped after step").wait_for(timeout=OWN_TIME_S * 1000)
        assert f"of {LONG_RUN}." in page.locator("#status").inner_text()
        set_steps(page, 10)
        toonify_within_its_own_time(page, 10)  # the models are free
        assert visible_errors(page) == []


def test_stop_ends_a_second_press_too(page, server, tmp_path):
    """Toonify pressed again during a run is held by the page until the run ends, then runs: after Stop ("Stopped
    after step 33 of 300.") the second press ran all its steps. Stop ends both, and says so."""
    with screenshots_on_failure(page, tmp_path, "stop-second-press"):
        start_a_long_run(page, server.photos / "hopper.jpg")
        page.click("#toonify")
        page.click("#stop")
        page.wait_for_function("() => document.querySelector('#status').textContent.includes('Stopped after step')",
                               timeout=OWN_TIME_S * 1000)
        assert_the_held_press_does_not_run(page)
        assert "Stopped after step" in page.locator("#status").inner_text()
        set_steps(page, 10)
        toonify_within_its_own_time(page, 10)  # the models are free


def test_stop_while_waiting_for_another_visitor_says_so(page, context, server, tmp_path):
    """Stop pressed while the visitor's Toonify waited for another visitor's run left the page blank once that run
    ended: nothing said that it had stopped. It says so then."""
    with screenshots_on_failure(page, tmp_path, "stop-while-waiting"):
        start_a_long_run(page, server.photos / "hopper.jpg")
        other = page_at(context, server.url(), width=1280)  # a second visitor, queued behind that projection
        try:
            upload(other, server.photos / "astronaut.png")
            other.click("#toonify")
            other.wait_for_function(f"({BUSY})()", timeout=OWN_TIME_S * 1000)
            other.click("#stop")
            page.click("#stop")  # the first visitor's run ends: the second visitor's click would start
            other.locator("#status", has_text="Stopped before it started").wait_for(timeout=OWN_TIME_S * 1000)
            wait_until_idle(other)
            assert other.locator("#toon img").count() == 0 and visible_errors(other) == []
        finally:
            other.close()
        page.locator("#status", has_text="Stopped after step").wait_for(timeout=OWN_TIME_S * 1000)


@pytest.mark.parametrize("then", ["new photo", "photo removed"])
def test_a_second_press_ends_with_its_photo(page, server, tmp_path, then):
    """Toonify pressed again during a run is held by the page until the run ends, then sent with the photo the page
    shows then. A new photo stopped the run, and the held press toonified the new photo, which nobody had pressed
    Toonify for ("4/5k steps | Fitting your photo", until Stop); with the photo removed (its ✕), the status said "Not
    toonified: no photo yet ..." though nothing had been pressed since. The press ends with the photo it was made for:
    the page shows the new photo's state (no toon, no message), and a press now runs at once."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with screenshots_on_failure(page, tmp_path, f"second-press-{then.replace(' ', '-')}"):
        start_a_long_run(page, server.photos / "hopper.jpg")
        page.click("#toonify")  # held by the page until the run ends
        if then == "new photo":
            upload(page, server.photos / "astronaut.png")
        else:
            with page.expect_response(lambda response: "/gradio_api/run/predict" in response.url):
                page.click("#photo button[aria-label='Remove Image']")
        try:
            page.wait_for_function(f"!({BUSY})()", timeout=OWN_TIME_S * 1000)  # the old run stops after its step
        except PlaywrightTimeout:
            raise AssertionError(f"the second press runs: {page.locator('#toon').inner_text()!r}") from None
        assert_the_held_press_does_not_run(page)
        assert page.locator("#status").inner_text().strip() == "", page.locator("#status").inner_text()
        assert page.locator("#toon img, #aligned img, #pasted img").count() == 0
        assert visible_errors(page) == []
        if then == "new photo":
            set_steps(page, 10)
            toonify_within_its_own_time(page, 10)  # pressed for the new photo: it runs, the models free
            assert shown_image(page, "#pasted")[1].shape == \
                np.asarray(Image.open(server.photos / "astronaut.png").convert("RGB")).shape


def test_stop_stays_when_the_mode_changes_during_a_run(context, two_modes, tmp_path):
    """At a phone's width, as the audit found it: choosing the e4e encoder during a run hid Stop (with the steps
    slider), and nothing could end the run."""
    page = page_at(context, two_modes.url(), width=390, height=844)
    try:
        page.wait_for_selector("#toonify")
        with screenshots_on_failure(page, tmp_path, "mode-during-run"):
            start_a_long_run(page, two_modes.photos / "hopper.jpg")
            page.locator("#mode label", has_text="e4e").click()
            assert_usable(page.locator("#stop"), "Stop button")  # and clicked
            page.locator("#status", has_text="Stopped after step").wait_for(timeout=OWN_TIME_S * 1000)
    finally:
        page.close()


def test_toonify_pressed_while_the_photo_uploads_says_so(context, server, tmp_path):
    """On mobile data a phone's photo takes half a minute to upload. Toonify pressed meanwhile scrolled the page's
    "Uploading 1 file..." out of view, and the button still said "Toonify": nothing changed until the upload ended.
    The button says the photo is uploading, then that it toonifies."""
    page = page_at(context, server.url(), width=360, height=740)
    try:
        page.wait_for_selector("#toonify")
        after = "() => getComputedStyle(document.querySelector('#toonify'), '::after').content"
        with screenshots_on_failure(page, tmp_path, "upload-then-toonify-360"):
            set_steps(page, 40)  # a run long enough to be seen (3 steps ended before "Fitting your photo" showed)
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            size = (server.photos / "hopper.jpg").stat().st_size
            cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                           "uploadThroughput": size / 10})  # 10 s
            page.locator("#photo input[type=file]").set_input_files(server.photos / "hopper.jpg")
            page.locator("#photo .uploading").wait_for()
            page.click("#toonify")
            assert page.evaluate(after) == '"Uploading your photo\u2026"' and in_view(page, "#toonify")
            for _ in range(4):  # still, while it uploads (the click waiting for it)
                page.wait_for_timeout(300)
                if not page.locator("#photo .uploading").count():
                    break
                assert page.evaluate(after) == '"Uploading your photo\u2026"'
            cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                           "uploadThroughput": -1})  # the rest at full speed
            page.locator("#toon", has_text="Fitting your photo").wait_for(timeout=TOON_S * 1000)
            assert page.evaluate(after) == '"Toonifying\u2026"'
            page.locator("#status", has_text="One face").wait_for(timeout=TOON_S * 1000)
            assert page.evaluate(after) == "none"
    finally:
        page.close()


def test_a_phone_shows_the_run_where_toonify_was_pressed(context, server, tmp_path):
    """At 390 x 844 the results are below the fold: pressing Toonify showed nothing in view (the progress was in the
    toon box, out of view) and the page stayed put when the toon came. The status line kept the last run's words,
    greyed under the new run's progress, which overlapped them."""
    page = page_at(context, server.url(), width=390, height=844)
    try:
        page.wait_for_selector("#toonify")
        with screenshots_on_failure(page, tmp_path, "phone-run"):
            for steps in (40, 41):
                set_steps(page, steps)
                if steps == 40:
                    upload(page, server.photos / "hopper.jpg")
                page.evaluate("window.scrollTo(0, 0)")
                page.click("#toonify")
                page.locator("#toon", has_text="Fitting your photo").wait_for(timeout=TOON_S * 1000)
                assert busy(page) and in_view(page, "#toonify")  # "Toonifying…" where it was pressed
                page.wait_for_function(IN_VIEW, arg="#toon")  # and the steps under it (they were below the fold)
                assert not page.locator("#status").is_visible()  # not the last run's words (none, the first time)
                page.locator("#status", has_text=f"{steps} steps").wait_for(timeout=TOON_S * 1000)
                page.wait_for_function(IN_VIEW, arg="#status")  # scrolled to
                assert in_view(page, "#toon img")  # the toon above it too
            assert_usable(page.locator("#pasted-download"), "the pasted photo's download", click=False)
    finally:
        page.close()


def png_header(width: int, height: int) -> bytes:
    """A PNG file with a valid header for width x height and no pixel data (the app refuses it from its header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("width", [375, 768, 1280])
def test_an_upload_error_is_in_view(context, server, tmp_path, width):
    """At 375 x 812 a text file named notes.jpg, or a 10000 x 6000 PNG, showed as a thin broken frame, and the message
    that said why ("Not toonified: cannot read 'notes.jpg' as an image ...") was ~570 px below the fold. The page now
    scrolls to it, as after Toonify; where the status line is in view already (the results beside the photo, at 768
    and 1280 px) the page stays put, and a photo it takes moves nothing."""
    notes = tmp_path / "notes.jpg"
    notes.write_text("my shopping list, not a photo")
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header(10_000, 6_000))  # 60 megapixels, refused from its header
    page = page_at(context, server.url(), width=width, height=812)
    try:
        page.wait_for_selector("#toonify")
        with screenshots_on_failure(page, tmp_path, f"upload-error-{width}"):
            for photo, said in ((notes, "cannot read 'notes.jpg' as an image"),
                                (huge, "the app takes photos up to 50 megapixels")):
                page.evaluate("window.scrollTo(0, 0)")
                upload(page, photo)
                page.locator("#status", has_text=said).wait_for(timeout=10_000)
                status = page.locator("#status").inner_text()
                assert status.startswith("Not toonified:") and repr(photo.name) in status, status
                if width < 768:
                    try:
                        page.wait_for_function(IN_VIEW, arg="#status", timeout=5_000)  # scrolled to
                    except Exception:
                        raise AssertionError(f"the message of {photo.name} is out of view: "
                                             f"{page.locator('#status').bounding_box()}") from None
                else:
                    page.wait_for_timeout(500)
                    assert in_view(page, "#status") and page.evaluate("window.scrollY") == 0
            page.evaluate("window.scrollTo(0, 0)")
            upload(page, server.photos / "hopper.jpg")  # a photo the app takes: nothing to say, nothing moves
            page.wait_for_timeout(500)
            assert page.locator("#status").inner_text().strip() == "" and page.evaluate("window.scrollY") == 0
    finally:
        page.close()


def test_the_steps_box_shows_the_steps_that_run(page, server, tmp_path):
    """A typed 2.5 stayed in the steps box while the slider showed 3 and 2 steps ran. The box now shows the steps
    that will run once it is left or Enter is pressed (0, an empty box or too many are clamped, as they were)."""
    box = page.locator("#steps input[type=number]")
    with screenshots_on_failure(page, tmp_path, "steps-box"):
        for typed, shown in (("2.5", "3"), ("0", "1"), ("", "1"), (str(LONG_RUN + 1), str(LONG_RUN)), ("7", "7")):
            box.fill(typed)
            box.press("Tab")  # leaving the box
            page.wait_for_function(f"() => document.querySelector('#steps input[type=number]').value === '{shown}'")
        for typed, shown in (("0", "1"), (str(LONG_RUN + 1), str(LONG_RUN)), ("7", "7")):  # Enter: as leaving it
            box.fill(typed)
            box.press("Enter")  # a typed 0 or too many stayed shown
            page.wait_for_function(f"() => document.querySelector('#steps input[type=number]').value === '{shown}'")
        upload(page, server.photos / "hopper.jpg")
        box.fill("2.5")
        page.click("#toonify")  # leaves the box too
        page.locator("#status", has_text="3 steps").wait_for(timeout=TOON_S * 1000)
        assert box.input_value() == "3"


def test_a_closed_tab_stops_its_projection(context, server, tmp_path):
    """Gradio cancels nothing when a tab closes (it runs the page's unload events): the closed tab's projection ran
    on to its last step while the next visitor waited."""
    first = page_at(context, server.url(), width=1280)
    with screenshots_on_failure(first, tmp_path, "closed-tab"):
        start_a_long_run(first, server.photos / "hopper.jpg")
    first.close()
    other = page_at(context, server.url(), width=1280)
    try:
        with screenshots_on_failure(other, tmp_path, "after-closed-tab"):
            set_steps(other, 10)
            upload(other, server.photos / "astronaut.png")
            toonify_within_its_own_time(other, 10)
    finally:
        other.close()


def test_a_photo_named_with_a_dot_first_is_toonified(page, server, tmp_path):
    """`.me.jpg`, with the uploads' folder inside the server's working folder (`cd /tmp && toonlib app`, a service
    started in /): Gradio refused to move the dotfile into its cache, the page showing bare "Error" badges beside the
    last photo's toon; its results were dotfiles too (thirty-fourth session's app audit)."""
    dotted = tmp_path / ".me.jpg"
    shutil.copy(server.photos / "hopper.jpg", dotted)
    with screenshots_on_failure(page, tmp_path, "dotfile"):
        upload(page, dotted)
        page.click("#toonify")
        page.locator("#toon img").wait_for(timeout=TOON_S * 1000)
        wait_until_idle(page)
        assert visible_errors(page) == []
        assert "Toonified" in page.locator("#status").inner_text()
        with page.expect_download() as download:
            page.click("#toon button[aria-label='Download']")
        assert download.value.suggested_filename == "me-toon.png"


def test_a_heic_photo_is_shown_and_toonified_under_its_name(page, server, tmp_path):
    """Chromium (and Firefox) draw no HEIC or TIFF: an iPhone's photo was toonified, but it showed as an empty frame.
    The page now shows a JPEG copy of it, which comes while a Toonify pressed at once runs: that run reads the photo
    itself and names the results by it."""
    import pillow_heif

    heic = tmp_path / "my photo.heic"
    pillow_heif.from_pillow(Image.open(server.photos / "hopper.jpg")).save(heic, quality=90)
    with screenshots_on_failure(page, tmp_path, "heic"):
        page.locator("#photo input[type=file]").set_input_files(heic)
        page.click("#toonify")
        page.locator("#status", has_text="One face").wait_for(timeout=TOON_S * 1000)
        assert page.locator("#photo img").evaluate("image => image.complete && image.naturalWidth") == 512
        assert page.locator("#toon a[download]").get_attribute("download") == "my photo-toon.png"


def test_an_iphones_heic_name_in_capitals_is_taken_picked_or_dropped(page, server, tmp_path):
    """Chromium on Linux types `.heic` from its lower-case name alone: IMG_0002.HEIC, as an iPhone names it, came
    untyped, and Gradio's page (image/* files only) refused it with a red "Invalid file type", the status saying
    nothing. The page's script types it as an image, picked or dropped onto the photo."""
    import base64

    import pillow_heif

    heic = tmp_path / "IMG_0002.HEIC"
    pillow_heif.from_pillow(Image.open(server.photos / "hopper.jpg")).save(heic, quality=90)
    with screenshots_on_failure(page, tmp_path, "heic-capitals"):
        assert page.evaluate("(name) => { const t = new DataTransfer(); t.items.add(new File(['x'], name)); "
                             "return t.files[0].type; }", heic.name) == ""  # untyped, as a picked one is
        page.locator("#photo input[type=file]").set_input_files(heic)
        page.click("#toonify")
        page.locator("#status", has_text="One face").wait_for(timeout=TOON_S * 1000)
        assert visible_errors(page) == [] and page.locator("#toon a[download]").get_attribute(
            "download") == "IMG_0002-toon.png"
        page.click("#photo button[aria-label='Remove Image']")
        page.locator("#photo img").wait_for(state="detached")
        dropped = heic.with_name("IMG_0003.HEIF")
        heic.rename(dropped)
        data = page.evaluate_handle(
            "([name, bytes]) => { const t = new DataTransfer(); t.items.add(new File([Uint8Array.from(atob(bytes), "
            "(c) => c.charCodeAt(0))], name)); return t; }", [dropped.name, base64.b64encode(dropped.read_bytes())
                                                               .decode()])
        page.dispatch_event("#photo", "drop", {"dataTransfer": data})
        page.locator("#photo img").wait_for(timeout=30_000)
        page.click("#toonify")
        page.locator("#toon a[download='IMG_0003-toon.png']").wait_for(timeout=TOON_S * 1000)
        assert visible_errors(page) == []


def test_a_long_photo_name_is_toonified(page, server, tmp_path):
    """A photo named with 82 Japanese characters (246 bytes) failed every toonify with bare red "Error" badges, the
    Toonify button stuck on "Toonifying...": its results' names ("...-aligned.png") were too long for a file name."""
    photo = tmp_path / ("写真" * 41 + ".jpg")
    photo.write_bytes((server.photos / "hopper.jpg").read_bytes())
    with screenshots_on_failure(page, tmp_path, "long-name"):
        upload(page, photo)
        page.click("#toonify")
        page.locator("#status", has_text="One face").wait_for(timeout=TOON_S * 1000)
        assert visible_errors(page) == [] and not busy(page)
        assert page.locator("#toon a[download]").get_attribute("download") == "写真" * 33 + "-toon.png"  # 198 bytes


def test_a_failed_run_leaves_toonify_ready(page, server, tmp_path):
    """A run that fails in a way toonlib does not foresee (here dlib's landmarks on a photo 1 px tall: "The stride of
    the 2nd dimension ... must be 3") ends with Gradio's red "Error" badges; the Toonify button then said
    "Toonifying..." for good, the status line hidden, as if the run went on."""
    strip = tmp_path / "strip.png"
    Image.new("RGB", (40, 1), "grey").save(strip)
    with screenshots_on_failure(page, tmp_path, "failed-run"):
        upload(page, strip)
        page.click("#toonify")
        page.wait_for_function("() => document.querySelector('#toon .error') !== null"  # once dlib copes: its words
                               " || document.querySelector('#status').innerText.includes('Not toonified')",
                               timeout=TOON_S * 1000)
        page.wait_for_timeout(500)
        assert not busy(page) and page.locator("#toonify").inner_text() == "Toonify"


def test_no_run_history(page, server, tmp_path):
    """Gradio's "Runs" page (in the footer after a run) reloaded a past run's pictures without its session: the face
    picker stayed hidden and a swap choice did nothing. It also listed the visitors' photos for the next person at the
    browser and offered to save runs in a Hugging Face bucket, which the server would contact."""
    with screenshots_on_failure(page, tmp_path, "run-history"):
        upload(page, server.photos / "hopper.jpg")
        page.click("#toonify")
        page.locator("#status", has_text="One face").wait_for(timeout=TOON_S * 1000)
        page.wait_for_timeout(1000)  # the footer's link came with the saved run
        assert page.locator("footer").get_by_text("Runs").count() == 0
        assert page.request.get(server.url("gradio_api/runs")).status == 404


def test_webcam_photo_reaches_the_app(page, server, tmp_path):
    """Chromium's fake camera (a test pattern, no face): the capture is toonified like an upload. Gradio names every
    capture "image.png"; the app names it by its time (`_upload_name`), and an uploaded file called image.png keeps
    its name."""
    with screenshots_on_failure(page, tmp_path, "webcam"):
        page.click("#photo button[aria-label='Capture from camera']")
        page.get_by_text("Click to Access Webcam").click()
        page.wait_for_function("() => { const v = document.querySelector('#photo video');"
                               " return v !== null && v.readyState >= 2 && v.videoWidth > 0; }")  # frames arrive
        with page.expect_response(lambda response: "/gradio_api/run/predict" in response.url):  # as upload()
            page.click("#photo button[aria-label='capture photo']")
        page.click("#toonify")
        page.locator("#status", has_text=re.compile(r"Not toonified: no face was found in "
                                                    r"'webcam-\d{4}-\d\d-\d\d-\d{6}\.png'")
                     ).wait_for(timeout=TOON_S * 1000)
        named_image = tmp_path / "image.png"
        Image.open(server.photos / "coffee.png").save(named_image)  # no face
        upload(page, named_image)
        page.click("#toonify")
        page.locator("#status", has_text="Not toonified: no face was found in 'image.png'").wait_for(
            timeout=TOON_S * 1000)


@pytest.mark.parametrize("width", [390, 412, 800, 1024, 1600])  # 390, 412: phones opening a shared link
def test_controls_usable_at_every_width(context, server, tmp_path, width):
    page = page_at(context, server.url(), width=width)
    try:
        page.wait_for_selector("#toonify")
        with screenshots_on_failure(page, tmp_path, f"controls-{width}"):
            assert_usable(page.locator("#photo button[aria-label='Drop an image file here to upload']"), "upload",
                          click=False)
            assert_usable(page.locator("#photo button[aria-label='Capture from camera']"), "webcam", click=False)
            assert_usable(page.locator("#steps input[type=range]"), "steps slider")
            assert_usable(page.locator("#swap label", has_text="8 px"), "swap resolution 8 px")
            assert_usable(page.locator("#toonify"), "Toonify button", click=False)
            assert_usable(page.locator("#stop"), "Stop button", click=False)
            assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing scrolls sideways
            for result in ("#aligned", "#pasted"):  # at 412 px side by side, 166 px each (thirty-sixth session's audit)
                box = page.locator(result).bounding_box()
                assert box["width"] >= min(300, width - 100), (result, box)
    finally:
        page.close()


def test_over_plain_http_from_another_machine_the_webcam_is_not_offered(page, context, server, tmp_path):
    """Served to the network (`--host 0.0.0.0`), the page is plain http, where browsers allow no webcam: it offered
    one all the same, whose button showed Gradio's untranslated "image.no_webcam_support" (fortieth session's audit).
    Opened by a name that is not this machine's (Chromium maps it to 127.0.0.1), the page offers uploads only and
    says why; on this machine (127.0.0.1, a secure context) the webcam stays."""
    webcam, intro = "#photo button[aria-label='Capture from camera']", "p:has-text('Upload a photo of a face')"
    assert page.locator(webcam).is_visible() and "(or take one with the webcam)" in page.locator(intro).inner_text()
    assert "No webcam here" not in page.locator(intro).inner_text()
    remote = page_at(context, server.url().replace("127.0.0.1", LAN_NAME), width=1280)
    try:
        remote.wait_for_selector("#toonify")
        with screenshots_on_failure(remote, tmp_path, "no-webcam"):
            assert remote.evaluate("window.isSecureContext") is False
            assert remote.locator(webcam).is_hidden()
            said = remote.locator(intro).inner_text()
            assert "(or take one with the webcam)" not in said and ("No webcam here: browsers allow one only over "
                                                                    "https or on the app's own machine (localhost); "
                                                                    "toonlib app --share gives an https link.") in said
            assert_usable(remote.locator("#photo button[aria-label='Drop an image file here to upload']"), "upload",
                          click=False)
    finally:
        remote.close()


def test_a_file_the_browser_types_as_no_image_is_said_in_the_status_line(page, server, tmp_path):
    """A PDF or a text file got a red toast from Gradio's page, "Invalid file type: doc.pdf. Only image/* allowed.",
    one more at each file, while the status line stayed empty (fortieth session's audit). The status line says what
    the file is, as it says a file named .jpg that is no image."""
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
    said = {pdf: "it is a PDF document, not a photo", server.photos / "notes.txt": "it is in no image format toonlib"}
    with screenshots_on_failure(page, tmp_path, "no-image"):
        for file, why in said.items():
            status = page.locator("#status", has_text=f"Not toonified: cannot read '{file.name}' as an image: {why}")
            toasts = page.locator("[data-testid='toast-body']")
            page.locator("#photo input[type=file]").set_input_files(file)
            status.or_(toasts).first.wait_for()
            assert toasts.all_inner_texts() == [] and status.count() == 1


def test_the_steps_slider_shows_a_keyboard_focus_ring(page, server):
    """A keyboard user could not see that the steps slider had the focus: nothing changed on it (fortieth session's
    audit)."""
    page.locator("#steps input[type=range]").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # focused by the keyboard: :focus-visible
    ring = page.evaluate("() => { const e = document.activeElement, s = getComputedStyle(e);"
                         " return [e.matches('#steps input[type=range]'), s.outlineStyle, s.outlineWidth]; }")
    assert ring[0] and ring[1] == "solid" and ring[2] != "0px", ring


@pytest.fixture(scope="module")
def two_starts(tmp_path_factory, random_vgg_torch_home, encoder_checkpoint):
    """`toonlib app --invert optimize e4e+optimize` without --steps: the slider starts at 200 for optimize, at 100 for
    e4e+optimize (`_e4e_app`); stopped with the module."""
    root = tmp_path_factory.mktemp("app_two_starts")
    app = _e4e_app(root, random_vgg_torch_home, encoder_checkpoint, "--invert", "optimize", "e4e+optimize")
    app.photos = write_photos(root / "photos")
    yield app
    app.stop()


def test_the_steps_reset_button_goes_to_the_start_of_the_mode_chosen(context, two_starts, tmp_path):
    """Gradio's ↺ ("Reset to default value") put back the value the slider was built with, the first mode's start:
    200 steps for e4e+optimize, whose start is 100; and a visitor's 100 in optimize came back as 200 after a round
    trip of modes (forty-fourth session's audit)."""
    page = page_at(context, two_starts.url(), width=1280)
    box = page.locator("#steps input[type=number]")
    shows = "(n) => document.querySelector('#steps input[type=number]').value === n"
    try:
        page.wait_for_selector("#toonify")
        with screenshots_on_failure(page, tmp_path, "steps-reset"):
            assert box.input_value() == "200"
            page.locator("#mode label", has_text="e4e, then optimise").click()
            page.wait_for_function(shows, arg="100")
            set_steps(page, 7)
            page.click("#steps [data-testid=reset-button]")
            page.wait_for_timeout(1000)  # Gradio's own reset shows at once: 200 here
            page.wait_for_function(shows, arg="100")
            page.locator("#mode label", has_text="optimise (slow").click()
            page.wait_for_function(shows, arg="200")
            set_steps(page, 7)
            page.click("#steps [data-testid=reset-button]")
            page.wait_for_timeout(1000)
            page.wait_for_function(shows, arg="200")
            set_steps(page, 100)  # the visitor's 100, e4e+optimize's start, kept through a round trip (it was 200)
            page.wait_for_timeout(1000)  # the server has noted it (`ToonApp.steps_followed`)
            for label in ("e4e, then optimise", "optimise (slow"):
                page.locator("#mode label", has_text=label).click()
                page.wait_for_timeout(1000)
                page.wait_for_function(shows, arg="100")
            upload(page, two_starts.photos / "hopper.jpg")  # and the steps that run are the start's
            page.locator("#mode label", has_text="e4e, then optimise").click()
            page.wait_for_function(shows, arg="100")
            set_steps(page, 3)
            page.click("#steps [data-testid=reset-button]")
            page.wait_for_timeout(1000)
            page.click("#toonify")
            page.locator("#status", has_text="e4e, then optimise, 100 steps").wait_for(timeout=TOON_S * 1000)
    finally:
        page.close()
