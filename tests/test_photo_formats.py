"""Photos as users' devices and downloads make them: HEIC (iPhones), AVIF, animated files, CMYK and 16-bit files,
EXIF orientations, wrong suffixes, and the files people pick instead of a photo, read through `read_image`.

Each file is written here from scikit-image's astronaut (HEIC with pillow-heif, a toonlib dependency). A photo is
either read as the upright RGB astronaut or refused with a one-line message that says what to do.
"""
from __future__ import annotations

import contextlib
import gc
import io
import pickle
import re
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toonlib.align import NoFaceError, align_face
from toonlib.images import ImageReadError, read_image
from toonlib.pipeline import photos_in


@pytest.fixture(scope="module")
def upright() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def difference(image: Image.Image, reference: Image.Image) -> float:
    """Mean absolute pixel difference (0 .. 255) of two RGB images of one size."""
    assert image.mode == "RGB" and image.size == reference.size, (image.mode, image.size)
    return float(np.abs(np.asarray(image, dtype=float) - np.asarray(reference, dtype=float)).mean())


def exif_orientation(orientation: int) -> bytes:
    """EXIF data holding an Orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def write_heic(image: Image.Image, path: Path, **options) -> Path:
    import pillow_heif

    pillow_heif.from_pillow(image).save(path, quality=90, **options)
    return path


# ----------------------------------------------------------------------------------------------
# HEIC: read through pillow-heif, and named when it is not installed


_READ_HEIC = """
import sys
if {hide}:
    sys.modules["pillow_heif"] = None  # as if not installed
from toonlib.images import ImageReadError, read_image
read_image(sys.argv[1]).save(sys.argv[2])  # a JPEG reads either way
for heic, out in zip(sys.argv[3::2], sys.argv[4::2]):
    try:
        read_image(heic).save(out)
    except ImageReadError as exc:
        print(exc)
"""


@pytest.mark.parametrize("hide", [False, True], ids=["pillow-heif", "without-pillow-heif"])
def test_iphone_heic_photos_are_read_or_named_with_what_to_do(hide, upright, tmp_path):
    """An iPhone's HEIC photo was "in no image format toonlib reads", or read only in a process where imageio's
    Pillow plugin had happened to register pillow-heif. toonlib now registers it itself, in a fresh process, EXIF
    orientation applied; without pillow-heif the photo is named as HEIC, saying what to do."""
    heic = write_heic(upright, tmp_path / "IMG_0001.HEIC")
    sideways = write_heic(upright.transpose(Image.Transpose.ROTATE_90), tmp_path / "IMG_0002.heic",
                          exif=exif_orientation(6))  # stored sideways, shown upright
    upright.save(tmp_path / "photo.jpg", quality=95)
    args = [tmp_path / "photo.jpg", tmp_path / "photo.png", heic, tmp_path / "1.png", sideways, tmp_path / "2.png"]
    result = subprocess.run([sys.executable, "-c", _READ_HEIC.format(hide=hide), *map(str, args)],
                            capture_output=True, text=True, check=True)
    assert difference(Image.open(tmp_path / "photo.png"), upright) < 3.0
    if hide:
        lines = result.stdout.splitlines()
        assert len(lines) == 2, result.stdout
        for path, line in zip((heic, sideways), lines):
            assert line == (f"cannot read '{path}' as an image: it is a HEIC/HEIF photo (iPhones' format), which "
                            "toonlib reads with pillow-heif: `pip install pillow-heif`, or export the photo as JPEG")
    else:
        assert result.stdout == "", result.stdout
        for out in ("1.png", "2.png"):
            assert difference(Image.open(tmp_path / out), upright) < 3.0


def test_a_heic_photo_cut_short_is_said_to_be_damaged(upright, tmp_path):
    """With pillow-heif installed, a HEIC cut short in its first bytes (a download that stopped) said to
    `pip install pillow-heif` (thirty-fourth session's audit)."""
    whole = write_heic(upright, tmp_path / "whole.heic").read_bytes()
    (tmp_path / "cut.heic").write_bytes(whole[:200])
    with pytest.raises(ImageReadError, match=r"it is a HEIC/HEIF photo that cannot be read: damaged or cut short \(a "
                                             r"download or copy that did not finish\?\); copy or download it again"):
        read_image(tmp_path / "cut.heic")


def test_a_heic_photo_aligns_like_the_jpeg(upright, tmp_path):
    heic = write_heic(upright, tmp_path / "me.heic")
    face = align_face(heic, detector="dlib", output_size=256, transform_size=512)
    expected = align_face(upright, detector="dlib", output_size=256, transform_size=512)
    assert np.abs(face.landmarks - expected.landmarks).mean() < 1.5


def test_avif_is_named_with_what_to_do_where_pillow_does_not_read_it(upright, tmp_path, monkeypatch):
    """Pillow reads AVIF from 11.3 on (and here); an older one said "in no image format toonlib reads"."""
    path = tmp_path / "photo.avif"
    upright.save(path, quality=90)
    assert difference(read_image(path), upright) < 3.0
    Image.init()  # every plugin registered in Pillow's own list first, none into the one patched here
    monkeypatch.setattr(Image, "ID", [name for name in Image.ID if name != "AVIF"])  # a Pillow without AVIF
    with pytest.raises(ImageReadError, match=r"it is an AVIF image, which this Pillow does not read: "
                                             r"`pip install -U pillow` \(11.3 or later reads AVIF\), or export it as "
                                             "JPEG$"):
        read_image(path)


def test_a_folder_of_iphone_photos_is_not_empty(tmp_path):
    """`toonlib toonify FOLDER` of photos copied from an iPhone said "no photos in the folder". GIFs, which the README
    lists among the photos read, were passed over in folders without a word."""
    for name in ("IMG_0001.HEIC", "b.heif", "c.avif", "d.jpg", "e.gif", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in photos_in(tmp_path)] == ["IMG_0001.HEIC", "b.heif", "c.avif", "d.jpg", "e.gif"]


# ----------------------------------------------------------------------------------------------
# Files read as the upright photo


def _jpeg_with_orientation(image: Image.Image, orientation: int) -> bytes:
    """A JPEG stored so that its EXIF orientation turns it back into `image`."""
    stored = {1: image, 2: image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
              3: image.transpose(Image.Transpose.ROTATE_180), 4: image.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
              5: image.transpose(Image.Transpose.TRANSPOSE), 6: image.transpose(Image.Transpose.ROTATE_90),
              7: image.transpose(Image.Transpose.TRANSVERSE), 8: image.transpose(Image.Transpose.ROTATE_270)}
    return _encoded(stored[orientation], "JPEG", quality=95, exif=exif_orientation(orientation))


def _encoded(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _png16(image: Image.Image) -> bytes:
    """A 16-bit RGB PNG (Pillow writes none), its values the 8-bit ones times 257."""
    rows = b"".join(b"\x00" + row.tobytes() for row in np.asarray(image, dtype=">u2") * 257)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", image.width, image.height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _animated(image: Image.Image, image_format: str) -> bytes:
    """An animation whose first frame is `image` and whose second is black."""
    return _encoded(image, image_format, save_all=True, append_images=[Image.new("RGB", image.size)], duration=100)


PHOTOS = {
    **{f"exif-{o}": (lambda image, o=o: _jpeg_with_orientation(image, o), "jpg") for o in range(1, 9)},
    "exif-png": (lambda image: _encoded(image.transpose(Image.Transpose.ROTATE_90), "PNG",
                                        exif=exif_orientation(6)), "png"),
    "progressive": (lambda image: _encoded(image, "JPEG", quality=95, progressive=True), "jpg"),
    "cmyk-jpeg": (lambda image: _encoded(image.convert("CMYK"), "JPEG", quality=95), "jpg"),
    "16-bit-png": (_png16, "png"),
    "animated-gif": (lambda image: _animated(image, "GIF"), "gif"),
    "animated-webp": (lambda image: _animated(image, "WEBP"), "webp"),
    "png-named-jpg": (lambda image: _encoded(image, "PNG"), "jpg"),
    "no-suffix": (lambda image: _encoded(image, "PNG"), ""),
    "heic-named-jpg": (lambda image: _encoded(image, "HEIF", quality=90), "jpg"),
}


@pytest.mark.parametrize("kind", PHOTOS)
def test_photo_files_read_as_the_upright_rgb_photo(kind, upright, tmp_path):
    """Every EXIF orientation, CMYK colours, 16 bits, an animation's first frame, content over suffix."""
    encode, suffix = PHOTOS[kind]
    path = tmp_path / (f"photo.{suffix}" if suffix else "photo")
    path.write_bytes(encode(upright))
    assert difference(read_image(path), upright) < 4.0  # lossy formats; a turned or miscoloured photo: tens


# ----------------------------------------------------------------------------------------------
# Colour profiles: an iPhone's Display P3 photo, read in sRGB as browsers show it


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _rgb_profile(description: str, red, green, blue, gamma: float = 2.2) -> bytes:
    """An ICC v2 RGB display profile: PCS colourants (D50) of the three primaries and one gamma curve."""
    def xyz(value) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in value)

    text = description.encode() + b"\0"
    tags = {b"desc": b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67),
            b"wtpt": xyz((0.9642, 1.0, 0.8249)), b"rXYZ": xyz(red), b"gXYZ": xyz(green), b"bXYZ": xyz(blue),
            b"rTRC": b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)}
    tags[b"gTRC"] = tags[b"bTRC"] = tags[b"rTRC"]
    return _icc_profile(b"RGB ", tags)


def _gray_profile(gamma: float = 2.2) -> bytes:
    """An ICC v2 grey display profile (a scanner's, an editor's greyscale photo): white point and one gamma curve."""
    text = b"Gray Gamma 2.2\0"
    return _icc_profile(b"GRAY", {b"desc": b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + bytes(78),
                                  b"wtpt": b"XYZ \0\0\0\0" + _s15(0.9642) + _s15(1.0) + _s15(0.8249),
                                  b"kTRC": b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)})


def _icc_profile(colour_space: bytes, tags: dict[bytes, bytes]) -> bytes:
    """An ICC v2 display profile of `colour_space` (4 bytes) holding `tags` (signature -> body)."""
    table, data, offset = [], b"", 128 + 4 + 12 * len(tags)
    for signature, body in tags.items():
        table.append(signature + struct.pack(">II", offset + len(data), len(body)))
        data += body + bytes(-len(body) % 4)
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntr" + colour_space + b"XYZ " + bytes(12)
              + b"acsp" + bytes(24) + struct.pack(">I", 0) + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + bytes(48))
    return header + struct.pack(">I", len(tags)) + b"".join(table) + data


#: Display P3 (the primaries adapted to D50) with a 2.2 gamma: the colour space of iPhones' photos.
DISPLAY_P3 = _rgb_profile("Display P3", (0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419),
                          (0.1571, 0.0666, 0.7841))


def _in_display_p3(image: Image.Image) -> Image.Image:
    """`image`'s colours as Display P3 numbers (what an iPhone stores for them), the profile attached."""
    from PIL import ImageCms

    p3 = ImageCms.profileToProfile(image, ImageCms.createProfile("sRGB"), ImageCms.ImageCmsProfile(io.BytesIO(
        DISPLAY_P3)), renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    p3.info["icc_profile"] = DISPLAY_P3
    return p3


@pytest.fixture(scope="module")
def colours() -> Image.Image:
    """Every hue (across) from grey to fully saturated (down), at 90% brightness: a colour chart."""
    hue = Image.linear_gradient("L").rotate(90).resize((256, 128))
    saturation = Image.linear_gradient("L").resize((256, 128))
    return Image.merge("HSV", (hue, saturation, Image.new("L", (256, 128), 230))).convert("RGB")


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "HEIF", "pil"])
def test_a_display_p3_photo_is_read_in_the_colours_it_shows(image_format, colours, tmp_path):
    """An iPhone photo stores Display P3 numbers: read as sRGB, as before, they came out washed out (a mean
    difference of 10 levels on the colour chart). read_image converts them with the embedded profile."""
    p3 = _in_display_p3(colours)
    assert difference(p3, colours) > 8  # the numbers stored are far from the colours shown
    if image_format == "pil":
        source = p3
    else:
        source = tmp_path / f"photo.{image_format.lower()}"
        if image_format == "HEIF":
            write_heic(p3, source, icc_profile=DISPLAY_P3)
        else:
            p3.save(source, format=image_format, icc_profile=DISPLAY_P3, **({"quality": 95} if
                                                                                 image_format == "JPEG" else {}))
    read = read_image(source)
    assert difference(read, colours) < (0.5 if image_format in ("PNG", "pil") else 2.0)  # rounding, compression


def test_srgb_and_damaged_profiles_keep_the_stored_numbers(upright, tmp_path):
    """An sRGB profile changes nothing (not even by rounding), nor does a transparent P3 image's alpha; a profile
    LittleCMS cannot read is passed over, the numbers read as sRGB, as viewers without colour management do."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    upright.save(tmp_path / "srgb.png", icc_profile=srgb)
    assert np.array_equal(np.asarray(read_image(tmp_path / "srgb.png")), np.asarray(upright))
    upright.save(tmp_path / "damaged.png", icc_profile=DISPLAY_P3[:200])
    assert np.array_equal(np.asarray(read_image(tmp_path / "damaged.png")), np.asarray(upright))
    alpha = Image.linear_gradient("L").resize(upright.size)
    p3 = _in_display_p3(upright).convert("RGBA")
    p3.putalpha(alpha)
    p3.save(tmp_path / "p3-alpha.png", icc_profile=DISPLAY_P3)
    shown = upright.convert("RGBA")
    shown.putalpha(alpha)
    on_white = Image.alpha_composite(Image.new("RGBA", upright.size, "white"), shown).convert("RGB")
    assert difference(read_image(tmp_path / "p3-alpha.png"), on_white) < 1.5


def test_a_grey_photos_profile_and_a_photos_comment_stay_out_of_the_rgb_outputs(upright, tmp_path):
    """A grey JPEG with a Gray ICC profile (a scanner's) gave RGB PNGs carrying that profile, which libpng calls
    invalid ("Gray color space not permitted on RGB PNG"); the photo's JPEG comment (a place, a name) went into the
    aligned and pasted JPEGs, where its EXIF did not (forty-first session's audit). An RGB profile stays (sRGB)."""
    from toonlib import cli

    photo = tmp_path / "scan.jpg"
    upright.convert("L").save(photo, icc_profile=_gray_profile(), comment=b"Alice's phone, 12 Rue X, Paris",
                              quality=95)
    assert Image.open(photo).info["comment"] and Image.open(photo).info["icc_profile"][16:20] == b"GRAY"
    for out in ("face.png", "face.jpg"):
        assert cli.main(["align", str(photo), "-o", str(tmp_path / out), "--size", "64", "--detector", "dlib"]) == 0
        written = Image.open(tmp_path / out)
        assert written.mode == "RGB" and "icc_profile" not in written.info and "comment" not in written.info, out
    p3 = tmp_path / "p3.png"
    _in_display_p3(upright).save(p3, icc_profile=DISPLAY_P3)
    assert read_image(p3).info["icc_profile"][16:20] == b"RGB "  # the sRGB profile its colours were converted to


def test_a_file_name_given_as_bytes_is_told_apart_from_an_images_bytes(upright, tmp_path):
    """`read_image(os.fsencode(path))` (a name from os.listdir(b".")) was "cannot read image data (38 bytes) as an
    image: it is in no image format toonlib reads", of a photo toonlib reads (thirty-fourth session's API audit)."""
    import os

    path = tmp_path / "me.png"
    upright.save(path)
    with pytest.raises(ImageReadError, match=r"^b'.*me\.png' is a file's name given as bytes, and bytes are read as an "
                                             r"image's contents: give the path as a str or Path \(os\.fsdecode"):
        read_image(os.fsencode(path))
    assert read_image(path.read_bytes()).size == upright.size  # the file's contents are an image
    small = io.BytesIO()
    upright.resize((16, 16)).save(small, "PNG")  # under 4 KiB, as a name is: never decoded as a file name (Windows
    with pytest.MonkeyPatch.context() as windows:  # decodes strictly: a PNG's first byte, 0x89, raised there)
        windows.setattr(os, "fsdecode", lambda name: bytes(name).decode("utf-8", "surrogatepass"))
        assert read_image(small.getvalue()).size == (16, 16)


def test_an_animated_file_is_closed_once_read(upright, tmp_path):
    """Pillow keeps an animated GIF open for its other frames: read_image's photo held the file open until
    collected ("ResourceWarning: unclosed file"), one handle per photo of a folder."""
    path = tmp_path / "animated.gif"
    path.write_bytes(_animated(upright, "GIF"))
    gc.collect()  # earlier tests' garbage (an event loop a Gradio server left) is not this read's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        photo = np.asarray(read_image(path))
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]
    assert difference(Image.fromarray(photo), upright) < 4.0


def test_8_bit_values_in_a_uint16_array_are_refused_with_the_fix(upright):
    """np.array(photo, np.uint16) (or a sum of uint8 images) holds 8-bit values in a 16-bit array: read as 16-bit
    (/ 257), it was a nearly black photo and no word said why. Refused as a [-1, 1] float array is, naming the fix;
    16-bit data, a black array and a 16-bit file (mode I;16) read as before."""
    eight = np.asarray(upright)
    fix = r"a nearly black image: for 8-bit values \(0 \.\. 255\) pass array\.astype\(np\.uint8\)$"
    for dtype in (np.uint16, np.int16):
        with pytest.raises(ImageReadError, match=rf"^a {np.dtype(dtype).name} image array is read as 16-bit \(0 \.\. "
                                                 rf"65535\), but this one goes up to 255 only, {fix}"):
            read_image(eight.astype(dtype))
    assert difference(read_image(eight.astype(np.uint16).astype(np.uint8)), upright) == 0  # the fix
    assert difference(read_image(eight.astype(np.uint16) * 257), upright) == 0  # 16-bit data
    assert not np.asarray(read_image(np.zeros((4, 4, 3), np.uint16))).any()  # black either way
    dark_file = Image.fromarray(eight[:, :, 0].astype(np.uint16))  # a 16-bit PNG's pixels: the file's numbers
    assert dark_file.mode == "I;16" and np.asarray(read_image(dark_file)).max() == 1


def test_arrays_whose_values_an_8_bit_image_would_clip_are_refused(upright):
    """Values below black or above the 16-bit range came out as a black or white photo, or wrapped around (int8),
    without a word: int64 photo - 300 was all black, a float array of 16-bit values nearly white."""
    eight = np.asarray(upright)
    ints = r"is read as 0 \.\. 255 \(8-bit\) or 0 \.\. 65535 \(16-bit\), but this one goes from "
    floats = r"^a float image array is read as \[0, 1\] or \[0, 255\], but this one goes from "
    for array, said in [(eight.astype(np.int64) - 300, rf"^an image array of int64 {ints}-300 to -45: scale it"),
                        (np.array([[-3, 200]], np.int16), rf"^an image array of int16 {ints}-3 to 200: "),
                        (eight.astype(np.int8), rf"^an image array of int8 {ints}-128 to 127: "),
                        (eight.astype(np.int32) * 1000, rf"^an image array of int32 {ints}0 to 255000: "),
                        (eight.astype(np.float64) * 257, rf"{floats}0 to 6.554e\+04: scale it into one of those "
                                                         r"\(16-bit values: array / 257\)$"),
                        (eight.astype(np.float32) - 128, rf"{floats}-128 to 127: ")]:
        with pytest.raises(ImageReadError, match=said):
            read_image(array)
    for fine in (eight.astype(np.int64), eight.astype(np.float64), eight / 255, eight.astype(np.uint16) * 257,
                 eight.astype(np.float32) - 3):  # 8-bit, 16-bit, [0, 1] and a little ringing below black: read
        assert difference(read_image(fine), upright) < 3


# ----------------------------------------------------------------------------------------------
# Files that are no whole photo: one line each, saying what to do


def _cut_short(data: bytes) -> bytes:
    return data[: len(data) // 2]


NOT_PHOTOS = {
    "cut-short-jpeg": (lambda image: _cut_short(_encoded(image, "JPEG")), "jpg",
                       r"the JPEG file is cut short \(a download or copy that did not finish\?\): download or copy "
                       "it again$"),
    "cut-short-png": (lambda image: _cut_short(_encoded(image, "PNG")), "png", r"the PNG file is cut short \("),
    "damaged-webp": (lambda image: _cut_short(_encoded(image, "WEBP")), "webp",
                     r"the file is damaged \(could not create decoder object\): download or copy it again, or "
                     "export it anew$"),
    "empty": (lambda image: b"", "jpg", r"the file is empty \(0 bytes\): a copy or download that did not finish\? "
                                       r"Copy or download it again$"),
    "web-page": (lambda image: b"<!DOCTYPE html><html><body>Sign in to see this photo</body></html>", "jpg",
                 r"it is a web page \(HTML\), not an image: save the image itself \(right-click it, Save image as\)$"),
    "svg": (lambda image: b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "svg",
            "it is an SVG drawing, not a photo: export it as PNG or JPEG$"),
    "live-photo-mov": (lambda image: b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  \x00\x00\x00\x08wide", "mov",
                       r"it is a video \(MP4/MOV\), not a photo: pick a photo, or save a frame of the video as JPEG$"),
    "jpeg-start-only": (lambda image: b"\xff\xd8 not really a jpeg", "jpg",  # was "in no image format"
                        "the JPEG file is damaged: download or copy it again, or export it anew$"),
    "checkpoint": (lambda image: pickle.dumps({"G_ema": None}, protocol=4), "pkl",  # a model given as the photo
                   r"it is a model checkpoint \(safetensors, pickle or torch file\), not a photo: give it as a model "
                   r"to toonify, project or blend, the toon \(--toon, toon=\) or the base \(--base, base=\)$"),
    "latent": (lambda image: _latent_file(), "npz",  # what toonify saves beside a toon, which the command line draws
               r"it is a latent file \(an \.npz of w, .*\), not a photo: `toonlib toonify` draws its toon from a file "
               r"named \.npz; in Python, toonifier\.render\(toonlib\.load_latent\(path\)\)$"),
}


def _latent_file() -> bytes:
    import tempfile

    import torch

    from toonlib.projection import ProjectionResult

    with tempfile.TemporaryDirectory() as folder:
        ProjectionResult(w=torch.zeros(1, 8, 16), images=torch.zeros(1, 3, 8, 8), noise={}, losses=np.zeros((1, 1)),
                         space="w+", steps=1).save(Path(folder) / "me-latent.npz")
        return (Path(folder) / "me-latent.npz").read_bytes()


@pytest.mark.parametrize("kind", NOT_PHOTOS)
def test_files_that_are_no_whole_photo_are_named_with_what_to_do(kind, upright, tmp_path):
    """A half-downloaded JPEG said "image file is truncated (18 bytes not processed)", a damaged WebP "could not
    create decoder object", and an empty file, a web page saved as .jpg, an SVG or a Live Photo's video "in no image
    format toonlib reads"."""
    encode, suffix, reason = NOT_PHOTOS[kind]
    path = tmp_path / f"photo.{suffix}"
    path.write_bytes(encode(upright))
    for source, name in ((path, re.escape(f"'{path}'")), (path.read_bytes(), r"image data \(\d+ bytes\)")):
        with pytest.raises(ImageReadError, match=f"^cannot read {name} as an image: {reason}") as error:
            read_image(source)
        assert "\n" not in str(error.value)


def test_a_file_toonlib_may_not_read_is_not_called_damaged(tmp_path, monkeypatch):
    def refused(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", refused)  # root, who runs CI, reads any file: chmod cannot show it
    with pytest.raises(ImageReadError, match=r"^cannot read '.*me\.jpg' as an image: Permission denied$"):
        read_image(tmp_path / "me.jpg")


@pytest.mark.parametrize("size", [(300, 1), (1, 300), (1, 1)])
def test_a_photo_one_pixel_thin_has_no_face(size, tmp_path):
    """A photo 1 px tall or wide crashed dlib's detector (`RuntimeError: The stride of the 2nd dimension ... must be
    3`: numpy's strides of a side of one, turned); the web app showed bare "Error" badges. It has no face."""
    Image.new("RGB", size, "white").save(tmp_path / "thin.png")
    with pytest.raises(NoFaceError, match="no face was found in"):
        align_face(tmp_path / "thin.png", detector="dlib")


@pytest.mark.parametrize("suffix, least_db", [(".jpg", 40), (".webp", 38)])  # 34 and 35.6 dB at 75, 80
def test_a_photo_saved_lossy_keeps_its_look(suffix, least_db, upright, tmp_path):
    """`toonify me.jpg -o me-toon.jpg --paste-back` wrote the whole photo at Pillow's default JPEG quality, 75 (35.7 dB
    outside the face, visibly below the phone's own JPEG; thirty-eighth session's audit)."""
    from toonlib.images import save_image

    save_image(upright, tmp_path / f"photo{suffix}")
    saved = np.asarray(Image.open(tmp_path / f"photo{suffix}").convert("RGB"), dtype=np.float64)
    mse = np.mean((saved - np.asarray(upright, dtype=np.float64)) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) >= least_db


def test_damaged_exif_data_is_said_once_with_the_photos_name(upright, tmp_path):
    """Pillow's "Corrupt EXIF data. Expecting to read 12 bytes but only got 10" named no photo (a folder's run could
    not tell which), and was said again as the read photo was aligned (thirty-eighth session's audit)."""
    from toonlib.messages import ToonlibWarning

    photo = tmp_path / "b.jpg"
    upright.save(photo, "JPEG", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff" + b"\x00" * 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_image(photo)
        read_image(image)  # as the toonify reads the photo, then aligns it
    assert [(w.category, str(w.message)) for w in caught] == [(ToonlibWarning, (
        f"'{photo}': its EXIF data is damaged (Corrupt EXIF data. Expecting to read 12 bytes but only got 10); read "
        "as far as it goes, the photo turned only by an orientation that could be read"))]
    assert difference(image, upright) < 4  # the JPEG, read upright


def test_a_float_tiff_is_read_in_its_range_or_refused(upright, tmp_path):
    """A 32-bit float TIFF of 16-bit values was read as a nearly white photo without a word, where the same values as
    an array are refused (thirty-eighth session's audit); one in [0, 1] is read."""
    grey = np.asarray(upright.convert("L"), dtype=np.float32)
    Image.fromarray(grey / 255, mode="F").save(tmp_path / "unit.tif")
    assert abs(np.asarray(read_image(tmp_path / "unit.tif"), dtype=np.float32).mean() - grey.mean()) < 1
    Image.fromarray(grey * 257, mode="F").save(tmp_path / "wide.tif")
    with pytest.raises(ImageReadError, match=rf"^cannot read '{re.escape(str(tmp_path / 'wide.tif'))}' as an image: "
                                             r"its floating-point values go from 0 to 6\.55\de\+04, where 0 \.\. 1 "
                                             r"\(or 0 \.\. 255\) is read: save it as an 8- or 16-bit image$"):
        read_image(tmp_path / "wide.tif")


def test_photos_read_in_threads_leave_the_warnings_as_they_were(upright, tmp_path):
    """The photo's name given to Pillow's EXIF warnings caught warnings process-wide around each read: two reads at
    once in other threads (the app's) left every later warning caught, unsaid (review)."""
    import threading

    upright.save(tmp_path / "me.jpg")
    shown = warnings._showwarnmsg_impl
    for _ in range(40):  # it left them caught in about half of the tries
        threads = [threading.Thread(target=read_image, args=(tmp_path / "me.jpg",)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert warnings._showwarnmsg_impl is shown


def test_the_advice_for_an_image_tensor_reads_it_when_followed(upright):
    """A uint8 H x W x 3 tensor (`torch.from_numpy` of a photo's array) was told to pass
    `tensor.permute(1, 2, 0).numpy()`, which then failed as an array of shape (512, 3, 512) (forty-third session's
    audit): for each kind of image tensor, the advice, followed as written, reads the photo."""
    import torch

    from toonlib.images import to_pil

    hwc = torch.from_numpy(np.asarray(upright).copy())
    code = re.compile(r"to_pil\((?:[^()]|\([^()]*\))*\)|tensor(?:\[0\])?(?:\.permute\(\d, \d, \d\))?\.numpy\(\)")
    for tensor in (hwc, hwc[None], hwc.permute(2, 0, 1), hwc.permute(2, 0, 1)[None], hwc.float() / 255,
                   hwc.permute(2, 0, 1).float() / 127.5 - 1, hwc.permute(2, 0, 1).float() / 255):
        with pytest.raises(TypeError) as refused:
            read_image(tensor)
        said = str(refused.value)
        read = []
        for expression in code.findall(said):
            with contextlib.suppress(Exception):  # the advice for the tensor's other ranges: another picture
                read.append(difference(read_image(eval(expression, {"tensor": tensor, "to_pil": to_pil})), upright))
        assert read and min(read) < 1, (said, code.findall(said), read)
