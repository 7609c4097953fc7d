"""Torch files that name code are refused, naming what they asked for, and never run."""
from __future__ import annotations

import os
import re

import pytest
import torch
from conftest import FIXTURES

from toonlib.checkpoints import CheckpointError, UnsafePickleError, load_network


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class CustomModule(torch.nn.Module):
    """A whole module saved with torch.save (not a state dict)."""


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_file_that_would_run_a_command_is_refused_by_name(tmp_path, zipped):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": _RunsCode(marker)}, path, _use_new_zipfile_serialization=zipped)
    with pytest.raises(UnsafePickleError) as info:
        load_network(path)
    message = str(info.value)
    assert f"{path} was not loaded" in message
    assert "'posix.system'" in message or "'nt.system'" in message
    assert "weights_only" not in message and "trust" not in message  # never torch's advice to turn safety off
    assert not marker.exists()


def test_custom_class_is_named(tmp_path):
    path = tmp_path / "module.pt"
    torch.save({"g_ema": CustomModule()}, path)
    with pytest.raises(UnsafePickleError, match=rf"asks for '{__name__}\.CustomModule'") as info:
        load_network(path)
    assert "weights_only" not in str(info.value)


def test_a_whole_saved_network_is_told_how_to_save_it_and_the_advice_works(tmp_path):
    """torch.save(G) of toonlib's own Generator was "not a StyleGAN network", with the advice to save its state dict
    "with that code"; and a rosinality generator's state dict, saved as that advice says, was refused too, its keys
    listed, though toonlib reads the same weights under a 'g_ema' key."""
    from test_cross_format import to_rosinality
    from tiny import tiny_generator

    G = tiny_generator(0)
    torch.save(G, tmp_path / "whole.pt")
    with pytest.raises(UnsafePickleError, match=r"holds a toonlib network saved whole \(the module pickled, which "
                                                r"asks for 'toonlib\.networks\..*'\).*Save networks with "
                                                r"toonlib\.save_network\(path, G\), which toonlib reads\.$"):
        load_network(tmp_path / "whole.pt")
    state = to_rosinality(G)
    torch.save(state, tmp_path / "state.pt")
    torch.save({"g_ema": state}, tmp_path / "keyed.pt")
    bare, keyed = load_network(tmp_path / "state.pt"), load_network(tmp_path / "keyed.pt")
    assert all(torch.equal(a, b) for a, b in zip(bare.G_ema.state_dict().values(), keyed.G_ema.state_dict().values()))
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(bare.G_ema(z, None), G(z, None), atol=1e-5)
    with pytest.raises(UnsafePickleError, match=r"which toonlib does not load: loading it could run code.*a "
                                                r"rosinality generator's, torch\.save\(g_ema\.state_dict\(\)\), is "
                                                r"read as it is"):
        torch.save({"g_ema": CustomModule()}, tmp_path / "custom.pt")
        load_network(tmp_path / "custom.pt")


def test_damaged_torch_file_is_not_loaded(tmp_path):
    data = (FIXTURES / "rosinality_tiny.pt").read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="could not be read .*it was not loaded.*download it again") as info:
        load_network(path)
    assert "weights_only" not in str(info.value)


@pytest.mark.parametrize("size", [2, 100, None], ids=["its-start", "its-header", "half"])
def test_a_cut_pickle_gets_the_advice_the_other_readers_give(tmp_path, size):
    """A cut network pickle said "not a readable network pickle (UnpicklingError: pickle data was truncated)" and no
    more, where a cut torch or safetensors file was said to be a truncated download, with what to do."""
    data = (FIXTURES / "ada_tiny.pkl").read_bytes()
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: size or len(data) // 2])
    with pytest.raises(CheckpointError, match=r"^.*cut\.pkl .*\. A truncated download or a damaged file: delete it and "
                                              r"download it again\.$"):
        load_network(path)


def test_a_tar_and_a_name_without_its_suffix_are_said(tmp_path, monkeypatch):
    """A plain .tar of a checkpoint was "not a checkpoint toonlib knows" (compressed ones were said to be archives),
    and `toon` for toon.pkl (its suffix hidden by the file browser) listed the registry's 23 names."""
    import tarfile

    from toonlib.models import UnknownModelError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "toon.pkl").write_bytes((FIXTURES / "ada_tiny.pkl").read_bytes())
    with tarfile.open(tmp_path / "toon.tar", "w") as archive:
        archive.add(tmp_path / "toon.pkl", "toon.pkl")
    with pytest.raises(CheckpointError, match=r"toon\.tar is a tar archive, not a checkpoint: unpack it \(tar -xf\) "
                                              r"and give the file inside"):
        load_network(tmp_path / "toon.tar")
    with pytest.raises(FileNotFoundError, match=r"^no checkpoint at toon \(nor a model of that name\): did you mean "
                                                r"toon\.pkl\?$"):
        load_network("toon")
    with pytest.raises(UnknownModelError, match="unknown model 'tooon'"):  # nothing beside: the registry's names
        load_network("tooon")


def test_a_checkpoint_whose_first_block_mentions_a_web_page_loads(tmp_path):
    """The tar test reads a file's first 512 bytes; the web-page test, given them too, refused a toonlib file whose
    metadata said '<html' past its first 64 bytes as "a web page". Each test reads what it always read."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    from tiny import tiny_generator

    from toonlib.checkpoints import save_network

    save_network(tmp_path / "n.safetensors", tiny_generator(0))
    with safe_open(tmp_path / "n.safetensors", "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, tmp_path / "m.safetensors",
              metadata={"description": "from the model card of " + "x" * 60 + " <html>", **meta})
    assert load_network(tmp_path / "m.safetensors").G_ema.img_resolution == 32


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null")
def test_a_device_given_as_a_model_is_said_to_be_no_regular_file(capsys):
    """`toonlib info /dev/null` said "is empty (0 bytes): an interrupted download? Delete it and download again",
    advice that is wrong for a device, and harmful as root (thirty-ninth session's audit)."""
    from toonlib.cli import main
    from toonlib.encoders import load_encoder

    for device in ("/dev/null", "/dev/zero"):
        with pytest.raises(CheckpointError) as error:
            load_network(device)
        assert str(error.value) == (f"{device} is not a regular file (a device or a pipe), not a network: give the "
                                    "checkpoint file itself.")
    with pytest.raises(Exception, match=r"^/dev/null is not a regular file \(a device or a pipe\), not a pSp / e4e "
                                        r"checkpoint: give the checkpoint file itself\.$"):
        load_encoder("/dev/null")
    assert main(["info", "/dev/null"]) == 2
    err = capsys.readouterr().err
    assert "is not a regular file" in err and "Delete" not in err


def _nested_storage(payload: object):
    """An object that pickles as NVIDIA's pickles hold each tensor's storage: torch.storage._load_from_bytes of a
    legacy torch.save byte string, here of `payload`."""
    import io

    buffer = io.BytesIO()
    torch.save(payload, buffer, _use_new_zipfile_serialization=False)

    class Nested:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (buffer.getvalue(),))

    return Nested()


def test_a_refused_global_inside_nested_storage_bytes_is_refused_by_name(tmp_path):
    """It was "not a readable network pickle (UnpicklingError: Weights only load failed. ... Re-running `torch.load`
    with `weights_only` set to `False` will likely succeed ...). A truncated download or a damaged file": torch's advice
    to turn the safety off, on the file made to exploit it, and a refusal called damage (forty-first session's
    audit)."""
    import pickle

    from toonlib.cli import main

    marker = tmp_path / "ran"
    path = tmp_path / "nested.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _nested_storage(_RunsCode(marker))}))
    with pytest.raises(UnsafePickleError) as info:
        load_network(path)
    message = str(info.value)
    assert message.startswith(f"{path} was not loaded: this pickle asks for ")
    assert "'posix.system'" in message or "'nt.system'" in message
    assert "weights_only" not in message and "trust" not in message and "truncated" not in message
    assert main(["info", str(path)]) == 2 and not marker.exists()


def test_an_impossible_tensor_size_is_said_on_one_line(tmp_path):
    """A pickle of allowed globals with a tensor size past 2**63 quoted torch's C++ error whole: about 20 lines of
    stack frames (forty-first session's audit)."""
    import collections
    import pickle
    import warnings

    with warnings.catch_warnings():  # a typed storage, as NVIDIA's pickles hold them (torch says it is deprecated)
        warnings.simplefilter("ignore")
        storage = _nested_storage(torch.zeros(4).storage())

    class HugeTensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (storage, 0, (2**70,), (1,), False, collections.OrderedDict()))

    path = tmp_path / "huge.pkl"
    path.write_bytes(pickle.dumps({"G_ema": HugeTensor()}, protocol=4))
    with pytest.raises(CheckpointError) as info:
        load_network(path)
    message = str(info.value)
    assert "\n" not in message and "frame #" not in message, message
    assert message.startswith(f"{path} is not a readable network pickle (") and message.endswith("download it again.")


@pytest.mark.parametrize("content, said", [
    ((2**40).to_bytes(8, "little") + b'{"__metadata__": {}}', r"starts like a safetensors file, but its header "
                                                              r"length, 1099511627776 bytes, is impossible"),
    (b"\x10\x00\x00\x00\x00\x00\x00", r"is 7 bytes long, too short for a checkpoint of any format"),
], ids=["absurd-header-length", "cut-to-7-bytes"])
def test_a_safetensors_file_damaged_in_its_first_bytes_gets_the_damage_advice(tmp_path, content, said):
    """They were "not a checkpoint toonlib knows ... the file starts with b'...{"__meta'", without the advice every
    other damaged file gets (forty-first session's audit)."""
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))} {said}.*\. A truncated download or a damaged "
                                              r"file: delete it and download, copy or convert it again\.$"):
        load_network(path)
