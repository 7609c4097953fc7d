"""A reference-style StyleGAN2 to benchmark toonlib against: the same math, composed the way the reference
(non-CUDA) ops of NVIDIA's stylegan2-ada-pytorch compose it on a CPU.

Provenance: this module follows the structure of that code base closely, op for op and in places statement for
statement (the FIR padding arithmetic of `conv2d_resample`, `modulated_conv2d`, the projector loop of
`project_steps`; the thirty-fifth session's audit found most statements it sampled there the same up to renamed
variables). That code is under NVIDIA's Source Code License-NC. The module is not part of the installed package
(`benchmarks/` is not shipped): it is used only to measure toonlib against and to test toonlib's ops against.
Rewriting it from the paper alone is an open item (docs/design.md section 11). What matters here is the *cost
structure*, which this module reproduces op for op:

* FIR resampling (`upfirdn2d`): zero insertion by reshaping to [N, C, H, 1, W, 1] and padding, padding and
  cropping with `F.pad` and slicing (copies), the flipped filter repeated per channel and applied as a
  depthwise `conv2d` (groups=C) at the full (upsampled) rate, downsampling by slicing `[::down, ::down]`
  the fully filtered image. Filters of 8 taps or more run separably, as two depthwise passes.
* `bias_act`: separate out-of-place ops (add bias, leaky ReLU, multiply by the gain, clamp), so autograd
  keeps every intermediate.
* modulated convolution: an explicit [N, O, I, k, k] weight (styles times the kernel), the demodulation
  coefficients reduced from it; fused (one grouped convolution) for inference, activations scaled for
  training (NVIDIA's choice by `self.training`), demodulation + noise by `addcmul`.
* the networks, the projector loop and the training phases of that code base (see `project_steps` and
  `train_phase_fn`), with the module and parameter names toonlib also uses, so one state dict loads into
  both (`load_state_dict(toonlib_net.state_dict())`).

Two stand-ins, both of the same compute as what they replace: the projector's LPIPS VGG16 (a TorchScript
file that cannot be downloaded here) is torchvision's VGG16 trunk with LPIPS' feature normalisation, and
the 12-tap `sym6` wavelet of the augmentation pipeline is a 12-tap binomial filter (the taps' values do
not change the cost).
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------------------------
# Ops


def setup_filter(taps) -> torch.Tensor:
    """Normalised FIR filter: the outer product for short filters, 1-D (applied separably) from 8 taps."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 1 and f.numel() < 8:
        f = f.ger(f)
    return f / f.sum()


def upfirdn2d(x, f, up=1, down=1, padding=(0, 0, 0, 0), gain=1.0, flip_filter=False):
    n, c, h, w = x.shape
    x0, x1, y0, y1 = padding
    # Zero insertion by reshape + pad.
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
    x = x.reshape(n, c, h * up, w * up)
    # Pad, then crop negative amounts.
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0):x.shape[2] - max(-y1, 0), max(-x0, 0):x.shape[3] - max(-x1, 0)]
    # Filter every channel at the full rate.
    f = (f * gain ** (f.ndim / 2)).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f[None, None].repeat([c, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(x, f, groups=c)
    else:
        x = F.conv2d(x, f.unsqueeze(2), groups=c)
        x = F.conv2d(x, f.unsqueeze(3), groups=c)
    # Downsample by keeping every `down`-th pixel.
    return x[:, :, ::down, ::down]


def _taps(f):
    return f.shape[-1]


def upsample2d(x, f, up=2, padding=0, flip_filter=False):
    k = _taps(f)
    p = [padding + (k + up - 1) // 2, padding + (k - up) // 2] * 2
    return upfirdn2d(x, f, up=up, padding=p, gain=up * up, flip_filter=flip_filter)


def downsample2d(x, f, down=2, padding=0, flip_filter=False):
    k = _taps(f)
    p = [padding + (k - down + 1) // 2, padding + (k - down) // 2] * 2
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter)


def bias_act(x, b=None, act="linear", gain=None, clamp=None):
    alpha, default_gain = (0.2, math.sqrt(2)) if act == "lrelu" else (0.0, 1.0)
    gain = default_gain if gain is None else gain
    if b is not None:
        x = x + b.reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True):
    out_channels, in_per_group, kh, kw = w.shape
    k = _taps(f) if f is not None else 1
    px0 = px1 = py0 = py1 = padding
    if up > 1:
        px0 += (k + up - 1) // 2
        px1 += (k - up) // 2
        py0, py1 = px0, px1
    if down > 1:
        px0 += (k - down + 1) // 2
        px1 += (k - down) // 2
        py0, py1 = px0, px1

    def conv(x, w, stride=1, pad=0, transpose=False, flip=True):
        if not flip:
            w = w.flip([2, 3])
        op = F.conv_transpose2d if transpose else F.conv2d
        return op(x, w, stride=stride, padding=pad, groups=groups)

    if kh == 1 and kw == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1])
        return conv(x, w, flip=flip_weight)
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1])
        return conv(x, w, stride=down, flip=flip_weight)
    if up > 1:
        w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
        w = w.reshape(groups * in_per_group, out_channels // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        x = conv(x, w, stride=up, pad=[pyt, pxt], transpose=True, flip=not flip_weight)
        return upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up * up)
    return conv(x, w, pad=[py0, px0], flip=flip_weight)


def modulated_conv2d(x, weight, styles, noise=None, up=1, padding=0, resample_filter=None, demodulate=True,
                     flip_weight=True, fused_modconv=True):
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    w = dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(batch, -1, 1, 1, 1)
    if not fused_modconv:
        x = x * styles.reshape(batch, -1, 1, 1)
        x = conv2d_resample(x, weight, f=resample_filter, up=up, padding=padding, flip_weight=flip_weight)
        if demodulate and noise is not None:
            return torch.addcmul(noise, x, dcoefs.reshape(batch, -1, 1, 1))
        if demodulate:
            return x * dcoefs.reshape(batch, -1, 1, 1)
        if noise is not None:
            return x.add_(noise)
        return x
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample(x, w, f=resample_filter, up=up, padding=padding, groups=batch, flip_weight=flip_weight)
    x = x.reshape(batch, -1, *x.shape[2:])
    if noise is not None:
        x = x.add_(noise)
    return x


def normalize_2nd_moment(x, eps=1e-8):
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


# --------------------------------------------------------------------------------------------
# Layers and networks (parameter names as toonlib's and NVIDIA's)


class FullyConnectedLayer(nn.Module):
    def __init__(self, in_features, out_features, bias=True, activation="linear", lr_multiplier=1.0, bias_init=0.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight * self.weight_gain
        b = self.bias
        if b is not None and self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class Conv2dLayer(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, bias=True, activation="linear", down=1,
                 resample_filter=(1, 3, 3, 1), conv_clamp=None):
        super().__init__()
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = math.sqrt(2) if activation == "lrelu" else 1.0
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x, gain=1):
        w = self.weight * self.weight_gain
        x = conv2d_resample(x, w, f=self.resample_filter, down=self.down, padding=self.padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class SynthesisLayer(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution, up=1, use_noise=True,
                 resample_filter=(1, 3, 3, 1), conv_clamp=None, kernel_size=3):
        super().__init__()
        self.resolution, self.up, self.use_noise, self.conv_clamp = resolution, up, use_noise, conv_clamp
        self.padding = kernel_size // 2
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode="random", fused_modconv=True, gain=1):
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            shape = [x.shape[0], 1, self.resolution, self.resolution]
            noise = torch.randn(shape, device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                             fused_modconv=fused_modconv)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act="lrelu", gain=math.sqrt(2) * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, conv_clamp=None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, conv_clamp=None):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))
        kw = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, **kw)
        self.conv1 = SynthesisLayer(out_channels, out_channels, **kw)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2

    def forward(self, x, img, ws, noise_mode="random"):
        w_iter = iter(ws.unbind(dim=1))
        fused = not self.training
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused)
        x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv=fused)
        img = img.add_(y) if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, w_dim, img_resolution, img_channels, channel_base, channel_max, conv_clamp=None):
        super().__init__()
        self.block_resolutions = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = min(channel_base // (res // 2), channel_max) if res > 4 else 0
            block = SynthesisBlock(in_ch, min(channel_base // res, channel_max), w_dim, res, img_channels,
                                   conv_clamp=conv_clamp)
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1

    def forward(self, ws, noise_mode="random"):
        ws = ws.to(self.b4.const.dtype)  # float32 in the original; the parameters' dtype here (float64 tests)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + 1), noise_mode=noise_mode)
            w_idx += block.num_conv
        return img


class MappingNetwork(nn.Module):
    def __init__(self, z_dim, w_dim, num_ws, num_layers=8, lr_multiplier=0.01, w_avg_beta=0.995):
        super().__init__()
        self.num_ws, self.num_layers, self.w_avg_beta = num_ws, num_layers, w_avg_beta
        features = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], activation="lrelu",
                                                        lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False):
        x = normalize_2nd_moment(z.to(self.w_avg.dtype))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if self.training and not skip_w_avg_update:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


class Generator(nn.Module):
    def __init__(self, z_dim=512, w_dim=512, img_resolution=1024, img_channels=3, channel_base=32768,
                 channel_max=512, conv_clamp=None):
        super().__init__()
        self.z_dim, self.w_dim, self.img_resolution, self.img_channels = z_dim, w_dim, img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, channel_base, channel_max,
                                          conv_clamp=conv_clamp)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws)

    def forward(self, z, c=None, noise_mode="random"):
        return self.synthesis(self.mapping(z, c), noise_mode=noise_mode)


def minibatch_stddev(x, group_size=4, num_channels=1):
    n, c, h, w = x.shape
    g = min(group_size, n) if group_size is not None else n
    y = x.reshape(g, -1, num_channels, c // num_channels, h, w)
    y = y - y.mean(dim=0)
    y = y.square().mean(dim=0)
    y = (y + 1e-8).sqrt()
    y = y.mean(dim=[2, 3, 4])
    y = y.reshape(-1, num_channels, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_channels, tmp_channels, out_channels, img_channels, conv_clamp=None):
        super().__init__()
        self.in_channels = in_channels
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x, img):
        if self.in_channels == 0:
            y = self.fromrgb(img)
            x = x + y if x is not None else y
        y = self.skip(x, gain=np.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=np.sqrt(0.5))
        return y.add_(x)


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, in_channels, resolution=4, mbstd_group_size=4, conv_clamp=None):
        super().__init__()
        self.mbstd_group_size = mbstd_group_size
        self.conv = Conv2dLayer(in_channels + 1, in_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1)

    def forward(self, x):
        x = minibatch_stddev(x, self.mbstd_group_size)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))


class Discriminator(nn.Module):
    def __init__(self, img_resolution=1024, img_channels=3, channel_base=32768, channel_max=512, conv_clamp=None,
                 mbstd_group_size=4):
        super().__init__()
        self.block_resolutions = [2**i for i in range(int(math.log2(img_resolution)), 2, -1)]

        def ch(res):
            return min(channel_base // res, channel_max)

        for res in self.block_resolutions:
            setattr(self, f"b{res}", DiscriminatorBlock(ch(res) if res < img_resolution else 0, ch(res), ch(res // 2),
                                                        img_channels, conv_clamp=conv_clamp))
        self.b4 = DiscriminatorEpilogue(ch(4), mbstd_group_size=mbstd_group_size, conv_clamp=conv_clamp)

    def forward(self, img, c=None):
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        return self.b4(x)


# --------------------------------------------------------------------------------------------
# The projector loop


class VGG16Features(nn.Module):
    """Stand-in for the projector's TorchScript LPIPS VGG16: the VGG16 trunk to relu5_3 on [0, 255]
    images, each of its 5 taps normalised per pixel and weighted, flattened and concatenated, so that
    the squared distance of two outputs is LPIPS."""

    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for width in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
            if width == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
                channels = width
        # Frozen: the conservative choice. Were the TorchScript file's parameters trainable, the reference
        # step would also compute VGG weight gradients and be slower.
        self.trunk = nn.Sequential(*layers).requires_grad_(False)
        self.taps = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
        for i, c in enumerate((64, 128, 256, 512, 512)):
            self.register_buffer(f"lin{i}", torch.rand(c, 1, 1))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1))

    def forward(self, img):
        x = (img / 255 - self.mean) / self.std
        feats = []
        for i, layer in enumerate(self.trunk):
            x = layer(x)
            if i in self.taps:
                f = x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
                f = f * getattr(self, f"lin{len(feats)}").sqrt() / math.sqrt(f.shape[2] * f.shape[3])
                feats.append(f.flatten(1))
        return torch.cat(feats, dim=1)


def project_steps(G, target: torch.Tensor, vgg16: nn.Module, space: str = "w", num_steps: int = 1000,
                  w_avg_samples: int = 10000, callback: Callable[[int], None] | None = None) -> torch.Tensor:
    """NVIDIA's projector loop (stylegan2-ada-pytorch `projector.project`) for one target [1, 3, R, R] in [-1, 1]:
    w statistics, the noise buffers optimised in place, Adam, the lr and latent-noise schedules, VGG16
    features of images in [0, 255] downsampled to 256 px, the noise regulariser. space='w+' optimises one w
    per layer (the projector itself has only W). `callback(step)` runs after each step. Runs on G's device."""
    G = copy.deepcopy(G).eval().requires_grad_(False)
    device = next(G.parameters()).device
    target = target.to(device)
    z = np.random.RandomState(123).randn(w_avg_samples, G.z_dim)
    w_samples = G.mapping(torch.from_numpy(z).to(device), None)[:, :1, :].cpu().numpy().astype(np.float32)
    w_avg = np.mean(w_samples, axis=0, keepdims=True)
    w_std = (np.sum((w_samples - w_avg) ** 2) / w_avg_samples) ** 0.5
    noise_bufs = {name: buf for name, buf in G.synthesis.named_buffers() if "noise_const" in name}

    target_images = (target + 1) * (255 / 2)
    if target_images.shape[2] > 256:
        target_images = F.interpolate(target_images, size=(256, 256), mode="area")
    target_features = vgg16(target_images)

    start = np.repeat(w_avg, G.num_ws, axis=1) if space == "w+" else w_avg
    w_opt = torch.tensor(start, dtype=torch.float32, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([w_opt] + list(noise_bufs.values()), betas=(0.9, 0.999), lr=0.1)
    for buf in noise_bufs.values():
        buf[:] = torch.randn_like(buf)
        buf.requires_grad = True

    for step in range(num_steps):
        t = step / num_steps
        w_noise_scale = w_std * 0.05 * max(0.0, 1.0 - t / 0.75) ** 2
        lr_ramp = min(1.0, (1.0 - t) / 0.25)
        lr_ramp = (0.5 - 0.5 * np.cos(lr_ramp * np.pi)) * min(1.0, t / 0.05)
        for group in optimizer.param_groups:
            group["lr"] = 0.1 * lr_ramp
        w_noise = torch.randn_like(w_opt) * w_noise_scale
        ws = (w_opt + w_noise).repeat([1, G.num_ws // w_opt.shape[1], 1])
        synth = G.synthesis(ws, noise_mode="const")
        synth = (synth + 1) * (255 / 2)
        if synth.shape[2] > 256:
            synth = F.interpolate(synth, size=(256, 256), mode="area")
        dist = (target_features - vgg16(synth)).square().sum()
        reg_loss = 0.0
        for v in noise_bufs.values():
            noise = v[None, None, :, :]
            while True:
                reg_loss += (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
                reg_loss += (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
                if noise.shape[2] <= 8:
                    break
                noise = F.avg_pool2d(noise, kernel_size=2)
        loss = dist + reg_loss * 1e5
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for buf in noise_bufs.values():
                buf -= buf.mean()
                buf *= buf.square().mean().rsqrt()
        if callback is not None:
            callback(step)
    return w_opt.detach()


# --------------------------------------------------------------------------------------------
# Training phases


class AugmentPipeBGC(nn.Module):
    """The compute of ADA's 'bgc' pipeline as that code base runs it, for any p (also p = 0): per-sample
    parameters drawn with many small ops, one geometric warp (reflect-pad, 2x upsampling with a 12-tap
    separable filter, bilinear `grid_sample` at twice the size, filtered 2x downsampling) and one
    4x4 color matrix."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p
        self.register_buffer("Hz_geom", setup_filter([math.comb(11, k) for k in range(12)]))

    def _pick(self, n, value, identity, prob=1.0):
        keep = torch.rand([n]) < self.p * prob
        return torch.where(keep, value, torch.full_like(value, identity))

    def forward(self, images):
        n, c, h, w = images.shape
        eye3 = torch.eye(3).repeat(n, 1, 1)
        # Geometric: xflip, rot90, xint, scale, rotate, aniso, rotate, xfrac (each a matrix product).
        sx = 1 - 2 * self._pick(n, torch.floor(torch.rand([n]) * 2), 0)
        g = eye3.clone()
        g[:, 0, 0] = sx
        for _ in range(7):
            theta = self._pick(n, torch.randn([n]) * 0.2, 0.0)
            m = eye3.clone()
            m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = theta.cos(), -theta.sin(), theta.sin(), theta.cos()
            m[:, 0, 2], m[:, 1, 2] = theta * w, theta * h
            g = g @ m
        cx, cy = (w - 1) / 2, (h - 1) / 2
        corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]])
        cp = g @ corners.t()
        pad = self.Hz_geom.shape[0] // 4
        margin = cp[:, :2, :].permute(1, 0, 2).flatten(1)
        margin = torch.cat([-margin, margin]).max(dim=1).values
        margin = margin + torch.tensor([pad * 2 - cx, pad * 2 - cy] * 2)
        margin = margin.max(torch.zeros(4)).min(torch.tensor([w - 1, h - 1] * 2, dtype=torch.float32))
        mx0, my0, mx1, my1 = margin.ceil().to(torch.int32).tolist()
        images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
        images = upsample2d(images, self.Hz_geom)
        shape = [n, c, (h + pad * 2) * 2, (w + pad * 2) * 2]
        theta = g[:, :2, :].clone()
        theta[:, :, 2] = 0
        grid = F.affine_grid(theta, size=shape, align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        images = downsample2d(images, self.Hz_geom, padding=-pad * 2, flip_filter=True)
        # Color: brightness, contrast, lumaflip, hue, saturation (each a 4x4 matrix product).
        cmat = torch.eye(4).repeat(n, 1, 1)
        for _ in range(5):
            s = self._pick(n, torch.exp2(torch.randn([n]) * 0.5), 1.0)
            m = torch.eye(4).repeat(n, 1, 1)
            m[:, 0, 0] = m[:, 1, 1] = m[:, 2, 2] = s
            cmat = m @ cmat
        images = images.reshape(n, c, h * w)
        images = cmat[:, :3, :3] @ images + cmat[:, :3, 3:]
        return images.reshape(n, c, h, w)


def train_phase_fn(G: Generator, D: Discriminator, batch: int, pl_weight: float = 2.0, r1_gamma: float = 10.0,
                   style_mixing: float = 0.9, ada_p: float = 0.0) -> Callable[[str, torch.Tensor], None]:
    """`run(phase, reals)`: one optimiser step of 'Gmain' | 'Greg' | 'Dmain' | 'Dreg' the way that code base's
    training loop and StyleGAN2 loss do it (module requires_grad on for its phase, Adam(0.002, 0, 0.99),
    gradients cleaned of NaN, ADA on every image D sees). Like toonlib's `Trainer.run_phase`, a phase does
    not include the once-per-minibatch G_ema update."""
    G.train().requires_grad_(False)
    D.train().requires_grad_(False)
    augment = AugmentPipeBGC(ada_p)
    opt_G = torch.optim.Adam(G.parameters(), lr=0.002 * 4 / 5, betas=(0.0, 0.99 ** (4 / 5)), eps=1e-8)
    opt_D = torch.optim.Adam(D.parameters(), lr=0.002 * 16 / 17, betas=(0.0, 0.99 ** (16 / 17)), eps=1e-8)
    pl_mean = torch.zeros([])

    def run_G(z):
        ws = G.mapping(z, None)
        cutoff = torch.empty([], dtype=torch.int64).random_(1, ws.shape[1])
        cutoff = torch.where(torch.rand([]) < style_mixing, cutoff, torch.full_like(cutoff, ws.shape[1]))
        ws[:, cutoff:] = G.mapping(torch.randn_like(z), None, skip_w_avg_update=True)[:, cutoff:]
        return G.synthesis(ws), ws

    def run_D(img):
        return D(augment(img))

    def run(phase: str, reals: torch.Tensor) -> None:
        nonlocal pl_mean
        module, opt = (G, opt_G) if phase.startswith("G") else (D, opt_D)
        gain = {"Gmain": 1, "Greg": 4, "Dmain": 1, "Dreg": 16}[phase]
        opt.zero_grad(set_to_none=True)
        module.requires_grad_(True)
        z = torch.randn([batch, G.z_dim])
        if phase == "Gmain":
            img, _ = run_G(z)
            F.softplus(-run_D(img)).mean().mul(gain).backward()
        elif phase == "Greg":
            img, ws = run_G(z[:batch // 2])
            pl_noise = torch.randn_like(img) / np.sqrt(img.shape[2] * img.shape[3])
            (grads,) = torch.autograd.grad([(img * pl_noise).sum()], [ws], create_graph=True)
            lengths = grads.square().sum(2).mean(1).sqrt()
            mean = pl_mean.lerp(lengths.mean(), 0.01)
            pl_mean = mean.detach()
            (img[:, 0, 0, 0] * 0 + (lengths - mean).square() * pl_weight).mean().mul(gain).backward()
        elif phase == "Dmain":
            img, _ = run_G(z)
            F.softplus(run_D(img)).mean().mul(gain).backward()
            logits = run_D(reals.detach())
            (logits * 0 + F.softplus(-logits)).mean().mul(gain).backward()
        else:
            real = reals.detach().requires_grad_(True)
            logits = run_D(real)
            (grads,) = torch.autograd.grad([logits.sum()], [real], create_graph=True)
            (logits * 0 + grads.square().sum([1, 2, 3]) * (r1_gamma / 2)).mean().mul(gain).backward()
        module.requires_grad_(False)
        for p in module.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        opt.step()

    return run
