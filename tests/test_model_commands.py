"""The model commands (`convert`, `blend`, `info`, `models`, `fetch`, `remove`) as a user meets them: their files
written whatever happens to stdout, and their messages in the user's words (forty-fourth session's audit)."""
from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import tiny_generator, write_toonify_models

from toonlib import models
from toonlib.checkpoints import save_network
from toonlib.cli import main
from toonlib.files import unread_address
from toonlib.models import ModelInfo

FIXTURES = Path(__file__).parent / "fixtures"
STDOUT_FULL = "could not write to the standard output, where `>` or `|` sends it (no space left on device)"


class _RefusingStdout(io.TextIOBase):
    """A stdout that takes nothing: `> /dev/full` (ENOSPC) or a reader gone away (`| true`: BrokenPipeError)."""

    def __init__(self, error: OSError):
        self.error = error

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        raise self.error


FULL = OSError(errno.ENOSPC, "No space left on device")
GONE = BrokenPipeError(errno.EPIPE, "Broken pipe")

# tiny.py's toon model is no fine-tune of its base: written with a LineageWarning
pytestmark = pytest.mark.filterwarnings("ignore:the low-res .toon. model does not look fine-tuned")


@pytest.fixture
def tiny_registry(tmp_path, monkeypatch):
    """Registry models 'tinybase' and 'tinytoon' (a `blended+G` toon model whose base is tinybase), both in the cache
    ($TOONLIB_CACHE) already: their sources are never asked."""
    cache = tmp_path / "cache"
    cache.mkdir()
    base_file, toon_file, _, _ = write_toonify_models(tmp_path)
    base = ModelInfo(name="tinybase", description="tiny base", sources=("http://127.0.0.1:9/base.safetensors",),
                     filename="tinybase.safetensors", format="toonlib", resolution=32, license="test", origin="test")
    toon = ModelInfo(name="tinytoon", description="tiny toon", sources=("http://127.0.0.1:9/toon.safetensors",),
                     filename="tinytoon.safetensors", format="toonlib", resolution=32, license="test", origin="test",
                     lineage="tinybase", toon="blended", reblend_network="G")
    for info, file in ((base, base_file), (toon, toon_file)):
        monkeypatch.setitem(models.MODELS, info.name, info)
        shutil.copy(file, cache / info.filename)
    monkeypatch.setenv("TOONLIB_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("error", [FULL, GONE], ids=["full", "closed"])
def test_convert_writes_its_file_whatever_its_stdout(tmp_path, monkeypatch, capsys, error):
    """L1: convert printed its input's description before it saved: `| true` wrote no file (141), and `> /dev/full`
    none either, said as "[Errno 28] No space left on device", as if the output's disk were full."""
    out = tmp_path / "out.safetensors"
    monkeypatch.setattr(sys, "stdout", _RefusingStdout(error))
    status = main(["convert", str(FIXTURES / "ada_tiny.pkl"), str(out)])
    assert out.is_file()
    err = capsys.readouterr().err
    if error is GONE:
        assert (status, err) == (141, "")
    else:
        assert status == 2
        assert err == f"toonlib convert: error: {STDOUT_FULL}; {out} was written all the same\n"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_convert_to_dev_full_names_the_standard_output(tmp_path):
    """L1 as the user ran it: `toonlib convert IN OUT > /dev/full`."""
    out = tmp_path / "out.safetensors"
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "toonlib", "convert", str(FIXTURES / "ada_tiny.pkl"), str(out)],
                                stdout=full, stderr=subprocess.PIPE, text=True)
    assert result.returncode == 2 and out.is_file()
    assert result.stderr == f"toonlib convert: error: {STDOUT_FULL}; {out} was written all the same\n"


def test_blend_writes_its_model_and_grid_whatever_its_stdout(tmp_path, monkeypatch, capsys):
    """L1: blend's grid was never made where stdout took nothing ("wrote -o" failed first), said as "[Errno 28]"."""
    base, toon, _, _ = write_toonify_models(tmp_path)
    out, grid = tmp_path / "b.safetensors", tmp_path / "grid.png"
    monkeypatch.setattr(sys, "stdout", _RefusingStdout(FULL))
    status = main(["blend", "--toon", str(toon), "--base", str(base), "--swap-res", "8", "-o", str(out), "--grid",
                   str(grid), "--seeds", "0-1"])
    assert status == 2 and out.is_file() and grid.is_file()
    assert capsys.readouterr().err.endswith(f"toonlib blend: error: {STDOUT_FULL}; {out} and {grid} were written all "
                                            "the same\n")


def test_the_other_model_commands_name_the_standard_output(tiny_registry, monkeypatch, capsys):
    """L1: `toonlib info`, `models`, `fetch` and `remove` with a full stdout said "[Errno 28] No space left on device"
    alone: the checkpoint's disk? the cache's?"""
    path = tiny_registry / "tinybase.safetensors"
    monkeypatch.setattr(sys, "stdout", _RefusingStdout(FULL))
    assert main(["info", "tinybase"]) == 2
    assert capsys.readouterr().err == f"toonlib info: error: {STDOUT_FULL}\n"
    assert main(["models"]) == 2
    assert capsys.readouterr().err == f"toonlib models: error: {STDOUT_FULL}\n"
    assert main(["fetch", "tinybase"]) == 2
    assert capsys.readouterr().err == f"toonlib fetch: error: {STDOUT_FULL}; it was fetched all the same: {path}\n"
    assert main(["remove", "tinybase"]) == 2 and not path.exists()
    assert capsys.readouterr().err == f"toonlib remove: error: {STDOUT_FULL}; {path} was removed all the same\n"


def test_info_of_a_registry_model_says_what_models_says_of_it(tiny_registry, tmp_path, capsys):
    """L2: `toonlib info toonify-blended-tf` said nothing of its un-blended G nor of its base, which `toonlib models`
    lists (TOON blended+G, BASE); README sends users to `info` for a model's base."""
    said = ["registry model tinytoon: tiny toon",
            "  TOON blended+G: blended (its G_ema), and its G network is the un-blended toon model (the swap "
            "resolution stays adjustable)",
            "  BASE tinybase: the model it was fine-tuned from, its base (--base) for blending and inversion"]
    assert main(["info", "tinytoon"]) == 0
    assert capsys.readouterr().out.splitlines()[1:4] == said
    assert main(["info", str(tiny_registry / "tinytoon.safetensors")]) == 0  # the cache's file, by its path
    assert capsys.readouterr().out.splitlines()[1:4] == said
    assert main(["info", "tinybase"]) == 0  # no toon model, no base: its description alone
    assert capsys.readouterr().out.splitlines()[1:3] == ["registry model tinybase: tiny base", "generator:"]
    mine = tmp_path / "mine" / "tinytoon.safetensors"  # another file of that name is no registry model
    mine.parent.mkdir()
    shutil.copy(tiny_registry / "tinytoon.safetensors", mine)
    assert main(["info", str(mine)]) == 0
    assert "registry model" not in capsys.readouterr().out
    from toonlib.commands import MODELS_LEGEND, TOON_WORDS

    assert main(["models"]) == 0  # the same words as the legend's, which `toonlib models` prints
    out = capsys.readouterr().out
    assert " ".join(MODELS_LEGEND.split()) in " ".join(out.split())
    assert f"blended+G = {TOON_WORDS['blended+G']}" in " ".join(MODELS_LEGEND.split())
    row = ["tinytoon", "stylegan2", "32", "blended+G", "tinybase"]
    assert any(line.split()[:5] == row for line in out.splitlines())


def test_blend_of_two_resolutions_names_the_options_and_files(tmp_path, capsys):
    """N1: the error said "img_resolution: low-res 32, high-res 64" and eight layer names, naming no file."""
    _, toon, _, _ = write_toonify_models(tmp_path)
    base64 = tmp_path / "base64.safetensors"
    save_network(base64, tiny_generator(2, img_resolution=64))
    assert main(["blend", "--toon", str(toon), "--base", str(base64), "--swap-res", "16", "-o",
                 str(tmp_path / "b.safetensors")]) == 2
    assert capsys.readouterr().err == (
        f"toonlib blend: error: the generators have different architectures and cannot be blended: --toon {toon} is "
        f"32 px, --base {base64} 64 px\nPair the toon model with the base it was fine-tuned from (the registry's toon "
        "models name theirs: their lineage in `toonlib models`).\n")
    assert not (tmp_path / "b.safetensors").exists()


def test_a_resolution_difference_is_said_without_the_layers_it_adds():
    """N1: the other config differences are listed, the layers that a resolution adds or drops are not."""
    from toonlib.blending import check_compatible

    with pytest.raises(ValueError) as caught:
        check_compatible(tiny_generator(0), tiny_generator(1, img_resolution=64, w_dim=8), names=("toon", "base"))
    assert str(caught.value) == ("the generators have different architectures and cannot be blended: toon is 32 px, "
                                 "base 64 px\n  w_dim: toon 16, base 8\n  mapping_layer_features: toon 16, base 8")


@pytest.mark.parametrize("typed, meant", [("https:/x.org/y.pkl", "https://x.org/y.pkl"),
                                          ("https//x.org/y.pkl", "https://x.org/y.pkl"),
                                          ("htps://x.org/y.pkl", "https://x.org/y.pkl"),
                                          ("http//x.org/y.pkl", "http://x.org/y.pkl")])
def test_a_mistyped_url_is_said_to_be_one(typed, meant, capsys):
    """N2: "no checkpoint at https:/x.org/y.pkl", "no checkpoint at https/x.org/y.pkl" (the '//' typed gone), and for
    htps:// "toonlib downloads http:// and https:// addresses only"."""
    said = (f"{typed} looks like a mistyped web address (no file or folder has that name here): did you mean "
            f"{meant}?")
    for command in ("info", "fetch"):
        assert main([command, typed]) == 2
        assert capsys.readouterr().err == f"toonlib {command}: error: {said}\n"


def test_a_file_named_like_a_mistyped_url_is_read_as_a_file(tmp_path, monkeypatch):
    """N2: `https:/x` names a file in the folder `https:` on this system: where there is one, it is no typo."""
    monkeypatch.chdir(tmp_path)
    assert unread_address("https:/x.pkl") is not None
    (tmp_path / "https:").mkdir()
    (tmp_path / "https:" / "x.pkl").write_bytes(b"")
    assert unread_address("https:/x.pkl") is None
    assert unread_address("ftp://x.org/y.pkl").startswith("ftp://x.org/y.pkl: toonlib downloads http://")  # no typo


@pytest.mark.parametrize("command", [["convert", str(FIXTURES / "ada_tiny.pkl"), "-"],
                                     ["blend", "--toon", "t.safetensors", "--base", "b.safetensors", "--swap-res", "8",
                                      "-o", "-"]])
def test_a_dash_output_is_said_to_be_no_file(command, capsys):
    """N3: `toonlib convert IN -` was told to name its output `-.safetensors`."""
    name = "ada_tiny" if command[0] == "convert" else "blended"
    assert main(command) == 2
    assert capsys.readouterr().err == (f"toonlib {command[0]}: error: {command[0]} writes a file, not to the standard "
                                       f"output ('-'): name the output file, e.g. {name}.safetensors\n")


def test_info_of_a_file_that_is_no_checkpoint_quotes_none_of_it(tmp_path, capsys):
    """N4: `toonlib info /etc/shadow` put the file's first 16 bytes on the terminal ("the file starts with
    b'root:*:20228:0:9'"): what it is is said instead."""
    expected = "expected a network pickle (.pkl), a torch file (.pt) or a toonlib .safetensors file"
    for name, content, kind in (("shadow", b"admin:s3cr3t-t0ken:20228:0:99999:7:::\n", "a text file"),
                                ("key.bin", bytes(range(7, 250)), "a file of another format")):
        (tmp_path / name).write_bytes(content)
        assert main(["info", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err == (f"toonlib info: error: {tmp_path / name} is not a checkpoint toonlib knows: {expected}; it is "
                       f"{kind}\n")
        assert "s3cr3t" not in err and "\\x" not in err
