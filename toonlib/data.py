"""Training images for fine-tuning (docs/design.md section 8): a folder or .zip of faces, prepared once.

`ImageDataset` reads every image of a folder (recursively) or a .zip, brings each to a square of the
training resolution (centre crop, FFHQ alignment, or as is), and keeps them all in memory as one uint8
tensor; with `cache_dir` that tensor is saved and reused while the source files stay the same.
`infinite_loader` draws shuffled batches from it forever, reproducibly and sharded across DDP ranks.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import itertools
import json
import os
import struct
import time
import warnings
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from stat import S_ISREG
from typing import Callable, Iterable, Iterator, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from .files import atomic_write_path, discard_damaged, is_damage, user_path
from .images import (
    IMAGE_SUFFIXES,
    is_hidden,
    pillow_format,
    quiet_large_images,
    read_image,
    too_many_pixels,
    unread_format,
    unreadable_reason,
)
from .messages import counted, progress_bar, warn
from .options import MIN_IMAGES, PREPARE_MODES  # MIN_IMAGES: data.MIN_IMAGES too (__all__)

__all__ = ["MIN_IMAGES", "ImageDataset", "TooFewImagesError", "cache_name", "check_image_files", "image_entries",
           "image_files", "infinite_loader", "unreadable_images"]

# Bump when the preparation of images or the cache's contents change, so old caches are not reused. 2: the cache is
# named by the files' names and sizes and records their content digests (a new upload of the same images, with new
# times, prepared them all again; thirty-second session). 3: 'align' records each face's crop size (thirty-fourth).
_CACHE_VERSION = 3
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zipfile.BadZipFile)
_ENCRYPTED = 0x1  # a zip entry's flag bit: encrypted (a password-protected zip)
_LISTED_SKIPS = 5  # skipped images named in the warning; the others counted (`ImageDataset.skipped` has them all)

# What identifies a file: (name, size in bytes, mtime_ns for a folder's files / CRC-32 for zip members)
Entry = Tuple[str, int, int]


class _Skip(Exception):
    """An image that cannot be used; the message is the reason reported to the user. `retry`: its cause may lie outside
    the file (a reader not installed, a .zip damaged in a download, a link): the cache's skip is tried again."""

    retry: bool

    def __init__(self, reason: str, retry: bool = False) -> None:
        super().__init__(reason)
        self.retry = retry


class TooFewImagesError(ValueError):
    """`ImageDataset`'s refusal of a data set with fewer usable images than it needs; `files` and `digests` are the
    source's image files and their contents' digests, as `ImageDataset.files` and `.digests` have them."""

    def __init__(self, message: str, files: list[Entry], digests: dict[str, str]) -> None:
        super().__init__(message)
        self.files, self.digests = files, digests


class ImageDataset(Dataset):
    """Square RGB images of one resolution as float tensors [3, R, R] in [-1, 1].

    `source`: a folder (searched recursively) or a .zip, with images of the `images.IMAGE_SUFFIXES` kinds,
    taken in sorted order; hidden files and folders and a Mac zip's `__MACOSX` are left out. `prepare`:

    - 'crop': centre-crop to a square, resize to `resolution` (LANCZOS). For cartoon faces, where
      landmark detectors fail; use it on images that are already roughly face-centred.
    - 'align': FFHQ alignment with `toonlib.align.align_face` (its face detector on `device`; default: CUDA when
      available); images without a face are skipped.
    - 'none': the images are square already; those of another size are resized, non-square ones skipped.

    Unreadable files (and faceless ones for 'align') are skipped with a warning and listed in `skipped`
    as (name, reason); images whose shorter side is below `resolution` are enlarged, with one warning for all
    of them (`enlarged`: (name, width, height)). `xflip=True` appends mirrored copies: index `i + num_images` is
    image `i` flipped. `files` lists the source's image files (`Entry`: name, size, time or a zip member's CRC);
    `digests` has the SHA-256 of each file's content that could be read, by name, and `content_key` names the
    prepared images (it changes with the files' contents, resolution and mode). With `cache_dir`, the prepared uint8
    tensor is saved there (`cache_path`, named by the files' names and sizes, resolution and mode) and loaded instead
    of preparing anew while the files are the same: the same times, or where a time differs (a copy, the same images
    uploaded again) the same content; `on_accept()` is called before the cache is written (the data set has enough
    images), e.g. to take the folder it goes into. `progress`: a progress bar while images are prepared; `say(line)`
    is told when preparing starts and ends (the lines of `finetune(progress=False)`).
    """

    digests: dict[str, str]
    content_key: str

    def __init__(self, source: Union[str, os.PathLike], resolution: int, *, prepare: str = "crop",
                 xflip: bool = False, cache_dir: Union[str, os.PathLike, None] = None, progress: bool = True,
                 min_images: int = MIN_IMAGES, on_accept: Callable[[], None] | None = None,
                 device: Union[torch.device, str, None] = None, say: Callable[[str], None] | None = None) -> None:
        if prepare not in PREPARE_MODES:
            raise ValueError(f"prepare must be one of {PREPARE_MODES}, got {prepare!r}")
        if resolution < 1:
            raise ValueError(f"resolution must be positive, got {resolution}")
        self.source = user_path(source)  # `~/faces`, as finetune and the readers take it
        self.resolution = resolution
        self.prepare = prepare
        self.xflip = xflip
        self.cache_path: Path | None = None

        with _open_source(self.source) as (entries, read, runs, zips):
            self.files: list[Entry] = entries
            if cache_dir is not None:
                self.cache_path = user_path(cache_dir) / _cache_name(self.source, entries, resolution, prepare)
            payload = _read_cache(self.cache_path) if self.cache_path is not None else None
            cached = payload is not None and _same_files(payload, entries, read)
            if not cached:
                # without a bar, minutes of `align` passed without a word (audit); no image file, nothing to say:
                # it was "preparing 0 images ... 0 images prepared" before the error (thirty-eighth session's audit)
                if say is not None and entries:
                    say(f"{self.source}: preparing {counted(len(entries), 'image')} ({prepare!r} at {resolution} px)")
                started = time.perf_counter()
                payload = _prepare_all(entries, read, resolution, prepare, progress, device)
                if say is not None and entries:
                    say(f"{self.source}: {counted(len(payload['names']), 'image')} prepared in "
                        f"{time.perf_counter() - started:.0f} s")

        self.images: torch.Tensor = payload["images"]  # uint8 [num_images, 3, R, R]
        self.names: list[str] = list(payload["names"])
        self.skipped: list[tuple[str, str]] = [(name, reason) for name, reason in payload["skipped"]]
        self.enlarged: list[tuple[str, int, int]] = [tuple(e) for e in payload["enlarged"]]
        self.digests = dict(payload["digests"])
        text = json.dumps([_CACHE_VERSION, resolution, prepare, sorted(self.digests.items()), sorted(self.names)])
        self.content_key = hashlib.sha256(text.encode()).hexdigest()[:16]
        # .zip files in the folder are not read (their images were left out without a word beside loose ones)
        if zips and entries:
            warn(f"left out {counted(len(zips), '.zip file')} inside '{self.source}' ({', '.join(zips)}): a .zip in "
                 "the data folder is not read, its images trained on only where they are unzipped")
        if runs:
            warn(f"left out {counted(len(runs), 'fine-tuning run folder')} inside '{self.source}' ("
                 f"{', '.join(repr(run.relative_to(self.source).as_posix()) for run in runs)}): their fakes grids and "
                 "plots are no training images; keep run folders outside the data folder")
        if self.skipped:  # the first few named, a reason each (60 lines of "not square" hid the rest)
            lines = [f"  {name}: {reason}" for name, reason in self.skipped[:_LISTED_SKIPS]]
            if len(self.skipped) > _LISTED_SKIPS:
                lines.append(f"  ... and {len(self.skipped) - _LISTED_SKIPS} more")
            warn(f"skipped {len(self.skipped)} of {len(entries)} images in '{self.source}':\n" + "\n".join(lines))
        if self.enlarged:
            name, width, height = self.enlarged[0]
            one = len(self.enlarged) == 1
            what = ((f"{'has a face' if one else 'have faces'} smaller than the training resolution, "
                     f"{resolution}x{resolution} (e.g. {name}, its face {width} px wide)") if prepare == "align" else
                    (f"{'is' if one else 'are'} smaller than the training resolution, {resolution}x{resolution} "
                     f"(e.g. {name}, {width}x{height})"))  # align's per-image warnings named no file (34th session)
            warn(f"{len(self.enlarged)} of {counted(self.num_images, 'image')} in '{self.source}' {what}: enlarged to "
                 f"it, such images are blurred; larger ones make a sharper model")
        copies = _copies(self.names, self.digests)
        if copies:  # a set unzipped twice into its folder: each image trained on twice as often, unsaid
            first = copies[0]
            extra = sum(len(group) - 1 for group in copies)
            warn(f"{extra} of {counted(self.num_images, 'image')} in '{self.source}' "
                 f"{'is an exact copy of another' if extra == 1 else 'are exact copies of others'} (e.g. "
                 f"{' = '.join(first[:2])}): each is trained on as often as it has copies; remove them for an even "
                 "data set")
        if self.num_images < min_images:  # before the cache is written: a refused data set leaves nothing behind
            # the file kinds said only when no image file was found (it listed them beside 16 "no face found")
            faceless = sum(reason == "no face found" for _, reason in self.skipped)
            hint = (": the face detector found no face in {faceless} of them; for drawn or cartoon faces, which it "
                    "misses, use prepare='crop' on images roughly centred on the face" if faceless * 2 > len(
                        self.skipped) else "").format(faceless=faceless)  # cartoons with align: nothing said it
            why = (f" ({len(self.skipped)} skipped, see the warning{hint})" if self.skipped else "" if entries
                   else f" (no image files: {_image_file_kinds(self.source, zips)})")
            raise TooFewImagesError(f"found {counted(self.num_images, 'usable image')} in '{self.source}'{why}; "
                                    f"need at least {min_images}", self.files, self.digests)
        if self.cache_path is not None and not cached:
            if on_accept is not None:
                on_accept()
            # through a Python file: a full disk is then an OSError (ENOSPC) in the chain, not only torch's
            # RuntimeError "unexpected pos"
            with atomic_write_path(self.cache_path) as tmp, tmp.open("wb") as file:
                torch.save(payload, file)

    @property
    def num_images(self) -> int:
        """The number of distinct images, without the mirrored copies."""
        return len(self.images)

    def __len__(self) -> int:
        return self.num_images * (2 if self.xflip else 1)

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        image = self.images[index % self.num_images]
        if index >= self.num_images:
            image = image.flip(-1)
        return image.float() / 127.5 - 1


def infinite_loader(dataset: Dataset, batch_size: int, *, seed: int = 0, rank: int = 0,
                    world_size: int = 1, device: Union[torch.device, str, None] = None,
                    start_batch: int = 0) -> Iterator[torch.Tensor]:
    """Yield this rank's batches `[batch_size, ...]` of `dataset` forever (on `device` if given).

    The sample order is an endless stream of permutations of the dataset, one per epoch, each drawn
    from a `torch.Generator` seeded with (seed, epoch). Global batch k is stream positions
    `[k * batch_size * world_size, (k + 1) * batch_size * world_size)`, and rank r takes the r-th block
    of `batch_size` of them. Hence ranks never share a sample within a global batch, all ranks together
    use every sample once per epoch, and batch k depends only on (seed, k, rank, world_size):
    `start_batch=k` resumes exactly after k batches were drawn, without drawing them. A batch that
    crosses an epoch boundary ends with the first samples of the next permutation.
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("the dataset is empty")
    if batch_size < 1 or start_batch < 0 or not 0 <= rank < world_size:
        raise ValueError(f"invalid batch_size={batch_size}, start_batch={start_batch}, rank={rank} "
                         f"or world_size={world_size}")

    @functools.lru_cache(maxsize=2)  # a batch spans at most two epochs at a time
    def permutation(epoch: int) -> list[int]:
        state = np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]
        return torch.randperm(n, generator=torch.Generator().manual_seed(int(state))).tolist()

    for k in itertools.count(start_batch):
        first = (k * world_size + rank) * batch_size
        indices = [permutation(p // n)[p % n] for p in range(first, first + batch_size)]
        batch = torch.stack([dataset[i] for i in indices])
        yield batch if device is None else batch.to(device)


@contextlib.contextmanager
def _open_source(source: Path) -> Iterator[tuple[list[Entry], Callable[[str], bytes], list[Path], list[str]]]:
    """The image files of a folder or zip, sorted by name, a function reading one file's bytes, the run folders
    whose files were left out (`_run_folders`), and the .zip files in a folder (not read: their names, as paths in
    it; one in a sub-folder was left out without a word, thirty-fourth session's audit)."""
    if source.is_dir():
        files = _files_under(source)  # one walk, for the run folders, images and zips
        runs = _run_folders(PurePosixPath(path.relative_to(source).as_posix()) for path in files)
        entries, zips = [], []
        for path, stat in files.items():
            name = PurePosixPath(path.relative_to(source).as_posix())
            if is_hidden(name) or _in_runs(name, runs):
                continue
            if name.suffix.lower() in IMAGE_SUFFIXES:
                # a link to nothing, or in a loop (no stat): skipped when read, said; once mended, another entry (a
                # cache keyed on the link's own time kept it skipped)
                entries.append((name.as_posix(), stat.st_size, stat.st_mtime_ns) if stat else (name.as_posix(), -1, 0))
            elif name.suffix.lower() == ".zip" and stat:
                zips.append(name.as_posix())
        yield sorted(entries), lambda name: (source / name).read_bytes(), [source / run for run in runs], sorted(zips)
    elif source.is_file() and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            entries = [(info.filename, info.file_size, info.CRC) for info in archive.infolist()
                       if not info.is_dir() and _member_path(info.filename).suffix.lower() in IMAGE_SUFFIXES
                       and not is_hidden(_member_path(info.filename))]
            runs = _run_folders(_member_path(info.filename) for info in archive.infolist() if not info.is_dir())
            entries = [entry for entry in entries if not _in_runs(_member_path(entry[0]), runs)]
            names = {name for name, *_ in entries}
            if any(info.flag_bits & _ENCRYPTED for info in archive.infolist() if info.filename in names):
                # each image failed with zipfile's "password required for extraction", a RuntimeError
                raise ValueError(f"'{source}' is a password-protected .zip: extract it (unzip it with its password) "
                                 "and give the folder of images")
            methods = {info.compress_type for info in archive.infolist() if info.filename in names}
            if unread := sorted(methods - _ZIP_METHODS):  # each image was "That compression method is not supported"
                kind = ("Deflate64 (Windows' 'Compressed folder' of a large set)" if 9 in unread
                        else f"compression method {unread[0]}")
                raise ValueError(f"'{source}' is packed with {kind}, which Python's zipfile cannot read: extract it "
                                 "and give the folder of images, or zip it again with ordinary Deflate (7-Zip, zip -r)")
            yield sorted(entries), archive.read, [source / run for run in runs], []
    elif source.is_file() and source.suffix.lower() == ".zip":
        raise ValueError(f"'{source}': the .zip file is damaged (its table of contents, at the end, is missing: a "
                         "truncated download or copy?); make or copy it again, or give the folder of images")
    elif source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
        raise ValueError(f"'{source}' is one image, not a folder or .zip file of images: give the folder that holds "
                         f"the training images, at least {MIN_IMAGES}, such as '{source.parent}'")
    elif source.exists():
        raise ValueError(f"'{source}' is neither a folder nor a .zip file of images")
    else:
        raise FileNotFoundError(f"no such folder or .zip file: '{source}'")


#: The compression methods Python's zipfile reads (Zstandard from Python 3.14).
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA,
                getattr(zipfile, "ZIP_ZSTANDARD", zipfile.ZIP_STORED)}


def _copies(names: list[str], digests: dict[str, str]) -> list[list[str]]:
    """The groups of `names` whose files hold the same bytes (by their `digests`), each in name order."""
    groups: dict[str, list[str]] = {}
    for name in names:
        if name in digests:
            groups.setdefault(digests[name], []).append(name)
    return [group for group in groups.values() if len(group) > 1]


def _member_path(name: str) -> PurePosixPath:
    """A .zip member's path, its folders split at '\\' too, as unzip reads the names Windows' PowerShell 5.1 writes:
    a run folder or a hidden one in such a zip was trained on (thirty-second session's audit)."""
    return PurePosixPath(name.replace("\\", "/"))


def _files_under(folder: Path) -> dict[Path, os.stat_result | None]:
    """The files under `folder` with their stat (one each: a folder on Google Drive answers slowly), in linked folders
    too (each real folder once; a link to a folder above the data folder is left out, whose other folders are no
    training images), links that lead nowhere among them, with None (to nothing, or in a loop: skipped as they are
    read, with the reason). `Path.rglob` left linked folders out without a word, and links to nothing with them."""
    files, seen, top = {}, set(), os.path.realpath(folder)
    for root, folders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        # seen, or a folder above the data folder (`up -> ..`): its other folders are no training images
        if real in seen or (real != top and Path(top).is_relative_to(real)):
            folders.clear()
            continue
        seen.add(real)
        folders.sort()  # a real folder reached twice is named by the first way in, the same on every machine
        for name in names:
            path = Path(root, name)
            try:
                stat = path.stat()
            except OSError:  # a link to nothing, or in a loop (os.walk lists only what is there)
                files[path] = None
                continue
            if S_ISREG(stat.st_mode):
                files[path] = stat
    return files


def _run_folders(files: Iterable[PurePosixPath]) -> list[PurePosixPath]:
    """The fine-tuning run folders that the names of `files` (paths inside a data folder or .zip) show
    (`train.snapshots.run_folders`, from a run's start). Their fakes grids and plots are no training images, and were
    trained on as cartoon faces. The top level is not one of them (the run's own folder is refused there,
    `train.loop`); hidden ones are left out anyway."""
    from .train.snapshots import run_folders  # what a run folder is, said once: there

    return sorted(run for run in run_folders(files) if run != PurePosixPath(".") and not is_hidden(run))


def _in_runs(name: PurePosixPath, runs: list[PurePosixPath]) -> bool:
    """Whether the file `name` is inside one of the run folders `runs`."""
    return any(run in name.parents for run in runs)


def _image_file_kinds(source: Path, zips: list[str]) -> str:
    """What a source with no image files is told: which files are images, and a .zip inside it."""
    return (f"their names end in {', '.join(IMAGE_SUFFIXES)}"
            + (f"; it holds a .zip: give that file itself, {source / zips[0]}" if zips else ""))


def check_image_files(source: Union[str, os.PathLike], min_images: int = MIN_IMAGES) -> None:
    """Raise TooFewImagesError when the folder or .zip `source` lists fewer than `min_images` image files, reading
    nothing but the file list (FileNotFoundError or ValueError when it is neither): what fine-tuning can refuse
    before its base model is downloaded."""
    source = user_path(source)
    with _open_source(source) as (entries, _, _, zips):
        if len(entries) < min_images:
            why = "" if entries else f" ({_image_file_kinds(source, zips)})"
            raise TooFewImagesError(f"found {counted(len(entries), 'image file')} in '{source}'{why}; need at least "
                                    f"{min_images}", entries, {})


def unreadable_images(source: Union[str, os.PathLike], min_images: int = MIN_IMAGES) -> list[tuple[str, str]]:
    """The image files of the folder or .zip `source` that cannot be read (name, why: as preparing the images says
    it), where they leave fewer than `min_images` that can; [] once that many are read, the others not looked at
    (a few files decoded, not the whole set): notebook 01's set-up cell counted file names, and 6 images and 3
    damaged files passed it, to be refused in the training cell after the base's download (forty-third session's
    audit)."""
    unreadable, readable = [], 0
    with _open_source(user_path(source)) as (entries, read, *_):
        for name, *_ in entries:
            try:
                _prepare_one(read, name, 4, "crop")  # decoded as preparing it decodes it; 4 px: a cheap resize
            except _Skip as exc:
                unreadable.append((name, str(exc)))
            else:
                readable += 1
                if readable >= min_images:
                    return []
    return unreadable


def image_files(source: Union[str, os.PathLike]) -> list[str]:
    """The names of the image files (`IMAGE_SUFFIXES`, subfolders too, hidden ones and fine-tuning run folders aside)
    in the folder or .zip `source`, sorted, reading nothing but the file list; FileNotFoundError or ValueError when
    it is neither."""
    return [name for name, *_ in image_entries(source)]


def image_entries(source: Union[str, os.PathLike]) -> list[Entry]:
    """`image_files` with each file's size and time (a zip member's CRC-32), as `ImageDataset.files` lists them."""
    with _open_source(user_path(source)) as (entries, *_):
        return entries


@contextlib.contextmanager
def image_files_read(source: Union[str, os.PathLike]) -> Iterator[tuple[list[str], Callable[[str], bytes]]]:
    """The names of the image files of `source` (a folder or .zip), as `ImageDataset` lists them, and a function
    reading one's bytes."""
    with _open_source(user_path(source)) as (entries, read, *_):
        yield [name for name, *_ in entries], read


def content_digest(content: bytes) -> str:
    """The SHA-256 of a file's content, as the dataset records it (`ImageDataset.digests`, a training state's
    `data_digests`)."""
    return hashlib.sha256(content).hexdigest()


def cache_name(source: Union[str, os.PathLike], resolution: int, prepare: str) -> str:
    """The file name under which `ImageDataset(source, resolution, prepare=prepare, cache_dir=...)` caches its
    images: the same for files of the same names and sizes, read nothing but the file list (the cache itself records
    the files' times and contents, checked when it is read)."""
    with _open_source(user_path(source)) as (entries, *_):
        return _cache_name(user_path(source), entries, resolution, prepare)


def _cache_name(source: Path, entries: list[Entry], resolution: int, prepare: str) -> str:
    text = json.dumps([_CACHE_VERSION, resolution, prepare, [(name, size) for name, size, _ in entries]])
    return f"{source.stem}-{prepare}{resolution}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.pt"


def _read_cache(path: Path) -> dict | None:
    """The prepared images cached at `path`, or None when there are none; a file cut short or damaged (the largest of
    a run folder, the one a partial Drive sync cuts: it stopped every resume with torch's "checkpoint corrupted"
    traceback) is deleted with a warning, and the images are prepared again."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, weights_only=True)
        if not (isinstance(payload, dict) and isinstance(payload.get("images"), torch.Tensor)
                and {"names", "skipped", "enlarged", "files", "digests", "retry"} <= payload.keys()):
            raise ValueError("not a cache of prepared images")
    except Exception as exc:  # cut short, damaged, or another file: derived data, made again
        deleted, why = discard_damaged(path, exc)
        if not deleted and not is_damage(exc):  # memory, the file system: nothing said of the file
            raise
        if not deleted:
            raise OSError(f"{path} is no usable cache of the prepared images ({why}): delete it") from None
        warn(f"{path} is no usable cache of the prepared images ({why}): deleted, the images are prepared again")
        return None
    return payload


def _same_files(payload: dict, entries: list[Entry], read: Callable[[str], bytes]) -> bool:
    """Whether the cached `payload` was prepared from the files `entries` as they are now: each of the same name and
    size with the same time (a zip member's CRC), or, where that differs, the same content (its digest). A new upload
    of the same images (a new Colab runtime), a copy or a `touch` keeps the cache; an edited image does not."""
    recorded = {name: (size, stamp) for name, size, stamp in payload["files"]}
    if recorded.keys() != {name for name, _, _ in entries}:
        return False
    for name, size, stamp in entries:
        if recorded[name] == (size, stamp):
            continue
        try:
            content = read(name)
        except (OSError, zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError):  # prepared again: said there
            return False
        if payload["digests"].get(name) != content_digest(content):
            return False
    # a skip whose cause lies outside the file (a reader installed since, a damaged .zip downloaded again) is tried
    # again: it stayed skipped, its old advice repeated (thirty-second session's audit); a face or a shape is the file's
    return not any(_readable_now(read, name) for name in payload["retry"])


def _readable_now(read: Callable[[str], bytes], name: str) -> bool:
    """Whether the file `name`, skipped when the cache was made, is now read and decoded as preparing it decodes it."""
    try:
        _decoded(read(name))
    except Exception:  # still not: the cache's skip stands
        return False
    return True


def _decoded(content: bytes) -> Image.Image:
    """A file's bytes as the upright RGB image a training image is prepared from (`read_image`)."""
    with quiet_large_images():
        image = Image.open(io.BytesIO(content))
        image.load()
    return read_image(image)


def _prepare_all(entries: list[Entry], read: Callable[[str], bytes], resolution: int, prepare: str,
                 progress: bool, device: Union[torch.device, str, None] = None) -> dict:
    """Decode and prepare every entry: {'images': uint8 [N, 3, R, R], 'names': [...], 'skipped': [...],
    'enlarged': [...], 'files': `entries`, 'digests': {name: SHA-256 of the file's content, for each file read},
    'retry': [the skips to try again, `_Skip.retry`]}."""
    images = torch.empty(len(entries), 3, resolution, resolution, dtype=torch.uint8)
    names: list[str] = []
    skipped: list[tuple[str, str]] = []
    enlarged: list[tuple[str, int, int]] = []
    digests: dict[str, str] = {}
    retry: list[str] = []  # the skips to try again when the cache is read (`_Skip.retry`)

    def read_recorded(name: str) -> bytes:
        digests[name] = content_digest(content := read(name))
        return content

    for name, _, _ in progress_bar(iterable=entries, desc="Preparing images", unit="img", disable=not progress):
        try:
            image, size = _prepare_one(read_recorded, name, resolution, prepare, device)
        except _Skip as exc:
            skipped.append((name, str(exc)))
            if exc.retry:
                retry.append(name)
            continue
        images[len(names)] = torch.from_numpy(np.array(image)).permute(2, 0, 1)
        names.append(name)
        if min(size) < resolution:
            enlarged.append((name, *size))
    if len(names) < len(entries):
        images = images[:len(names)].clone()  # a view would save the whole buffer
    return {"images": images, "names": names, "skipped": skipped, "enlarged": enlarged,
            "files": [list(entry) for entry in entries], "digests": digests, "retry": retry}


def _prepare_one(read: Callable[[str], bytes], name: str, resolution: int, prepare: str,
                 device: Union[torch.device, str, None] = None) -> tuple[Image.Image, tuple[int, int]]:
    """File `name` as an RGB image `resolution` x `resolution`, and its size as read (with 'align', its face's crop
    square in the photo); raises `_Skip` with the reason."""
    try:
        content = read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:  # a zip member damaged (one packed
        # by a method zipfile lacks, deflate64, is refused with its zip); a folder's file as before
        raise _Skip(f"cannot read: {exc}", retry=True) from None
    except FileNotFoundError:  # a link to a file that is not there (or one deleted since the folder was listed)
        raise _Skip("the file is not there (a link to nothing?)", retry=True) from None
    except OSError as exc:  # a link in a loop; no permission or an I/O error stops the run, as before (a skip is
        if exc.errno != errno.ELOOP:  # cached, and the file would stay skipped once readable)
            if exc.filename is None:  # failed reading, not opening: "[Errno 5] Input/output error" named no file
                raise OSError(exc.errno, f"cannot read the training image {name!r}: {exc.strerror} (on Google "
                                         "Drive, a file it has not fetched yet: open the folder once, or copy it to "
                                         "the runtime's disk)") from exc
            raise
        raise _Skip(f"cannot read: {exc.strerror}", retry=True) from None
    try:
        image = _decoded(content)
    except UnidentifiedImageError:  # what it is instead: a web page saved as .jpg, a video, a HEIC without its reader
        raise _Skip(unread_format(content[:1024]), retry=True) from None
    except Image.DecompressionBombError as exc:  # Pillow's words: "could be decompression bomb DOS attack"
        raise _Skip(f"{too_many_pixels(exc)}: downscale it (training uses {resolution} x {resolution} px)") from None
    except _DECODE_ERRORS as exc:  # identified, not decoded: said as the photo commands say it, with what to do (it
        # was Pillow's "cannot read: image file is truncated"; forty-fourth session's audit)
        raise _Skip(unreadable_reason(exc, io.BytesIO(content), pillow_format(io.BytesIO(content)))) from None

    size = (resolution, resolution)
    if prepare == "crop":
        return ImageOps.fit(image, size, Image.Resampling.LANCZOS), image.size
    if prepare == "align":
        from .align import NoFaceError, SmallFaceWarning, align_face

        try:
            with warnings.catch_warnings():  # "the face is small", per image and unnamed: said once, by name, as the
                warnings.simplefilter("ignore", SmallFaceWarning)  # data set's `enlarged` faces
                face = align_face(image, output_size=resolution, device=None if device is None else str(device))
        except NoFaceError:
            raise _Skip("no face found") from None
        side = round(face.face_size)  # what is enlarged to the resolution: the face's crop, not the photo
        return face.image, (side, side)
    if image.width != image.height:
        raise _Skip(f"not square ({image.width}x{image.height}); use prepare='crop' or 'align'")
    return (image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)), image.size
