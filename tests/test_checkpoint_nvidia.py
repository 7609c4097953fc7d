"""NVIDIA pickles load safely and reproduce stylegan2-ada-pytorch's outputs; bad files get clear errors."""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
import nvidia_pickles
import pytest
import torch
from conftest import FIXTURES, assert_close, load_ref
from safetensors import safe_open

from toonlib.checkpoints import CheckpointError, UnsafePickleError, load_network, native, save_network
from toonlib.checkpoints.safe_pickle import PersistentObject

REF = load_ref("ada_tiny_ref.npz")
STATE = load_ref("ada_tiny_state.npz")


@pytest.fixture(scope="module")
def nets():
    return load_network(FIXTURES / "ada_tiny.pkl")


def test_every_tensor_equals_the_reference_state(nets):
    for prefix, net in (("G_ema", nets.G_ema), ("G", nets.G), ("D", nets.D)):
        state = net.state_dict()
        assert len(state) == sum(k.startswith(prefix + "/") for k in STATE)
        for name, tensor in state.items():
            np.testing.assert_array_equal(tensor.numpy(), STATE[f"{prefix}/{name}"], err_msg=name)


def test_config_matches_init_kwargs(nets):
    g, d = REF["G_init_kwargs"], REF["D_init_kwargs"]
    cfg = nets.config
    assert (cfg.z_dim, cfg.w_dim, cfg.img_resolution, cfg.img_channels) == (g["z_dim"], g["w_dim"], 32, 3)
    assert cfg.mapping_layers == g["mapping_kwargs"]["num_layers"]
    s = g["synthesis_kwargs"]
    assert (cfg.channel_base, cfg.channel_max, cfg.num_fp16_res, cfg.conv_clamp) == (
        s["channel_base"], s["channel_max"], s["num_fp16_res"], s["conv_clamp"])
    dcfg = nets.D.config
    assert (dcfg.channel_base, dcfg.channel_max, dcfg.conv_clamp, dcfg.mbstd_group_size) == (
        d["channel_base"], d["channel_max"], d["conv_clamp"], d["epilogue_kwargs"]["mbstd_group_size"])
    assert nets.meta["format"] == "nvidia"
    assert not nets.G_ema.training and not any(p.requires_grad for p in nets.G_ema.parameters())


@torch.no_grad()
def test_outputs_match_reference(nets):
    z = torch.from_numpy(REF["z"])
    assert_close(nets.G_ema.mapping(z, None, truncation_psi=0.7, truncation_cutoff=3), REF["ws_psi07_cutoff3"])
    assert_close(nets.G_ema(z, None, truncation_psi=0.7, noise_mode="const"), REF["img_psi07_const"])
    assert_close(nets.G(z, None, noise_mode="const"), REF["img_G_psi1_const"])
    assert_close(nets.D(torch.from_numpy(REF["real"]), None), REF["logits_real"])


@torch.no_grad()
def test_fp16_pickle_loads_with_its_fp16_layout():
    nets16 = load_network(FIXTURES / "ada_tiny_fp16.pkl")
    assert nets16.config.num_fp16_res == 2 and nets16.D.config.num_fp16_res == 2
    assert [b.use_fp16 for b in nets16.G_ema.synthesis.blocks()] == [False, False, True, True]
    # On the CPU fp16 blocks run in float32: the result equals the fp32 reference.
    assert_close(nets16.G_ema(torch.from_numpy(REF["z"]), None, noise_mode="const"), REF["img_psi1_const"])


@torch.no_grad()
def test_round_trip_through_toonlib_format_is_exact(nets, tmp_path):
    path = save_network(tmp_path / "tiny.safetensors", nets)
    with safe_open(str(path), framework="pt") as f:  # a plain safetensors file: tensors and JSON, no pickle
        metadata = f.metadata()
        assert {key.split(".")[0] for key in f.keys()} == {"G_ema", "G", "D"}
        assert torch.equal(f.get_tensor("G.mapping.fc0.weight"), nets.G.mapping.fc0.weight)
    assert metadata["format"] == "toonlib" and json.loads(metadata["meta"])["origin"]["format"] == "nvidia"
    assert json.loads(metadata["config"])["G"] == nets.config.to_dict() | {"resample_filter": [1, 3, 3, 1]}
    again = load_network(path)
    assert again.meta["format"] == "toonlib"
    z = torch.from_numpy(REF["z"])
    for a, b in ((nets.G_ema, again.G_ema), (nets.G, again.G)):
        assert torch.equal(a(z, None, noise_mode="const"), b(z, None, noise_mode="const"))
    real = torch.from_numpy(REF["real"])
    assert torch.equal(nets.D(real, None), again.D(real, None))
    assert again.D.config == nets.D.config and again.config == nets.config


def test_lone_generator_round_trip(nets, tmp_path):
    path = save_network(tmp_path / "g.safetensors", nets.G_ema)
    again = load_network(path)
    assert again.G is None and again.D is None
    z = torch.from_numpy(REF["z"])
    with torch.no_grad():
        assert torch.equal(again.G_ema(z, None), nets.G_ema(z, None))


def test_failed_save_keeps_the_old_file(nets, tmp_path, monkeypatch):
    path = save_network(tmp_path / "g.safetensors", nets.G_ema)
    before = path.read_bytes()

    def broken_save(tensors, filename, metadata=None):
        open(filename, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(native, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_network(path, nets.G_ema)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["g.safetensors"]


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_naming_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _RunsCode()}))
    with pytest.raises(UnsafePickleError, match=r"asks for '(posix|os|nt)\.system'"):
        load_network(path)


def test_module_source_is_never_executed(tmp_path):
    marker = tmp_path / "source-ran"
    source = f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit('executed embedded source')\n"
    path = nvidia_pickles.write(nvidia_pickles.read_fixture(), tmp_path / "src.pkl", module_src=source)
    assert source.encode() in path.read_bytes()
    nets = load_network(path)
    assert nets.G_ema.img_resolution == 32 and not marker.exists()


def test_truncated_pickle(tmp_path):
    data = (FIXTURES / "ada_tiny.pkl").read_bytes()
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_network(path)


@pytest.mark.parametrize("content", [
    b"<!DOCTYPE html><html><title>Google Drive - Quota exceeded</title>",
    b"\n  <html><head></head><body>Too many users have viewed or downloaded this file recently</body></html>",
])
def test_html_page_saved_as_pkl(tmp_path, content):
    path = tmp_path / "ffhq.pkl"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="web page, not a network"):
        load_network(path)


def test_empty_and_foreign_files(tmp_path):
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_network(tmp_path / "empty.pkl")
    (tmp_path / "notes.pkl").write_bytes(b"hello world, not a network")
    with pytest.raises(CheckpointError, match="not a checkpoint toonlib knows"):
        load_network(tmp_path / "notes.pkl")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CheckpointError, match="not a StyleGAN network pickle"):
        load_network(tmp_path / "list.pkl")
    torch.save({"model": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"not a known StyleGAN2 checkpoint .*model"):
        load_network(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_network(tmp_path / "missing.pkl")


def test_a_photo_or_an_archive_given_as_a_checkpoint_is_named(tmp_path):
    """The message showed the file's first bytes (b'\\xff\\xd8\\xff\\xe0\\x00\\x10JFIF...') for a photo."""
    import gzip

    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "me.jpg")
    with pytest.raises(CheckpointError, match=r"me.jpg is a JPEG image, not a checkpoint: expected a network pickle"):
        load_network(tmp_path / "me.jpg")
    (tmp_path / "ffhq.pkl.gz").write_bytes(gzip.compress(b"\x80\x04 a pickle"))
    with pytest.raises(CheckpointError, match=r"compressed archive .* unpack it \(tar -xf, gunzip, ...\)"):
        load_network(tmp_path / "ffhq.pkl.gz")


def test_conditional_model_is_refused(tmp_path):
    def make_conditional(snapshot):
        snapshot["G_ema"].state["c_dim"] = 10
    path = nvidia_pickles.write(nvidia_pickles.modified_fixture(make_conditional), tmp_path / "cond.pkl")
    with pytest.raises(CheckpointError, match=r"conditional model \(c_dim=10\)"):
        load_network(path)


def test_stylegan3_pickle_is_refused(tmp_path):
    def make_sg3(snapshot):
        synthesis = snapshot["G_ema"].state["_modules"]["synthesis"]
        synthesis.state["_modules"]["input"] = PersistentObject("SynthesisInput", {"_modules": {}})
    path = nvidia_pickles.write(nvidia_pickles.modified_fixture(make_sg3), tmp_path / "sg3.pkl")
    with pytest.raises(CheckpointError, match="StyleGAN3"):
        load_network(path)


def test_unsupported_architecture_is_named(tmp_path):
    def make_resnet_g(snapshot):
        snapshot["G_ema"].state["_modules"]["synthesis"].state["_modules"]["b8"].state["architecture"] = "resnet"
    path = nvidia_pickles.write(nvidia_pickles.modified_fixture(make_resnet_g), tmp_path / "resnet.pkl")
    with pytest.raises(CheckpointError, match="architecture 'resnet'"):
        load_network(path)


def test_weights_that_do_not_fit_are_reported(tmp_path):
    def drop_weight(snapshot):
        del snapshot["G_ema"].state["_modules"]["mapping"].state["_modules"]["fc3"].state["_parameters"]["bias"]
    path = nvidia_pickles.write(nvidia_pickles.modified_fixture(drop_weight), tmp_path / "broken.pkl")
    with pytest.raises(CheckpointError, match=r"\[G_ema\].*missing mapping\.fc3\.bias"):
        load_network(path)


def test_meta_with_numpy_values_is_saved_as_plain_json(nets, tmp_path):
    from toonlib.checkpoints import Networks

    meta = {"format": "tensorflow", "source": "x.pkl", "static_kwargs": {"fmap_base": np.int64(8), "lr": np.float32(2)}}
    path = save_network(tmp_path / "n.safetensors", Networks(G_ema=nets.G_ema, meta=meta))
    loaded = load_network(path).meta
    assert loaded["static_kwargs"] == {"fmap_base": 8, "lr": 2.0} and loaded["origin"]["format"] == "tensorflow"
