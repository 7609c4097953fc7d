"""The four ways to toonify a photo agree: the command line (`toonlib toonify`, in-process), the Python API
(`toonlib.Toonifier`, `toonlib.toonify`), the web app's logic (`ToonApp`) and the notebook panel (`ToonifyPanel`).

For the same tiny models, photo, steps, seed and swap resolution, each gives the same latent (torch.equal) and the same
toon, aligned, reconstruction and pasted pixels (exactly: every interface draws uint8 images with `to_uint8` and the
command line writes them as PNG, which is lossless for 8-bit RGB, so there is no tolerance anywhere). Each interface has
a Toonifier of its own, so none relies on another having set the blend. The app and the panel take no seed: they
project with the default seed, 0, which the command line and the API runs below leave at their defaults too.

tests/test_app.py, test_cli_pipeline.py and test_images_widgets.py test each interface on its own.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from test_images_widgets import _upload
from tiny import random_lpips, write_photos, write_toonify_models

import toonlib
from toonlib import cli, losses
from toonlib.app import ToonApp
from toonlib.blending import blend
from toonlib.images import to_uint8
from toonlib.pipeline import Toonifier, paste
from toonlib.projection import load_latent, render
from toonlib.widgets import ToonifyPanel

STEPS = 3
SEED = 3  # a seed other than the default, for the runs that take one
SWAP = 16  # the re-blend; the tiny toon file's published blend is at 8 px (tiny.write_toonify_models)

pytestmark = pytest.mark.filterwarnings("ignore::toonlib.blending.LineageWarning")  # the tiny models are unrelated


def pixels(image) -> np.ndarray:
    """An image (PIL, or the path of a PNG an interface wrote) as uint8 RGB pixels."""
    return np.asarray(Image.open(image) if not isinstance(image, Image.Image) else image, dtype=np.uint8)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every interface run once on hopper.jpg, its results by interface."""
    root = tmp_path_factory.mktemp("agree")
    base_path, toon_path, base, toon = write_toonify_models(root)
    photo = write_photos(root / "photos") / "hopper.jpg"
    models = ["--base", str(base_path), "--toon", str(toon_path)]
    out = root / "out"
    with pytest.MonkeyPatch.context() as mp:
        # The product's LPIPS cache pre-filled with a random-trunk LPIPS (no VGG16 download), as test_app does.
        mp.setitem(losses._LPIPS_CACHE, "cpu", random_lpips())
        torch.manual_seed(1234)  # the global generator must not matter: every interface seeds its projection

        def make() -> Toonifier:
            return Toonifier(base_path, toon_path, detector="dlib")

        # Python API: the published blend, defaults for seed and space, then re-blended.
        api = make()(photo, steps=STEPS, paste_back=True, progress=False)
        api_toonifier = make()
        api_toonifier.set_blend(SWAP)
        api16 = Toonifier(base_path, toon_path, swap_res=SWAP, detector="dlib")(
            photo, steps=STEPS, seed=SEED, paste_back=True, progress=False)
        function = toonlib.toonify(photo, base_path, toon_path, steps=STEPS, detector="dlib", paste_back=True,
                                   progress=False)

        # Command line: default seed, published blend; then --swap-res and --seed; then the saved latent re-blended.
        assert cli.main(["toonify", str(photo), "-o", str(out / "cli.png"), *models, "--steps", str(STEPS),
                         "--paste-back", "--detector", "dlib", "--no-identity"]) == 0
        assert cli.main(["toonify", str(photo), "-o", str(out / "cli16.png"), *models, "--steps", str(STEPS),
                         "--seed", str(SEED), "--swap-res", str(SWAP), "--paste-back", "--detector", "dlib",
                         "--no-identity"]) == 0
        assert cli.main(["toonify", str(out / "cli-latent.npz"), "-o", str(out / "latent16.png"), *models,
                         "--swap-res", str(SWAP)]) == 0
        assert cli.main(["toonify", str(out / "cli-latent.npz"), "-o", str(out / "latent.png"), "--toon",
                         str(toon_path)]) == 0  # the published blend: no base read

        # The web app: toonify at SWAP, then the slider to 8 px.
        app = ToonApp(make(), steps=2, max_steps=50)  # its steps slider starts elsewhere: STEPS is what is sent
        session, app_view = app.toonify(photo, STEPS, SWAP)
        app_view8 = app.reblend(session, 8)

        # The notebook panel, driven as tests/test_images_widgets.py drives it.
        panel = ToonifyPanel(make(), steps=1, folder=root / "uploads")
        _upload(panel.upload, "hopper.jpg", photo.read_bytes())
        panel.steps.value = STEPS
        panel.run_button.click()
        assert panel.result is not None, panel.status.value
        result = panel.result
        published = dict(toon=result.toon, pasted=result.pasted)  # the slider replaces them
        panel.swap_res.value = SWAP
        panel16 = dict(toon=panel.result.toon, pasted=panel.result.pasted)

        # Several faces: a folder of a photo of two faces (astronaut's, Grace Hopper's: the larger, face 1) and
        # hopper.jpg, every face toonified by the command line (one photo a batch) and the API (both in one batch),
        # and face 2 of the pair picked in the app.
        folder = root / "folder"
        folder.mkdir()
        astronaut, hopper = Image.open(photo.parent / "astronaut.png"), Image.open(photo)
        pair = Image.new("RGB", (astronaut.width + hopper.width, max(astronaut.height, hopper.height)), "white")
        pair.paste(astronaut, (0, 0))
        pair.paste(hopper, (astronaut.width, 0))
        pair.save(folder / "a-pair.png")
        hopper.save(folder / "b-hopper.jpg", quality=100)
        assert cli.main(["toonify", str(folder), "-o", str(out / "folder"), *models, "--steps", str(STEPS),
                         "--all-faces", "--batch-size", "1", "--detector", "dlib", "--no-identity"]) == 0
        batched = [[result.w for result in results] for _, results in make().toonify_many(
            [folder / "a-pair.png", folder / "b-hopper.jpg"], batch_size=2, all_faces=True, steps=STEPS,
            progress=False)]
        pair_session, _ = app.toonify(folder / "a-pair.png", STEPS, SWAP)
        app.pick(pair_session, 1, STEPS, SWAP)
        alone = make()(folder / "b-hopper.jpg", steps=STEPS, progress=False).w

    return dict(base=base, toon=toon, photo=photo, out=out, api=api, api_toonifier=api_toonifier, api16=api16,
                function=function, session=session, app=app_view, app8=app_view8, panel=result,
                panel_published=published, panel16=panel16, batched=batched, pair_session=pair_session, alone=alone)


def test_every_interface_finds_the_same_latent(runs):
    w = runs["api"].w
    assert w.shape == (1, 8, 16) and runs["api"].losses.shape == (STEPS,)
    latents = {"toonlib toonify (saved -latent.npz)": load_latent(runs["out"] / "cli-latent.npz"),
               "toonlib.toonify()": runs["function"].w,
               "ToonApp.toonify": runs["session"].latents[0][1],
               "ToonifyPanel": runs["panel"].w}
    for interface, latent in latents.items():
        assert torch.equal(latent, w), f"{interface}'s latent differs from Toonifier's (same photo, steps, seed 0)"
    assert runs["session"].latents[0][0] == "optimize" and runs["session"].steps[0] == STEPS
    assert runs["panel"].losses.shape == (STEPS,)  # the panel ran the steps its slider was set to
    # With --seed / seed= given: the same latent, another than the default seed's.
    cli16 = load_latent(runs["out"] / "cli16-latent.npz")
    assert torch.equal(cli16, runs["api16"].w), "toonlib toonify --seed 3 and Toonifier(seed=3) differ"
    assert not torch.equal(cli16, w), "the seed made no difference: this test could not tell seeds apart"


def test_the_aligned_face_and_reconstruction_agree(runs):
    api = runs["api"]
    for interface, aligned in {"toonlib toonify": runs["out"] / "cli-aligned.png",
                               "toonlib.toonify()": runs["function"].aligned, "ToonApp": runs["app"].aligned,
                               "ToonifyPanel": runs["panel"].aligned}.items():
        assert np.array_equal(pixels(aligned), pixels(api.aligned)), f"{interface}'s aligned face differs"
    for interface, reconstruction in {"toonlib toonify": runs["out"] / "cli-reconstruction.png",
                                      "ToonifyPanel": runs["panel"].reconstruction}.items():
        assert np.array_equal(pixels(reconstruction), pixels(api.reconstruction)), \
            f"{interface}'s reconstruction differs"
    # drawn as the toon is, with const noise: the projection's optimised noise maps looked closer to the photo
    assert np.array_equal(pixels(api.reconstruction), to_uint8(render(runs["api_toonifier"].base, api.w)[0]))


def test_the_published_blend_draws_the_same_toon(runs):
    api = runs["api"]
    expected = pixels(api.toon)
    assert np.array_equal(expected, to_uint8(render(runs["api_toonifier"].published_blend, api.w)[0]))
    for interface, toon in {"toonlib toonify": runs["out"] / "cli.png", "toonlib.toonify()": runs["function"].toon,
                            "toonlib toonify LATENT (no --swap-res)": runs["out"] / "latent.png",
                            "ToonifyPanel (swap slider 'published')": runs["panel_published"]["toon"]}.items():
        assert np.array_equal(pixels(toon), expected), f"{interface}'s toon (published blend) differs"
    # The app offers no "published" choice for a toon model it can re-blend; this file's published blend is the blend
    # at 8 px, which the app's slider at 8 px re-makes from the toon model and the base.
    assert np.array_equal(pixels(runs["app8"].toon), expected), "ToonApp's toon at 8 px differs from the published"


def test_a_reblend_draws_the_same_toon(runs):
    """Toonifier.set_blend(16); render(w) is what every interface shows at 16 px, the saved latent re-rendered too."""
    w = runs["api"].w
    expected = pixels(runs["api_toonifier"].render(w))
    # the blend itself: the toon model's layers up to 16 px, the base's above (as test_app checks the app's)
    assert np.array_equal(expected, to_uint8(render(blend(runs["toon"], runs["base"], SWAP), w)[0]))
    assert not np.array_equal(expected, pixels(runs["api"].toon))  # another blend than the published one
    for interface, toon in {"toonlib toonify LATENT --swap-res 16": runs["out"] / "latent16.png",
                            "ToonApp.toonify(swap_res=16)": runs["app"].toon,
                            "ToonifyPanel (swap slider at 16 px)": runs["panel16"]["toon"]}.items():
        assert np.array_equal(pixels(toon), expected), f"{interface}'s toon differs from Toonifier.set_blend(16)"
    # photo -> toon at 16 px in one go (seed 3): the command line and Toonifier(swap_res=16)
    api16 = runs["api16"]
    expected16 = pixels(runs["api_toonifier"].render(api16.w))
    for interface, toon in {"Toonifier(swap_res=16)": api16.toon,
                            "toonlib toonify --swap-res 16": runs["out"] / "cli16.png"}.items():
        assert np.array_equal(pixels(toon), expected16), f"{interface}'s toon differs from Toonifier.set_blend(16)"


def test_the_pasted_photo_agrees(runs):
    api, photo = runs["api"], runs["photo"]
    assert np.array_equal(pixels(api.pasted), pixels(paste(api.photo, api.toon, api.quad)))
    assert api.pasted.size == Image.open(photo).size
    for interface, pasted in {"toonlib toonify --paste-back": runs["out"] / "cli-pasted.png",
                              "toonlib.toonify(paste_back=True)": runs["function"].pasted,
                              "ToonifyPanel (published)": runs["panel_published"]["pasted"]}.items():
        assert np.array_equal(pixels(pasted), pixels(api.pasted)), f"{interface}'s pasted photo differs"
    # at 16 px: the re-blended toon of the same latent, pasted into the same place
    expected = pixels(paste(api.photo, runs["api_toonifier"].render(api.w), api.quad))
    for interface, pasted in {"ToonApp.toonify(swap_res=16)": runs["app"].pasted,
                              "ToonifyPanel (swap slider at 16 px)": runs["panel16"]["pasted"]}.items():
        assert np.array_equal(pixels(pasted), expected), f"{interface}'s pasted photo differs"
    api16 = runs["api16"]
    assert np.array_equal(pixels(runs["out"] / "cli16-pasted.png"), pixels(api16.pasted)), \
        "toonlib toonify --swap-res 16 --paste-back and Toonifier(swap_res=16)(paste_back=True) differ"


def test_a_face_gets_the_same_latent_alone_in_a_folder_beside_other_faces_and_in_any_batch(runs):
    """Each face is projected with the seed given, whatever its company. The pipeline projected the faces of a batch
    with seed + (the batch's first photo's index) + (the face's index in the batch): a photo in a folder got another
    latent than alone, the app's face 2 (picked: seed 0) another than `toonify --all-faces`'s (seed 1), and with
    --all-faces the batch size changed the faces after a photo of several (`--batch-size 1` and 2 differed)."""
    folder = runs["out"] / "folder"
    cli = [[load_latent(folder / f"a-pair-face{i}-latent.npz") for i in (1, 2)],
           [load_latent(folder / "b-hopper-face1-latent.npz")]]
    assert [len(faces) for faces in runs["batched"]] == [2, 1]
    for photo, (cli_faces, api_faces) in enumerate(zip(cli, runs["batched"])):
        for face, (a, b) in enumerate(zip(cli_faces, api_faces)):
            assert torch.equal(a, b), (f"photo {photo + 1} face {face + 1}: toonlib toonify --all-faces --batch-size 1"
                                       " and Toonifier.toonify_many(all_faces=True, batch_size=2) differ")
    assert torch.equal(runs["batched"][1][0], runs["alone"]), \
        "hopper.jpg, the second photo of the folder: its latent differs from its latent alone (Toonifier(photo))"
    assert torch.equal(runs["pair_session"].latents[1][1], runs["batched"][0][1]), \
        "face 2 of the pair: the app's pick differs from toonify_many(all_faces=True)'s"
    assert torch.equal(runs["pair_session"].latents[0][1], runs["batched"][0][0])
