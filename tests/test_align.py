"""align.py: the FFHQ crop geometry, input handling and both landmark backends, offline.

Real photos come from installed packages (scikit-image's astronaut, matplotlib's Grace Hopper);
real landmarks from dlib with the 68-point model of `face_recognition_models`. face-alignment's
networks cannot be downloaded here, so its backend is exercised with a stub in their place.
"""
from __future__ import annotations

import importlib
import io
import urllib.error
import warnings
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from toonlib import align
from toonlib.align import (
    AlignedFace,
    FaceIndexError,
    LandmarkBackendError,
    NoFaceError,
    align_face,
    align_faces,
    crop_to_photo_transform,
    face_position,
    ffhq_quad,
)
from toonlib.images import ImageReadError, read_image

SIZE = 256  # output size for real photos
FAST = {"output_size": SIZE, "transform_size": 2 * SIZE}  # a smaller intermediate warp than FFHQ's 4096: faster


# ----------------------------------------------------------------------------------------------
# Helpers


def features(landmarks: np.ndarray) -> np.ndarray:
    """Left eye centre, right eye centre and mouth centre (the points the recipe uses)."""
    return np.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0), (landmarks[48] + landmarks[54]) / 2])


def expected_features(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Where the FFHQ recipe puts the eye centres and the mouth centre in a `size` px crop.

    With e = eye to eye, m = eye midpoint to mouth midpoint and rot(a, b) = (-b, a) (a quarter turn),
    the recipe's square has axes x^ = unit(e - rot(m)), y^ = rot(x^), side
    s = 2 * max(2 |e|, 1.8 |m|) and centre eye_mid + 0.1 m. A photo vector v is therefore
    v' = size / s * (v . x^, v . y^) in the crop, whose centre is the point ((size - 1) / 2, ...)
    in pixel-centre coordinates. So: eye_mid' = centre - 0.1 m', eyes = eye_mid' -+ e' / 2,
    mouth = eye_mid' + m'.
    """
    eye_l, eye_r, mouth = features(landmarks)
    e, m = eye_r - eye_l, mouth - (eye_l + eye_r) / 2
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    x_axis = e - rot @ m
    x_axis /= np.linalg.norm(x_axis)
    axes = np.stack([x_axis, rot @ x_axis])
    scale = size / (2 * max(2 * np.linalg.norm(e), 1.8 * np.linalg.norm(m)))
    e_crop, m_crop = scale * axes @ e, scale * axes @ m
    eye_mid = np.full(2, (size - 1) / 2) - 0.1 * m_crop
    return np.stack([eye_mid - e_crop / 2, eye_mid + e_crop / 2, eye_mid + m_crop])


def synthetic_landmarks(eye_l, eye_r, mouth_l, mouth_r) -> np.ndarray:
    """68 iBUG landmarks with the given eye centres and mouth corners (the points the recipe reads)."""
    ring = 4.0 * np.stack([np.cos(np.arange(6) * np.pi / 3), np.sin(np.arange(6) * np.pi / 3)], axis=1)
    lm = np.tile((np.add(eye_l, eye_r) + np.add(mouth_l, mouth_r)) / 4, (68, 1))
    lm[36:42], lm[42:48] = np.add(eye_l, ring), np.add(eye_r, ring)
    lm[48], lm[54] = mouth_l, mouth_r
    return lm


def blob_centroid(image: Image.Image, centre: np.ndarray, radius: int) -> np.ndarray:
    """Intensity centroid of the grayscale image in a square window around `centre`."""
    gray = np.asarray(image.convert("L"), dtype=np.float64)
    x0, y0 = np.rint(centre).astype(int) - radius
    window = gray[y0:y0 + 2 * radius + 1, x0:x0 + 2 * radius + 1]
    ys, xs = np.mgrid[y0:y0 + window.shape[0], x0:x0 + window.shape[1]]
    return np.array([(window * xs).sum(), (window * ys).sum()]) / window.sum()


@pytest.fixture
def backends(monkeypatch) -> dict:
    """An empty backend cache for this test (backends built here do not leak into other tests)."""
    cache: dict = {}
    monkeypatch.setattr(align, "_BACKENDS", cache)
    return cache


def fixed_backend(landmarks: np.ndarray):
    """A landmark backend that finds one face with the given landmarks in any image."""
    return lambda image, boxes: [(np.array([0.0, 0.0, 1.0, 1.0]), landmarks)]


# ----------------------------------------------------------------------------------------------
# Geometry, exact (synthetic landmarks, no detector)


@pytest.mark.parametrize("ratio", [0.9, 1.0, 10 / 9, 1.3])
@pytest.mark.parametrize("angle, scale, shift", [(0.0, 1.0, (0.0, 0.0)), (0.4, 2.5, (300.0, -40.0))])
def test_ffhq_template(ratio, angle, scale, shift):
    """Closed form of the recipe for a symmetric face, at any rotation, scale and position.

    With |e| = d and m perpendicular to e, |m| = r d: for r <= 10/9 the square's side is 4 d, so
    the eyes are size/4 apart at x = 3/8 and 5/8 of the size, the eye midpoint sits 0.1 m' = size r/40 above
    the centre and the mouth 9 size r/40 below it (1024 px, r = 1: eyes (384, 486.4) and (640, 486.4),
    mouth (512, 742.4), in edge coordinates). For r > 10/9 the side is 3.6 |m|: the mouth is at
    3/4 of the size, the eye midpoint at 17/36 of it and the eyes size/(3.6 r) apart.
    """
    size, d = 1024, 100.0
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = np.array([[-d / 2, 0.0], [d / 2, 0.0], [-d / 3, ratio * d], [d / 3, ratio * d]])
    landmarks = synthetic_landmarks(*(pts @ turn.T * scale + shift))
    face = AlignedFace(Image.new("RGB", (size, size)), landmarks, ffhq_quad(landmarks), face_size=0.0)
    side = 4 * d if ratio <= 10 / 9 else 3.6 * ratio * d
    eye_y = size / 2 - 0.1 * ratio * d * size / side
    eye_gap = d * size / side
    expected_edge = [[size / 2 - eye_gap / 2, eye_y], [size / 2 + eye_gap / 2, eye_y],
                     [size / 2, eye_y + ratio * d * size / side]]
    np.testing.assert_allclose(features(face.landmarks_in_crop()), np.array(expected_edge) - 0.5, atol=1e-9)
    if ratio <= 10 / 9:
        np.testing.assert_allclose(expected_edge[0], [3 * size / 8, size * (0.5 - ratio / 40)])
    else:
        np.testing.assert_allclose(expected_edge[2][1], 0.75 * size)
    np.testing.assert_allclose(features(face.landmarks_in_crop()),
                               expected_features(face.landmarks, size), atol=1e-9)


@pytest.mark.parametrize("case", ["inside", "shrink", "pad"])
def test_warp_puts_points_where_the_transform_says(case, backends):
    """Bright dots on the eyes and mouth of a synthetic photo land at `landmarks_in_crop` to a fraction of a pixel.

    Covers the three branches of the recipe: plain crop, integer shrink (face over 4x the output size),
    and reflect padding (face at the photo's corner).
    """
    pts = np.array([[170.0, 180.0], [230.0, 185.0], [175.0, 250.0], [225.0, 252.0]])  # tilted, mouth-dominated
    photo_size, output_size = 400, 128
    if case == "shrink":
        pts, photo_size, output_size = pts * 4, 1600, 64
    elif case == "pad":
        pts = pts - [140.0, 120.0]
    landmarks = synthetic_landmarks(*pts)
    qsize = np.hypot(*(ffhq_quad(landmarks)[3] - ffhq_quad(landmarks)[0]))
    sigma = 1.5 * qsize / output_size  # 1.5 px in the output
    ys, xs = np.mgrid[:photo_size, :photo_size]
    photo = np.zeros((photo_size, photo_size))
    for x, y in features(landmarks):
        photo += 255 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2))
    backends[("dlib", None)] = fixed_backend(landmarks)

    face = align_face(photo.astype(np.uint8), output_size=output_size, detector="dlib", transform_size=256)

    expected = features(face.landmarks_in_crop())
    np.testing.assert_allclose(expected, expected_features(landmarks, output_size), atol=1e-9)
    for point in expected:
        np.testing.assert_allclose(blob_centroid(face.image, point, radius=6), point, atol=0.25)
    assert face.image.size == (output_size, output_size) and face.image.mode == "RGB"
    assert face.face_size == pytest.approx(qsize)


def _recipe_crop(photo: Image.Image, landmarks: np.ndarray, output_size: int, transform_size: int) -> Image.Image:
    """The FFHQ recipe (NVlabs ffhq-dataset, `recreate_aligned_images`) written out step by step from its
    description, independently of toonlib, for photos that need no padding: square from the eyes and
    mouth, integer shrink (the quad divided by the factor), crop with a border, QUAD warp, resize."""
    eye_l, eye_r, mouth = features(landmarks)
    eye_mid = (eye_l + eye_r) / 2
    e, m = eye_r - eye_l, mouth - eye_mid
    half = e - np.array([-m[1], m[0]])
    half = half / np.linalg.norm(half) * max(2.0 * np.linalg.norm(e), 1.8 * np.linalg.norm(m))
    down = np.array([-half[1], half[0]])
    centre = eye_mid + 0.1 * m
    quad = np.stack([centre - half - down, centre - half + down, centre + half + down, centre + half - down])
    qsize = 2 * np.linalg.norm(half)
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        photo = photo.resize((int(np.rint(photo.width / shrink)), int(np.rint(photo.height / shrink))),
                             Image.Resampling.LANCZOS)
        quad, qsize = quad / shrink, qsize / shrink
    border = max(int(np.rint(qsize * 0.1)), 3)
    x0, y0 = np.floor(quad.min(axis=0)).astype(int)
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
    outside = max(border - x0, border - y0, x1 + border - photo.width, y1 + border - photo.height)
    assert outside <= border - 4, "this photo would need the padding branch"
    box = (max(x0 - border, 0), max(y0 - border, 0), min(x1 + border, photo.width), min(y1 + border, photo.height))
    photo, quad = photo.crop(box), quad - box[:2]
    photo = photo.transform((transform_size, transform_size), Image.Transform.QUAD, (quad + 0.5).flatten(),
                            Image.Resampling.BILINEAR)
    return photo.resize((output_size, output_size), Image.Resampling.LANCZOS)


def test_large_photo_shrink_matches_the_recipe_pixel_for_pixel(hopper, backends):
    """A photo 4x larger than the face needs takes the integer-shrink path; the crop equals the recipe's."""
    large = Image.fromarray(hopper).resize((hopper.shape[1] * 4, hopper.shape[0] * 4), Image.Resampling.BICUBIC)
    landmarks = align._get_backend("dlib", None)(np.asarray(hopper), None)[0][1] * 4 + 1.5
    backends[("dlib", None)] = fixed_backend(landmarks)
    output_size, transform_size = 128, 512
    assert int(np.floor(np.hypot(*(ffhq_quad(landmarks)[3] - ffhq_quad(landmarks)[0])) / output_size * 0.5)) >= 2

    face = align_face(large, output_size=output_size, detector="dlib", transform_size=transform_size)

    expected = np.asarray(_recipe_crop(large, landmarks, output_size, transform_size))
    np.testing.assert_array_equal(np.asarray(face.image), expected)


def test_quad_corner_order_and_transform():
    """quad = top-left, bottom-left, bottom-right, top-right; the crop's corners map onto it."""
    landmarks = synthetic_landmarks([40.0, 50.0], [60.0, 50.0], [42.0, 70.0], [58.0, 70.0])
    quad = ffhq_quad(landmarks)
    (left, top), (right, bottom) = quad.min(0), quad.max(0)
    np.testing.assert_allclose(quad, [[left, top], [left, bottom], [right, bottom], [right, top]])
    matrix = crop_to_photo_transform(quad, 10)
    edges = np.array([[-0.5, -0.5, 1], [-0.5, 9.5, 1], [9.5, 9.5, 1], [9.5, -0.5, 1]])  # crop corners
    np.testing.assert_allclose((edges @ matrix.T)[:, :2], quad)


# ----------------------------------------------------------------------------------------------
# Real photos with dlib


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
        return np.asarray(img.convert("RGB"))


def dlib_landmarks(image) -> np.ndarray:
    """68 dlib landmarks of the only face in `image`."""
    faces = align._get_backend("dlib", None)(np.asarray(image), None)
    assert len(faces) == 1
    return faces[0][1]


def test_dlib_finds_a_small_face_in_a_photo_over_1024_px(astronaut):
    """dlib upsampled only photos up to 1024 px, so a ~50 px face in a 1100 x 800 photo was "no face" (audit)."""
    small = Image.fromarray(astronaut).resize((200, 200), Image.Resampling.LANCZOS)
    photo = Image.new("RGB", (1100, 800), (128, 128, 128))
    photo.paste(small, (400, 300))
    face = align_face(photo, detector="dlib", output_size=64, transform_size=128)
    x, y = face.quad.mean(axis=0)
    assert 400 < x < 600 and 300 < y < 500, (x, y)


@pytest.mark.parametrize("photo", ["astronaut", "hopper"])
def test_real_photo_matches_ffhq_template(photo, request):
    """Landmarks found again in the aligned crop sit where the recipe puts them, and where `landmarks_in_crop` says."""
    face = align_face(request.getfixturevalue(photo), detector="dlib", **FAST)
    found = dlib_landmarks(face.image)

    np.testing.assert_allclose(features(found), expected_features(face.landmarks, SIZE), atol=3.0)
    # the recipe applied to the crop's own landmarks gives (about) the whole crop; its side is 4x the
    # eye distance, so it carries 4x dlib's noise on the eyes (a few percent)
    quad = ffhq_quad(found)
    np.testing.assert_allclose(quad.mean(0), [(SIZE - 1) / 2] * 2, atol=2.0)
    assert np.hypot(*(quad[3] - quad[0])) == pytest.approx(SIZE, rel=0.06)
    # landmarks_in_crop agrees with the new detection, point by point (the jaw line is dlib's noisiest part)
    error = np.linalg.norm(found - face.landmarks_in_crop(), axis=1)
    assert error.mean() < 3.0 and error.max() < 6.0, (error.mean(), error.max())


def test_paste_back_with_pil(astronaut):
    """The crop, warped back with the documented Pillow recipe, lands on the photo's own pixels."""
    face = align_face(astronaut, detector="dlib", **FAST)
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    data = (half @ np.linalg.inv(face.crop_to_photo()) @ np.linalg.inv(half))[:2].ravel()
    pasted = face.image.transform((512, 512), Image.Transform.AFFINE, tuple(data), Image.Resampling.BILINEAR)
    x0, y0 = np.rint(face.quad.min(0) + 20).astype(int)
    x1, y1 = np.rint(face.quad.max(0) - 20).astype(int)
    region = (slice(max(y0, 0), min(y1, 512)), slice(max(x0, 0), min(x1, 512)))
    diff = np.abs(np.asarray(pasted, dtype=float)[region] - astronaut[region])
    assert diff.mean() < 6.0, diff.mean()


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation(orientation, astronaut, tmp_path):
    """A JPEG stored sideways with an EXIF Orientation tag gives the crop of the upright photo."""
    upright = Image.fromarray(astronaut)
    stored = upright.transpose(Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "sideways.jpg"
    stored.save(path, quality=100, subsampling=0, exif=exif.tobytes())  # near-lossless, same under rotation
    reference = tmp_path / "upright.jpg"
    upright.save(reference, quality=100, subsampling=0)

    pixel_diff = np.abs(np.asarray(read_image(path), dtype=float) - np.asarray(read_image(reference), dtype=float))
    assert pixel_diff.mean() < 0.5, pixel_diff.mean()
    face = align_face(path, detector="dlib", **FAST)
    expected = align_face(reference, detector="dlib", **FAST)
    # dlib's landmarks move by up to a pixel between two nearly equal photos, which moves the crop a little
    # (a wrongly oriented photo gives a mean difference of tens)
    np.testing.assert_allclose(face.landmarks, expected.landmarks, atol=1.5)
    diff = np.abs(np.asarray(face.image, dtype=float) - np.asarray(expected.image, dtype=float))
    assert diff.mean() < 5.0, diff.mean()


@pytest.mark.parametrize("photo", ["coffee", "gray"])
def test_no_face(photo):
    from skimage import data

    image = data.coffee() if photo == "coffee" else np.full((200, 300), 128, np.uint8)
    with pytest.raises(NoFaceError, match="no face was found in the image; use a larger, frontal, well-lit photo"):
        align_face(image, detector="dlib", **FAST)


def test_no_face_in_a_photo_shrunk_for_the_search_says_how_large_the_face_must_be(monkeypatch):
    """A 9000 x 9000 photo with a 175 px face was told to show a face "at least ~100 px wide": it is searched for
    at 2048 x 2048, where that face is 40 px."""
    from toonlib import align

    monkeypatch.setattr(align, "DETECT_MAX_PIXELS", 100 * 50)  # a 400 x 200 photo is searched at 100 x 50
    with pytest.raises(NoFaceError) as error:
        align_face(np.full((200, 400), 128, np.uint8), detector="dlib", **FAST)
    assert str(error.value) == ("no face was found in the image; use a larger, frontal, well-lit photo in which the "
                                "face is at least ~100 px wide, the head upright; faces are searched for in a copy "
                                "shrunk to 100 x 50 "
                                "px, so in this 400 x 200 photo that is ~400 px: crop the photo around the face")


@pytest.mark.parametrize("size", [0, -8, 64.0, 100_000])  # 100000: a 30 GB crop, which `toonlib align --size` refused
def test_bad_output_size(size, monkeypatch):
    from toonlib import align

    monkeypatch.setattr(align, "read_image", lambda *args: pytest.fail("photo read before the size check"))
    for function in (align_face, align_faces):  # 0 was a ZeroDivisionError after the face search
        with pytest.raises(ValueError, match=f"output_size is the crop's width in px .* from 1 to 8192; got {size!r}"):
            function(np.zeros((64, 64, 3), np.uint8), output_size=size, detector="dlib")


def test_two_faces(astronaut, hopper):
    small = Image.fromarray(hopper).resize((230, 270), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (512 + 240, 512), (128, 128, 128))
    canvas.paste(Image.fromarray(astronaut), (0, 0))
    canvas.paste(small, (512 + 5, 120))

    faces = align_faces(canvas, detector="dlib", **FAST)
    assert len(faces) == 2
    assert faces[0].face_size > faces[1].face_size
    assert faces[0].landmarks[:, 0].max() < 512 < faces[1].landmarks[:, 0].min()  # astronaut, then Hopper
    largest = align_face(canvas, detector="dlib", **FAST)
    np.testing.assert_array_equal(np.asarray(largest.image), np.asarray(faces[0].image))
    second = align_face(canvas, detector="dlib", face_index=1, **FAST)
    np.testing.assert_array_equal(np.asarray(second.image), np.asarray(faces[1].image))
    with pytest.raises(IndexError, match="face_index=5 is out of range: 2 faces found"):
        align_face(canvas, detector="dlib", face_index=5, **FAST)


def test_a_face_index_that_is_not_a_whole_number_is_named_as_such():
    """face_index=1.0 was "out of range: 2 faces found", although a second face was there."""
    for bad in (1.0, "1", True):
        with pytest.raises(ValueError, match=rf"face_index must be a whole number .* or None, got {bad!r}$"):
            face_position(bad, 2)
    assert face_position(np.int64(-1), 2) == -1 and face_position(None, 2) == 0
    with pytest.raises(IndexError, match="face_index=2 is out of range: 2 faces found") as beyond:
        face_position(2, 2)
    # typed, with what was asked and found: the command line says it in --face's words from these, not from the text
    assert isinstance(beyond.value, FaceIndexError) and (beyond.value.face_index, beyond.value.count) == (2, 2)


def test_an_aligned_face_prints_on_one_line():
    """Its dataclass repr printed the 68 landmarks and the quad, 1,700 characters over 70 lines, in a REPL."""
    quad = np.array([[100.0, 40.0], [100.0, 240.0], [300.0, 240.0], [300.0, 40.0]])
    face = AlignedFace(Image.new("RGB", (64, 64)), np.zeros((68, 2)), quad, face_size=200.0)
    assert repr(face) == "AlignedFace(image=64x64 RGB, face_size=200.0 px, centre=(200.0, 140.0) in the photo)"


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


INPUTS = {
    "gray": lambda a: Image.fromarray(a).convert("L"),
    "rgba": lambda a: Image.fromarray(a).convert("RGBA"),
    "palette": lambda a: Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE),
    "16-bit": lambda a: Image.fromarray(np.asarray(Image.fromarray(a).convert("L"), np.uint16) * 257),
    "array-gray": lambda a: a.mean(axis=2).astype(np.uint8),
    "array-rgba": lambda a: np.dstack([a, np.full(a.shape[:2], 255, np.uint8)]),
    "array-uint16": lambda a: a.astype(np.uint16) * 257,
    "array-float": lambda a: a / 255.0,
    "bytes": lambda a: _png_bytes(Image.fromarray(a)),
}


@pytest.mark.parametrize("kind", INPUTS)
def test_input_kinds(kind, astronaut):
    reference = align_face(astronaut, detector="dlib", **FAST)
    source = INPUTS[kind](astronaut)
    if kind == "16-bit":
        assert source.mode == "I;16"
    face = align_face(source, detector="dlib", **FAST)
    assert face.image.mode == "RGB" and face.image.size == (SIZE, SIZE)
    assert np.abs(face.landmarks - reference.landmarks).mean() < 2.0


def test_path_input_and_small_face_warning(astronaut, tmp_path):
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    with pytest.warns(UserWarning, match=r"crop is 174 px wide in the photo but the output is 1024 px"):
        face = align_face(str(path), output_size=1024, detector="dlib", transform_size=1024)
    assert face.image.size == (1024, 1024)


def test_huge_photo_detects_on_a_smaller_copy(astronaut, backends, monkeypatch):
    """Detection runs on a copy of at most DETECT_MAX_PIXELS; landmarks come from the full photo."""
    dlib_backend = align._get_backend("dlib", None)
    calls = []

    def recording(image, boxes):
        calls.append((image.shape, boxes is None))
        return dlib_backend(image, boxes)

    backends[("dlib", None)] = recording
    reference = align_face(astronaut, detector="dlib", **FAST)
    calls.clear()
    monkeypatch.setattr(align, "DETECT_MAX_PIXELS", 256 * 256)
    face = align_face(astronaut, detector="dlib", **FAST)
    assert calls == [((256, 256, 3), True), ((512, 512, 3), False)]
    assert np.abs(face.landmarks - reference.landmarks).mean() < 1.5


def test_a_face_in_a_panorama_is_found_at_its_size():
    """A 6000 x 800 panorama was shrunk to 2048 px wide for detection, its 270 px face to 90 px, too small for dlib:
    "no face was found". The detection copy is now bounded by its pixel count, and the face keeps its size."""
    from skimage import data

    face_photo = Image.fromarray(data.astronaut()).resize((800, 800), Image.Resampling.LANCZOS)
    panorama = Image.new("RGB", (6000, 800), (120, 130, 140))
    panorama.paste(face_photo, (2600, 0))
    face = align_face(panorama, detector="dlib", **FAST)
    expected = align_face(face_photo, detector="dlib", **FAST)
    error = np.linalg.norm(face.landmarks - (expected.landmarks + [2600, 0]), axis=1)  # boxes found a little apart
    assert error.mean() < 1.5 and error.max() < 5.0, (error.mean(), error.max())
    assert np.abs(np.asarray(face.image, dtype=float) - np.asarray(expected.image, dtype=float)).mean() < 6.0


def test_faces_are_found_right_from_several_threads_at_once(astronaut, hopper):
    """The landmark backends are shared: two threads in dlib's detector at once crashed the process (a segfault, a
    Jupyter kernel gone) or returned another photo's landmarks, 128-301 px off, without an error."""
    from concurrent.futures import ThreadPoolExecutor

    photos = [astronaut, hopper] * 8
    alone = [align_face(photo, detector="dlib", **FAST).landmarks for photo in photos[:2]]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda photo: align_face(photo, detector="dlib", **FAST).landmarks, photos))
    assert all(np.array_equal(found, alone[i % 2]) for i, found in enumerate(together))


@pytest.mark.parametrize("turns", [1, 3, 2])
def test_a_face_turned_without_exif_is_found_and_cropped_upright(turns, astronaut):
    """A photo held sideways (or upside down) whose EXIF orientation is lost: "no face was found", as the
    detectors find upright faces only. Now the turned copies are searched too, and the crop comes out upright."""
    turned = np.rot90(astronaut, turns)
    face = align_face(turned, detector="dlib", **FAST)
    expected = align_face(astronaut, detector="dlib", **FAST)
    assert np.abs(np.asarray(face.image, dtype=float) - np.asarray(expected.image, dtype=float)).mean() < 1.0
    # the landmarks are where the face is in the turned photo: its pixels there are the upright photo's
    rows, cols = np.rint(face.landmarks[:, ::-1]).astype(int).T
    up_rows, up_cols = np.rint(expected.landmarks[:, ::-1]).astype(int).T
    np.testing.assert_array_equal(turned[rows, cols], astronaut[up_rows, up_cols])


# ----------------------------------------------------------------------------------------------
# Reading images


def test_read_image_conversions():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = [10, 20, 30, 255]  # opaque; the other pixels are transparent -> white
    np.testing.assert_array_equal(np.asarray(read_image(rgba))[:, :, 0], [[10, 255], [255, 255]])
    sixteen = Image.fromarray(np.array([[0, 257 * 100], [65535, 128]], np.uint16))
    assert sixteen.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(read_image(sixteen))[:, :, 1], [[0, 100], [255, 0]])
    np.testing.assert_array_equal(np.asarray(read_image(np.array([[0.0, 0.5]])))[0, :, 2], [0, 128])
    np.testing.assert_array_equal(np.asarray(read_image(np.array([[0.0, 200.0]])))[0, :, 2], [0, 200])
    palette = Image.new("P", (1, 1), 3)
    palette.info["transparency"] = 3
    assert read_image(palette).getpixel((0, 0)) == (255, 255, 255)
    assert read_image(Image.new("LA", (1, 1), (50, 255))).getpixel((0, 0)) == (50, 50, 50)
    assert read_image(np.zeros((3, 4, 1), np.uint8)).size == (4, 3)


def test_unreadable_inputs(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match=f"^cannot read '{broken}' as an image: it is in no image format "
                                             r"toonlib reads \(JPEG, PNG, "):  # the path once, not Pillow's twice
        read_image(broken)
    with pytest.raises(ImageReadError, match=r"^cannot read '.*missing.png' as an image: there is no such file$"):
        align_face(str(tmp_path / "missing.png"))
    with pytest.raises(ImageReadError, match=r"^cannot read '.*' as an image: it is a folder$"):
        read_image(tmp_path)
    with pytest.raises(ImageReadError, match=r"image data \(5 bytes\)"):
        read_image(b"12345")
    with pytest.raises(ImageReadError, match="shape"):
        read_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(TypeError, match="got int"):
        read_image(5)
    with pytest.raises(ImageReadError, match=r"'https://example.com/me.jpg' is a web address: .* download it first and "
                                             "give the file"):
        read_image("https://example.com/me.jpg")  # was: "No such file or directory: 'https:/example.com/me.jpg'"
    assert issubclass(ImageReadError, ValueError) and issubclass(NoFaceError, ValueError)


def test_a_float_array_in_a_generators_range_is_refused_not_darkened():
    """A [-1, 1] array (a rendered image as NumPy) was read as [0, 1]: its dark half clipped to black, no word said."""
    with pytest.raises(ImageReadError, match=r"goes down to -1.00: for values in \[-1, 1\] .* pass \(array \+ 1\) / 2"):
        read_image(np.linspace(-1, 1, 48).reshape(4, 4, 3))
    np.testing.assert_array_equal(np.asarray(read_image(np.array([[-0.05, 0.5]])))[0, :, 0], [0, 128])  # ringing


def test_a_photo_over_pillows_pixel_limit_is_told_what_to_do(monkeypatch):
    """A 200-megapixel phone photo, over Pillow's 179, was refused as a "decompression bomb DOS attack" and no more;
    one of 100 megapixels, read, got Pillow's warning, naming no file."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 179 MP would be a large test; the check is the same
    with pytest.raises(ImageReadError, match=r"^cannot read image data \(\d+ bytes\): it is 400 pixels, more than "
                                             r"Pillow opens in one image \(200 at most\): downscale it, or, for a file "
                                             r"you trust, set PIL.Image.MAX_IMAGE_PIXELS = None before reading it$"):
        read_image(_png_bytes(Image.new("L", (20, 20))))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10**6)
    with pytest.raises(ImageReadError, match=r"it is 5 megapixels, more than Pillow opens in one image \(2 at most\)"):
        read_image(_png_bytes(Image.new("L", (2500, 2000))))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # over the limit, under twice it: read, and nothing said without the file
        assert read_image(_png_bytes(Image.new("L", (1200, 1000)))).size == (1200, 1000)


@pytest.mark.parametrize("detector", ["dlib", "auto"])
def test_a_device_that_is_not_here_is_refused_whatever_the_detector(detector):
    """device='gpu' (a typo) was ignored by dlib, and made detector='auto' say "face-alignment is not usable" and
    fall back on dlib."""
    with pytest.raises(ValueError, match="device='gpu' is not a torch device"):
        align_face(np.zeros((8, 8, 3), np.uint8), detector=detector, device="gpu")


def test_inputs_read_image_does_not_take_are_told_what_to_pass(tmp_path):
    """A tensor, a file object, a list or a channels-first array was refused without a word on what to do."""
    import torch

    with pytest.raises(TypeError, match=r"got Tensor: for an image tensor \[3, H, W\] in \[-1, 1\] .*to_pil\(tensor\) "
                                        r".*, for one in \[0, 1\] \(torchvision's to_tensor\) "
                                        r"to_pil\(tensor \* 2 - 1\)"):
        read_image(torch.zeros(3, 8, 8))  # torchvision's to_tensor in [0, 1] was not said: its to_pil was pale
    with pytest.raises(TypeError, match=r"pass to_pil\(tensor\[0\]\)"):  # a batch of one
        read_image(torch.zeros(1, 3, 8, 8))
    from tiny import tiny_generator

    from toonlib import project
    from toonlib.pipeline import ToonifyResult

    picture = Image.new("RGB", (8, 8))
    result = ToonifyResult(photo=picture, aligned=picture, landmarks=np.zeros((68, 2)), quad=np.zeros((4, 2)),
                           w=torch.zeros(1, 8, 32), reconstruction=None, toon=picture, losses=np.zeros(0))
    # a result toonified again: no hint, where an AlignedFace got one; then .photo first, which project and the
    # encoders do not take (encode(result.photo) gave other codes without a word)
    crop_or_photo = (r"got ToonifyResult: pass its \.aligned \(ToonifyResult\.aligned, the FFHQ crop: what project and "
                     r"the encoders take\) or \.photo \(ToonifyResult\.photo, the photo it was made from: what toonify "
                     r"and align_face take\)")
    with pytest.raises(TypeError, match=crop_or_photo):
        read_image(result)
    target = crop_or_photo.replace("got ToonifyResult", r"ToonifyResult as a target image .*")
    with pytest.raises(TypeError, match=target):
        project(tiny_generator(0), result)
    with pytest.raises(TypeError, match=r"got BytesIO: pass the file's path, or its bytes \(f.read\(\)\)"):
        read_image(io.BytesIO(_png_bytes(Image.new("RGB", (4, 4)))))
    with pytest.raises(TypeError, match="got list of 2: this reads one image; pass each item on its own"):
        align_face(["a.jpg", "b.jpg"])
    with pytest.raises(ImageReadError, match=r"got shape \(3, 8, 6\): channels first\? use array.transpose\(1, 2, 0\)"):
        read_image(np.zeros((3, 8, 6), np.uint8))


def test_a_path_from_the_home_folder_reads_as_a_shell_would(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    Image.new("RGB", (8, 6), "red").save(tmp_path / "me.png")
    assert read_image("~/me.png").size == (8, 6)  # was: No such file or directory: '~/me.png'


# ----------------------------------------------------------------------------------------------
# Backends


class StubFaceAlignment:
    """Stands in for face_alignment.FaceAlignment: dlib's landmarks, in face-alignment's formats."""

    instances: ClassVar[list] = []

    def __init__(self, landmarks_type, network_size=4, device="cuda", flip_input=True, face_detector="sfd",
                 face_detector_kwargs=None, verbose=False, compile=True):  # face-alignment 1.5's signature
        self.landmarks_type, self.images = landmarks_type, []
        self.kwargs = {"device": device, "flip_input": flip_input, "face_detector": face_detector, "compile": compile}
        StubFaceAlignment.instances.append(self)

    def get_landmarks_from_image(self, image, detected_faces=None, return_bboxes=False):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        self.images.append(image.shape)
        faces = align._get_backend("dlib", None)(image, None if detected_faces is None else np.array(detected_faces))
        landmarks = [lm.astype(np.float32) for _, lm in faces]  # FAN: float32 (x, y), 0-based pixels
        boxes = [np.append(box, 0.99) for box, _ in faces]  # SFD: x0, y0, x1, y1, score
        return (landmarks, None, boxes) if return_bboxes else landmarks


@pytest.fixture
def fa_weights(tmp_path, monkeypatch):
    """face-alignment's two weights files in place (contents unused: FaceAlignment is stubbed), so toonlib's
    fetch finds them in torch hub's folder and downloads nothing."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    for name in ("s3fd-619a316812.pth", "2DFAN4-11f355bf06.pth.tar"):
        (folder / name).write_bytes(b"stub")


def test_face_alignment_backend_wiring(astronaut, backends, monkeypatch, fa_weights):
    """The face-alignment backend (network stubbed with dlib's landmarks) gives exactly the dlib crop."""
    face_alignment = importlib.import_module("face_alignment")
    monkeypatch.setattr(face_alignment, "FaceAlignment", StubFaceAlignment)
    StubFaceAlignment.instances.clear()

    face = align_face(astronaut, detector="face_alignment", device="cpu", **FAST)
    align_face(astronaut, detector="face_alignment", device="cpu", **FAST)  # cached: no second instance

    (stub,) = StubFaceAlignment.instances
    assert stub.landmarks_type == face_alignment.LandmarksType.TWO_D
    assert stub.kwargs == {"device": "cpu", "flip_input": False, "face_detector": "sfd", "compile": False}
    assert stub.images == [(512, 512, 3)] * 2
    expected = align_face(astronaut, detector="dlib", **FAST)
    np.testing.assert_array_equal(np.asarray(face.image), np.asarray(expected.image))
    np.testing.assert_allclose(face.landmarks, expected.landmarks, atol=1e-4)


def test_auto_falls_back_to_dlib(astronaut, backends, monkeypatch, fa_weights):
    face_alignment = importlib.import_module("face_alignment")

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(face_alignment, "FaceAlignment", offline)
    with pytest.warns(UserWarning, match=r"face-alignment is not usable \(URLError: .*no network.*using dlib"):
        face = align_face(astronaut, **FAST)
    np.testing.assert_array_equal(np.asarray(face.image), np.asarray(align_face(astronaut, detector="dlib",
                                                                                  **FAST).image))
    with pytest.raises(LandmarkBackendError, match=r"face-alignment is not usable \(URLError: .*no network") as info:
        align_face(astronaut, detector="face_alignment", **FAST)
    assert "pip install" not in str(info.value)  # face-alignment is installed: installing it is not the fix


def test_no_backend_says_what_to_install(backends, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name in ("face_alignment", "dlib")
                        else find_spec(name, *args))  # neither package installed
    with pytest.raises(LandmarkBackendError, match='pip install face-alignment.*pip install "toonlib\\[dlib\\]"'):
        align_face(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="detector must be"):
        align_face(np.zeros((8, 8, 3), np.uint8), detector="mtcnn")


def _hiding(monkeypatch, *modules: str) -> None:
    """As if `modules` were not installed (`importlib.util.find_spec` finds none of them)."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name in modules
                        else find_spec(name, *args))


def test_require_detector_says_what_dlib_lacks_with_the_extras_install_line(monkeypatch):
    """`require_detector` (what `toonlib toonify` / `app` and the notebooks call before any model loads) refuses
    'dlib' where it is not installed; dlib without face_recognition_models was said as "dlib is not installed", and the
    install line named the packages, in single quotes elsewhere, where README says `pip install "toonlib[dlib]"`
    (forty-second session's audit)."""
    from toonlib.align import require_detector

    _hiding(monkeypatch, "dlib")
    with pytest.raises(LandmarkBackendError) as info:
        require_detector("dlib")
    assert str(info.value) == "dlib is not installed (no module 'dlib'): `pip install \"toonlib[dlib]\"`"
    require_detector("auto")  # built at the first face, falling back to dlib: nothing to refuse now
    monkeypatch.undo()
    _hiding(monkeypatch, "face_recognition_models")
    with pytest.raises(LandmarkBackendError) as info:
        require_detector("dlib")
    assert str(info.value).startswith("dlib's 68-point landmark model is not installed (no module "
                                      "'face_recognition_models'): `pip install \"toonlib[dlib]\"`")
    with pytest.raises(ValueError, match="detector must be"):
        require_detector("mtcnn")


def test_no_backend_gives_the_dlib_advice_once(backends, monkeypatch):
    """face-alignment's weights offline and dlib not installed: its message ended with the advice to install dlib,
    and dlib's error gave it again (forty-second session's audit)."""
    def offline(self, device):
        summary = "face-alignment is not usable: its weights are not in hub and could not be downloaded"
        raise LandmarkBackendError(f"{summary} (copy them there); {align._dlib_advice()}", summary)

    monkeypatch.setattr(align._FaceAlignmentBackend, "__init__", offline)
    _hiding(monkeypatch, "dlib")
    with pytest.raises(LandmarkBackendError) as info:
        align_face(np.zeros((8, 8, 3), np.uint8))
    message = str(info.value)
    assert message.startswith("no face landmark backend is usable: face-alignment is not usable: its weights")
    assert message.count("toonlib[dlib]") == 1 and message.count("offline") <= 1, message


def test_the_face_alignment_fallback_is_decided_once_for_no_device_and_the_device_it_means(backends, monkeypatch):
    """README's Python block (`Toonifier()` passes 'cpu', `toonlib.align_face` None) printed face-alignment's long
    fallback warning twice: None and 'cpu' were two backends, each deciding 'auto' again, with a download attempt of
    face-alignment's weights (forty-third session's audit)."""
    import torch

    import toonlib
    from toonlib.messages import ToonlibWarning

    tries = []

    def offline(self, device):
        tries.append(device)
        summary = "face-alignment is not usable: its weights are not in hub and could not be downloaded"
        raise LandmarkBackendError(f"{summary} (copy them there); {align._dlib_advice()}", summary)

    monkeypatch.setattr(align._FaceAlignmentBackend, "__init__", offline)
    meant = "cuda:0" if torch.cuda.is_available() else "cpu"
    with pytest.warns(ToonlibWarning, match="using dlib's landmarks instead") as said:
        for device in (None, meant, None):
            with pytest.raises(NoFaceError):
                toonlib.align_face(np.zeros((64, 64, 3), np.uint8), device=device)
    assert len([w for w in said if "dlib's landmarks instead" in str(w.message)]) == 1 and len(tries) == 1
