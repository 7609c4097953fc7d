"""The public API's answers to inputs a user gets wrong (or right in a form it did not expect): a message that says
what to pass, not a traceback from inside torch, NumPy or Pillow."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import tiny_generator

from toonlib.align import ffhq_quad
from toonlib.encoders import Encoder, load_encoder
from toonlib.identity import identity_report, identity_sweep
from toonlib.images import from_pil, labelled_grid
from toonlib.projection import ProjectionResult, load_latent, project, render


@pytest.fixture(scope="module")
def G():
    return tiny_generator(0)


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)


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


def test_from_pil_takes_a_pil_image(tmp_path):
    """A path or an array failed at "'str' object has no attribute 'convert'", size=0 inside Pillow."""
    for image in (str(tmp_path / "me.png"), np.zeros((8, 8, 3), np.uint8)):
        with pytest.raises(TypeError, match=r"^from_pil takes a PIL image, got (str|ndarray): for a file, bytes or an "
                                            r"array use from_pil\(read_image\(x\)\)$"):
            from_pil(image)
    with pytest.raises(ValueError, match=r"^size must be a whole number >= 1, got 0$"):
        from_pil(Image.new("RGB", (8, 8)), 0)


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
