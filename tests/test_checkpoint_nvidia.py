"""NVIDIA pickles load safely and reproduce stylegan2-ada-pytorch's outputs; bad files get clear errors."""
from __future__ import annotations

import json
import os
import pickle
import re

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


def _projected_gan_like() -> dict:
    """A Projected GAN / FastGAN snapshot: NVIDIA's persistence, its generator class named 'Generator', but no
    StyleGAN2 synthesis blocks in it."""
    def module(cls, **state):
        return PersistentObject(cls, {"_parameters": {}, "_buffers": {}, "_modules": {}, **state})

    synthesis = module("FastganSynthesis", _modules={"init": module("InitLayer"), "feat_8": module("Sequential")},
                       ngf=128, z_dim=256, nc=3, img_resolution=256)
    G = module("Generator", _modules={"mapping": module("DummyMapping"), "synthesis": synthesis},
               z_dim=256, c_dim=0, w_dim=0, img_resolution=256, img_channels=3)
    return {"G": G, "D": None, "G_ema": G, "training_set_kwargs": None, "augment_pipe": None}


def _without_z_dim(snapshot):
    del snapshot["G_ema"].state["z_dim"]
    snapshot["G_ema"].state["_init_kwargs"].pop("z_dim", None)


def _without_fc0(snapshot):
    snapshot["G_ema"].state["_modules"]["mapping"].state["_modules"]["fc0"] = None


def _bad_filter(snapshot):
    b4 = snapshot["G_ema"].state["_modules"]["synthesis"].state["_modules"]["b4"]
    b4.state["_modules"]["conv1"].state["resample_filter"] = "x"


def _d_without_block_resolutions(snapshot):
    del snapshot["D"].state["block_resolutions"]


@pytest.mark.parametrize("make, key, said", [
    (_projected_gan_like, "G_ema", r"its FastganSynthesis has no 'block_resolutions'; the classes in it: DummyMapping, "
                                   r"FastganSynthesis, InitLayer, Sequential"),
    (lambda: nvidia_pickles.modified_fixture(_without_z_dim), "G_ema", r"its Generator has no 'z_dim'; the classes"),
    (lambda: nvidia_pickles.modified_fixture(_without_fc0), "G_ema", r"its MappingNetwork has no submodule 'fc0'"),
    (lambda: nvidia_pickles.modified_fixture(_bad_filter), "G_ema", r"ValueError: invalid literal for int\(\)"),
    (lambda: nvidia_pickles.modified_fixture(_d_without_block_resolutions), "D",
     r"its Discriminator has no 'block_resolutions'"),
], ids=["projected-gan", "no-z_dim", "fc0-none", "bad-filter", "d-no-block_resolutions"])
def test_a_network_not_shaped_like_stylegan2s_is_refused_naming_file_network_and_classes(tmp_path, capsys, make,
                                                                                        key, said):
    """A Projected GAN (FastGAN) snapshot, whose generator NVIDIA's persistence names 'Generator', and edited
    stylegan2-ada snapshots ended in a Python traceback (TypeError "'NoneType' object is not iterable", exit status
    1), or "invalid literal for int()" naming no file (forty-first session's audit)."""
    from toonlib.cli import main

    path = nvidia_pickles.write(make(), tmp_path / "other.pkl")
    with pytest.raises(CheckpointError) as info:
        load_network(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key} is a ") and "that is not a StyleGAN2 network toonlib reads (" in message
    assert re.search(said, message), message
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"toonlib info: error: {path}: {key} is a ") and "Traceback" not in err


def test_a_stylegan_xl_generator_is_named_as_such(tmp_path):
    """A StyleGAN-XL snapshot (its SuperresGenerator holds a StyleGAN3-like stem) was "a StyleGAN3 (alias-free, -t/-r)
    network"; one without that stem "a SuperresGenerator, not a Generator/Discriminator" (forty-first session's
    audit)."""
    def make_xl(stem: bool):
        def edit(snapshot):
            G = snapshot["G_ema"]
            G.class_name = "SuperresGenerator"
            if stem:
                G.state["_modules"]["synthesis"].state["_modules"]["input"] = PersistentObject("SynthesisInput",
                                                                                                {"_modules": {}})
        return nvidia_pickles.modified_fixture(edit)

    for stem in (True, False):
        path = nvidia_pickles.write(make_xl(stem), tmp_path / "xl.pkl")
        with pytest.raises(CheckpointError, match=r"xl\.pkl: G_ema is a StyleGAN-XL network \(SuperresGenerator\)\. "
                                                  r"toonlib implements StyleGAN2 only") as info:
            load_network(path)
        assert "StyleGAN3" not in str(info.value).split(". ")[0]


def test_a_snapshot_whose_g_ema_is_none_says_so(tmp_path):
    """It was "NVIDIA pickle without a 'G_ema' network (keys: [..., 'G_ema', ...])": missing, and listed."""
    path = nvidia_pickles.write(nvidia_pickles.modified_fixture(lambda snapshot: snapshot.update(G_ema=None)),
                                tmp_path / "none.pkl")
    with pytest.raises(CheckpointError, match=r"none\.pkl: NVIDIA pickle whose 'G_ema' is None, not a network"):
        load_network(path)
