"""Photo in, toon out: align -> project into the base model -> render with the blended model.

    toonifier = Toonifier()                         # loads the models once (downloads on first use)
    result = toonifier("me.jpg", paste_back=True)
    result.toon.save("me-toon.png"); result.pasted.save("me-in-photo.png")

`toonify(photo, ...)` does the same for one photo. The base model (FFHQ) explains the photo; its
latent is then rendered by the blended generator, whose low-resolution layers come from the toon
model. With `swap_res=None` the published blended model is used; with a resolution, the toon model
is re-blended with the base at that resolution (`Toonifier.set_blend` changes it in place).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from .align import AlignedFace, align_faces, crop_to_photo_transform
from .blending import Blender
from .checkpoints import GeneratorLike, Networks, load_generator, load_network
from .devices import default_device
from .images import is_image_file, read_image, to_pil
from .networks import Generator
from .projection import ProjectionResult, project, render, w_statistics

DEFAULT_BASE = "ffhq-1024-tf"
DEFAULT_TOON = "toonify-blended-tf"  # Toonify's file: the fine-tuned toon model is its G, the blend its G_ema


@dataclass
class ToonifyResult:
    """Every intermediate of one toonified face.

    photo: the upright input photo. aligned: the FFHQ crop. landmarks / quad: in photo coordinates.
    w: [1, num_ws, w_dim] latent in the base model's W(+) space. reconstruction: the base model's
    rendering of w (how well the projection explains the photo). toon: the blended model's rendering.
    pasted: the toon face warped back into the photo (with `paste_back=True`). losses: per step.
    """

    photo: Image.Image
    aligned: Image.Image
    landmarks: np.ndarray
    quad: np.ndarray
    w: torch.Tensor
    reconstruction: Image.Image
    toon: Image.Image
    losses: np.ndarray
    pasted: Image.Image | None = None


class Toonifier:
    """Loads the base and toon models once and toonifies any number of photos with them.

    base: the model photos are projected into (FFHQ). toon: where the toon generator comes from: a
    checkpoint holding the blended model (with `swap_res=None`) or the fine-tuned toon model (with a
    `swap_res`). `toon_network` picks the toon model inside that checkpoint ("G" for Toonify's file).
    Models may be registry names, paths, URLs, `Generator`s or `Networks`.
    """

    def __init__(self, base: GeneratorLike = DEFAULT_BASE, toon: GeneratorLike = DEFAULT_TOON,
                 swap_res: int | None = None, level: int = 0, blend_width: float | None = None,
                 toon_network: str = "G", device: torch.device | str | None = None, detector: str = "auto"):
        self.device = default_device(device)
        self.detector = detector
        self.base = load_generator(base, device=self.device).eval()
        # A toon checkpoint is read once: its G_ema (the published blend) now, its toon model on re-blending.
        self._toon = _without_discriminator(load_network(toon)) if isinstance(toon, (str, os.PathLike)) else toon
        self._toon_network = toon_network
        self.published_blend = load_generator(self._toon, device=self.device).eval()
        self._blender: Blender | None = None
        self._w_stats: tuple[torch.Tensor, float] | None = None
        self.generator = self.published_blend
        if swap_res is not None:
            self.set_blend(swap_res, level, blend_width)

    def set_blend(self, swap_res: int | None, level: int = 0, blend_width: float | None = None) -> Generator:
        """Re-blend the toon model with the base at `swap_res` (None: back to the published blend)."""
        if swap_res is None:
            self.generator = self.published_blend
            return self.generator
        if self._blender is None:
            toon = load_generator(self._toon, self._toon_network, device=self.device).eval()
            self._blender = Blender(low=toon, high=self.base)
        self.generator = self._blender.set(swap_res, level, blend_width)
        return self.generator

    def align(self, photo, all_faces: bool = False, face_index: int | None = None) -> list[AlignedFace]:
        """The FFHQ crops of the faces to toonify (the largest one unless `all_faces` / `face_index`)."""
        faces = align_faces(photo, output_size=self.base.img_resolution, detector=self.detector)
        if all_faces:
            return faces
        index = 0 if face_index is None else face_index
        if not -len(faces) <= index < len(faces):
            raise IndexError(f"face_index={face_index} is out of range: {len(faces)} faces found")
        return [faces[index]]

    def __call__(self, photo, *, all_faces: bool = False, face_index: int | None = None, space: str = "w+",
                 steps: int | None = None, seed: int = 0, paste_back: bool = False, progress: bool = True,
                 **project_kwargs) -> ToonifyResult | list[ToonifyResult]:
        """Toonify the largest face of `photo` (path, PIL image, array or bytes); a list with `all_faces`.

        Raises `NoFaceError` / `ImageReadError` (both ValueErrors) for a photo without a usable face.
        """
        [(_, outcome)] = self.toonify_many([photo], all_faces=all_faces, face_index=face_index, space=space,
                                           steps=steps, seed=seed, paste_back=paste_back, progress=progress,
                                           **project_kwargs)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome if all_faces else outcome[0]

    def toonify_many(self, photos: Sequence, batch_size: int = 4, *, all_faces: bool = False,
                     face_index: int | None = None, space: str = "w+", steps: int | None = None, seed: int = 0,
                     paste_back: bool = False, progress: bool = False, **project_kwargs
                     ) -> Iterator[tuple[object, list[ToonifyResult] | Exception]]:
        """Toonify many photos, projecting the faces of `batch_size` photos at once.

        Yields `(photo, results)` in input order, or `(photo, error)` for a photo that cannot be read or
        has no face: one bad photo never stops the batch.
        """
        for start in range(0, len(photos), batch_size):
            prepared: list[tuple] = []  # (photo, upright image, faces) or (photo, error)
            for photo in photos[start:start + batch_size]:
                try:
                    upright = read_image(photo)
                    prepared.append((photo, upright, self.align(upright, all_faces, face_index)))
                except (ValueError, IndexError, OSError) as exc:
                    prepared.append((photo, exc))
            faces = [face.image for item in prepared if len(item) == 3 for face in item[2]]
            if faces and self._w_stats is None:
                self._w_stats = w_statistics(self.base)  # once per Toonifier, not once per batch
            projection = project(self.base, faces, space=space, steps=steps, seed=seed + start, progress=progress,
                                 w_stats=self._w_stats, **project_kwargs) if faces else None
            index = 0
            for item in prepared:
                if len(item) == 2:
                    yield item
                    continue
                photo, upright, aligned = item
                yield photo, [self._result(upright, face, projection, index + k, paste_back)
                              for k, face in enumerate(aligned)]
                index += len(aligned)

    def render(self, w: torch.Tensor) -> Image.Image | list[Image.Image]:
        """The current toon generator's image(s) of latent(s) w [N, num_ws, w_dim] (const noise)."""
        return to_pil(render(self.generator, w)[0] if w.shape[0] == 1 else render(self.generator, w))

    def _result(self, photo: Image.Image, face: AlignedFace, projection: ProjectionResult, i: int,
                paste_back: bool) -> ToonifyResult:
        w = projection.w[i:i + 1]
        toon = self.render(w)
        return ToonifyResult(photo=photo, aligned=face.image, landmarks=face.landmarks, quad=face.quad, w=w,
                             reconstruction=to_pil(projection.images[i]), toon=toon, losses=projection.losses[:, i],
                             pasted=paste(photo, toon, face.quad) if paste_back else None)


def toonify(photo, base: GeneratorLike = DEFAULT_BASE, toon: GeneratorLike = DEFAULT_TOON,
            swap_res: int | None = None, space: str = "w+", steps: int | None = None, **kwargs
            ) -> ToonifyResult | list[ToonifyResult]:
    """Toonify one photo (see `Toonifier`; build one yourself to reuse the models across photos).

    Extra keyword arguments go to `Toonifier.__call__` (all_faces, face_index, seed, paste_back, ...)
    or, for `level`, `blend_width`, `toon_network`, `device`, `detector`, to the `Toonifier`.
    """
    setup = {k: kwargs.pop(k) for k in ("level", "blend_width", "toon_network", "device", "detector") if k in kwargs}
    return Toonifier(base, toon, swap_res=swap_res, **setup)(photo, space=space, steps=steps, **kwargs)


def paste(photo: Image.Image, face: Image.Image, quad: np.ndarray, feather: float = 0.04) -> Image.Image:
    """Warp an aligned-crop image `face` back into `photo` through the crop `quad`, with a soft edge.

    The mask is an ellipse over the face inside the crop, blurred by `feather` x the crop size and
    zero on the crop's border, so the photo outside the crop is left exactly as it was.
    """
    size = face.width
    to_photo = crop_to_photo_transform(quad, size)
    half_pixel = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    data = (half_pixel @ np.linalg.inv(to_photo) @ np.linalg.inv(half_pixel))[:2].ravel()
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse([0.18 * size, 0.14 * size, 0.82 * size, 0.9 * size], fill=255)
    mask = np.asarray(mask.filter(ImageFilter.GaussianBlur(feather * size))).copy()
    border = max(2, size // 64)
    mask[:border], mask[-border:], mask[:, :border], mask[:, -border:] = 0, 0, 0, 0
    warp = dict(size=photo.size, method=Image.Transform.AFFINE, data=tuple(data), resample=Image.Resampling.BICUBIC)
    return Image.composite(face.convert("RGB").transform(**warp), photo.convert("RGB"),
                           Image.fromarray(mask).transform(**warp))


def _without_discriminator(nets: Networks) -> Networks:
    nets.D = None  # toonify never needs it: free its memory
    return nets


def photos_in(folder: str | os.PathLike) -> list[Path]:
    """The photos directly inside `folder`, sorted by name (what `toonlib toonify FOLDER` processes)."""
    return sorted(p for p in Path(folder).iterdir() if is_image_file(p))
