"""How much of the person survives: face-recognition distances between a photo and its reconstruction / toon.

    report = identity_report(result)          # result = Toonifier(...)(photo)
    print(report)                             # identity distance ...: reconstruction 0.38, toon 0.55
    identity_sweep(toonifier, result)         # the toon's distance at every swap resolution

The embedding is dlib's face-recognition ResNet (a 128-d descriptor; the model ships in the
`face_recognition_models` package, so nothing is downloaded). Distances are Euclidean; dlib's
documented threshold for "the same person" is 0.6 (99.38% on LFW), `SAME_PERSON`.

Every face is measured on its FFHQ-aligned crop: landmarks are predicted (dlib's 68-point model) inside
the box of the photo's own landmarks, mapped into the crop, so a reconstruction or a toon, which share
the crop's geometry, need no face detector (dlib's detector often misses cartoon faces).
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from .align import SmallFaceWarning, align_face, photo_to_crop
from .checkpoints import CheckpointError
from .images import ImageInput
from .messages import warn
from .pipeline import Toonifier, ToonifyResult  # at run time: `typing.get_type_hints` of the functions below needs them

__all__ = ["SAME_PERSON", "IdentityModelError", "IdentityReport", "face_embedding", "identity_distance",
           "identity_report", "identity_sweep"]

#: dlib's threshold: descriptors of one person are closer than this (Euclidean distance).
SAME_PERSON = 0.6
_CROP = 256  # size of the aligned crop a photo is measured on (dlib resamples the face to 150 px anyway)


@dataclass(frozen=True)
class IdentityReport:
    """dlib face-descriptor distances from the photo's face: to the reconstruction and to the toon.

    `reconstruction` is None when the inversion mode has no reconstruction ('psp-toonify').
    Below `SAME_PERSON` (0.6) dlib calls two faces the same person.
    """

    reconstruction: float | None
    toon: float

    def __str__(self) -> str:
        parts = [] if self.reconstruction is None else [f"reconstruction {self.reconstruction:.2f}"]
        parts.append(f"toon {self.toon:.2f}")
        return f"identity distance (dlib; < {SAME_PERSON} = same person): " + ", ".join(parts)


class IdentityModelError(ImportError):
    """dlib's models are missing from an installed `face_recognition_models`: the `dlib` extra is incomplete."""


class _Recognizer:
    """dlib's 68-point landmark predictor and face-recognition network, loaded once."""

    def __init__(self) -> None:
        import dlib

        from .align import _dlib_model_path  # the one place that finds face_recognition_models' files

        reinstall = "reinstall it: pip install --force-reinstall face_recognition_models"
        try:
            landmarks = _dlib_model_path()
        except FileNotFoundError as exc:
            raise IdentityModelError(f"{exc}; {reinstall}") from None
        recognition = landmarks.parent / "dlib_face_recognition_resnet_model_v1.dat"
        if not recognition.is_file():  # dlib's own error is a RuntimeError, "Unable to open ... for reading"
            raise IdentityModelError(f"face_recognition_models has no models/{recognition.name}; {reinstall}")
        self.dlib = dlib
        self.predictor = dlib.shape_predictor(str(landmarks))
        self.net = dlib.face_recognition_model_v1(str(recognition))

    def embed(self, image: Image.Image, landmarks: np.ndarray) -> np.ndarray:
        """Descriptor of the face whose 68 landmarks in `image` are about `landmarks` (re-predicted in their box)."""
        pixels = np.ascontiguousarray(np.asarray(image.convert("RGB")))
        left, top = np.floor(landmarks.min(axis=0)).astype(int)
        right, bottom = np.ceil(landmarks.max(axis=0)).astype(int)
        shape = self.predictor(pixels, self.dlib.rectangle(int(left), int(top), int(right), int(bottom)))
        return np.asarray(self.net.compute_face_descriptor(pixels, shape), dtype=np.float64)


@functools.lru_cache(maxsize=1)
def _recognizer() -> _Recognizer:
    return _Recognizer()


def face_embedding(photo: ImageInput, detector: str = "dlib") -> np.ndarray:
    """The 128-d dlib descriptor of the largest face in `photo` (any image `read_image` takes; EXIF applied).

    Raises `NoFaceError` when there is no face. `detector` finds the landmarks ('dlib', 'face_alignment',
    'auto'), as in `align_face`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallFaceWarning)  # dlib resamples the face to 150 px anyway
        face = align_face(photo, output_size=_CROP, transform_size=_CROP, detector=detector)
    return _recognizer().embed(face.image, face.landmarks_in_crop())


def identity_distance(a: ImageInput | np.ndarray, b: ImageInput | np.ndarray, detector: str = "dlib") -> float:
    """Distance between the faces of two photos (or 128-d descriptors from `face_embedding`); < 0.6: same person."""
    ea = a if _is_descriptor(a) else face_embedding(a, detector)
    eb = b if _is_descriptor(b) else face_embedding(b, detector)
    return float(np.linalg.norm(np.asarray(ea) - np.asarray(eb)))


def _is_descriptor(x: object) -> bool:
    """Whether `x` is a descriptor, a 1-D array (an image array has 2 or 3 dimensions); ValueError for one of another
    length than dlib's 128 (it was read as an image: "expected an HxW, HxWx3 or HxWx4 image array")."""
    if not (isinstance(x, np.ndarray) and x.ndim == 1):
        return False
    if x.shape != (128,):
        raise ValueError(f"a face descriptor is dlib's 128-d array, got one of length {x.shape[0]}: pass "
                         "face_embedding(photo), or the photo itself")
    return True


def identity_report(result: ToonifyResult) -> IdentityReport:
    """How far the reconstruction and the toon of a `ToonifyResult` are from the photo's face."""
    _check_result(result, "identity_report")
    recognizer = _recognizer()
    landmarks = photo_to_crop(result.landmarks, result.quad, result.aligned.width)
    photo = recognizer.embed(result.aligned, landmarks)

    def distance(image: Image.Image) -> float:
        scaled = landmarks * (image.width / result.aligned.width)
        return float(np.linalg.norm(recognizer.embed(image, scaled) - photo))

    recon = None if result.reconstruction is None else distance(result.reconstruction)
    return IdentityReport(reconstruction=recon, toon=distance(result.toon))


def _check_result(result: object, caller: str) -> None:
    """TypeError, naming what to pass, for anything but a `ToonifyResult` (an image failed at `result.landmarks`)."""
    if not isinstance(result, ToonifyResult):
        raise TypeError(f"{caller} takes a ToonifyResult (what a Toonifier returns for a photo), got "
                        f"{type(result).__name__}: for two face photos use identity_distance(a, b)")


def identity_sweep(toonifier: Toonifier, result: ToonifyResult,
                   swap_resolutions: Sequence[int | None] | None = None) -> dict[int | None, float]:
    """The toon's identity distance when `result.w` is rendered at each swap resolution (None: the published blend),
    each blend of the toonifier's own shape (its level and blend width, `Toonifier.set_swap_res`): at its swap
    resolution, the number is its toons'.

    Default: None and every resolution of the toonifier's model from 8 px; for a toonifier whose toon model cannot be
    re-blended (a blend file, a registry model that holds only a blend) None alone, with a warning saying why. The
    toonifier's blend is restored afterwards. For a table over inversion modes, call it with one `Toonifier` per mode.
    """
    if isinstance(toonifier, ToonifyResult) and isinstance(result, Toonifier):
        raise TypeError("identity_sweep(toonifier, result) takes the Toonifier first, then its result (swapped)")
    _check_result(result, "identity_sweep")
    if not isinstance(toonifier, Toonifier):  # None failed at "'NoneType' object has no attribute 'generator'"
        raise TypeError(f"identity_sweep takes the Toonifier that made the result first (it re-draws the result's "
                        f"latent), got {type(toonifier).__name__}")
    recognizer = _recognizer()
    landmarks = photo_to_crop(result.landmarks, result.quad, result.aligned.width)
    photo = recognizer.embed(result.aligned, landmarks)
    default = swap_resolutions is None
    if default:
        top = toonifier.generator.img_resolution
        swap_resolutions = [None, *(2 ** k for k in range(3, top.bit_length()))]
    previous = toonifier.blend_setting
    distances = {}
    try:
        for swap_res in swap_resolutions:
            try:
                # the toonifier's level and blend width kept: a plain level-0, hard-switch blend was measured, not
                # the toonifier's toon at its own swap resolution (forty-third session's audit)
                toonifier.set_swap_res(swap_res, previous[1:])
            except (CheckpointError, ValueError) as exc:
                if not default or swap_res is None or distances.keys() - {None}:
                    raise
                # a toon model no re-blend takes: the default table failed whole, at its first re-blend, with the
                # blend-again error (forty-third session's audit); the published blend's number is still one
                warn(f"identity_sweep measures the published blend alone: this toonifier cannot re-blend ({exc})")
                break
            toon = toonifier.render(result.w)
            distances[swap_res] = float(np.linalg.norm(
                recognizer.embed(toon, landmarks * (toon.width / result.aligned.width)) - photo))
    finally:
        toonifier.set_blend(*previous)
    return distances
