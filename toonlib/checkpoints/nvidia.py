"""NVIDIA PyTorch network pickles: stylegan2-ada-pytorch snapshots and the stylegan3 repo's StyleGAN2.

A snapshot is a dict `{G, D, G_ema, augment_pipe, training_set_kwargs}` whose networks were saved
through `torch_utils.persistence`: every module is stored as its class name, its constructor
kwargs and its `__dict__`. `safe_pickle` turns each into a `PersistentObject`; here the
architecture is read from those states (the attributes the constructors actually set, which also
covers the two repos' different defaults) and the weights from their parameter and buffer trees.
"""
from __future__ import annotations

import torch

from ..networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from .common import CheckpointError, Networks, _short, build_network
from .safe_pickle import PersistentObject

STYLEGAN3_CLASSES = {"SynthesisInput"}
#: The classes of StyleGAN-XL's generators: its SuperresGenerator holds a StyleGAN3-like stem, said as StyleGAN-XL's.
STYLEGAN_XL_CLASSES = {"SuperresGenerator"}


def is_nvidia_snapshot(obj: object) -> bool:
    return isinstance(obj, dict) and any(isinstance(v, PersistentObject) for v in obj.values())


def read_snapshot(obj: dict, source: str = "") -> Networks:
    """Networks from an unpickled NVIDIA snapshot dict (see `safe_pickle.safe_load`)."""
    g_ema = obj.get("G_ema")
    if not isinstance(g_ema, PersistentObject):  # one that is None was said missing, its key listed
        what = "None" if g_ema is None else f"a {type(g_ema).__name__}"
        held = f"whose 'G_ema' is {what}, not a network" if "G_ema" in obj else "without a 'G_ema' network"
        raise CheckpointError(f"{source}: NVIDIA pickle {held} (keys: {sorted(obj)})")
    nets = {}
    for key in ("G_ema", "G", "D"):
        value = obj.get(key)
        if value is None:
            continue
        if not isinstance(value, PersistentObject):
            raise CheckpointError(f"{source}: entry {key!r} is not a network ({type(value).__name__})")
        _check_supported(value, key, source)
        if value.class_name not in ("Generator", "Discriminator"):
            raise CheckpointError(f"{source}: entry {key!r} is a {value.class_name}, not a Generator/Discriminator")
        network, config, state = _read_network(value, key, source)
        nets[key] = build_network(network, config, state, f"{source} [{key}]")
    return Networks(G_ema=nets["G_ema"], G=nets.get("G"), D=nets.get("D"),
                    meta={"format": "nvidia", "source": source})


def _read_network(net: PersistentObject, key: str, source: str) -> tuple[type, object, dict[str, torch.Tensor]]:
    """The class, config and weights of the Generator or Discriminator `net` (the snapshot's `key`).

    One guard for everything the config readers take from the file: a network of another model saved under
    StyleGAN2's class names (Projected GAN's FastGAN `Generator`, a fork's edited snapshot) ended in a Python
    traceback ("'NoneType' object is not iterable", exit status 1), and its URL's download stayed as a `.part` that
    every later run checked again (forty-first session's audit). It is a CheckpointError naming the file, the network
    and the classes found.
    """
    generator = net.class_name == "Generator"
    try:
        config = generator_config(net) if generator else discriminator_config(net)
        state = flatten_state(net)
    except _OtherArchitecture as exc:  # StyleGAN2's classes in another of its configs: said as such
        raise CheckpointError(f"{source} [{key}]: {exc}") from None
    except CheckpointError as exc:  # the readers' own words: a submodule or a setting missing
        reason = str(exc)
    except (TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:  # a value of another kind or none
        text = str(exc).strip()
        reason = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
    else:
        return (Generator if generator else Discriminator), config, state
    classes = _short(sorted(_class_names(net) - {net.class_name}), 8)
    raise CheckpointError(f"{source}: {key} is a {net.class_name} that is not a StyleGAN2 network toonlib reads "
                          f"({reason}; the classes in it: {classes or 'none'}). toonlib reads the StyleGAN2 networks "
                          "of stylegan2-ada-pytorch and of the stylegan3 repo (its stylegan2-*.pkl files) only.")


def _class_names(obj: PersistentObject) -> set[str]:
    names = {obj.class_name}
    for child in _modules(obj).values():
        if isinstance(child, PersistentObject):
            names |= _class_names(child)
    return names


def _check_supported(net: PersistentObject, key: str, source: str) -> None:
    if _class_names(net) & STYLEGAN_XL_CLASSES:  # it was "a StyleGAN3 (alias-free, -t/-r) network" (audit)
        raise CheckpointError(
            f"{source}: {key} is a StyleGAN-XL network ({net.class_name}). toonlib implements StyleGAN2 only; "
            "use a StyleGAN2 checkpoint (for example the stylegan3 repo's stylegan2-*.pkl files).")
    if _class_names(net) & STYLEGAN3_CLASSES:
        raise CheckpointError(
            f"{source}: {key} is a StyleGAN3 (alias-free, -t/-r) network. toonlib implements StyleGAN2 only; "
            "use a StyleGAN2 checkpoint (for example the stylegan3 repo's stylegan2-*.pkl files).")
    c_dim = net.state.get("c_dim", _init_kwargs(net).get("c_dim", 0))
    if c_dim:
        raise CheckpointError(
            f"{source}: {key} is a conditional model (c_dim={c_dim}). toonlib supports unconditional "
            "models only (FFHQ-style face models).")


def _modules(obj: PersistentObject) -> dict:
    return obj.state.get("_modules") or {}


def _init_kwargs(obj: PersistentObject) -> dict:
    return dict(obj.state.get("_init_kwargs") or {})


def _child(obj: PersistentObject, path: str) -> PersistentObject:
    for name in path.split("."):
        child = _modules(obj).get(name)
        if not isinstance(child, PersistentObject):  # None too: a submodule set to None was "no attribute 'state'"
            raise CheckpointError(f"its {obj.class_name} has no submodule {name!r}")
        obj = child
    return obj


def flatten_state(obj: PersistentObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """The module tree's parameters and buffers under their state-dict names (frozen layers included)."""
    out: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for name, tensor in (obj.state.get(group) or {}).items():
            if tensor is not None and name not in (obj.state.get("_non_persistent_buffers_set") or ()):
                out[prefix + name] = tensor.detach()
    for name, child in _modules(obj).items():
        if isinstance(child, PersistentObject):
            out.update(flatten_state(child, f"{prefix}{name}."))
    return out


def _attr(obj: PersistentObject, name: str, default=None):
    """A constructor-set attribute, else the init kwarg of that name, else `default`."""
    if name in obj.state:
        return obj.state[name]
    return _init_kwargs(obj).get(name, default)


def _required(obj: PersistentObject, name: str):
    """A constructor-set attribute (or init kwarg) that StyleGAN2's networks always have: its absence says the
    network is another model's, which `_read_network` says with the class that lacks it."""
    value = _attr(obj, name)
    if value is None:
        raise CheckpointError(f"its {obj.class_name} has no {name!r}")
    return value


class _OtherArchitecture(CheckpointError):
    """A StyleGAN2 block of another architecture than config F's (`_architecture`)."""


def _architecture(block: PersistentObject, expected: str, what: str) -> None:
    arch = _attr(block, "architecture", expected)
    if arch != expected:
        raise _OtherArchitecture(f"{what} uses architecture {arch!r}; toonlib supports the {expected!r} "
                              "architecture of StyleGAN2 config F only")


def generator_config(net: PersistentObject) -> GeneratorConfig:
    """GeneratorConfig of an NVIDIA Generator, read from the attributes its constructors set."""
    kwargs = _init_kwargs(net)
    synthesis_kwargs = dict(kwargs.get("synthesis_kwargs") or {})
    # The stylegan3 repo passes synthesis kwargs flat (Generator(..., **synthesis_kwargs)).
    for key in ("channel_base", "channel_max"):
        if key in kwargs:
            synthesis_kwargs[key] = kwargs[key]
    mapping = _child(net, "mapping")
    synthesis = _child(net, "synthesis")
    resolutions = list(_required(synthesis, "block_resolutions"))
    blocks = [_child(synthesis, f"b{res}") for res in resolutions]
    for block in blocks:
        _architecture(block, "skip", "generator")
    first_layer = _child(blocks[0], "conv1")
    num_layers = int(_attr(mapping, "num_layers", 8))
    fc0 = _child(mapping, "fc0")
    resample = _attr(first_layer, "resample_filter", [1, 3, 3, 1])
    return GeneratorConfig(
        z_dim=int(_required(net, "z_dim")),
        w_dim=int(_required(net, "w_dim")),
        img_resolution=int(_required(net, "img_resolution")),
        img_channels=int(_required(net, "img_channels")),
        mapping_layers=num_layers,
        mapping_layer_features=int(fc0.state["_parameters"]["weight"].shape[0]) if num_layers > 1 else None,
        mapping_lr_multiplier=float(_attr(fc0, "bias_gain", 0.01)),
        w_avg_beta=float(_attr(mapping, "w_avg_beta", 0.995)),
        channel_base=int(synthesis_kwargs.get("channel_base", 32768)),
        channel_max=int(synthesis_kwargs.get("channel_max", 512)),
        num_fp16_res=sum(bool(_attr(block, "use_fp16", False)) for block in blocks),
        conv_clamp=_attr(first_layer, "conv_clamp"),
        resample_filter=tuple(int(t) for t in resample),
        use_noise=bool(_attr(first_layer, "use_noise", True)),
    )


def discriminator_config(net: PersistentObject) -> DiscriminatorConfig:
    """DiscriminatorConfig of an NVIDIA Discriminator, read like `generator_config`."""
    kwargs = _init_kwargs(net)
    resolutions = list(_required(net, "block_resolutions"))
    blocks = [_child(net, f"b{res}") for res in resolutions]
    for block in blocks:
        _architecture(block, "resnet", "discriminator")
    epilogue = _child(net, "b4")
    mbstd = _modules(epilogue).get("mbstd")
    return DiscriminatorConfig(
        img_resolution=int(_required(net, "img_resolution")),
        img_channels=int(_required(net, "img_channels")),
        channel_base=int(kwargs.get("channel_base", 32768)),
        channel_max=int(kwargs.get("channel_max", 512)),
        num_fp16_res=sum(bool(_attr(block, "use_fp16", False)) for block in blocks),
        conv_clamp=_attr(_child(epilogue, "conv"), "conv_clamp"),
        mbstd_group_size=_attr(mbstd, "group_size") if mbstd is not None else None,
        mbstd_num_channels=int(_attr(mbstd, "num_channels", 1)) if mbstd is not None else 0,
    )
