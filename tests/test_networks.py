"""The networks compute NVIDIA's functions: parity with stylegan2-ada-pytorch on the ada_tiny fixture."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from conftest import assert_close, load_ref

from toonlib import ops
from toonlib.networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

REF = load_ref("ada_tiny_ref.npz")
STATE = load_ref("ada_tiny_state.npz")
TINY_G = dict(z_dim=64, w_dim=32, img_resolution=32, channel_base=256, channel_max=32, conv_clamp=256)
TINY_D = dict(img_resolution=32, channel_base=256, channel_max=32, conv_clamp=256)


def _load(net: torch.nn.Module, prefix: str) -> torch.nn.Module:
    net.load_state_dict({k: torch.from_numpy(STATE[f"{prefix}/{k}"]) for k in net.state_dict()})
    return net.eval()


@pytest.fixture(scope="module")
def G_ema():
    return _load(Generator(**TINY_G), "G_ema")


@pytest.fixture(scope="module")
def D():
    return _load(Discriminator(**TINY_D), "D")


def test_state_dict_names_shapes_and_order_match_nvidia():
    g_keys = [(k, list(v.shape)) for k, v in Generator(**TINY_G).state_dict().items()]
    d_keys = [(k, list(v.shape)) for k, v in Discriminator(**TINY_D).state_dict().items()]
    assert g_keys == [(k, s) for k, s, _ in REF["G_state_keys"]]
    assert d_keys == [(k, s) for k, s, _ in REF["D_state_keys"]]


@torch.no_grad()
@pytest.mark.parametrize("key, psi, cutoff", [("ws_psi1", 1, None), ("ws_psi07", 0.7, None),
                                              ("ws_psi07_cutoff3", 0.7, 3)])
def test_mapping_with_truncation(G_ema, key, psi, cutoff):
    ws = G_ema.mapping(torch.from_numpy(REF["z"]), None, truncation_psi=psi, truncation_cutoff=cutoff)
    assert_close(ws, REF[key])


@torch.no_grad()
@pytest.mark.parametrize("key, psi, noise_mode", [("img_psi1_const", 1, "const"), ("img_psi07_const", 0.7, "const"),
                                                  ("img_psi1_none", 1, "none")])
def test_generator_images(G_ema, key, psi, noise_mode):
    img = G_ema(torch.from_numpy(REF["z"]), None, truncation_psi=psi, noise_mode=noise_mode)
    assert img.dtype == torch.float32
    assert_close(img, REF[key])


@torch.no_grad()
@pytest.mark.parametrize("fused", [True, False])
def test_per_layer_ws_and_conv_clamp(G_ema, fused):
    assert_close(G_ema.synthesis(torch.from_numpy(REF["ws_mixed"]), noise_mode="const", fused_modconv=fused),
                 REF["img_mixed_const"])
    # ToRGB outputs exceed conv_clamp=256 here: without clamping the image differs by up to 323.
    # Values reach 470, so float32 rounding alone allows ~1e-6 of that (NVIDIA vs itself on 2 threads: 6e-5).
    assert_close(G_ema.synthesis(torch.from_numpy(REF["ws_extreme"]), noise_mode="const", fused_modconv=fused),
                 REF["img_extreme_const"], atol=1e-3)


@torch.no_grad()
def test_training_generator_has_its_own_w_avg():
    G = _load(Generator(**TINY_G), "G")
    z = torch.from_numpy(REF["z"])
    assert_close(G.mapping(z, None, truncation_psi=0.7), REF["ws_G_psi07"])
    assert_close(G(z, None, noise_mode="const"), REF["img_G_psi1_const"])


@torch.no_grad()
def test_discriminator_logits(D):
    real = torch.from_numpy(REF["real"])
    assert_close(D(torch.from_numpy(REF["img_psi1_const"]), None), REF["logits_fake"])
    assert_close(D(real, None), REF["logits_real"])  # two strided mbstd groups of 4
    assert_close(D(real[:2], None), REF["logits_real2"])
    assert_close(D(real * 512, None), REF["logits_real_extreme"])  # conv clamps active


@torch.no_grad()
def test_fp16_blocks_native_path_matches_reference_loosely():
    """num_fp16_res=2: fp32 on CPU by default (exact), float16 blocks when forced (NVIDIA's own CPU numbers)."""
    ref16 = load_ref("ada_tiny_fp16_ref.npz")
    G = _load(Generator(**TINY_G, num_fp16_res=2), "G_ema")
    D = _load(Discriminator(**TINY_D, num_fp16_res=2), "D")
    ws = torch.from_numpy(REF["ws_mixed"])
    assert_close(G.synthesis(ws, noise_mode="const"), REF["img_mixed_const"])
    native = G.synthesis(ws, noise_mode="const", force_fp32=False)
    assert_close(native, ref16["img_mixed_const_native"], rtol=2e-2, atol=5e-2)
    assert not torch.equal(native, G.synthesis(ws, noise_mode="const"))  # float16 really ran
    real = torch.from_numpy(REF["real"])
    assert_close(D(real, None, force_fp32=False), ref16["logits_real_native"], rtol=2e-2, atol=5e-2)


def test_noise_modes():
    G = Generator(z_dim=8, w_dim=8, img_resolution=8, channel_base=64, channel_max=8).eval()
    for p in G.parameters():
        if p.ndim == 0:
            p.data.fill_(1.0)  # noise strengths on
    ws = G.mapping(torch.randn(2, 8), None)
    with torch.no_grad():
        const = G.synthesis(ws, noise_mode="const")
        assert torch.equal(const, G.synthesis(ws, noise_mode="const"))
        assert not torch.equal(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random"))
        assert not torch.equal(const, G.synthesis(ws, noise_mode="none"))
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")
    with pytest.raises(ValueError, match=r"\[N, 4, 8\]"):
        G.synthesis(ws[:, :3])


def test_w_avg_tracks_mapping_output_in_training_mode():
    G = Generator(z_dim=8, w_dim=8, img_resolution=8, channel_base=64, channel_max=8, w_avg_beta=0.9)
    z = torch.randn(16, 8)
    G.train()
    with torch.no_grad():
        w = G.mapping(z, None)[:, 0]
    assert torch.allclose(G.mapping.w_avg, 0.1 * w.mean(0), atol=1e-6)
    G.eval()
    before = G.mapping.w_avg.clone()
    G.mapping(z, None)
    assert torch.equal(G.mapping.w_avg, before)


@pytest.mark.parametrize("res", [4, 8, 64])
def test_any_power_of_two_resolution_and_gradients_to_w(res):
    G = Generator(z_dim=8, w_dim=8, img_resolution=res, channel_base=128, channel_max=8)
    D = Discriminator(img_resolution=res, channel_base=128, channel_max=8)
    assert G.num_ws == 2 * int(np.log2(res)) - 2
    ws = G.mapping(torch.randn(2, 8), None).detach().requires_grad_(True)
    img = G.synthesis(ws, noise_mode="random")
    assert img.shape == (2, 3, res, res)
    D(img, None).sum().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0


def test_latents_of_the_wrong_shape_are_named(G_ema):
    z_dim, num_ws, w_dim = G_ema.z_dim, G_ema.num_ws, G_ema.w_dim
    with pytest.raises(ValueError, match=rf"z must have shape \[N, {z_dim}\], got \[2, 7\]"):
        G_ema.mapping(torch.randn(2, 7), None)  # was: "mat1 and mat2 shapes cannot be multiplied"
    with pytest.raises(ValueError, match=rf"z must have shape \[N, {z_dim}\], got \[{z_dim}\]"):
        G_ema(torch.randn(z_dim), None)
    with pytest.raises(ValueError, match=rf"ws must have shape \[N, {num_ws}, {w_dim}\] with N >= 1, got "
                                         rf"\[1, {w_dim}\]"):
        G_ema.synthesis(torch.randn(1, w_dim))
    with pytest.raises(ValueError, match=rf"with N >= 1, got \[0, {num_ws}, {w_dim}\]"):  # torch.cat's error
        G_ema.synthesis(torch.randn(0, num_ws, w_dim))
    # NumPy arrays failed inside ("'numpy.ndarray' object has no attribute 'to'")
    with pytest.raises(TypeError, match=r"^z is a torch tensor, got ndarray: torch.from_numpy\(z\).float\(\)$"):
        G_ema(np.zeros((1, z_dim), np.float32), None)
    with pytest.raises(TypeError, match=r"^ws is a torch tensor, got list$"):
        G_ema.synthesis([[0.0] * w_dim] * num_ws)


def test_a_discriminator_names_the_images_it_judges(D):
    """Images of another size failed at the last layer: "mat1 and mat2 shapes cannot be multiplied"."""
    for shape in ((1, 3, 64, 64), (1, 1, 32, 32), (3, 32, 32)):
        with pytest.raises(ValueError, match=rf"^this discriminator judges images \[N, 3, 32, 32\], got "
                                             rf"\[{', '.join(map(str, shape))}\]$"):
            D(torch.zeros(shape), None)
    assert D(torch.zeros(2, 3, 32, 32), None).shape == (2, 1)


def test_repr_starts_with_what_users_call_it_with():
    """repr(G) was a module tree of `FullyConnectedLayer()`s that never said the resolution or the latent sizes."""
    G = Generator(z_dim=8, w_dim=4, img_resolution=8, channel_base=32, channel_max=8)
    assert repr(G).splitlines()[:2] == ["Generator(", "  img_resolution=8, z_dim=8, w_dim=4, num_ws=4"]
    D = Discriminator(img_resolution=8, channel_base=32, channel_max=8)
    assert repr(D).splitlines()[:2] == ["Discriminator(", "  img_resolution=8, img_channels=3"]


@pytest.mark.parametrize("bad", [3, 2, 2048, 48])
def test_rejects_bad_resolution(bad):
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(img_resolution=bad)
    with pytest.raises(ValueError, match="power of two"):
        DiscriminatorConfig(img_resolution=bad)


_DETERMINISM_SCRIPT = """
import sys, torch
from toonlib.networks import Generator
torch.manual_seed(0)
G = Generator(z_dim=8, w_dim=8, img_resolution=16, channel_base=128, channel_max=8).eval()
with torch.no_grad():
    for name, p in G.named_parameters():
        if name.endswith("noise_strength"):
            p.fill_(0.5)  # initialised to 0: make the noise count
z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
torch.manual_seed(2)
with torch.no_grad():
    images = torch.cat([G(z, None), G(z, None, noise_mode="random")])
torch.save(images, sys.argv[1])
"""


def test_deterministic_on_cpu(tmp_path):
    """Same weights, inputs and seeds give bit-identical images in separate processes (docs/design.md section 3)."""
    import subprocess
    import sys

    outputs = []
    for run in range(2):
        path = tmp_path / f"run{run}.pt"
        subprocess.run([sys.executable, "-c", _DETERMINISM_SCRIPT, str(path)], check=True)
        outputs.append(torch.load(path))
    assert outputs[0].shape == (6, 3, 16, 16)
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0][:3], outputs[0][3:])  # the random-noise images really drew noise


def test_upfirdn_matches_direct_convolution():
    """FIR upsampling equals zero insertion followed by a true 2-D convolution with the scaled filter."""
    x = torch.randn(2, 3, 5, 5)
    f = ops.setup_filter([1, 3, 3, 1])
    up = ops.upsample2d(x, f)
    zeros = torch.zeros(2, 3, 10, 10)
    zeros[:, :, ::2, ::2] = x
    padded = torch.nn.functional.pad(zeros, [2, 1, 2, 1])
    expected = torch.nn.functional.conv2d(padded, (f * 4).flip([0, 1]).expand(3, 1, 4, 4), groups=3)
    assert torch.allclose(up, expected, atol=1e-6)
    assert ops.downsample2d(up, f).shape == x.shape


def test_gradients_match_finite_differences():
    """The in-place bias/activation path is autograd-correct (float64 gradcheck on tiny networks; fast mode:
    the Jacobian against random directions, ~100x quicker than entry by entry)."""
    torch.manual_seed(0)
    G = Generator(z_dim=4, w_dim=4, img_resolution=8, channel_base=32, channel_max=4, conv_clamp=0.5).double()
    D = Discriminator(img_resolution=8, channel_base=32, channel_max=4, conv_clamp=0.5, mbstd_group_size=2).double()
    for p in G.parameters():
        if p.ndim <= 1:
            p.data.add_(0.3 * torch.randn_like(p))  # non-zero biases and noise strengths
    ws = torch.randn(2, G.num_ws, 4, dtype=torch.float64, requires_grad=True)
    for fused in (True, False):
        render = functools.partial(G.synthesis, noise_mode="const", fused_modconv=fused)
        assert torch.autograd.gradcheck(render, (ws,), fast_mode=True)
    img = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: D(x, None), (img,), fast_mode=True)
    # R1 differentiates through D's gradient
    assert torch.autograd.gradgradcheck(lambda x: D(x, None), (img,), fast_mode=True)


def test_inference_and_autograd_paths_agree(G_ema, D):
    """bias_act runs in place without gradients and out of place with them: same numbers."""
    ws = torch.from_numpy(REF["ws_extreme"])  # conv_clamp active
    with torch.no_grad():
        fast = G_ema.synthesis(ws, noise_mode="const")
        fast_logits = D(fast, None)
    tracked = G_ema.synthesis(ws.clone().requires_grad_(True), noise_mode="const")
    torch.testing.assert_close(tracked.detach(), fast, rtol=1e-5, atol=1e-3)
    img = fast.clone().requires_grad_(True)
    torch.testing.assert_close(D(img, None).detach(), fast_logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_synthesis_blocks_under_autocast(dtype):
    """Under bfloat16 autocast (a bfloat16 projection) every synthesis block computes in bfloat16, rather than
    converting its input back to float32 for autocast to convert again; under float16 autocast they stay float32
    (float16 could overflow), and the image is float32 either way."""
    torch.manual_seed(0)
    G = Generator(GeneratorConfig(z_dim=8, w_dim=8, img_resolution=16, channel_base=128, channel_max=16)).eval()
    seen = []
    entries = [block.conv0 if hasattr(block, "conv0") else block.conv1 for block in G.synthesis.children()]
    hooks = [layer.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype)) for layer in entries]
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
            img = G.synthesis(G.mapping(torch.randn(1, 8), None), noise_mode="const")
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == [torch.bfloat16 if dtype == torch.bfloat16 else torch.float32] * 3 and img.dtype == torch.float32


def test_a_config_that_builds_no_network_is_refused_by_name():
    """Audit: `Generator(z_dim=0)` failed with a ZeroDivisionError in a layer, `Generator({...})` with "'dict' object
    has no attribute 'z_dim'"."""
    import re

    for fields, said in [({"z_dim": 0}, "z_dim must be a whole number >= 1, got 0"),
                         ({"w_dim": 16.0}, "w_dim must be a whole number >= 1, write it as an int: 16, not 16.0"),
                         ({"mapping_layers": 0}, "mapping_layers must be a whole number >= 1, got 0")]:
        with pytest.raises(ValueError, match=f"^{re.escape(said)}$"):
            Generator(img_resolution=16, **fields)
    with pytest.raises(ValueError, match=r"^channel_max must be a whole number >= 1, got 0$"):
        Discriminator(img_resolution=16, channel_max=0)
    for network, config in ((Generator, "GeneratorConfig"), (Discriminator, "DiscriminatorConfig")):
        with pytest.raises(TypeError, match=rf"^{network.__name__} takes a {config} or its fields as keywords "
                                            rf"\({network.__name__}\(\*\*fields\) for a dict\), got dict$"):
            network({"img_resolution": 16})


def test_a_truncation_that_is_no_number_is_refused_by_name(G_ema):
    """`G(z, truncation_psi=nan)` drew NaN images without a word, and None, a string or a float cutoff failed inside
    torch ("lerp() received an invalid combination of arguments", "slice indices must be integers"), naming neither
    argument (fortieth session's audit)."""
    z = torch.from_numpy(REF["z"])
    for psi, given in ((float("nan"), "nan"), (float("inf"), "inf"), (None, "None"), ("0.7", "'0.7'"), (True, "True"),
                       (torch.tensor(0.7), "a Tensor")):
        for call in (G_ema, G_ema.mapping):
            with pytest.raises(ValueError, match=rf"^truncation_psi must be a finite number \(1: no truncation, 0: "
                                                 rf"every face the mean face\), got {given}$"):
                call(z, None, truncation_psi=psi)
    for cutoff, got in ((2.5, "got 2.5"), (2.0, "write it as an int: 2, not 2.0"), ("3", "got '3'"), (-1, "got -1")):
        with pytest.raises(ValueError, match=rf"^truncation_cutoff must be a whole number >= 0, {got}$"):
            G_ema(z, None, truncation_psi=0.7, truncation_cutoff=cutoff)
    ws = G_ema.mapping(z, None, truncation_psi=np.float32(0.7), truncation_cutoff=np.int64(3))  # NumPy's numbers
    assert_close(ws, REF["ws_psi07_cutoff3"])
