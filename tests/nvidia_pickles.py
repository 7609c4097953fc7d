"""Write NVIDIA-style network pickles from `PersistentObject` trees, to make malformed test files."""
from __future__ import annotations

import copy
import io
import pickle
import sys
import types
from pathlib import Path

from toonlib.checkpoints.safe_pickle import EasyDict, PersistentObject, safe_load

FIXTURE = Path(__file__).parent / "fixtures" / "ada_tiny.pkl"


def _persistence_module() -> types.ModuleType:
    """A stand-in `torch_utils.persistence` so pickle can name the reconstruct function."""
    module = sys.modules.get("torch_utils.persistence")
    if module is None:
        module = types.ModuleType("torch_utils.persistence")

        def _reconstruct_persistent_obj(meta):  # never called by toonlib: only its name is written
            raise AssertionError("test stub")

        _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
        _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
        module._reconstruct_persistent_obj = _reconstruct_persistent_obj
        sys.modules["torch_utils"] = types.ModuleType("torch_utils")
        sys.modules["torch_utils.persistence"] = module
    return module


def _easydict_class() -> type:
    """A stand-in `dnnlib.util.EasyDict` class, so written pickles name it as NVIDIA's do."""
    module = sys.modules.get("dnnlib.util")
    if module is None:
        module = types.ModuleType("dnnlib.util")
        module.EasyDict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
        sys.modules["dnnlib"] = types.ModuleType("dnnlib")
        sys.modules["dnnlib.util"] = module
    return module.EasyDict


class _Pickler(pickle.Pickler):
    module_src = "# source omitted"

    def reducer_override(self, obj):
        if isinstance(obj, PersistentObject):
            meta = {"type": "class", "version": 6, "module_src": self.module_src, "class_name": obj.class_name,
                    "state": obj.state}
            return _persistence_module()._reconstruct_persistent_obj, (meta,)
        if isinstance(obj, EasyDict):
            return _easydict_class(), (), None, None, iter(obj.items())
        return NotImplemented


def read_fixture() -> dict:
    with open(FIXTURE, "rb") as f:
        return safe_load(f)


def write(obj, path: Path, module_src: str = "# source omitted") -> Path:
    """Pickle `obj` like NVIDIA's persistence does, embedding `module_src` in every network object."""
    buf = io.BytesIO()
    pickler = _Pickler(buf, protocol=4)
    pickler.module_src = module_src
    pickler.dump(obj)
    path.write_bytes(buf.getvalue())
    return path


def modified_fixture(edit) -> dict:
    """The ada_tiny snapshot, deep-copied, after `edit(snapshot)`."""
    snapshot = copy.deepcopy(read_fixture())
    edit(snapshot)
    return snapshot
