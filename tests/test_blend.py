"""toonlib.blending: the layer-swapping rule of Pinkney & Adler's blend_models.py, on tiny random generators."""
from __future__ import annotations

import copy
import math
import re
import shutil
from pathlib import Path

import pytest
import torch

from toonlib.blending import Blender, LineageWarning, blend, blend_per_layer, check_compatible, layer_weights
from toonlib.networks import Generator

TINY = {"z_dim": 16, "w_dim": 16, "img_resolution": 32, "channel_base": 128, "channel_max": 16}
SETTINGS = [(res, level) for res in (4, 8, 16, 32) for level in (0, 1)]

# The rule for a 32 px model, written out by hand: the layers that come from the high-res model.
B8, B16, B32 = ([f"synthesis.b{r}.{p}" for p in ("conv0", "conv1", "torgb")] for r in (8, 16, 32))
HIGH_LAYERS = {
    (4, 0): {*B8, *B16, *B32},
    (4, 1): {"synthesis.b8.conv1", "synthesis.b8.torgb", *B16, *B32},
    (8, 0): {*B16, *B32},
    (8, 1): {"synthesis.b16.conv1", "synthesis.b16.torgb", *B32},
    (16, 0): {*B32},
    (16, 1): {"synthesis.b32.conv1", "synthesis.b32.torgb"},
    (32, 0): set(), (32, 1): set(),  # above 32 px, layer_weights refuses the setting, as blend does
}


def tiny_generator(seed: int, **overrides) -> Generator:
    """A tiny generator whose every tensor (biases, noise strengths, w_avg included) is non-trivial."""
    torch.manual_seed(seed)
    G = Generator(**{**TINY, **overrides}).eval().requires_grad_(False)
    for name, tensor in G.state_dict().items():
        if "resample_filter" in name:
            continue
        if name.endswith(("bias", "noise_strength", "w_avg")):
            tensor.add_(0.2 * torch.randn_like(tensor))
        else:
            tensor.add_(0.2 * tensor.std() * torch.randn_like(tensor))
    return G


@pytest.fixture
def low() -> Generator:
    return tiny_generator(1)


@pytest.fixture
def high() -> Generator:
    return tiny_generator(2)


@pytest.fixture
def ws() -> torch.Tensor:
    torch.manual_seed(3)
    return torch.randn([2, 8, 16])


def layer_of(param_name: str) -> str:
    return ".".join(param_name.split(".")[:3])


def synthesis_params(G: Generator) -> dict[str, torch.Tensor]:
    return dict(G.synthesis.named_parameters(prefix="synthesis"))


def non_blended(G: Generator) -> dict[str, torch.Tensor]:
    """Everything that always comes from the low-res model: mapping, buffers, b4.conv1."""
    blended = {k for k in synthesis_params(G) if layer_of(k) != "synthesis.b4.conv1"}
    return {k: v for k, v in G.state_dict().items() if k not in blended}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def render(G: Generator, ws: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return G.synthesis(ws, noise_mode="const")


def test_rule_table_for_32px(low):
    for (res, level), expected_high in HIGH_LAYERS.items():
        weights = {layer.name: layer.weight for layer in layer_weights(low, res, level)}
        assert {name for name, a in weights.items() if a == 1.0} == expected_high, (res, level)
        assert all(a in (0.0, 1.0) for a in weights.values())
    names = [layer.name for layer in layer_weights(low.config, 4)]
    assert names == ["synthesis.b4.const", "synthesis.b4.conv1", "synthesis.b4.torgb", *B8, *B16, *B32]


def test_every_parameter_comes_from_the_model_the_rule_says(low, high):
    for res, level in SETTINGS:
        G = blend(low, high, res, level)
        for name, param in synthesis_params(G).items():
            source = high if layer_of(name) in HIGH_LAYERS[res, level] else low
            assert torch.equal(param, source.state_dict()[name]), (res, level, name)
        assert_same_state(non_blended(G), non_blended(low))


def test_swap_res_at_the_resolution_gives_the_low_res_model(low, high, ws):
    G = blend(low, high, 32)
    assert_same_state(G.state_dict(), low.state_dict())
    assert torch.equal(render(G, ws), render(low, ws))


def test_swap_res_above_the_resolution_is_refused_as_toonifier_refuses_it(low, high, monkeypatch):
    """blend(toon, base, 64) of 32 px models returned the un-blended toon model without a word, where
    Toonifier(swap_res=64) and set_blend(64) refused it; a registry model's resolution is known before its download."""
    from toonlib import checkpoints, download
    from toonlib.blending import swap_resolution_grid

    message = (r"swap_res {} is above the 32 px of the toon model, which would then be used unblended: give one of 4, "
               r"8, 16 \(at 32 too")
    blender = Blender(low, high)
    for res in (64, 1024):
        for width in (None, 1.0):
            with pytest.raises(ValueError, match=message.format(res)):
                blend(low, high, res, blend_width=width)
            with pytest.raises(ValueError, match=message.format(res)):
                blender.set(res, blend_width=width)
    with pytest.raises(ValueError, match=message.format(64)):
        swap_resolution_grid(low, high, [0], swap_resolutions=[16, 64])
    monkeypatch.setattr(download, "fetch", lambda *args, **kwargs: pytest.fail("a download was started"))
    monkeypatch.setattr(checkpoints, "_resolve", lambda *args, **kwargs: pytest.fail("a model was read first"))
    with pytest.raises(ValueError, match="swap_res 2048 is above the 1024 px of the toon model"):
        blend("toonify-blended-tf", high, 2048)


def test_a_model_given_for_the_setting_is_named_by_its_type(low, high):
    """blend(toon, 8, base), the arguments swapped, printed the base's whole multi-line Generator repr."""
    with pytest.raises(ValueError) as info:
        blend(low, 8, high)
    assert str(info.value) == ("swap_res must be a power of two >= 4 (a resolution such as 4, 8, ..., 1024), got a "
                               "Generator: the models come first, then swap_res: blend(toon, base, 16)")
    with pytest.raises(ValueError, match=r"level must be 0 \(const/conv0\) or 1 \(conv1/torgb\), got a Generator: "):
        blend(low, high, 8, high)
    with pytest.raises(ValueError, match=r"got a Tensor$"):
        layer_weights(low, 8, blend_width=torch.ones(2))
    # 16.0 is a power of two: "must be a power of two >= 4, got 16.0" did not say that its type was wrong
    with pytest.raises(ValueError, match=r"1024\), got 16\.0, a float: give the whole number 16$"):
        blend(low, high, 16.0)
    with pytest.raises(ValueError, match=r"got -2\.0$"):  # blend_width takes floats: no such advice
        blend(low, high, 16, blend_width=-2.0)


def test_lowest_setting_is_high_res_except_the_4x4_block(low, high, ws):
    G = blend(low, high, swap_res=4, level=0)
    for name, param in synthesis_params(G).items():
        expected = low if name.startswith("synthesis.b4.") else high
        assert torch.equal(param, expected.state_dict()[name]), name
    # The same function as the high-res model with its 4x4 block, mapping and buffers taken from low.
    reference = tiny_generator(2)
    reference.load_state_dict({**high.state_dict(), **{k: v for k, v in low.state_dict().items()
                                                      if k.startswith("synthesis.b4.") or k not in
                                                      dict(high.named_parameters())}})
    assert torch.equal(render(G, ws), render(reference, ws))
    assert not torch.allclose(render(G, ws), render(high, ws))


def test_smooth_weights_are_the_logistic_centred_on_the_swap_point(low, high):
    for res, level in SETTINGS:
        for width in (0.3, 1.0, 2.5):
            mid = 2 * math.log2(res / 4) + level
            layers = [layer for layer in layer_weights(low, res, level, width) if layer.name != "synthesis.b4.conv1"]
            for layer in layers:
                assert layer.position == 2 * math.log2(layer.resolution / 4) + layer.level
                assert layer.weight == pytest.approx(1 / (1 + math.exp(-(layer.position - mid) / width)), rel=1e-12)
            assert all(a.weight <= b.weight for a, b in zip(layers, layers[1:]))
            assert [a.weight < b.weight for a, b in zip(layers, layers[1:])] == \
                   [a.position < b.position for a, b in zip(layers, layers[1:])]
    kept = [layer for layer in layer_weights(low, 8, 0, 1.0) if layer.name == "synthesis.b4.conv1"]
    assert kept[0].weight == 0.0
    # Tiny widths stay finite and approach the step centred on mid (a = 0.5 exactly there).
    weights = {layer.position: layer.weight for layer in layer_weights(low, 8, 0, 1e-9)}
    assert weights == {0: 0.0, 1: 0.0, 2: 0.5, 3: 1.0, 4: 1.0, 5: 1.0, 6: 1.0, 7: 1.0}


def test_smooth_blend_is_the_weighted_sum(low, high):
    G = blend(low, high, 8, 1, blend_width=1.5)
    weight_of = {layer.name: layer.weight for layer in layer_weights(low, 8, 1, 1.5)}
    low_state, high_state = low.state_dict(), high.state_dict()
    for name, param in synthesis_params(G).items():
        a = weight_of[layer_of(name)]
        torch.testing.assert_close(param, (1 - a) * low_state[name] + a * high_state[name], rtol=0, atol=1e-6)
    assert_same_state(non_blended(G), non_blended(low))


def test_inputs_are_not_modified(low, high):
    before = [{k: v.clone() for k, v in G.state_dict().items()} for G in (low, high)]
    blender = Blender(low, high)
    for res, level in SETTINGS:
        blender.set(res, level, blend_width=0.7)
    blender.set_per_ws([1.0] * low.num_ws)
    blend(low, high, 4)
    for G, state in zip((low, high), before):
        assert_same_state(G.state_dict(), state)


def test_a_toon_model_in_training_mode_gives_a_blend_as_loaded_networks_are(low, high):
    """A toon model built with `Generator(...)` is in training mode: its blend was too, with gradients on, so each
    sample moved w_avg (the same z gave other faces) and the blend's record was lost before `save_network`."""
    low.train().requires_grad_(True)
    blended = blend(low, high, 8)
    for G in (blended, blend_per_layer(low, high, [0.5] * low.num_ws)):
        assert not G.training and not any(p.requires_grad for p in G.parameters())
        z = torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(0))
        first = G(z, None, truncation_psi=0.5, noise_mode="const")
        assert torch.equal(G(z, None, truncation_psi=0.5, noise_mode="const"), first)
        assert first.grad_fn is None
    assert blended.blend_record is not None
    assert low.training  # the input keeps its own mode


def test_per_ws_weights(low, high, ws):
    zeros = blend_per_layer(low, high, [0.0] * low.num_ws)
    assert_same_state(zeros.state_dict(), low.state_dict())
    assert torch.equal(render(zeros, ws), render(low, ws))

    ones = blend_per_layer(low, high, [1.0] * low.num_ws)  # no 4x4 conv1 exception here
    assert_same_state(synthesis_params(ones), synthesis_params(high))
    buffers_and_mapping = {k: v for k, v in ones.state_dict().items() if k not in synthesis_params(ones)}
    assert_same_state(buffers_and_mapping, {k: low.state_dict()[k] for k in buffers_and_mapping})

    fed_by = {0: {"synthesis.b4.const", "synthesis.b4.conv1"}, 1: {"synthesis.b4.torgb", "synthesis.b8.conv0"},
              2: {"synthesis.b8.conv1"}, 3: {"synthesis.b8.torgb", "synthesis.b16.conv0"},
              4: {"synthesis.b16.conv1"}, 5: {"synthesis.b16.torgb", "synthesis.b32.conv0"},
              6: {"synthesis.b32.conv1"}, 7: {"synthesis.b32.torgb"}}
    for index, layers in fed_by.items():
        G = blend_per_layer(low, high, [1.0 if i == index else 0.0 for i in range(low.num_ws)])
        for name, param in synthesis_params(G).items():
            assert torch.equal(param, (high if layer_of(name) in layers else low).state_dict()[name]), (index, name)
        assert {layer.name for layer in layer_weights(low, 4) if layer.ws_index == index} == layers

    with pytest.raises(ValueError, match="8 finite numbers"):
        blend_per_layer(low, high, [0.0] * 7)
    with pytest.raises(ValueError, match="must be finite numbers, got"):
        blend_per_layer(low, high, [0.0] * 7 + [float("nan")])


def test_blender_in_place_matches_blend(low, high):
    blender = Blender(low, high)
    G = blender.G
    pointers = [p.data_ptr() for p in G.parameters()]
    sequence = [(16, 0, None), (4, 1, 0.5), (32, 0, None), (8, 0, 2.0), (32, 1, 0.0), (4, 0, None), (16, 1, 1.0)]
    for res, level, width in sequence:
        assert blender.set(res, level, width) is G
        assert_same_state(G.state_dict(), blend(low, high, res, level, width).state_dict())
    weights = [0.1, 0.9, 0.0, 1.0, 0.5, 0.25, 0.75, 0.3]
    assert_same_state(blender.set_per_ws(weights).state_dict(), blend_per_layer(low, high, weights).state_dict())
    assert [p.data_ptr() for p in G.parameters()] == pointers


def test_a_blender_made_in_inference_mode_blends_again_outside_it(low, high, ws):
    """`torch.inference_mode()` is where inference code runs: a Blender made there (a Toonifier's first
    `set_blend`) copied the toon model into inference tensors, and every later `set` outside it failed with torch's
    "Inplace update to inference tensor outside InferenceMode is not allowed"."""
    with torch.inference_mode():
        blender = Blender(low, high)
        inside = render(blender.set(16), ws)
    assert not any(p.is_inference() for p in blender.G.parameters())
    assert_same_state(blender.set(8).state_dict(), blend(low, high, 8).state_dict())
    with torch.inference_mode():
        assert torch.equal(render(blender.set(16), ws), inside)


@pytest.mark.parametrize("overrides, fields", [
    ({"img_resolution": 64}, ["a is 32 px, b 64 px"]),  # not the layers a resolution adds (forty-fourth session)
    ({"channel_max": 8}, ["channel_max: a 16, b 8", "synthesis.b4.const: shape [16, 4, 4] in a, [8, 4, 4] in b"]),
    ({"mapping_layers": 4}, ["mapping_layers: a 8, b 4", "mapping.fc7.weight: only in a"]),
    ({"w_dim": 8}, ["w_dim: a 16, b 8"]),
])
def test_mismatched_generators_are_refused_with_the_difference(low, overrides, fields):
    other = Generator(**{**TINY, **overrides})
    with pytest.raises(ValueError, match="different architectures") as info:
        check_compatible(low, other)
    for field in fields:
        assert field in str(info.value)
    with pytest.raises(ValueError, match="low-res 16"):
        blend(low, Generator(**{**TINY, "channel_max": 8}), 8)


def test_runtime_settings_may_differ(low, high):
    other = tiny_generator(2, conv_clamp=256.0, num_fp16_res=2)
    check_compatible(low, other)
    G = blend(low, other, 8)
    assert G.config == low.config
    assert_same_state(G.state_dict(), blend(low, high, 8).state_dict())


@pytest.mark.parametrize("kwargs, message", [
    ({"swap_res": 12}, "power of two"), ({"swap_res": 2}, "power of two"), ({"swap_res": 0}, "power of two"),
    ({"swap_res": 8.0}, "power of two"), ({"swap_res": True}, "power of two"),
    ({"swap_res": 8, "level": 2}, "level"), ({"swap_res": 8, "blend_width": -1.0}, "blend_width"),
    ({"swap_res": 8, "blend_width": float("nan")}, "blend_width"),
    ({"swap_res": 8, "blend_width": "1"}, "blend_width"),  # was: TypeError "must be real number, not str"
    ({"swap_res": 8, "level": True}, "level"), ({"swap_res": 8, "level": 0.5}, "level"),
])
def test_bad_settings(low, high, kwargs, message):
    with pytest.raises(ValueError, match=message):
        blend(low, high, **kwargs)
    with pytest.raises(ValueError, match=message):
        layer_weights(low, **kwargs)


def test_the_grid_and_layer_weights_take_what_the_other_functions_take(low, high, tmp_path):
    """`layer_weights` of a Networks or a path failed at "no attribute 'img_resolution'"; the grid's
    `swap_resolutions=[]` drew every resolution, and one seed (3) failed at "'int' object is not iterable"."""
    from toonlib.blending import swap_resolution_grid
    from toonlib.checkpoints import Networks, save_network

    path = save_network(tmp_path / "low.safetensors", low)
    for given in (Networks(G_ema=low), path, str(path), low.config):
        assert layer_weights(given, 8) == layer_weights(low, 8)
    with pytest.raises(ValueError, match=r"^swap_resolutions is empty: give the resolutions to draw, such as "):
        swap_resolution_grid(low, high, [0], swap_resolutions=[])
    with pytest.raises(TypeError, match=r"^seeds is a list of whole numbers, such as \[3\] or range\(4\), got int 3$"):
        swap_resolution_grid(low, high, 3)
    with pytest.raises(TypeError, match=r"got str '0-3': for a text such as '0-3', toonlib\.networks\.parse_seeds"):
        swap_resolution_grid(low, high, "0-3")
    with pytest.raises(ValueError, match=r"^seeds is empty: give at least one seed"):
        swap_resolution_grid(low, high, [])
    given = swap_resolution_grid(low, high, [0], swap_resolutions=[8, 16], cell=16)
    assert swap_resolution_grid(low, high, [0], swap_resolutions=(r for r in [8, 16]), cell=16).size == given.size
    with pytest.raises(TypeError, match=r"^seeds is a list"):  # before the models are read (a registry name's download)
        swap_resolution_grid(tmp_path / "missing.safetensors", high, 3)


def test_the_grid_and_per_layer_blends_refuse_their_settings_before_reading_the_models(low, high, monkeypatch):
    """`blend_per_layer(T, B, 0.5)` was "'float' object is not iterable", a [1, 18] tensor "only one element tensors
    can be converted", and the grid's `swap_resolutions=[12]` was refused after both models were read (downloaded) and
    the base column drawn (audit): each said at once, with what is expected."""
    from toonlib import blending

    monkeypatch.setattr(blending, "toon_generator", lambda *args, **kwargs: pytest.fail("a model was read first"))
    expected = r"^weights must be one number per ws index \(G\.num_ws of them, such as \[0\] \* 8 "
    for weights in (0.5, [[0.0] * low.num_ws], torch.zeros(1, low.num_ws), "0101"):
        with pytest.raises(ValueError, match=expected):
            blend_per_layer(low, high, weights)
    with pytest.raises(ValueError, match=r"^weights must be finite numbers, got \[nan"):
        blend_per_layer(low, high, [math.nan] * low.num_ws)
    with pytest.raises(ValueError, match=r"^swap_res must be a power of two >= 4 .*, got 12$"):
        blending.swap_resolution_grid(low, high, [0], swap_resolutions=[8, 12])
    with pytest.raises(ValueError, match=r"^level must be 0 \(const/conv0\) or 1 \(conv1/torgb\), got 2$"):
        blending.swap_resolution_grid(low, high, [0], level=2)  # every resolution (review)


def test_blend_takes_the_argument_names_of_its_module(low, high):
    """blend's low_res_G / high_res_G were the only other names for Blender's and blend_per_layer's low / high."""
    assert_same_state(blend(low=low, high=high, swap_res=8).state_dict(), Blender(low, high).set(8).state_dict())


def test_accepts_networks_and_paths(low, high, tmp_path):
    from toonlib import checkpoints

    path = checkpoints.save_network(tmp_path / "high.safetensors", high)
    G = blend(checkpoints.Networks(G_ema=low), path, 8)
    assert_same_state(G.state_dict(), blend(low, high, 8).state_dict())
    with pytest.raises(TypeError, match="Generator"):
        blend(low, 42, 8)


@pytest.mark.filterwarnings("ignore::toonlib.blending.LineageWarning")  # the fixtures are unrelated models
@pytest.mark.filterwarnings("ignore:wrote toonlib's format")  # under the registry's .pkl name, as the cache holds it
def test_a_registry_name_blends_its_unblended_toon_model_as_the_command_line_does(low, high, tmp_path, monkeypatch):
    """blend('toonify-blended-tf', ...) took its G_ema, Toonify's published blend, and blended that blend, where
    `toonlib blend --toon toonify-blended-tf` takes its G, the un-blended toon model; 'toonify-blended-rosinality',
    which holds only a blend, was blended too (after its download) where the command line refuses it."""
    from toonlib.blending import swap_resolution_grid
    from toonlib.checkpoints import Networks, save_network
    from toonlib.models import MODELS

    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path))
    save_network(tmp_path / MODELS["toonify-blended-tf"].filename, Networks(G_ema=blend(low, high, 8), G=low))
    expected = blend(low, high, 16).state_dict()
    for got in (blend("toonify-blended-tf", high, 16), Blender("toonify-blended-tf", high).set(16)):
        assert all(torch.equal(tensor, expected[name]) for name, tensor in got.state_dict().items())
    seeds = [0, 1]
    assert (swap_resolution_grid("toonify-blended-tf", high, seeds, cell=32).tobytes()
            == swap_resolution_grid(low, high, seeds, cell=32).tobytes())
    from toonlib.widgets import blend_explorer  # the notebook's explorer, given the name, explored the blend's blends

    explored = blend_explorer(high, "toonify-blended-tf", seeds=[0], swap_res=16).blended
    assert all(torch.equal(tensor, expected[name]) for name, tensor in explored.state_dict().items())
    with pytest.raises(ValueError, match="'toonify-blended-rosinality' holds only a blended generator"):
        blend("toonify-blended-rosinality", high, 16)  # refused before any download: none is reachable here
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODELS["toonify-blended-tf"].filename]


@pytest.mark.filterwarnings("ignore::toonlib.blending.LineageWarning")  # the fixtures are unrelated models
@pytest.mark.filterwarnings("ignore:wrote toonlib's format")  # under the registry's .pkl name, as the cache holds it
def test_a_generator_that_is_a_blend_is_said_to_be_one_when_blended_again(low, high, tmp_path, monkeypatch):
    """`blend(load_generator('toonify-blended-tf'), base, 16)` (or a Toonifier given that generator) blended the
    published blend, whose layers up to its own swap resolution stay the old blend's, without a word; the name or
    a path is refused so (a blend file toonlib wrote) or takes the un-blended toon model."""
    import warnings

    from toonlib import Toonifier, load_generator
    from toonlib.checkpoints import Networks, save_network
    from toonlib.messages import ToonlibWarning
    from toonlib.models import MODELS

    said = r"blending it again blends a blend \(the layers above the swap resolution come from the base, those below "
    with pytest.warns(ToonlibWarning, match=r"^the toon model an unsaved generator is a blend already \(an unsaved "
                                            r"generator up to 8 px \(level 0\), an unsaved generator above; hard "
                                            rf"switch\); give its toon model: {said}"):
        blend(blend(low, high, 8), high, 16)
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path))
    published = copy.deepcopy(high)
    published.set_origin()  # the real file's blend has no record
    save_network(tmp_path / MODELS["toonify-blended-tf"].filename, Networks(G_ema=published, G=low))
    with pytest.warns(ToonlibWarning, match=r"^the toon model toonify-blended-tf \(G_ema\) is the published blend of "
                                            r"'toonify-blended-tf'; give its toon model, load_generator\("
                                            r"'toonify-blended-tf', 'G'\), or the name 'toonify-blended-tf': "
                                            f"{said}") as caught:
        Toonifier(base=high, toon=load_generator("toonify-blended-tf"), invert="optimize").set_blend(16)
    assert len([w for w in caught if "blends a blend" in str(w.message)]) == 1  # said once
    with warnings.catch_warnings():
        warnings.simplefilter("error", ToonlibWarning)
        warnings.simplefilter("ignore", LineageWarning)  # the fixtures are unrelated models
        blend(load_generator("toonify-blended-tf", "G"), high, 16)  # its toon model
        blend(low, high, 16)


def test_generators_that_cannot_be_blended_are_told_what_to_pair(low):
    """The error listed the layers' shapes under 'low-res' and 'high-res', and nothing of what to do."""
    with pytest.raises(ValueError) as info:
        blend(low, Generator(**{**TINY, "channel_max": 8}), 8)
    assert str(info.value).endswith("\nThe low-res model is the toon model, the high-res one the base: pair the toon "
                                    "model with the base it was fine-tuned from (the registry's toon models name "
                                    "theirs: their lineage in `toonlib models`).")


def test_blend_and_convert_refuse_to_write_over_a_model_they_read(tmp_path, capsys):
    """`toonlib blend --toon runs/r/network-snapshot.safetensors ... -o` the same file succeeded: the snapshot lost
    its G, its D and its fine-tuning record to the blend. Refused before anything is read, the file unchanged."""
    from tiny import write_toonify_models

    from toonlib import cli

    base, toon, _, _ = write_toonify_models(tmp_path)
    before = toon.read_bytes()
    for argv, option in [(["blend", "--toon", str(toon), "--base", str(base), "--swap-res", "8", "-o", str(toon)],
                          "--toon"),
                         (["blend", "--toon", str(toon), "--base", str(base), "--swap-res", "8", "-o",
                           str(tmp_path / "." / base.name)], "--base"),
                         (["convert", str(toon), str(toon)], "input")]:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert f"is the {option} model's file: writing there would replace that model; give another" in err
        assert "fine-tuning snapshot" not in err  # said of snapshots only (these are plain files)
        # convert takes no -o: its output is its second argument ("-o" was named)
        assert f"error: {'the output' if argv[0] == 'convert' else '-o'} {argv[-1]} is the" in err, err
    assert toon.read_bytes() == before
    # another file at -o is replaced, and said so (another model was replaced without a word)
    blended = ["blend", "--toon", str(toon), "--base", str(base), "--swap-res", "8", "-o",
               str(tmp_path / "b.safetensors")]
    for said in ("", " (it replaced the file that was there)"):
        assert cli.main(blended) == 0
        assert capsys.readouterr().out.splitlines()[-1] == f"wrote {tmp_path / 'b.safetensors'}{said}"


@pytest.mark.filterwarnings("ignore::toonlib.blending.LineageWarning")  # the fixtures are unrelated models
def test_a_blend_saved_from_python_says_how_it_was_made(low, high, tmp_path):
    """The README's way, `save_network(path, toonlib.blend(toon_G, G, 32))`, wrote a file whose `toonlib info` said
    nothing of the blend, where `toonlib blend`'s files name their models and setting."""
    import subprocess
    import sys

    import toonlib

    toon_path = toonlib.save_network(tmp_path / "toon.safetensors", low)
    base_path = toonlib.save_network(tmp_path / "base.safetensors", high)
    toon_G = toonlib.load_generator(str(toon_path))
    G = toonlib.load_network(base_path).G_ema  # a Path, as given: named as str(path)
    blended = toonlib.blend(toon_G, G, swap_res=8, blend_width=0.5)
    saved = toonlib.save_network(tmp_path / "blended.safetensors", blended)
    record = {"toon": str(toon_path), "base": str(base_path), "swap_res": 8, "level": 0, "blend_width": 0.5}
    assert toonlib.load_network(saved).meta["blend"] == record
    info = subprocess.run([sys.executable, "-m", "toonlib", "info", str(saved)], capture_output=True, text=True,
                          timeout=120)
    assert info.stdout.splitlines()[1] == (f"blend of {toon_path} up to 8 px (level 0), {base_path} above; "
                                           "smooth switch, width 0.5"), info.stdout + info.stderr
    # A blend of a file names the file it came from.
    reblended = toonlib.blend(str(toon_path), G, 16)
    assert reblended.blend_record == {**record, "swap_res": 16, "blend_width": None}
    assert reblended.loaded_from is None and toon_G.loaded_from == str(toon_path)  # the inputs keep their names
    # The saved blend as the toon was blended again: at 16 px it stayed the 8 px blend, recorded as one at 16 px
    # (`toonlib info`), and `toonify --swap-res 16` drew the same toon as without it.
    with pytest.raises(ValueError) as error:
        toonlib.blend(str(saved), G, 16)
    assert str(error.value) == (
        f"the toon model {saved} is a blend already ({toon_path} up to 8 px (level 0), {base_path} above; smooth "
        "switch, width 0.5): blending it again blends a blend (at a higher swap resolution it stays this blend); "
        f"give its toon model, {toon_path}, as the toon, or name the blend's network to blend it all the same "
        "(--toon-network G_ema; in Python 'FILE (G_ema)')")
    assert toonlib.blend(f"{saved} (G_ema)", G, 16).blend_record["toon"] == str(saved)  # asked for: blended

    # Generators made in memory are named so; a per-layer blend has no swap resolution to record; a caller labels
    # weights with `set_origin` (a record in `Networks.meta` is not written: the G_ema's own is).
    assert blend(low, high, 8).blend_record["toon"] == "an unsaved generator"
    assert blend_per_layer(low, high, [0.5] * low.num_ws).blend_record is None
    blended.set_origin(blend_record={**record, "toon": "my toon"})
    own = toonlib.save_network(tmp_path / "own.safetensors", toonlib.Networks(G_ema=blended, meta={"blend": record}))
    assert toonlib.load_network(own).meta["blend"]["toon"] == "my toon"
    blender = Blender(toon_G, G)
    assert blender.set(16).blend_record["swap_res"] == 16 and blender.set_per_ws([1] * low.num_ws).blend_record is None


@pytest.mark.filterwarnings("ignore::toonlib.blending.LineageWarning")  # the fixtures are unrelated models
def test_a_record_holds_while_the_weights_it_describes_do(low, high, tmp_path, monkeypatch):
    """A record is kept while the weights are the ones it describes, on a copy too, and dropped once one changes (a
    copied blend edited and saved named the blend it no longer was). A file of G and G_ema names the network
    (Toonify's file holds the toon as G, its blend as G_ema); a URL is recorded without its query (a signed URL's
    token); a saved blend's generator, loaded, keeps its record."""
    import copy

    from http_server import serve

    import toonlib

    blended = copy.deepcopy(blend(low, high, 8))
    assert blended.blend_record["swap_res"] == 8
    with torch.no_grad():
        blended.synthesis.b32.conv1.weight[0, 0, 0, 0] += 1e-3
    assert blended.blend_record is None
    assert "blend" not in toonlib.load_network(toonlib.save_network(tmp_path / "edited.safetensors", blended)).meta

    both = toonlib.save_network(tmp_path / "both.safetensors", toonlib.Networks(G_ema=high, G=low))
    nets = toonlib.load_network(both)
    assert (nets.G.loaded_from, nets.G_ema.loaded_from) == (f"{both} (G)", f"{both} (G_ema)")
    with torch.no_grad():
        nets.G.mapping.fc0.weight.mul_(0.5)  # fine-tuned in memory: no longer the file's
    assert nets.G.loaded_from is None and blend(nets.G, high, 8).blend_record["toon"] == "an unsaved generator"
    for which in ("G", "G_ema"):  # the name it was recorded under loads that generator, a file so named itself
        assert torch.equal(toonlib.load_generator(f"{both} ({which})").synthesis.b32.torgb.bias,
                           getattr(toonlib.load_network(both), which).synthesis.b32.torgb.bias)
    assert toonlib.load_generator(f"{both} (G)").loaded_from == f"{both} (G)"
    with pytest.raises(ValueError, match=r"names its file's G, but G_ema was asked for as well"):
        toonlib.load_generator(f"{both} (G)", which="G_ema")
    # the Toonifier (toonify, the app) takes such a name for that generator, blended or not ("unknown model" before)
    toonifier = toonlib.Toonifier(f"{both} (G_ema)", f"{both} (G)")
    assert torch.equal(toonifier.generator.synthesis.b32.torgb.bias, low.synthesis.b32.torgb.bias)
    assert toonifier.set_blend(8) is None  # in place: it returned the generator the next call changed
    assert all(torch.equal(v, w) for v, w in zip(toonifier.generator.state_dict().values(),
                                                blend(low, high, 8).state_dict().values()))
    with pytest.raises(ValueError, match=rf"{re.escape(str(both))} \(G\) names the G of {re.escape(str(both))}, and "
                                         rf"the whole file is read here: give {re.escape(str(both))}"):
        toonlib.load_network(f"{both} (G)")  # `toonlib info 'toon.pkl (G)'`, `convert`
    named = Path(shutil.copy(tmp_path / "edited.safetensors", tmp_path / "both.safetensors (G)"))
    assert toonlib.load_generator(named).loaded_from == str(named)

    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    with serve({"/low.safetensors?token=secret": (tmp_path / "edited.safetensors").read_bytes()}) as server:
        url = f"{server.base}/low.safetensors"
        with_password = url.replace("http://", "http://me:password@")
        assert toonlib.load_generator(f"{with_password}?token=secret#x").loaded_from == url

    saved = toonlib.save_network(tmp_path / "blend.safetensors", blend(low, high, 16, blend_width=0.5))
    G = toonlib.load_generator(saved)
    assert G.blend_record == toonlib.load_network(saved).meta["blend"] and G.blend_record["swap_res"] == 16
    again = toonlib.save_network(tmp_path / "again.safetensors", G)  # the generator alone: its record goes along
    assert toonlib.load_network(again).meta["blend"] == G.blend_record
    nets = toonlib.load_network(saved)  # changed, then saved with the file's meta: the file's record goes
    with torch.no_grad():
        nets.G_ema.synthesis.b32.torgb.bias.add_(1.0)
    assert "blend" not in toonlib.load_network(toonlib.save_network(tmp_path / "changed.safetensors", nets)).meta


def test_a_loaded_files_g_ema_replaced_by_another_blend_is_saved_with_that_blends_record(tmp_path):
    """A Toonify-layout file (G the toon, G_ema its blend at 8 px) re-blended at 16 px into its G_ema and saved: the
    file recorded the old 8 px blend, which `toonlib info` and the re-blend refusal then described (audit). A G_ema
    no swap resolution describes (a per-layer blend) is saved with no record."""
    import dataclasses

    from tiny import write_toonify_models

    import toonlib

    base_path, toon_path, _, _ = write_toonify_models(tmp_path)
    nets = toonlib.load_network(toon_path)
    assert nets.meta["blend"]["swap_res"] == 8
    reblended = toonlib.blend(nets.G, base_path, 16)
    saved = toonlib.save_network(tmp_path / "toon16.safetensors", dataclasses.replace(nets, G_ema=reblended))
    back = toonlib.load_network(saved)
    assert back.meta["blend"] == reblended.blend_record and back.meta["blend"]["swap_res"] == 16
    assert back.G_ema.blend_record["swap_res"] == 16
    nets.G_ema = blend_per_layer(nets.G, base_path, [0.5] * nets.G.num_ws)
    assert "blend" not in toonlib.load_network(toonlib.save_network(tmp_path / "layers.safetensors", nets)).meta


def test_blend_refuses_an_output_that_is_a_model_it_reads_named_with_its_network(tmp_path, capsys):
    """`--toon "toon.safetensors (G)" -o toon.safetensors`, the name `toonlib info` and the re-blend advice give, wrote
    the blend over Toonify's file (its toon G and its G_ema lost): the plain name was refused, this one not
    (thirty-ninth session's audit)."""
    from tiny import write_toonify_models

    from toonlib import cli

    base, toon, _, _ = write_toonify_models(tmp_path)
    before = toon.read_bytes(), base.read_bytes()
    for toon_arg, base_arg, output, option in [(f"{toon} (G)", str(base), toon, "--toon"),
                                               (f"{toon} (G)", f"{base} (G_ema)", base, "--base")]:
        argv = ["blend", "--toon", toon_arg, "--base", base_arg, "--swap-res", "16", "-o", str(output)]
        assert cli.main(argv) == 2
        assert (f"error: -o {output} is the {option} model's file: writing there would replace that model; give "
                "another output file") in capsys.readouterr().err
    assert (toon.read_bytes(), base.read_bytes()) == before


def test_the_grid_refuses_a_truncation_that_is_no_number_and_a_lone_resolution(low, high, monkeypatch):
    """`truncation_psi=nan` drew every face black without a word (the command line and the explorer refuse it), and
    `swap_resolutions=8` failed at "'int' object is not iterable" (thirty-ninth session's audit): both said before
    any model is read."""
    from toonlib import blending

    monkeypatch.setattr(blending, "toon_generator", lambda *args, **kwargs: pytest.fail("a model was read first"))
    for psi in (math.nan, math.inf, -math.inf, "0.7", None):
        with pytest.raises(ValueError, match=r"^truncation_psi must be a finite number \(1: no truncation, 0: every "
                                             r"face the mean face\), got "):
            blending.swap_resolution_grid(low, high, [0], truncation_psi=psi)
    with pytest.raises(TypeError, match=r"^swap_resolutions is a list of resolutions, got int 8: give a list, such "
                                        r"as \[8\] or \[8, 16\]$"):
        blending.swap_resolution_grid(low, high, [0], swap_resolutions=8)
    with pytest.raises(TypeError, match=r"^swap_resolutions is a list of resolutions, got str '8,16': give a list, "
                                        r"such as \[8, 16\]$"):
        blending.swap_resolution_grid(low, high, [0], swap_resolutions="8,16")


def test_layer_weights_refuse_a_swap_res_that_blend_refuses(low, tmp_path):
    """`layer_weights` of a 32 px model at swap_res 2048 gave twelve zeros, a setting `blend` and `Blender.set` refuse
    (thirty-ninth session's audit): a chart built on it showed a blend the library will not make."""
    from toonlib.checkpoints import save_network

    path = save_network(tmp_path / "toon.safetensors", low)
    for given in (low, low.config, path):
        for res in (64, 2048):
            with pytest.raises(ValueError, match=rf"^swap_res {res} is above the 32 px of the toon model, which would "
                                                 r"then be used unblended: give one of 4, 8, 16 "):
                layer_weights(given, res)
    assert [layer.weight for layer in layer_weights(low, 32)] == [0.0] * 12  # at the model's own: the toon whole


def test_a_blend_that_takes_only_the_toons_frozen_blocks_says_it_is_the_base():
    """A toon fine-tuned with --freeze-g 8 keeps the base's blocks up to 8 px bit for bit: a blend at swap_res 8 or
    below takes those alone from it and is the base's synthesis, faces and no toon, said by nothing (the commands a
    finished run printed did so with README's --freeze-g 32; fortieth session's audit)."""
    import warnings

    base = tiny_generator(2)
    toon = copy.deepcopy(base)
    torch.manual_seed(5)
    for name, tensor in toon.state_dict().items():  # trained above 8 px, and its mapping (no --freeze-mapping)
        if name.startswith(("synthesis.b16.", "synthesis.b32.", "mapping.")) and "resample_filter" not in name:
            tensor.add_(0.01 * torch.randn_like(tensor))
    said = (r"^the low-res \(toon\) model keeps the high-res \(base\) model's synthesis blocks up to 8 px unchanged "
            r"\(as fine-tuning with --freeze-g 8 \(freeze_g=8\) does\), and a blend at --swap-res {0} \(swap_res={0}\) "
            r"takes only those from it: the blend draws the base model's faces, not toons\. Give a swap resolution "
            r"above 8 px, such as 16$")
    for swap_res, level in ((4, 0), (8, 0), (4, 1)):
        with pytest.warns(LineageWarning, match=said.format(swap_res)):
            blend(toon, base, swap_res, level=level)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a blend that takes a trained layer: no word
        for swap_res, level, width in ((8, 1, None), (16, 0, None), (32, 0, None), (8, 0, 1.0)):
            blend(toon, base, swap_res, level=level, blend_width=width)


def test_the_grid_labels_say_a_setting_other_than_the_default(low, high, monkeypatch):
    """`blend --grid` at level 1, of a smooth switch or another truncation was labelled as the default grid, "swap 8"
    and "seed 0", so a saved grid did not say what it showed (forty-second session's audit)."""
    from toonlib import images
    from toonlib.blending import swap_resolution_grid

    said = []
    real = images.labelled_grid
    monkeypatch.setattr(images, "labelled_grid", lambda rows, **kw: said.append(kw) or real(rows, **kw))
    swap_resolution_grid(low, high, [0], swap_resolutions=[8], cell=16)
    swap_resolution_grid(low, high, [0], swap_resolutions=[8], level=1, blend_width=0.5, truncation_psi=1, cell=16)
    assert [(kw["col_labels"], kw["row_labels"]) for kw in said] == [
        (["base", "swap 8", "toon"], ["seed 0"]), (["base, psi 1", "swap 8, lv 1, w 0.5", "toon"], ["seed 0"])]


def test_a_blend_records_its_models_whole_paths_and_is_used_from_any_folder(tmp_path, monkeypatch):
    """`toonlib blend --base work/base.safetensors -o work/blend/b.safetensors` recorded the base as typed: from any
    other folder `toonify` said it "is not there (moved or deleted)" and took the default base (forty-second
    session's audit). The record holds the whole path; an older file's relative one, not found, says where it was
    looked for."""
    from tiny import write_toonify_models

    from toonlib import cli
    from toonlib.checkpoints import Networks, load_network, save_network
    from toonlib.pipeline import DEFAULT_BASE, default_base, missing_recorded_base

    with pytest.warns(LineageWarning):  # tiny models of their own
        base_path, toon_path, _, _ = write_toonify_models(tmp_path / "work")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    assert cli.main(["blend", "--toon", "work/toon.safetensors", "--base", "work/base.safetensors", "--swap-res", "16",
                     "-o", "work/blend/b.safetensors"]) == 0
    record = load_network(tmp_path / "work/blend/b.safetensors").meta["blend"]
    assert record["base"] == str(base_path) and record["toon"] == f"{toon_path} (G)"
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert default_base("../work/blend/b.safetensors") == str(base_path)
    assert missing_recorded_base("../work/blend/b.safetensors") is None
    # an older file's record, as typed in tmp_path: neither beside the blend nor from this folder
    older = Networks(G_ema=load_network(tmp_path / "work/blend/b.safetensors").G_ema)
    older.G_ema.set_origin(blend_record={**record, "base": "work/base.safetensors"})
    older_path = tmp_path / "work/blend/older.safetensors"
    save_network(older_path, older)
    assert default_base(older_path) == DEFAULT_BASE
    assert missing_recorded_base(older_path) == (
        f"work/base.safetensors (looked for at {tmp_path}/work/blend/work/base.safetensors and at "
        f"{tmp_path}/elsewhere/work/base.safetensors)")
