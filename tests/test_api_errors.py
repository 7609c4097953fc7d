"""The public API's answers to inputs a user gets wrong (or right in a form it did not expect): a message that says
what to pass, not a traceback from inside torch, NumPy or Pillow."""
from __future__ import annotations

import contextlib
import copy
import io
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import random_lpips, tiny_generator, write_photos, write_toonify_models

from toonlib import projection
from toonlib.align import align_face, align_faces, ffhq_quad
from toonlib.encoders import Encoder, load_encoder
from toonlib.identity import identity_distance, identity_report, identity_sweep
from toonlib.images import from_pil, labelled_grid, save_image, to_pil
from toonlib.pipeline import Toonifier
from toonlib.projection import ProjectionResult, load_latent, project, render, save_latent, save_video, w_statistics


@pytest.fixture(scope="module")
def G():
    return tiny_generator(0)


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return random_lpips()


def run(G, target, net, **kwargs) -> ProjectionResult:
    return project(G, target, steps=2, lpips_net=net, w_avg_samples=100, progress=False, **kwargs)


def noise_maps(G, num: int = 1) -> dict[str, torch.Tensor]:
    return {name: buf.expand(num, 1, *buf.shape).clone() for name, buf in G.named_buffers()
            if name.endswith("noise_const")}


def test_numpy_integers_are_seeds(G, net):
    """A seed from NumPy (np.int64, an array of seeds) failed: "'numpy.int64' object is not iterable"."""
    faces = [Image.new("RGB", (32, 32), "gray"), Image.new("RGB", (32, 32), "white")]
    assert torch.equal(run(G, faces[0], net, seed=np.int64(3)).w, run(G, faces[0], net, seed=3).w)
    assert torch.equal(run(G, faces, net, seed=np.array([3, 7])).w, run(G, faces, net, seed=[3, 7]).w)
    for seed in ("1", 1.5, [1.5, 2], True):
        with pytest.raises(ValueError, match=r"^seed must be a whole number \(target i uses seed \+ i\) or a list of "
                                             r"one per target, got "):
            run(G, faces, net, seed=seed)


def test_init_from_a_result_names_its_latent(G, net):
    """init=result (to refine a projection) failed inside torch: "Could not infer dtype of ProjectionResult"."""
    result = run(G, Image.new("RGB", (32, 32), "gray"), net)
    with pytest.raises(TypeError, match=r"got ProjectionResult: pass its \.w \(ProjectionResult\.w\)$"):
        run(G, Image.new("RGB", (32, 32), "gray"), net, init=result)
    assert run(G, Image.new("RGB", (32, 32), "gray"), net, init=result.w).w.shape == result.w.shape


def test_lpips_net_is_a_model(G):
    """lpips_net='vgg' (lpips.LPIPS's own `net=`) failed at "'str' object has no attribute 'to'"."""
    with pytest.raises(TypeError, match=r"^lpips_net is a prebuilt lpips\.LPIPS model, or None \(LPIPS-VGG, built "
                                        r"once\), got str$"):
        project(G, Image.new("RGB", (32, 32)), steps=2, lpips_net="vgg", progress=False)
    with pytest.raises(TypeError, match=r"^lpips_net is a prebuilt lpips\.LPIPS model, .* got Linear$"):
        project(G, Image.new("RGB", (32, 32)), steps=2, lpips_net=torch.nn.Linear(3, 3), progress=False)


def test_networks_holds_networks(G):
    """Networks(G_ema="ffhq.pkl") was built, and load_generator returned the str; its repr and save_network failed
    ("'str' object has no attribute 'extra_repr'"), and project said "no G_ema network (it has G_ema only)"."""
    from toonlib import Networks

    for given, message in ((dict(G_ema="ffhq.pkl"), r"Networks' G_ema is a Generator, got str \(load_network\(path\) "
                                                    r"reads a checkpoint's networks\)"),
                           (dict(G_ema=None), "Networks' G_ema is a Generator, got NoneType"),
                           (dict(G_ema=G, D=G), "Networks' D is a Discriminator or None, got Generator"),
                           (dict(G_ema=G, meta=None), "Networks' meta is a dict, got NoneType")):
        with pytest.raises(TypeError, match=f"^{message}$"):
            Networks(**given)
    assert Networks(G_ema=G, G=G).G is G


def test_render_refuses_noise_maps_that_do_not_fit_the_generator(G):
    """A 64 px projection's noise maps given to a 32 px generator failed inside torch ("SynthesisNetwork has no
    attribute `b64`"); a map of another size in ops ("The size of tensor a (8) must match ...")."""
    w = G.mapping(torch.randn(1, G.z_dim), None)
    big = noise_maps(tiny_generator(1, img_resolution=64))
    with pytest.raises(ValueError, match=r"^noise map 'synthesis\.b64\.conv0\.noise_const' does not fit this 32 px "
                                         r"generator: it is not one of its 7 maps \(synthesis\.b4\.conv1\.noise_const, "
                                         r"synthesis\.b8\.conv0\.noise_const, \.\.\.\); pass the noise maps of a "
                                         r"projection with it, or noise=None \(its own const noise\)$"):
        render(G, w, big)
    with pytest.raises(ValueError, match=r"b8\.conv0\.noise_const' does not fit this 32 px generator: it is "
                                         r"\[1, 1, 4, 4\], where it takes \[N, 1, 8, 8\]; "):
        render(G, w, {"synthesis.b8.conv0.noise_const": torch.zeros(1, 1, 4, 4)})
    with pytest.raises(TypeError, match=r"^noise is a dict of noise maps, buffer name -> \[N, 1, res, res\] "
                                        r"\(ProjectionResult\.noise\), or None, got list$"):
        render(G, w, list(noise_maps(G).values()))
    maps = noise_maps(G)
    assert torch.equal(render(G, w, {name: n.numpy() for name, n in maps.items()}), render(G, w, maps))


def test_a_latent_file_that_is_not_there_or_a_folder(tmp_path):
    """Both failed inside torch.load ("[Errno 21] Is a directory: ...", from torch/serialization.py)."""
    with pytest.raises(FileNotFoundError, match=r"^no latent file at .*nope\.npz$"):
        load_latent(tmp_path / "nope.npz")
    with pytest.raises(IsADirectoryError, match=r"is a folder, not a latent file: name the \.npz \(or \.pt\) file in "
                                                r"it$"):
        ProjectionResult.load(tmp_path)
    # a latent file copied in part, or empty, was "not a latent file (expected an .npz with key 'w', ...)"
    # (thirty-fourth session's CLI audit)
    np.savez(tmp_path / "me-latent.npz", w=np.zeros((1, 8, 16), np.float32))
    whole = (tmp_path / "me-latent.npz").read_bytes()
    (tmp_path / "cut-latent.npz").write_bytes(whole[:len(whole) // 2])
    (tmp_path / "empty-latent.npz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"cut-latent\.npz is cut short or damaged \(a zip file without its end, as "
                                         r"an \.npz or torch latent file is\): copy it again, or toonify or project "
                                         r"the photo again$"):
        load_latent(tmp_path / "cut-latent.npz")
    with pytest.raises(ValueError, match=r"empty-latent\.npz is empty \(0 bytes\): a copy or download cut short\? "):
        load_latent(tmp_path / "empty-latent.npz")


def test_a_model_given_as_a_latent_is_named_a_model(tmp_path):
    """A rosinality generator (.pt, a latent file's suffix too) given to `toonify` or `load_latent` was "not a latent
    file" alone, with no word that it is a model, as a model given as a photo is told."""
    from conftest import FIXTURES

    with pytest.raises(ValueError, match=r"rosinality_tiny\.pt: it is a model checkpoint, not a latent file: give it "
                                         r"as a model to toonify, project or blend, the toon \(--toon, toon=\) or the "
                                         r"base \(--base, base=\)$"):
        load_latent(FIXTURES / "rosinality_tiny.pt")
    # toonlib's own format and NVIDIA's pickles were "not a latent file" alone (thirty-fourth session's API audit)
    from toonlib import load_network, save_network

    native = save_network(tmp_path / "model.safetensors", load_network(FIXTURES / "ada_tiny.pkl"))
    for path in (native, FIXTURES / "ada_tiny.pkl"):
        with pytest.raises(ValueError, match=rf"{path.name}: it is a model checkpoint, not a latent file: give it as "
                                             "a model"):
            load_latent(path)
    pickle.dump({"me.png": {"latent": [0.0] * 8}}, (tmp_path / "other.pkl").open("wb"))  # a pickle of no model
    with pytest.raises(ValueError, match=r"other\.pkl: not a latent file \(expected"):
        load_latent(tmp_path / "other.pkl")
    # a latent in torch.save's pre-zip format (a pickle too) is still read as one
    legacy = tmp_path / "legacy.pt"
    torch.save({"me.png": {"latent": torch.zeros(4, 8)}}, legacy, _use_new_zipfile_serialization=False)
    assert load_latent(legacy).shape == (1, 4, 8)


def test_a_projector_output_of_any_image_name_is_a_latent_and_a_training_state_is_named(tmp_path):
    """An image named 'd' or 'g' in rosinality's projector output is a latent file, no model; a run's training state
    (a .pt) is named for what it is."""
    torch.save({"d": {"latent": torch.ones(8, 16)}}, tmp_path / "proj.pt")
    assert load_latent(tmp_path / "proj.pt").shape == (1, 8, 16)
    torch.save({"cur_nimg": 8, "opt_G": {}, "opt_D": {}}, tmp_path / "training-state-000000008.pt")
    with pytest.raises(ValueError, match=r"training-state-000000008\.pt: it is a fine-tuning run's training state, not "
                                         r"a latent file: the run's network-snapshot-\*\.safetensors files are its "
                                         r"models$"):
        load_latent(tmp_path / "training-state-000000008.pt")


def test_from_pil_takes_a_pil_image(tmp_path):
    """A path or an array failed at "'str' object has no attribute 'convert'", size=0 inside Pillow."""
    for image in (str(tmp_path / "me.png"), np.zeros((8, 8, 3), np.uint8)):
        with pytest.raises(TypeError, match=r"^from_pil takes a PIL image, got (str|ndarray): for a file, bytes or an "
                                            r"array use from_pil\(read_image\(x\)\)$"):
            from_pil(image)
    with pytest.raises(ValueError, match=r"^size must be a whole number >= 1, got 0$"):
        from_pil(Image.new("RGB", (8, 8)), 0)


def test_from_pil_reads_an_image_as_read_image_does():
    """A transparent pixel came out black (`convert("RGB")` drops alpha), where read_image, and so project and the
    encoders, put it on white; a photo's EXIF orientation was not applied."""
    rgba = Image.new("RGBA", (4, 2), (200, 10, 10, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    x = from_pil(rgba)
    assert x.shape == (1, 3, 2, 4) and torch.equal(x[0, :, 0, 0], torch.ones(3))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the stored 4 x 2 image is shown 2 x 4
    photo = Image.new("RGB", (4, 2))
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", exif=exif)
    assert from_pil(Image.open(buffer)).shape == (1, 3, 4, 2)


def test_labelled_grid_says_what_a_grid_is_made_of():
    """A flat list failed at "'Image' object is not subscriptable", a tensor at "no attribute 'width'", too few row
    labels with an IndexError."""
    image = Image.new("RGB", (8, 8))
    with pytest.raises(TypeError, match=r"^labelled_grid takes rows of images, a list of lists \(\[\[a, b\], \[c, d\]\]"
                                        r"\), got Image where a row belongs: for one row of images pass \[images\]$"):
        labelled_grid([image, image])
    with pytest.raises(TypeError, match=r"^labelled_grid lays out PIL images, got Tensor: for an image tensor use "
                                        r"to_pil\(tensor\)$"):
        labelled_grid([[image, torch.zeros(3, 8, 8)]])
    with pytest.raises(ValueError, match=r"^got 1 row label for 2 rows: give one per row$"):
        labelled_grid([[image], [image]], row_labels=["a"])
    assert labelled_grid([[image, image]], row_labels=["a"], col_labels=["x", "y"]).mode == "RGB"


def test_identity_of_what_is_not_a_toonify_result():
    """An image (or a projection) failed at "'PngImageFile' object has no attribute 'landmarks'"."""
    for result in (Image.new("RGB", (8, 8)), ProjectionResult(torch.zeros(1, 8, 16), None, {}, np.zeros((0, 1)),
                                                               "w+", 0)):
        with pytest.raises(TypeError, match=r"^identity_report takes a ToonifyResult \(what a Toonifier returns for a "
                                            r"photo\), got \w+: for two face photos use identity_distance\(a, b\)$"):
            identity_report(result)
    with pytest.raises(TypeError, match=r"^identity_sweep takes a ToonifyResult"):
        identity_sweep(None, Image.new("RGB", (8, 8)))


def test_ffhq_quad_takes_68_landmarks():
    """dlib's 5-point landmarks failed with "index 48 is out of bounds for axis 0 with size 5"."""
    with pytest.raises(ValueError, match=r"^ffhq_quad takes the 68 facial landmarks \(iBUG order, x and y\) as a "
                                         r"68 x 2 array, got shape \[5, 2\]: find them with "
                                         r"align_face\(photo\)\.landmarks$"):
        ffhq_quad(np.zeros((5, 2)))


def test_an_encoder_says_what_it_takes():
    """Channels-last images failed inside a convolution ("expected input[1, 256, 256, 3] to have 3 channels"), a PIL
    image at "no attribute 'to'", and other sizes than the 256 px it was trained on were encoded without a word."""
    encoder = Encoder("e4e", 2)
    for x, got in ((torch.zeros(1, 256, 256, 3), r"\[1, 256, 256, 3\]"),
                   (torch.zeros(1, 3, 64, 64), r"\[1, 3, 64, 64\]"), (Image.new("RGB", (256, 256)), "Image")):
        with pytest.raises(ValueError, match=rf"^the encoder takes images \[N, 3, 256, 256\] in \[-1, 1\], got {got}: "
                                             r"for photos \(paths, PIL images, arrays\) use encoder\.encode\(photos\), "
                                             r"which prepares them$"):
            encoder(x)
    assert encoder(torch.zeros(1, 3, 256, 256)).shape == (1, 2, 512)
    for source, loaded in ((None, ""), (encoder, ": that is loaded already")):
        with pytest.raises(TypeError, match=r"^load_encoder reads a pSp / e4e checkpoint: a path, an http\(s\) URL or "
                                            rf"a registry name \(`toonlib models`\); got \w+{loaded}$"):
            load_encoder(source)


@contextlib.contextmanager
def unloaded(monkeypatch):
    """project's options are checked before G is loaded (a path or a registry name: a download, seconds to read)."""
    with monkeypatch.context() as patched:
        patched.setattr(projection, "load_generator", lambda *args: pytest.fail("G loaded before the check"))
        yield


def test_w_stats_is_the_pair_w_statistics_returns(G, net, monkeypatch):
    """w_stats=w_avg (w_statistics' first half) failed with "index 1 is out of bounds for dimension 0 with size 1"."""
    face = Image.new("RGB", (32, 32), "gray")
    w_avg, w_std = w_statistics(G, 100)
    with unloaded(monkeypatch):
        for w_stats in (w_avg, (w_avg.numpy(), w_std)):
            with pytest.raises(ValueError, match=r"^w_stats is the pair \(w_avg, w_std\) that w_statistics\(G\) "
                                                 r"returns, got (Tensor|tuple): pass w_stats=w_statistics\(G\), or "
                                                 r"None \(computed here\)$"):
                run(G, face, net, w_stats=w_stats)
        with pytest.raises(ValueError, match=r"^w_stats's w_std must be a finite number >= 0, got '1'$"):
            run(G, face, net, w_stats=(w_avg, "1"))
    assert torch.equal(run(G, face, net, w_stats=[w_avg, w_std]).w, run(G, face, net).w)
    # another model's w_avg was named as the latents' ("ws must have shape [N, 8, 512] ... got [1, 8, 3]")
    with pytest.raises(ValueError, match=rf"^w_stats's w_avg has shape \[3\], and this model's is \[1, 1, {G.w_dim}\]: "
                                         r"pass w_stats=w_statistics\(G\) of this G, or None \(computed here\)$"):
        run(G, face, net, w_stats=(torch.zeros(3), 1.0))


def test_project_numbers_are_numbers(G, net, monkeypatch):
    """initial_lr="0.1" failed inside torch.optim ("'<=' not supported between instances of 'float' and 'str'"),
    noise_reg_weight="1e5" in the first step ("only integer tensors of a single element can be converted to an
    index")."""
    face = Image.new("RGB", (32, 32), "gray")
    with unloaded(monkeypatch):
        for name, value in (("initial_lr", "0.1"), ("initial_lr", -0.1), ("initial_lr", True),
                            ("noise_reg_weight", "1e5"), ("noise_reg_weight", float("nan"))):
            with pytest.raises(ValueError, match=rf"^{name} must be a finite number >= 0, got {value!r}$"):
                run(G, face, net, **{name: value})
    assert torch.equal(run(G, face, net, initial_lr=np.float64(0.1), noise_reg_weight=100000).w, run(G, face, net).w)


def test_a_callback_that_cannot_be_called(G, net, monkeypatch):
    """callback=3 failed only after the first step (minutes on a CPU): "'int' object is not callable"."""
    with unloaded(monkeypatch), pytest.raises(TypeError, match=r"^callback is a function, called as callback\(step, "
                                                               r"distance, w\) after every step, or None, got int$"):
        run(G, Image.new("RGB", (32, 32), "gray"), net, callback=3)
    # one that takes other arguments failed there too, with Python's "takes 1 positional argument but 3 were given"
    def show(image):
        pass
    with unloaded(monkeypatch), pytest.raises(TypeError, match=r"^callback is called as callback\(step, distance, w\) "
                                                               r"after every step, but show\(image\) cannot be called "
                                                               r"with 3 arguments$"):
        run(G, Image.new("RGB", (32, 32), "gray"), net, callback=show)
    steps = []
    run(G, Image.new("RGB", (32, 32), "gray"), net, callback=lambda step, *rest: steps.append(step))  # any that take 3
    assert steps == list(range(len(steps))) and steps


def test_project_on_the_meta_device(G, net, monkeypatch):
    """device='meta' (default_device took it) failed inside torch: "unknown device type for autocast in
    get_autocast_dispatch_key_from_device_type"; every API that takes a device refuses it alike."""
    from toonlib import Toonifier, load_generator

    message = (r"^device='meta' holds no data \(its tensors are shapes alone\), so nothing can run there: pass "
               r"device='cpu', 'cuda' or None \(CUDA when available, else the CPU\)$")
    with unloaded(monkeypatch), pytest.raises(ValueError, match=message):
        run(G, Image.new("RGB", (32, 32), "gray"), net, device="meta")
    with pytest.raises(ValueError, match=message):
        Toonifier(G, G, device="meta")
    with pytest.raises(ValueError, match=message.replace("CUDA when available, else the CPU", "the CPU")):
        load_generator(G, device="meta")  # the loaders keep None on the CPU


def test_an_empty_target_tensor():
    """[1, 3, 0, 0] failed inside F.interpolate ("Input and output sizes should be greater than 0"), [0, 3, 32, 32]
    at "torch.cat(): expected a non-empty list of Tensors"."""
    for empty in (torch.zeros(1, 3, 0, 0), torch.zeros(0, 3, 32, 32)):
        with pytest.raises(ValueError, match=r"^the target image tensor is empty \(shape \[\d, 3, \d+, \d+\]\): "
                                             r"an image tensor is float \[3, H, W\] or \[N, 3, H, W\] with N, H and W "
                                             r">= 1$"):
            projection.as_images(empty, 32)


def test_save_video_takes_the_result_first(tmp_path):
    """save_video("out.mp4", result) failed at "'str' object has no attribute 'frames'"."""
    result = ProjectionResult(torch.zeros(1, 8, 16), None, {}, np.zeros((0, 1)), "w+", 0)
    with pytest.raises(TypeError, match=r"^save_video takes the ProjectionResult first, then the path, got str "
                                        r"first: save_video\(result, 'out\.mp4'\)$"):
        save_video(str(tmp_path / "out.mp4"), result)


def test_align_face_transform_size_is_a_whole_number(monkeypatch):
    """transform_size="4096" failed after the face search with "'>' not supported between instances of 'int' and
    'str'"."""
    from toonlib import align

    monkeypatch.setattr(align, "read_image", lambda *args: pytest.fail("photo read before the size check"))
    for function in (align_face, align_faces):
        for size, got in (("4096", "got '4096'"), (0, "got 0"), (4096.0, "write it as an int: 4096, not 4096.0")):
            with pytest.raises(ValueError, match=rf"^transform_size \(the intermediate warp's width in px\) must be a "
                                                 rf"whole number >= 1, {got}$"):
                function(np.zeros((64, 64, 3), np.uint8), transform_size=size, detector="dlib")
        # no upper bound: a bare MemoryError after the face search (thirty-eighth session's audit)
        with pytest.raises(ValueError, match=r"^transform_size is the intermediate warp's width in px \(4096 for "
                                             r"FFHQ\), a whole number from 1 to 8192; got 60000$"):
            function(np.zeros((64, 64, 3), np.uint8), transform_size=60000, detector="dlib")


def test_identity_distance_of_a_descriptor_of_another_length():
    """A 64-long array was read as an image: "expected an HxW, HxWx3 or HxWx4 image array, got shape (64,)"."""
    for a, b in ((np.zeros(64), np.zeros(128)), (np.zeros(128), np.zeros(512))):
        with pytest.raises(ValueError, match=r"^a face descriptor is dlib's 128-d array, got one of length (64|512): "
                                             r"pass face_embedding\(photo\), or the photo itself$"):
            identity_distance(a, b)
    assert identity_distance(np.zeros(128), np.full(128, 0.5)) == pytest.approx(0.5 * 128 ** 0.5)


def test_what_is_not_a_path_a_list_of_faces_or_a_latent_is_named(tmp_path):
    """Four mistakes of the twenty-sixth session's audit: Python's own errors from inside toonlib (os.fspath's "expected
    str, bytes or os.PathLike object", "'NoneType' object is not iterable"), an empty latent written without a word,
    and a message naming a blend width nobody gave."""
    import toonlib

    with pytest.raises(TypeError, match=r"^expected a path \(a str or Path\), got Image$"):
        load_latent(Image.new("RGB", (4, 4)))
    with pytest.raises(TypeError, match=r"^paste_faces takes a list of faces \(toonify results, or \(face image, "
                                        r"quad\) pairs\), got NoneType$"):
        toonlib.paste_faces(np.zeros((8, 8, 3), np.uint8), None)
    with pytest.raises(ValueError, match=r"^the latents are empty \(shape \[0, 8, 16\]\): nothing was written"):
        projection.save_latent(torch.zeros(0, 8, 16), tmp_path / "w.npz")
    assert not (tmp_path / "w.npz").exists()
    with pytest.raises(ValueError, match=r"^level \(1\) shapes a re-blend of the toon model: give a swap resolution "
                                         r"too \(--swap-res, swap_res=\)$"):
        toonlib.Toonifier(level=1)


def test_a_flag_that_is_no_bool_is_refused(G, net, monkeypatch, tmp_path):
    """progress="no" showed the bars (a truthy string), and paste_back="no" pasted; TrainConfig already refused
    freeze_mapping="no" for that reason. Each is refused before any work."""
    import toonlib
    from toonlib.checkpoints import save_network

    with unloaded(monkeypatch), pytest.raises(TypeError, match=r"^progress must be True or False, got 'no'$"):
        project(G, Image.new("RGB", (32, 32), "gray"), steps=2, lpips_net=net, progress="no")
    save_network(tmp_path / "base.safetensors", G)
    with pytest.warns(UserWarning, match="the toon model has the same weights as the base model"):
        toonifier = toonlib.Toonifier(tmp_path / "base.safetensors", tmp_path / "base.safetensors", detector="dlib")
    for name in ("all_faces", "paste_back", "progress"):
        with pytest.raises(TypeError, match=rf"^{name} must be True or False, got 'no'$"):
            toonifier(Image.new("RGB", (32, 32), "gray"), **{name: "no"})
    with pytest.raises(TypeError, match=r"^all_faces must be True or False, got 'no'$"):
        toonifier.align(Image.new("RGB", (32, 32), "gray"), all_faces="no")  # one face was taken for every face
    with pytest.raises(TypeError, match=r"^progress must be True or False, got 0$"):
        toonlib.fetch("ffhq-1024-tf", progress=0)
    with pytest.raises(TypeError, match=r"^progress must be True or False, got 'no'$"):
        toonlib.finetune(data=str(tmp_path), resume=str(tmp_path / "base.safetensors"), run_dir=str(tmp_path / "run"),
                         progress="no")
    assert not (tmp_path / "run").exists()


def test_toonify_options_are_checked_before_the_models_load_and_the_faces_are_searched(G, net, monkeypatch, tmp_path):
    """face_index="0", paste_back="yes" and progress="no" were refused by `toonlib.toonify` only after its models had
    loaded (downloaded, for the default ones), and face_index="0" and device= by a Toonifier only after the face search.
    save_every and w_avg_samples were taken and did nothing (frames rendered, then dropped; the cached mean w won)."""
    import toonlib
    from toonlib import pipeline
    from toonlib.checkpoints import save_network

    photo = Image.new("RGB", (32, 32), "gray")
    monkeypatch.setattr(pipeline, "load_generator", lambda *args, **kwargs: pytest.fail("a model was loaded"))
    for wrong, error, words in [(dict(face_index="0"), ValueError, r"^face_index must be a whole number .* got '0'$"),
                                (dict(face_index=1.0), ValueError, r"^face_index must be a whole number .* got 1\.0$"),
                                (dict(paste_back="yes"), TypeError, r"^paste_back must be True or False, got 'yes'$"),
                                (dict(progress="no"), TypeError, r"^progress must be True or False, got 'no'$")]:
        with pytest.raises(error, match=words):
            toonlib.toonify(photo, **wrong)
    monkeypatch.undo()
    save_network(tmp_path / "base.safetensors", G)
    with pytest.warns(UserWarning, match="the toon model has the same weights as the base model"):
        toonifier = toonlib.Toonifier(tmp_path / "base.safetensors", tmp_path / "base.safetensors", detector="dlib")
    for aligner in ("align_face", "align_faces"):
        monkeypatch.setattr(pipeline, aligner, lambda *args, **kwargs: pytest.fail("the photo's faces were searched"))
    with pytest.raises(ValueError, match=r"^face_index must be a whole number .* got '0'$"):
        toonifier(photo, face_index="0")
    values = {"device": "cpu", "on_frame": print}
    for option, words in [("device", r"the models' device is the Toonifier's: Toonifier\(\.\.\., device=\.\.\.\)$"),
                          ("save_every", r"a toonify keeps no frames: toonlib\.project\(toonifier\.base, "
                                         r"result\.aligned, save_every=k\) makes them$"),
                          ("on_frame", r"a toonify makes no frames: toonlib\.project\(toonifier\.base, "
                                       r"result\.aligned, save_every=k, on_frame=\.\.\.\) sends them$"),
                          ("w_avg_samples", r"the Toonifier computes the mean w once \(w_statistics' samples\)")]:
        value = values.get(option, 2)
        with pytest.raises(TypeError, match=rf"^unexpected keyword argument '{option}' in a toonify call: {words}"):
            toonifier(photo, **{option: value}, lpips_net=net)
        with pytest.raises(TypeError, match=rf"'{option}' in a toonify call"):
            list(toonifier.toonify_many([photo], **{option: value}))


def test_a_missing_photo_is_a_file_not_found_error_too(tmp_path):
    """A missing model, encoder or latent file is a FileNotFoundError; a missing photo was an ImageReadError alone,
    which `except FileNotFoundError` (or OSError) around `toonifier("me.jpg")` did not catch."""
    from toonlib.images import ImageReadError, read_image

    for read in (read_image, align_face):
        with pytest.raises(FileNotFoundError, match=r"cannot read '.*me\.jpg' as an image: there is no such file$"
                           ) as info:
            read(tmp_path / "me.jpg")
        assert isinstance(info.value, ImageReadError)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ImageReadError) as info:
        read_image(tmp_path / "broken.jpg")
    assert not isinstance(info.value, OSError)  # a file that is there and no image is no missing file


def test_an_lpips_net_in_training_mode_measures_the_same_distance(G, net):
    """lpips' heads hold dropout: a net in training mode (as a training loss leaves it) made the latent of the same
    seed differ from call to call (its heads ran through dropout), and left the plain head's float32 path."""
    target = Image.new("RGB", (32, 32), "gray")
    evaluated = run(G, target, net.eval(), seed=3)
    try:
        trained = [run(G, target, net.train(), seed=3) for _ in range(2)]
    finally:
        net.eval()
    for result in trained:
        torch.testing.assert_close(result.w, evaluated.w, rtol=0, atol=0)
        np.testing.assert_array_equal(result.losses, evaluated.losses)


@pytest.fixture(scope="module")
def toonifier(tmp_path_factory) -> Toonifier:
    """A Toonifier of tiny models (32 px), optimising."""
    base, toon, _, _ = write_toonify_models(tmp_path_factory.mktemp("models"))
    return Toonifier(base, toon, detector="dlib")


def test_toonify_many_yields_an_item_that_is_no_photo_and_goes_on(toonifier, net, tmp_path):
    """A None or a tensor in the list raised TypeError out of the loop: the photo read before it in the same batch was
    never toonified, nor any after it (forty-first session's audit); a photo that cannot be read is yielded."""
    astronaut = write_photos(tmp_path) / "astronaut.png"
    tensor = torch.zeros(3, 32, 32)
    outcomes = list(toonifier.toonify_many([astronaut, None, tensor, astronaut], batch_size=4, steps=1,
                                           lpips_net=net, progress=False))
    assert [photo is item for (photo, _), item in zip(outcomes, [None, tensor, astronaut, astronaut])] == [True] * 4
    assert isinstance(outcomes[0][1], TypeError) and "got NoneType" in str(outcomes[0][1])
    assert isinstance(outcomes[1][1], TypeError) and "got Tensor" in str(outcomes[1][1])
    assert all(len(results) == 1 and results[0].toon.size == (32, 32) for _, results in outcomes[2:])


def test_toonify_many_and_the_app_name_what_they_take(toonifier):
    """toonify_many(None) and ToonApp(None) said "'NoneType' object is not iterable", ToonApp("toonify-blended-tf")
    "'str' object has no attribute 'invert'", and ToonApp(tf, steps="200") "'<=' not supported between instances of
    'int' and 'str'" (forty-first session's audit)."""
    from toonlib.app import ToonApp

    for photos, got in ((None, "NoneType"), (5, "int")):
        with pytest.raises(TypeError, match=r"^toonify_many takes an iterable of photos \(a list, a generator, "
                                            rf"toonlib\.pipeline\.photos_in\(folder\)\), got {got}$"):
            toonifier.toonify_many(photos)
    taken = r"^toonifiers is a Toonifier or a list of them \(one per inversion mode\), got "
    for toonifiers, got in ((None, r"NoneType: pass Toonifier\(\)"),
                            ("toonify-blended-tf", r"str 'toonify-blended-tf': pass "
                                                   r"Toonifier\(toon='toonify-blended-tf'\)"),
                            ([toonifier, "e4e"], r"str 'e4e': pass Toonifier\(invert='e4e'\)")):
        with pytest.raises(TypeError, match=taken + got + "$"):
            ToonApp(toonifiers)
    for setting, value, got in (("steps", "200", "'200'"), ("max_steps", 50.5, "50.5")):
        with pytest.raises(ValueError, match=rf"^{setting} must be a whole number >= 1, got {got}$"):
            ToonApp(toonifier, **{setting: value})
    with pytest.raises(ValueError, match=r"^max_pixels \(the largest photo taken, in pixels\) must be a finite number "
                                         r">= 1, got '1e6'$"):
        ToonApp(toonifier, max_pixels="1e6")


def test_an_encoder_given_to_a_toonifier_or_encoding_in_train_mode_is_run_in_eval_mode():
    """An Encoder in train mode normalised each photo with its own statistics and moved the caller's BatchNorm running
    statistics at every encode; a Toonifier given one left it so (a Generator given is put in eval mode; forty-first
    session's audit)."""
    encoder = Encoder("e4e", 8)
    face = torch.rand(3, 64, 64) * 2 - 1
    evaluated = encoder.eval().encode(face)
    encoder.train()
    encoder.body.eval()  # a mode of the caller's own, restored as it was
    modes = [module.training for module in encoder.modules()]
    statistics = {name: buffer.clone() for name, buffer in encoder.named_buffers() if "running" in name}
    assert torch.equal(encoder.encode(face), evaluated)
    assert [module.training for module in encoder.modules()] == modes
    assert all(torch.equal(buffer, statistics[name]) for name, buffer in encoder.named_buffers() if name in statistics)
    base = tiny_generator(0, w_dim=512)  # 8 W+ entries of 512, the encoder's codes
    toon = copy.deepcopy(base)
    with torch.no_grad():
        for param in toon.synthesis.parameters():
            param.mul_(1.01)  # a toon model fine-tuned from it
    Toonifier(base, toon, invert="e4e", encoder=encoder, detector="dlib", device="cpu")
    assert not any(module.training for module in encoder.modules())


def test_save_image_to_a_folder_says_it_is_a_folder(tmp_path):
    """save_image(toon, "out/toons"), a folder, said to name it out/toons.png: a file beside the folder (forty-first
    session's audit)."""
    (tmp_path / "toons").mkdir()
    with pytest.raises(IsADirectoryError, match=r"^cannot write .*toons: it is a folder; name a file$"):
        save_image(Image.new("RGB", (8, 8)), tmp_path / "toons")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toons"] and not any((tmp_path / "toons").iterdir())


def test_an_image_tensor_of_nan_or_inf_is_refused(tmp_path):
    """to_pil and save_image of a NaN tensor made a black picture without a word; an infinite one got the "0 .. 255"
    warning, which named the wrong cause (forty-first session's audit)."""
    for value in (float("nan"), float("inf")):
        tensor = torch.zeros(3, 4, 4)
        tensor[0, 1, 2] = value
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no 0 .. 255 warning beside the error
            with pytest.raises(ValueError, match=r"^the image tensor holds NaN or infinite values \(1 of 48\), of "
                                                 r"which no picture can be made: fix what computed it, or replace "
                                                 r"them \(torch\.nan_to_num\)$"):
                to_pil(tensor)
            with pytest.raises(ValueError, match=r"^the image tensor holds NaN or infinite values"):
                save_image(tensor, tmp_path / "nan.png")
    assert not any(tmp_path.iterdir())


def test_a_latent_of_whole_numbers_is_refused(G, tmp_path):
    """render(G, w.long()) drew another face without a word (its values cut to whole numbers); save_latent wrote it
    (forty-first session's audit)."""
    w = G.mapping(torch.randn(1, G.z_dim), None)
    for latent, dtype in ((w.long(), r"torch\.int64"), (w.int().numpy(), r"torch\.int32")):
        for use, args in ((render, (G, latent)), (save_latent, (latent, tmp_path / "w.npz"))):
            with pytest.raises(ValueError, match=rf"^a latent is a float tensor or array \[N, num_ws, w_dim\], got "
                                                 rf"{dtype}: whole numbers draw another face than the latent they "
                                                 r"were cut from; pass the float latent \(a result's \.w, "
                                                 r"load_latent's\), not a w\.long\(\) or w\.int\(\) of it$"):
                use(*args)
    assert not any(tmp_path.iterdir())
    torch.testing.assert_close(render(G, w.half()), render(G, w), rtol=0, atol=0.05)  # float latents still draw


def test_a_model_argument_of_no_model_kind_is_named_by_its_parameter():
    """`blend(None, ...)` said "load_network reads a checkpoint ...", `Toonifier(encoder=123)` "load_encoder reads
    ...", and `Toonifier(toon=None)` did not say it was toon=: each names the argument and every kind it takes
    (forty-third session's audit)."""
    import toonlib

    takes = r"= takes a Generator, Networks or a checkpoint: a path, an http\(s\) URL or a registry name \(`toonlib " \
            r"models`\); got NoneType$"
    with pytest.raises(TypeError, match="^low" + takes):
        toonlib.blend(None, "ffhq-1024-tf", 8)
    with pytest.raises(TypeError, match="^high" + takes):
        toonlib.blend(tiny_generator(0), None, 8)
    with pytest.raises(TypeError, match="^toon" + takes):
        toonlib.Toonifier(toon=None)
    with pytest.raises(TypeError, match=r"^encoder= takes an Encoder or a pSp / e4e checkpoint: a path, an http\(s\) "
                                        r"URL or a registry name \(`toonlib models`\), or None \(the mode's own\); "
                                        r"got int$"):
        toonlib.Toonifier(invert="e4e", encoder=123)
