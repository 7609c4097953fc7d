"""Images: reading users' photos, tensors in [-1, 1] <-> PIL / uint8, labelled grids, saving."""
from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import stat
import struct
import threading
import warnings
from pathlib import Path, PurePath
from typing import Callable, Iterator, Sequence, Union

import numpy as np
import torch
from PIL import Image, ImageCms, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from .files import (
    atomic_write_path,
    backslash_hint,
    check_file_path,
    dangling_link,
    is_url,
    looks_like_checkpoint,
    looks_like_html,
    user_path,
)
from .messages import ToonlibWarning, check_count, counted, warn

#: What `read_image` accepts: a path, encoded bytes, a PIL image or a numpy array (RGB order).
ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]

#: File suffixes of the images toonlib reads from folders (photos to toonify, training images). HEIC/HEIF (iPhones'
#: photos) is read through pillow-heif, AVIF by Pillow 11.3 or later; a file neither reads is refused by name. .jfif
#: and .jpe are JPEG's too (Chrome and Edge on Windows save web JPEGs as .jfif: a folder run left them out unsaid).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".avif", ".bmp", ".tif", ".tiff", ".gif",
                  ".jfif", ".jpe")
#: What a photo upload's file picker offers (HTML `accept`): image types, and by suffix those that some systems' pickers
#: do not count as images (HEIC greyed out under "image/*").
UPLOAD_ACCEPT = ",".join(("image/*", *IMAGE_SUFFIXES))

#: ISO media brands (a file's `ftyp` box) of HEIC/HEIF photos, and of AVIF images.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
#: ... and of videos: MP4, an iPhone's MOV (a Live Photo's moving part), 3GP.
_VIDEO_BRANDS = frozenset({b"isom", b"iso2", b"mp41", b"mp42", b"avc1", b"M4V ", b"qt  ", b"3gp4", b"3gp5", b"3g2a"})

#: How a Python user gets, from a photo of a face, the FFHQ-aligned crop that projection and the encoders take.
ALIGN_ADVICE = "toonlib.align_face(path).image"

#: A latent [N, num_ws, w_dim] has at most this many rows (num_ws of a 2048 px generator) and is wider than tall
#: (`latent_shaped`).
_MOST_LATENT_ROWS = 20


def latent_shaped(shape: Sequence[int]) -> bool:
    """Whether a tensor of `shape` ends as latents do, [num_ws, w_dim]: at most `_MOST_LATENT_ROWS` rows, wider than
    tall, which no picture is (generators draw square ones). `to_uint8` refuses such a 3-D tensor; `load_latent` takes
    a bare tensor as latents only then."""
    rows, width = shape[-2:]
    return rows < width and rows <= _MOST_LATENT_ROWS


def _register_heif_opener() -> bool:
    """Let Pillow open HEIC/HEIF photos, iPhones' default, when pillow-heif (a dependency) is installed: for toonlib's
    reads and the web app's uploads alike; whether it is. Without it such a photo is refused by name, saying what to
    do."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


#: Whether Pillow reads HEIC/HEIF here: one it cannot read is then damaged, not a photo of a format it lacks.
HEIF_READABLE = _register_heif_opener()


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] or [C, H, W] in [-1, 1] -> uint8 array [N, H, W, C] or [H, W, C] (NVIDIA's rounding); warns of a
    tensor whose values all lie in 0 .. 255 (up to above 2), which comes out white."""
    if not isinstance(images, torch.Tensor) or images.ndim not in (3, 4):
        what = f"a {images.ndim}-D tensor" if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"expected an image tensor [C, H, W] or [N, C, H, W] in [-1, 1] (what a generator draws), "
                        f"got {what}" + (": for an array or a file use read_image" if isinstance(images, np.ndarray)
                                         else _picture_attribute_hint(images)))
    if images.ndim == 3 and latent_shaped(images.shape):  # drawn, it was a grey strip
        raise TypeError(f"expected an image tensor [C, H, W] or [N, C, H, W], got shape {list(images.shape)}, which "
                        "looks like a latent [N, num_ws, w_dim], not a picture: draw it first, e.g. "
                        "to_pil(toonlib.projection.render(G, w))")
    if not images.is_floating_point():  # uint8 0 .. 255 read as [-1, 1] came out a white image
        raise TypeError(f"expected a float image tensor in [-1, 1] (what a generator draws), got {images.dtype}: for "
                        "0 .. 255 values use images.float() / 127.5 - 1")
    if images.shape[-3] not in (1, 3, 4):
        last = images.shape[-1] in (1, 3, 4)
        raise TypeError(f"expected an image tensor [C, H, W] or [N, C, H, W] with 1, 3 or 4 channels, got shape "
                        f"{list(images.shape)}" + (": channels last? use images.movedim(-1, -3)" if last else ""))
    # NaN came out black without a word, and inf got the 0 .. 255 warning below (forty-first session's audit)
    check_finite_image(images, "the image tensor", "of which no picture can be made")
    if images.numel() and images.amin() >= 0 and images.amax() > 2:  # no generator draws that: 0 .. 255 values
        warn(f"the image tensor's values all lie in 0 .. {images.amax().item():.4g}; toonlib reads an image tensor "
             "as [-1, 1] (what a generator draws), so this one comes out white where it is above 1. For 0 .. 255 "
             "values pass x / 127.5 - 1")
    array = (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu()
    return array.movedim(-3, -1).numpy()


def check_finite_image(x: torch.Tensor, what: str, outcome: str) -> None:
    """ValueError for an image tensor `x` that holds NaN or infinite values: how many, `outcome` (what is not made
    of them, "of which project makes no latent") and what to do. `what`: how the message calls the tensor."""
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"{what} holds NaN or infinite values ({bad} of {x.numel()}), {outcome}: fix what computed "
                         "it, or replace them (torch.nan_to_num)")


def check_image_tensor(item: torch.Tensor, what: str, reader: str) -> torch.Tensor:
    """`item`, an image tensor given to `reader` ("project", "the encoder"), as [N, 3, H, W], detached: ValueError for
    another shape or dtype, an empty one, NaN or infinite values and values beyond [-1, 1] (0 .. 255 ones, which
    came out white or gave the encoder codes hundreds off); a warning for one whose values all lie in [0, 1]
    (torchvision's to_tensor), read as a pale picture. `what`: how the messages call the tensor ("the target")."""
    x = (item[None] if item.ndim == 3 else item).detach()
    if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(f"{what} must be a float image tensor [3, H, W] or [N, 3, H, W] in [-1, 1], got {item.dtype} "
                         f"{list(item.shape)}" + (": for 0 .. 255 values use x.float() / 127.5 - 1"
                                                  if not x.is_floating_point() else ""))
    if not x.numel():  # it failed inside F.interpolate
        raise ValueError(f"{what} is empty (shape {list(item.shape)}): an image tensor is float [3, H, W] or "
                         "[N, 3, H, W] with N, H and W >= 1")
    # NaN passed the range check below and made every latent NaN
    check_finite_image(x, what, f"of which {reader} makes no latent")
    if x.abs().amax() > 2:  # [0, 255] would be clamped to a white image
        raise ValueError(f"{what} must hold values in [-1, 1], got {x.min().item():.4g} .. {x.max().item():.4g}: for "
                         "0 .. 255 use x / 127.5 - 1, for 0 .. 1 x * 2 - 1")
    warn_if_zero_to_one(x, what, reader)
    return x


def warn_if_zero_to_one(x: torch.Tensor, what: str, reader: str) -> None:
    """Warn where an image tensor given to `reader` has no value below 0: no pixel darker than mid-grey, a [0, 1]
    tensor (torchvision's to_tensor) most likely, which [-1, 1] reading makes a pale picture (0 .. 255 values,
    above 2, are `to_uint8`'s warning)."""
    if x.numel() and x.amin() >= 0 and x.amax() <= 2:
        warn(f"{what}'s values all lie in 0 .. {x.max().item():.3g}; {reader} reads a tensor as [-1, 1] (what a "
             "generator draws), so this one is a pale picture with nothing darker than grey. For a [0, 1] tensor "
             "(torchvision's to_tensor) pass x * 2 - 1")


def to_pil(images: torch.Tensor) -> Image.Image | list[Image.Image]:
    """One PIL image for a [C, H, W] tensor, a list for [N, C, H, W]; values in [-1, 1]."""
    array = to_uint8(images)
    if array.shape[-1] == 1:  # grey: Pillow takes [H, W], not [H, W, 1]
        array = array[..., 0]
    return [Image.fromarray(a) for a in array] if images.ndim == 4 else Image.fromarray(array)


def from_pil(image: Image.Image, size: int | None = None) -> torch.Tensor:
    """PIL image -> float tensor [1, 3, H, W] in [-1, 1], resized (LANCZOS) to size x size if given; read as
    `read_image` reads it (EXIF orientation, transparency on white, 16-bit scaled, sRGB)."""
    if not isinstance(image, Image.Image):  # a path or an array failed at image.convert
        raise TypeError(f"from_pil takes a PIL image, got {type(image).__name__}: for a file, bytes or an array use "
                        "from_pil(read_image(x))")
    if size is not None:
        check_count("size", size)
    image = read_image(image)  # as everywhere: upright, alpha on white (convert("RGB") made it black), 8-bit sRGB
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    array = torch.from_numpy(np.asarray(image, dtype=np.float32).copy())
    return (array.permute(2, 0, 1)[None] / 127.5 - 1).contiguous()


#: How `save_image` writes lossy formats: near a phone camera's own JPEGs (Pillow's defaults, quality 75 and 4:2:0
#: chroma for JPEG, re-encoded a whole photo pasted back at 35.7 dB outside the face; thirty-eighth session's audit).
LOSSY_SETTINGS: dict[str, dict] = {"JPEG": {"quality": 95, "subsampling": 0}, "WEBP": {"quality": 95},
                                   "AVIF": {"quality": 95}}


def save_image(image: Image.Image | np.ndarray | torch.Tensor, path: str | os.PathLike) -> None:
    """Save one image atomically: a PIL image, an array (as `read_image` reads it) or a tensor [C, H, W] or
    [1, C, H, W] in [-1, 1] (`render`'s output for one latent; one with no value below 0 is warned of, as a [0, 1]
    tensor saved pale).

    The format follows the file's suffix, which must be one Pillow writes (`.png`, `.jpg`, ...); JPEG, WebP and AVIF
    at quality 95 (`LOSSY_SETTINGS`). An image whose mode that format cannot hold (RGBA, palette or 16-bit as JPEG)
    is written as `read_image` would read it: 8-bit RGB, transparency on white."""
    if not isinstance(path, (str, os.PathLike)) or isinstance(image, (str, os.PathLike)):
        swapped = isinstance(image, (str, os.PathLike)) and isinstance(path, (Image.Image, np.ndarray, torch.Tensor))
        raise TypeError("save_image(image, path) takes a PIL image, array or tensor, then a file path; got "
                        f"{type(image).__name__}, {type(path).__name__}" + (" (swapped)" if swapped else ""))
    if isinstance(image, torch.Tensor) and image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"save_image writes one image, got a batch of {image.shape[0]}: save each of "
                             "to_pil(images) under its own name")
        image = image[0]
    tensor = image if isinstance(image, torch.Tensor) else None
    if tensor is not None:
        image = to_pil(tensor)
    elif isinstance(image, np.ndarray):
        image = _array_to_image(image)
    elif not isinstance(image, Image.Image):
        raise TypeError(f"save_image takes a PIL image, an image array or an image tensor, got {type(image).__name__}")
    # a folder first: the suffix's advice ("name it out/toons.png") wrote a file beside it (forty-first session's audit)
    check_file_path(user_path(path))
    image_format = image_file_format(path)
    if tensor is not None:  # a [0, 1] tensor was saved washed out without a word
        warn_if_zero_to_one(tensor.detach(), "the image tensor", "save_image")
    settings = LOSSY_SETTINGS.get(image_format, {})
    with atomic_write_path(path) as tmp:
        try:
            image.save(tmp, format=image_format, **settings)
        except (OSError, ValueError):  # "cannot write mode RGBA as JPEG": save what read_image would read instead
            if image.mode == "RGB":
                raise
            _to_rgb(image).save(tmp, format=image_format, **settings)


def image_file_format(path: str | os.PathLike) -> str:
    """The format Pillow writes for `path`'s suffix ('PNG' for `.png`); ValueError, saying what to name it, for a
    suffix Pillow does not write or none (PNG data went into a .txt file, or one without a suffix)."""
    suffix = user_path(path).suffix
    image_format = Image.registered_extensions().get(suffix.lower())
    if image_format not in Image.SAVE:
        problem = f"Pillow writes no {suffix} files" if suffix else "it has none"
        newer = " (Pillow writes AVIF from version 11.3: pip install -U pillow)" if suffix.lower() == ".avif" else ""
        raise ValueError(f"cannot save an image as {os.fspath(path)!r}: the format follows the file's suffix, and "
                         f"{problem}{newer}; name it {Path(path).with_suffix('.png')} (or .jpg, .webp, ...)")
    return image_format


def text_font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def labelled_grid(rows: Sequence[Sequence[Image.Image]], row_labels: Sequence[str] | None = None,
                  col_labels: Sequence[str] | None = None, cell: int | None = None, pad: int = 4) -> Image.Image:
    """Lay out images in a grid with optional row labels (left) and column labels (top).

    All cells are resized to `cell` x `cell` (default: the first image's width). White background.
    """
    flat = [type(row).__name__ for row in rows if not isinstance(row, (list, tuple))]
    if flat:  # a flat list of images failed at rows[0][0]
        raise TypeError(f"labelled_grid takes rows of images, a list of lists ([[a, b], [c, d]]), got {flat[0]} "
                        "where a row belongs: for one row of images pass [images]")
    if not rows or not rows[0]:
        raise ValueError("labelled_grid needs at least one image")
    odd = next((type(image).__name__ for row in rows for image in row if not isinstance(image, Image.Image)), None)
    if odd is not None:
        raise TypeError(f"labelled_grid lays out PIL images, got {odd}: for an image tensor use to_pil(tensor)")
    if row_labels is not None and len(row_labels) != len(rows):  # too few failed with an IndexError
        raise ValueError(f"got {counted(len(row_labels), 'row label')} for {counted(len(rows), 'row')}: give one "
                         "per row")
    cell = cell or rows[0][0].width
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    font = text_font(max(10, cell // 10))
    text_h = (font.getbbox("Ag")[3] + 2 * pad) if col_labels else 0
    label_w = (max(font.getbbox(str(t))[2] for t in row_labels) + 2 * pad) if row_labels else 0
    grid = Image.new("RGB", (label_w + n_cols * (cell + pad) + pad, text_h + n_rows * (cell + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for j, label in enumerate(col_labels or []):
        x = label_w + pad + j * (cell + pad) + cell // 2
        draw.text((x, pad), str(label), fill="black", font=font, anchor="ma")
    for i, row in enumerate(rows):
        y = text_h + pad + i * (cell + pad)
        if row_labels:
            draw.text((pad, y + cell // 2), str(row_labels[i]), fill="black", font=font, anchor="lm")
        for j, image in enumerate(row):
            if image.size != (cell, cell):
                image = image.resize((cell, cell), Image.Resampling.LANCZOS)
            grid.paste(image.convert("RGB"), (label_w + pad + j * (cell + pad), y))
    return grid


class NotACropWarning(ToonlibWarning):
    """`warn_if_not_a_crop`'s: an image given where an FFHQ-aligned face crop belongs is not square."""


def warn_if_not_a_crop(image: Image.Image | torch.Tensor, name: str, taker: str, outcome: str,
                       advice: str = ALIGN_ADVICE) -> None:
    """Warn (`messages.warn`, a `NotACropWarning`) where `image` (PIL, or a tensor [..., H, W]) is not square, so no
    FFHQ-aligned crop (`align_face` makes square ones): a whole photo, most likely. `name`: how the message calls
    the image; `taker`: what takes aligned crops ("the encoder"); `outcome`: what it does with this image instead;
    `advice`: how to get the crop. The one check of the kind that needs no face detector: "'me.jpg' is 640x480, not
    square: the encoder takes an FFHQ-aligned face (toonlib.align_face(path).image); encoding it squashed to
    256 x 256"."""
    width, height = (image.shape[-1], image.shape[-2]) if isinstance(image, torch.Tensor) else image.size
    if width != height:
        warn(f"{name} is {width}x{height}, not square: {taker} takes an FFHQ-aligned face ({advice}); {outcome}",
             NotACropWarning)


#: What to do with a model's file given where a photo or a latent goes (the command line keeps the options alone):
#: toonify, project and blend take models; `align` of a model was told options that align lacks.
GIVE_AS_A_MODEL = ("give it as a model to toonify, project or blend, the toon (--toon, toon=) or the base "
                   "(--base, base=)")


class ImageReadError(ValueError):
    """The input could not be read as an image."""


class PhotoNotFoundError(ImageReadError, FileNotFoundError):
    """There is no file at the photo's path: an `ImageReadError` that `except FileNotFoundError` (or OSError), as
    around a missing model's file, catches too."""


def read_image(image: ImageInput) -> Image.Image:
    """`image` (path, `~` expanded; bytes; PIL image or numpy array in RGB order) as an upright 8-bit RGB PIL image.

    EXIF orientation is applied; transparent images are composited on white, 16-bit data is scaled
    to 8 bits (a 16-bit array whose largest value lies in 1 .. 255, 8-bit values in a uint16 array, is refused: read
    so, it is nearly black), float arrays are read as [0, 1] (or [0, 255] if any value exceeds 1; one in [-1, 1]
    is refused), and an array the 8-bit image would clip (ints below 0 or above 65535, floats above 255) is refused.
    Colours are converted to sRGB from the image's embedded colour profile (an iPhone's Display P3, Adobe RGB, a CMYK
    print profile), as browsers show them; the networks were trained on sRGB. Of an animated file (GIF, WebP, ...)
    the first frame is read. Unreadable input raises `ImageReadError`, saying
    why in the user's terms (a HEIC photo without pillow-heif, a file cut short, a web page saved as .jpg, ...).
    """
    if isinstance(image, np.ndarray):
        return _to_rgb(_array_to_image(image))
    if isinstance(image, Image.Image):
        return _upright_srgb(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        # os.fsencode(path), os.listdir(b"."): bytes as they are (decoding an image's bytes fails on Windows, whose
        # file system encoding is strict UTF-8); isfile says False of what holds a NUL or names no file
        if len(image) < 4096 and os.path.isfile(bytes(image)):
            raise ImageReadError(f"{bytes(image)!r} is a file's name given as bytes, and bytes are read as an image's "
                                 "contents: give the path as a str or Path (os.fsdecode(name))")
        return _read_upright(describe_source(image), lambda: _open(io.BytesIO(bytes(image)), describe_source(image)))
    if is_url(image):
        raise ImageReadError(f"{describe_source(image)} is a web address: toonlib reads photos from files; download "
                             "it first and give the file")
    if isinstance(image, (str, os.PathLike)):  # '~/me.jpg' as a shell would read it
        path = user_path(image)
        try:
            mode = path.stat().st_mode
        except OSError:  # not there, not allowed: said by `_open` as the file's problem
            mode = stat.S_IFREG
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a pipe (`/dev/stdin`, `<(curl ...)`), a device
            return _read_upright(describe_source(image),
                                 lambda: _open(_piped(path, describe_source(image)), describe_source(image)))
        return _read_upright(describe_source(image), lambda: _open(path, describe_source(image)))
    raise TypeError(f"expected a path, bytes, PIL image or numpy array, got {type(image).__name__}{_advice(image)}")


#: The most `read_image` reads from a pipe: a photo's bytes, not a device's endless stream (`/dev/zero`).
PIPED_MAX_BYTES = 256 * 2**20


def _piped(path: Path, name: str) -> io.BytesIO:
    """The bytes a pipe or device at `path` gives, read once: opened a second time to say what it held, it waited for a
    writer for ever (review)."""
    try:
        with open(path, "rb") as pipe:
            content = pipe.read(PIPED_MAX_BYTES + 1)
    except OSError as exc:
        raise ImageReadError(f"cannot read {name} as an image: {exc.strerror or exc}") from exc
    if len(content) > PIPED_MAX_BYTES:
        raise ImageReadError(f"cannot read {name} as an image: it gives more than {PIPED_MAX_BYTES // 2**20} MB, more "
                             "than a photo holds")
    return io.BytesIO(content)


def _advice(image: object) -> str:
    """What to pass instead of an input `read_image` does not take, for the kinds users have at hand."""
    if isinstance(image, torch.Tensor):
        batch = "tensor[0]" if image.ndim == 4 else "tensor"
        one = image[0] if image.ndim == 4 else image
        # by where its channels are: a photo's array as a tensor, H x W x 3, was told to permute(1, 2, 0), and that
        # failed (forty-third session's audit)
        last = one.ndim == 2 or (one.ndim == 3 and one.shape[-1] in (1, 3, 4) and one.shape[0] not in (1, 3, 4))
        shape = "[H, W]" if one.ndim == 2 else "[H, W, 3]"
        cpu = ".cpu()" if image.device.type != "cpu" else ""
        if image.dtype == torch.uint8:
            return (f": for a uint8 image tensor {shape} pass {batch}{cpu}.numpy()" if last else
                    f": for a uint8 image tensor [3, H, W] pass {batch}{cpu}.permute(1, 2, 0).numpy()")
        if last:
            return (f": for an image tensor {shape} in [0, 1] pass {batch}{cpu}.numpy(), for one in [-1, 1] "
                    f"to_pil({batch}{'[None]' if one.ndim == 2 else '.permute(2, 0, 1)'}) (toonlib.images)")
        return (f": for an image tensor [3, H, W] in [-1, 1] (what a generator draws) pass to_pil({batch}) "
                f"(toonlib.images), for one in [0, 1] (torchvision's to_tensor) to_pil({batch} * 2 - 1)")
    if hasattr(image, "read"):
        return ": pass the file's path, or its bytes (f.read())"
    if isinstance(image, (list, tuple)):
        return f" of {len(image)}: this reads one image; pass each item on its own"
    return image_attribute_hint(image)


def _picture_attribute_hint(value: object) -> str:
    """For a result object given where an image tensor belongs, the attribute that holds its pictures."""
    if isinstance(getattr(value, "images", None), torch.Tensor):
        return f": pass its .images ({type(value).__name__}.images, the pictures it holds)"
    if isinstance(getattr(value, "toon", None), Image.Image):
        return f": its .toon is already a PIL image ({type(value).__name__}.toon)"
    return ""


def image_attribute_hint(value: object) -> str:
    """For an object that holds a picture as `.image` (`align_face`'s AlignedFace), the advice to pass that."""
    if isinstance(getattr(value, "image", None), Image.Image):
        return f": pass its .image ({type(value).__name__}.image, the picture it holds)"
    if isinstance(getattr(value, "photo", None), Image.Image):  # a ToonifyResult: its crop, or its upright photo
        # which one, said: project and the encoders take the crop, and encoding .photo (advised first) gave other codes
        name = type(value).__name__
        return (f": pass its .aligned ({name}.aligned, the FFHQ crop: what project and the encoders take) or .photo "
                f"({name}.photo, the photo it was made from: what toonify and align_face take)")
    return ""


def describe_source(image: ImageInput) -> str:
    """How messages name an image input: its quoted path, its byte count, or "the image"."""
    if isinstance(image, (str, os.PathLike)):
        return f"'{os.fspath(image)}'"
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"image data ({len(image)} bytes)"
    return "the image"


def is_hidden(path: PurePath) -> bool:
    """True for what folder listings pass over: hidden files and folders (a part starting with '.', such as the
    `._photo.jpg` resource forks macOS leaves on shared drives) and the `__MACOSX` folder of zips made on a Mac."""
    return any((part.startswith(".") and part not in (".", "..")) or part == "__MACOSX" for part in path.parts)


def is_image_file(path: str | os.PathLike) -> bool:
    """True when `path` names a file with one of the image suffixes toonlib reads (`IMAGE_SUFFIXES`), or a symbolic
    link named so whose file is missing (a drive not mounted: `read_image` says so, and a folder's run counts it)."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_SUFFIXES and (path.is_file() or dangling_link(path) is not None)


def pillow_format(source: str | os.PathLike | io.BytesIO) -> str | None:
    """What Pillow takes the file `source` for from its header ('PNG', 'JPEG', ...), None where it is no image it
    reads (or not there). An image too large to open still raises `Image.DecompressionBombError`."""
    try:
        with quiet_large_images(), Image.open(source) as image:
            return image.format
    except (UnidentifiedImageError, OSError, ValueError):
        return None


@contextlib.contextmanager
def quiet_large_images() -> Iterator[None]:
    """Read images of 90-180 megapixels (over `Image.MAX_IMAGE_PIXELS`) without Pillow's DecompressionBombWarning,
    which names no file. A larger image still raises `Image.DecompressionBombError` (`too_many_pixels` says it in a
    user's words)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def too_many_pixels(exc: Image.DecompressionBombError) -> str:
    """Pillow's refusal of an image over its limit in a user's words: '196 megapixels, more than Pillow opens in one
    image (179 at most)'."""
    counts = [int(count) for count in re.findall(r"(\d+) pixels", str(exc))]  # its size, then the limit
    if len(counts) != 2:
        return "too many pixels for Pillow to open in one image"
    size, limit = counts
    if limit >= 1e6:
        return f"{size / 1e6:.0f} megapixels, more than Pillow opens in one image ({limit / 1e6:.0f} at most)"
    return f"{size} pixels, more than Pillow opens in one image ({limit} at most)"


def _open(source: Path | io.BytesIO, name: str) -> Image.Image:
    img = None
    try:
        with quiet_large_images():
            img = Image.open(source)
            img.load()
    except Image.DecompressionBombError as exc:  # a 200-megapixel phone photo, too: say what to do
        raise ImageReadError(f"cannot read {name}: it is {too_many_pixels(exc)}: downscale it, or, for a file you "
                             "trust, set PIL.Image.MAX_IMAGE_PIXELS = None before reading it") from exc
    except (OSError, ValueError, SyntaxError, struct.error) as exc:
        reason = unreadable_reason(exc, source, img.format if img is not None else None)
        error = PhotoNotFoundError if isinstance(exc, FileNotFoundError) else ImageReadError
        raise error(f"cannot read {name} as an image: {reason}") from exc
    if getattr(img, "is_animated", False):  # Pillow keeps the file open for the other frames: keep the first alone
        first = img.copy()
        img.close()
        return first
    return img


def stdin_hint(name: str | os.PathLike) -> str:
    """For a photo named `-` that is no file, what many tools read as standard input: how to give that here, to append
    to "no such file" (it was said alone: forty-first session's audit); else ''."""
    if os.fspath(name) != "-":
        return ""
    # no command in it: `align -` was told of a toonify command (forty-third session's audit)
    if os.path.exists("/dev/stdin"):
        return ("; standard input is given as /dev/stdin, not -: put /dev/stdin where - is (`< me.jpg` still sends "
                "the photo)")
    return "; toonlib reads no photo from standard input here: save it to a file and give its path"


def unreadable_reason(exc: BaseException, source: Path | io.BytesIO, image_format: str | None) -> str:
    """Why a file could not be read as an image, in the user's terms (Pillow's names the file again, or the
    temporary copy of an upload). `image_format`: what Pillow took the file for, when it got that far (a file
    Pillow identified but could not decode is damaged or cut short)."""
    if isinstance(exc, FileNotFoundError) and isinstance(source, Path) and (link := dangling_link(source)):
        return f"it is {link}"  # an album's photo linked into a drive not mounted: `ls` lists it
    if isinstance(exc, FileNotFoundError):
        return "there is no such file" + (backslash_hint(source) + stdin_hint(source) if isinstance(source, Path)
                                          else "")
    if isinstance(exc, IsADirectoryError):
        return "it is a folder"
    if isinstance(exc, UnidentifiedImageError):
        return unread_format(_head(source))
    if isinstance(exc, OSError) and exc.strerror:  # the file system's word ("Permission denied"), not Pillow's
        return exc.strerror
    if "not available" in str(exc):  # "decoder jpeg2k not available": a Pillow built without it, no damage
        return str(exc)
    kind = f"{image_format} file" if image_format else "file"
    if "truncated" in str(exc).lower():  # "image file is truncated (18 bytes not processed)"
        return f"the {kind} is cut short (a download or copy that did not finish?): download or copy it again"
    return f"the {kind} is damaged ({exc}): download or copy it again, or export it anew"


def _head(source: Path | io.BytesIO) -> bytes:
    """The first KB of a file or buffer."""
    if isinstance(source, io.BytesIO):
        return source.getvalue()[:1024]
    with open(source, "rb") as f:
        return f.read(1024)


def unread_format(head: bytes) -> str:
    """What a file that Pillow opens as no image is, from its first bytes (1 KB is plenty), and what to do: a HEIC
    photo without pillow-heif, an AVIF image on an old Pillow, or what people pick instead of a photo."""
    if not head:
        # what to do, as for the others (the README says so; thirty-third session's audit)
        return "the file is empty (0 bytes): a copy or download that did not finish? Copy or download it again"
    if head[4:8] == b"ftyp":  # ISO media: a major brand, a version, then compatible brands up to the box's end
        end = min(int.from_bytes(head[:4], "big"), len(head))
        brands = {head[8:12], *(head[i:i + 4] for i in range(16, end - 3, 4))}
        if brands & _AVIF_BRANDS:
            return ("it is an AVIF image, which this Pillow does not read: `pip install -U pillow` (11.3 or later "
                    "reads AVIF), or export it as JPEG")
        if brands & _HEIF_BRANDS and HEIF_READABLE:  # "pip install pillow-heif", of a file cut short, where it is
            return ("it is a HEIC/HEIF photo that cannot be read: damaged or cut short (a download or copy that did "
                    "not finish?); copy or download it again, or export the photo as JPEG")
        if brands & _HEIF_BRANDS:
            return ("it is a HEIC/HEIF photo (iPhones' format), which toonlib reads with pillow-heif: "
                    "`pip install pillow-heif`, or export the photo as JPEG")
        if brands & _VIDEO_BRANDS:
            return "it is a video (MP4/MOV), not a photo: pick a photo, or save a frame of the video as JPEG"
    if b"<svg" in head.lower():
        return "it is an SVG drawing, not a photo: export it as PNG or JPEG"
    if head.startswith(b"%PDF"):  # "in no image format toonlib reads" (audit)
        return "it is a PDF document, not a photo: export the photo in it as PNG or JPEG"
    if looks_like_html(head):
        return "it is a web page (HTML), not an image: save the image itself (right-click it, Save image as)"
    if head.startswith(b"\xff\xd8"):  # a JPEG's start of image, then no JPEG Pillow recognises
        return "the JPEG file is damaged: download or copy it again, or export it anew"
    if looks_like_checkpoint(head):
        return f"it is a model checkpoint (safetensors, pickle or torch file), not a photo: {GIVE_AS_A_MODEL}"
    if head.startswith(b"PK\x03\x04") and head[30:30 + int.from_bytes(head[26:28], "little")] == b"w.npy":
        return ("it is a latent file (an .npz of w, as toonify and NVIDIA's projector save them), not a photo: "
                "`toonlib toonify` draws its toon from a file named .npz; in Python, "
                "toonifier.render(toonlib.load_latent(path))")
    return "it is in no image format toonlib reads (JPEG, PNG, WebP, HEIC, AVIF, BMP, TIFF and the others Pillow opens)"


def _array_to_image(array: np.ndarray) -> Image.Image:
    """HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA) array of any numeric dtype as an 8-bit image (`_array_to_uint8`);
    ImageReadError for one that would come out wrong (NaN, [-1, 1] floats, 8-bit values in a 16-bit array)."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        first = array.ndim == 3 and array.shape[0] in (1, 3, 4)
        raise ImageReadError(f"expected an HxW, HxWx3 or HxWx4 image array, got shape {array.shape}"
                             + (": channels first? use array.transpose(1, 2, 0)" if first else ""))
    if array.dtype.kind not in "biuf":
        raise ImageReadError(f"unsupported image array dtype {array.dtype}")
    if array.size == 0:
        raise ImageReadError(f"the image array is empty (shape {array.shape})")
    if array.dtype.kind in "iu" and array.dtype.itemsize == 2 and 0 < array.max() <= 255 and array.min() >= 0:
        # 8-bit values in a uint16 array (np.array(photo, np.uint16)): read as 16-bit (/ 257), nearly black
        raise ImageReadError(f"a {array.dtype} image array is read as 16-bit (0 .. 65535), but this one goes up to "
                             f"{array.max()} only, a nearly black image: for 8-bit values (0 .. 255) pass "
                             "array.astype(np.uint8)")
    if array.dtype.kind == "f" and not np.isfinite(array).all():  # the cast below made them some byte, with a warning
        bad = int((~np.isfinite(array)).sum())
        raise ImageReadError(f"the image array holds NaN or infinite values ({bad} of {array.size}): fix what "
                             "computed it, or replace them (np.nan_to_num)")
    _check_array_range(array)
    return Image.fromarray(_array_to_uint8(array))


def _check_array_range(array: np.ndarray) -> None:
    """ImageReadError for values the 8-bit image would clip to black or white (an int array below 0 or above 65535, a
    float one above 255 or far below 0): it came out black, white or wrapped around, without a word."""
    low, high = array.min(), array.max()
    if array.dtype.kind in "iu" and (low < 0 or high > 65535):
        raise ImageReadError(f"an image array of {array.dtype} is read as 0 .. 255 (8-bit) or 0 .. 65535 (16-bit), but "
                             f"this one goes from {low} to {high}: scale it into one of those (np.clip if only a few "
                             "values stray)")
    if array.dtype.kind == "f" and _float_range_refused(low, high):
        raise ImageReadError(f"a float image array is read as [0, 1] or [0, 255], but this one goes from {low:.4g} to "
                             f"{high:.4g}: scale it into one of those (16-bit values: array / 257)")


#: The lowest value a float image array read as [0, 1] may hold: resampling rings a little below 0; an array in
#: [-1, 1] (a generator's range) reaches far lower.
_FLOAT_FLOOR = -0.25


def _float_range_refused(low: float, high: float) -> bool:
    """Whether float values from `low` to `high` fit neither [0, 1] nor [0, 255]: the 8-bit image would clip them."""
    return high > 1.0 and (high > 255.0 or low < _FLOAT_FLOOR * 255)


def _array_to_uint8(array: np.ndarray) -> np.ndarray:
    """uint8 as is; bool -> 0/255; 16-bit (and other ints above 255) / 257; floats in [0, 1] * 255 (refused below
    `_FLOAT_FLOOR`)."""
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    values = array.astype(np.float32)
    if array.dtype.kind == "b":
        values *= 255.0
    elif array.dtype.kind in "iu" and (array.dtype.itemsize == 2 or values.max(initial=0) > 255):
        values /= 257.0
    elif array.dtype.kind == "f" and values.max(initial=0) <= 1.0:
        if values.min(initial=0) < _FLOAT_FLOOR:  # darker than black: clipped to it, the image came out dark
            raise ImageReadError(f"a float image array is read as [0, 1] (or [0, 255]), but this one goes down to "
                                 f"{values.min():.2f}: for values in [-1, 1] (what a generator draws) pass "
                                 "(array + 1) / 2")
        values *= 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _upright_srgb(img: Image.Image) -> Image.Image:
    """A decoded image as read_image returns it: EXIF orientation applied, colours in sRGB, 8-bit RGB; its EXIF data
    left behind (applied: read again, a damaged one was warned of twice), and its comment (a JPEG's COM: a place or
    a name went into the aligned and pasted images, where EXIF's GPS did not; forty-first session's audit). A colour
    profile of another colour space than RGB is left behind too: a grey photo's (a scanner's) went into the RGB
    outputs, which libpng and colour-managed viewers call invalid (same audit)."""
    upright = _to_rgb(_to_srgb(ImageOps.exif_transpose(img)))  # exif_transpose: a copy, `img` is left as it was
    upright.info.pop("exif", None)
    upright.info.pop("comment", None)
    if not _is_rgb_profile(upright.info.get("icc_profile")):
        upright.info.pop("icc_profile", None)
    return upright


def _is_rgb_profile(icc: bytes | None) -> bool:
    """Whether `icc`, an ICC profile's bytes, describes RGB colours: its header's colour space (bytes 16-19)."""
    return bool(icc) and icc[16:20] == b"RGB "


def _read_upright(source: str, read: Callable[[], Image.Image]) -> Image.Image:
    """`_upright_srgb` of the image `read()` opens, Pillow's warnings of damaged EXIF data ("Corrupt EXIF data.
    Expecting to read 12 bytes but only got 10") said with the photo's name `source`: a folder's run said it of no
    photo (thirty-eighth session's audit). Other warnings pass as they are. In the main thread only: warnings are
    caught process-wide, and two reads at once in other threads (the app's) left them caught for good (review). A
    float image (32-bit TIFF) whose values fit neither 0 .. 1 nor 0 .. 255 is refused, as such arrays are (16-bit
    values came out nearly white, unsaid)."""
    catching = threading.current_thread() is threading.main_thread()
    with warnings.catch_warnings(record=True) if catching else contextlib.nullcontext([]) as caught:
        if catching:
            warnings.simplefilter("always")
        opened = read()
        low, high = opened.getextrema() if opened.mode == "F" else (0, 0)
        if _float_range_refused(low, high):
            raise ImageReadError(f"cannot read {source} as an image: its floating-point values go from {low:.4g} to "
                                 f"{high:.4g}, where 0 .. 1 (or 0 .. 255) is read: save it as an 8- or 16-bit image")
        image = _upright_srgb(opened)
    for said in caught:
        text = " ".join(str(said.message).split()).rstrip(".")
        if "EXIF" in text or text.startswith("Metadata Warning"):  # ("tag 274 had too many entries": orientation)
            warn(f"{source}: its EXIF data is damaged ({text}); read as far as it goes, the photo turned only by an "
                 "orientation that could be read")
        elif f"{os.sep}PIL{os.sep}" in said.filename:  # Pillow's other warnings name no file either
            warn(f"{source}: {text}")
        else:
            warnings.warn_explicit(said.message, said.category, said.filename, said.lineno)
    return image


#: The modes whose colours an embedded profile converts, and the mode each becomes in sRGB.
_PROFILE_MODES = {"RGB": "RGB", "RGBA": "RGBA", "CMYK": "RGB"}


def _to_srgb(img: Image.Image) -> Image.Image:
    """`img` with its colours converted to sRGB when it embeds another colour profile (ICC). An iPhone's Display P3
    photo read as sRGB numbers comes out washed out, a CMYK one with the wrong hues. sRGB profiles, images without
    one, and profiles LittleCMS cannot read (damaged: the numbers are read as sRGB, what every viewer without colour
    management does) are left as they are; so are grey and 16-bit images."""
    icc = img.info.get("icc_profile")
    if not icc:
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode not in _PROFILE_MODES:
        return img
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(source).lower() or source.profile.xcolor_space.strip() != \
                img.mode.rstrip("A"):
            return img
        return ImageCms.profileToProfile(img, source, _srgb_profile(), outputMode=_PROFILE_MODES[img.mode],
                                         renderingIntent=ImageCms.getDefaultIntent(source))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return img


@functools.lru_cache(maxsize=1)
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    """LittleCMS' built-in sRGB profile, made once."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode as RGB: alpha composited on white, 16/32-bit and float modes scaled to 8 bits."""
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I") or img.mode == "F":
        return Image.fromarray(_array_to_uint8(np.asarray(img))).convert("RGB")
    if img.mode in ("LA", "PA", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        return Image.alpha_composite(Image.new("RGBA", img.size, "white"), img).convert("RGB")
    return img.convert("RGB")
