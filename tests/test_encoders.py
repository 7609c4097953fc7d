"""pSp / e4e encoders: parity with the original code (tests/fixtures/encoders), preprocessing, refusals."""
from __future__ import annotations

import argparse
import re
import warnings

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from encoder_fixtures import reference
from PIL import Image
from skimage import data as skdata

import toonlib
from toonlib.encoders import Encoder, EncoderError, encoder_from_checkpoint, encoder_input

TOL = dict(atol=1e-4, rtol=1e-4)  # fixtures README


@pytest.fixture(scope="module")
def checkpoints(encoder_checkpoint):
    """The two reference checkpoints (~580 MB each), rebuilt from their recipes (once per session)."""
    return {name: encoder_checkpoint(name) for name in ("psp_tiny", "e4e_tiny")}


@pytest.mark.parametrize("name, kind", [("psp_tiny", "psp"), ("e4e_tiny", "e4e")])
def test_codes_match_the_original_code(checkpoints, name, kind):
    torch.manual_seed(0)
    encoder = toonlib.load_encoder(checkpoints[name], device="cpu")
    after_loading = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after_loading, torch.rand(3))  # built without drawing initial weights (~1 s of the load)
    assert encoder.kind == kind and encoder.n_styles == 8
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    convolutions = [m.weight for m in encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)  # the layout that is fast
    ref = reference(name)
    with torch.no_grad():
        codes = encoder(torch.from_numpy(ref["x"]))
    np.testing.assert_allclose(codes.numpy(), ref["codes"], **TOL)
    # latent_avg is part of the codes: the encoder's own output is codes - latent_avg.
    np.testing.assert_allclose((codes - encoder.latent_avg).numpy(), ref["encoder_out"], **TOL)
    # The same file's decoder, through load_network, draws the reference images from the codes.
    decoder = toonlib.load_network(checkpoints[name]).G_ema
    with torch.no_grad():
        images = decoder.synthesis(torch.from_numpy(ref["codes"]), noise_mode="const")
    np.testing.assert_allclose(images.numpy(), ref["images"], **TOL)


def test_a_loaded_encoder_keeps_working_when_its_file_changes(checkpoints, tmp_path):
    """The file is read memory-mapped; the encoder holds copies, so a file overwritten in place while it runs (an app
    serving it) changes nothing (held as the mapping's pages, they would crash the process: SIGBUS)."""
    import shutil
    import subprocess
    import sys

    path = shutil.copy(checkpoints["e4e_tiny"], tmp_path / "e4e.pt")
    code = f"""
import torch, toonlib
encoder = toonlib.load_encoder({str(path)!r}, device="cpu")
open({str(path)!r}, "wb").close()  # truncated in place
with torch.no_grad():
    codes = encoder(torch.zeros(1, 3, 256, 256))
print(bool(torch.isfinite(codes).all()))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout == "True\n", (run.returncode, run.stderr[-2000:])


def test_registry_names_go_through_the_cache(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path))
    (tmp_path / "e4e_ffhq_encode.pt").symlink_to(checkpoints["e4e_tiny"])  # as if `toonlib fetch e4e-ffhq` ran
    encoder = toonlib.load_encoder("e4e-ffhq", device="cpu")
    assert encoder.kind == "e4e" and encoder.meta["source"] == str(tmp_path / "e4e_ffhq_encode.pt")
    with pytest.raises(KeyError, match="unknown model 'e4e-ffhg'. Did you mean 'e4e-ffhq'"):
        toonlib.load_encoder("e4e-ffhg")


@pytest.mark.parametrize("name", ["psp_tiny", "e4e_tiny"])
@pytest.mark.parametrize("n_styles", [3, 5])
def test_any_number_of_w_plus_entries(checkpoints, name, n_styles):
    """A checkpoint with fewer map2style blocks (a smaller decoder) gives the first entries of the same codes:
    each pSp entry depends on its own block only, each e4e entry on block 0 and its own. With 3 entries the
    feature pyramid is not needed at all."""
    full = torch.load(checkpoints[name], map_location="cpu", weights_only=True, mmap=True)
    kept = {k: v for k, v in full["state_dict"].items()
            if not (k.startswith("encoder.styles.") and int(k.split(".")[2]) >= n_styles)}
    small = {"state_dict": kept, "opts": full["opts"], "latent_avg": full["latent_avg"][:n_styles]}
    encoder = encoder_from_checkpoint(small)
    assert encoder.n_styles == n_styles
    ref = reference(name)
    with torch.no_grad():
        codes = encoder(torch.from_numpy(ref["x"][1:]))
    np.testing.assert_allclose(codes.numpy(), ref["codes"][1:, :n_styles], **TOL)


def test_one_latent_avg_for_every_entry(checkpoints):
    """Files trained from a [512] latent_avg broadcast it over the entries, as the original code does."""
    full = torch.load(checkpoints["psp_tiny"], map_location="cpu", weights_only=True, mmap=True)
    avg = full["latent_avg"][2]
    encoder = encoder_from_checkpoint({**full, "latent_avg": avg})
    ref = reference("psp_tiny")
    with torch.no_grad():
        codes = encoder(torch.from_numpy(ref["x"][:1]))
    np.testing.assert_allclose(codes.numpy(), ref["encoder_out"][:1] + avg.numpy(), **TOL)
    # Without start_from_latent_avg nothing is added: the codes are the raw encoder output.
    encoder = encoder_from_checkpoint({**full, "opts": {**full["opts"], "start_from_latent_avg": False}})
    assert not encoder.latent_avg.any()


def test_preprocessing_is_the_original_inference_transform():
    """pSp / e4e inference: torchvision Resize((256, 256)) on a PIL image, ToTensor, Normalize(0.5, 0.5)."""
    original = T.Compose([T.Resize((256, 256)), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
    photo = Image.fromarray(skdata.astronaut())
    for image in (photo, photo.resize((1024, 1024), Image.Resampling.LANCZOS), photo.resize((256, 256))):
        x = encoder_input(image)
        assert x.shape == (1, 3, 256, 256) and x.dtype == torch.float32
        np.testing.assert_allclose(x[0].numpy(), original(image).numpy(), atol=1e-6)
    batch = encoder_input([photo, np.asarray(photo)[:, ::-1]])
    assert batch.shape == (2, 3, 256, 256)
    assert torch.equal(encoder_input(np.stack([np.asarray(photo), np.asarray(photo)[:, ::-1]])), batch)  # [N, H, W, 3]
    assert torch.equal(batch[1], encoder_input(Image.fromarray(np.asarray(photo)[:, ::-1].copy()))[0])
    with pytest.raises(ValueError, match="no image"):
        encoder_input([])


def test_encode_preprocesses_photos(checkpoints):
    encoder = toonlib.load_encoder(checkpoints["e4e_tiny"], device="cpu")
    photo = Image.fromarray(skdata.astronaut())
    codes = encoder.encode(photo)
    assert codes.shape == (1, 8, 512)
    with torch.no_grad():
        assert torch.equal(codes, encoder(encoder_input(photo)))


def test_image_tensors_are_read_and_checked_as_project_reads_them():
    """`encoder(x)` of a 0 .. 255 or a [0, 1] tensor gave codes hundreds off without a word, and `encode` of the
    [-1, 1] tensor a generator draws was a TypeError: both check it as `project` does, and `encode` takes it."""
    encoder = Encoder("e4e", 2)
    photo = Image.fromarray(skdata.astronaut()).resize((256, 256), Image.Resampling.BILINEAR)
    x = encoder_input(photo)
    with torch.no_grad():
        expected = encoder(x)
    torch.testing.assert_close(encoder.encode(x), expected)
    torch.testing.assert_close(encoder.encode(x[0]), expected)  # [3, H, W]
    big = Image.fromarray(skdata.astronaut())  # 512 px: resized as the photos are
    as_tensor = torch.from_numpy(np.asarray(big, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1
    assert (encoder_input(as_tensor) - encoder_input(big)).abs().mean() < 0.005
    with pytest.raises(ValueError, match=r"^the encoder's input must hold values in \[-1, 1\], got 0 \.\. 255: for "
                                         r"0 \.\. 255 use x / 127\.5 - 1"):
        encoder((x + 1) * 127.5)
    with pytest.raises(ValueError, match=r"^the image tensor must be a float image tensor \[3, H, W\] or \[N, 3, H, "
                                         r"W\] in \[-1, 1\], got torch\.uint8 \[1, 3, 256, 256\]: for 0 \.\. 255 "
                                         r"values"):
        encoder.encode(((x + 1) * 127.5).round().to(torch.uint8))
    with pytest.warns(UserWarning, match=r"^the encoder's input's values all lie in 0 \.\. 1; the encoder reads a "
                                         r"tensor as \[-1, 1\]"):
        encoder((x + 1) / 2)
    with pytest.warns(UserWarning) as caught:  # once, for the caller's tensor (encode's own input is not warned of)
        encoder.encode((x + 1) / 2)
    assert [str(w.message).split("'s values")[0] for w in caught] == ["the image tensor"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.encode(Image.new("RGB", (256, 256), (230, 200, 180)))  # a pale photo: no word of [0, 1] tensors
    with pytest.raises(ValueError, match=r"^the image tensor holds NaN or infinite values \(1 of"):
        encoder.encode(torch.where(torch.arange(x.numel()).reshape(x.shape) == 5, torch.nan, x))
    with pytest.warns(UserWarning, match=r"^the image tensor is 128x256, not square: the encoder takes"):
        assert encoder.encode(x[..., :128]).shape == (1, 2, 512)


def test_a_list_of_image_tensors_is_encoded_as_project_takes_it():
    """`encode([tensor, tensor])` was refused ("expected a path, bytes, PIL image or numpy array, got Tensor") where
    `project` takes a list of tensors (thirty-ninth session's audit); a list's tensors are checked by their place."""
    encoder = Encoder("e4e", 2)
    photo = Image.fromarray(skdata.astronaut()).resize((256, 256), Image.Resampling.BILINEAR)
    x = encoder_input(photo)
    flipped = x.flip(-1)
    with torch.no_grad():
        expected = encoder(torch.cat([x, flipped]))
    torch.testing.assert_close(encoder.encode([x[0], flipped]), expected)  # [3, H, W] and [1, 3, H, W]
    torch.testing.assert_close(encoder.encode([photo, flipped]), expected)  # a photo beside a tensor
    with pytest.raises(ValueError, match=r"^photos\[1\] must hold values in \[-1, 1\], got 0 \.\. 255"):
        encoder.encode([x, (flipped + 1) * 127.5])


def test_encode_warns_of_a_photo_that_is_no_aligned_crop(tmp_path):
    """A whole photo was encoded squashed to 256 x 256 without a word: an image that is not square is no FFHQ crop
    (`align_face` makes square ones), and the warning says how to get one, attributed to the caller's line."""
    import warnings

    from toonlib.messages import ToonlibWarning

    encoder = Encoder("e4e", 2)
    photo = Image.fromarray(skdata.astronaut()[:, :400])  # 400 x 512: a photo, not a crop
    advice = (r"not square: the encoder takes an FFHQ-aligned face \(toonlib\.align_face\(path\)\.image\); encoding it "
              r"squashed to 256 x 256$")
    with pytest.warns(ToonlibWarning, match=rf"^the image is 400x512, {advice}") as caught:
        assert encoder.encode(photo).shape == (1, 2, 512)
    assert [w.filename for w in caught] == [__file__]
    photo.save(tmp_path / "me.png")
    with pytest.warns(ToonlibWarning, match=rf"^'{tmp_path / 'me.png'}' is 400x512, {advice}"):
        encoder_input(tmp_path / "me.png")
    square = Image.fromarray(skdata.astronaut())
    with pytest.warns(ToonlibWarning, match=rf"^photos\[1\] is 512x400, {advice}") as caught:
        encoder_input([square, np.asarray(photo).transpose(1, 0, 2)])
    assert len(caught) == 1  # the square one is not named
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder_input([square, square.resize((64, 64))])  # square crops of any size: no warning


def _fake(tmp_path, opts, in_channels: int = 3, name: str = "enc.pt"):
    """A small file laid out like a pSp checkpoint (enough for load_encoder to judge it)."""
    state = {"encoder.input_layer.0.weight": torch.zeros(64, in_channels, 3, 3),
             "encoder.styles.0.linear.weight": torch.zeros(512, 512)}
    torch.save({"state_dict": state, "opts": opts, "latent_avg": torch.zeros(512)}, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("encoder_type, words", [
    ("BackboneEncoderUsingLastLayerIntoW", "W encoder"),
    ("BackboneEncoderUsingLastLayerIntoWPlus", "W+ encoder from the last backbone layer"),
    ("ProgressiveBackboneEncoder", "ReStyle"),
    ("ResNetBackboneEncoder", "ReStyle"),
    ("SomethingElse", "unknown"),
    (None, "no encoder_type"),
])
def test_unsupported_encoder_types_are_refused(tmp_path, encoder_type, words):
    path = _fake(tmp_path, {"encoder_type": encoder_type, "start_from_latent_avg": True})
    with pytest.raises(EncoderError) as info:
        toonlib.load_encoder(path, device="cpu")
    message = str(info.value)
    assert words in message and repr(encoder_type) in message
    assert "GradualStyleEncoder (pSp)" in message and "Encoder4Editing (e4e)" in message


def test_registry_files_of_another_kind_are_refused_before_any_download(monkeypatch):
    from toonlib import download
    from toonlib.checkpoints import CheckpointError

    monkeypatch.setattr(download, "fetch", lambda *args, **kwargs: pytest.fail("a download was started"))
    with pytest.raises(CheckpointError, match="'ffhq-1024-tf' is a StyleGAN2 generator, not a pSp / e4e encoder"):
        toonlib.load_encoder("ffhq-1024-tf", device="cpu")
    with pytest.raises(CheckpointError, match="'face-alignment-sfd' is weights of the face landmarker, not a "
                                              "StyleGAN2 generator or a pSp / e4e encoder"):
        toonlib.load_network("face-alignment-sfd")


def test_repr_says_which_encoder_it_is():
    """repr(encoder) began with 300 lines of IR-SE50 layers and never said pSp or e4e, or how many W+ entries."""
    encoder = Encoder("e4e", 2, meta={"source": "e4e_ffhq_encode.pt"})
    assert repr(encoder).splitlines()[:2] == ["Encoder(", "  kind='e4e', n_styles=2, source='e4e_ffhq_encode.pt'"]


def test_other_inputs_are_refused(tmp_path):
    restyle = _fake(tmp_path, {"encoder_type": "GradualStyleEncoder"}, in_channels=6, name="restyle.pt")
    with pytest.raises(EncoderError, match="6 input channels: a ReStyle encoder"):
        toonlib.load_encoder(restyle, device="cpu")
    sketch = _fake(tmp_path, {"encoder_type": "GradualStyleEncoder", "label_nc": 19}, in_channels=19, name="seg.pt")
    with pytest.raises(EncoderError, match="19 input channels: a sketch / segmentation-map encoder"):
        toonlib.load_encoder(sketch, device="cpu")
    namespace = _fake(tmp_path, argparse.Namespace(encoder_type="ResNetBackboneEncoder"), name="namespace.pt")
    with pytest.raises(EncoderError, match="'ResNetBackboneEncoder': ReStyle"):  # opts saved as a Namespace
        toonlib.load_encoder(namespace, device="cpu")
    partial = _fake(tmp_path, {"encoder_type": "Encoder4Editing", "start_from_latent_avg": True}, name="partial.pt")
    with pytest.raises(EncoderError, match=r"do not fit an IR-SE50 e4e encoder with 1 W\+ entries: missing"):
        toonlib.load_encoder(partial, device="cpu")
    generator = tmp_path / "generator.pt"
    toonlib.save_network(generator, toonlib.Generator(z_dim=8, w_dim=8, img_resolution=8, channel_base=32,
                                                      channel_max=8))
    with pytest.raises(EncoderError, match=r"generator\.pt is a generator checkpoint \(a network pickle or a toonlib "
                                           r"file\), not a pSp / e4e checkpoint \(for a generator checkpoint use"):
        toonlib.load_encoder(generator, device="cpu")  # it said "this file starts with b'...'"
    Image.new("RGB", (4, 4)).save(tmp_path / "me.jpg")
    with pytest.raises(EncoderError, match=r"me\.jpg is a JPEG image, not a pSp / e4e checkpoint \(those are torch"):
        toonlib.load_encoder(tmp_path / "me.jpg", device="cpu")
    (tmp_path / "text.pt").write_text("neither a photo nor a checkpoint")
    with pytest.raises(EncoderError, match="not a pSp / e4e checkpoint: those are torch.save files"):
        toonlib.load_encoder(tmp_path / "text.pt", device="cpu")
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}}, tmp_path / "rosinality.pt")
    with pytest.raises(EncoderError, match=r"not a pSp / e4e checkpoint: expected a dict with 'state_dict'.*g_ema"):
        toonlib.load_encoder(tmp_path / "rosinality.pt", device="cpu")
    # An encoder's weights alone (pSp's model_ir_se50.pth beside its encoders, or a loaded Encoder's state_dict):
    # the message listed all 485 names in 15,000 characters.
    torch.save(Encoder("e4e", 2).state_dict(), tmp_path / "weights.pt")
    with pytest.raises(EncoderError) as info:
        toonlib.load_encoder(tmp_path / "weights.pt", device="cpu")
    assert len(str(info.value)) < 1000, len(str(info.value))
    assert re.search(r"expected a dict with 'state_dict', 'opts' and 'latent_avg', got a dict of \d{3} keys: '.*' "
                     r"and \d{3} more \(weights alone, a state dict: give the checkpoint the authors published, such as"
                     r" e4e_ffhq_encode\.pt, which holds them with their 'opts' and 'latent_avg'\)$", str(info.value))
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(EncoderError, match="cannot be read as a torch checkpoint"):
        toonlib.load_encoder(tmp_path / "junk.pt", device="cpu")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        toonlib.load_encoder(tmp_path / "missing.pt", device="cpu")
    # what load_network names too (these were a raw IsADirectoryError and torch's "file in archive is not in a
    # subdirectory: w.npy")
    with pytest.raises(EncoderError, match="is a folder, not a pSp / e4e checkpoint file"):
        toonlib.load_encoder(tmp_path, device="cpu")
    np.savez(tmp_path / "latent.npz", w=np.zeros((1, 18, 512), np.float32))
    with pytest.raises(EncoderError, match=r"latent.npz is a NumPy .npz file \(arrays w\), not a network: .*latent"):
        toonlib.load_encoder(tmp_path / "latent.npz", device="cpu")


def test_damaged_and_unsafe_files_say_what_to_do(tmp_path):
    """A cut-off download said "a truncated download, or not a pSp / e4e file" after torch's whole paragraph, and a
    file asking for code (numpy scalars in its opts) was called truncated, relaying torch's advice to load it unsafely.
    """
    whole = _fake(tmp_path, {"encoder_type": "Encoder4Editing", "start_from_latent_avg": True})
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:2000])
    with pytest.raises(EncoderError) as info:
        toonlib.load_encoder(cut, device="cpu")
    assert str(info.value).endswith(". A truncated download or a damaged file: delete it and download it again.")
    assert "miniz" not in str(info.value)
    unsafe = _fake(tmp_path, {"encoder_type": "Encoder4Editing", "best_val_loss": np.float64(0.3)}, name="np.pt")
    with pytest.raises(EncoderError) as info:
        toonlib.load_encoder(unsafe, device="cpu")
    message = str(info.value)
    assert message.startswith(f"{unsafe} was not loaded: this torch file asks for 'numpy.")
    assert "could run code" in message and "truncated" not in message and "Weights only" not in message


def test_an_encoder_file_that_is_an_unfinished_download_is_said_so(tmp_path):
    """An empty file or a saved Google Drive page given as the encoder was "this file starts with b''; a generator goes
    to --base or --toon" (audit): said as it is for a generator's file."""
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "page.pt").write_bytes(b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>")
    with pytest.raises(EncoderError, match=r"empty\.pt is empty \(0 bytes\): an interrupted download\? Delete it and "
                                           r"download again\.$"):
        toonlib.load_encoder(tmp_path / "empty.pt", device="cpu")
    with pytest.raises(EncoderError, match=r"page\.pt is a web page, not a pSp / e4e checkpoint: a download that "
                                           r"failed and saved the error page instead"):
        toonlib.load_encoder(tmp_path / "page.pt", device="cpu")


def test_an_encoder_file_that_is_no_checkpoint_is_said_without_its_bytes(tmp_path):
    """`--encoder` given a text file (a credentials file, a note) was "this file starts with b'root:$6$...'": its first
    bytes on the terminal or in a log (forty-fourth session's audit). It is said to be a text file, as `toonlib info`
    says it, or a file of another format, none of its bytes quoted."""
    (tmp_path / "secret.pt").write_text("root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\n")
    (tmp_path / "other.pt").write_bytes(bytes(range(128, 192)))
    with pytest.raises(EncoderError) as info:
        toonlib.load_encoder(tmp_path / "secret.pt", device="cpu")
    assert str(info.value) == (f"{tmp_path / 'secret.pt'} is not a pSp / e4e checkpoint: those are torch.save files, "
                               "this is a text file (for a generator checkpoint use toonlib.load_network)")
    with pytest.raises(EncoderError, match=r"this is a file of another format \(for a generator"):
        toonlib.load_encoder(tmp_path / "other.pt", device="cpu")
