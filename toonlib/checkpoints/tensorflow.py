"""Original StyleGAN2 (TensorFlow) network pickles, read without TensorFlow.

Such a pickle holds a tuple `(G, D, Gs)` of `dnnlib.tflib.network.Network` objects; `safe_pickle`
turns each into a `TFNetwork` whose `state` has `static_kwargs` (the build function's arguments),
`components` (for generators: `mapping` and `synthesis`, networks themselves) and `variables`, a
list of `(name, ndarray)` pairs. The architecture comes from the top-level static kwargs and the
weights from the variables, renamed and re-laid-out the way stylegan2-ada-pytorch's `legacy.py`
converts them (so a converted network computes exactly what legacy.py's does):

* TF convolution kernels are `[kh, kw, in, out]`, ours `[out, in, kh, kw]`; dense weights are
  transposed. The upsampling convolutions (`Conv0_up`) are also flipped spatially, because TF ran
  them as a transposed convolution.
* TF stores the style biases minus one (`mod_bias`), and noise maps by layer index (`noise{i}`).
* `dlatent_avg` becomes `mapping.w_avg`; the variable `lod` is unused.
* `fmap_base` counts half of NVIDIA's `channel_base`.
* A discriminator without `mbstd_group_size` uses the whole minibatch as one stddev group
  (legacy.py's reading, not TF's default of 4).
"""
from __future__ import annotations

import re

import numpy as np
import torch

from ..networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from .common import CheckpointError, Networks, _short, build_network
from .safe_pickle import TFNetwork

# Static kwargs legacy.py understands, with their defaults; the ignored ones only affect sampling or training.
GENERATOR_KWARGS = {
    "latent_size": 512, "label_size": 0, "dlatent_size": 512, "resolution": 1024, "num_channels": 3,
    "mapping_layers": 8, "label_fmaps": None, "mapping_fmaps": None, "mapping_nonlinearity": "lrelu",
    "mapping_lrmul": 0.01, "w_avg_beta": 0.995, "fmap_base": 16384, "fmap_max": 512, "num_fp16_res": 0,
    "conv_clamp": None, "architecture": "skip", "resample_kernel": [1, 3, 3, 1], "use_noise": True,
    "nonlinearity": "lrelu",
}
GENERATOR_IGNORED = {"truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure"}
DISCRIMINATOR_KWARGS = {
    "label_size": 0, "resolution": 1024, "num_channels": 3, "architecture": "resnet", "fmap_base": 16384,
    "fmap_max": 512, "num_fp16_res": 0, "conv_clamp": None, "mapping_fmaps": None, "nonlinearity": "lrelu",
    "resample_kernel": [1, 3, 3, 1], "freeze_layers": 0, "mapping_layers": 0, "mapping_lrmul": 0.1,
    "mbstd_group_size": None, "mbstd_num_features": 1,
}
DISCRIMINATOR_IGNORED = {"structure"}
IGNORED_VARIABLES = {"lod"}

_G_LAYERS = {"Conv": "conv1", "Conv0_up": "conv0", "Conv1": "conv1", "ToRGB": "torgb"}  # Conv: 4x4 only
_G_PARAMS = {"weight": "weight", "bias": "bias", "mod_weight": "affine.weight", "mod_bias": "affine.bias",
             "noise_strength": "noise_strength"}
_D_LAYERS = {"FromRGB": "fromrgb", "Conv0": "conv0", "Conv1_down": "conv1", "Skip": "skip"}


#: The build functions of StyleGAN's (version 1) networks, which its pickles record (networks_stylegan.py).
_STYLEGAN1_BUILDERS = ("G_style", "G_synthesis", "D_basic")  # not G_mapping: StyleGAN2's mapping is one too


def is_tf_pickle(obj: object) -> bool:
    """True for an unpickled TF StyleGAN2 file: `(G, D, Gs)`, a tuple ending in Gs, or a lone network."""
    if isinstance(obj, tuple) and obj:
        obj = obj[-1]
    return isinstance(obj, TFNetwork)


def read_tf_pickle(obj: tuple | TFNetwork, source: str = "") -> Networks:
    """Networks from an unpickled TF StyleGAN2 file (see `safe_pickle.safe_load`): Gs, G and D."""
    nets = obj if isinstance(obj, tuple) else (obj,)
    named = {"G": nets[0], "D": nets[1], "Gs": nets[2]} if len(nets) == 3 else {"Gs": nets[-1]}
    out: dict[str, Generator | Discriminator] = {}
    static_kwargs = {}
    for key, net in named.items():
        if net is None:
            continue
        if not isinstance(net, TFNetwork):
            raise CheckpointError(f"{source}: entry {key} is a {type(net).__name__}, not a TF network")
        what = f"{source} [{key}]"
        if net.state.get("build_func_name") in _STYLEGAN1_BUILDERS:  # it was "the 'orig' architecture (StyleGAN2
            # configs B-D)", with 1,400 characters of layer names
            raise CheckpointError(f"{what} is a StyleGAN (version 1) network ({net.state['build_func_name']}): "
                                  "toonlib reads StyleGAN2 models only; use a StyleGAN2 one (`toonlib models`, e.g. "
                                  "ffhq-1024-tf)")
        kwargs = dict(net.state.get("static_kwargs") or {})
        static_kwargs[key] = kwargs
        variables = _flatten_variables(net)
        if key == "D":
            state = _convert(variables, _discriminator_name, what)
            out[key] = build_network(Discriminator, discriminator_config(kwargs, what), state, what)
        else:
            state = _convert(variables, _generator_name, what)
            out[key] = build_network(Generator, generator_config(kwargs, what), state, what)
    return Networks(G_ema=out["Gs"], G=out.get("G"), D=out.get("D"),
                    meta={"format": "tensorflow", "source": source, "static_kwargs": static_kwargs})


# --------------------------------------------------------------------------------------------
# Architecture


def _read_kwargs(kwargs: dict, known: dict, ignored: set[str], what: str) -> dict:
    """`known` updated with `kwargs`; a kwarg outside `known` and `ignored` is an error."""
    unknown = sorted(set(kwargs) - set(known) - ignored)
    if unknown:
        raise CheckpointError(
            f"{what}: unsupported static kwarg(s) {unknown} (values {[kwargs[k] for k in unknown]}). "
            f"toonlib reads TF StyleGAN2 networks built with: {sorted(known)}; ignored: {sorted(ignored)}.")
    return {**known, **{k: v for k, v in kwargs.items() if k in known}}


def _require(kw: dict, key: str, supported: str, what: str) -> None:
    if kw[key] != supported:
        raise CheckpointError(f"{what}: {key}={kw[key]!r} is not supported; toonlib implements StyleGAN2 "
                              f"configs E and F, which have {key}={supported!r}")


def _check_common(kw: dict, what: str) -> None:
    if kw["label_size"]:
        raise CheckpointError(f"{what} is a conditional model (label_size={kw['label_size']}). toonlib supports "
                              "unconditional models only (FFHQ-style face models).")
    _require(kw, "nonlinearity", "lrelu", what)
    if not isinstance(kw["resample_kernel"], (list, tuple)) or not kw["resample_kernel"]:
        raise CheckpointError(f"{what}: resample_kernel={kw['resample_kernel']!r} is not supported; "
                              "toonlib needs an explicit FIR kernel such as [1, 3, 3, 1]")


def generator_config(static_kwargs: dict, what: str = "TF generator") -> GeneratorConfig:
    """GeneratorConfig of a TF G/Gs, from its top-level static kwargs (legacy.py's reading)."""
    kw = _read_kwargs(static_kwargs, GENERATOR_KWARGS, GENERATOR_IGNORED, what)
    _check_common(kw, what)
    _require(kw, "architecture", "skip", what)
    _require(kw, "mapping_nonlinearity", "lrelu", what)
    return GeneratorConfig(
        z_dim=int(kw["latent_size"]),
        w_dim=int(kw["dlatent_size"]),
        img_resolution=int(kw["resolution"]),
        img_channels=int(kw["num_channels"]),
        mapping_layers=int(kw["mapping_layers"]),
        mapping_layer_features=kw["mapping_fmaps"],
        mapping_lr_multiplier=float(kw["mapping_lrmul"]),
        w_avg_beta=1.0 if kw["w_avg_beta"] is None else float(kw["w_avg_beta"]),
        channel_base=2 * int(kw["fmap_base"]),
        channel_max=int(kw["fmap_max"]),
        num_fp16_res=int(kw["num_fp16_res"]),
        conv_clamp=kw["conv_clamp"],
        resample_filter=tuple(kw["resample_kernel"]),
        use_noise=bool(kw["use_noise"]),
    )


def discriminator_config(static_kwargs: dict, what: str = "TF discriminator") -> DiscriminatorConfig:
    """DiscriminatorConfig of a TF D, from its top-level static kwargs (legacy.py's reading)."""
    kw = _read_kwargs(static_kwargs, DISCRIMINATOR_KWARGS, DISCRIMINATOR_IGNORED, what)
    _check_common(kw, what)
    _require(kw, "architecture", "resnet", what)
    return DiscriminatorConfig(
        img_resolution=int(kw["resolution"]),
        img_channels=int(kw["num_channels"]),
        channel_base=2 * int(kw["fmap_base"]),
        channel_max=int(kw["fmap_max"]),
        num_fp16_res=int(kw["num_fp16_res"]),
        conv_clamp=kw["conv_clamp"],
        mbstd_group_size=kw["mbstd_group_size"],
        mbstd_num_channels=int(kw["mbstd_num_features"]),
        resample_filter=tuple(kw["resample_kernel"]),
    )


# --------------------------------------------------------------------------------------------
# Variables


def _flatten_variables(net: TFNetwork, prefix: str = "") -> dict[str, np.ndarray]:
    """All variables of `net` and its components, named by component path (`mapping/Dense0/weight`)."""
    out = {prefix + name: np.asarray(value, dtype=np.float32) for name, value in net.state.get("variables") or []}
    for name, component in (net.state.get("components") or {}).items():
        out.update(_flatten_variables(component, f"{prefix}{name}/"))
    return out


def _convert(variables: dict[str, np.ndarray], rename, what: str) -> dict[str, torch.Tensor]:
    """Our state dict from TF variables; `rename(name, value)` gives (our name, value) or None if unknown."""
    state: dict[str, torch.Tensor] = {}
    unmapped = []
    for name, value in variables.items():
        if name in IGNORED_VARIABLES:
            continue
        converted = rename(name, value)
        if converted is None:
            unmapped.append(name)
        else:
            state[converted[0]] = torch.from_numpy(np.array(converted[1], dtype=np.float32))  # a copy
    if any("_lod" in name for name in unmapped):
        raise CheckpointError(f"{what}: the layers {_short(unmapped)} belong to the 'orig' architecture (StyleGAN2 "
                              "configs B-D); toonlib supports configs E and F (skip generator, resnet discriminator)")
    if unmapped:
        raise CheckpointError(f"{what}: TF variable(s) {_short(unmapped)} have no counterpart in a StyleGAN2 config "
                              "E/F network; is this a StyleGAN2 pickle (not StyleGAN1 or a modified architecture)?")
    return state


def _conv_weight(value: np.ndarray, flip: bool = False) -> np.ndarray:
    """TF kernel [kh, kw, in, out] -> torch [out, in, kh, kw], optionally rotated by 180 degrees."""
    if flip:
        value = value[::-1, ::-1]
    return value.transpose(3, 2, 0, 1)


def _generator_name(name: str, value: np.ndarray) -> tuple[str, np.ndarray] | None:
    if name == "dlatent_avg":
        return "mapping.w_avg", value
    if m := re.fullmatch(r"mapping/Dense(\d+)/(weight|bias)", name):
        return f"mapping.fc{m[1]}.{m[2]}", value.T if m[2] == "weight" else value
    if m := re.fullmatch(r"synthesis/noise(\d+)", name):
        # noise0 is the 4x4 conv; then each resolution's conv0 (odd index) and conv1 (even index).
        index = int(m[1])
        layer = "conv0" if index % 2 else "conv1"
        return f"synthesis.b{2 ** ((index + 5) // 2)}.{layer}.noise_const", value[0, 0]
    if name == "synthesis/4x4/Const/const":
        return "synthesis.b4.const", value[0]
    m = re.fullmatch(r"synthesis/(\d+)x\1/(\w+)/(\w+)", name)
    if not m:
        return None
    res, layer, param = m.groups()
    layers = ("Conv", "ToRGB") if res == "4" else ("Conv0_up", "Conv1", "ToRGB")
    if layer not in layers or param not in _G_PARAMS:
        return None
    if param == "weight":
        value = _conv_weight(value, flip=layer == "Conv0_up")
    elif param == "mod_weight":
        value = value.T
    elif param == "mod_bias":
        value = value + 1
    return f"synthesis.b{res}.{_G_LAYERS[layer]}.{_G_PARAMS[param]}", value


def _discriminator_name(name: str, value: np.ndarray) -> tuple[str, np.ndarray] | None:
    if m := re.fullmatch(r"(\d+)x\1/(\w+)/(weight|bias)", name):
        res, layer, param = m.groups()
        if layer in _D_LAYERS:
            target = f"b{res}.{_D_LAYERS[layer]}"
        elif (res, layer) == ("4", "Conv"):
            target = "b4.conv"
        elif (res, layer) == ("4", "Dense0"):
            return f"b4.fc.{param}", value.T if param == "weight" else value
        else:
            return None
        return f"{target}.{param}", _conv_weight(value) if param == "weight" else value
    if m := re.fullmatch(r"Output/(weight|bias)", name):
        return f"b4.out.{m[1]}", value.T if m[1] == "weight" else value
    return None
