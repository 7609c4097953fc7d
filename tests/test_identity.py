"""Identity report: dlib face-recognition distances on real photos (shipped by installed packages)."""
from __future__ import annotations

import dataclasses
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import cbook
from PIL import Image, ImageOps
from skimage import data as skdata
from tiny import write_toonify_models

import toonlib
from toonlib.align import NoFaceError, align_face
from toonlib.identity import (
    SAME_PERSON,
    IdentityReport,
    face_embedding,
    identity_distance,
    identity_report,
    identity_sweep,
)
from toonlib.pipeline import Toonifier, ToonifyResult

EXAMPLE = Path(__file__).parent.parent / "examples" / "grace_hopper.jpg"


def exif_rotated(image: Image.Image) -> bytes:
    """A JPEG whose pixels are turned a quarter and whose EXIF orientation (6) turns them back upright."""
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.transpose(Image.Transpose.ROTATE_90).save(out, format="JPEG", exif=exif.tobytes(), quality=95)
    return out.getvalue()


@pytest.fixture(scope="module")
def faces():
    astronaut = Image.fromarray(skdata.astronaut())
    hopper = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    photos = {"astronaut": astronaut, "mirror": ImageOps.mirror(astronaut), "exif": exif_rotated(astronaut),
              "hopper": hopper, "hopper-small": hopper.resize((384, 450), Image.Resampling.LANCZOS),
              "example": EXAMPLE}
    return {name: face_embedding(photo) for name, photo in photos.items()}


def test_same_face_is_close_different_people_are_far(faces):
    assert all(e.shape == (128,) for e in faces.values())
    distance = {(a, b): identity_distance(faces[a], faces[b]) for a in faces for b in faces}
    assert distance["astronaut", "exif"] < 0.1  # the same pixels after EXIF, through JPEG
    assert distance["hopper", "example"] < 0.1  # the example photo is matplotlib's sample
    for a, b in (("astronaut", "mirror"), ("mirror", "exif"), ("hopper", "hopper-small")):
        assert distance[a, b] < SAME_PERSON / 2, (a, b)
    for person in ("astronaut", "mirror", "exif"):
        for other in ("hopper", "hopper-small", "example"):
            assert distance[person, other] > SAME_PERSON, (person, other)


def test_a_small_face_is_measured_without_a_warning():
    """dlib resamples the face to 150 px anyway: the small-face warning is silenced by its category (silenced by its
    text, it came back once the text named the photo; the thirty-fourth session's review)."""
    import warnings

    small = Image.fromarray(skdata.astronaut()).resize((200, 200), Image.Resampling.LANCZOS)  # a 67 px crop
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert face_embedding(small).shape == (128,)


def test_photos_without_a_face_are_refused():
    with pytest.raises(NoFaceError):
        face_embedding(skdata.coffee())


def _result(photo, reconstruction_from, toon_from) -> ToonifyResult:
    face = align_face(photo, output_size=256, detector="dlib")
    crop = {name: align_face(source, output_size=256, detector="dlib").image
            for name, source in (("reconstruction", reconstruction_from), ("toon", toon_from)) if source is not None}
    return ToonifyResult(photo=face.image, aligned=face.image, landmarks=face.landmarks, quad=face.quad,
                         w=torch.zeros(1, 18, 512), reconstruction=crop.get("reconstruction"), toon=crop["toon"],
                         losses=np.zeros(0))


def test_report_measures_the_reconstruction_and_the_toon():
    astronaut = skdata.astronaut()
    hopper = np.asarray(Image.open(EXAMPLE).convert("RGB"))
    report = identity_report(_result(astronaut, astronaut, hopper))
    assert report.reconstruction == pytest.approx(0.0, abs=1e-6)  # the photo's own crop
    assert report.toon > SAME_PERSON  # somebody else
    text = str(report)
    assert text.startswith("identity distance (dlib; < 0.6 = same person): reconstruction 0.00, toon 0.")
    mirrored = identity_report(_result(astronaut, None, astronaut[:, ::-1].copy()))
    assert mirrored.reconstruction is None and mirrored.toon < 0.3
    assert "reconstruction" not in str(mirrored)


def test_sweep_over_swap_resolutions(tmp_path):
    base, toon, _, _ = write_toonify_models(tmp_path)
    with pytest.warns(UserWarning):  # the tiny test models are unrelated (LineageWarning)
        toonifier = Toonifier(base, toon, detector="dlib", device="cpu")
    face = align_face(skdata.astronaut(), output_size=32, detector="dlib")
    w = toonifier.base.mapping(torch.randn(1, toonifier.base.z_dim), None)
    result = ToonifyResult(photo=face.image, aligned=face.image, landmarks=face.landmarks, quad=face.quad, w=w,
                           reconstruction=None, toon=toonifier.render(w), losses=np.zeros(0))
    toonifier.set_blend(16)
    distances = identity_sweep(toonifier, result, [None, 8, 16, 32])
    assert list(distances) == [None, 8, 16, 32] and all(d >= 0 for d in distances.values())
    assert distances[None] == identity_report(result).toon  # None: the published blend that rendered result.toon
    assert len(set(distances.values())) > 1
    assert toonifier.blend_setting == (16, 0, None)  # restored
    assert list(identity_sweep(toonifier, result)) == [None, 8, 16, 32]  # default: the published blend and 8 px up
    assert isinstance(IdentityReport(None, 0.5).toon, float)


def test_a_missing_recognition_model_is_said_not_a_traceback(tmp_path, monkeypatch):
    """An incomplete face_recognition_models (the 68-point model, not the recognition network) raised dlib's
    RuntimeError: a traceback that stopped `toonlib toonify FOLDER` after its first photo. It is an ImportError now,
    which the command line reports on the face's line (`identity not measured (...)`) and goes on."""
    from toonlib import commands
    from toonlib.align import _dlib_model_path
    from toonlib.identity import _recognizer

    astronaut = skdata.astronaut()
    result = _result(astronaut, astronaut, astronaut)
    package = tmp_path / "face_recognition_models"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").touch()
    (package / "models" / "shape_predictor_68_face_landmarks.dat").symlink_to(_dlib_model_path())
    monkeypatch.syspath_prepend(str(tmp_path))
    _recognizer.cache_clear()
    try:
        with pytest.raises(ImportError, match=r"face_recognition_models has no models/dlib_face_recognition_"
                                                     r"resnet_model_v1\.dat; reinstall it: pip install"):
            identity_report(result)
        said = commands._identity(result)
        assert said.startswith("identity not measured (face_recognition_models has no models/")
        assert said.endswith("--force-reinstall face_recognition_models); pass --no-identity"), said  # no `pip install
        # 'toonlib[dlib]'`, which finds it all installed and changes nothing (audit)
    finally:
        _recognizer.cache_clear()


def _sweep_setup(tmp_path, toon=None, **settings):
    """A toonifier of the tiny models (its toon model `toon`, by default Toonify's layout) and a result of its own."""
    base, layout, _, _ = write_toonify_models(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny test models are unrelated (LineageWarning)
        toonifier = toonlib.Toonifier(base, layout if toon is None else toon, detector="dlib", device="cpu",
                                      **settings)
    face = align_face(skdata.astronaut(), output_size=32, detector="dlib")
    w = toonifier.base.mapping(torch.randn(1, toonifier.base.z_dim, generator=torch.Generator().manual_seed(3)), None)
    result = ToonifyResult(photo=face.image, aligned=face.image, landmarks=face.landmarks, quad=face.quad, w=w,
                           reconstruction=None, toon=toonifier.render(w), losses=np.zeros(0))
    return toonifier, result


def test_the_sweep_keeps_the_toonifiers_level_and_blend_width(tmp_path):
    """identity_sweep re-blended with set_blend(swap_res), a level-0 hard switch: its number at the toonifier's own
    swap resolution was not that of the toonifier's toons (forty-third session's audit)."""
    toonifier, result = _sweep_setup(tmp_path, swap_res=16, level=1, blend_width=1.5)
    own = identity_report(result).toon  # result.toon drawn by the toonifier's blend: 16 px, level 1, width 1.5
    distances = identity_sweep(toonifier, result, [16, 8])
    assert distances[16] == own, (distances, own)
    toonifier.set_blend(16)
    plain = identity_report(dataclasses.replace(result, toon=toonifier.render(result.w))).toon
    assert plain != own  # the shape makes a difference here: the sweep measured this one
    assert toonifier.blend_setting == (16, 0, None)  # restored


def test_the_sweep_of_a_toonifier_that_cannot_re_blend_measures_the_published_blend(tmp_path):
    """A blend file as the toon model: the default sweep failed whole with the blend-again error; it measures the
    published blend alone, saying why. Resolutions asked for are refused as set_blend refuses them. A toonifier that
    is no Toonifier (None, or the two arguments swapped) is refused by name (forty-third session's audit)."""
    from toonlib.checkpoints import save_network

    base, _, base_g, toon_g = write_toonify_models(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unrelated tiny models (LineageWarning)
        blended = save_network(tmp_path / "blended16.safetensors", toonlib.blend(toon_g, base_g, 16))
    toonifier, result = _sweep_setup(tmp_path, toon=blended)
    with pytest.warns(UserWarning, match=r"^identity_sweep measures the published blend alone: this toonifier cannot "
                                         r"re-blend \(the toon model .* is a blend already"):
        distances = identity_sweep(toonifier, result)
    assert distances == {None: identity_report(result).toon}
    assert toonifier.blend_setting == (None, 0, None)
    with pytest.raises(ValueError, match="is a blend already"):
        identity_sweep(toonifier, result, [None, 16])
    with pytest.raises(TypeError, match=r"^identity_sweep takes the Toonifier that made the result first \(it re-draws "
                                        r"the result's latent\), got NoneType$"):
        identity_sweep(None, result)
    with pytest.raises(TypeError, match=r"^identity_sweep\(toonifier, result\) takes the Toonifier first, then its "
                                        r"result \(swapped\)$"):
        identity_sweep(result, toonifier)
