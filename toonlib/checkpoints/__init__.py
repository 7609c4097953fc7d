"""Load any published StyleGAN2 checkpoint, save toonlib's own format.

`load_network(source)` takes a file path, a URL or a registry name, detects the format from the
file's content (never from its name) and returns `Networks(G_ema, G, D, meta)`:

| meta format | file                                                       | reader                        |
|-------------|------------------------------------------------------------|-------------------------------|
| nvidia      | stylegan2-ada-pytorch / stylegan3 `.pkl`                   | `nvidia.read_snapshot`        |
| tensorflow  | original StyleGAN2 TF `.pkl` (G, D, Gs)                    | `tensorflow.read_tf_pickle`   |
| rosinality  | rosinality/stylegan2-pytorch `.pt`, JoJoGAN's `g`-only files | `rosinality.read_rosinality` |
| psp         | pSp / e4e `.pt`: the rosinality decoder becomes G_ema      | `psp.read_psp`                |
| toonlib     | `save_network` output: safetensors                         | `native.read`                 |
| toonlib     | toonlib's earlier `torch.save` files (read only)           | `native_torch.read`           |

Every reader returns canonical configs (`GeneratorConfig`), so the same architecture read from
any two formats compares equal and blends. No reader runs code from a file: pickles go through
`safe_pickle`, torch files through `torch.load(weights_only=True)`, toonlib's files are safetensors.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import pickle
import re
import urllib.parse
import weakref
import zipfile
from pathlib import Path

import torch

from ..devices import default_device
from ..files import is_url, looks_like_html, looks_like_pickle, safetensors_header_length, unread_address, user_path
from ..messages import check_flag, warn, with_article
from ..networks import Generator
from . import native, native_torch, nvidia, psp, rosinality, tensorflow
from .common import (
    CheckpointError,
    GeneratorLike,
    MissingNetworkError,
    Networks,
    _short,
    damaged_download,
    damaged_file,
)
from .safe_pickle import UnsafePickleError, error_reason, refusal, refused_globals, safe_load

__all__ = ["NATIVE_SUFFIX", "CheckpointError", "GeneratorLike", "MissingNetworkError", "Networks", "UnsafePickleError",
           "holds_discriminator", "load_generator", "load_network", "non_finite_weights", "read_checkpoint",
           "refuse_to_replace_model", "save_network", "split_network"]

#: The file suffix for toonlib's own format (safetensors).
NATIVE_SUFFIX = native.SUFFIX
#: The suffixes of checkpoint files: a name given without one is looked for under them.
CHECKPOINT_SUFFIXES = (".pkl", ".pt", ".pth", NATIVE_SUFFIX)
# Globals torch files may name besides tensors: rosinality's train.py stores its argparse.Namespace.
_TORCH_SAFE_GLOBALS = [argparse.Namespace]

# Legacy (pre-zip) torch.save files start with a pickled magic number.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."


def load_network(source: str | os.PathLike, device: torch.device | str | None = None, *,
                 progress: bool = True) -> Networks:
    """Load the networks of a checkpoint: a path, an http(s) URL or a registry name (`toonlib models`), downloaded
    first where need be (with a bar unless `progress` is False).

    Networks are returned in eval mode with gradients off, on `device` (default: CPU). `meta["source"]` is the
    file's path, or the URL (`_public_name`) or registry name given, not the cache file it was downloaded into.
    Building them tunes glibc's malloc for the process, once (`toonlib.runtime`; TOONLIB_MALLOC=default opts out).
    Weights that are NaN or infinite (a diverged fine-tuning run's snapshot) are warned of, naming the network.
    """
    if not isinstance(source, (str, os.PathLike)):
        loaded = isinstance(source, (Generator, Networks))
        raise TypeError(f"load_network reads a checkpoint: a path, an http(s) URL or a registry name (`toonlib "
                        f"models`); got {type(source).__name__}" + (": that is loaded already (load_generator takes it "
                                                                    "as it is)" if loaded else ""))
    check_flag("progress", progress)  # here, not in fetch alone: a local file took "no" (fortieth session's audit)
    file, which = split_network(source)
    if which is not None:  # "toon.pkl (G)": one generator, where this reads the whole file
        raise ValueError(f"{source} names the {which} of {file}, and the whole file is read here: give {file} "
                         f"(load_generator({str(source)!r}) reads that generator)")
    device = None if device is None else default_device(device, none_means="the CPU")  # one it lacks fails first
    path = _resolve(source, progress=progress)
    name = _public_name(source)
    try:
        nets = read_checkpoint(path)
    except CheckpointError as exc:
        if path == user_path(source):
            raise
        raise CheckpointError(damaged_download(str(exc), name)) from None  # damaged since it was downloaded
    _say_non_finite(nets, name)  # on the CPU, before the move: no device sync per tensor
    if device is not None:
        for net in (nets.G_ema, nets.G, nets.D):
            if net is not None:
                net.to(device)
    if path != user_path(source):  # a URL or a registry name: recorded as given (`toonlib convert`'s origin), not
        nets.meta["source"] = name  # as the cache file it was read from, a path of this machine's
    record = nets.meta.get("blend") if isinstance(nets.meta.get("blend"), dict) else None  # a saved blend's
    for which, G in (("G_ema", nets.G_ema), ("G", nets.G)):
        if G is not None:
            G.set_origin(f"{name} ({which})" if nets.G is not None else name, record if which == "G_ema" else None)
            _loaded_meta[G] = (G.loaded_from, {**nets.meta, "source": G.loaded_from})  # for save_network(path, G)
    return nets


#: The meta of the file each generator `load_network` returned was read from, its source the generator's
#: `loaded_from` ("toon.pkl (G)"), by generator: `save_network` of a lone generator records its origin as for the whole
#: file (`Generator` keeps the name, not the format; its origin was recorded empty: thirty-eighth session's audit).
_loaded_meta: weakref.WeakKeyDictionary[Generator, tuple[str | None, dict]] = weakref.WeakKeyDictionary()


def loaded_meta(G: Generator) -> dict:
    """The meta of the file `G` was loaded from (`_loaded_meta`) while its weights are still those loaded, else {}."""
    loaded_from, meta = _loaded_meta.get(G, (None, {}))
    return dict(meta) if loaded_from is not None and loaded_from == G.loaded_from else {}


def non_finite_weights(net: torch.nn.Module | dict | None) -> list[str]:
    """The names of the weights and buffers of `net` (a network or its state dict) that hold NaN or infinite numbers
    ([] for None)."""
    state = {} if net is None else net if isinstance(net, dict) else net.state_dict()
    return [key for key, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def _say_non_finite(nets: Networks, name: str) -> None:
    """Warn of weights that are NaN or infinite (a fine-tuning run's snapshot after it diverged): such a model loaded,
    blended and toonified without a word, every toon black (thirty-fourth session's API audit)."""
    for which in ("G_ema", "G", "D"):
        if bad := non_finite_weights(getattr(nets, which)):
            more = f" and {len(bad) - 2} more" if len(bad) > 2 else ""
            effect = "it cannot be fine-tuned" if which == "D" else "it draws black images"
            warn(f"{name}: its {which} holds weights that are NaN or infinite ({', '.join(bad[:2])}{more}), so "
                 f"{effect} (a fine-tuning run's snapshots after the training diverged are so): use an earlier "
                 "snapshot, or the model it was fine-tuned from")


def _public_name(source: str | os.PathLike) -> str:
    """`source` as files that record it may show it: a URL without its user and password, query and fragment (a
    signed URL's token), except a Google Drive link's file id."""
    if not is_url(str(source)):
        return str(source)
    from ..download import drive_file_id

    parts = urllib.parse.urlsplit(str(source))
    drive_id = drive_file_id(str(source))
    query = f"id={drive_id}" if drive_id and f"/file/d/{drive_id}" not in parts.path else ""
    return parts._replace(netloc=parts.netloc.rpartition("@")[2], query=query, fragment="").geturl()


#: The generators a checkpoint may hold, by the names NVIDIA's files give them.
GENERATOR_NETWORKS = ("G_ema", "G")


def network_name_hint(which: object) -> str:
    """For a generator's name given in the wrong case ('g_ema'), the advice naming the right one; else ''."""
    close = next((name for name in GENERATOR_NETWORKS if isinstance(which, str) and which.strip().lower()
                  == name.lower()), None)
    return f": did you mean {close!r}? (the names are case-sensitive)" if close else ""


#: One generator of a file that holds two, as `Generator.loaded_from` and a blend's record name it: "toon.pkl (G)".
_NAMED_NETWORK = re.compile(r"^(?P<source>.+) \((?P<which>G_ema|G)\)$")


def split_network(source: GeneratorLike, which: str | None = None) -> tuple[GeneratorLike, str | None]:
    """`source` and the generator it names: "toon.pkl (G)" (how `Generator.loaded_from`, `toonlib info` and a blend's
    record name the G of a file that holds G and G_ema) is toon.pkl's G, unless a file has that very name. `which`, when
    given, must agree (ValueError); anything else comes back as it is, with `which`."""
    if not isinstance(source, (str, os.PathLike)):
        return source, which
    match = _NAMED_NETWORK.match(str(source))
    if match is None or (not is_url(str(source)) and user_path(source).exists()):
        return source, which
    if which is not None and which != match["which"]:
        raise ValueError(f"{str(source)!r} names its file's {match['which']}, but {which} was asked for as well: name "
                         "the generator once")
    return match["source"], match["which"]


def check_model(source: object, name: str) -> None:
    """TypeError, naming the argument `name` ('toon', 'low') and every kind it takes, for a model argument that is no
    `GeneratorLike` (None, a number): it named the function that failed inside, `load_generator`'s "expected a
    Generator, ..." or `load_network`'s "reads a checkpoint" (forty-third session's audit)."""
    if not isinstance(source, (Generator, Networks, str, os.PathLike)):
        raise TypeError(f"{name}= takes a Generator, Networks or a checkpoint: a path, an http(s) URL or a registry "
                        f"name (`toonlib models`); got {type(source).__name__}")


def load_generator(source: GeneratorLike, which: str | None = None,
                   device: torch.device | str | None = None) -> Generator:
    """One generator from anything that names one: the one place toonlib turns an argument into a generator.

    `source` is a `Generator` (returned as it is), a `Networks` or a checkpoint path, URL or registry
    name, which may name its generator as `Generator.loaded_from` does ("toon.pkl (G)", `split_network`);
    `which` picks "G_ema" (the default, for sampling) or "G" (the training copy) of a checkpoint, and is refused
    (ValueError) with a `Generator`, one network already (it was ignored).
    The original Toonify file keeps the fine-tuned toon model as its "G" and the blended one as G_ema.
    With `device`, the generator is moved there.
    """
    if which is not None and which not in GENERATOR_NETWORKS:
        raise ValueError(f"which (the generator of the checkpoint) must be 'G_ema' or 'G', got {which!r}"
                         f"{network_name_hint(which)}")
    device = None if device is None else default_device(device, none_means="the CPU")
    source, which = split_network(source, which)
    if isinstance(source, Generator) and which is not None:  # it was ignored: the generator itself came back
        raise ValueError(f"which={which!r} picks a network of a checkpoint, and a Generator is one network already: "
                         "leave which out, or give the checkpoint (its path, or its Networks)")
    which = which or "G_ema"
    if isinstance(source, Generator):
        G = source
    elif isinstance(source, Networks):
        G = getattr(source, which)
        if G is None:
            named = source.meta.get("source")
            raise MissingNetworkError(f"{named or 'the checkpoint'} has no {which} network (it has G_ema only)", which,
                                      named)
    elif isinstance(source, (str, os.PathLike)):
        return load_generator(load_network(source), which, device)
    else:
        raise TypeError(f"expected a Generator, Networks or checkpoint path/URL/name, got {type(source).__name__}")
    return G if device is None else G.to(device)


#: The registry kinds whose files hold a generator (an encoder's file holds its decoder), and an encoder.
GENERATOR_KINDS = ("stylegan2", "encoder")
ENCODER_KINDS = ("encoder",)


def _resolve(source: str | os.PathLike, kinds: tuple[str, ...] = GENERATOR_KINDS, progress: bool = True) -> Path:
    """A local file for `source` (a path, a URL or a registry name of one of `kinds`), downloaded into the cache
    where need be (its bar shown when `progress`)."""
    path = user_path(source)
    if not is_url(str(source)) and path.exists():
        return path
    check_source(source, kinds=kinds)
    from ..download import fetch

    return fetch(str(source), progress=progress, cache_option=None)  # load_network takes no cache folder


def check_source(source: str | os.PathLike, what: str = "", kinds: tuple[str, ...] = GENERATOR_KINDS) -> None:
    """Raise what loading `source` would for a name that is neither a URL, an existing path nor a registry model
    (`FileNotFoundError`, or `UnknownModelError` with the known names and a close match), or a registry file of
    another kind than `kinds` (CheckpointError: LPIPS' VGG16 given as a model), its message prefixed with `what`
    (e.g. the option that named it), downloading nothing: the command line and `Toonifier` check every model they
    were given before they fetch the first."""
    source = split_network(source)[0]  # "toon.pkl (G)": its file
    prefix = f"{what}: " if what else ""
    try:
        text, path = str(source), user_path(source)
    except ValueError as exc:  # an empty path, named by the option that gave it
        raise ValueError(f"{prefix}{exc}") from None
    if path.is_dir():  # a run folder given for its snapshot: said with `what` (a notebook's parameter), not later
        raise CheckpointError(f"{prefix}{_folder_problem(path, kinds)}")
    if unread := unread_address(text):
        raise ValueError(f"{prefix}{unread}")
    if is_url(text) or path.exists():
        return
    from .. import models

    if text in models.MODELS:
        kind = models.MODELS[text].kind
        if kind not in kinds:
            wanted = " or ".join(models.KIND_NAMES[k] for k in kinds)
            raise CheckpointError(f"{prefix}{text!r} is {models.KIND_NAMES[kind]}, not {wanted} (`toonlib models` "
                                  "lists every file with its kind)")
        return
    if path.suffix or "/" in text or os.sep in text:
        filed = models.registry_name_of_file(text)
        raise FileNotFoundError(f"{prefix}no checkpoint at {path}" + (
            f" ({path.name!r} is the file of the registry's {filed!r}: give that name to download it)"
            if filed is not None and models.MODELS[filed].kind in kinds else ""))
    beside = sorted(p for p in path.parent.glob(f"{glob.escape(path.name)}.*")
                    if p.suffix.lower() in CHECKPOINT_SUFFIXES and p.is_file())
    if beside:  # `toon` for toon.pkl, its suffix hidden by the file browser: the registry's names were listed
        raise FileNotFoundError(f"{prefix}no checkpoint at {path} (nor a model of that name): did you mean "
                                f"{beside[0]}?")
    try:  # listing the generators alone where an encoder's file would also do (as its decoder), but suggesting it
        models.get_model(text, kinds=kinds, listed=tuple(kind for kind in kinds if kind != "encoder") or kinds)
    except models.UnknownModelError as exc:
        raise models.UnknownModelError(f"{prefix}{exc}") from None


def _folder_problem(path: Path, kinds: tuple[str, ...] = GENERATOR_KINDS) -> str:
    """What is wrong with the folder `path` given as a checkpoint of `kinds`, naming the snapshot meant where it holds
    a training run."""
    if kinds == ENCODER_KINDS:
        return f"{path} is a folder, not a pSp / e4e checkpoint file"
    newest = _newest_snapshot(path)  # a fine-tuning run's folder: its newest snapshot is what was meant
    theirs = None if newest else _newest_nvidia_snapshot(path)  # a training run of NVIDIA's code, as well
    return (f"{path} is a folder, not a checkpoint file"
            + (f": for the fine-tuning run there, give its newest snapshot, {newest}" if newest
               else f": for the training run there, give its newest snapshot, {theirs}" if theirs else ""))


def read_checkpoint(path: str | os.PathLike) -> Networks:
    """Read a local checkpoint file of any supported format (detected from its content); `~` is the home folder."""
    from ..images import pillow_format

    path = user_path(path)
    source = str(path)
    if path.is_dir():
        raise CheckpointError(_folder_problem(path))
    with open(path, "rb") as f:
        block = f.read(512)  # a tar's header block: its "ustar" mark at byte 257
    head = block[:64]  # what the other formats are told by (a web page's test reads all it is given)
    if problem := unfinished_download(head, source, "a network"):
        raise CheckpointError(problem)
    if native.is_safetensors(head, path.stat().st_size):
        return native.read(path, source)
    if safetensors_header_length(head) is not None:  # before the pickle's test: its length's low byte may be 0x80
        raise CheckpointError(f"{source} is a safetensors file cut short: its header alone is "
                              f"{int.from_bytes(head[:8], 'little')} bytes, the whole file {path.stat().st_size}. "
                              f"{damaged_file('download, copy or convert it again')}")
    problem = not_a_torch_zip(path, source) if head.startswith(b"PK") else None
    if problem:
        raise CheckpointError(problem)
    if head.startswith(b"PK") or head.startswith(_LEGACY_TORCH_MAGIC):
        return _read_torch_file(path, source, zipped=head.startswith(b"PK"))
    if looks_like_pickle(head):
        with open(path, "rb") as f:
            obj = safe_load(f, what=source)
        if nvidia.is_nvidia_snapshot(obj):
            return nvidia.read_snapshot(obj, source)
        if tensorflow.is_tf_pickle(obj):
            return tensorflow.read_tf_pickle(obj, source)
        held = type(obj).__name__
        raise CheckpointError(f"{source} is a pickle but not a StyleGAN network pickle "
                              f"(it holds {with_article(held)})")
    expected = "expected a network pickle (.pkl), a torch file (.pt) or a toonlib .safetensors file"
    if block[257:262] == b"ustar":  # it was "not a checkpoint toonlib knows", where compressed ones said to unpack
        raise CheckpointError(f"{source} is a tar archive, not a checkpoint: unpack it (tar -xf) and give the file "
                              f"inside; {expected}")
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ")):
        raise CheckpointError(f"{source} is a compressed archive (gzip, bzip2 or xz), not a checkpoint: unpack it "
                              f"(tar -xf, gunzip, ...) and give the file inside; {expected}")
    if kind := pillow_format(path):
        raise CheckpointError(f"{source} is a {kind} image, not a checkpoint: {expected}")
    # a safetensors file damaged in its first bytes, or cut before them, was "not a checkpoint toonlib knows", without
    # the advice every other damaged file gets (forty-first session's audit)
    size = path.stat().st_size
    if head[8:9] == b"{":  # safetensors' start: a header length, then its JSON; the length is impossible
        raise CheckpointError(f"{source} starts like a safetensors file, but its header length, "
                              f"{int.from_bytes(head[:8], 'little')} bytes, is impossible (the whole file is {size}). "
                              f"{damaged_file('download, copy or convert it again')}")
    if size < 9:  # no checkpoint of any format is so small: a download or copy cut short
        raise CheckpointError(f"{source} is {size} bytes long, too short for a checkpoint of any format. "
                              f"{damaged_file('download, copy or convert it again')}")
    raise CheckpointError(f"{source} is not a checkpoint toonlib knows: {expected}; it is {content_kind(block)}")


def content_kind(block: bytes) -> str:
    """What a file that is no checkpoint holds, from its first bytes `block`, said without them: its first 16 bytes
    were quoted, a credentials file given by mistake (`toonlib info /etc/shadow`) put on the terminal or in a log
    (forty-fourth session's audit)."""
    import codecs

    try:  # a character cut at the block's end is no error (an incremental decoder keeps it)
        text = codecs.getincrementaldecoder("utf-8")().decode(block).removeprefix("\ufeff")
    except UnicodeDecodeError:
        return "a file of another format"
    return "a text file" if all(char.isprintable() or char in "\t\n\r\f\v" for char in text) else \
        "a file of another format"


def holds_discriminator(path: str | os.PathLike) -> bool | None:
    """Whether the checkpoint file `path` holds a discriminator (D), from its header alone: known for toonlib's own
    files (a blend, a generator saved alone have none), None for the other formats, whose networks are known once read.
    Notebook 01's set-up cell refuses a base without D by it (forty-first session's audit: a G-only base failed only in
    the training cell, naming no parameter)."""
    config = native._header_json(path, "config")
    return None if config is None else bool(config.get("D"))


def check_not_an_image(path: str | os.PathLike, writer: str, kind: str, suffix: str) -> None:
    """Refuse (ValueError, before anything is written) to write `kind` (a latent, a network) to `path` where it names
    an image, by its suffix (`images.IMAGE_SUFFIXES`) or an image file already there, as the command line refuses
    such an output: `save_latent(w, "me.jpg")` replaced the photo, then warned of the suffix (forty-third session's
    audit). `writer` is the function named, `suffix` the one to name the file with."""
    from ..images import IMAGE_SUFFIXES, pillow_format

    target = user_path(path)
    image = target.suffix.lower() in IMAGE_SUFFIXES
    found = pillow_format(target) if target.is_file() else None
    if image or found:
        what = f"is {with_article(found)} image" if found else f"names an image ({target.suffix})"
        if found and target.is_symlink():  # the image is the link's target, which is what would be replaced
            what = f"links to {os.path.realpath(target)}, {with_article(found)} image"
        named = target.with_suffix(suffix).name
        # a right suffix on an image (or a link to one) is no advice: `-latent.npz` linked to other.png (forty-fourth)
        advice = f"name it '{named}'" if named != target.name else "give another name"
        raise ValueError(f"{writer} writes {kind}, and '{os.fspath(path)}' {what}: nothing was written; {advice}")


def unfinished_download(head: bytes, source: str, what: str) -> str | None:
    """What a model file whose first bytes are `head` is when it is a download that did not finish (empty) or failed
    (a web page saved in its place), said as not `what` ('a network'); None otherwise. `source` is the local path.
    A device or a pipe (`/dev/null`, `/dev/stdin`) is said to be no regular file: it was told to be deleted as an
    interrupted download (thirty-ninth session's audit), and the readers open a file again from its start, which a
    pipe cannot do."""
    if os.path.exists(source) and not os.path.isfile(source):  # a folder is said by the callers before they read
        return f"{source} is not a regular file (a device or a pipe), not {what}: give the checkpoint file itself."
    if not head:
        return f"{source} is empty (0 bytes): an interrupted download? Delete it and download again."
    if looks_like_html(head):
        return (f"{source} is a web page, not {what}: a download that failed and saved the error page instead (Google "
                "Drive does this when a file's download quota is exceeded). Delete it and download again later, or "
                "copy the file into your own Google Drive and load it from there.")
    return None


def not_a_torch_zip(path: Path, source: str) -> str | None:
    """What a zip file is when it is not a torch archive (torch.save's zips hold `<name>/data.pkl`): a NumPy .npz (a
    latent) or an archive to unpack first, said as such, not as a damaged torch file to delete. None for a torch
    archive, or a truncated zip (the torch reader says so)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        return None
    if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        return None
    if names and all(name.endswith(".npy") for name in names):
        arrays = f"arrays {', '.join(n[:-4] for n in names[:5])}"
        if "w.npy" in names:  # an .npz of other arrays was called a latent too
            return (f"{source} is a NumPy .npz file ({arrays}), not a network: a latent such as `toonlib project` "
                    "writes; load it with toonlib.projection.load_latent")
        return f"{source} is a NumPy .npz file ({arrays}), neither a network nor a latent (whose array is named w)"
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"{source} is a zip archive ({shown or 'empty'}), not a checkpoint: unpack it and give the checkpoint inside"


def _newest_snapshot(run_dir: Path) -> Path | None:
    """The newest network snapshot of a fine-tuning run's folder, or None (no run there, or no snapshot yet)."""
    from ..train.snapshots import latest_snapshot

    newest = latest_snapshot(run_dir)
    return newest if newest is not None and newest.is_file() else None


def _newest_nvidia_snapshot(run_dir: Path) -> Path | None:
    """The newest `network-snapshot-<kimg>.pkl` of a training run of NVIDIA's code (stylegan2, stylegan2-ada, their
    PyTorch ports, stylegan3) in folder `run_dir`, or None."""
    numbered = [(int(match[1]), path) for path in run_dir.glob("network-snapshot-*.pkl")
                if (match := re.fullmatch(r"network-snapshot-(\d+)\.pkl", path.name)) and path.is_file()]
    return max(numbered)[1] if numbered else None


def _read_torch_file(path: Path, source: str, zipped: bool) -> Networks:
    try:
        obj = _torch_load(path, zipped)
    except Exception as exc:  # torch raises many types for bad files; all mean "not loaded"
        unsafe = _unsafe_globals(path, exc)
        if unsafe:
            raise UnsafePickleError(refusal(source, "torch file", unsafe)) from None
        message = error_reason(exc)  # one line, never torch's own advice to turn the safety off
        raise CheckpointError(f"{source} is a torch file that could not be read ({message}); it was not loaded. "
                              f"{damaged_file()}") from None
    if native_torch.is_native_torch(obj):
        return native_torch.read(obj, source)
    if rosinality.is_generator_state(obj):  # torch.save(g_ema.state_dict()), which the refusal of a whole
        return rosinality.read_rosinality({"g_ema": obj}, source)  # module advises: its keys were listed
    if rosinality.is_rosinality(obj):
        return rosinality.read_rosinality(obj, source)
    if psp.is_psp(obj):
        return psp.read_psp(obj, source)
    from ..train.snapshots import is_training_state

    if is_training_state(obj):  # a run's training-state-*.pt: its snapshot beside it is the network
        newest = _newest_snapshot(path.parent)
        raise CheckpointError(f"{source} is the training state of a fine-tuning run (what `toonlib finetune` resumes "
                              "from), not a network: give the run's "
                              + (f"newest snapshot, {newest}" if newest else "network-snapshot-*.safetensors"))
    if isinstance(obj, dict) and any(str(key).startswith(("synthesis.", "mapping.")) for key in obj):
        # torch.save(G.state_dict()): its 300 keys listed, with no word of what was missing
        raise CheckpointError(f"{source} holds a generator's weights alone (torch.save(G.state_dict())), without its "
                              "architecture: load it into a toonlib.Generator of the same settings "
                              "(G.load_state_dict(torch.load(path))), and save networks with toonlib.save_network, "
                              "which keeps both")
    if rosinality.is_projector_output(obj):
        # rosinality's projector output: "not a known StyleGAN2 checkpoint (contents: 'me.png')", where an .npz
        # latent is said to be one (thirty-fourth session's CLI audit)
        raise CheckpointError(f"{source} is a torch file of latents (rosinality's projector output: image name -> "
                              "{'latent': ...}), not a network: a latent such as `toonlib project` writes; load it "
                              "with toonlib.projection.load_latent")
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if isinstance(state, dict) and state and all(str(key).startswith("encoder.") for key in state):
        # a pSp / e4e file saved without its decoder, which --encoder takes: "not a known StyleGAN2 checkpoint" (audit)
        opts = obj.get("opts")
        kind = (opts if isinstance(opts, dict) else vars(opts) if hasattr(opts, "__dict__") else {}).get("encoder_type")
        raise CheckpointError(f"{source} is a pSp / e4e encoder{f' ({kind})' if kind else ''} saved without its "
                              "decoder: it holds no generator; give it as the encoder (--encoder, "
                              "toonlib.load_encoder)")
    keys = _short([repr(key) for key in sorted(obj, key=str)], 12) if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f"{source} is a torch file but not a known StyleGAN2 checkpoint (contents: {keys})")


def _torch_load(path: Path, zipped: bool):
    """torch.load with weights_only=True, memory-mapped where torch can (zip files; pSp / e4e files are
    mostly encoder weights). A file system without mmap support gets a plain read."""
    with torch.serialization.safe_globals(_TORCH_SAFE_GLOBALS):
        if zipped:
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except pickle.UnpicklingError:  # a refused global: reading it plainly would refuse it too
                raise
            except Exception:  # no mmap here, or a damaged file: the plain read says which
                pass
        return torch.load(path, map_location="cpu", weights_only=True)


def _unsafe_globals(path: Path, exc: Exception) -> list[str]:
    """The globals (classes, functions) a torch file names that weights_only loading refused; [] if none."""
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in _TORCH_SAFE_GLOBALS}
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip file, or unreadable: fall back on the error's text
        names = refused_globals(exc)
    return [name for name in dict.fromkeys(names) if name not in allowed]


def refuse_to_replace_model(output: str | os.PathLike, *models: tuple[str | None, str],
                            named: str = "-o") -> None:
    """Refuse (ValueError) an output file that is one of the model files read, given as (source, option) pairs:
    `blend -o` onto its --toon replaced a fine-tuning snapshot's G and D by the blend; or a fine-tuning snapshot (its
    run folder's, which `latest.json` may name: replaced by a blend or a conversion without a word). A source may
    name one network of its file ("toon.pkl (G)", `checkpoints.split_network`), or be None (a generator made in
    memory). `named`: how the output is given (`toonlib convert`'s is its second argument, not -o; the blend
    explorer's `save`, its path): the command line's `blend` and `convert` and the explorer's `save` refuse so."""
    from ..train.snapshots import LATEST_FILE

    target = user_path(output)
    for source, option in models:
        if source is None:
            continue
        # "toon.safetensors (G)", the name records and messages give, was no file: -o replaced the toon model's file
        # (its G and G_ema) without a word (thirty-ninth session's audit)
        path = user_path(split_network(source)[0])
        if target.is_file() and path.is_file() and os.path.samefile(path, target):
            finetuned = "finetune" in (native.read_meta(path) or {})
            snapshot = " (a fine-tuning snapshot's G and D with it)" if finetuned else ""
            raise ValueError(f"{named} {output} is the {option} model's file: writing there would replace that "
                             f"model{snapshot}; give another output file")
    if (target.is_file() and (target.parent / LATEST_FILE).is_file()
            and "finetune" in (native.read_meta(target) or {})):
        raise ValueError(f"{named} {output} is a snapshot of the fine-tuning run in {target.parent} (its G, G_ema and "
                         "D): writing there would replace it; give another output file")


def save_network(path: str | os.PathLike, networks: Networks | Generator) -> Path:
    """Write `networks` (or a lone generator) in toonlib's format, atomically. Returns the path.

    The format is safetensors (tensors plus the configs and meta as JSON; no pickle). The file is
    written at exactly `path`: name it `*.safetensors` (`NATIVE_SUFFIX`) so that other tools, which pick
    their loader by suffix, recognise it; toonlib itself reads it under any name. Another suffix is written
    as asked, with a `ToonlibWarning`; an image's suffix, or an image file at `path`, is refused (ValueError) before
    anything is written. A G_ema made by `blend` (or loaded from a saved blend) keeps how it was made
    (meta "blend", shown by `toonlib info`) while its weights stay as made; the record is always G_ema's own
    (`Generator.blend_record`), never one `networks.meta` carried over from another generator: label weights made
    otherwise with `G.set_origin(blend_record=...)`. A lone generator that `load_network` read (its weights unchanged)
    keeps its file's meta as the whole file would, its origin the generator's `loaded_from` ("converted from toon.pkl
    (G)" in `toonlib info`).
    """
    if isinstance(networks, Generator):  # where it was loaded from recorded as for its whole file
        networks = Networks(G_ema=networks, meta=loaded_meta(networks))
    if not isinstance(networks, Networks) or not isinstance(path, (str, os.PathLike)):
        swapped = isinstance(path, (Generator, Networks))
        raise TypeError("save_network(path, networks) takes a file path, then a Generator or Networks; got "
                        f"{type(path).__name__}, {type(networks).__name__}" + (" (swapped)" if swapped else ""))
    # A loaded file's meta keeps its G_ema's record: with another G_ema put in its place (a re-blend), that record
    # described weights the file no longer held (thirty-sixth session's audit).
    meta = {k: v for k, v in networks.meta.items() if k != "blend"}
    if networks.G_ema.blend_record is not None:
        meta["blend"] = networks.G_ema.blend_record
    networks = dataclasses.replace(networks, meta=meta)
    check_not_an_image(path, "save_network", "toonlib's format, a safetensors file", NATIVE_SUFFIX)
    native.save(networks, path)
    path = user_path(path)
    if path.suffix.lower() != NATIVE_SUFFIX:
        readers = {".pkl": "pickle.load", ".pickle": "pickle.load", ".pt": "torch.load", ".pth": "torch.load"}
        reader = readers.get(path.suffix.lower())
        warn(f"wrote toonlib's format, a safetensors file, to '{path}': toonlib reads it under any name, but other "
             f"tools choose their reader by the suffix{f' ({reader} cannot read it)' if reader else ''}; "
             f"name it '{path.with_suffix(NATIVE_SUFFIX).name}'")
    return path
