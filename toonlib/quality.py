"""How close a generator's images are to a set of real images: KID and FID, computed by torch-fidelity.

    weights = inception_weights()                      # `toonlib fetch inception-fid`, cached
    scores = image_quality(G, reals, ("kid",), weights, num_images=1000)   # {"kid": 0.012}

Both compare Inception-v3 pool features (2048-d) of generated and real images: FID (Heusel et al. 2017)
the Frechet distance of their Gaussians, KID (Binkowski et al. 2018) the squared MMD with a cubic
polynomial kernel. KID is unbiased, so it stays meaningful with the few hundred real images of a
fine-tuning set, where FID is biased upwards by the small sample; toonlib logs KID by default.
torch-fidelity reproduces the reference TensorFlow Inception exactly (docs/design.md section 8).
The Inception weights come through toonlib's registry (`inception-fid`): the same cache, resumable
download and errors as the models, and they can be put into the cache folder by hand when offline.
"""
from __future__ import annotations

import glob
import hashlib
import importlib.util
import os
from pathlib import Path

import torch

from .download import DownloadError, fetch
from .files import discard_damaged
from .images import to_uint8
from .messages import warn
from .networks import Generator

__all__ = ["INCEPTION_MODEL", "METRICS", "MetricUnavailable", "image_quality", "inception_weights"]

METRICS = ("kid", "fid")
INCEPTION_MODEL = "inception-fid"
KID_SUBSET_SIZE = 1000  # torch-fidelity's default (and NVIDIA's); capped by the number of images


class MetricUnavailable(ValueError):
    """The metric's Inception weights cannot be had; the message says what to do instead (a ValueError, like
    other unusable inputs, so that the command line reports it in one line with exit code 2)."""


def inception_weights(progress: bool = True) -> Path:
    """Path of the Inception-v3 weights torch-fidelity computes FID/KID with, fetched once into the cache.

    Raises `MetricUnavailable` with what to do when they cannot be downloaded or are not a plain state dict
    (they are loaded with `weights_only=True` first, so a file that carries code is never run), and where
    torch-fidelity itself is not installed: fine-tuning calls it before training, and the missing package was said at
    the first snapshot, a bare "No module named 'torch_fidelity'" (forty-second session's audit).
    """
    if importlib.util.find_spec("torch_fidelity") is None:  # a core dependency: a --no-deps or broken install
        raise MetricUnavailable("FID / KID need torch-fidelity, which is not installed: pip install torch-fidelity, "
                                "or train without a quality metric: --metric none (metric='none')")
    try:
        path = fetch(INCEPTION_MODEL, progress=progress)
    except DownloadError as exc:
        raise MetricUnavailable(f"FID / KID need torch-fidelity's Inception-v3 weights: {exc}\n  - or fetch them "
                                f"where there is internet (`toonlib fetch {INCEPTION_MODEL}`) and copy the file to the "
                                "folder above\n  - or train without a quality metric: --metric none "
                                "(metric='none')") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable or not plain tensors: never hand it to a full unpickler
        raise MetricUnavailable(f"{path} is not a plain Inception state dict ({type(exc).__name__}); delete it and "
                                f"run `toonlib fetch {INCEPTION_MODEL}` again") from None
    if not isinstance(state, dict) or "fc.weight" not in state:
        raise MetricUnavailable(f"{path} is not torch-fidelity's Inception-v3 state dict; delete it and run "
                                f"`toonlib fetch {INCEPTION_MODEL}` again")
    return path


class _Sampler(torch.nn.Module):
    """z -> uint8 images [N, 3, R, R], what torch-fidelity's generator wrapper expects."""

    def __init__(self, G: Generator, force_fp32: bool | None) -> None:
        super().__init__()
        self.G = G
        self.force_fp32 = force_fp32

    @torch.no_grad()
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        images = self.G(z.to(next(self.G.parameters()).device), None, noise_mode="const", force_fp32=self.force_fp32)
        return torch.from_numpy(to_uint8(images)).permute(0, 3, 1, 2)  # NVIDIA's rounding, [N, 3, R, R]


class _Reals(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def _usable_cache(cache_root: Path, prefix: str) -> bool:
    """Whether torch-fidelity may read the cached real-image features and statistics under `cache_root` (files
    `prefix*.pt`): each is loaded first with `weights_only=True` (plain tensors and NumPy arrays). A damaged one is
    deleted with a warning, and computed again; one that cannot be checked or deleted (an I/O error, no permission,
    memory) is said, and the metric computed without the cache (False). torch-fidelity reads its cache with a full
    unpickler: a file planted in a run folder (a shared one, a run downloaded to continue) ran its code at the next
    snapshot, and one cut short (a partial Drive sync) stopped the run there with a traceback at every snapshot, before
    its training state was saved."""
    from .checkpoints.safe_pickle import NUMPY_ARRAY_GLOBALS

    for path in sorted(cache_root.glob(f"{glob.escape(prefix)}*.pt")):
        stat = path.stat()
        checked = (str(path), stat.st_size, stat.st_mtime_ns)
        if checked in _CHECKED_CACHES:  # as checked at an earlier snapshot: not read twice each time
            continue
        try:
            with torch.serialization.safe_globals(NUMPY_ARRAY_GLOBALS):
                torch.load(path, map_location="cpu", weights_only=True)
            _CHECKED_CACHES.add(checked)
            continue
        except Exception as exc:  # cut short, damaged, or carrying code: never handed to the full unpickler
            deleted, why = discard_damaged(path, exc)
        if not deleted:
            warn(f"{path}: the cache of the real images' features cannot be used ({why}): the metric is computed "
                 "without it")
            return False
        warn(f"{path} is no usable cache of the real images' features ({why}): deleted, they are computed again")
    return True


#: The metric caches `_usable_cache` found usable (path, size, time), in this process.
_CHECKED_CACHES: set[tuple[str, int, int]] = set()


def image_quality(G: Generator, reals: torch.Tensor, metrics: tuple[str, ...], weights: str | os.PathLike, *,
                  num_images: int = 1000, batch_size: int = 32, seed: int = 0, force_fp32: bool | None = None,
                  cache_root: str | os.PathLike | None = None, reals_key: str | None = None) -> dict[str, float]:
    """The `metrics` ('kid', 'fid') of `G`'s images (`num_images`, constant noise, z from `seed`) against `reals`
    (uint8 [N, 3, R, R]). With `cache_root`, the real images' features are computed once and kept there under
    `reals_key` (a name that changes with the images; default: a hash of them)."""
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown or not metrics:
        raise ValueError(f"metrics must be some of {METRICS}, got {metrics}")
    # with one image, KID was NaN after ~100 NumPy warnings and FID a LinAlgError (thirty-ninth session's audit)
    if len(reals) < 2 or num_images < 2:
        raise ValueError(f"KID / FID need at least 2 real and 2 generated images, got {len(reals)} real and "
                         f"{num_images} generated (num_images): give more of each")
    import torch_fidelity
    from torch_fidelity.generative_model_modulewrapper import GenerativeModelModuleWrapper

    device = next(G.parameters()).device
    was_training = G.training
    generator = GenerativeModelModuleWrapper(_Sampler(G, force_fp32), G.z_dim, "normal", 0)
    subset = min(KID_SUBSET_SIZE, num_images, len(reals))
    options = dict(input1=generator, input1_model_num_samples=num_images, input2=_Reals(reals.cpu()),
                   kid="kid" in metrics, fid="fid" in metrics, kid_subset_size=subset,
                   feature_extractor_weights_path=str(weights), cuda=device.type == "cuda", batch_size=batch_size,
                   rng_seed=seed, verbose=False, cache=cache_root is not None, save_cpu_ram=True)
    if cache_root is not None:
        key = reals_key or hashlib.sha256(reals.cpu().numpy().tobytes()).hexdigest()[:16]
        options.update(cache_root=str(cache_root), input2_cache_name=f"reals-{len(reals)}-{key}")
        if not _usable_cache(Path(cache_root), f"reals-{len(reals)}-{key}-"):
            options["cache"] = False  # computed without it, this time: the snapshot is saved
    try:
        results = torch_fidelity.calculate_metrics(**options)
    finally:
        G.train(was_training)  # torch-fidelity switches the wrapped module to eval mode
    out = {}
    if "kid" in metrics:
        out["kid"] = float(results["kernel_inception_distance_mean"])
    if "fid" in metrics:
        out["fid"] = float(results["frechet_inception_distance"])
    return out
