"""rosinality/stylegan2-pytorch checkpoints (`.pt`).

Such a file is a dict of state dicts: `g_ema`, `g` and `d` (optional) and, when written by
rosinality's `convert_weight.py`, `latent_avg`; checkpoints from its `train.py` also hold optimiser
states, `args` and `ada_aug_p`, which are ignored here. JoJoGAN's one-shot style files hold `g` only:
those weights become G_ema. The weights are renamed and reshaped into toonlib's (NVIDIA's) layout,
and the architecture is read from the tensor shapes. `read_generator` also serves the decoders of
pSp / e4e files (`psp.py`).

Conventions that differ from toonlib's (NVIDIA's), which a user switching over must know:

* Truncation: rosinality applies `truncation` only when it is < 1 (psi >= 1 is a no-op); toonlib
  applies any psi != 1, so psi > 1 extrapolates. rosinality needs `truncation_latent` passed by
  the caller; here it becomes `mapping.w_avg`, the file's `latent_avg` when present.
* Noise: rosinality draws fresh random noise unless `randomize_noise=False`; its stored
  `noises.noise_i` buffers become our `noise_const`, used by `noise_mode='const'` (toonlib's
  default for `G(z, c)`). Zero noise is `noise_mode='none'`.
* Style mixing is `inject_index` there; here build ws from two mappings and concatenate them.
* Not stored in the file, so assumed: the mapping network's learning-rate multiplier (rosinality's
  `lr_mlp`, default 0.01).
* FIR kernels: rosinality stores its upsampling kernels multiplied by factor**2 = 4 (`convs.{2k}.conv.blur.kernel`,
  `to_rgbs.{k}.upsample.kernel`), NVIDIA the normalised filter with the gain applied inside the op; they
  are copied, divided by 4, into the `resample_filter` buffers (the discriminator's are copied as they
  are), so a file with other kernels than [1, 3, 3, 1] computes what it computes in rosinality's code.
  The config's `resample_filter` stays the default.
"""
from __future__ import annotations

import re
from typing import Callable

import torch

from ..networks import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from .common import CheckpointError, Networks, build_network

# rosinality's Generator default lr_mlp. It is a constructor argument that no checkpoint stores.
MAPPING_LR_MULTIPLIER = 0.01
# z samples and seed for the mean w of checkpoints without `latent_avg`.
W_AVG_SAMPLES = 4096
W_AVG_SEED = 0

Transform = Callable[[torch.Tensor], torch.Tensor]


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _drop_axis(t: torch.Tensor) -> torch.Tensor:
    return t[0]


def _scalar(t: torch.Tensor) -> torch.Tensor:
    return t.reshape([])


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1)


def _noise(t: torch.Tensor) -> torch.Tensor:
    return t[0, 0]


def _up_kernel(t: torch.Tensor) -> torch.Tensor:
    return t / 4  # rosinality's upsampling kernels carry the gain factor**2


# Suffixes inside one rosinality layer -> (NVIDIA suffix, transform). A ToRGB's `upsample.kernel`
# belongs to NVIDIA's block (`synthesis.b{res}.resample_filter`, see `convert_generator`).
_CONV_PARTS = {"conv.weight": ("weight", _drop_axis), "conv.modulation.weight": ("affine.weight", _same),
               "conv.modulation.bias": ("affine.bias", _same), "noise.weight": ("noise_strength", _scalar),
               "activate.bias": ("bias", _same), "conv.blur.kernel": ("resample_filter", _up_kernel)}
_RGB_PARTS = {"conv.weight": ("weight", _drop_axis), "conv.modulation.weight": ("affine.weight", _same),
              "conv.modulation.bias": ("affine.bias", _same), "bias": ("bias", _flat)}
_D_BLOCK_PARTS = {"conv1.0.weight": "conv0.weight", "conv1.1.bias": "conv0.bias", "conv2.1.weight": "conv1.weight",
                  "conv2.2.bias": "conv1.bias", "skip.1.weight": "skip.weight",
                  "conv2.0.kernel": "conv1.resample_filter", "skip.0.kernel": "skip.resample_filter"}
_D_HEAD = {"final_conv.0.weight": "b4.conv.weight", "final_conv.1.bias": "b4.conv.bias",
           "final_linear.0.weight": "b4.fc.weight", "final_linear.0.bias": "b4.fc.bias",
           "final_linear.1.weight": "b4.out.weight", "final_linear.1.bias": "b4.out.bias"}


def is_rosinality(obj: object) -> bool:
    """A dict holding a rosinality generator state dict under `g_ema` or (JoJoGAN's style files) `g`."""
    return isinstance(obj, dict) and any(is_generator_state(obj.get(key)) for key in ("g_ema", "g"))


def is_projector_output(obj: object) -> bool:
    """rosinality's projector output: image name -> {'latent': tensor, ...}, latents, no network."""
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, dict) and "latent" in v for v in obj.values())


def is_generator_state(state: object) -> bool:
    """A state dict with rosinality's generator names."""
    return isinstance(state, dict) and "style.1.weight" in state and "conv1.conv.weight" in state


def read_rosinality(obj: dict, source: str = "") -> Networks:
    """Networks from a loaded rosinality checkpoint dict: G_ema from `g_ema`, G from `g`, D from `d`.

    `latent_avg` (the EMA generator's mean w) becomes both generators' `mapping.w_avg`. Without it
    (train.py checkpoints) each generator's mean w is estimated from its own mapping network and
    `meta["w_avg"]` says "computed". A file with `g` but no `g_ema` (JoJoGAN's one-shot style files,
    `{"g": state_dict}`) gives its `g` weights as G_ema and no G; `meta["G_ema_from"]` names the key
    G_ema was read from in every case.
    """
    latent_avg = obj.get("latent_avg")
    ema_key = "g_ema" if "g_ema" in obj else "g"
    G_ema = read_generator(obj[ema_key], f"{source} [{ema_key}]", latent_avg)
    G = read_generator(obj["g"], f"{source} [g]", latent_avg) if ema_key == "g_ema" and "g" in obj else None
    D = None
    if "d" in obj:
        d_config = discriminator_config(obj["d"], f"{source} [d]")
        state = convert_discriminator(obj["d"], d_config, f"{source} [d]")
        D = build_network(Discriminator, d_config, state, f"{source} [d]")
    meta = {"format": "rosinality", "source": source, "G_ema_from": ema_key,
            "w_avg": "latent_avg" if latent_avg is not None else "computed"}
    return Networks(G_ema=G_ema, G=G, D=D, meta=meta)


def read_generator(state: dict[str, torch.Tensor], what: str, latent_avg: torch.Tensor | None = None) -> Generator:
    """A toonlib generator from a rosinality generator state dict (architecture read from its shapes).

    `mapping.w_avg` is `latent_avg` when given, else the mean w of `W_AVG_SAMPLES` seeded z (what
    rosinality's `mean_latent` estimates).
    """
    config = generator_config(state, what)
    net = build_network(Generator, config, {**convert_generator(state, what),
                                            "mapping.w_avg": torch.zeros([config.w_dim])}, what)
    if latent_avg is None:
        w_avg = _mean_w(net)
    elif latent_avg.numel() == config.w_dim:
        w_avg = latent_avg.reshape(-1)
    else:
        raise CheckpointError(f"{what}: latent_avg has shape {list(latent_avg.shape)}, expected [{config.w_dim}]")
    net.mapping.w_avg.copy_(w_avg)
    return net


def generator_config(state: dict[str, torch.Tensor], what: str) -> GeneratorConfig:
    """The NVIDIA-style architecture of a rosinality generator, from its tensor shapes.

    rosinality's `Generator` has `z_dim = w_dim = style_dim`; here both (and the hidden mapping width)
    are read from the mapping layers' shapes, like the channel table from the convolutions'.
    """
    n_mlp = sum(bool(re.fullmatch(r"style\.\d+\.weight", k)) for k in state)
    hidden, z_dim = _size(state, "style.1.weight", 0, what), _size(state, "style.1.weight", 1, what)
    w_dim = _size(state, f"style.{n_mlp}.weight", 0, what)
    num_rgbs = 1 + sum(bool(re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)) for k in state)
    channels = [(4, _size(state, "conv1.conv.weight", 1, what))]
    for key, tensor in state.items():
        match = re.fullmatch(r"convs\.(\d+)\.conv\.weight", key)
        if match:
            channels.append((2 ** (int(match[1]) // 2 + 3), tensor.shape[1]))
    channel_base, channel_max = fit_channels(channels, what)
    return GeneratorConfig(z_dim=z_dim, w_dim=w_dim, img_resolution=4 * 2 ** (num_rgbs - 1), mapping_layers=n_mlp,
                           mapping_layer_features=hidden, mapping_lr_multiplier=MAPPING_LR_MULTIPLIER,
                           channel_base=channel_base, channel_max=channel_max, num_fp16_res=0, conv_clamp=None)


def discriminator_config(state: dict[str, torch.Tensor], what: str) -> DiscriminatorConfig:
    """The NVIDIA-style architecture of a rosinality (residual) discriminator, from its tensor shapes."""
    num_blocks = sum(bool(re.fullmatch(r"convs\.\d+\.conv1\.0\.weight", k)) for k in state)
    resolution = 4 * 2**num_blocks
    channels = [(resolution, _size(state, "convs.0.0.weight", 0, what)),
                (4, _size(state, "final_conv.0.weight", 0, what))]
    for key, tensor in state.items():
        match = re.fullmatch(r"convs\.(\d+)\.conv(1\.0|2\.1)\.weight", key)
        if match:
            res = resolution // 2 ** (int(match[1]) - 1)
            channels.append((res if match[2] == "1.0" else res // 2, tensor.shape[0]))
    channel_base, channel_max = fit_channels(channels, what)
    return DiscriminatorConfig(img_resolution=resolution, channel_base=channel_base, channel_max=channel_max,
                               num_fp16_res=0, conv_clamp=None, mbstd_group_size=4, mbstd_num_channels=1)


def _size(state: dict[str, torch.Tensor], key: str, dim: int, what: str) -> int:
    if key not in state:
        raise CheckpointError(f"{what}: missing {key}; not a complete rosinality StyleGAN2 network")
    return int(state[key].shape[dim])


def fit_channels(channels: list[tuple[int, int]], what: str) -> tuple[int, int]:
    """(channel_base, channel_max) with min(channel_base // res, channel_max) == ch for every (res, ch).

    If any pair fits, the canonical one (`networks.canonical_channels`) does: the largest `res * ch` and
    the largest `ch`.
    """
    channel_base, channel_max = max(res * ch for res, ch in channels), max(ch for _, ch in channels)
    if all(min(channel_base // res, channel_max) == ch for res, ch in channels):
        return channel_base, channel_max
    table = ", ".join(f"{res}px: {ch}" for res, ch in sorted(set(channels)))
    raise CheckpointError(f"{what}: no channel_base/channel_max reproduces the channel counts ({table}) "
                          "as min(channel_base // resolution, channel_max); toonlib cannot build this network")


def convert_generator(state: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """rosinality generator state dict -> NVIDIA names and layouts (without `mapping.w_avg`)."""

    def rename(key: str) -> tuple[str, Transform]:
        if match := re.fullmatch(r"style\.(\d+)\.(weight|bias)", key):
            return f"mapping.fc{int(match[1]) - 1}.{match[2]}", _same
        if key == "input.input":
            return "synthesis.b4.const", _drop_axis
        if match := re.fullmatch(r"noises\.noise_(\d+)", key):
            return f"{_layer_name(int(match[1]) - 1)}.noise_const", _noise
        if match := re.fullmatch(r"(conv1|convs\.(\d+))\.(.+)", key):
            layer = _layer_name(-1 if match[2] is None else int(match[2]))
            return _part(_CONV_PARTS, layer, match[3])
        if match := re.fullmatch(r"(to_rgb1|to_rgbs\.(\d+))\.(.+)", key):
            res = 4 if match[2] is None else 2 ** (int(match[2]) + 3)
            if match[3] == "upsample.kernel":
                return f"synthesis.b{res}.resample_filter", _up_kernel
            return _part(_RGB_PARTS, f"synthesis.b{res}.torgb", match[3])
        raise KeyError(key)

    return _convert(state, rename, what)


def convert_discriminator(state: dict[str, torch.Tensor], config: DiscriminatorConfig,
                          what: str) -> dict[str, torch.Tensor]:
    """rosinality discriminator state dict -> NVIDIA names (same layouts)."""
    top = config.img_resolution

    def rename(key: str) -> tuple[str, Transform]:
        if key in _D_HEAD:
            return _D_HEAD[key], _same
        if match := re.fullmatch(r"convs\.0\.([01])\.(weight|bias)", key):
            return f"b{top}.fromrgb.{match[2]}", _same
        if match := re.fullmatch(r"convs\.(\d+)\.(.+)", key):
            return f"b{top // 2 ** (int(match[1]) - 1)}.{_D_BLOCK_PARTS[match[2]]}", _same
        raise KeyError(key)

    return _convert(state, rename, what)


def _layer_name(index: int) -> str:
    """NVIDIA name of synthesis conv `index`: -1 is rosinality's `conv1`, 2k / 2k+1 are `convs.2k` / `.2k+1`."""
    if index < 0:
        return "synthesis.b4.conv1"
    return f"synthesis.b{2 ** (index // 2 + 3)}.conv{index % 2}"


def _part(parts: dict, layer: str, suffix: str) -> tuple[str, Transform]:
    name, transform = parts[suffix]
    return f"{layer}.{name}", transform


def _convert(state: dict[str, torch.Tensor], rename: Callable, what: str) -> dict[str, torch.Tensor]:
    """Apply `rename` (key -> (new key, transform), KeyError if unknown) to a state dict."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state.items():
        try:
            target = rename(key)
        except KeyError:
            unknown.append(key)
            continue
        out[target[0]] = target[1](tensor)
    if unknown:
        raise CheckpointError(f"{what}: unexpected rosinality weights {', '.join(unknown)}; "
                              "not a StyleGAN2 network toonlib can convert")
    return out


def _mean_w(G: Generator) -> torch.Tensor:
    """Mean mapping output over W_AVG_SAMPLES seeded z (what rosinality's `mean_latent` estimates)."""
    z = torch.randn([W_AVG_SAMPLES, G.z_dim], generator=torch.Generator().manual_seed(W_AVG_SEED))
    return G.mapping(z, None)[:, 0].mean(dim=0)
