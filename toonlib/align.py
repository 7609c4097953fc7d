"""Face alignment: 68 facial landmarks (face-alignment or dlib) and the FFHQ crop.

`align_face(photo)` finds the largest face, computes the FFHQ crop square from its landmarks
(NVlabs ffhq-dataset recipe, docs/design.md section 6) and returns an `AlignedFace`: the aligned
image plus what is needed to map it back into the photo (`crop_to_photo_transform`).

Defined behaviour:

- Input: path, bytes, PIL image or numpy array (RGB order). EXIF orientation is applied first;
  every mode becomes 8-bit RGB (`toonlib.images.read_image`): transparent images are composited on white,
  16-bit data is scaled to 8 bits, float arrays are read as [0, 1] (or [0, 255] if any value
  exceeds 1; one in a generator's [-1, 1] is refused). Unreadable input raises `ImageReadError`.
- Huge photos: faces are detected on a copy of at most `DETECT_MAX_PIXELS` pixels (a panorama keeps its
  height, and its faces their size, better than by its longest side); the landmarks are then predicted on the
  full-resolution photo inside the scaled-up boxes, and the crop is taken from the full photo.
- Sideways faces: when the upright photo shows none, it is searched turned a quarter either way, then upside
  down (a phone photo without EXIF orientation); the crop, which follows the eyes, comes out upright.
- No face: `NoFaceError`. Several faces: the largest (by `face_size`) unless `face_index` says
  otherwise; `align_faces` returns all of them, largest first.
- Small faces: a warning when the crop square is less than half the output size, i.e. the face
  is upsampled more than 2x and the result will look blurry.

Coordinates are (x, y) in pixels with the centre of the top-left pixel at (0, 0), the convention
of dlib, face-alignment and numpy indexing.
"""
from __future__ import annotations

import importlib.util
import inspect
import numbers
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image

from .images import ImageInput, describe_source, read_image
from .messages import ToonlibWarning, check_count, counted, install_line, summary, warn
from .options import DETECTORS, MAX_ALIGN_SIZE

__all__ = [
    "DETECTORS",
    "AlignedFace",
    "LandmarkBackendError",
    "NoFaceError",
    "FaceIndexError",
    "SmallFaceWarning",
    "align_face",
    "align_faces",
    "check_detector",
    "crop_to_photo_transform",
    "face_position",
    "ffhq_quad",
    "photo_to_crop",
    "require_detector",
]

class SmallFaceWarning(ToonlibWarning):
    """A face whose crop is upsampled more than 2x to the output size (its toon is blurred); callers that resample
    it anyway silence it by this category (its text names the photo and the face)."""


Face = tuple[np.ndarray, np.ndarray]  # (box [x0, y0, x1, y1], landmarks [68, 2]) in detection-image pixels
Backend = Callable[[np.ndarray, Optional[np.ndarray]], list[Face]]

DETECT_MAX_PIXELS = 2048 * 2048  # detect on a copy no larger than this (SFD activations grow with the pixel count)
DLIB_UPSAMPLE_MAX_SIDE = 1024  # dlib upsamples images up to this size once, so faces down to ~40 px are found;
# a larger one only when no face was found without (upsampling costs ~4x the search)
DLIB_MIN_SCORE = 0.5  # dlib HOG scores: real frontal faces ~1-1.5; face-like patterns (suit emblems) ~0
MIN_FACE_FRACTION = 0.5  # warn when the crop square is smaller than this fraction of the output size

# dlib's: the `dlib` extra, as README says it (dlib-bin and face_recognition_models by name, and "work offline" said
# twice where `_dlib_advice` came before it; forty-second session's audit)
_INSTALL_HINT = {"face-alignment": "`pip install face-alignment`", "dlib": f"`{install_line('dlib')}`"}
#: The modules each landmark backend imports (`_require`): dlib's 68-point model is the face_recognition_models package.
_MODULES = {"face-alignment": ("face_alignment",), "dlib": ("dlib", "face_recognition_models")}
_FACE_ALIGNMENT_WEIGHTS = ("face-alignment-sfd", "face-alignment-2dfan4")  # registry names (toonlib.models)
_BACKENDS: dict = {}  # (detector, device) -> backend, built once per process
# The backends are shared and not thread-safe: two threads in dlib's detector at once crashed the process or returned
# another photo's landmarks. One face search at a time (reentrant: 'auto' builds 'face_alignment' or 'dlib').
_LANDMARKS_LOCK = threading.RLock()


class NoFaceError(ValueError):
    """No face was found in the photo."""


class FaceIndexError(IndexError):
    """A `face_index` beyond the faces found in a photo: `face_index` as asked, `count` the faces found (for callers
    that say it in their own words, as the command line's `--face N`)."""

    def __init__(self, face_index: int | None, count: int) -> None:
        super().__init__(f"face_index={face_index!r} is out of range: {counted(count, 'face')} found "
                         "(index 0 is the largest)")
        self.face_index, self.count = face_index, count


class LandmarkBackendError(RuntimeError):
    """No usable landmark backend (face-alignment or dlib). `summary`: the cause without the alternatives."""

    def __init__(self, message: str, summary: str | None = None) -> None:
        super().__init__(message)
        self.summary = summary or message


@dataclass(repr=False, eq=False)  # by identity, as ProjectionResult
class AlignedFace:
    """One FFHQ-aligned face and where it came from.

    `landmarks` (68 x 2, iBUG order) and `quad` (4 x 2: top-left, bottom-left, bottom-right,
    top-right corners of the crop square) are in the coordinates of the upright photo.
    `face_size` is the side of the crop square in photo pixels (about 4x the eye distance). `faces_in_photo`: how
    many faces were found in the photo (`say_other_faces`).
    """

    image: Image.Image
    landmarks: np.ndarray
    quad: np.ndarray
    face_size: float
    faces_in_photo: int = 1

    def __repr__(self) -> str:
        """The crop and where it lies in the photo, on one line (the dataclass's printed 68 landmarks)."""
        x, y = self.quad.mean(axis=0)
        return (f"AlignedFace(image={summary(self.image)}, "
                f"face_size={self.face_size:.1f} px, centre=({x:.1f}, {y:.1f}) in the photo)")

    def crop_to_photo(self) -> np.ndarray:
        """3x3 matrix mapping crop pixel coordinates to photo pixel coordinates."""
        return crop_to_photo_transform(self.quad, self.image.width)

    def landmarks_in_crop(self) -> np.ndarray:
        """The landmarks in the coordinates of `image` (68 x 2)."""
        return photo_to_crop(self.landmarks, self.quad, self.image.width)


def align_face(image: ImageInput, output_size: int = 1024, detector: str = "auto",
               face_index: int | None = None, transform_size: int = 4096,
               device: str | None = None, *, name: str | None = None) -> AlignedFace:
    """The FFHQ-aligned crop of the largest face in `image` (or the `face_index`-th largest).

    `detector`: 'auto' (face-alignment if it can be built, else dlib), 'face_alignment' or 'dlib'.
    `transform_size`: the size of the intermediate QUAD warp (raised to `output_size` if smaller).
    `device`: torch device for face-alignment (default: cuda if available). `name`: how messages call the image
    (default: its quoted path, or "the image").
    """
    _check_sizes(output_size, transform_size)
    photo = read_image(image)
    called = describe_source(image) if name is None else name
    faces = _find_faces(photo, detector, device, called)
    position = face_position(face_index, len(faces))
    return _align(photo, faces[position], output_size, transform_size, len(faces),
                  _which_face(position, len(faces), called))


def align_faces(image: ImageInput, output_size: int = 1024, detector: str = "auto",
                transform_size: int = 4096, device: str | None = None, *, name: str | None = None
                ) -> list[AlignedFace]:
    """FFHQ-aligned crops of every face in `image`, largest first (see `align_face`). `name`: how messages call
    the image (default: its quoted path, or "the image")."""
    _check_sizes(output_size, transform_size)
    photo = read_image(image)
    called = describe_source(image) if name is None else name
    faces = _find_faces(photo, detector, device, called)
    return [_align(photo, landmarks, output_size, transform_size, len(faces), _which_face(i, len(faces), called))
            for i, landmarks in enumerate(faces)]


def _which_face(position: int, count: int, name: str) -> str:
    """How a message calls face `position` (0: the largest) of `count` in the image called `name`."""
    return f"face {position % count + 1} of {count} in {name}" if count > 1 else f"face in {name}"  # -1: the last


def say_other_faces(face: AlignedFace, name: str) -> None:
    """Warn that `face`, the largest, is the one used of a photo where others were found: a group photo's others were
    dropped without a word, `--all-faces` found only in `--help` (thirty-third session's audit)."""
    if face.faces_in_photo > 1:
        warn(f"{face.faces_in_photo} faces found in {name}: the largest is used; --all-faces (all_faces=) takes each")


def face_position(face_index: int | None, count: int) -> int:
    """The list position of `face_index` (None: 0, the largest; negative counts from the smallest) among `count`
    faces found; ValueError for a `face_index` that is not a whole number, `FaceIndexError` (an IndexError) saying how
    many faces there are for one out of range."""
    check_face_index(face_index)
    index = 0 if face_index is None else face_index
    if not -count <= index < count:
        raise FaceIndexError(face_index, count)
    return int(index)


def check_face_index(face_index: int | None) -> None:
    """ValueError for a `face_index` that is neither None nor a whole number (before any photo is read)."""
    if face_index is not None and (isinstance(face_index, bool) or not isinstance(face_index, numbers.Integral)):
        raise ValueError(f"face_index must be a whole number (0: the largest face, 1: the next, -1: the smallest) "
                         f"or None, got {face_index!r}")


def check_detector(detector: str) -> None:
    """Raise ValueError unless `detector` is one of `DETECTORS`."""
    if detector not in DETECTORS:
        close = detector.strip().lower().replace("-", "_") if isinstance(detector, str) else None
        raise ValueError(f"detector must be {', '.join(map(repr, DETECTORS[:-1]))} or {DETECTORS[-1]!r}, "
                         f"got {detector!r}" + (f": did you mean {close!r}?" if close in DETECTORS else ""))


def require_detector(detector: str) -> None:
    """`check_detector`, and for 'dlib' a `LandmarkBackendError` with the install line where dlib or its landmark model
    is not installed: for callers that load models before the first face (`toonlib toonify`, `toonlib app`, the
    notebooks' set-up cells), which said it only after the models (and LPIPS' VGG16, 553 MB) had downloaded and loaded,
    where `toonlib align` says it at once (forty-second session's audit). 'auto' and 'face_alignment' are built at the
    first face (`_get_backend`): their weights download then, and 'auto' falls back to dlib."""
    check_detector(detector)
    if detector == "dlib":
        _require(_DlibBackend.name)


def _check_sizes(output_size: int, transform_size: int) -> None:
    """ValueError, before the photo is read, for sizes that are not whole numbers >= 1 (0 was a ZeroDivisionError
    after the face search, transform_size='4096' a TypeError from a comparison)."""
    if (isinstance(output_size, bool) or not isinstance(output_size, numbers.Integral) or output_size < 1
            or output_size > MAX_ALIGN_SIZE):  # 100000: as `toonlib align --size`, killed for memory
        raise ValueError(f"output_size is the crop's width in px (1024 for FFHQ models), a whole number from 1 to "
                         f"{MAX_ALIGN_SIZE}; got {output_size!r}")
    check_count("transform_size (the intermediate warp's width in px)", transform_size)
    if transform_size > MAX_ALIGN_SIZE:  # a bare MemoryError after the face search (thirty-eighth session's audit)
        raise ValueError(f"transform_size is the intermediate warp's width in px (4096 for FFHQ), a whole number from "
                         f"1 to {MAX_ALIGN_SIZE}; got {transform_size!r}")


# ----------------------------------------------------------------------------------------------
# Landmarks


def _find_faces(photo: Image.Image, detector: str, device: str | None, name: str) -> list[np.ndarray]:
    """68-point landmarks of every face in `photo` (photo coordinates), largest face first; of the photo turned a
    quarter either way or upside down when the upright photo shows none (detectors find upright faces)."""
    pixels = np.asarray(photo)
    with _LANDMARKS_LOCK:
        backend = _get_backend(detector, device)
        for turns in (0, 1, 3, 2):  # quarter turns counter-clockwise, as np.rot90
            faces = _detect(backend, np.rot90(pixels, turns).copy())  # canonical strides, which dlib checks
            if faces:
                break
    if not faces:
        width, height = photo.size
        scale = _detection_scale(width, height)
        shrunk = ("" if scale == 1.0 else
                  f"; faces are searched for in a copy shrunk to {round(width * scale)} x {round(height * scale)} px, "
                  f"so in this {width} x {height} photo that is ~{round(100 / scale, -1):.0f} px: crop the photo "
                  "around the face")
        # the head upright: a face tilted ~40 degrees (detectors find upright ones) was told to be larger (audit)
        raise NoFaceError(f"no face was found in {name}; use a larger, frontal, well-lit photo "
                          f"in which the face is at least ~100 px wide, the head upright{shrunk}")
    landmarks = [_unturn(np.asarray(lm, dtype=np.float64), turns, photo.size) for _, lm in faces]
    return sorted(landmarks, key=lambda lm: -quad_size(ffhq_quad(lm)))


def _detect(backend: Backend, pixels: np.ndarray) -> list[Face]:
    """The faces in `pixels`, found on a copy of at most `DETECT_MAX_PIXELS`, their landmarks on `pixels` itself."""
    height, width = pixels.shape[:2]
    scale = _detection_scale(width, height)
    if scale == 1.0:
        return backend(pixels, None)
    small = Image.fromarray(pixels).resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                           Image.Resampling.LANCZOS)
    # box coordinates scale with the pixel edges: (x + 0.5) / scale - 0.5
    boxes = [(box + 0.5) / scale - 0.5 for box, _ in backend(np.asarray(small), None)]
    return backend(pixels, np.array(boxes)) if boxes else []


def _detection_scale(width: int, height: int) -> float:
    """How much a photo is shrunk for the face search: to at most `DETECT_MAX_PIXELS` pixels (1.0: not at all)."""
    return min(1.0, float(np.sqrt(DETECT_MAX_PIXELS / (width * height))))


def _unturn(points: np.ndarray, turns: int, size: tuple[int, int]) -> np.ndarray:
    """Points [K, 2] in a `size` (width, height) photo turned `turns` quarter turns counter-clockwise
    (np.rot90) in the coordinates of the photo itself."""
    width, height = size
    x, y = points[:, 0], points[:, 1]
    return {0: points, 1: np.stack([width - 1 - y, x], axis=1), 2: np.stack([width - 1 - x, height - 1 - y], axis=1),
            3: np.stack([y, height - 1 - x], axis=1)}[turns]


def _get_backend(detector: str, device: str | None) -> Backend:
    """The cached landmark backend for `detector` ('auto', 'face_alignment' or 'dlib')."""
    from .devices import default_device

    check_detector(detector)
    # a device this machine lacks, or a typo, is refused whatever the detector; None is the device it means (a
    # Toonifier passes 'cpu': 'auto' was decided twice, its fallback warning said twice; forty-third session's audit)
    device = default_device(device)
    if device.type == "cuda" and device.index is None:  # the GPU it means now: 03's set-up cell builds it on
        import torch  # 'cuda' (`notebook.prepare_landmarks`), its panel asks on its model's 'cuda:0': one backend

        device = torch.device("cuda", torch.cuda.current_device())
    device = str(device)
    key = (detector, None if detector == "dlib" else device)
    if key not in _BACKENDS:
        if detector == "auto":
            backend = _auto_backend(device)
        elif detector == "face_alignment":
            backend = _build(_FaceAlignmentBackend, device)
        else:
            backend = _build(_DlibBackend)
        _BACKENDS[key] = backend
    return _BACKENDS[key]


def _build(backend_class: type, *args) -> Backend:
    try:
        return backend_class(*args)
    except LandmarkBackendError:  # the backend's own message: not installed, weights missing
        raise
    except Exception as exc:  # an installed package that fails to import, a damaged model file, ...
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise LandmarkBackendError(f"{backend_class.name} is not usable ({detail})") from exc


def _auto_backend(device: str | None) -> Backend:
    """face-alignment if it can be built (its weights are fetched on first use), else dlib."""
    try:
        return _get_backend("face_alignment", device)
    except LandmarkBackendError as fa_error:
        try:
            backend = _get_backend("dlib", None)
        except LandmarkBackendError as dlib_error:
            # face-alignment's cause alone: its message ends with the advice to install dlib, which dlib's error
            # gives again (forty-second session's audit)
            raise LandmarkBackendError(f"no face landmark backend is usable: {fa_error.summary}; {dlib_error}"
                                       ) from None
        warn(f"{fa_error.summary}; using dlib's landmarks instead")
        return backend


def _require(backend_name: str) -> None:
    """Raise `LandmarkBackendError` with the install command when a module of the backend (`_MODULES`) is not
    installed. dlib installed without face_recognition_models is said so: it said "dlib is not installed" (forty-second
    session's audit)."""
    missing = [module for module in _MODULES[backend_name] if importlib.util.find_spec(module) is None]
    if missing:
        what = ("dlib's 68-point landmark model" if missing[0] == "face_recognition_models" else backend_name)
        raise LandmarkBackendError(f"{what} is not installed (no module {missing[0]!r}): "
                                   f"{_INSTALL_HINT[backend_name]}")


def _dlib_advice() -> str:
    if all(importlib.util.find_spec(module) for module in _MODULES["dlib"]):
        return "or use dlib's landmarks: --detector dlib (detector='dlib')"
    return f"or install dlib's landmarks, which work offline: {_INSTALL_HINT['dlib']}"


class _FaceAlignmentBackend:
    """Landmarks from the face-alignment package (SFD detector + 2D FAN).

    Its two weights files are fetched through `toonlib.fetch` into torch hub's checkpoints folder, where
    face-alignment finds them, so it never downloads them itself.
    """

    name = "face-alignment"

    def __init__(self, device: str | None) -> None:
        _require(self.name)
        from .download import DownloadError, fetch, local_path

        for weights in _FACE_ALIGNMENT_WEIGHTS:
            try:
                fetch(weights)
            except DownloadError as exc:
                missing = [local_path(name).name for name in _FACE_ALIGNMENT_WEIGHTS if not local_path(name).is_file()]
                summary = (f"face-alignment is not usable: its weights ({', '.join(missing)}) are not in "
                           f"{exc.path.parent} and could not be downloaded ({exc.reason}); `toonlib fetch "
                           f"{' '.join(_FACE_ALIGNMENT_WEIGHTS)}` on a machine with internet gets them")
                raise LandmarkBackendError(f"{summary} (copy them there); {_dlib_advice()}", summary) from None

        import face_alignment

        from .devices import default_device

        device = str(default_device(device))
        types = face_alignment.LandmarksType
        kwargs = {"device": device, "flip_input": False, "face_detector": "sfd"}
        if "compile" in inspect.signature(face_alignment.FaceAlignment).parameters:
            kwargs["compile"] = False  # face-alignment 1.5 compiles by default: ~1 min on CPU, no gain here
        self.model = face_alignment.FaceAlignment(getattr(types, "TWO_D", None) or types._2D, **kwargs)

    def __call__(self, image: np.ndarray, boxes: np.ndarray | None) -> list[Face]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No faces were detected." (we raise NoFaceError instead)
            if boxes is None:
                landmarks, _, boxes = self.model.get_landmarks_from_image(image, return_bboxes=True)
            else:
                landmarks = self.model.get_landmarks_from_image(image, detected_faces=list(boxes))
        if landmarks is None:
            return []
        return [(np.asarray(box[:4], dtype=np.float64), np.asarray(lm)[:, :2]) for box, lm in zip(boxes, landmarks)]


class _DlibBackend:
    """Landmarks from dlib: HOG face detector + the 68-point predictor of `face_recognition_models`."""

    name = "dlib"

    def __init__(self) -> None:
        _require(self.name)
        import dlib

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(_dlib_model_path()))

    def __call__(self, image: np.ndarray, boxes: np.ndarray | None) -> list[Face]:
        if boxes is None:
            upsample = 1 if max(image.shape[:2]) <= DLIB_UPSAMPLE_MAX_SIDE else 0
            rects, _, _ = self.detector.run(image, upsample, DLIB_MIN_SCORE)
            if not rects and not upsample:  # a larger photo whose only faces are small (<~80 px): upsampled once
                rects, _, _ = self.detector.run(image, 1, DLIB_MIN_SCORE)
        else:
            rects = [self.dlib.rectangle(*(int(v) for v in np.rint(box[:4]))) for box in boxes]
        faces = []
        for rect in rects:
            shape = self.predictor(image, rect)
            landmarks = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            faces.append((np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float64), landmarks))
        return faces


def _dlib_model_path() -> Path:
    """The 68-point model inside `face_recognition_models`, found without importing it.

    (Importing it needs `pkg_resources`, which setuptools >= 81 no longer ships.)
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the face_recognition_models package is not installed")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / "shape_predictor_68_face_landmarks.dat"
        if path.is_file():
            return path
    raise FileNotFoundError("face_recognition_models has no models/shape_predictor_68_face_landmarks.dat")


# ----------------------------------------------------------------------------------------------
# The FFHQ crop


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop square for 68 landmarks: corners top-left, bottom-left, bottom-right, top-right."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (68, 2):  # dlib's 5-point landmarks failed with "index 48 is out of bounds"
        raise ValueError(f"ffhq_quad takes the 68 facial landmarks (iBUG order, x and y) as a 68 x 2 array, got shape "
                         f"{list(landmarks.shape)}: find them with align_face(photo).landmarks")
    eye_left = landmarks[36:42].mean(axis=0)
    eye_right = landmarks[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (landmarks[48] + landmarks[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]  # the face's horizontal axis
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)  # half the side of the square
    y = np.flipud(x) * [-1, 1]  # x turned 90 degrees: the face's vertical axis, pointing down
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def crop_to_photo_transform(quad: np.ndarray, output_size: int) -> np.ndarray:
    """3x3 matrix A with [x, y, 1]_photo = A @ [u, v, 1]_crop for an `output_size` crop of `quad`.

    Pixel coordinates put the centre of the top-left pixel at (0, 0). Pillow's `Image.transform`
    puts it at (0.5, 0.5) instead; for pasting a crop back into the photo with Pillow use
    `data = (T @ inv(A) @ inv(T))[:2].ravel()` with `T = [[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]]`
    and `Image.Transform.AFFINE`.
    """
    quad = np.asarray(quad, dtype=np.float64)
    step_u = (quad[3] - quad[0]) / output_size  # photo pixels per crop pixel, along the crop's rows
    step_v = (quad[1] - quad[0]) / output_size  # ... and along its columns
    origin = quad[0] + 0.5 * (step_u + step_v)  # photo position of crop pixel (0, 0)
    return np.array([[step_u[0], step_v[0], origin[0]],
                     [step_u[1], step_v[1], origin[1]],
                     [0.0, 0.0, 1.0]])


def photo_to_crop(points: np.ndarray, quad: np.ndarray, output_size: int) -> np.ndarray:
    """Points [K, 2] in photo coordinates (landmarks) in the coordinates of the `output_size` crop of `quad`
    (`crop_to_photo_transform` inverted)."""
    to_crop = np.linalg.inv(crop_to_photo_transform(quad, output_size))
    return points @ to_crop[:2, :2].T + to_crop[:2, 2]


def quad_size(quad: np.ndarray) -> float:
    """The side of a crop square `quad` (4 x 2 corners, as `AlignedFace.quad`) in photo pixels."""
    return float(np.hypot(*(quad[3] - quad[0])))


def _align(photo: Image.Image, landmarks: np.ndarray, output_size: int, transform_size: int,
           faces_in_photo: int, which: str) -> AlignedFace:
    """The `AlignedFace` of `landmarks`; `which` names it in the warning of a small face (it named no photo, and the
    command line, which says a text once, left out a second photo's of the same size; thirty-fourth session)."""
    quad = ffhq_quad(landmarks)
    face_size = quad_size(quad)
    if face_size < output_size * MIN_FACE_FRACTION:
        warn(f"the {which} is small: its crop is {face_size:.0f} px wide in the photo but the output is "
             f"{output_size} px, so it is upsampled {output_size / face_size:.1f}x and will look blurry; "
             "use a photo in which the face is larger", SmallFaceWarning)
    image = _warp_quad(photo, quad, output_size, max(transform_size, output_size))
    return AlignedFace(image=image, landmarks=landmarks, quad=quad, face_size=face_size, faces_in_photo=faces_in_photo)


def _warp_quad(img: Image.Image, quad: np.ndarray, output_size: int, transform_size: int) -> Image.Image:
    """The FFHQ recipe: shrink, crop with a border, pad with blurred and faded edges, warp, resize."""
    img, quad = _shrink(img, quad, output_size)
    qsize = quad_size(quad)
    border = max(int(np.rint(qsize * 0.1)), 3)
    img, quad = _crop(img, quad, border)
    img, quad = _pad(img, quad, qsize, border)
    # Pillow's QUAD corners are in edge coordinates (pixel centres at +0.5)
    img = img.transform((transform_size, transform_size), Image.Transform.QUAD, (quad + 0.5).flatten(),
                        Image.Resampling.BILINEAR)
    if output_size < transform_size:
        img = img.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return img


def _shrink(img: Image.Image, quad: np.ndarray, output_size: int) -> tuple[Image.Image, np.ndarray]:
    """Downscale by an integer factor while the quad stays over twice the output size.

    As in the original recipe, the quad is divided by the factor (`quad / shrink`), although the
    exact mapping of pixel centres would be `(quad + 0.5) / shrink - 0.5`: the FFHQ models were trained
    on crops made this way, so their faces sit (shrink - 1) / 2 photo pixels off the exact quad.
    """
    shrink = int(np.floor(quad_size(quad) / output_size * 0.5))
    if shrink <= 1:
        return img, quad
    size = (int(np.rint(img.width / shrink)), int(np.rint(img.height / shrink)))
    return img.resize(size, Image.Resampling.LANCZOS), quad / shrink


def _crop(img: Image.Image, quad: np.ndarray, border: int) -> tuple[Image.Image, np.ndarray]:
    """Crop to the quad's bounding box plus `border`, within the image."""
    left, top = np.floor(quad.min(axis=0)).astype(int) - border
    right, bottom = np.ceil(quad.max(axis=0)).astype(int) + border
    box = (int(max(left, 0)), int(max(top, 0)), int(min(right, img.width)), int(min(bottom, img.height)))
    if box == (0, 0, img.width, img.height):
        return img, quad
    return img.crop(box), quad - box[:2]


def _pad(img: Image.Image, quad: np.ndarray, qsize: float, border: int) -> tuple[Image.Image, np.ndarray]:
    """Where the quad (plus border) leaves the image: reflect-pad, blur and fade the padding to the median."""
    low = np.floor(quad.min(axis=0)).astype(int)
    high = np.ceil(quad.max(axis=0)).astype(int)
    left, top = np.maximum(border - low, 0)
    right, bottom = np.maximum(high - img.size + border, 0)
    if max(left, top, right, bottom) <= border - 4:
        return img, quad
    left, top, right, bottom = np.maximum([left, top, right, bottom], int(np.rint(qsize * 0.3)))

    from scipy.ndimage import gaussian_filter

    pixels = np.pad(np.asarray(img, dtype=np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w = pixels.shape[:2]
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    # 1 on the outer edge, 0 where the photo starts, negative inside it
    mask = np.maximum(1.0 - np.minimum(xs / left, (w - 1 - xs) / right),
                      1.0 - np.minimum(ys / top, (h - 1 - ys) / bottom))
    blur = qsize * 0.02
    blur_weight = np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    fade_weight = np.clip(mask, 0.0, 1.0)
    for channel in np.moveaxis(pixels, 2, 0):  # one channel at a time keeps the float temporaries small
        channel += (gaussian_filter(channel, blur) - channel) * blur_weight
        channel += (np.median(channel) - channel) * fade_weight
    img = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
    return img, quad + [left, top]
