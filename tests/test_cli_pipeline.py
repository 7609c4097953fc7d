"""`toonlib align | project | toonify` on real photos with tiny models (in-process, to share LPIPS)."""
from __future__ import annotations

import lpips
import pytest
from PIL import Image
from skimage import data as skdata
from tiny import write_photos, write_toonify_models

from toonlib import cli, losses
from toonlib.projection import load_latent


@pytest.fixture(autouse=True)
def offline_lpips(monkeypatch):
    """The product's LPIPS cache pre-filled with a random-trunk LPIPS (no VGG16 download here)."""
    monkeypatch.setitem(losses._LPIPS_CACHE, "cpu", lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    write_toonify_models(root)
    write_photos(root / "photos")
    return root


def test_align_then_project(setup, tmp_path, capsys):
    aligned = tmp_path / "face.png"
    assert cli.main(["align", str(setup / "photos" / "hopper.jpg"), "-o", str(aligned), "--size", "64",
                     "--detector", "dlib"]) == 0
    assert Image.open(aligned).size == (64, 64)
    latent = tmp_path / "w.npz"
    assert cli.main(["project", str(aligned), "--base", str(setup / "base.pt"), "--steps", "3", "-o", str(latent),
                     "--image-out", str(tmp_path / "recon.png")]) == 0
    assert load_latent(latent).shape == (1, 8, 16)
    assert Image.open(tmp_path / "recon.png").size == (32, 32)
    assert "final LPIPS" in capsys.readouterr().out
    assert cli.main(["align", str(setup / "photos" / "coffee.png"), "-o", str(tmp_path / "x.png"),
                     "--detector", "dlib"]) == 2
    assert "no face" in capsys.readouterr().err.lower()


def test_toonify_folder_survives_bad_photos(setup, tmp_path, capsys):
    out = tmp_path / "toons"
    code = cli.main(["toonify", str(setup / "photos"), "-o", str(out), "--base", str(setup / "base.pt"),
                     "--toon", str(setup / "toon.pt"), "--steps", "2", "--paste-back", "--detector", "dlib"])
    captured = capsys.readouterr()
    assert code == 1  # some photos failed, the others were written
    assert "skipped" in captured.err and "broken.jpg" in captured.err and "coffee.png" in captured.err
    assert "toonified 2 of 4 photos" in captured.out
    for stem in ("astronaut", "hopper"):
        for kind in ("toon", "aligned", "reconstruction"):
            assert Image.open(out / f"{stem}-{kind}.png").size == (32, 32)
        pasted = Image.open(out / f"{stem}-pasted.png")
        original = Image.open(setup / "photos" / ("astronaut.png" if stem == "astronaut" else "hopper.jpg"))
        assert pasted.size == original.size
    assert sorted(p.name for p in (setup / "photos").iterdir()) == ["astronaut.png", "broken.jpg", "coffee.png",
                                                                    "hopper.jpg"]


def test_toonify_refuses_to_overwrite_inputs(setup, tmp_path, capsys):
    photos = tmp_path / "in"
    photos.mkdir()
    Image.fromarray(skdata.astronaut()).save(photos / "me.png")
    Image.fromarray(skdata.astronaut()[::-1]).save(photos / "me-toon.png")  # an input named like an output
    before = (photos / "me-toon.png").read_bytes()
    code = cli.main(["toonify", str(photos), "-o", str(photos), "--base", str(setup / "base.pt"),
                     "--toon", str(setup / "toon.pt"), "--steps", "1", "--detector", "dlib"])
    assert code == 2 and "refusing to overwrite the input photo" in capsys.readouterr().err
    assert (photos / "me-toon.png").read_bytes() == before


def test_toonify_one_photo_to_an_image_path(setup, tmp_path, capsys):
    """`toonify PHOTO -o out.png` writes the toon at out.png and the other images beside it, not a folder."""
    out = tmp_path / "results" / "out.png"
    code = cli.main(["toonify", str(setup / "photos" / "hopper.jpg"), "-o", str(out), "--base", str(setup / "base.pt"),
                     "--toon", str(setup / "toon.pt"), "--steps", "1", "--paste-back", "--detector", "dlib"])
    assert code == 0
    assert out.is_file() and Image.open(out).size == (32, 32)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out-aligned.png", "out-pasted.png",
                                                            "out-reconstruction.png", "out.png"]
    assert f"wrote {out}" in capsys.readouterr().out


def test_toonify_one_photo_without_a_face_exits_1(setup, tmp_path, capsys):
    code = cli.main(["toonify", str(setup / "photos" / "coffee.png"), "-o", str(tmp_path / "x.png"),
                     "--base", str(setup / "base.pt"), "--toon", str(setup / "toon.pt"), "--steps", "1",
                     "--detector", "dlib"])
    assert code == 1
    assert "no face" in capsys.readouterr().err.lower()
    assert not any(tmp_path.iterdir())
