"""A pickle reader that never runs code from the file.

Network pickles (NVIDIA's PyTorch snapshots and the TensorFlow-era StyleGAN2 files) name the
classes that built them. `pickle.load` would import and run those; this reader instead allows a
short list of data-only globals (containers, numpy arrays, torch tensors) and replaces the network
classes by inert stand-ins that only keep their state. Anything else is refused with an error
that names what the file asked for.
"""
from __future__ import annotations

import collections
import io
import pickle
import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import torch

from .common import CheckpointError, damaged_file

try:  # numpy >= 2
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _np_multiarray


class UnsafePickleError(CheckpointError):
    """The pickle names a global outside the allow-list (it could run code when loaded)."""


@dataclass
class PersistentObject:
    """Stand-in for an object saved through NVIDIA's `torch_utils.persistence` (source never run)."""

    class_name: str
    state: dict = field(repr=False)


def _reconstruct_persistent_obj(meta: dict) -> PersistentObject:
    if not isinstance(meta, dict) or "class_name" not in meta or not isinstance(meta.get("state"), dict):
        raise CheckpointError("malformed NVIDIA persistent object in pickle (no class_name/state)")
    return PersistentObject(class_name=str(meta["class_name"]), state=meta["state"])


class TFNetwork:
    """Stand-in for `dnnlib.tflib.network.Network`: keeps the pickled state dict, runs nothing."""

    def __setstate__(self, state: dict) -> None:
        self.state = state

    def __getstate__(self) -> dict:
        return self.state


class EasyDict(dict):
    """Stand-in for `dnnlib.util.EasyDict` (a dict with attribute access in the original)."""


class _NestedRefusal(Exception):
    """A global that weights_only loading refused inside a pickle's nested storage bytes (`_load_storage_from_bytes`);
    `safe_load` says it as `UnsafePickleError`, naming the file."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


def _load_storage_from_bytes(data: bytes):
    # torch pickles each storage as a nested legacy torch.save byte string; read it safely too.
    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        # a global refused in there was "a damaged file", with torch's advice to load it with weights_only=False
        # (forty-first session's audit): it is refused as a pickle's own globals are
        names = refused_globals(exc)
        if names:
            raise _NestedRefusal(names) from None
        raise


def refused_globals(exc: BaseException) -> list[str]:
    """The globals that torch's weights_only loading names in its error `exc` as refused ("GLOBAL posix.system"), in
    order, each once; [] when it names none."""
    return list(dict.fromkeys(re.findall(r"GLOBAL ([\w.]+)", str(exc))))


def error_reason(exc: BaseException) -> str:
    """What a reader's error `exc` says, on one line: its first line (torch's C++ errors add their stack frames) without
    torch's advice to load the file with weights_only=False, which toonlib never passes on: its weights_only
    unpickler's reason where it gave one ("Unsupported operand 149"), else the error's type alone."""
    text = str(exc).strip()
    detail = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
    if detail and "weights_only" not in detail[1]:
        return detail[1].strip()
    first = text.splitlines()[0].strip() if text else ""
    if not first or "weights_only" in first or "Weights only" in first:
        return type(exc).__name__
    return first


_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    **{(m, "scalar"): _np_multiarray.scalar for m in _NUMPY_CORE},
    **{(m, "_reconstruct"): _np_multiarray._reconstruct for m in _NUMPY_CORE},
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib.tflib.network", "Network"): TFNetwork,
}
#: What a pickle of NumPy arrays names, for `torch.serialization.safe_globals` (`quality._usable_cache`): the
#: allow-list's NumPy entries, and NumPy's dtype classes (a dtype pickled by NumPy >= 1.25 names its class).
NUMPY_ARRAY_GLOBALS = [*{id(obj): obj for (module, _), obj in ALLOWED_GLOBALS.items() if module.startswith("numpy")}
                       .values(), *(getattr(np.dtypes, name) for name in dir(getattr(np, "dtypes", None))
                                    if name.endswith("DType"))]


def refusal(what: str, kind: str, names: list[str]) -> str:
    """The message for a file that asks for globals outside the allow-list (pickles and torch files alike)."""
    asked = ", ".join(f"'{name}'" for name in sorted(names))
    if any(name.startswith("toonlib.") for name in names):  # "not a StyleGAN network", of toonlib's own Generator
        return (f"{what} was not loaded: this {kind} holds a toonlib network saved whole (the module pickled, which "
                f"asks for {asked}), and loading such a file could run code: toonlib never runs code from a "
                "checkpoint. Save networks with toonlib.save_network(path, G), which toonlib reads.")
    return (f"{what} was not loaded: this {kind} asks for {asked}, which toonlib does not load: loading it could "
            "run code, and toonlib never runs code from a checkpoint. If this is a network from another code base, "
            "save its state dict (plain tensors) with that code first (a rosinality generator's, "
            "torch.save(g_ema.state_dict()), is read as it is).")


class _RestrictedUnpickler(pickle.Unpickler):
    what = "checkpoint"

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(refusal(self.what, "pickle", [f"{module}.{name}"])) from None


def safe_load(file: BinaryIO, what: str = "checkpoint") -> Any:
    """Unpickle `file` with the restricted allow-list; truncated or corrupt files raise CheckpointError."""
    unpickler = _RestrictedUnpickler(file)
    unpickler.what = what
    try:
        return unpickler.load()
    except CheckpointError:
        raise
    except _NestedRefusal as exc:
        raise UnsafePickleError(refusal(what, "pickle", exc.names)) from None
    except EOFError:
        raise CheckpointError(f"{what} ends before its pickle does. {damaged_file()}") from None
    except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RuntimeError, UnicodeDecodeError) as exc:  # one line: torch's C++ errors quoted ~20 lines of stack
        raise CheckpointError(f"{what} is not a readable network pickle ({type(exc).__name__}: "
                              f"{error_reason(exc)}). {damaged_file()}") from None
