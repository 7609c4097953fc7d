"""Layer swapping between two generators (Pinkney & Adler 2020, "Resolution Dependent GAN Interpolation").

Every synthesis parameter of the result is `p = (1 - a) * p_low + a * p_high`, with `a` chosen per layer.
In toonify, `low` is the fine-tuned toon model (it gives the coarse structure) and `high` is the base
FFHQ model (fine texture and lighting):

    G_toonify = blend(G_toon, G_ffhq, swap_res=32)

The rule reproduces the original `blend_models.py` exactly:

* Each synthesis layer has a position `2 * log2(res / 4) + level`; level 0 is `const` (4x4) or `conv0`,
  level 1 is `conv1` and `torgb`.
* `mid` is the position of the requested `(swap_res, level)` and `x = position - mid`.
* Hard switch (`blend_width` None or 0): `a = 1` when `x > 1`, else 0. So with `level=0` the whole
  `swap_res` block (both convs and its ToRGB) still comes from the low-res model.
* Smooth switch: `a = 1 / (1 + exp(-x / blend_width))`. Note that it is centred on `mid` (a = 0.5
  there), 1.5 positions *below* the hard switch's threshold, so a smooth blend takes more from the
  high-res model than the hard one at the same setting.
* `synthesis.b4.conv1` always comes from the low-res model: the original matched layers by their TF
  names, and the 4x4 "Conv" is neither "Conv0_up" nor "Conv1".
* The mapping network, `w_avg` and all buffers (`noise_const`, `resample_filter`) come from the
  low-res model, as does the result's config.

Which generators blend: those that compute the same kind of function, judged by the state dicts'
names and shapes plus the config fields that change what the weights compute (every field of the
canonical `GeneratorConfig` except `_RUNTIME_FIELDS`). The models may come from any checkpoint
formats: every reader fills the config the same canonical way, so a TF FFHQ blends with a toon
fine-tuned by stylegan2-ada-pytorch, rosinality or toonlib. The run-time fields may differ, and the
result keeps the low-res model's values:

* `num_fp16_res`: which blocks run in float16 on CUDA (precision, not weights);
* `w_avg_beta`: the decay of the `w_avg` tracking during training;
* `conv_clamp`: clamps activations at +-conv_clamp (256 in stylegan2-ada-pytorch's configs, None in
  TF's and rosinality's). It is a guard against float16 overflow that normal inputs never reach (the
  reference fixtures give exactly the same images and logits without it), so it does not separate
  architectures.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from . import models
from .checkpoints import GeneratorLike, Networks, check_model, load_generator, load_network, split_network
from .messages import ToonlibWarning, warn
from .networks import Generator, GeneratorConfig

# The original never blended the 4x4 conv (see the module docstring).
KEPT_LOW = "synthesis.b4.conv1"

# Config fields that may differ between blended models (see the module docstring): run-time precision,
# the float16 overflow guard and the training-only w_avg decay. The result keeps low's values.
_RUNTIME_FIELDS = ("num_fp16_res", "conv_clamp", "w_avg_beta")


@dataclass(frozen=True)
class LayerWeight:
    """One synthesis layer and its blend weight `a` (0 = low-res model, 1 = high-res model).

    name: module path, e.g. "synthesis.b8.conv0"; "synthesis.b4.const" is the learned constant input.
    position: `2 * log2(resolution / 4) + level`, the axis the blending rule works on.
    ws_index: the w that feeds the layer (see `blend_per_layer`); the constant counts as ws[0].
    """

    name: str
    resolution: int
    level: int
    position: int
    ws_index: int
    weight: float = 0.0


def layer_weights(G_or_config: GeneratorLike | GeneratorConfig, swap_res: int, level: int = 0,
                  blend_width: float | None = None) -> list[LayerWeight]:
    """The weight of every synthesis layer for a `blend` setting, in forward order (for plots and UIs), of a
    generator (anything `load_generator` takes) or its config.

    `synthesis.b4.conv1` is listed with weight 0 at every setting (it always stays low-res). A `swap_res` above the
    generator's resolution is refused (`check_swap_res`), as `blend` refuses it.
    """
    check_setting(swap_res, level, blend_width)  # before a checkpoint is read
    # what every other function of the module takes, a Networks or a path too (they failed at "no attribute
    # 'img_resolution'")
    config = G_or_config if isinstance(G_or_config, GeneratorConfig) else load_generator(G_or_config).config
    # it answered (all zeros) for a setting `blend` refuses (thirty-ninth session's audit)
    check_swap_res(swap_res, config)  # the model whose low layers the blend keeps
    mid = _position(swap_res, level)
    return [dataclasses.replace(layer, weight=0.0 if layer.name == KEPT_LOW else
                                _rule(layer.position - mid, blend_width))
            for layer in synthesis_layers(config)]


def synthesis_layers(config: GeneratorConfig) -> list[LayerWeight]:
    """The blendable layers of a generator with weight 0, in forward order.

    Per block `b{res}`: const (4x4 only) or conv0 at level 0, then conv1 and torgb at level 1. The ws
    indices follow the synthesis network: b4.conv1 <- ws[0], b4.torgb <- ws[1], and for k >= 1 at
    res = 4 * 2**k: conv0 <- ws[2k-1], conv1 <- ws[2k], torgb <- ws[2k+1] (a ToRGB shares its w with
    the next block's conv0).
    """
    layers = []
    for k in range(int(math.log2(config.img_resolution)) - 1):
        res = 4 * 2**k
        first = ("const", 0) if k == 0 else ("conv0", 2 * k - 1)
        for part, level, ws_index in ((first[0], 0, first[1]), ("conv1", 1, 2 * k), ("torgb", 1, 2 * k + 1)):
            layers.append(LayerWeight(f"synthesis.b{res}.{part}", res, level, 2 * k + level, ws_index))
    return layers


def _position(res: int, level: int) -> int:
    return 2 * int(math.log2(res / 4)) + level


def _rule(x: int, blend_width: float | None) -> float:
    """The blend weight at distance `x` (in positions) above the swap point: the one rule of this module."""
    if not blend_width:
        return 1.0 if x > 1 else 0.0
    t = x / blend_width
    if t >= 0:  # two branches so that exp never overflows for very narrow widths
        return 1.0 / (1.0 + math.exp(-t))
    e = math.exp(t)
    return e / (1.0 + e)


def check_setting(swap_res: int, level: int = 0, blend_width: float | None = None) -> None:
    """Raise ValueError for a blend setting no generator takes (a `swap_res` that is not a power of two >= 4, a
    `level` other than 0 or 1, a negative `blend_width`). `blend` and `Blender.set` also refuse a `swap_res` above
    the models' resolution (`check_swap_res`); at it, the hard switch keeps the low model whole."""
    if (isinstance(swap_res, bool) or not isinstance(swap_res, numbers.Integral) or swap_res < 4
            or swap_res & (swap_res - 1)):
        raise ValueError(f"swap_res must be a power of two >= 4 (a resolution such as 4, 8, ..., 1024), "
                         f"got {_given(swap_res, whole=True)}")
    if isinstance(level, bool) or not isinstance(level, numbers.Integral) or level not in (0, 1):
        raise ValueError(f"level must be 0 (const/conv0) or 1 (conv1/torgb), got {_given(level, whole=True)}")
    check_blend_width(blend_width)


def check_blend_width(blend_width: float | None) -> None:
    """Raise ValueError for a smooth width no blend takes (negative, not finite, not a number); any other is taken,
    by `toonlib blend`, `blend` and notebook 02's explorer alike (the explorer refused one above its slider's 3;
    forty-second session's audit)."""
    if blend_width is not None and (isinstance(blend_width, bool) or not isinstance(blend_width, numbers.Real)
                                    or not (math.isfinite(blend_width) and blend_width >= 0)):
        raise ValueError(f"blend_width must be None or 0 (hard switch) or a positive number, got {_given(blend_width)}")


def check_swap_res(swap_res: int | None, toon: object) -> None:
    """ValueError for a swap resolution above the resolution of the toon model (a loaded `Generator`, its config, or
    a registry name; other names are checked once loaded), where every layer would come from the toon model: no blend
    at all (`blending` keeps the low model whole there, as the reference code does)."""
    info = models.MODELS.get(toon) if isinstance(toon, str) and not os.path.exists(toon) else None
    resolution = getattr(toon, "img_resolution", None) or getattr(info, "resolution", None)
    if swap_res is not None and resolution is not None and swap_res > resolution:
        choices = ", ".join(str(2**k) for k in range(2, int(math.log2(resolution))))
        raise ValueError(f"swap_res {swap_res} is above the {resolution} px of the toon model, which would then be "
                         f"used unblended: give one of {choices} (at {resolution} too, with a hard switch, every "
                         "layer is the toon model's)")


def _given(value: object, whole: bool = False) -> str:
    """A setting as a message shows it: a number or a string as typed, anything else by its type. A generator given
    for swap_res (blend(toon, 8, base)) printed its whole multi-line repr. `whole`: the setting takes whole numbers,
    so a float of one is told to be given as that number (`blend(toon, base, 16.0)`, "got 16.0")."""
    if whole and isinstance(value, float) and value.is_integer():  # 16.0 is a power of two: its type is what is wrong
        return f"{value!r}, a float: give the whole number {int(value)}"
    if isinstance(value, (numbers.Number, str)):
        return repr(value)
    name = type(value).__name__
    hint = (": the models come first, then swap_res: blend(toon, base, 16)"
            if isinstance(value, (torch.nn.Module, Networks)) else "")
    return f"{'an' if name[0] in 'AEIOU' else 'a'} {name}{hint}"


def blend_record(toon: str | os.PathLike, base: str | os.PathLike, swap_res: int, level: int = 0,
                 blend_width: float | None = None) -> dict:
    """How a blend was made, as a saved blend keeps it (meta "blend", shown by `toonlib info`): the toon (low-res)
    and base (high-res) models as the user named them (a registry name or URL as given, a local file by its
    absolute path: `_recorded_name`) and the setting."""
    return {"toon": _recorded_name(toon), "base": _recorded_name(base), "swap_res": swap_res, "level": level,
            "blend_width": blend_width or None}


def _recorded_name(name: str | os.PathLike) -> str:
    """A model as a blend records it: a local file by its absolute path ("FILE (G)" kept as such), anything else
    (a registry name, a URL, `UNSAVED`) as given. A path recorded as typed, relative to the folder the blend was made
    in, was not found from another: `toonify` said the base "is not there (moved or deleted)", and took the default
    base (forty-second session's audit)."""
    from .files import user_path

    source, which = split_network(os.fspath(name))
    if not isinstance(source, str) or not os.path.exists(user_path(source)):
        return os.fspath(name)
    path = os.path.abspath(user_path(source))
    return path if which is None else f"{path} ({which})"


#: How a blend record names a generator made in memory, not loaded from a file (`Generator.loaded_from`).
UNSAVED = "an unsaved generator"


def _name_of(G: Generator) -> str:
    """A model of a blend as its record names it: the checkpoint it was loaded from, as the caller named it."""
    return G.loaded_from or UNSAVED


def describe_blend(record: dict) -> str:
    """A `blend_record` in words: "toon up to 16 px (level 0), FFHQ above; hard switch"."""
    width = record.get("blend_width")
    mode = f"smooth switch, width {width}" if width else "hard switch"
    return (f"{record.get('toon')} up to {record.get('swap_res')} px (level {record.get('level', 0)}), "
            f"{record.get('base')} above; {mode}")


def toon_generator(low: GeneratorLike, which: str | None = None,
                   device: torch.device | str | None = None) -> Generator:
    """The low-res (toon) model `low` as a generator: network `which` when given; else for a registry name its
    un-blended toon model (G of 'toonify-blended-tf', whose G_ema is already blended; a registry model that holds only
    a blend is refused, as re-blending it would blend a blend), for a checkpoint the network `pipeline.toon_network_in`
    names (a training snapshot's G_ema, Toonify's G). The command line, `toonify --swap-res` and `blend` take the same
    one: `blend('toonify-blended-tf', ...)` blended the published blend, unlike `toonlib blend --toon NAME`. On
    `device` as `load_generator` puts it. A blend file toonlib wrote (its G_ema's `Generator.blend_record`) is refused
    unless `which` names that network, as a registry model that holds only a blend is."""
    from .pipeline import toon_network_in, toon_network_of  # it imports this module

    if isinstance(low, Generator):  # the caller's choice: said when it is a blend
        if (blend_of := _blend_in(low)) is not None:
            warn(f"the toon model {low.loaded_from or UNSAVED} is {blend_of}: blending it again blends a blend (the "
                 "layers above the swap resolution come from the base, those below stay the old blend's)")
        return load_generator(low, device=device)
    low, which = split_network(low, which)  # "toon.pkl (G)", as a blend's record names it
    asked, which = which, toon_network_of(low, which)  # a network named: a blend taken on purpose
    if which is None:
        low = low if isinstance(low, Networks) else load_network(low)
        which = toon_network_in(low)
    G = load_generator(low, which=which, device=device)
    if asked is None and (record := G.blend_record) is not None:  # blended again, it stayed the same blend
        # a toon made in memory has no name to give ("give its toon model, an unsaved generator, as the toon")
        toon = "" if record.get("toon") == UNSAVED else f", {record.get('toon')},"
        raise ValueError(f"the toon model {G.loaded_from or UNSAVED} is a blend already ({describe_blend(record)}): "
                         "blending it again blends a blend (at a higher swap resolution it stays this blend); give "
                         f"its toon model{toon} as the toon, or name the blend's network to blend it all the same "
                         "(--toon-network G_ema; in Python 'FILE (G_ema)')")
    return G


def _blend_in(G: Generator) -> str | None:
    """What says that `G` is a blend, with the toon model to give instead: its blend record (a blend toonlib made), or
    its `loaded_from`, the blended network of a registry model (`load_generator('toonify-blended-tf')`); else None."""
    if (record := G.blend_record) is not None:
        toon = "" if record.get("toon") == UNSAVED else f", {record.get('toon')}"
        return f"a blend already ({describe_blend(record)}); give its toon model{toon}"
    name, which = split_network(G.loaded_from or "")
    info = models.MODELS.get(name) if isinstance(name, str) else None
    if info is None or info.toon != "blended" or which == info.reblend_network:
        return None
    if info.reblend_network is None:
        return f"the blend of {name!r}, fixed at its authors' swap resolution; give an un-blended toon model"
    return (f"the published blend of {name!r}; give its toon model, load_generator({name!r}, "
            f"{info.reblend_network!r}), or the name {name!r}")


class Blender:
    """Mixes two generators into one output generator, in place, for interactive use.

    The output `G` starts as a copy of `low`; each `set` / `set_per_ws` overwrites its synthesis
    parameters with `torch.lerp(low, high, a)` without allocating a new network. The inputs are
    never modified, but they are read at every call (keep them alive and unchanged while blending).
    `lineage_checked`: the caller has warned about the pair's lineage already (`check_lineage`; a `Toonifier`, of
    its published blend and the same base), so it is not said twice.
    """

    def __init__(self, low: GeneratorLike, high: GeneratorLike, *, lineage_checked: bool = False):
        # a generator is the caller's, its choice said by `toon_generator` (`blend`, `Toonifier.set_blend`)
        low = load_generator(low) if isinstance(low, Generator) else toon_generator(low)
        high = load_generator(high)
        try:
            check_compatible(low, high, names=("low-res", "high-res"))
        except ValueError as exc:  # the layer shapes alone did not say what to do
            raise ValueError(f"{exc}\nThe low-res model is the toon model, the high-res one the base: "
                             f"{PAIR_WITH_ITS_BASE}.") from None
        if not lineage_checked:
            check_lineage(low, high, "the low-res (toon) model", "the high-res (base) model")
        # a new network, as load_network gives one: in eval mode without gradients (a toon model in training mode,
        # as `Generator(...)` builds it, moved w_avg at every sample and left the blend's record behind). Made of
        # normal tensors whatever the caller's mode: copied inside `torch.inference_mode()`, its parameters were
        # inference tensors, which every later `set` outside it failed to write (thirty-seventh session's audit).
        with torch.inference_mode(False):
            self.G: Generator = copy.deepcopy(low).eval().requires_grad_(False)
        self.G.set_origin()  # it is no longer the file's model
        self._names = (_name_of(low), _name_of(high))
        self._layers = synthesis_layers(self.G.config)
        high_params = dict(high.named_parameters())
        low_params = dict(low.named_parameters())
        self._params = []  # (layer name, output parameter, low tensor, high tensor)
        for name, param in self.G.synthesis.named_parameters(prefix="synthesis"):
            self._params.append((".".join(name.split(".")[:3]), param, low_params[name].detach().to(param),
                                 high_params[name].detach().to(param)))

    def set(self, swap_res: int, level: int = 0, blend_width: float | None = None) -> Generator:
        """Apply a resolution-based setting (see the module docstring) and return the output `G`, which records it
        (`G.blend_record`, kept by `save_network`). A `swap_res` above the models' resolution is refused: every
        layer would be the low-res model's."""
        weights = {layer.name: layer.weight for layer in layer_weights(self.G, swap_res, level, blend_width)}
        self._apply(weights)
        self.G.set_origin(blend_record=blend_record(*self._names, swap_res, level, blend_width))
        return self.G

    def set_per_ws(self, weights: Sequence[float]) -> Generator:
        """Apply one weight per ws index (see `blend_per_layer`) and return the output `G`."""
        weights = _per_ws_weights(weights)
        if len(weights) != self.G.num_ws:
            raise ValueError(f"weights must be {self.G.num_ws} finite numbers (one per ws index), got {weights}")
        self.G.set_origin()  # no swap resolution describes it
        return self._apply({layer.name: weights[layer.ws_index] for layer in self._layers})

    @torch.no_grad()
    def _apply(self, weight_of: dict[str, float]) -> Generator:
        for layer, param, low, high in self._params:
            torch.lerp(low, high, weight_of[layer], out=param)
        return self.G


def blend(low: GeneratorLike, high: GeneratorLike, swap_res: int, level: int = 0,
          blend_width: float | None = None) -> Generator:
    """A new generator with the low-res model's layers up to block `swap_res` (included), the high-res model's above.

    Layers of block `swap_res` and below come from `low` (in toonify the toon model), the rest from `high` (the
    base, FFHQ): the names `Blender`, `blend_per_layer` and `swap_resolution_grid` use too. With
    `level=1`, block `swap_res * 2`'s conv0 also stays low-res. `blend_width > 0` replaces the hard
    switch by a logistic ramp `a = 1 / (1 + exp(-x / blend_width))` centred on the position of
    `(swap_res, level)`, which is 1.5 positions below the hard threshold. A `swap_res` at the model
    resolution gives (with the hard switch) the low-res model; one above it is refused (ValueError).
    `synthesis.b4.conv1`, the mapping network, `w_avg` and the noise buffers always come from the low-res
    model, as in the original `blend_models.py`. Use `layer_weights` to see the weight of every layer. A
    registry name as `low` gives its un-blended toon model, as `toonlib blend --toon NAME` takes it
    (`toon_generator`); a registry toon model as `high` is refused (the two swapped: `check_base`). The new
    generator is in eval mode without gradients, as `load_network` gives networks, whatever the inputs' modes.
    """
    check_setting(swap_res, level, blend_width)  # first: blend(toon, 8, base) is told the order
    check_models(low, high)
    check_swap_res(swap_res, low)  # a registry name's resolution, before its download
    check_base(high)
    low = toon_generator(low)
    # a path's once loaded, before the base is loaded and the pair compared: a lineage warning came first, then the
    # refusal of a setting checkable up front (forty-first session's audit; the command line checks it first too)
    check_swap_res(swap_res, low)
    blender = Blender(low, high)
    blended = blender.set(swap_res, level, blend_width)
    _check_layers_taken(blender, swap_res, level, blend_width)
    return blended


def check_models(low: object, high: object) -> None:
    """TypeError naming `low` or `high` for a model argument of no model kind (None: "load_network reads a
    checkpoint", forty-third session's audit)."""
    check_model(low, "low")
    check_model(high, "high")


def blend_per_layer(low: GeneratorLike, high: GeneratorLike, weights: Sequence[float]) -> Generator:
    """A new generator blended with one weight per ws index (`G.num_ws` numbers; 0 = low, 1 = high).

    Each synthesis layer uses the weight of the w that feeds it: b4.const and b4.conv1 use ws[0],
    b4.torgb ws[1], and block `res = 4 * 2**k` uses ws[2k-1] (conv0), ws[2k] (conv1), ws[2k+1]
    (torgb), so a ToRGB moves together with the next block's conv0. Unlike `blend`, there is no
    exception: all ones gives every synthesis parameter of `high`. The mapping network, `w_avg` and the
    noise buffers still come from `low`. Values outside [0, 1] extrapolate.
    """
    check_models(low, high)
    weights = _per_ws_weights(weights)  # before the models are read (or downloaded)
    check_base(high)
    return Blender(toon_generator(low), high).set_per_ws(weights)


def _per_ws_weights(weights: Sequence[float]) -> list[float]:
    """`blend_per_layer`'s weights as floats: a ValueError, saying what is expected, for anything but a flat sequence
    of finite numbers (a lone number was "'float' object is not iterable", after both models were read)."""
    expected = "one number per ws index (G.num_ws of them, such as [0] * 8 + [1] * 10 for 18)"
    try:
        if isinstance(weights, (str, bytes)):
            raise TypeError
        values = [float(a) for a in weights]
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"weights must be {expected}, got {weights!r}") from None
    if not all(math.isfinite(a) for a in values):
        raise ValueError(f"weights must be finite numbers, got {values}")
    return values


def check_base(high: GeneratorLike) -> None:
    """Refuse a registry toon model given as the high-res model (ValueError), before anything downloads: `blend`
    with its two models swapped blended FFHQ's low layers with the toon's high ones, without a word."""
    from .pipeline import check_not_a_toon  # it imports this module

    check_not_a_toon(high, f"high={high!r}", "give it as low, the first argument (the toon model gives the low-res "
                                             "layers, the base the high-res ones)")


def check_compatible(a: GeneratorLike, b: GeneratorLike, names: tuple[str, str] = ("a", "b")) -> None:
    """Raise ValueError naming every architecture difference: config fields that change the computation
    (all but `_RUNTIME_FIELDS`) and state-dict names and shapes. Formats do not matter (configs are canonical)."""
    a, b = load_generator(a), load_generator(b)
    problems = [f"{f.name}: {names[0]} {getattr(a.config, f.name)!r}, {names[1]} {getattr(b.config, f.name)!r}"
                for f in dataclasses.fields(GeneratorConfig) if f.name not in _RUNTIME_FIELDS + ("img_resolution",)
                and getattr(a.config, f.name) != getattr(b.config, f.name)]
    if a.img_resolution != b.img_resolution:  # said in words, without the layers it adds or drops: the layer names
        # listed after "img_resolution: low-res 32, high-res 64" said nothing more (forty-fourth session's audit)
        raise ValueError(f"the generators have different architectures and cannot be blended: {names[0]} is "
                         f"{a.img_resolution} px, {names[1]} {b.img_resolution} px"
                         + "".join(f"\n  {problem}" for problem in problems))
    state_a, state_b = a.state_dict(), b.state_dict()
    for key in [*state_a, *(k for k in state_b if k not in state_a)]:
        if key not in state_b or key not in state_a:
            problems.append(f"{key}: only in {names[0] if key in state_a else names[1]}")
        elif state_a[key].shape != state_b[key].shape:
            problems.append(f"{key}: shape {list(state_a[key].shape)} in {names[0]}, "
                            f"{list(state_b[key].shape)} in {names[1]}")
    if problems:
        shown = problems[:12] + ([f"... and {len(problems) - 12} more"] if len(problems) > 12 else [])
        raise ValueError("the generators have different architectures and cannot be blended:\n  "
                         + "\n  ".join(shown))


#: `swap_resolution_grid`'s truncation, unsaid in its row labels (another is said there).
_GRID_PSI = 0.7


@torch.no_grad()
def swap_resolution_grid(low: GeneratorLike, high: GeneratorLike, seeds: Sequence[int],
                         swap_resolutions: Sequence[int] | None = None, level: int = 0,
                         blend_width: float | None = None, truncation_psi: float = _GRID_PSI, cell: int = 128,
                         progress: bool = False):
    """The figure of the blog posts as a PIL image: rows = seeds; columns = the base (high-res model), a blend at
    every swap resolution, the toon (low-res model), labelled so: "swap 8", with the setting where it is not the
    default ("swap 8, lv 1, w 0.5": `level`, `blend_width`; "base, psi 1": a `truncation_psi` other than 0.7), rows
    "seed 3". `progress`: a bar of its columns (a 1024 px grid of 4 seeds takes minutes on a CPU).

    Each row renders one latent (mapped by the high-res model, i.e. in the base model's W space, as in
    toonify) with the high-res model, a blend at every swap resolution, and the low-res model. By default the
    swap resolutions are the model's block resolutions, but for a hard switch not the last: that blend is the
    toon, whose column ends the row (11 columns of a 1024 px model shrank its labels out of reach in a notebook).
    """
    from .images import labelled_grid, to_pil
    from .messages import progress_bar
    from .networks import check_seeds, check_truncation, z_from_seeds

    seeds = check_seeds(seeds)  # before any model is read (or downloaded)
    # a lone resolution failed at "'int' object is not iterable", and a NaN truncation drew every face black without
    # a word, where the command line and the explorer refuse it (thirty-ninth session's audit)
    if isinstance(swap_resolutions, (numbers.Number, str, bytes)):
        example = f"[{swap_resolutions}] or " if isinstance(swap_resolutions, numbers.Integral) else ""
        raise TypeError(f"swap_resolutions is a list of resolutions, got {type(swap_resolutions).__name__} "
                        f"{swap_resolutions!r}: give a list, such as {example}[8, 16]")
    check_truncation(truncation_psi)  # before any model is read: the generator's own check
    asked = None if swap_resolutions is None else list(swap_resolutions)
    if asked == []:  # it drew every resolution
        raise ValueError("swap_resolutions is empty: give the resolutions to draw, such as [8, 16, 32], or leave it "
                         "out for every one")
    for res in asked or (4,):  # a setting it would refuse after rendering the base column (and the downloads)
        check_setting(res, level, blend_width)
        check_swap_res(res if asked else None, low)
    check_base(high)
    low, high = toon_generator(low), load_generator(high)
    blender = Blender(low, high)
    resolutions = asked if asked is not None else [res for res in high.synthesis.block_resolutions
                                                   if blend_width or res < high.img_resolution]
    ws = high.mapping(z_from_seeds(seeds, high.z_dim, high.device), None, truncation_psi=truncation_psi)
    with progress_bar(total=len(resolutions) + 2, desc="grid", unit="column", disable=not progress) as bar:
        images = [to_pil(high.synthesis(ws))]
        bar.update()
        for res in resolutions:
            images.append(to_pil(blender.set(res, level, blend_width).synthesis(ws)))
            bar.update()
        images.append(to_pil(low.synthesis(ws.to(low.device))))
        bar.update()
    rows = [[images[j][i] for j in range(len(images))] for i in range(len(seeds))]
    # the setting a blend column was drawn with, where it is not the default (a grid at level 1 or of a smooth switch
    # was labelled as a hard switch's at level 0; forty-second session's audit): short, to fit over a 128 px cell
    setting = (f", lv {level}" if level else "") + (f", w {blend_width:.3g}" if blend_width else "")
    # the truncation, which shapes every column's latents, over the first: a longer row label widened the picture
    psi = "" if truncation_psi == _GRID_PSI else f", psi {truncation_psi:.3g}"
    col_labels = [f"base{psi}"] + [f"swap {r}{setting}" for r in resolutions] + ["toon"]
    return labelled_grid(rows, row_labels=[f"seed {s}" for s in seeds], col_labels=col_labels, cell=cell)


# --------------------------------------------------------------------------------------------
# Lineage: is the toon model fine-tuned from this base?

#: Synthesis blocks that `lineage_distance` compares, with the mapping network (the layers a fine-tune moves least).
LINEAGE_MAX_RES = 32
#: `lineage_distance` above which two generators are taken not to be parent and child.
UNRELATED_DISTANCE = 0.5


#: The advice of the messages about a toon model and a base that do not go together.
PAIR_WITH_ITS_BASE = ("pair the toon model with the base it was fine-tuned from (the registry's toon models name "
                      "theirs: their lineage in `toonlib models`)")
#: The advice of the messages about an encoder whose decoder is not the base (`check_lineage(..., encoder=True)`).
ENCODER_WITH_ITS_BASE = ("give as the base (--base, base=) the model the encoder was trained with (the registry's "
                         "encoders name theirs: their lineage in `toonlib models`), or take an encoder of this base")


class LineageWarning(ToonlibWarning):
    """A toon model and a base model that do not look like parent and child."""


def lineage_distance(a: GeneratorLike, b: GeneratorLike, max_res: int = LINEAGE_MAX_RES) -> float:
    """How far apart two generators' mapping and low-resolution weights are; near 0 for a parent and its child.

    The mean of two relative distances ||w_a - w_b|| / ||w_b||: one over the mapping network's weights, one
    over the synthesis blocks up to `max_res` px (convolutions, their modulation affines, ToRGB, the learned
    constant). Biases are left out: every model starts them at the same constants (modulation biases at 1),
    which would make unrelated models look alike. A model fine-tuned from `b` stays close: its mapping network
    learns at 1/100 of the rate and its coarse layers change least (measured after 500 steps of toonlib's trainer
    on a 32 px model: mapping 7e-4, low-res 0.055, mean 0.028). Two models trained separately have uncorrelated
    weights of similar norm: each part, and so the mean, is about sqrt(2) = 1.41 (measured: 1.42). Generators
    whose architectures differ are `inf` apart.
    """
    state_a, state_b = load_generator(a).state_dict(), load_generator(b).state_dict()
    parts = []
    for wanted in (_mapping_weight, lambda name: _low_res_weight(name, max_res)):
        names = [name for name in state_b if wanted(name)]
        if names != [name for name in state_a if wanted(name)]:
            return math.inf
        squared_diff = squared_norm = 0.0
        for name in names:
            tensor_a, tensor_b = state_a[name], state_b[name].double()
            if tensor_a.shape != tensor_b.shape:
                return math.inf
            squared_diff += (tensor_a.to(tensor_b) - tensor_b).square().sum().item()
            squared_norm += tensor_b.square().sum().item()
        if not squared_norm:
            return math.inf
        parts.append(math.sqrt(squared_diff / squared_norm))
    return sum(parts) / len(parts)


def _same_weights(a: GeneratorLike, b: GeneratorLike) -> bool:
    state_a, state_b = load_generator(a).state_dict(), load_generator(b).state_dict()
    return state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k].to(state_a[k])) for k in state_a)


def _check_layers_taken(blender: Blender, swap_res: int, level: int, blend_width: float | None) -> None:
    """Warn (`LineageWarning`, beside the "same weights" one of `check_lineage`) when every synthesis tensor a blend
    takes from its low-res (toon) model, whole or in part, is the high-res (base) model's while the toon differs above:
    the blend is the base's synthesis, faces and no toon. A toon fine-tuned with --freeze-g keeps the base's blocks up
    to that resolution bit for bit, and the commands its run printed blended at them without a word (fortieth
    session's audit). Cheap: the tensors taken are compared until one differs (a toon's b4.const, as a rule); only
    where none does, those above, until the first that differs (the highest block kept, said)."""
    weight_of = {layer.name: layer.weight for layer in layer_weights(blender.G.config, swap_res, level, blend_width)}
    params = blender._params  # (layer name, output, low tensor, high tensor) in forward order: b4, b8, ...
    if not all(torch.equal(low, high) for layer, _, low, high in params if weight_of[layer] < 1):
        return
    differs = next((layer for layer, _, low, high in params if not torch.equal(low, high)), None)
    if differs is None:  # no synthesis tensor differs: `check_lineage` said so where the models are the same
        return
    kept = int(differs.split(".")[1][1:]) // 2  # "synthesis.b16.conv0": blocks up to 8 px are the base's
    warn(f"the low-res (toon) model keeps the high-res (base) model's synthesis blocks up to {kept} px unchanged (as "
         f"fine-tuning with --freeze-g {kept} (freeze_g={kept}) does), and a blend at --swap-res {swap_res} "
         f"(swap_res={swap_res}) takes only those from it: the blend draws the base model's faces, not toons. Give "
         f"a swap resolution above {kept} px, such as {2 * kept}", LineageWarning)


def _mapping_weight(name: str) -> bool:
    return name.startswith("mapping.fc") and name.endswith(".weight")


def _low_res_weight(name: str, max_res: int) -> bool:
    block = re.match(r"synthesis\.b(\d+)\.", name)
    return block is not None and int(block.group(1)) <= max_res and name.endswith(("weight", "const"))


def check_lineage(toon: GeneratorLike, base: GeneratorLike, toon_name: str = "the toon model",
                  base_name: str = "the base model", encoder: bool = False) -> float:
    """`lineage_distance(toon, base)`; warns (`LineageWarning`) when it says they are not parent and child, and,
    unless `encoder` (`toon` is an encoder's decoder, which is best the base itself), when they are one network: the
    base or an FFHQ encoder given as the toon model blends into the base itself, a reconstruction and no toon. An
    encoder's warnings say what the base does to its codes: nothing is blended with it (they gave the toon model's
    advice, thirty-ninth session's audit)."""
    distance = lineage_distance(toon, base)
    if encoder:
        is_not, looks_not = f"is neither {base_name} nor a fine-tune of it", f"like {base_name} or a fine-tune of it"
        effect = (f"{base_name} draws the encoder's codes (latents of its decoder) as another face: the reconstruction "
                  "and the toon are not the photo's person")
        unblendable, advice = effect, ENCODER_WITH_ITS_BASE
    else:
        is_not, looks_not = f"is not fine-tuned from {base_name}", f"fine-tuned from {base_name}"
        effect, unblendable = "the blend mixes two different faces", "they cannot be blended"
        advice = PAIR_WITH_ITS_BASE
    advice = f"{advice[0].upper()}{advice[1:]}"
    if distance == 0 and not encoder and _same_weights(toon, base):
        warn(f"{toon_name} has the same weights as {base_name}: every blend of them is that model, which draws "
             "faces as they are, not toons. Give a toon model fine-tuned from the base (such as toonify-blended-tf), "
             "not the base itself or an encoder of it", LineageWarning)
    elif math.isinf(distance):
        warn(f"{toon_name} {is_not}: their architectures differ (mapping or low-resolution layers of other shapes), "
             f"so their W spaces differ and {unblendable}. {advice}.", LineageWarning)
    elif distance > UNRELATED_DISTANCE:
        warn(f"{toon_name} does not look {looks_not}: their mapping and low-resolution weights are {distance:.2f} "
             f"apart (relative; a fine-tuned model stays below {UNRELATED_DISTANCE}, unrelated models are about 1.4 "
             f"apart), so their W spaces differ and {effect}. {advice}.", LineageWarning)
    return distance
