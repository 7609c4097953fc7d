"""Losses: the perceptual distance (LPIPS) and the noise regulariser used by projection, and the GAN
training losses of fine-tuning (non-saturating logistic, R1, path length; docs/design.md section 8).

`lpips` (and through it torchvision) is imported only when a perceptual model is built, so importing
this module stays cheap.
"""
from __future__ import annotations

import inspect
import pickle
import warnings
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from . import convolution, ops

VGG16_WEIGHTS = "lpips-vgg16"  # registry name of torchvision's ImageNet VGG16 (toonlib.models)

_LPIPS_CACHE: dict[str, nn.Module] = {}
UNIT_EPS = 1e-10  # lpips.normalize_tensor: f / (|f| + eps)


class PerceptualWeightsError(RuntimeError):
    """The default perceptual model cannot get the ImageNet VGG16 weights it is built on."""


# --------------------------------------------------------------------------------------------
# Perceptual distance


def build_lpips(device: str | torch.device = "cpu") -> nn.Module:
    """The real LPIPS-VGG metric (`lpips.LPIPS(net='vgg')`), built once per device and cached.

    Its trunk is torchvision's ImageNet VGG16 (553 MB), fetched once through `toonlib.fetch('lpips-vgg16')`
    (resume, checks, progress bar) into `$TORCH_HOME/hub/checkpoints/`, where torchvision finds it.
    Without it and without internet, `PerceptualWeightsError` names the file, where it goes and how to get it.
    """
    key = str(torch.device(device))
    if key not in _LPIPS_CACHE:
        _LPIPS_CACHE[key] = _new_lpips().to(device)
    return _LPIPS_CACHE[key]


def lpips_needs_weights() -> bool:
    """Whether a projection in this process has still to read VGG16's file (`build_lpips` has built no LPIPS yet):
    the command line fetches it with the models then."""
    return not _LPIPS_CACHE


def _new_lpips() -> nn.Module:
    """lpips' LPIPS-VGG module with its trunk read from torchvision's VGG16 file: only the 13 convolutions that
    LPIPS uses (56 MB of the file's 553; its classifier is never built), memory-mapped where the file allows.
    `lpips.LPIPS(net='vgg')` itself builds and randomly initialises the whole VGG16, then reads the whole file
    beside it: ~1.2 GB above the result for a moment, and a second of CPU time."""
    import lpips

    from .download import DownloadError, fetch
    from .models import get_model

    info = get_model(VGG16_WEIGHTS)
    try:
        path = fetch(VGG16_WEIGHTS)
    except DownloadError as exc:
        raise PerceptualWeightsError(
            f"LPIPS (the projection loss) needs torchvision's ImageNet VGG16 weights, {info.filename} (553 MB), "
            f"and they could not be downloaded: {exc.reason}. Run `toonlib fetch {VGG16_WEIGHTS}` on a machine "
            f"with internet, or download {info.sources[0]} and save it as {exc.path}."
        ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's "pretrained is deprecated"; lpips' own
        # load of its heads, a no-op on the meta device ("copying from a non-meta parameter ..."), whose
        # torch.load without weights_only torch 2.4-2.5 warn of (FutureWarning): the heads are read below, safely
        warnings.simplefilter("ignore", FutureWarning)
        with torch.device("meta"):  # the module's shape only: no memory, no random initialisation
            net = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
    try:
        state = _lpips_vgg_state(net, path)
        net.load_state_dict(state, strict=False, assign=True)
        empty = [name for name, tensor in [*net.named_parameters(), *net.named_buffers()] if tensor.is_meta]
        if empty:
            raise RuntimeError(f"no weights for {', '.join(empty)}")
    except (OSError, RuntimeError, KeyError, pickle.UnpicklingError) as exc:  # a file that is not VGG16's
        raise PerceptualWeightsError(
            f"{path} is not torchvision's VGG16 ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}). "
            f"Delete it and run `toonlib fetch {VGG16_WEIGHTS}`."
        ) from None
    return net.eval().requires_grad_(False)


def _lpips_vgg_state(net: nn.Module, vgg_path: Path) -> dict[str, torch.Tensor]:
    """The weights of lpips' module `net` (built on the meta device): its VGG16 convolutions from torchvision's
    file (`features.<i>.weight` there, `net.slice<k>.<i>.weight` in lpips), its per-layer heads from the file
    lpips ships (`weights/v0.1/vgg.pth`, as `lpips.LPIPS(pretrained=True)` reads it)."""
    import lpips

    try:  # torch.save's zip format maps the file: only the pages of the convolutions are read
        vgg = torch.load(vgg_path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # the legacy format cannot be mapped: read whole, the classifier dropped at once
        vgg = torch.load(vgg_path, map_location="cpu", weights_only=True)
    state = {f"net.{name}": vgg[f"features.{name.split('.', 1)[1]}"].clone()
             for name, _ in net.net.named_parameters()}  # clone: nothing stays mapped from the file
    del vgg
    heads = Path(inspect.getfile(lpips.LPIPS)).parent / "weights" / f"v{net.version}" / "vgg.pth"
    state.update(torch.load(heads, map_location="cpu", weights_only=True))
    return state


class PerceptualDistance:
    """LPIPS distance from each image of a batch to its fixed target, target features computed once.

    `net` is an `lpips.LPIPS` model (linear heads on, any trunk); inputs are images in [-1, 1]
    (lpips' own convention, normalize=False). `distance(images)` returns one value per image,
    equal to `net(images, target).flatten()` in eval mode (a head's dropout is no part of the metric, in either mode)
    but without re-running the trunk on the target, each layer's
    distance one autograd function with a hand-written backward where the head is lpips' plain one
    (`_UnitChannelDistance`), in float32 even when the trunk runs in bfloat16 / float16 under autocast.
    """

    def __init__(self, net: nn.Module, target: torch.Tensor):
        self.net = net
        with torch.no_grad():
            self.target_features = self._features(target)

    def _features(self, images: torch.Tensor, unit: bool = True) -> list[torch.Tensor]:
        x = self.net.scaling_layer(images) if self.net.version == "0.1" else images
        outputs = _trunk_outputs(self.net.net, x)
        return [_unit_channels(f) for f in outputs] if unit else outputs

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        total = 0
        for lin, feat, target in zip(self.net.lins, self._features(images, unit=False), self.target_features):
            weight = _plain_lin_weight(lin)
            if weight is not None:  # in float32 (or wider) whatever the trunk computed in: autocast off
                dtype = torch.promote_types(feat.dtype, torch.float32)
                with torch.autocast(feat.device.type, enabled=False):
                    total = total + _UnitChannelDistance.apply(feat, target.to(dtype), weight.to(dtype))
            else:
                total = total + lin((_unit_channels(feat) - target).square()).mean(dim=[1, 2, 3])
        return total


def _plain_lin_weight(lin: nn.Module) -> torch.Tensor | None:
    """The [C] weights of an lpips linear head that is a plain 1x1 convolution without bias to one channel (lpips'
    NetLinLayer, its dropout too, which is the metric's in either mode: a net in training mode, as a training loss
    leaves it, made a projection's latent differ from call to call with the same seed); else None."""
    convs = [m for m in lin.modules() if isinstance(m, nn.Conv2d)]
    if (len(convs) != 1 or convs[0].bias is not None or convs[0].kernel_size != (1, 1) or convs[0].out_channels != 1
            or not all(isinstance(m, (nn.Sequential, nn.Dropout, nn.Conv2d)) or type(m).__name__ == "NetLinLayer"
                       for m in lin.modules())):
        return None
    return convs[0].weight.reshape(-1)


DISTANCE_CHUNK = 1 << 19  # feature values of a sample that `_UnitChannelDistance` takes at once on the CPU (2 MiB)


class _UnitChannelDistance(torch.autograd.Function):
    """One LPIPS layer, per sample: the mean over pixels of sum_c w_c (f_c / (|f| + eps) - t_c)^2 for features f
    [N, C, H, W] (any float dtype, computed in float32 or wider), unit-normalised target features t [1 | N, C, H, W]
    and head weights w [C] (lpips' normalize_tensor, squared difference, NetLinLayer, spatial mean).

    The forward pass also computes the gradient with respect to f, derived by hand: d/df = -2 / (H W) / n *
    (q - f (q . f) / (|f| n)), n = |f| + eps, q = w (t - f / n); the backward pass only scales it. On the CPU both
    run `DISTANCE_CHUNK` values at a time, so that lpips' ~10 passes over a layer's features (64 x 256 x 256 at
    256 px) work in cache: 1.5-1.8x faster than whole-tensor passes there, and the sums are exact to float32 (a single
    matrix product of 4M terms was 1.6e-4 off). The gradient is kept in f's dtype for bfloat16 (the dtype it is
    returned in), else in the compute dtype (float16 would underflow before the loss scale reaches it)."""

    @staticmethod
    def forward(ctx, f, target, weight):
        batch, channels, height, width = f.shape
        pixels = height * width
        dtype = torch.promote_types(f.dtype, torch.float32)
        features = f.permute(0, 2, 3, 1).reshape(batch, pixels, channels)  # a view, channels-last or not
        targets = target.permute(0, 2, 3, 1).reshape(target.shape[0], pixels, channels)
        field = None
        if ctx.needs_input_grad[0]:
            field = torch.empty_like(f, dtype=f.dtype if f.dtype == torch.bfloat16 else dtype)
            field_rows = field.permute(0, 2, 3, 1).reshape(batch, pixels, channels)
        step = max(1, DISTANCE_CHUNK // channels) if f.device.type == "cpu" else pixels
        dist = torch.zeros(batch, dtype=dtype, device=f.device)
        for i in range(batch):
            for start in range(0, pixels, step):
                rows = slice(start, start + step)
                x = features[i, rows].to(dtype)  # [pixels of the chunk, C]
                norm = x.square().sum(dim=1, keepdim=True).sqrt_()  # ~10x faster than linalg.vector_norm
                inv = (norm + UNIT_EPS).reciprocal_()
                r = torch.addcmul(targets[i % targets.shape[0], rows], x, inv, value=-1)  # t - f / n
                q = r * weight
                if field is not None:
                    # |f| = 0 (a pixel dead in every channel): q . f = 0 there too, and the second term vanishes
                    ratio = (q * x).sum(dim=1, keepdim=True).mul_(inv).div_(norm.clamp_min(torch.finfo(dtype).tiny))
                    torch.mul(torch.addcmul(q, x, ratio, value=-1), inv * (-2 / pixels), out=field_rows[i, rows])
                dist[i] += q.mul_(r).sum()
        ctx.save_for_backward(field)
        return dist / pixels

    @staticmethod
    def backward(ctx, grad):
        (field,) = ctx.saved_tensors
        return field * grad.to(field.dtype).reshape(-1, 1, 1, 1), None, None


def _trunk_outputs(trunk: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of an lpips trunk's slices (`slice1` .. `slice{N_slices}`), its 3x3 stride-1 convolutions
    through `convolution.conv3x3` (Winograd inside `convolution.winograd()`, as projection runs it) and, on the CPU,
    its max pools through `ops.max_pool2d` (a faster backward, same numbers); another trunk runs as is."""
    slices = [getattr(trunk, f"slice{i}") for i in range(1, getattr(trunk, "N_slices", 0) + 1)]
    if not slices:
        return list(trunk(x))
    outputs = []
    for layers in slices:
        for layer in layers:
            if (isinstance(layer, nn.Conv2d) and layer.kernel_size == (3, 3) and layer.stride == (1, 1)
                    and layer.padding == (1, 1) and layer.dilation == (1, 1) and layer.groups == 1):
                x = convolution.conv3x3(x, layer.weight, layer.bias)
            elif x.device.type == "cpu" and _side_by_side_pool(layer):
                x = ops.max_pool2d(x, layer.kernel_size)
            else:
                x = layer(x)
        outputs.append(x)
    return outputs


def _side_by_side_pool(layer: nn.Module) -> bool:
    """Whether `layer` is a max pool of square windows side by side (VGG16's: 2 x 2, stride 2), which
    `ops.max_pool2d` computes."""
    return (isinstance(layer, nn.MaxPool2d) and isinstance(layer.kernel_size, int)
            and layer.stride in (layer.kernel_size, (layer.kernel_size, layer.kernel_size))
            and layer.padding in (0, (0, 0)) and layer.dilation in (1, (1, 1))
            and not layer.ceil_mode and not layer.return_indices)


def _unit_channels(x: torch.Tensor, eps: float = UNIT_EPS) -> torch.Tensor:
    """Normalise each pixel's feature vector to unit length (lpips.normalize_tensor)."""
    return x / (x.square().sum(dim=1, keepdim=True).sqrt() + eps)


# --------------------------------------------------------------------------------------------
# Noise regulariser


def noise_regularization(noise_maps: Iterable[torch.Tensor]) -> torch.Tensor:
    """StyleGAN2's projector penalty on spatially correlated noise, one value per sample.

    Each map is [N, 1, H, W]. At every scale of its pyramid (halved by 2x2 average pooling down to
    8x8, or the map's own size when smaller) it adds the squared mean of the map times itself
    shifted by one pixel, horizontally and vertically (wrapping around). Returns [N].
    Maps of one size are stacked and treated together (a few dozen ops instead of hundreds).
    """
    by_size: dict[int, list[torch.Tensor]] = {}
    for noise in noise_maps:
        by_size.setdefault(noise.shape[2], []).append(noise)
    reg = 0
    while by_size:
        size = max(by_size)
        maps = torch.cat(by_size.pop(size), dim=1)  # [N, maps, size, size]
        for dim in (2, 3):
            reg = reg + (maps * maps.roll(shifts=1, dims=dim)).mean(dim=[2, 3]).square().sum(dim=1)
        if size > 8:
            by_size.setdefault(size // 2, []).append(F.avg_pool2d(maps, kernel_size=2))
    return reg


def normalize_noise_(noise_maps: Iterable[torch.Tensor]) -> None:
    """In place: give each sample of each [N, 1, H, W] noise map zero mean and unit variance."""
    with torch.no_grad():
        for noise in noise_maps:
            noise -= noise.mean(dim=[1, 2, 3], keepdim=True)
            noise *= noise.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()


# --------------------------------------------------------------------------------------------
# GAN training losses (StyleGAN2, Karras et al. 2020; used by toonlib.train)


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating logistic loss of the generator: mean of softplus(-D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic loss of the discriminator: mean of softplus(D(G(z))) + mean of softplus(-D(x))."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def r1_penalty(real_images: torch.Tensor, real_logits: torch.Tensor, gamma: float) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): (gamma / 2) * ||grad_x D(x)||^2, summed over pixels, averaged over the batch.

    `real_images` must require grad and `real_logits` be computed from them; the result is differentiable
    with respect to D's parameters (the gradient graph is kept).
    """
    (grads,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grads.square().sum(dim=[1, 2, 3]).mean() * (gamma / 2)


def path_lengths(images: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """Per-sample ||J_w^T y||, y ~ N(0, I) / sqrt(H * W): StyleGAN2's path length of `images` [N, C, H, W]
    with respect to `ws` [N, num_ws, w_dim] (squared norms summed over w_dim, averaged over num_ws). Returns [N]."""
    noise = torch.randn_like(images) / (images.shape[2] * images.shape[3]) ** 0.5
    (grads,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    return grads.square().sum(dim=2).mean(dim=1).sqrt()


def update_pl_mean(pl_mean: torch.Tensor, lengths_mean: torch.Tensor, decay: float = 0.01) -> torch.Tensor:
    """The running mean of path lengths after one batch: pl_mean + decay * (lengths_mean - pl_mean)."""
    return pl_mean.lerp(lengths_mean.detach(), decay)


def path_length_penalty(lengths: torch.Tensor, pl_mean: torch.Tensor, weight: float = 2.0) -> torch.Tensor:
    """Path-length regulariser: weight * mean of (lengths - pl_mean)^2 (`pl_mean` from `update_pl_mean`)."""
    return (lengths - pl_mean.detach()).square().mean() * weight
