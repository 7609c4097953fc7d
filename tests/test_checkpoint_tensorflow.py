"""TF StyleGAN2 pickles: tf_tiny.pkl must reproduce what legacy.py's converted networks compute."""
from __future__ import annotations

import pickle
import sys
import types

import pytest
import torch
from conftest import FIXTURES, assert_close, load_ref

from toonlib.checkpoints import CheckpointError, load_network
from toonlib.checkpoints.safe_pickle import TFNetwork, safe_load
from toonlib.checkpoints.tensorflow import is_tf_pickle, read_tf_pickle

TF_PKL = FIXTURES / "tf_tiny.pkl"
G, D, GS = 0, 1, 2  # positions in the pickled tuple


@pytest.fixture(scope="module")
def ref() -> dict:
    return load_ref("tf_tiny_ref.npz")


@pytest.fixture(scope="module")
def nets():
    return load_network(TF_PKL)


@pytest.fixture
def tf_tuple() -> tuple:
    """A fresh unpickled (G, D, Gs), safe to modify."""
    with open(TF_PKL, "rb") as f:
        return safe_load(f)


def _generator_outputs(G_ema, G, ref: dict) -> dict[str, torch.Tensor]:
    z = torch.from_numpy(ref["z"])
    z_mix = torch.from_numpy(ref["z_mix"])
    n, num_ws, z_dim = z_mix.shape
    return {
        "ws_psi1": G_ema.mapping(z, None, truncation_psi=1),
        "ws_psi07": G_ema.mapping(z, None, truncation_psi=0.7),
        "img_psi1_const": G_ema(z, None, truncation_psi=1, noise_mode="const"),
        "img_psi07_const": G_ema(z, None, truncation_psi=0.7, noise_mode="const"),
        "img_psi1_none": G_ema(z, None, truncation_psi=1, noise_mode="none"),
        "ws_mixed": G_ema.mapping(z_mix.reshape(n * num_ws, z_dim), None)[:, 0].reshape(n, num_ws, -1),
        "img_mixed_const": G_ema.synthesis(torch.from_numpy(ref["ws_mixed"]), noise_mode="const"),
        "ws_G_psi1": G.mapping(z, None, truncation_psi=1),
        "img_G_psi1_const": G(z, None, truncation_psi=1, noise_mode="const"),
    }


def _discriminator_outputs(D, ref: dict) -> dict[str, torch.Tensor]:
    real = torch.from_numpy(ref["real"])
    return {
        "logits_fake": D(torch.from_numpy(ref["img_psi1_const"]), None),
        "logits_real": D(real, None),  # one minibatch-stddev group of 8 (legacy.py's None)
        "logits_real4": D(real[:4], None),
        "logits_real2": D(real[:2], None),
    }


@torch.no_grad()
def test_generators_reproduce_legacy_outputs(nets, ref):
    assert not nets.G_ema.training and not nets.G.training
    outputs = _generator_outputs(nets.G_ema, nets.G, ref)
    for key, value in outputs.items():
        assert value.shape == ref[key].shape, key
        assert_close(value, ref[key])


@torch.no_grad()
def test_discriminator_reproduces_legacy_outputs(nets, ref):
    assert not nets.D.training
    for key, value in _discriminator_outputs(nets.D, ref).items():
        assert value.shape == ref[key].shape, key
        assert_close(value, ref[key])


def test_configs_match_legacy_init_kwargs(nets, ref):
    g_ref, d_ref = ref["G_init_kwargs"], ref["D_init_kwargs"]
    for config in (nets.G_ema.config, nets.G.config):
        synthesis = g_ref["synthesis_kwargs"]
        assert (config.z_dim, config.w_dim, config.img_resolution) == (
            g_ref["z_dim"], g_ref["w_dim"], g_ref["img_resolution"])
        assert (config.channel_base, config.channel_max, config.conv_clamp, config.num_fp16_res) == (
            synthesis["channel_base"], synthesis["channel_max"], synthesis["conv_clamp"], synthesis["num_fp16_res"])
        assert config.mapping_layers == g_ref["mapping_kwargs"]["num_layers"]
        assert list(config.resample_filter) == synthesis["resample_filter"]
    d = nets.D.config
    assert (d.img_resolution, d.channel_base, d.channel_max, d.conv_clamp, d.num_fp16_res) == (
        d_ref["img_resolution"], d_ref["channel_base"], d_ref["channel_max"], d_ref["conv_clamp"],
        d_ref["num_fp16_res"])
    assert d.mbstd_group_size is None and d_ref["epilogue_kwargs"]["mbstd_group_size"] is None
    assert d.mbstd_num_channels == d_ref["epilogue_kwargs"]["mbstd_num_channels"]


def test_state_dict_listing_matches_legacy(nets, ref):
    for net, key in ((nets.G_ema, "G_state_keys"), (nets.D, "D_state_keys")):
        ours = {name: list(t.shape) for name, t in net.state_dict().items()}
        assert ours == {name: list(shape) for name, shape, _ in ref[key]}


def test_meta(nets, ref):
    assert nets.meta["format"] == "tensorflow"
    assert nets.meta["source"] == str(TF_PKL)
    for key in ("G", "D", "Gs"):
        assert nets.meta["static_kwargs"][key] == ref["tf_static_kwargs"][key]["static_kwargs"]


def test_is_tf_pickle(tf_tuple):
    assert is_tf_pickle(tf_tuple)
    assert is_tf_pickle(tf_tuple[GS:])
    assert not is_tf_pickle({"G_ema": tf_tuple[GS]})
    assert not is_tf_pickle(())


@torch.no_grad()
def test_tuple_with_only_gs(tf_tuple, ref):
    nets = read_tf_pickle((tf_tuple[GS],), "gs-only")
    assert nets.G is None and nets.D is None
    assert_close(nets.G_ema.mapping(torch.from_numpy(ref["z"]), None, truncation_psi=0.7), ref["ws_psi07"])


@torch.no_grad()
def test_ignorable_kwargs_are_accepted(tf_tuple, ref):
    for index in (G, GS):
        tf_tuple[index].state["static_kwargs"].update(
            truncation_psi=0.5, truncation_cutoff=4, style_mixing_prob=0.9, structure="auto")
    tf_tuple[D].state["static_kwargs"]["structure"] = "auto"
    nets = read_tf_pickle(tf_tuple)
    # truncation_psi=0.5 in the pickle must not change the default psi=1 of mapping().
    assert_close(nets.G_ema.mapping(torch.from_numpy(ref["z"]), None), ref["ws_psi1"])
    assert_close(nets.D(torch.from_numpy(ref["real"]), None), ref["logits_real"])


@torch.no_grad()
def test_explicit_mbstd_group_size_is_used(tf_tuple, ref):
    tf_tuple[D].state["static_kwargs"]["mbstd_group_size"] = 4
    D4 = read_tf_pickle(tf_tuple).D
    real = torch.from_numpy(ref["real"])
    assert D4.config.mbstd_group_size == 4
    assert_close(D4(real[:4], None), ref["logits_real4"])  # groups of <= 4 agree with None ...
    difference = (D4(real, None) - torch.from_numpy(ref["logits_real"])).abs().max()
    assert difference > 1e-3  # ... but 8 images now form two groups


def _write_tf_pickle(path, nets: tuple, monkeypatch) -> None:
    """Pickle `nets` the way TF StyleGAN2 did: each Network by its state dict, under dnnlib's class name."""
    module = types.ModuleType("dnnlib.tflib.network")

    class Network:
        def __init__(self, state: dict):
            self.__dict__ = state

    Network.__module__, Network.__qualname__ = module.__name__, "Network"
    module.Network = Network
    for name in ("dnnlib", "dnnlib.tflib"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)

    def convert(value):
        if isinstance(value, TFNetwork):
            state = dict(value.state)
            state["components"] = {k: convert(v) for k, v in state["components"].items()}
            return Network(state)
        return value

    with open(path, "wb") as f:
        pickle.dump(tuple(convert(net) for net in nets), f, protocol=3)


def test_written_tf_pickle_round_trips(tf_tuple, ref, tmp_path, monkeypatch):
    path = tmp_path / "copy.pkl"
    _write_tf_pickle(path, tf_tuple, monkeypatch)
    with torch.no_grad():
        ws = load_network(path).G_ema.mapping(torch.from_numpy(ref["z"]), None)
    assert_close(ws, ref["ws_psi1"])


def test_unknown_static_kwarg_is_refused(tf_tuple, tmp_path, monkeypatch):
    tf_tuple[GS].state["static_kwargs"]["fmap_decay"] = 1.0
    path = tmp_path / "fork.pkl"
    _write_tf_pickle(path, tf_tuple, monkeypatch)
    with pytest.raises(CheckpointError) as info:
        load_network(path)
    message = str(info.value)
    assert "[Gs]" in message and "fmap_decay" in message
    assert "latent_size" in message and "fmap_base" in message  # says what is supported


def test_unknown_discriminator_kwarg_is_refused(tf_tuple):
    tf_tuple[D].state["static_kwargs"]["dlatent_size"] = 512  # a G kwarg, unknown to D
    with pytest.raises(CheckpointError, match=r"\[D\].*dlatent_size"):
        read_tf_pickle(tf_tuple, "x.pkl")


def test_conditional_model_is_refused(tf_tuple):
    for net in tf_tuple:
        net.state["static_kwargs"]["label_size"] = 10
    with pytest.raises(CheckpointError, match=r"conditional model \(label_size=10\).*unconditional"):
        read_tf_pickle(tf_tuple)


@pytest.mark.parametrize("index, key, value, expected", [
    (GS, "architecture", "resnet", "architecture='resnet' is not supported.*'skip'"),
    (GS, "architecture", "orig", "architecture='orig'"),
    (D, "architecture", "skip", r"\[D\].*architecture='skip'.*'resnet'"),
    (GS, "nonlinearity", "relu", "nonlinearity='relu'"),
    (GS, "mapping_nonlinearity", "relu", "mapping_nonlinearity='relu'"),
])
def test_unsupported_architecture_is_refused(tf_tuple, index, key, value, expected):
    tf_tuple[index].state["static_kwargs"][key] = value
    with pytest.raises(CheckpointError, match=expected):
        read_tf_pickle(tf_tuple)


def _synthesis_variables(net: TFNetwork) -> list:
    return net.state["components"]["synthesis"].state["variables"]


def test_missing_variable_is_named(tf_tuple):
    variables = _synthesis_variables(tf_tuple[GS])
    variables[:] = [(name, value) for name, value in variables if name != "16x16/Conv1/bias"]
    with pytest.raises(CheckpointError, match=r"\[Gs\].*missing synthesis\.b16\.conv1\.bias"):
        read_tf_pickle(tf_tuple)


def test_missing_discriminator_variable_is_named(tf_tuple):
    variables = tf_tuple[D].state["variables"]
    variables[:] = [(name, value) for name, value in variables if name != "16x16/Skip/weight"]
    with pytest.raises(CheckpointError, match=r"\[D\].*missing b16\.skip\.weight"):
        read_tf_pickle(tf_tuple)


def test_unmapped_variable_is_named(tf_tuple):
    _synthesis_variables(tf_tuple[G]).append(("16x16/StyleMod/weight", _synthesis_variables(tf_tuple[G])[-1][1]))
    with pytest.raises(CheckpointError, match=r"\[G\].*synthesis/16x16/StyleMod/weight"):
        read_tf_pickle(tf_tuple)


def test_orig_architecture_layers_are_refused(tf_tuple):
    variables = _synthesis_variables(tf_tuple[GS])
    variables[:] = [(name.replace("32x32/ToRGB", "ToRGB_lod0"), value) for name, value in variables]
    with pytest.raises(CheckpointError, match=r"synthesis/ToRGB_lod0/weight.*'orig' architecture"):
        read_tf_pickle(tf_tuple)


def test_wrong_layout_is_reported(tf_tuple):
    variables = tf_tuple[GS].state["components"]["mapping"].state["variables"]
    variables[:] = [(name, value.T if name == "Dense0/weight" else value) for name, value in variables]
    with pytest.raises(CheckpointError, match=r"wrong shape mapping\.fc0\.weight \[64, 32\]"):
        read_tf_pickle(tf_tuple)


def test_a_stylegan1_pickle_is_named_as_such(tf_tuple):
    """StyleGAN (version 1)'s FFHQ pickle, which people mix up with StyleGAN2's, was "the 'orig' architecture
    (StyleGAN2 configs B-D)" with 1,400 characters of layer names; its networks record their build function."""
    tf_tuple[GS].state["build_func_name"] = "G_style"
    with pytest.raises(CheckpointError, match=r"^x\.pkl \[Gs\] is a StyleGAN \(version 1\) network \(G_style\): "
                                              r"toonlib reads StyleGAN2 models only; use a StyleGAN2 one \(`toonlib "
                                              r"models`, e\.g\. ffhq-1024-tf\)$"):
        read_tf_pickle((None, None, tf_tuple[GS]), "x.pkl")
    tf_tuple[GS].state["build_func_name"] = "G_mapping"  # StyleGAN2's mapping network is built by one too
    assert read_tf_pickle((None, None, tf_tuple[GS]), "x.pkl").G_ema is not None
