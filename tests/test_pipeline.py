"""toonify end to end on real photos (shipped by installed packages) with tiny random models."""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from tiny import random_lpips, tiny_generator, write_photos, write_toonify_models

from toonlib.align import NoFaceError
from toonlib.blending import blend
from toonlib.images import ImageReadError, to_uint8
from toonlib.pipeline import Toonifier, ToonifyResult, paste, start_steps, toonify
from toonlib.projection import ProjectionResult, project, render, save_latent

STEPS = 3


@pytest.fixture(scope="module")
def lpips_net():
    return random_lpips()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    _, _, base, toon = write_toonify_models(folder)
    return folder, base, toon


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("photos"))


def test_every_model_name_is_checked_before_the_first_download(models, photos, monkeypatch):
    from toonlib import download
    from toonlib.models import UnknownModelError

    monkeypatch.setattr(download, "fetch", lambda *args, **kwargs: pytest.fail("a download was started"))
    folder, _, _ = models
    with pytest.raises(UnknownModelError, match="base='ffhq-1042': unknown model 'ffhq-1042'. Did you mean 'ffhq-1024"):
        Toonifier(base="ffhq-1042")  # the default toon model is a registry name: loading it would download it
    with pytest.raises(FileNotFoundError, match="toon='.*toon.pkl': no checkpoint at"):
        Toonifier(base=folder / "base.safetensors", toon=str(folder / "toon.pkl"))
    # the two models swapped (the base comes first): photos were projected into the toon model without a word
    import toonlib

    message = (r"^base='toonify-blended-tf': 'toonify-blended-tf' is a toon model, not a base \(the model photos are "
               r"projected into, such as 'ffhq-1024-tf', its own\): give it as toon= \(a Toonifier takes the base "
               r"first\)$")
    for swapped in (lambda: Toonifier("toonify-blended-tf", "ffhq-1024-tf"),
                    lambda: toonlib.toonify(photos / "hopper.jpg", "toonify-blended-tf")):
        with pytest.raises(ValueError, match=message):
            swapped()
    # blend's two models swapped: FFHQ's low layers and the toon's high ones, written without a word
    from toonlib.blending import blend_per_layer, swap_resolution_grid

    message = (r"^high='toonify-blended-tf': 'toonify-blended-tf' is a toon model, not a base \(.*\): give it as low, "
               r"the first argument \(the toon model gives the low-res layers, the base the high-res ones\)$")
    for swapped in (lambda: toonlib.blend("ffhq-1024-tf", "toonify-blended-tf", 16),
                    lambda: blend_per_layer("ffhq-1024-tf", "toonify-blended-tf", [0.0] * 18),
                    lambda: swap_resolution_grid("ffhq-1024-tf", "toonify-blended-tf", [0])):
        with pytest.raises(ValueError, match=message):
            swapped()
    # a registry encoder as the toon model: its base was downloaded, then blended with itself under a warning
    with pytest.raises(ValueError, match=r"^toon='e4e-ffhq': 'e4e-ffhq' is an encoder \(photo -> latent of "
                                         r"'ffhq-1024-rosinality'\), not a toon model: give it as encoder= with "
                                         r"invert='e4e'; a toon model is one `toonlib models` marks under TOON"):
        Toonifier(toon="e4e-ffhq")
    # a registry base as the toon model: downloaded (380 MB), then blended with the base, faces as they are
    with pytest.raises(ValueError, match=r"^toon='ffhq-1024-tf': 'ffhq-1024-tf' is a base model \(the model photos are "
                                         r"projected into\), not a toon model: give it as base=; a toon model is one"):
        Toonifier(toon="ffhq-1024-tf")
    with pytest.raises(ValueError, match=r"^the toon model: 'ffhq-1024-tf' is a base model \(the model photos are "
                                         r"projected into\), not a toon model: give it as the base model; a toon"):
        toonlib.blend("ffhq-1024-tf", "ffhq-1024", 16)
    with pytest.raises(ValueError, match=r"^the toon model: 'psp-ffhq' is an encoder .*: an encoder inverts photos "
                                         r"\(encoder=, invert='psp'\)"):
        toonlib.blend("psp-ffhq", folder / "base.safetensors", 8)
    # a re-blend's shape without the swap resolution it shapes: refused, not silently ignored
    for setting in ({"level": 1}, {"blend_width": 2.0}):
        with pytest.raises(ValueError, match="give a swap resolution too"):
            Toonifier(**setting)


def test_a_device_this_machine_lacks_is_refused_before_any_model_is_read(models, monkeypatch):
    import toonlib
    from toonlib import checkpoints, encoders

    folder, _, _ = models
    monkeypatch.setattr(checkpoints, "_resolve", lambda *args: pytest.fail("a model was read first"))
    monkeypatch.setattr(encoders, "resolve_source", lambda *args: pytest.fail("an encoder was read first"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # torch said "Found no NVIDIA driver on your system" once the first tensor moved
    for load in (toonlib.load_network, toonlib.load_generator, toonlib.load_encoder):
        with pytest.raises(ValueError, match="device='cuda', but torch finds no CUDA GPU here .* pass device='cpu'"):
            load(folder / "base.safetensors", device="cuda")
    with pytest.raises(ValueError, match=r"device='gpu' is not a torch device: use 'cpu', 'cuda', 'cuda:1', \.\.\. or "
                                         r"None \(CUDA when available, else the CPU\)$"):
        Toonifier(folder / "base.safetensors", folder / "toon.safetensors", device="gpu")
    for load in (toonlib.load_network, toonlib.load_generator):  # they keep None on the CPU: said so (audit)
        with pytest.raises(ValueError, match=r"device='gpu' is not a torch device: .* or None \(the CPU\)$"):
            load(folder / "base.safetensors", device="gpu")
    # another backend that this torch build or machine lacks (Linux has no Apple GPU): torch said "PyTorch is not
    # linked with support for mps devices" once the checkpoint had been read
    assert not torch.backends.mps.is_available()
    for load in (toonlib.load_network, toonlib.load_generator):
        with pytest.raises(ValueError, match=r"device='mps', but torch has no mps device here .* pass device='cpu'"):
            load(folder / "base.safetensors", device="mps")
    with pytest.raises(ValueError, match=r"device='mps', but torch has no mps device here"):
        Toonifier(folder / "base.safetensors", folder / "toon.safetensors", device="mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"device='cuda:2', but this machine has 2 CUDA GPUs \(cuda:0 to cuda:1\)"):
        toonlib.load_network(folder / "base.safetensors", device="cuda:2")
    with pytest.raises(ValueError, match="device='cuda:2'"):
        toonlib.project(tiny_generator(0), torch.zeros(3, 32, 32), device="cuda:2")


def test_a_folder_of_photos_leaves_out_hidden_files(tmp_path):
    from toonlib.pipeline import photos_in

    for name in ("b.jpg", "a.PNG", "._b.jpg", ".hidden.png", "notes.txt"):  # ._b.jpg: a Mac's resource fork
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.jpg").mkdir()
    assert [p.name for p in photos_in(tmp_path)] == ["a.PNG", "b.jpg"]


def test_every_intermediate(models, photos, lpips_net):
    folder, base, toon = models
    result = toonify(photos / "astronaut.png", base=folder / "base.safetensors", toon=folder / "toon.safetensors",
                     steps=STEPS,
                     lpips_net=lpips_net, progress=False, detector="dlib")
    assert result.photo.size == (512, 512)
    assert result.aligned.size == result.reconstruction.size == result.toon.size == (32, 32)
    assert result.landmarks.shape == (68, 2) and result.quad.shape == (4, 2)
    assert result.w.shape == (1, base.num_ws, base.w_dim) and result.losses.shape == (STEPS,)
    assert result.pasted is None
    # The toon is the published blend (the file's G_ema) rendering the base model's latent.
    expected = render(blend(toon, base, 8), result.w)[0]
    assert np.array_equal(np.asarray(result.toon), to_uint8(expected))


def test_the_face_detector_runs_on_the_toonifiers_device(models, photos, lpips_net, monkeypatch):
    """Toonifier(device='cpu') built face-alignment on the default device all the same: CUDA (cuda:0) on a machine with
    a GPU, where the user had chosen the CPU (a busy or small GPU) or cuda:1 (a shared machine)."""
    from toonlib import align

    asked, backend = [], align._get_backend
    monkeypatch.setattr(align, "_get_backend",
                        lambda detector, device: asked.append(device) or backend(detector, device))
    folder, _, _ = models
    toonify(photos / "astronaut.png", base=folder / "base.safetensors", toon=folder / "toon.safetensors", steps=1,
            lpips_net=lpips_net, progress=False, detector="dlib", device="cpu")
    assert asked == ["cpu"]


def test_reblending_and_paste_back(models, photos, lpips_net):
    folder, base, toon = models
    toonifier = Toonifier(folder / "base.safetensors", folder / "toon.safetensors", swap_res=16, detector="dlib")
    result = toonifier(photos / "hopper.jpg", steps=STEPS, lpips_net=lpips_net, progress=False, paste_back=True)
    assert all(torch.equal(a, b) for a, b in zip(toonifier.generator.state_dict().values(),
                                                 blend(toon, base, 16).state_dict().values()))
    photo, pasted = np.asarray(result.photo).astype(int), np.asarray(result.pasted).astype(int)
    assert pasted.shape == photo.shape
    changed = np.abs(pasted - photo).sum(-1) > 0
    # Only pixels inside the crop quad may change; the face region must change.
    quad_mask = Image.new("L", result.photo.size, 0)
    ImageDraw.Draw(quad_mask).polygon([tuple(p) for p in result.quad], fill=1)
    inside = np.asarray(quad_mask).astype(bool)
    assert changed.any() and not (changed & ~inside).any()
    centre = result.landmarks[30].round().astype(int)  # nose tip
    assert changed[centre[1], centre[0]]
    # Switching back to the published blend is instant and renders the same latent differently.
    toonifier.set_blend(None)
    assert toonifier.generator is toonifier.published_blend
    assert np.asarray(toonifier.render(result.w)).shape == (32, 32, 3)
    # the result itself where its latent is meant: said so (was "'ToonifyResult' object has no attribute 'shape'")
    with pytest.raises(TypeError, match=r"a latent is a tensor or an array \[N, num_ws, w_dim\], got ToonifyResult: "
                                        r"pass its \.w \(ToonifyResult\.w\)"):
        toonifier.render(result)


def test_a_fine_tuning_snapshot_without_a_swap_resolution_is_said_to_be_unblended(models, tmp_path):
    """04 (or `toonify --toon snapshot`) without a swap resolution drew its toons with the snapshot's G_ema, the
    toon model alone, while the panel said "published blend": a snapshot holds no blend, and it is said so."""
    import warnings

    from toonlib.blending import LineageWarning
    from toonlib.checkpoints import Networks, save_network
    from toonlib.messages import ToonlibWarning

    folder, base, toon = models
    snapshot = save_network(tmp_path / "network-snapshot-000000008.safetensors",
                            Networks(G_ema=toon, G=toon, meta={"finetune": {"base": str(folder / "base.safetensors")}}))
    w = base.mapping(torch.randn([1, base.z_dim], generator=torch.Generator().manual_seed(0)), None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LineageWarning)  # the tiny models are unrelated
        unblended = Toonifier(folder / "base.safetensors", snapshot, detector="dlib")
        later = Toonifier(folder / "base.safetensors", snapshot, detector="dlib")
    with pytest.warns(ToonlibWarning, match=r"is a fine-tuning snapshot, not a blend: without a swap resolution its "
                                            r"toons are drawn by the toon model alone, with none of the base's layers; "
                                            r"give one \(--swap-res, swap_res=\), 32 as Toonify's published blend$"):
        unblended.render(w)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ToonlibWarning)
        warnings.simplefilter("ignore", LineageWarning)
        unblended.render(w)  # said once
        later.set_blend(16)  # as the app and the notebook's panel set it before they draw: nothing to say
        later.render(w)
        Toonifier(folder / "base.safetensors", snapshot, swap_res=16, detector="dlib").render(w)
        Toonifier(folder / "base.safetensors", folder / "toon.safetensors", detector="dlib").render(w)  # published


def test_batch_survives_bad_photos(models, photos, lpips_net, monkeypatch):
    """A bad photo is told as soon as it is read, and takes no place in a batch: a folder run listed the skipped
    photos after the projection of the batch they were read with, and projected the batch's good photos alone."""
    folder, _, _ = models
    toonifier = Toonifier(folder / "base.safetensors", folder / "toon.safetensors", detector="dlib")
    names = ["astronaut.png", "broken.jpg", "coffee.png", "hopper.jpg"]
    inverted = []  # the faces of each batch's inversion
    invert = toonifier._invert
    monkeypatch.setattr(toonifier, "_invert", lambda faces, *args: inverted.append(len(faces)) or invert(faces, *args))
    outcomes = dict(toonifier.toonify_many([photos / n for n in names], batch_size=2, steps=STEPS,
                                           lpips_net=lpips_net))
    assert [p.name for p in outcomes] == ["broken.jpg", "coffee.png", "astronaut.png", "hopper.jpg"]
    assert inverted == [2]  # the two good photos together
    assert isinstance(outcomes[photos / "broken.jpg"], ValueError)
    assert isinstance(outcomes[photos / "coffee.png"], NoFaceError)
    good = outcomes[photos / "astronaut.png"], outcomes[photos / "hopper.jpg"]
    assert all(len(r) == 1 and r[0].toon.size == (32, 32) for r in good)
    # Batched projection gives each photo its own latent, a tensor of its own: a view of the batch's latents kept
    # them all (torch.save of one result's w wrote the batch's)
    assert not torch.equal(good[0][0].w, good[1][0].w)
    assert all(r[0].w.untyped_storage().nbytes() == r[0].w.numel() * r[0].w.element_size() for r in good)
    with pytest.raises(NoFaceError, match="no face was found in '.*coffee.png'"):  # it said "in the image"
        toonifier(photos / "coffee.png", steps=STEPS, lpips_net=lpips_net, progress=False)
    assert "coffee.png" in str(outcomes[photos / "coffee.png"])


def test_the_face_used_alone_is_aligned(models, photos, monkeypatch):
    """Without all_faces, every face of a group photo was aligned (a 4096 px warp each) and the small ones warned of,
    then one was kept (thirty-fourth session's alignment audit)."""
    import toonlib.align

    folder, _, _ = models
    toonifier = Toonifier(folder / "base.safetensors", folder / "toon.safetensors", detector="dlib")
    astronaut, hopper = Image.open(photos / "astronaut.png"), Image.open(photos / "hopper.jpg")
    pair = Image.new("RGB", (astronaut.width + hopper.width, hopper.height), "white")
    pair.paste(astronaut, (0, 0))
    pair.paste(hopper, (astronaut.width, 0))
    aligned = []
    real = toonlib.align._align
    monkeypatch.setattr(toonlib.align, "_align", lambda *args: aligned.append(1) or real(*args))
    with pytest.warns(UserWarning, match="2 faces found in 'the pair': the largest is used"):
        [face] = toonifier.align(pair, name="'the pair'")
    assert len(aligned) == 1 and face.faces_in_photo == 2
    [second] = toonifier.align(pair, face_index=1)
    assert len(aligned) == 2 and second.face_size < face.face_size
    assert len(toonifier.align(pair, all_faces=True)) == 2 and len(aligned) == 4


def test_a_stream_of_photos_is_taken_batch_by_batch(models, photos, lpips_net):
    """`toonify_many(generator)` read the whole generator before the first result (a list() of it): a camera's endless
    frames never gave one, and a video's were all held in memory (thirty-fourth session's API audit)."""
    folder, _, _ = models
    toonifier = Toonifier(folder / "base.safetensors", folder / "toon.safetensors", detector="dlib")
    taken = []

    def camera():  # a long stream (an endless one would hang the code before, as it hung the audit's camera)
        for i in range(100):
            taken.append(i)
            yield photos / "astronaut.png"

    results = toonifier.toonify_many(camera(), batch_size=2, steps=1, lpips_net=lpips_net, progress=False)
    first = [next(results) for _ in range(2)]
    assert taken == [0, 1]  # the first batch's frames, no more
    assert all(len(outcome) == 1 for _, outcome in first)
    with pytest.raises(TypeError, match="toonify_many takes an iterable of photos .*, got int$"):  # when called
        toonifier.toonify_many(3)


def test_settings_that_cannot_work_are_refused_when_given(models, photos, monkeypatch):
    """Refused when the Toonifier is built or called, before any model is read or photo aligned: they used to be
    ignored without a word (a misspelt keyword in the encoder modes, an encoder with invert='optimize'), or to
    fail once per photo (detector), or after the alignment (project's keywords)."""
    import toonlib
    from toonlib import checkpoints, pipeline

    folder, _, _ = models
    with monkeypatch.context() as m:
        m.setattr(checkpoints, "_resolve", lambda *args: pytest.fail("a model was read first"))
        for kwargs, message in [({"detector": "x"}, "detector must be 'auto', 'face_alignment' or 'dlib', got 'x'$"),
                                ({"detector": "Face-Alignment"}, "got 'Face-Alignment': did you mean 'face_alignment'"),
                                ({"toon_network": "D"}, "toon_network picks the toon model .* got 'D'")]:
            with pytest.raises(ValueError, match=message):
                Toonifier(**kwargs)
        with pytest.raises(TypeError, match="unexpected keyword argument devcie: did you mean 'device' for 'devcie'"
                                            r"\? the photo's options are all_faces, .*; projection options are"):
            toonlib.toonify(photos / "hopper.jpg", invert="e4e", devcie="cpu")
        with pytest.raises(TypeError, match="did you mean 'paste_back' for 'pasteback'"):  # only project's were listed
            toonlib.toonify(photos / "hopper.jpg", pasteback=True)
        with pytest.raises(ValueError, match=r"^seed must be a whole number from .* \(every face is .*got 1.5$"):
            toonlib.toonify(photos / "hopper.jpg", seed=1.5)  # said "target i uses seed + i ... got [1.5]"
        with pytest.raises(ValueError, match=r"^toon_network= picks the toon model a re-blend takes; without one the "
                                             r"toon file's published blend draws the toon: add swap_res=, or leave "
                                             r"toon_network= out$"):  # ignored: the default toon (the CLI refused)
            toonlib.toonify(photos / "hopper.jpg", toon_network="G")
        with pytest.raises(ImageReadError, match="there is no such file"):  # a typo cost the models' download first
            toonlib.toonify(photos / "hoper.jpg")
        with pytest.raises(ValueError, match="holds only a blended generator"):  # refused after its download
            Toonifier(toon="toonify-blended-rosinality", swap_res=16)
        with pytest.raises(ValueError, match="initial_lr: a projection option; invert='e4e' runs no projection"):
            toonlib.toonify(photos / "hopper.jpg", invert="e4e", initial_lr=0.01)
        with pytest.raises(ValueError, match=r"^encoder= is the encoder of an invert= mode that uses one \(e4e, psp, "
                                             r"e4e\+optimize, psp-toonify\), and invert='optimize' \(the default\)"):
            Toonifier(folder / "base.safetensors", folder / "toon.safetensors", encoder="e4e-ffhq")  # was a warning
    toonifier = Toonifier(folder / "base.safetensors", folder / "toon.safetensors", detector="dlib")
    monkeypatch.setattr(pipeline, "read_image", lambda *args: pytest.fail("a photo was read first"))
    photo = photos / "hopper.jpg"
    for kwargs, error, message in [
            ({"bogus": 1}, TypeError, "unexpected keyword argument bogus: the photo's options are all_faces, "
                                      "face_index, paste_back, progress, seed, space, steps; projection options are "
                                      "callback, early_stop, initial_lr, "),
            ({"init": None}, TypeError, "unexpected keyword argument init: the Toonifier sets it itself"),
            # toonify()'s settings of the models: "did you mean 'detector' for 'detector'?", nothing said of where
            ({"detector": "dlib"}, TypeError, r"^unexpected keyword argument detector: detector is a setting of the "
                                              r"Toonifier, for every photo: Toonifier\(\.\.\., detector=\.\.\.\); the "
                                              "photo's options are"),
            ({"invert": "e4e", "encoder": "x"}, TypeError, r"^unexpected keyword arguments encoder, invert: encoder "
                                                           r"and invert are settings of the Toonifier"),
            ({"space": "zzz"}, ValueError, "space must be 'w\\+' .* got 'zzz'"),
            ({"steps": 2.5}, ValueError, "steps must be a whole number >= 1, got 2.5"),
            ({"seed": [1, 2]}, ValueError, r"seed must be a whole number from .*\(every face .*got \[1, 2\]"),
            ({"seed": 2**70}, ValueError, r"seed must be a whole number from -2\*\*63 to 2\*\*64 - 1"),
            # project's own options too, before the photo is read (they were checked after its alignment)
            ({"early_stop": 5}, ValueError, r"early_stop is \(patience, min_delta\)"),
            ({"callback": "print"}, TypeError, "callback is a function"),
            ({"initial_lr": "0.1"}, ValueError, "initial_lr must be a finite number >= 0, got '0.1'")]:
        with pytest.raises(error, match=message):
            toonifier(photo, **kwargs)
    with pytest.raises(TypeError, match="toonify_many takes a list of photos, got one str: call the Toonifier"):
        toonifier.toonify_many(str(photo))  # it walked the name's characters, each a bad photo
    # several photos where one is toonified: toonify_many named, before any model is read (toonlib.toonify)
    with pytest.raises(TypeError, match=r"toonify takes one photo, got a list of 2: for several, .*toonify_many"):
        toonifier([photo, photo])
    with monkeypatch.context() as m:
        m.setattr(checkpoints, "_resolve", lambda *args: pytest.fail("a model was read first"))
        with pytest.raises(TypeError, match=r"toonify takes one photo, got a tuple of 1"):
            toonlib.toonify((photo,))
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1, got 2.5"):
        toonifier.toonify_many([photo], batch_size=2.5)
    # re-blending takes what the constructor takes
    with pytest.raises(ValueError, match="give a swap resolution too"):
        toonifier.set_blend(None, level=1)
    toonifier.set_blend(np.int64(16))
    assert toonifier.blend_setting[0] == 16
    with pytest.raises(ValueError, match="swap_res must be a power of two >= 4 .* got 16.0"):
        toonifier.set_blend(16.0)
    # the module's toonify() as a method: Python's advice was toonify_many, which takes a list
    with pytest.raises(AttributeError, match=r"no attribute 'toonify': call the toonifier itself, toonifier\(photo\)"):
        toonifier.toonify(photo)
    with pytest.raises(AttributeError, match=r"^'Toonifier' object has no attribute 'w'$"):
        assert toonifier.w is None  # other names: Python's own message
    # above the toon model's resolution every layer is the toon model's: it drew the toon unblended, without a word
    # (the command line refused it; Python did not)
    resolution = toonifier.published_blend.img_resolution
    too_high = f"swap_res {2 * resolution} is above the {resolution} px of the toon model, which would then be used "
    with pytest.raises(ValueError, match=too_high):
        toonifier.set_blend(2 * resolution)
    assert toonifier.blend_setting[0] == 16  # unchanged
    with pytest.raises(ValueError, match=too_high):
        Toonifier(folder / "base.safetensors", folder / "toon.safetensors", swap_res=2 * resolution)
    with monkeypatch.context() as m:  # a registry model's resolution is known before its download
        m.setattr(checkpoints, "_resolve", lambda *args: pytest.fail("a model was read first"))
        with pytest.raises(ValueError, match="swap_res 2048 is above the 1024 px of the toon model"):
            Toonifier(toon="toonify-blended-tf", swap_res=2048)


def test_a_blend_setting_given_to_a_call_says_to_set_the_blend(models, photos, monkeypatch):
    """toonifier(photo, swap_res=16) said only "unexpected keyword argument swap_res: the photo's options are ...",
    as if there were no swap resolution: the blend is the toonifier's, set by `set_blend` or when it is built. Said
    before the photo is read."""
    from toonlib import pipeline

    folder, _, _ = models
    toonifier = Toonifier(folder / "base.safetensors", folder / "toon.safetensors", detector="dlib")
    monkeypatch.setattr(pipeline, "read_image", lambda *args: pytest.fail("a photo was read first"))
    photo = photos / "hopper.jpg"
    told = r"the blend is the toonifier's, the same for every photo: call toonifier\.set_blend"
    for kwargs, message in [
            ({"swap_res": 16}, rf"^unexpected keyword argument swap_res: {told}\(16\) first, or build it with "
                               r"Toonifier\(\.\.\., swap_res=16\) \(toonlib\.toonify\(photo, swap_res=16\) for one "
                               r"photo\)$"),
            ({"swap_res": 16, "level": 1}, rf"^unexpected keyword arguments swap_res, level: {told}\(16, level=1\) "
                                           r"first, or build it with Toonifier\(\.\.\., swap_res=16, level=1\)"),
            ({"level": 1}, r"call toonifier\.set_blend\(swap_res, level=1\) first"),
            ({"blend_width": 2.0}, r"call toonifier\.set_blend\(swap_res, blend_width=2\.0\) first")]:
        with pytest.raises(TypeError, match=message):
            toonifier(photo, **kwargs)
        with pytest.raises(TypeError, match=message):
            toonifier.toonify_many([photo], **kwargs)
    assert toonifier.blend_setting == (None, 0, None)  # nothing was set on the way
    with pytest.raises(TypeError, match="did you mean 'swap_res' for 'swapres'"):  # then told where swap_res goes
        toonifier(photo, swapres=16)


def test_all_faces_and_a_face_index_together_are_refused_at_once(models, photos, monkeypatch):
    """all_faces=True toonified every face and face_index was ignored without a word. Refused before any photo is
    read, and by toonlib.toonify before any model is."""
    import toonlib
    from toonlib import checkpoints, pipeline

    folder, _, _ = models
    toonifier = Toonifier(folder / "base.safetensors", folder / "toon.safetensors", detector="dlib")
    monkeypatch.setattr(pipeline, "read_image", lambda *args: pytest.fail("a photo was read first"))
    for aligner in ("align_face", "align_faces"):
        monkeypatch.setattr(pipeline, aligner, lambda *args, **kwargs: pytest.fail("a photo was aligned first"))
    photo = photos / "hopper.jpg"
    for index in (1, 0):  # face_index=0, the largest face, is one face too
        message = rf"^all_faces=True toonifies every face and face_index={index} one of them: pass one of the two$"
        with pytest.raises(ValueError, match=message):
            toonifier(photo, all_faces=True, face_index=index)
        with pytest.raises(ValueError, match=message):
            toonifier.toonify_many([photo], all_faces=True, face_index=index)
        with pytest.raises(ValueError, match=message):
            toonifier.align(photo, all_faces=True, face_index=index)
        with monkeypatch.context() as m:
            m.setattr(checkpoints, "_resolve", lambda *args: pytest.fail("a model was read first"))
            with pytest.raises(ValueError, match=message):
                toonlib.toonify(photo, all_faces=True, face_index=index)


def test_toonify_many_takes_any_iterable_of_photos(models, photos, lpips_net):
    folder, _, _ = models
    toonifier = Toonifier(folder / "base.safetensors", folder / "toon.safetensors", detector="dlib")
    outcomes = list(toonifier.toonify_many((photos / n for n in ["hopper.jpg"]), steps=1, lpips_net=lpips_net))
    assert [(p.name, len(r)) for p, r in outcomes] == [("hopper.jpg", 1)]


def test_results_and_toonifiers_print_on_one_line(models, photos, lpips_net, tmp_path):
    """`ToonifyResult` printed its 68 landmarks and its latent (~2,500 characters), `ProjectionResult` every noise map
    (~12,000), and a `Toonifier` was `<toonlib.pipeline.Toonifier object at 0x...>`."""
    folder, _, _ = models
    toonifier = Toonifier(folder / "base.safetensors", folder / "toon.safetensors", swap_res=8, detector="dlib")
    assert repr(toonifier) == (f"Toonifier(invert='optimize', base={str(folder / 'base.safetensors')!r}, toon="
                               f"{str(folder / 'toon.safetensors')!r}, swap_res=8, level=0, device='cpu', "
                               "detector='dlib')")
    result = toonifier(photos / "hopper.jpg", steps=STEPS, lpips_net=lpips_net, progress=False)
    text = repr(result)
    assert text.startswith("ToonifyResult(invert='optimize', photo=") and "\n" not in text and len(text) < 300, text
    assert f"aligned=32x32 RGB, reconstruction=32x32 RGB, toon=32x32 RGB, pasted=None, w=[1, {result.w.shape[1]}, " \
        in text and f"steps={STEPS}, final distance=" in text
    G = tiny_generator(0)
    projection = project(G, result.aligned, steps=2, lpips_net=lpips_net, w_avg_samples=100, progress=False)
    text = repr(projection)
    assert text.startswith(f"ProjectionResult(space='w+', steps=2, w=[1, {G.num_ws}, {G.w_dim}], final distance=[0.")
    assert text.endswith(f"images=[1, 3, 32, 32], noise maps={len(projection.noise)}, frames=0)") and len(text) < 200
    # a latent file alone (NVIDIA's projected_w.npz) said "steps=0, final distance=[]"
    save_latent(projection.w, tmp_path / "projected_w.npz")
    assert repr(ProjectionResult.load(tmp_path / "projected_w.npz")) == (
        f"ProjectionResult(space='w+', w=[1, {G.num_ws}, {G.w_dim}], steps and distances not stored, images=None, "
        "noise maps=0, frames=0)")


def test_a_result_shows_its_pictures_in_a_notebook():
    """A result at the end of a Jupyter cell showed its one-line repr only: it shows the aligned crop, the
    reconstruction and the toon side by side, labelled, as `notebook.show` shows images (a 32 px crop at 256 px)."""
    from toonlib.images import labelled_grid

    colours = {"aligned": (200, 0, 0), "reconstruction": (0, 200, 0), "toon": (0, 0, 200)}
    pictures = {name: Image.new("RGB", (32, 32), colour) for name, colour in colours.items()}
    result = ToonifyResult(photo=Image.new("RGB", (64, 48)), landmarks=np.zeros((68, 2)), quad=np.zeros((4, 2)),
                           w=torch.zeros(1, 8, 32), losses=np.zeros(0, np.float32), **pictures)
    for shown_result, names in ((result, list(colours)),
                                (dataclasses.replace(result, reconstruction=None, invert="psp-toonify"),
                                 ["aligned", "toon"])):
        shown = Image.open(io.BytesIO(shown_result._repr_png_()))
        assert shown.format == "PNG"
        expected = labelled_grid([[pictures[name] for name in names]], col_labels=names, cell=256)
        assert shown.size == expected.size and shown.width == len(names) * (256 + 4) + 4
        pixels = np.asarray(shown.convert("RGB"))
        assert np.array_equal(pixels, np.asarray(expected))
        label_height = shown.height - (256 + 2 * 4)
        for j, name in enumerate(names):  # each column: its picture under its label
            left = 4 + j * (256 + 4)
            assert tuple(pixels[label_height + 4 + 128, left + 128]) == colours[name]
            assert pixels[:label_height, left:left + 256].min() < 128  # the label's dark text
    assert repr(result).startswith("ToonifyResult(invert='optimize', photo=64x48 RGB, aligned=32x32 RGB, ")
    # with paste_back=True the pasted photo too, what was asked for: whole, its sides padded white, not squashed
    pasted = dataclasses.replace(result, pasted=Image.new("RGB", (64, 32), (200, 200, 0)))
    pixels = np.asarray(Image.open(io.BytesIO(pasted._repr_png_())).convert("RGB"))
    assert pixels.shape[1] == 4 * (256 + 4) + 4
    left, top = 4 + 3 * (256 + 4), pixels.shape[0] - 4 - 256
    assert tuple(pixels[top + 128, left + 128]) == (200, 200, 0) and tuple(pixels[top + 10, left + 128]) == (255,) * 3

    # a photo's faces (all_faces=True): a list that showed as text; a labelled row per face, "face 1" first
    from toonlib.pipeline import ToonifyResults

    faces = ToonifyResults([result, dataclasses.replace(result, toon=Image.new("RGB", (32, 32), (9, 9, 9)))])
    pixels = np.asarray(Image.open(io.BytesIO(faces._repr_png_())).convert("RGB"))
    expected = labelled_grid([[pictures[name] for name in colours], [pictures["aligned"], pictures["reconstruction"],
                                                                      faces[1].toon]],
                             row_labels=["face 1", "face 2"], col_labels=list(colours), cell=256)
    assert np.array_equal(pixels, np.asarray(expected))
    assert ToonifyResults()._repr_png_() is None  # no faces: Jupyter shows "[]"


def test_paste_keeps_photo_outside_the_face():
    photo = Image.new("RGB", (200, 160), (10, 20, 30))
    face = Image.new("RGB", (64, 64), (250, 0, 0))
    quad = np.array([[50, 30], [50, 130], [150, 130], [150, 30]], dtype=float)
    out = np.asarray(paste(photo, face, quad)).astype(int)
    assert out.shape == (160, 200, 3)
    assert (out[:25] == (10, 20, 30)).all() and (out[:, :45] == (10, 20, 30)).all()
    assert tuple(out[85, 100]) == (250, 0, 0)  # centre of the face fully replaced


def test_a_face_pasted_into_a_smaller_crop_is_filtered_not_aliased():
    """A 1024 px toon pasted into a ~100 px face was sampled by the warp, its detail aliased (jagged glasses and hair,
    moire; thirty-fourth session's alignment audit): a fine pattern now lands as its mean, as a photo of it would."""
    photo = Image.new("RGB", (200, 200), (0, 0, 0))
    checks = (np.indices((1024, 1024)).sum(0) % 2 * 255).astype(np.uint8)  # 1 px black and white squares
    face = Image.fromarray(np.stack([checks] * 3, axis=-1))
    quad = np.array([[50, 50], [50, 150], [150, 150], [150, 50]], dtype=float)  # a 100 px crop: 10x smaller
    centre = np.asarray(paste(photo, face, quad)).astype(float)[85:115, 85:115, 0]
    assert abs(centre.mean() - 127.5) < 4 and centre.std() < 4, (centre.mean(), centre.std())  # even grey
    small = Image.new("RGB", (32, 32), (250, 0, 0))  # a face smaller than its crop is enlarged as before
    assert tuple(np.asarray(paste(photo, small, quad))[100, 100]) == (250, 0, 0)


def test_paste_faces_takes_results_and_a_photos_path_and_says_what_it_takes(tmp_path):
    """`paste_faces(photo, [result])`, a path as the photo, one pair for the list, a pair swapped: each failed deep
    inside ("cannot unpack non-iterable ToonifyResult object", "'str' object has no attribute 'size'")."""
    from toonlib import paste_faces

    photo = Image.new("RGB", (200, 160), (10, 20, 30))
    photo.save(tmp_path / "photo.png")
    face = Image.new("RGB", (64, 64), (250, 0, 0))
    quad = np.array([[50, 30], [50, 130], [150, 130], [150, 30]], dtype=float)
    result = ToonifyResult(photo=photo, aligned=face, landmarks=np.zeros((68, 2)), quad=quad, w=torch.zeros(1, 8, 32),
                           reconstruction=None, toon=face, losses=np.zeros(0, np.float32))
    expected = np.asarray(paste(photo, face, quad))
    for given, faces in ((photo, [result]), (tmp_path / "photo.png", [(face, quad)]), (np.asarray(photo), [result]),
                         (photo, [(face, quad.tolist())])):
        assert np.array_equal(np.asarray(paste_faces(given, faces)), expected)
    for faces, message in (((face, quad), r"takes a list of faces, got one tuple: pass \[pair\] or \[result\]"),
                           (result, "got one ToonifyResult"),
                           ([(quad, face)], r"got tuple \(a PIL image and a \[4, 2\] quad, in that order\)"),
                           ([face], "got 64x64 RGB")):
        with pytest.raises(TypeError, match=message):
            paste_faces(photo, faces)


def test_paste_faces_reads_a_pil_photo_upright_and_refuses_a_photo_the_faces_were_not_made_from(tmp_path):
    """A phone photo opened with PIL (stored on its side, an EXIF rotation) came back on its side with the face pasted
    in the wrong place; a photo of another size came back unchanged (the quad outside it): both without a word."""
    from toonlib import paste_faces

    photo = Image.new("RGB", (200, 160), (10, 20, 30))
    face = Image.new("RGB", (64, 64), (250, 0, 0))
    quad = np.array([[50, 30], [50, 130], [150, 130], [150, 30]], dtype=float)
    result = ToonifyResult(photo=photo, aligned=face, landmarks=np.zeros((68, 2)), quad=quad, w=torch.zeros(1, 8, 32),
                           reconstruction=None, toon=face, losses=np.zeros(0, np.float32))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: stored turned the other way
    photo.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.png", exif=exif.tobytes())
    with Image.open(tmp_path / "phone.png") as stored:
        assert stored.size == (160, 200)
        pasted = paste_faces(stored, [result])
    assert np.array_equal(np.asarray(pasted), np.asarray(paste(photo, face, quad)))
    with pytest.raises(ValueError, match=r"^paste_faces: the photo is 100x80 RGB but a result was made from a photo of "
                                         r"200x160 RGB \(its quad is in that photo's pixels\): pass the photo it was "
                                         r"made from \(result.photo\)$"):
        paste_faces(photo.resize((100, 80)), [result])
    with pytest.raises(ValueError, match=r"a face's quad lies wholly outside the photo \(40x30 RGB\); a quad is in "
                                         "the pixels of the photo it was aligned from: pass that photo"):
        paste_faces(photo.resize((40, 30)), [(face, quad)])
    partly_in = paste_faces(photo.resize((120, 100)), [(face, quad)])
    assert np.asarray(partly_in)[85, 100].tolist() == [250, 0, 0]


def test_steps_given_start_every_mode_that_optimises_even_at_a_front_ends_own():
    """A front end's steps equal to its own start for optimize (notebook 04's 500, the app's 200) were taken for none:
    a user who set 500 got e4e+optimize at 100 (forty-third session's audit). None alone means each mode's own."""
    assert start_steps(500) == {"optimize": 500, "e4e+optimize": 500}
    assert start_steps(200, 200) == {"optimize": 200, "e4e+optimize": 200}
    assert start_steps() == {"optimize": 500, "e4e+optimize": 100}
    assert start_steps(None, 200) == {"optimize": 200, "e4e+optimize": 100}


def test_a_training_snapshot_as_the_toon_is_said_to_draw_unblended(models, tmp_path):
    """README's `Toonifier("ffhq.pkl", "toon.pkl")` with an NVIDIA training snapshot (G, G_ema, D) as toon.pkl drew
    toons with its G_ema, the toon model alone, unsaid, and the repr called it "the published blend": only toonlib's
    own fine-tuning snapshots were warned of (forty-third session's audit)."""
    import shutil
    import warnings

    import toonlib
    from toonlib.messages import ToonlibWarning

    fixture = Path(__file__).parent / "fixtures" / "ada_tiny.pkl"  # stylegan2-ada-pytorch's snapshot: G, G_ema, D
    shutil.copy(fixture, tmp_path / "toon.pkl")
    toonifier = toonlib.Toonifier(fixture, tmp_path / "toon.pkl", detector="dlib")
    assert "toon='" in repr(toonifier) and ", the toon model alone (no blend), " in repr(toonifier), repr(toonifier)
    w = toonifier.base.mapping(torch.randn([1, toonifier.base.z_dim], generator=torch.Generator().manual_seed(0)), None)
    with pytest.warns(ToonlibWarning, match=r"^the toon model .*toon.pkl \(G_ema\) is a training snapshot, not a "
                                            r"blend: without a swap resolution its toons are drawn by the toon model "
                                            r"alone"):
        toonifier.render(w)
    # a blend of it, saved, is a blend: its published blend, unsaid
    blended = toonlib.save_network(tmp_path / "blended.safetensors",
                                   toonlib.blend(tmp_path / "toon.pkl", fixture, 16))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not a blend")
        published = toonlib.Toonifier(fixture, blended, detector="dlib")
        published.render(w)
    assert ", the published blend, " in repr(published)


def test_a_generator_read_from_a_snapshot_pairs_with_the_base_its_run_recorded(models, tmp_path, monkeypatch):
    """`Toonifier(toon=load_generator(snapshot))` paired the toon with DEFAULT_BASE, not its run's base, and with
    that base not downloaded said the model "records no base"; a Generator made in memory is said to carry no
    record (forty-third session's audit)."""
    import warnings

    import toonlib
    from toonlib.checkpoints import Networks

    folder, base, toon = models
    snapshot = toonlib.save_network(tmp_path / "network-snapshot-000000008.safetensors", Networks(
        G_ema=toon, G=toon, meta={"finetune": {"base": str(folder / "base.safetensors")}}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny models are unrelated (LineageWarning)
        toonifier = toonlib.Toonifier(toon=toonlib.load_generator(snapshot), swap_res=16, detector="dlib")
    assert toonifier.sources["base"] == str(folder / "base.safetensors")
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "empty-cache"))  # the default base not downloaded
    with pytest.raises(ValueError, match=r"^the toon model is a 32 px model given as a Generator object, which "
                                         r"carries no record of its base, and the default base 'ffhq-1024-tf' is "
                                         r"1024 px: name the model it was fine-tuned from \(--base, base=\)$"):
        toonlib.Toonifier(toon=tiny_generator(5), swap_res=16, detector="dlib")


def test_the_toonifiers_help_tells_what_its_methods_do_not_their_history():
    """help(Toonifier.set_blend) told a past bug ("It returned that generator: a REPL printed ..."), set_swap_res ended
    "(forty-second session's audit)", invert and project the same (forty-third session's audit)."""
    import toonlib

    for function in (toonlib.Toonifier.set_blend, toonlib.Toonifier.set_swap_res, toonlib.Toonifier.invert,
                     toonlib.project):
        doc = function.__doc__
        for history in ("session", "audit", "It returned", "grew to gigabytes", "it changed the label"):
            assert history not in doc, (function, history)


@pytest.mark.filterwarnings("ignore::toonlib.blending.LineageWarning")  # the tiny models are unrelated
def test_render_of_another_models_latent_says_it_belongs_to_another_model(models):
    """`Toonifier(base64, toon64).render(load_latent("me-latent.npz"))` of a 32 px model's latent said "ws must have
    shape [N, 10, 512] with N >= 1, got [1, 8, 512]", where the command line says whose they are (forty-fifth
    session's audit). Many latents are drawn a few at a time, as one batch draws them."""
    folder, base, toon = models
    toonifier = Toonifier(folder / "base.safetensors", folder / "toon.safetensors", detector="dlib")
    with pytest.raises(ValueError, match=r"^w has shape \[1, 10, 16\], and this 32 px generator takes \[N, 8, 16\]: "
                                         r"they belong to another model \(they are 10 layers, a 64 px model's, where "
                                         r"this 32 px model takes 8\); render them with a generator of that model"):
        toonifier.render(torch.zeros(1, 10, 16))
    w = base.mapping(torch.randn([6, base.z_dim], generator=torch.Generator().manual_seed(0)), None)
    toons = toonifier.render(w)
    with torch.no_grad():
        expected = toonifier.generator.synthesis(w, noise_mode="const")
    assert [np.asarray(toon).tolist() for toon in toons] == [to_uint8(image).tolist() for image in expected]
