"""Photo in, toon out: align -> project into the base model -> render with the blended model.

    toonifier = Toonifier()                         # loads the models once (downloads on first use)
    result = toonifier("me.jpg", paste_back=True)
    result.toon.save("me-toon.png"); result.pasted.save("me-in-photo.png")

`toonify(photo, ...)` does the same for one photo. The base model (FFHQ) explains the photo; its
latent is then rendered by the blended generator, whose low-resolution layers come from the toon
model. With `swap_res=None` the published blended model is used; with a resolution, the toon model
is re-blended with the base at that resolution (`Toonifier.set_blend` changes it in place).

How the photo becomes a latent (`invert`, docs/design.md section 13):

| invert          | latent                                            | cost (2-core CPU, 1024 px) |
|-----------------|---------------------------------------------------|----------------------------|
| 'optimize'      | LPIPS projection into the base's W+ (500 steps)   | 5.5 min - 1.5 h            |
| 'e4e' / 'psp'   | one pass of the e4e / pSp FFHQ encoder            | 2 - 15 s                   |
| 'e4e+optimize'  | the e4e codes, refined by projection (100 steps)  | 1 - 20 min                 |
| 'psp-toonify'   | pSp's Toonify encoder: straight into the toon W+  | 1 - 10 s                   |

(benchmarks/bench_toonify.py and bench_vs_reference.py: the low ends on 2 AVX-512 cores with AVX512-BF16, where
projection runs in bfloat16, the high ends on 2 busy AVX2 cores, 3-11 s a projection
step. On an H200 GPU 500 steps took 9.5 s, benchmarks/bench_gpu.py.)

Every latent is rendered by the current toon generator, so `set_blend` works with every mode. The e4e and
pSp FFHQ encoders were trained with the rosinality conversion of NVIDIA's TF FFHQ config-f as their
decoder, the same weights as `ffhq-1024-tf`: their codes are latents of that base and of the toon models
fine-tuned from it. `psp-toonify`'s decoder is a blended Toonify generator: it renders by default, and
`set_blend` re-blends the toon model with the base as in the other modes; that mode has no reconstruction.

The base defaults to the toon model's own parent (the registry's `lineage`), and a toon model and a base
that do not look like parent and child (`blending.lineage_distance`) raise a `LineageWarning`.
"""
from __future__ import annotations

import difflib
import inspect
import io
import numbers
import os
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from . import models
from .align import (
    AlignedFace,
    align_face,
    align_faces,
    check_detector,
    check_face_index,
    crop_to_photo_transform,
    quad_size,
    say_other_faces,
)
from .blending import PAIR_WITH_ITS_BASE, UNSAVED, Blender, check_lineage, check_setting, check_swap_res, toon_generator
from .checkpoints import (
    ENCODER_KINDS,
    GENERATOR_KINDS,
    GENERATOR_NETWORKS,
    GeneratorLike,
    Networks,
    check_model,
    check_source,
    load_generator,
    load_network,
    loaded_meta,
    network_name_hint,
    split_network,
)
from .checkpoints.native import read_meta
from .devices import default_device
from .download import cache_state
from .encoders import Encoder, check_encoder_mode, holds_decoder, load_encoder
from .files import is_pipe, is_url, user_path
from .images import ImageInput, describe_source, is_hidden, is_image_file, labelled_grid, read_image, to_pil
from .messages import check_count, check_flag, summary, warn, with_article
from .networks import Generator
from .options import INVERT_MODES, OPTIMIZING_MODES
from .projection import check_project_options, default_steps, is_seed, project, render, w_statistics

DEFAULT_BASE = "ffhq-1024-tf"  # for a toon model the registry has no lineage for
DEFAULT_TOON = "toonify-blended-tf"  # Toonify's file: the fine-tuned toon model is its G, the blend its G_ema
#: How user interfaces (app, notebooks) name the inversion modes.
INVERT_LABELS = {"optimize": "optimise (slow, closest to the photo)", "e4e": "e4e encoder (one pass)",
                 "psp": "pSp encoder (one pass)", "e4e+optimize": "e4e, then optimise",
                 "psp-toonify": "pSp Toonify encoder (one pass, straight to the toon)"}
DEFAULT_ENCODERS = {"e4e": "e4e-ffhq", "psp": "psp-ffhq", "e4e+optimize": "e4e-ffhq", "psp-toonify": "psp-toonify"}
_SET_BY_TOONIFIER = frozenset({"G", "target", "w_stats", "init"})  # what `project` gets from the Toonifier itself
#: `project`'s options a toonify call refuses, and why: they were taken and did nothing (w_avg_samples: the cached
#: statistics won; save_every: frames rendered, then dropped) or ran the projection elsewhere than the models (device).
_NOT_PER_CALL = {"w_avg_samples": "the Toonifier computes the mean w once (w_statistics' samples), for every photo",
                 "save_every": "a toonify keeps no frames: toonlib.project(toonifier.base, result.aligned, "
                               "save_every=k) makes them",
                 "on_frame": "a toonify makes no frames: toonlib.project(toonifier.base, result.aligned, save_every=k, "
                             "on_frame=...) sends them",
                 "device": "the models' device is the Toonifier's: Toonifier(..., device=...)"}
_PROJECT_OPTIONS = frozenset(inspect.signature(project).parameters) - _SET_BY_TOONIFIER - set(_NOT_PER_CALL)
#: The blend a toonifier draws every photo with (`Toonifier.set_blend`, `Toonifier(swap_res=...)`): no photo's options.
_BLEND_OPTIONS = ("swap_res", "level", "blend_width")
#: The side of a picture in a result's image in a notebook (`ToonifyResult._repr_png_`), as `notebook.show` sizes them.
_SHOWN_SIZE = 256


@dataclass(repr=False, eq=False)  # by identity, as ProjectionResult
class ToonifyResult:
    """Every intermediate of one toonified face.

    photo: the upright input photo (one image, shared by the results of its faces). aligned: the FFHQ crop.
    landmarks / quad: in photo coordinates.
    w: [1, num_ws, w_dim] latent in the base model's W(+) space (with 'psp-toonify': the toon model's).
    reconstruction: the base model's rendering of w with const noise, as the toon is drawn (how well the latent
    explains the photo); None with 'psp-toonify'. toon: the blended model's rendering. pasted: the toon face warped
    back into the photo (with `paste_back=True`). losses: LPIPS per projection step (none for the encoder-only modes).
    invert: the inversion mode that made w. faces_in_photo: how many faces were found in the photo
    (`AlignedFace.faces_in_photo`: notebook 04's panel says the others it did not toonify).
    """

    photo: Image.Image
    aligned: Image.Image
    landmarks: np.ndarray
    quad: np.ndarray
    w: torch.Tensor
    reconstruction: Image.Image | None
    toon: Image.Image
    losses: np.ndarray
    pasted: Image.Image | None = None
    invert: str = "optimize"
    faces_in_photo: int = 1

    def __repr__(self) -> str:
        """The images' sizes and the latent's shape on one line (the dataclass's printed the landmarks and w)."""
        distance = f", final distance={float(self.losses[-1]):.4f}" if len(self.losses) else ""
        images = ", ".join(f"{name}={summary(getattr(self, name))}"
                           for name in ("photo", "aligned", "reconstruction", "toon", "pasted"))
        return (f"ToonifyResult(invert={self.invert!r}, {images}, w={summary(self.w)}, steps={len(self.losses)}"
                f"{distance})")

    def _repr_png_(self) -> bytes:
        """What Jupyter shows for a result: the aligned crop, the reconstruction (none with 'psp-toonify'), the toon and
        the pasted photo (with `paste_back=True`, fitted whole into its square) side by side, labelled, each at
        `notebook.display_size` (up to 256 px, as `notebook.show` shows images)."""
        return _results_png([self])

    def _shown(self, cell: int) -> dict[str, Image.Image]:
        """The pictures of `_repr_png_`'s row by label, the pasted photo padded into a `cell`-wide square."""
        shown = {name: getattr(self, name) for name in ("aligned", "reconstruction", "toon")
                 if getattr(self, name) is not None}
        if self.pasted is not None:  # what the user asked for: a photo of any shape, not squashed
            shown["pasted"] = ImageOps.pad(self.pasted, (cell, cell), color="white")
        return shown


class ToonifyResults(list):
    """The results of one photo's faces (`all_faces=True`), largest face first: a list of `ToonifyResult` that
    Jupyter shows as a row of pictures per face (a plain list showed as text)."""

    def _repr_png_(self) -> bytes | None:
        return _results_png(self) if self else None


def _results_png(results: Sequence[ToonifyResult]) -> bytes:
    """PNG bytes of `results`' pictures, a labelled row each (rows labelled "face 1", ... when there are several)."""
    from .notebook import display_size

    cell = display_size(results[0].aligned.width, _SHOWN_SIZE)
    rows = [result._shown(cell) for result in results]
    grid = labelled_grid([list(row.values()) for row in rows], col_labels=list(max(rows, key=len)), cell=cell,
                         row_labels=[f"face {i + 1}" for i in range(len(rows))] if len(rows) > 1 else None)
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return buffer.getvalue()


class BaseMismatchError(ValueError):
    """A toon model and a base whose W+ latents differ (other resolutions): the toon model cannot draw the base's
    latents. `toon_px`, `base_px`: their resolutions, for a front end that words it its own way (notebook 04 names its
    parameters, `notebook.naming_files`)."""

    def __init__(self, message: str, toon_px: int, base_px: int) -> None:
        super().__init__(message)
        self.toon_px, self.base_px = toon_px, base_px


class Toonifier:
    """Loads the models once and toonifies any number of photos with them.

    base: the model photos are inverted into (FFHQ); None: the toon model's own base (its registry
    `lineage`, or the base a `toonlib.finetune` snapshot's run started from), else `DEFAULT_BASE`. toon: where the
    toon generator comes from: a checkpoint holding the blended model (with `swap_res=None`) or the fine-tuned toon
    model (with a `swap_res`). `toon_network`
    picks the toon model inside that checkpoint for re-blending; None: the registry's choice, else
    `toon_network_in`'s: a training snapshot's "G_ema", else "G" when the file has one (Toonify's file keeps its
    toon model as G and the blend as G_ema), else "G_ema".
    invert: how a photo becomes a latent, one of `INVERT_MODES` (see the module docstring); `encoder`
    overrides the mode's registry encoder: a checkpoint path, URL or name, or an `Encoder` (then nothing
    checks that the base fits its codes, and in 'psp-toonify' mode the toon checkpoint's G_ema renders them,
    there being no decoder). Models may be registry names, paths, URLs, `Generator`s or `Networks`; a `Generator`
    or `Encoder` given is used as it is, not copied: put in eval mode and moved to the toonifier's device.
    Attributes: `base`, and `generator`, the blend that draws the toons (`set_blend` changes it in place).
    """

    def __init__(self, base: GeneratorLike | None = None, toon: GeneratorLike = DEFAULT_TOON,
                 swap_res: int | None = None, level: int = 0, blend_width: float | None = None,
                 toon_network: str | None = None, device: torch.device | str | None = None, detector: str = "auto",
                 invert: str = "optimize", encoder: Encoder | str | os.PathLike | None = None):
        check_options(invert, swap_res=swap_res, level=level, blend_width=blend_width)
        # by the argument's name: the messages named load_generator and load_encoder (forty-third session's audit)
        check_model(toon, "toon")
        if base is not None:
            check_model(base, "base")
        if encoder is not None and not isinstance(encoder, (Encoder, str, os.PathLike)):
            raise TypeError(f"encoder= takes an Encoder or a pSp / e4e checkpoint: a path, an http(s) URL or a "
                            f"registry name (`toonlib models`), or None (the mode's own); got {type(encoder).__name__}")
        named = split_network(toon)[1]  # "toon.pkl (G)", as `toonlib info` names one: that generator, blended or not
        toon, toon_network = split_network(toon, toon_network)
        check_swap_res(swap_res, toon)  # a registry name's resolution, before any download
        if swap_res is not None:
            toon_network_of(toon, toon_network)  # a registry model that holds only a blend: refused before its download
        check_encoder_mode(invert, encoder)
        check_detector(detector)
        if toon_network is not None and toon_network not in GENERATOR_NETWORKS:
            raise ValueError(f"toon_network picks the toon model in the toon checkpoint: None (the registry's choice),"
                             f" 'G' or 'G_ema'; got {toon_network!r}{network_name_hint(toon_network)}")
        for name, source in (("base", base), ("toon", toon), ("encoder", encoder)):  # before the first download
            if isinstance(source, (str, os.PathLike)):
                check_source(source, f"{name}={str(source)!r}",
                             kinds=ENCODER_KINDS if name == "encoder" else GENERATOR_KINDS)
        check_not_a_toon(base, f"base={base!r}", "give it as toon= (a Toonifier takes the base first)")
        check_not_an_encoder(toon, f"toon={toon!r}", "give it as encoder= with invert='{mode}'")
        check_not_a_base(toon, f"toon={toon!r}", "give it as base=")
        self._invert_mode = invert
        self._unblended = False  # a training snapshot as the toon: said when it draws unblended
        self._whole = False  # the toon file's G_ema is the toon model itself, no blend
        self.device = default_device(device)
        self.detector = detector
        self._base_source = default_base(toon) if base is None else base
        self._base: Generator | None = None
        self._toon_source, self._toon_network = toon, toon_network
        self.encoder: Encoder | None = None
        self._encoder_source = (None if invert == "optimize" else DEFAULT_ENCODERS[invert] if encoder is None
                                else encoder)
        decoder = None  # the checkpoint whose decoder the encoder's codes belong to
        if invert != "optimize":
            source = self._encoder_source
            if isinstance(source, Encoder):  # in eval mode, as a Generator given: in train mode, each photo moved the
                self.encoder = source.to(self.device).eval()  # caller's BatchNorm statistics (forty-first session)
            else:
                self.encoder = load_encoder(source, self.device)
                # a file saved without its decoder (`encoder.` weights alone) is an encoder as a loaded one is: its
                # lineage check read the decoder, "not a known StyleGAN2 checkpoint" (thirty-third session's audit)
                decoder = source if self.encoder.meta["has_decoder"] else None
            paper = invert.removesuffix("+optimize")  # the encoder the mode is named after
            if paper in ("e4e", "psp") and self.encoder.kind != paper:  # it ran under the other paper's name
                kind = "e4e" if self.encoder.kind == "e4e" else "pSp"
                # e4e+optimize said nothing of a pSp file (thirty-ninth session's audit): no mode names that start
                said = (f"invert='{self.encoder.kind}' names it (results and the app say the mode)" if invert == paper
                        else f"the projection starts from its {kind} codes, though results and the app say {paper} "
                             f"(the mode's encoder is {with_article(paper)} one, such as {DEFAULT_ENCODERS[invert]})")
                warn(f"the encoder is {with_article(kind)} checkpoint, run in mode invert='{invert}': {said}")
        if invert == "psp-toonify" and decoder is not None:
            # The codes are latents of the encoder's decoder, a blended toon generator: it renders them.
            # The toon checkpoint and the base are read only when re-blending.
            self._toon = toon
            self.published_blend = load_generator(decoder, device=self.device).eval()
            self._check_codes_fit(self.published_blend, "its decoder")
        else:
            # A toon checkpoint is read once: its G_ema (the published blend) now, its toon model on re-blending.
            self._toon = _without_discriminator(load_network(toon)) if isinstance(toon, (str, os.PathLike)) else toon
            self.published_blend = load_generator(self._toon, which=named, device=self.device).eval()
            # Without `base`, the messages say which base the toon model was paired with.
            base_name = "the base model" if base is not None else f"the default base model '{self._base_source}'"
            if base is None and (missing := missing_recorded_base(toon)):
                warn(f"the toon model records its base {missing}, which is not there (moved or deleted): the "
                     f"default base '{DEFAULT_BASE}' is taken instead; name the model it was fine-tuned from (base=, "
                     "--base)")
            self._check_latents_fit(self.published_blend, self.base, base_name)
            check_lineage(self.published_blend, self.base, "the toon model", base_name)
            self._unblended = is_snapshot(self._toon)  # said when it draws a toon unblended: `render`
            info = models.MODELS.get(toon) if isinstance(toon, str) else None
            # the repr called a snapshot's G_ema "the published blend" (forty-third session's audit)
            self._whole = self._unblended or (info is not None and info.toon == "unblended")
            if invert == "psp-toonify":
                self._check_codes_fit(self.published_blend, "the toon model")
            elif self.encoder is not None:
                self._check_codes_fit(self.base, base_name)  # a base chosen here is named: the user named none
                # its decoder read (2-4 s at 1024 px) unless the registry knows it is the base's weights
                info = models.MODELS.get(decoder) if isinstance(decoder, str) else None
                if decoder is not None and not models.same_registry_weights(info and info.lineage, self._base_source):
                    check_lineage(load_generator(decoder), self.base, f"the {invert} encoder's decoder",
                                  base_name, encoder=True)
        self._blender: Blender | None = None
        self._w_stats: tuple[torch.Tensor, float] | None = None
        self.generator = self.published_blend
        self.blend_setting: tuple[int | None, int, float | None] = (None, 0, None)
        if swap_res is not None:
            self.set_blend(swap_res, level, blend_width)

    @property
    def sources(self) -> dict[str, object]:
        """Where its models come from: {'base': ..., 'toon': ..., 'toon_network': ..., 'encoder': ...}, each as given (a
        path, URL, name or model object; the base a toon model's own when none was given, the encoder the mode's default
        when none was given), `toon_network` None for the default, `encoder` None in mode 'optimize'."""
        return {"base": self._base_source, "toon": self._toon_source, "toon_network": self._toon_network,
                "encoder": self._encoder_source}

    def __repr__(self) -> str:
        """Which models, blend and inversion this toonifier uses, on one line."""
        def source(model: object) -> str:  # a name or path as given; a model object by its kind
            return repr(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else type(model).__name__
        swap_res, level, width = self.blend_setting
        published = "the toon model alone (no blend)" if self._whole else "the published blend"
        blend = published if swap_res is None else f"swap_res={swap_res}, level={level}" + (
            f", blend_width={width}" if width is not None else "")
        encoder = "" if self._encoder_source is None else f", encoder={source(self._encoder_source)}"  # it was unsaid
        return (f"Toonifier(invert={self.invert!r}{encoder}, base={source(self._base_source)}, "
                f"toon={source(self._toon_source)}, {blend}, device={str(self.device)!r}, detector={self.detector!r})")

    @property
    def base(self) -> Generator:
        """The base model (read on first use in 'psp-toonify' mode, which needs it only to re-blend)."""
        if self._base is None:
            check_default_base(self._toon_source, self._base_source,  # its published blend: the toon's resolution
                               loaded=None if self.invert == "psp-toonify" else self.published_blend)
            self._base = load_generator(self._base_source, device=self.device).eval()
        return self._base

    @staticmethod
    def _check_latents_fit(toon: Generator, base: Generator, base_name: str = "the base model") -> None:
        """The toon model draws the base model's latents: their W+ shapes must agree (checked before any work)."""
        if (toon.num_ws, toon.w_dim) != (base.num_ws, base.w_dim):
            raise BaseMismatchError(f"the toon model ({toon.img_resolution} px) draws W+ latents of {toon.num_ws} x "
                                    f"{toon.w_dim} numbers, but {base_name} ({base.img_resolution} px) makes "
                                    f"{base.num_ws} x {base.w_dim}: {PAIR_WITH_ITS_BASE}",
                                    toon.img_resolution, base.img_resolution)

    def _check_codes_fit(self, G: Generator, what: str) -> None:
        if (self.encoder.n_styles, 512) != (G.num_ws, G.w_dim):
            raise ValueError(f"the {self.invert} encoder makes {self.encoder.n_styles} W+ entries of 512 numbers, "
                             f"but {what} takes {G.num_ws} of {G.w_dim} ({G.img_resolution} px): pair the encoder "
                             "with the model it was trained for (its lineage in `toonlib models`)")

    def set_blend(self, swap_res: int | None, level: int = 0, blend_width: float | None = None) -> None:
        """Re-blend the toon model with the base at `swap_res` (None: back to the published blend), in place: the
        toonifier draws with it from now on (`generator`, which the next set_blend changes in place too; `blend` makes
        a generator of one's own). Returns None."""
        # It returned that generator: a REPL printed its 100 lines of modules, and one kept as "the 16 px blend"
        # became the 8 px one at the next call.
        check_blend(swap_res, level, blend_width)
        if swap_res is None:
            self.generator = self.published_blend
        else:
            if self._blender is None:
                which = toon_network_of(self._toon_source, self._toon_network)  # the registry's, by its name
                if isinstance(self._toon, (str, os.PathLike)):
                    self._toon = _without_discriminator(load_network(self._toon))
                toon = toon_generator(self._toon, which, device=self.device).eval()  # as `toonlib blend` takes it
                if self.invert == "psp-toonify":  # its codes were checked against its decoder only
                    self._check_codes_fit(toon, "the toon model to re-blend (--toon, toon=)")
                # its published blend and this base were checked when it was made (not in psp-toonify mode)
                self._blender = Blender(low=toon, high=self.base, lineage_checked=self.invert != "psp-toonify")
            self.generator = self._blender.set(swap_res, level, blend_width)  # refuses a swap_res above the model's
        self.blend_setting = (swap_res, level, blend_width)

    def set_swap_res(self, swap_res: int | None, shape: tuple[int, float | None] = (0, None)) -> None:
        """`set_blend` at `swap_res` with the `shape` (level, blend_width) of a setting it had (`blend_setting[1:]`,
        taken when a front end is made); None: the published blend, which has no shape. What a swap-resolution
        slider sets (the notebook panel's, the web app's): a toonifier made with level=1, blend_width=1.5 keeps them."""
        # The sliders set swap_res alone: a toonifier made with level=1, blend_width=1.5 drew the plain level-0,
        # hard-switch blend there, its caption saying the blend, and was left so (forty-second session's audit).
        self.set_blend(swap_res, *(shape if swap_res is not None else (0, None)))

    def align(self, photo: ImageInput, all_faces: bool = False, face_index: int | None = None, *,
              name: str | None = None) -> list[AlignedFace]:
        """The FFHQ crops of the faces to toonify (the largest one unless `all_faces` / `face_index`, not both). `name`:
        how messages call the photo (default: its quoted path, or "the image")."""
        check_faces(all_faces, face_index)
        # face-alignment on this device too (it took CUDA)
        settings = dict(output_size=self.published_blend.img_resolution, detector=self.detector,
                        device=str(self.device), name=name)
        if all_faces:
            return align_faces(photo, **settings)
        # the face used alone: each other one of a group photo was aligned too (~0.5 s each), its size warned of
        # unused (thirty-fourth session's audit; `toonlib align` did so already)
        face = align_face(photo, face_index=face_index, **settings)
        if face_index is None:
            say_other_faces(face, describe_source(photo) if name is None else name)
        return [face]

    def __call__(self, photo: ImageInput, *, all_faces: bool = False, face_index: int | None = None, space: str = "w+",
                 steps: int | None = None, seed: int = 0, paste_back: bool = False, progress: bool = True,
                 **project_kwargs) -> ToonifyResult | ToonifyResults:
        """Toonify the largest face of `photo` (path, PIL image, array or bytes); a list (`ToonifyResults`) with
        `all_faces`.

        Raises `NoFaceError` / `ImageReadError` (both ValueErrors) for a photo without a usable face, ValueError
        for `all_faces` with a `face_index`, and `align.FaceIndexError` (an IndexError) for a `face_index` beyond the
        faces found. The blend is the toonifier's: `set_blend` changes it.
        `project_kwargs` go to `projection.project` (the modes that optimise), e.g. `callback(step, distance, w)`,
        run after each step: an exception it raises stops the projection and is raised here.
        """
        check_one_photo(photo)
        [(_, outcome)] = self.toonify_many([photo], all_faces=all_faces, face_index=face_index, space=space,
                                           steps=steps, seed=seed, paste_back=paste_back, progress=progress,
                                           **project_kwargs)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome if all_faces else outcome[0]

    def __getattr__(self, name: str):
        """Only for names that are not there: `toonifier.toonify(photo)`, as the module's `toonify` is called, is
        told to call the toonifier itself (Python's own advice was `toonify_many`, which takes a list)."""
        advice = (": call the toonifier itself, toonifier(photo) (toonifier.toonify_many(photos) for several)"
                  if name in ("toonify", "run", "process", "predict") else "")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}{advice}", name=name, obj=self)

    def toonify_many(self, photos: Iterable[ImageInput], batch_size: int = 4, *, all_faces: bool = False,
                     face_index: int | None = None, space: str = "w+", steps: int | None = None, seed: int = 0,
                     paste_back: bool = False, progress: bool = True, **project_kwargs
                     ) -> Iterator[tuple[object, ToonifyResults | Exception]]:
        """Toonify many photos, inverting the faces of `batch_size` photos at once.

        Yields `(photo, results)` in input order once its batch is inverted, and `(photo, error)` for a photo that
        cannot be read (a TypeError for an item of a type no photo has, such as None) or has no face as soon as it is
        found (before the batch it was read with): one bad photo never stops the batch, nor takes a place in it.
        `space`, `steps`, `seed` and `project_kwargs` apply to the modes that optimise ('optimize', 'e4e+optimize';
        `steps=None`: 500 in 'w+', 1000 in 'w', or 100 from the e4e codes); the encoder-only modes take W+ codes as
        they come, and refuse a `space` or `seed` other than the defaults ('w+', 0). Every face is projected with
        `seed`, so a face gets the same latent alone, in a folder, beside other faces (`all_faces`) and in any batch
        size, as the app and the notebook panel give it (on a GPU, where a batch steps as one group, up to the
        rounding that hundreds of steps can grow: `project`). `progress`: each batch's projection bar.
        """
        # now, not when the first result is asked for
        check_options(self.invert, steps=steps, batch_size=batch_size, space=space, seed=seed, all_faces=all_faces,
                      face_index=face_index, paste_back=paste_back, progress=progress, project_kwargs=project_kwargs)
        if isinstance(photos, (str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray)):
            raise TypeError(f"toonify_many takes a list of photos, got one {type(photos).__name__}: call the "
                            "Toonifier itself for one photo, or pass toonlib.pipeline.photos_in(folder) for a folder")
        # a generator, a set, ...: taken batch by batch (a camera's endless frames were all read before the first
        # result); iter() now: a photos argument that is no iterable is refused here, not at the first result, by
        # name (it was Python's "'NoneType' object is not iterable"; forty-first session's audit)
        try:
            photos = iter(photos)
        except TypeError:
            raise TypeError("toonify_many takes an iterable of photos (a list, a generator, "
                            f"toonlib.pipeline.photos_in(folder)), got {type(photos).__name__}") from None
        return self._toonify_many(photos, batch_size, all_faces, face_index, space, steps, seed, paste_back,
                                  progress, project_kwargs)

    def _toonify_many(self, photos: Iterator, batch_size: int, all_faces: bool, face_index: int | None, space: str,
                      steps: int | None, seed: int, paste_back: bool, progress: bool, project_kwargs: dict
                      ) -> Iterator[tuple[object, ToonifyResults | Exception]]:
        batch: list[tuple] = []  # (photo, upright image, faces): the next `batch_size` photos with faces

        def invert_batch() -> Iterator[tuple[object, ToonifyResults]]:
            faces = [face.image for _, _, aligned in batch for face in aligned]
            inverted = self._invert(faces, space, steps, seed, progress, project_kwargs)
            index = 0
            for photo, upright, aligned in batch:
                yield photo, ToonifyResults(self._result(upright, face, inverted, index + k, paste_back)
                                            for k, face in enumerate(aligned))
                index += len(aligned)

        for photo in photos:
            try:
                upright = read_image(photo)
                batch.append((photo, upright, self.align(upright, all_faces, face_index, name=describe_source(photo))))
            # TypeError: a None or a tensor in the list, which no photo is; it stopped the loop and lost the batch
            # read before it (forty-first session's audit)
            except (ValueError, IndexError, OSError, TypeError) as exc:
                yield photo, exc  # at once, not after the projection of the batch it was read with
                continue
            if len(batch) == batch_size:
                yield from invert_batch()
                batch = []
        if batch:
            yield from invert_batch()

    def _invert(self, faces: list[Image.Image], space: str, steps: int | None, seed: int, progress: bool,
                project_kwargs: dict) -> tuple[torch.Tensor, torch.Tensor | None, np.ndarray]:
        """Latents [N, num_ws, w_dim], reconstructions [N, 3, H, W] (or None) and losses [steps, N] of faces, each
        face projected with `seed` (not `project`'s seed + i: a face's latent must not depend on its company)."""
        # one face at a time: a batch's codes differ by ~1e-6 on the CPU, which the projection grew to a toon 22/255
        # apart in e4e+optimize (audit); batching saved nothing there
        codes = None if self.encoder is None else torch.cat([self.encoder.encode(face) for face in faces])
        if self.invert in ("e4e", "psp"):
            return codes, render(self.base, codes), np.zeros((0, len(faces)), np.float32)
        if self.invert == "psp-toonify":
            return codes, None, np.zeros((0, len(faces)), np.float32)
        if self._w_stats is None:
            self._w_stats = w_statistics(self.base)  # once per Toonifier, not once per batch
        projection = project(self.base, faces, space=space, steps=steps, seed=[seed] * len(faces), progress=progress,
                             w_stats=self._w_stats, init=codes, **project_kwargs)
        # the reconstruction as the toon is drawn, with const noise: the projection's images use its optimised noise
        # maps, which the toon never gets, and looked closer to the photo than the latent is (audit)
        return projection.w, render(self.base, projection.w), projection.losses

    @property
    def invert(self) -> str:
        """The inversion mode (`INVERT_MODES`), fixed when the models were loaded: `Toonifier(..., invert=...)` makes
        one of another mode."""
        # read-only: set, it changed the label alone (an e4e Toonifier ran e4e+optimize as 'optimize')
        return self._invert_mode

    def render(self, w: torch.Tensor) -> Image.Image | list[Image.Image]:
        """The current toon generator's image(s) of latent(s) w [N, num_ws, w_dim] (const noise)."""
        if self._unblended and self.blend_setting[0] is None:  # once: 04 called these toons the published blend's
            self._unblended = False
            say_unblended(self.published_blend, self._toon if isinstance(self._toon, Networks) else None)
        images = render(self.generator, w)
        return to_pil(images[0] if images.shape[0] == 1 else images)

    def _result(self, photo: Image.Image, face: AlignedFace, inverted: tuple, i: int,
                paste_back: bool) -> ToonifyResult:
        ws, reconstructions, losses = inverted
        w = ws[i:i + 1].clone()  # its own: a view kept the batch's latents (torch.save wrote them all)
        toon = self.render(w)
        return ToonifyResult(photo=photo, aligned=face.image, landmarks=face.landmarks, quad=face.quad, w=w,
                             reconstruction=None if reconstructions is None else to_pil(reconstructions[i]),
                             toon=toon, losses=losses[:, i], invert=self.invert, faces_in_photo=face.faces_in_photo,
                             pasted=paste(photo, toon, face.quad) if paste_back else None)


def mode_steps(invert: str, space: str = "w+") -> int | None:
    """The projection steps a toonify in mode `invert` runs without `steps`: 500 in W+ (1000 in W) for 'optimize',
    100 for 'e4e+optimize' (from the e4e codes, `projection.default_steps`); None for the modes that do not
    optimise."""
    return default_steps(space, from_init=invert != "optimize") if invert in OPTIMIZING_MODES else None


def start_steps(steps: int | None = None, optimize: int | None = None) -> dict[str, int]:
    """Where a front end's steps slider starts in each mode that optimises: `steps` in every one where it is given;
    None, each mode at its own: the front end's own start for 'optimize', `optimize` (by default `mode_steps`' 500),
    and `mode_steps` for the others (e4e+optimize: 100). The notebook panel ran e4e+optimize at its 500 steps and the
    web app at its 200, where the command line and the API run 100, unsaid (forty-second session's audit); a `steps`
    equal to that own start was then taken for none, so 500 set in notebook 04 ran e4e+optimize at 100, not the 500
    asked for (forty-third session's audit)."""
    if steps is not None:
        return dict.fromkeys(OPTIMIZING_MODES, steps)
    optimize = mode_steps("optimize") if optimize is None else optimize
    return {mode: optimize if mode == "optimize" else mode_steps(mode) for mode in OPTIMIZING_MODES}


def blend_words(swap_res: int | None, level: int = 0, blend_width: float | None = None) -> str:
    """A toonifier's blend as the notebook panel's caption and the web app's status say it: "published blend", "blend
    at 16 px", with its level and smooth width where they are not the defaults ("blend at 16 px, level 1, smooth
    width 1.5"): the panel and the app said "blend at 16 px" of any shape (forty-second session's audit)."""
    if swap_res is None:
        return "published blend"
    words = [f"blend at {swap_res} px"] + [f"level {level}"] * (level != 0)
    return ", ".join(words + ([f"smooth width {blend_width:g}"] if blend_width else []))


def check_options(invert: str, *, steps: int | None = None, batch_size: int = 1, swap_res: int | None = None,
                  level: int = 0, blend_width: float | None = None, space: str = "w+", seed: int = 0,
                  all_faces: bool = False, face_index: int | None = None, paste_back: bool = False,
                  progress: bool = True, project_kwargs: dict | None = None) -> None:
    """Raise ValueError (TypeError for an unknown keyword) for toonify options that cannot work together; cheap, so
    callers check before any model is downloaded or loaded, or any photo read (`Toonifier`, `toonify_many`, the
    `toonify` command). A blend setting among `project_kwargs` (a call's keywords) is told to go to `set_blend`."""
    if invert not in INVERT_MODES:
        # a mode in capitals, spaced, or spelt as the app and the panel label it ('optimise'): the mode meant
        close = difflib.get_close_matches(invert.strip().lower(), INVERT_MODES, n=1, cutoff=0.8) if isinstance(
            invert, str) else []
        raise ValueError(f"invert (the inversion mode) must be one of {', '.join(INVERT_MODES)}; got {invert!r}"
                         + (f": did you mean {close[0]!r}?" if close else ""))
    projection = dict(project_kwargs or {})
    if steps is not None:
        projection["steps"] = steps
    if space != "w+":
        projection["space"] = space
    if not (isinstance(seed, numbers.Integral) and seed == 0):  # like space, refused other than its default in the
        projection["seed"] = seed  # encoder-only modes: taken and ignored (thirty-ninth session's audit)
    check_faces(all_faces, face_index)
    for name, flag in (("paste_back", paste_back), ("progress", progress)):
        check_flag(name, flag)  # "no" was taken as True
    check_no_blend_in_call(projection)
    per_call = [name for name in _NOT_PER_CALL if name in projection]
    if per_call:
        raise TypeError(f"unexpected keyword argument {per_call[0]!r} in a toonify call: {_NOT_PER_CALL[per_call[0]]}")
    set_here = sorted(set(projection) & _SET_BY_TOONIFIER)
    refused = set_here + sorted(set(projection) - _PROJECT_OPTIONS - _SET_BY_TOONIFIER)
    if refused:
        known = _PROJECT_OPTIONS | _CALL_OPTIONS | _TOONIFIER_OPTIONS | set(_BLEND_OPTIONS)
        # toonify()'s settings of the models given to a call: "did you mean 'detector' for 'detector'?"
        setup = [name for name in refused if name in _TOONIFIER_SETTINGS]
        close = {name: difflib.get_close_matches(name, known, n=1, cutoff=0.75) for name in refused
                 if name not in setup}
        hints = "; ".join(f"did you mean {match[0]!r} for {name!r}?" for name, match in close.items() if match)
        raise TypeError(f"unexpected keyword argument{'s' if len(refused) > 1 else ''} {', '.join(refused)}: "
                        + (f"{' and '.join(setup)} {'is a setting' if len(setup) == 1 else 'are settings'} of the "
                           f"Toonifier, for every photo: Toonifier(..., {setup[0]}=...); " if setup else "")
                        + (f"{hints} " if hints else "")
                        + (f"the Toonifier sets {'it' if len(set_here) == 1 else 'them'} itself; " if set_here else "")
                        + f"the photo's options are {', '.join(sorted(_CALL_OPTIONS))}; projection options are "
                        f"{', '.join(sorted(_PROJECT_OPTIONS - _CALL_OPTIONS))}")
    if projection and invert not in OPTIMIZING_MODES:
        kind = "a projection option" if len(projection) == 1 else "projection options"
        raise ValueError(f"{', '.join(projection)}: {kind}; invert={invert!r} runs no projection (use 'optimize' or "
                         "'e4e+optimize')")
    if space not in ("w", "w+"):
        raise ValueError(f"space must be 'w+' (one w per layer) or 'w' (one w for all layers), got {space!r}")
    check_count("batch_size", batch_size)
    check_project_options(**projection)  # early_stop, callback, ...: before the photos are read and aligned
    if not is_seed(seed):
        raise ValueError(f"seed must be a whole number from -2**63 to 2**64 - 1 (every face is projected with it, so "
                         f"that a face gets the same toon alone and among others), got {seed!r}")
    check_blend(swap_res, level, blend_width)


def check_not_a_toon(base: object, what: str, advice: str) -> None:
    """Raise ValueError when `base` names a registry toon model (`ModelInfo.toon`): photos were projected into the toon
    model and drawn by FFHQ without a word (`Toonifier("toonify-blended-tf", "ffhq-1024-tf")`, its two models swapped:
    the base comes first). `what`: how the base was given (`base='...'`, `--base ...`); `advice`: where it goes."""
    info = models.MODELS.get(base) if isinstance(base, str) else None
    if info is not None and info.toon is not None:
        raise ValueError(f"{what}: {base!r} is a toon model, not a base (the model photos are projected into, such as "
                         f"{info.lineage!r}, its own): {advice}")


def check_not_an_encoder(toon: object, what: str, advice: str) -> None:
    """Raise ValueError when `toon` names a registry encoder that is no toon model (e4e-ffhq, psp-ffhq: their decoder is
    the base): it was downloaded with its base, then blended as the toon with a warning that it drew faces as they
    are. `what`: how the toon was given (`toon='...'`, `--toon ...`); `advice`: where an encoder goes, `{mode}` in it
    the encoder's inversion mode."""
    info = models.MODELS.get(toon) if isinstance(toon, str) else None
    if info is not None and info.kind == "encoder" and info.toon is None:
        raise ValueError(f"{what}: {toon!r} is an encoder (photo -> latent of {info.lineage!r}), not a toon model: "
                         f"{advice.format(mode=info.format)}; a toon model is one `toonlib models` marks under TOON, "
                         f"such as '{DEFAULT_TOON}'")


def check_not_a_base(toon: object, what: str, advice: str) -> None:
    """Raise ValueError when `toon` names a registry base model (FFHQ: a StyleGAN2 model that is no toon model): it was
    downloaded (380 MB) and blended with the base, a toon of nothing but faces. `what`: how the toon was given
    (`toon='...'`, `--toon ...`); `advice`: where a base goes."""
    info = models.MODELS.get(toon) if isinstance(toon, str) else None
    if info is not None and info.kind == "stylegan2" and info.toon is None:
        raise ValueError(f"{what}: {toon!r} is a base model (the model photos are projected into), not a toon model: "
                         f"{advice}; a toon model is one `toonlib models` marks under TOON, such as '{DEFAULT_TOON}'")


def check_faces(all_faces: bool, face_index: int | None) -> None:
    """Raise TypeError for an `all_faces` that is no bool ("no" was taken as True), ValueError for a `face_index` that
    is no whole number (it was refused after the photo's face search) and for `all_faces` with a `face_index`: every
    face and one face (the second ignored the first)."""
    check_flag("all_faces", all_faces)
    check_face_index(face_index)
    if all_faces and face_index is not None:
        raise ValueError(f"all_faces=True toonifies every face and face_index={face_index!r} one of them: pass one "
                         "of the two")


def check_no_blend_in_call(kwargs: dict) -> None:
    """TypeError for a blend setting (swap_res, level, blend_width) among a toonifier call's keywords: the blend is
    the toonifier's, set with `set_blend` or when it is built, not a photo's."""
    given = {name: kwargs[name] for name in _BLEND_OPTIONS if name in kwargs}
    if not given:
        return
    first = repr(given["swap_res"]) if "swap_res" in given else "swap_res"
    call = ", ".join([first] + [f"{name}={value!r}" for name, value in given.items() if name != "swap_res"])
    built = ", ".join(f"{name}={value!r}" for name, value in given.items())
    raise TypeError(f"unexpected keyword argument{'s' if len(given) > 1 else ''} {', '.join(given)}: the blend is "
                    f"the toonifier's, the same for every photo: call toonifier.set_blend({call}) first, or build it "
                    f"with Toonifier(..., {built}) (toonlib.toonify(photo, {built}) for one photo)")


def check_blend(swap_res: int | None, level: int = 0, blend_width: float | None = None) -> None:
    """Raise ValueError for a re-blend setting (`Toonifier`'s swap_res, level, blend_width) that cannot work."""
    if swap_res is None and (level != 0 or blend_width is not None):
        given = [f"level ({level!r})"] * (level != 0) + [f"blend width ({blend_width!r})"] * (blend_width is not None)
        raise ValueError(f"{' and '.join(given)} shape{'s' * (len(given) == 1)} a re-blend of the toon model: give a "
                         "swap resolution too (--swap-res, swap_res=)")
    if swap_res is not None:
        check_setting(swap_res, level, blend_width)


#: Why a toon network is chosen only with a swap resolution (`toonify`'s refusal, and the command line's).
TOON_NETWORK_ROLE = ("picks the toon model a re-blend takes; without one the toon file's published blend draws the "
                     "toon")
#: The keywords `Toonifier.__call__` takes itself (the others go to `project`).
_CALL_OPTIONS = frozenset(name for name, p in inspect.signature(Toonifier.__call__).parameters.items()
                          if p.kind == p.KEYWORD_ONLY)
#: The keywords `toonify` passes to the `Toonifier` it builds, not to its call.
_TOONIFIER_OPTIONS = frozenset({"level", "blend_width", "toon_network", "device", "detector", "encoder"})
#: The Toonifier's settings of its models, which a toonifier call refuses saying where they go (blend and device aside).
_TOONIFIER_SETTINGS = (_TOONIFIER_OPTIONS - set(_BLEND_OPTIONS) - {"device"}) | {"base", "toon", "invert"}


def toonify(photo: ImageInput, base: GeneratorLike | None = None, toon: GeneratorLike = DEFAULT_TOON,
            swap_res: int | None = None, space: str = "w+", steps: int | None = None, invert: str = "optimize",
            **kwargs) -> ToonifyResult | ToonifyResults:
    """Toonify one photo (see `Toonifier`; build one yourself to reuse the models across photos).

    Extra keyword arguments go to `Toonifier.__call__` (all_faces, face_index, seed, paste_back, ...)
    or, for `level`, `blend_width`, `toon_network`, `device`, `detector`, `encoder`, to the `Toonifier`.
    """
    check_one_photo(photo)
    setup = {k: kwargs.pop(k) for k in _TOONIFIER_OPTIONS if k in kwargs}
    # the call's options and the photo's path too, before the Toonifier loads (and perhaps downloads) its models
    check_options(invert, steps=steps, space=space, seed=kwargs.get("seed", 0),
                  all_faces=kwargs.get("all_faces", False), face_index=kwargs.get("face_index"),
                  paste_back=kwargs.get("paste_back", False), progress=kwargs.get("progress", True),
                  project_kwargs={k: v for k, v in kwargs.items() if k not in _CALL_OPTIONS})
    check_reblend_models(invert, swap_res, toon=not (isinstance(toon, str) and toon == DEFAULT_TOON),
                         base=base is not None, encoder=setup.get("encoder"))
    if setup.get("toon_network") is not None and swap_res is None:  # ignored without a word; the CLI refuses it
        raise ValueError(f"toon_network= {TOON_NETWORK_ROLE}: add swap_res=, or leave toon_network= out")
    # its error ("there is no such file", "it is a folder", "the file is empty": /dev/null) before the models; not a
    # pipe's (`/dev/stdin`), which is read once: the toonify's own read found it empty (thirty-eighth session's audit)
    if isinstance(photo, (str, os.PathLike)) and not user_path(photo).is_file() and not is_pipe(photo):
        read_image(photo)
    return Toonifier(base, toon, swap_res=swap_res, invert=invert, **setup)(photo, space=space, steps=steps,
                                                                             **kwargs)


def check_reblend_models(invert: str, swap_res: int | None, *, toon: bool, base: bool, encoder: object = None) -> None:
    """ValueError for a `toon` or `base` model given (True) to mode 'psp-toonify' without a swap resolution: that mode
    draws with its encoder's own decoder and reads them only to re-blend. The command line refused them; Python's
    one-shot `toonify()` never read them, without a word (thirty-third session's audit). An `encoder` without its
    decoder (`encoders.holds_decoder`) draws with the toon model's published blend: both are read, and taken."""
    if invert == "psp-toonify" and swap_res is None and holds_decoder(encoder):
        for option, given in (("toon", toon), ("base", base)):
            if given:
                raise ValueError(f"{option}= is read only to re-blend: invert='psp-toonify' draws the toon with its "
                                 "encoder's own decoder, a blended toon model; add swap_res= to re-blend the toon= "
                                 f"model with the base= model, or leave {option}= out")


def check_one_photo(photo: object) -> None:
    """TypeError for several photos given where one is toonified (`toonify`, `Toonifier.__call__`), before any
    model is loaded: the message names `toonify_many`."""
    if isinstance(photo, (list, tuple)):
        raise TypeError(f"toonify takes one photo, got a {type(photo).__name__} of {len(photo)}: for several, "
                        "toonifier = toonlib.Toonifier(); for photo, results in toonifier.toonify_many(photos): ...")


#: How many runs `default_base` follows back, each started from the one before's folder, to the base of the first.
MAX_RUN_HOPS = 8


def default_base(toon: GeneratorLike) -> GeneratorLike:
    """The base a toon model pairs with: its registry `lineage` for a registry name; for a `toonlib finetune` snapshot
    (a file, its `Networks`, or a `Generator` read from it) the base its run recorded, where that is a registry name,
    a URL or a file that is there (a fine-tuned FFHQ-256 toon was paired with FFHQ 1024 and refused: "makes 8 x
    512"), through the runs it was started from (`resume` of another run's folder or of a snapshot file: that toon was
    taken as the base); for a blend toonlib saved, the base it records (`blending.blend_record`); else `DEFAULT_BASE`
    (`missing_recorded_base` says when a recorded base file is gone). A `Generator` counts as the file it was read
    from (`Generator.loaded_from`) while its weights are those read."""
    return _base_of(toon)[0]


def missing_recorded_base(toon: GeneratorLike) -> str | None:
    """The base file a `toonlib finetune` snapshot's run (through the runs it was started from) or a saved blend
    recorded that is no longer there (moved or deleted), for the messages about `DEFAULT_BASE` taken instead (a
    blend's path relative to no folder, as older files record it, with the places looked for it); else None."""
    return _base_of(toon)[1]


def _base_of(toon: GeneratorLike) -> tuple[GeneratorLike, str | None]:
    """`default_base(toon)`, and the recorded base that is missing where that made it `DEFAULT_BASE`."""
    from .train.snapshots import latest_snapshot

    read = None  # the meta of the file a Generator was read from
    if isinstance(toon, Generator) and toon.loaded_from is not None:
        # `load_generator(snapshot)`: its file's base; it was paired with DEFAULT_BASE, and the refusal of that said
        # the model "records no base" (forty-third session's audit)
        read, toon = loaded_meta(toon) or None, toon.loaded_from
    toon, _ = split_network(toon)  # "toon.pkl (G)": toon.pkl's base
    info = models.MODELS.get(toon) if isinstance(toon, str) else None
    if info is not None:
        base = info.lineage or DEFAULT_BASE
        if info.kind == "encoder" and base in models.MODELS and models.MODELS[base].toon is not None:
            # an encoder's lineage is its decoder, a toon itself for psp-toonify: that toon's base (the toon was taken
            # as the base, drawing toons as "reconstructions"; thirty-third session's audit)
            base = models.MODELS[base].lineage or DEFAULT_BASE
        return base, None
    meta = (read if read is not None else toon.meta if isinstance(toon, Networks) else read_meta(user_path(toon))
            if isinstance(toon, (str, os.PathLike)) and user_path(toon).is_file() else None)
    if (blended_over := _blend_base(meta)) is not None:  # a saved blend: the base it was made with (it was
        # DEFAULT_BASE, another model, or "records no base"; thirty-sixth session's audit)
        source, which = split_network(blended_over)  # "ffhq-1024 (G_ema)": a registry file holds G and G_ema
        if source in models.MODELS:
            return source, None  # its G_ema, as a base is read
        if is_url(source):
            return blended_over, None
        # A path as an older toonlib recorded it, as typed, relative to where `toonlib blend` ran (it records the
        # whole path now): beside the blend first (where it is usually saved; from another folder it was "not there
        # (moved or deleted)", or a file of the same name there)
        beside = (user_path(toon).parent / source if isinstance(toon, (str, os.PathLike))
                  and not Path(source).is_absolute() else None)
        for place in (beside, user_path(source)):
            if place is not None and place.is_file():
                return (str(place) if which is None else f"{place} ({which})"), None
        if not user_path(source).is_absolute():  # the places looked in, said (forty-second session's audit)
            tried = [os.path.abspath(place) for place in (beside, user_path(source)) if place is not None]
            blended_over += f" (looked for at {' and at '.join(dict.fromkeys(tried))})"
        return DEFAULT_BASE, blended_over
    for _ in range(MAX_RUN_HOPS):  # a run started from another run (its folder or a snapshot): its base, and so on
        base = _recorded_base(meta)
        if base is None:
            break
        if base in models.MODELS or is_url(base):
            return base, None
        path = user_path(base)
        if not path.exists():
            return DEFAULT_BASE, base
        snapshot = path if path.is_file() else latest_snapshot(base) if path.is_dir() else None
        meta = read_meta(snapshot) if snapshot is not None and snapshot.is_file() else None
        if path.is_file() and _recorded_base(meta) is None:  # a model, no run's snapshot: the base
            return base, None
    return DEFAULT_BASE, None


def check_default_base(toon: GeneratorLike, base: GeneratorLike, loaded: Generator | None = None) -> None:
    """Refuse to download `DEFAULT_BASE` for a toon model that cannot pair with it: a file or model object that records
    no base of its own, at another resolution than the registry's (a 256 px toon would wait for 380 MB of FFHQ 1024
    before "makes 18 x 512" refused it). Nothing is read when the base was named or is already in the cache: the files
    themselves are compared when they are loaded. `loaded`: a generator of `toon` read already (not read again)."""
    if base != DEFAULT_BASE or cache_state(DEFAULT_BASE) == "cached":
        return
    source, which = split_network(toon)
    if isinstance(source, (str, os.PathLike)) and not user_path(source).is_file():
        return  # a registry toon names its base (its lineage); URLs, folders and misspelt names: their own checks
    generator = loaded if loaded is not None else load_generator(source, which=which)
    expected = models.MODELS[DEFAULT_BASE].resolution
    if generator.img_resolution != expected:
        named = source.loaded_from if isinstance(source, Generator) else source  # the file a Generator was read from
        shown = f"'{named}'" if isinstance(named, (str, os.PathLike)) else "the toon model"
        missing = missing_recorded_base(toon)
        # a Generator made in memory has no file to record a base: it "records no base" was said of one read from a
        # snapshot that records it (forty-third session's audit)
        records = (f"that records its base {missing}, which is not there (moved or deleted)," if missing
                   else "that records no base," if named is not None
                   else "given as a Generator object, which carries no record of its base,")
        raise ValueError(f"{shown} is a {generator.img_resolution} px model {records} and the default base "
                         f"'{DEFAULT_BASE}' is {expected} px: name the model it was fine-tuned from (--base, base=)")


def _blend_base(meta: object) -> str | None:
    """The base (high-resolution) model a saved blend's meta records, as the user named it, else None."""
    record = meta.get("blend") if isinstance(meta, dict) else None
    base = record.get("base") if isinstance(record, dict) else None
    return base if isinstance(base, str) and base and base != UNSAVED else None


def _recorded_base(meta: object) -> str | None:
    """The base a `toonlib finetune` snapshot's meta records (what its run was started from), else None."""
    run = meta.get("finetune") if isinstance(meta, dict) else None
    base = run.get("base") if isinstance(run, dict) else None
    return base if isinstance(base, str) and base else None


def toon_network_of(toon: GeneratorLike, which: str | None = None) -> str | None:
    """Which network of toon checkpoint `toon` holds the un-blended toon model: `which` when given, else what
    the registry says for a registry name; None for other checkpoints (unknown: their G if they have one)."""
    toon, which = split_network(toon, which)  # "toon.pkl (G)" names its generator
    info = models.MODELS.get(toon) if isinstance(toon, str) and which is None else None
    if info is None:
        return which
    check_not_an_encoder(toon, "the toon model", "an encoder inverts photos (encoder=, invert='{mode}')")
    check_not_a_base(toon, "the toon model", "give it as the base model")
    if info.toon == "blended" and info.reblend_network is None:
        offering = [name for name, entry in models.MODELS.items() if entry.offers_swap_slider]
        raise ValueError(f"{toon!r} holds only a blended generator, fixed at its authors' swap resolution: "
                         f"re-blending needs an un-blended toon model, such as {', '.join(offering[:3])} (`toonlib "
                         "models` marks them 'unblended' or 'blended+G' under TOON)")
    return info.reblend_network or "G_ema"


#: Checkpoint formats written by training code, whose G is the raw training copy and G_ema its running average, the
#: model (NVIDIA's stylegan2-ada-pytorch snapshots, rosinality's g / g_ema).
_TRAINING_FORMATS = frozenset({"nvidia", "rosinality"})


def toon_network_in(toon: Networks) -> str:
    """Which generator of a toon checkpoint the registry does not know holds the toon model to re-blend: the G_ema of
    a training snapshot (toonlib's fine-tuning, NVIDIA's or rosinality's training code: G is the training copy, noisier
    than its average), else G where there is one (Toonify's layout: the fine-tuned G, its D and the blended Gs), else
    G_ema. `toonify --swap-res` took the G of a toonlib fine-tuning snapshot where `toonlib blend` took its G_ema."""
    if toon.G is None:
        return "G_ema"
    return "G_ema" if "finetune" in toon.meta or _formats(toon.meta) & _TRAINING_FORMATS else "G"


def _formats(meta: dict) -> set[str | None]:
    """The formats a checkpoint's meta names: its own, and the one it was converted from (`origin`)."""
    origin = meta.get("origin")
    return {meta.get("format"), origin.get("format") if isinstance(origin, dict) else None}


def paste(photo: Image.Image, face: Image.Image, quad: np.ndarray, feather: float = 0.04) -> Image.Image:
    """Warp an aligned-crop image `face` back into `photo` through the crop `quad`, with a soft edge.

    The mask is an ellipse over the face inside the crop, blurred by `feather` x the crop size and
    zero on the crop's border, so the photo outside the crop is left exactly as it was. A face larger than its crop
    in the photo is shrunk to it first with a filter (the warp samples: a 1024 px toon pasted into a 100 px face came
    out jagged, its hair and glasses aliased).
    """
    side = quad_size(np.asarray(quad, dtype=np.float64))
    if face.width > 1.5 * side:
        face = face.resize((max(8, round(side)),) * 2, Image.Resampling.LANCZOS)
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


def paste_faces(photo: ImageInput, faces: Iterable[tuple[Image.Image, np.ndarray] | ToonifyResult]) -> Image.Image:
    """`photo` with each (aligned-crop image, crop quad) of `faces` pasted back (`paste`), in order: a photo of
    several faces with all of them toonified (`toonlib toonify --all-faces --paste-back`, the web app). A face may be
    a toonify result (its toon and quad); the photo a path, PIL image or array, read upright (`read_image`: EXIF
    orientation applied), as the results' quads are. A result made from a photo of another size, or a quad wholly
    outside the photo, is refused: its quad is in the pixels of the photo it was aligned from."""
    if isinstance(faces, (ToonifyResult, Image.Image)) or (isinstance(faces, tuple) and len(faces) == 2 and isinstance(
            faces[0], Image.Image)):
        raise TypeError(f"paste_faces takes a list of faces, got one {type(faces).__name__}: pass [pair] or [result]")
    if not isinstance(faces, Iterable) or isinstance(faces, (str, bytes)):
        raise TypeError(f"paste_faces takes a list of faces (toonify results, or (face image, quad) pairs), got "
                        f"{type(faces).__name__}")
    photo = read_image(photo)
    pairs = []
    for face in faces:
        if isinstance(face, ToonifyResult):
            if face.photo.size != photo.size:
                raise ValueError(f"paste_faces: the photo is {summary(photo)} but a result was made from a photo of "
                                 f"{summary(face.photo)} (its quad is in that photo's pixels): pass the photo it was "
                                 "made from (result.photo)")
            face = face.toon, face.quad
        if not (isinstance(face, (tuple, list)) and len(face) == 2 and isinstance(face[0], Image.Image)
                and np.shape(face[1]) == (4, 2)):
            got = summary(face) if isinstance(face, Image.Image) else type(face).__name__
            order = " (a PIL image and a [4, 2] quad, in that order)" if isinstance(face, (tuple, list)) else ""
            raise TypeError(f"paste_faces takes (face image, quad) pairs, such as (result.toon, result.quad), or "
                            f"toonify results; got {got}{order}")
        corners = np.asarray(face[1], dtype=np.float64)
        if not (corners[:, 0].max() > 0 and corners[:, 1].max() > 0 and corners[:, 0].min() < photo.width
                and corners[:, 1].min() < photo.height):
            raise ValueError(f"paste_faces: a face's quad lies wholly outside the photo ({summary(photo)}); a quad is "
                             "in the pixels of the photo it was aligned from: pass that photo")
        pairs.append(face)
    for face, quad in pairs:
        photo = paste(photo, face, np.asarray(quad, dtype=np.float64))
    return photo


def is_snapshot(toon: object) -> bool:
    """True for the networks of a training snapshot, whose G_ema is the fine-tuned model, no blend: a `toonlib
    finetune` snapshot, or one of NVIDIA's or rosinality's training code (G and G_ema, `_TRAINING_FORMATS`) that is
    no blend toonlib saved and no registry model (the registry's un-blended toon models draw whole, as documented)."""
    if not isinstance(toon, Networks):
        return False
    if isinstance(toon.meta.get("finetune"), dict):
        return True
    # NVIDIA's and rosinality's snapshots drew unblended toons unsaid, where toonlib's were warned of (forty-third
    # session's audit): the README's own toon.pkl
    origin = toon.meta.get("origin") if isinstance(toon.meta.get("origin"), dict) else {}
    registry = any(isinstance(name, str) and split_network(name)[0] in models.MODELS
                   for name in (toon.meta.get("source"), origin.get("source")))
    return (toon.G is not None and not registry and toon.G_ema.blend_record is None
            and bool(_formats(toon.meta) & _TRAINING_FORMATS))


def say_unblended(G: Generator, networks: Networks | None = None) -> None:
    """Warn that a training snapshot's G_ema draws toons without a swap resolution: no blend, the toon model alone
    (notebook 04 called these toons the published blend's). `networks`: the snapshot (else the file G was read
    from), to say whether toonlib's fine-tuning made it."""
    meta = networks.meta if networks is not None else loaded_meta(G)
    kind = "a fine-tuning snapshot" if "finetune" in meta else "a training snapshot"
    warn(f"the toon model {G.loaded_from or 'given'} is {kind}, not a blend: without a swap "
         "resolution its toons are drawn by the toon model alone, with none of the base's layers; give one "
         "(--swap-res, swap_res=), 32 as Toonify's published blend")


def _without_discriminator(nets: Networks) -> Networks:
    nets.D = None  # toonify never needs it: free its memory
    return nets


def photos_in(folder: str | os.PathLike) -> list[Path]:
    """The photos directly inside `folder`, sorted by name, hidden files left out (`images.is_hidden`): what
    `toonlib toonify FOLDER` processes."""
    return sorted(p for p in Path(folder).iterdir() if is_image_file(p) and not is_hidden(PurePath(p.name)))
