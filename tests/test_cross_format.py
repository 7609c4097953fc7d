"""One canonical config per architecture: generators read from any two checkpoint formats blend.

Four generators of one architecture (tf_tiny / ada_tiny's: z 64, w 32, 32 px, channels 32-32-16-8),
each with its own weights, each in its own format:

* tensorflow: `tf_tiny.pkl` (its Gs), as published by the original TF code;
* nvidia: `ada_tiny.pkl` (its G_ema), written by stylegan2-ada-pytorch (conv_clamp 256);
* rosinality: tf_tiny's training generator G written under rosinality's names and layouts by
  `to_rosinality` below, the fixtures README §4.3 table read backwards. `test_rosinality_writer_is_exact`
  proves that writer right: applied to the loaded `rosinality_tiny.pt` it gives back that file's g_ema
  tensor for tensor. (rosinality's own Generator has z_dim == w_dim; this file has z 64 / w 32, which
  its layout holds but its code could not build.)
* toonlib: ada_tiny's training generator G, written by `save_network` (safetensors).

The reference for every pair is the same two weight sets blended in one format: both written into
NVIDIA pickles (ada_tiny's snapshot with its tensors replaced).
"""
from __future__ import annotations

import copy
import dataclasses
import itertools

import nvidia_pickles
import pytest
import torch
from conftest import FIXTURES

from toonlib import blend, load_network, save_network
from toonlib.blending import check_compatible
from toonlib.checkpoints.tensorflow import read_tf_pickle
from toonlib.networks import Generator, GeneratorConfig

FORMATS = ("tensorflow", "nvidia", "rosinality", "toonlib")
RUNTIME = {"conv_clamp": None, "num_fp16_res": 0, "w_avg_beta": 0.0}


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _lead_axis(t: torch.Tensor) -> torch.Tensor:
    return t[None]


def _with_gain(t: torch.Tensor) -> torch.Tensor:
    return 4 * t  # rosinality's upsampling kernels carry the gain factor**2


_MODULATED = {"weight": ("conv.weight", _lead_axis), "affine.weight": ("conv.modulation.weight", _same),
              "affine.bias": ("conv.modulation.bias", _same)}
_CONV = {**_MODULATED, "noise_strength": ("noise.weight", lambda t: t.reshape(1)), "bias": ("activate.bias", _same),
         "resample_filter": ("conv.blur.kernel", _with_gain)}
_TORGB = {**_MODULATED, "bias": ("bias", lambda t: t.reshape(1, 3, 1, 1))}


def _rosinality_name(name: str):
    """(rosinality key, transform) for one of toonlib's generator tensors; None for those rosinality lacks."""
    parts = name.split(".")
    if parts[0] == "mapping":
        return None if parts[1] == "w_avg" else (f"style.{int(parts[1][2:]) + 1}.{parts[2]}", _same)
    res, layer, param = int(parts[1][1:]), parts[2], ".".join(parts[3:])
    k = res.bit_length() - 4  # rosinality's block index: res = 2 ** (k + 3)
    if layer == "const":
        return "input.input", _lead_axis
    if layer == "resample_filter":  # the block's image upsampling (never used at 4x4)
        return None if res == 4 else (f"to_rgbs.{k}.upsample.kernel", _with_gain)
    if layer == "torgb":
        key, transform = _TORGB[param]
        return f"{'to_rgb1' if res == 4 else f'to_rgbs.{k}'}.{key}", transform
    index = -1 if res == 4 else 2 * k + (layer == "conv1")  # conv index; -1: the 4x4 conv
    if param == "noise_const":
        return f"noises.noise_{index + 1}", lambda t: t[None, None]
    if param == "resample_filter" and layer != "conv0":
        return None  # conv1 does not resample
    key, transform = _CONV[param]
    return f"{'conv1' if index < 0 else f'convs.{index}'}.{key}", transform


def to_rosinality(G: Generator) -> dict[str, torch.Tensor]:
    """G's weights under rosinality's generator names and layouts (fixtures README §4.3, inverted)."""
    out = {}
    for name, tensor in G.state_dict().items():
        target = _rosinality_name(name)
        if target is not None:
            out[target[0]] = target[1](tensor)
    return out


def nvidia_pickle(G: Generator, path):
    """ada_tiny.pkl's snapshot (G_ema only) with every tensor replaced by G's: G's weights as an NVIDIA pickle."""
    snapshot = nvidia_pickles.read_fixture()
    net = copy.deepcopy(snapshot["G_ema"])
    for name, tensor in G.state_dict().items():
        *path_to, leaf = name.split(".")
        obj = net
        for part in path_to:
            obj = obj.state["_modules"][part]
        group = "_parameters" if leaf in obj.state["_parameters"] else "_buffers"
        obj.state[group][leaf] = torch.nn.Parameter(tensor.clone(), requires_grad=False) \
            if group == "_parameters" else tensor.clone()
    return nvidia_pickles.write({"G_ema": net}, path)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("formats")
    tf, ada = load_network(FIXTURES / "tf_tiny.pkl"), load_network(FIXTURES / "ada_tiny.pkl")
    rosinality = folder / "rosinality.pt"
    torch.save({"g_ema": to_rosinality(tf.G), "latent_avg": tf.G.mapping.w_avg.clone()}, rosinality)
    native = save_network(folder / "toonlib.safetensors", ada.G)
    return {"tensorflow": FIXTURES / "tf_tiny.pkl", "nvidia": FIXTURES / "ada_tiny.pkl", "rosinality": rosinality,
            "toonlib": native}


@pytest.fixture(scope="module")
def generators(files) -> dict[str, Generator]:
    return {fmt: load_network(path).G_ema for fmt, path in files.items()}


@pytest.fixture(scope="module")
def in_one_format(generators, tmp_path_factory) -> dict[str, Generator]:
    """The same four weight sets, all read back from NVIDIA pickles."""
    folder = tmp_path_factory.mktemp("nvidia")
    return {fmt: load_network(nvidia_pickle(G, folder / f"{fmt}.pkl")).G_ema for fmt, G in generators.items()}


def test_rosinality_writer_is_exact():
    """`to_rosinality` reproduces a real rosinality file from toonlib's reading of it: every tensor, kernels too."""
    original = torch.load(FIXTURES / "rosinality_tiny.pt", weights_only=True)["g_ema"]
    written = to_rosinality(load_network(FIXTURES / "rosinality_tiny.pt").G_ema)
    assert sorted(written) == sorted(original)
    for key, tensor in original.items():
        assert torch.equal(written[key], tensor), key


def test_every_format_reads_one_canonical_config(generators):
    configs = {fmt: G.config for fmt, G in generators.items()}
    assert configs["tensorflow"].mapping_layer_features == 32  # TF's mapping_fmaps None means w_dim
    assert {(c.channel_base, c.channel_max) for c in configs.values()} == {(256, 32)}
    assert configs["nvidia"].conv_clamp == configs["toonlib"].conv_clamp == 256.0
    assert configs["tensorflow"].conv_clamp is configs["rosinality"].conv_clamp is None
    functional = {fmt: dataclasses.replace(c, **RUNTIME) for fmt, c in configs.items()}
    assert all(c == functional["nvidia"] for c in functional.values()), functional
    # The four really are different weights.
    for a, b in itertools.combinations(generators.values(), 2):
        assert not torch.equal(a.synthesis.b32.conv1.weight, b.synthesis.b32.conv1.weight)


@pytest.mark.filterwarnings("ignore:the low-res .toon. model does not look fine-tuned")  # unrelated weights
@pytest.mark.parametrize("low_format, high_format", list(itertools.permutations(FORMATS, 2)))
def test_blend_across_formats_equals_blend_in_one_format(generators, in_one_format, low_format, high_format):
    low, high = generators[low_format], generators[high_format]
    G = blend(low, high, 16)
    reference = blend(in_one_format[low_format], in_one_format[high_format], 16)
    state, expected = G.state_dict(), reference.state_dict()
    assert state.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(state[key], tensor), key
    assert torch.equal(G.synthesis.b16.conv1.weight, low.synthesis.b16.conv1.weight)
    assert torch.equal(G.synthesis.b32.conv1.weight, high.synthesis.b32.conv1.weight)
    assert G.config == low.config  # run-time fields (conv_clamp here) are the low-res model's
    ws = low.mapping(torch.randn([2, 64], generator=torch.Generator().manual_seed(0)), None)
    with torch.no_grad():
        torch.testing.assert_close(G.synthesis(ws), reference.synthesis(ws), rtol=0, atol=1e-6)


def test_a_real_architecture_difference_is_still_refused(generators):
    other = load_network(FIXTURES / "rosinality_tiny.pt").G_ema  # w 64, 16 channels
    with pytest.raises(ValueError, match="different architectures") as info:
        blend(generators["nvidia"], other, 16)
    message = str(info.value)
    assert "w_dim: low-res 32, high-res 64" in message and "channel_max: low-res 32, high-res 16" in message


def test_a_config_field_that_changes_the_function_is_refused(generators):
    """Same names and shapes, but a TF pickle whose mapping runs at learning-rate multiplier 1."""
    with open(FIXTURES / "tf_tiny.pkl", "rb") as f:
        from toonlib.checkpoints.safe_pickle import safe_load

        tf_tuple = safe_load(f)
    tf_tuple[2].state["static_kwargs"]["mapping_lrmul"] = 1.0
    G = read_tf_pickle(tf_tuple).G_ema
    with pytest.raises(ValueError, match=r"mapping_lr_multiplier: a 0\.01, b 1\.0"):
        check_compatible(generators["nvidia"], G)


def test_channel_table_is_expressed_one_way():
    # At 32 px, channel_base 32768 and 16384 both give 512 channels everywhere: the same network.
    assert GeneratorConfig(img_resolution=32, channel_base=32768) == GeneratorConfig(img_resolution=32,
                                                                                    channel_base=16384)
    assert (GeneratorConfig().channel_base, GeneratorConfig().channel_max) == (32768, 512)  # FFHQ stays as it is
    config = GeneratorConfig(img_resolution=64, channel_base=4096, channel_max=10_000)
    assert (config.channel_base, config.channel_max) == (4096, 1024)
    assert [config.channels(r) for r in (4, 8, 16, 32, 64)] == [1024, 512, 256, 128, 64]
    with pytest.raises(ValueError, match="no channels at 64 px"):
        GeneratorConfig(img_resolution=64, channel_base=32)
