"""The weights other libraries need come through toonlib's door (`fetch`): LPIPS' VGG16 and face-alignment's
detector and landmark networks are downloaded by toonlib into torch hub's folder, and without them and without
internet the errors are short, typed, and say which file, where it goes and which command gets it."""
from __future__ import annotations

import dataclasses
import importlib.util
import io

import numpy as np
import pytest
import torch
from http_server import OFFLINE_URL, serve

from toonlib import align, download, losses, models
from toonlib.align import LandmarkBackendError, align_face
from toonlib.commands import for_command_line
from toonlib.losses import PerceptualWeightsError

FAST = {"output_size": 64, "transform_size": 128}
FA_FILES = ("s3fd-619a316812.pth", "2DFAN4-11f355bf06.pth.tar")
FETCH_FA = "toonlib fetch face-alignment-sfd face-alignment-2dfan4"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """An empty torch hub folder and toonlib cache, fresh LPIPS and landmark backends, registry changes undone."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "DRIVE_ROOT", tmp_path / "no-drive")
    monkeypatch.setattr(download, "RETRY_DELAYS", (0.0, 0.0))
    monkeypatch.setattr(models, "MODELS", dict(models.MODELS))
    monkeypatch.setattr(losses, "_LPIPS_CACHE", {})
    monkeypatch.setattr(align, "_BACKENDS", {})


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def hub(tmp_path):
    return tmp_path / "torch" / "hub" / "checkpoints"


def point(name: str, url: str) -> None:
    """Make a registry entry download from `url` (a test server) instead of its publisher."""
    models.MODELS[name] = dataclasses.replace(models.MODELS[name], sources=(url,), sha256=None)


def state_dict_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(3)}, buffer)
    return buffer.getvalue()


# --- LPIPS ------------------------------------------------------------------------------------------------

def test_lpips_offline_names_the_file_the_place_and_the_command(tmp_path):
    point("lpips-vgg16", OFFLINE_URL)
    with pytest.raises(PerceptualWeightsError) as info:
        losses.build_lpips("cpu")
    message = str(info.value)
    assert "vgg16-397923af.pth" in message and str(hub(tmp_path) / "vgg16-397923af.pth") in message
    assert "toonlib fetch lpips-vgg16" in message and "could not be downloaded: no internet connection" in message
    assert "\n" not in message and len(message) < 500  # one short line, not a traceback's worth
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_lpips_downloads_its_vgg_through_toonlib(tmp_path):
    """The file is fetched by toonlib (its server, its checks) into torch hub's folder, where torchvision reads it;
    a file that is no VGG16 is reported as such, with the way out."""
    body = state_dict_bytes()
    with serve({"/vgg16.pth": body}) as server:
        point("lpips-vgg16", f"{server.base}/vgg16.pth")
        with pytest.raises(PerceptualWeightsError) as info:
            losses.build_lpips("cpu")
        assert server.paths() == ["/vgg16.pth"]
    placed = hub(tmp_path) / "vgg16-397923af.pth"
    assert placed.read_bytes() == body
    assert f"{placed} is not torchvision's VGG16" in str(info.value)
    assert "Delete it and run `toonlib fetch lpips-vgg16`" in str(info.value)


def test_lpips_uses_a_vgg_file_in_place_without_network(tmp_path):
    placed = hub(tmp_path) / "vgg16-397923af.pth"
    placed.parent.mkdir(parents=True)
    placed.write_bytes(state_dict_bytes())
    point("lpips-vgg16", OFFLINE_URL)
    with pytest.raises(PerceptualWeightsError, match="is not torchvision's VGG16"):  # it was read, not downloaded
        losses.build_lpips("cpu")


@pytest.mark.parametrize("zipped", [True, False], ids=["zip format", "legacy format"])
def test_lpips_reads_only_the_convolutions_it_uses(tmp_path, zipped):
    """The same module as lpips' own build from the same file, without building VGG16's classifier or holding the
    whole file: the build stays far below the file's size in memory (lpips' own: ~2x the file above it)."""
    import subprocess
    import sys

    import lpips
    import torchvision

    torch.manual_seed(0)
    placed = hub(tmp_path) / "vgg16-397923af.pth"
    placed.parent.mkdir(parents=True)
    torch.save(torchvision.models.vgg16().state_dict(), placed, _use_new_zipfile_serialization=zipped)
    point("lpips-vgg16", OFFLINE_URL)  # read in place, not downloaded
    net = losses.build_lpips("cpu")
    reference = lpips.LPIPS(net="vgg", verbose=False)
    assert net.state_dict().keys() == reference.state_dict().keys()
    for name, tensor in reference.state_dict().items():
        assert torch.equal(net.state_dict()[name], tensor), name
    assert not net.training and not any(param.requires_grad for param in net.parameters())
    a, b = torch.rand(2, 2, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(net(a, b), reference(a, b), rtol=0, atol=0)

    # Peak memory of the build in a fresh process (VmHWM: ru_maxrss keeps the parent's across exec), against the
    # file's size (553 MB for the real one).
    script = ("import re, torch, lpips, toonlib.losses as L\n"
              "peak = lambda: int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]) * 1024\n"
              "before = peak()\n"
              "L.build_lpips('cpu')\n"
              "print(peak() - before)")
    grown = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
    size = placed.stat().st_size
    assert grown < (0.3 if zipped else 1.3) * size, (grown / 2**20, size / 2**20)


# --- face-alignment -----------------------------------------------------------------------------------------

def test_face_alignment_offline_says_what_to_fetch(tmp_path, monkeypatch):
    import face_alignment

    def never(*args, **kwargs):
        raise AssertionError("face-alignment must not start its own download")

    monkeypatch.setattr(face_alignment, "FaceAlignment", never)
    for name in ("face-alignment-sfd", "face-alignment-2dfan4"):
        point(name, OFFLINE_URL)
    with pytest.raises(LandmarkBackendError) as info:
        align_face(np.zeros((64, 64, 3), np.uint8), detector="face_alignment", **FAST)
    message = str(info.value)
    assert f"({', '.join(FA_FILES)}) are not in {hub(tmp_path)}" in message and FETCH_FA in message
    assert "no internet connection" in message and "detector='dlib'" in message
    assert "pip install face-alignment" not in message  # it is installed
    assert "\n" not in message and info.value.__cause__ is None
    # the command line's words alone: it said "(detector='dlib', `--detector dlib`)"
    assert for_command_line(info.value).endswith("; or use dlib's landmarks: --detector dlib")


def test_auto_falls_back_to_dlib_with_a_short_warning(astronaut):
    for name in ("face-alignment-sfd", "face-alignment-2dfan4"):
        point(name, OFFLINE_URL)
    with pytest.warns(UserWarning) as record:
        face = align_face(astronaut, **FAST)
    (warning,) = [w for w in record if "face-alignment" in str(w.message)]
    text = str(warning.message)
    assert text.startswith(f"face-alignment is not usable: its weights ({', '.join(FA_FILES)}) are not in ")
    assert "could not be downloaded (no internet connection)" in text
    assert text.endswith("using dlib's landmarks instead") and FETCH_FA in text
    expected = align_face(astronaut, detector="dlib", **FAST)
    np.testing.assert_array_equal(np.asarray(face.image), np.asarray(expected.image))


def test_face_alignment_weights_come_through_toonlib(tmp_path, monkeypatch):
    """Both files are downloaded by toonlib into torch hub's folder before face-alignment is built, so it finds
    them there and downloads nothing itself."""
    import face_alignment

    built = []

    class Recorder:
        def __init__(self, landmarks_type, **kwargs):
            built.append(sorted(p.name for p in hub(tmp_path).iterdir() if p.is_file()))

    monkeypatch.setattr(face_alignment, "FaceAlignment", Recorder)
    body = state_dict_bytes()
    with serve({"/s3fd.pth": body, "/fan.pth.tar": body}) as server:
        point("face-alignment-sfd", f"{server.base}/s3fd.pth")
        point("face-alignment-2dfan4", f"{server.base}/fan.pth.tar")
        align._get_backend("face_alignment", "cpu")
        assert sorted(server.paths()) == ["/fan.pth.tar", "/s3fd.pth"]
    assert built == [sorted(FA_FILES)]


def test_missing_packages_get_install_advice(monkeypatch):
    real_find_spec = importlib.util.find_spec
    missing = {"face_alignment", "dlib"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real_find_spec(
        name, *a))
    with pytest.raises(LandmarkBackendError) as info:
        align_face(np.zeros((8, 8, 3), np.uint8))
    message = str(info.value)
    assert message.startswith("no face landmark backend is usable: face-alignment is not installed")
    assert "`pip install face-alignment`" in message and '`pip install "toonlib[dlib]"`' in message
    with pytest.raises(LandmarkBackendError, match=r"^dlib is not installed \(no module 'dlib'\)"):
        align_face(np.zeros((8, 8, 3), np.uint8), detector="dlib")
