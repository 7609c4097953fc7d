"""The yardstick toonlib is measured and tested against: StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the
Image Quality of StyleGAN") with ADA's training (Karras et al. 2020, "Training Generative Adversarial Networks with
Limited Data"), written plainly from those papers, the way a straightforward PyTorch implementation without custom
kernels computes it. That is also how the reference (non-CUDA) ops of NVIDIA's stylegan2-ada-pytorch compute it
on a CPU, so the tables compare toonlib with what that code runs there. It replaces (thirty-sixth session) a
module that followed that code (NVIDIA Source Code License-NC) statement for statement in places; two audits
compared this one with it statement by statement, and what is alike is what the math, the published
hyper-parameters, a few of that code's constants kept so that the compute is the same (non-finite gradients
replaced by 0 and +-1e5, the path length's probe scale and decay), the checkpoint format's parameter names
(toonlib's networks use them too, so one state dict loads into both) or a one-line PyTorch idiom dictate. It is
not part of the installed package.

What matters here is the *cost* of each piece, kept deliberately plain:

* FIR resampling (`upfirdn`): zeros inserted by padding a reshaped view, padding by `F.pad`, the filter applied to
  every channel as a depthwise convolution at the full upsampled rate, decimation by slicing. Filters of 8 taps or
  more run as two 1-D passes.
* bias, activation, gain and clamp (`activate`): one out-of-place op each, so autograd keeps every intermediate.
* modulated convolution (`modulated_conv`): the per-sample weight [N, O, I, k, k] built explicitly and the
  demodulation reduced from it; one grouped convolution for the whole batch at inference, inputs scaled by the
  styles and outputs by the demodulation in training.
* resampling convolutions: upsampling as a stride-2 transposed convolution followed by the blur, downsampling as
  the blur followed by a stride-2 convolution (1x1 layers: blur and decimate, then convolve).
* the projector of the StyleGAN2 paper's appendix and the training phases of the ADA paper (`project_steps`,
  `train_phase_fn`), with every network weight trainable in training and frozen in projection.

Two stand-ins of the same compute as what they replace: the projector's LPIPS VGG16 (a TorchScript file that
cannot be downloaded here) is torchvision's VGG16 layer layout with LPIPS' feature normalisation, and ADA's
'bgc' augmentation is one geometric warp and one colour matrix per image (`AugmentBGC`). Against the module it
replaces: the same FLOPs and autograd-saved bytes in the generator's forward and backward and the discriminator's,
by the same convolutions (in another order in places); the minibatch standard deviation is one `var` (4 x 4 maps),
the training phases leave out the zero terms (`x * 0 + loss`) that made autograd differentiate the images or logits
once more (the path length phase: about 1% of its FLOPs at 64 px, less at larger sizes), and the augmentation's
random draws differ.
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
BLUR_TAPS = (1, 3, 3, 1)

# --------------------------------------------------------------------------------------------
# Resampling


def fir_kernel(taps) -> torch.Tensor:
    """The FIR filter `taps` normalised to sum 1: a 2-D outer product when short, 1-D (two passes) from 8 taps."""
    kernel = torch.as_tensor(taps, dtype=torch.float32)
    if kernel.numel() < 8:
        kernel = kernel[:, None] * kernel[None, :]
    return kernel / kernel.sum()


def _depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve (not correlate) every channel of x with the same 2-D kernel: a grouped conv2d, one group per channel."""
    channels = x.shape[1]
    weight = kernel.flip([0, 1]).to(x.dtype).expand(channels, 1, *kernel.shape).contiguous()
    return F.conv2d(x, weight, groups=channels)


def _zero_stuffed(x: torch.Tensor, up: int) -> torch.Tensor:
    """x with up - 1 zeros after every sample along H and W: each pixel padded to an up x up cell (one F.pad)."""
    cells = F.pad(x[:, :, :, None, :, None], (0, up - 1, 0, 0, 0, up - 1))  # [N, C, H, up, W, up]
    return cells.flatten(4, 5).flatten(2, 3)


def upfirdn(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad=(0, 0, 0, 0),
            gain: float = 1.0) -> torch.Tensor:
    """Upsample x [N, C, H, W] by `up` (zeros between samples), pad it by (left, right, top, bottom) (negative
    amounts crop), filter it with `kernel` (from `fir_kernel`) times `gain`, then keep every `down`-th sample."""
    x = F.pad(_zero_stuffed(x, up), list(pad))  # each stage's output replaces the last: at most two alive at once
    if kernel.ndim == 2:
        x = _depthwise(x, kernel * gain)
    else:
        taps = kernel * math.sqrt(gain)
        x = _depthwise(_depthwise(x, taps[None, :]), taps[:, None])
    return x[:, :, ::down, ::down]


def upsample(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """2x upsampling by `upfirdn` (gain 4 keeps the mean). The filter's output is taps - 1 narrower than its
    input, so the zero-stuffed 2H-wide image gets taps - 1 pixels of padding, taps // 2 of them before."""
    taps = kernel.shape[-1]
    return upfirdn(x, kernel, up=2, pad=[taps // 2, taps - 1 - taps // 2] * 2, gain=4)


def downsample(x: torch.Tensor, kernel: torch.Tensor, pad: int = 0) -> torch.Tensor:
    """2x downsampling by `upfirdn`: taps - 2 pixels of padding leave H - 1 filtered pixels, every other one kept
    (H / 2); `pad` more on every side (negative crops)."""
    taps = kernel.shape[-1]
    before = (taps - 1) // 2
    return upfirdn(x, kernel, down=2, pad=[before + pad, taps - 2 - before + pad] * 2)


def resampling_conv(x: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor, mode: str = "same",
                    groups: int = 1) -> torch.Tensor:
    """A k x k convolution (k odd) of x with `weight` [groups * O, I, k, k], output the size of x ('same'), twice
    it ('up': transposed stride-2 convolution, then the blur) or half it ('down': the blur, then a stride-2
    convolution; for k = 1 the blur decimates)."""
    k = weight.shape[-1]
    if mode == "same":
        return F.conv2d(x, weight, padding=k // 2, groups=groups)
    taps = kernel.shape[-1]
    if mode == "up":
        # The transposed convolution grows H to 2H + k - 2; the blur (gain 4: a quarter of its input is
        # non-zero) takes taps - 1 of that away, so the pads add up to taps + 1 - k.
        out_per_group, in_per_group = weight.shape[0] // groups, weight.shape[1]
        per_group = weight.reshape(groups, out_per_group, in_per_group, k, k).transpose(1, 2)
        x = F.conv_transpose2d(x, per_group.reshape(groups * in_per_group, out_per_group, k, k), stride=2,
                               groups=groups)
        total = taps + 1 - k
        return upfirdn(x, kernel, pad=[total // 2, total - total // 2] * 2, gain=4)
    if k == 1:
        return F.conv2d(downsample(x, kernel), weight, groups=groups)
    # The blur leaves H + pads - (taps - 1) pixels; the unpadded stride-2 convolution needs H + k - 2 of them for
    # H / 2 outputs, so the pads add up to taps + k - 3.
    total = taps + k - 3
    x = upfirdn(x, kernel, pad=[(total + 1) // 2, total - (total + 1) // 2] * 2)
    return F.conv2d(x, weight, stride=2, groups=groups)


# --------------------------------------------------------------------------------------------
# Activation and modulated convolution


def activate(x: torch.Tensor, bias: torch.Tensor | None = None, lrelu: bool = False, gain: float = 1.0,
             clamp: float | None = None) -> torch.Tensor:
    """Bias (per channel, dimension 1), leaky ReLU, gain, clamp to [-clamp, clamp]: each its own op."""
    if bias is not None:
        x = x + bias.reshape(1, -1, *[1] * (x.ndim - 2))
    if lrelu:
        x = F.leaky_relu(x, LRELU_SLOPE)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def modulated_conv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, kernel: torch.Tensor,
                   mode: str = "same", demodulate: bool = True, noise: torch.Tensor | None = None,
                   grouped: bool = True) -> torch.Tensor:
    """StyleGAN2's weight modulation and demodulation (the paper's equations 1 and 3) for a batch: sample n's
    weight is weight [O, I, k, k] times styles[n] [I] along I, each output channel then scaled to unit norm.
    grouped: the batch as one grouped convolution with those weights; otherwise x is scaled by the styles, the
    shared weight applied, and the outputs scaled by the demodulation."""
    if grouped:
        out = _grouped_modulated_conv(x, weight, styles, kernel, mode, demodulate)
        return out if noise is None else out.add_(noise)
    out = resampling_conv(x * styles.unsqueeze(-1).unsqueeze(-1), weight, kernel, mode)
    if not demodulate:
        return out if noise is None else out.add_(noise)
    gain = _demodulation(_styled(weight, styles)).unsqueeze(-1).unsqueeze(-1)
    return out * gain if noise is None else torch.addcmul(noise, out, gain)  # noise + out * gain, one op


def _styled(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """Equation 1: every sample's weight [N, O, I, k, k], weight [O, I, k, k] scaled by its styles [N, I] along I."""
    return weight.unsqueeze(0) * styles.unsqueeze(1).unsqueeze(-1).unsqueeze(-1)


def _demodulation(styled: torch.Tensor) -> torch.Tensor:
    """Equation 3's factor [N, O]: one over the norm of each output channel's styled weights (epsilon 1e-8)."""
    return torch.rsqrt(styled.square().sum(dim=(2, 3, 4)).add(1e-8))


def _grouped_modulated_conv(x, weight, styles, kernel, mode, demodulate):
    """The batch as one convolution of N groups, group n convolving sample n with its own (demodulated) weight."""
    n = len(x)
    own = _styled(weight, styles)
    if demodulate:
        own = own * _demodulation(own).unsqueeze(-1).unsqueeze(-1).unsqueeze(-1)
    out = resampling_conv(x.flatten(0, 1).unsqueeze(0), own.flatten(0, 1), kernel, mode, groups=n)
    return out.view(n, -1, *out.shape[-2:])


# --------------------------------------------------------------------------------------------
# Layers (equalised learning rate: weights drawn from N(0, 1), scaled by 1 / sqrt(fan-in) when used)


class Dense(nn.Module):
    def __init__(self, fan_in: int, fan_out: int, lrelu: bool = False, lr_mul: float = 1.0, bias_init: float = 0.0,
                 bias: bool = True):
        super().__init__()
        self.lrelu, self.lr_mul, self.scale = lrelu, lr_mul, lr_mul / math.sqrt(fan_in)
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in) / lr_mul)
        self.bias = nn.Parameter(torch.full((fan_out,), float(bias_init))) if bias else None

    def forward(self, x):
        weight = self.weight * self.scale
        bias = self.bias if self.bias is None or self.lr_mul == 1 else self.bias * self.lr_mul
        if not self.lrelu:
            return F.linear(x, weight, bias)
        return activate(F.linear(x, weight), bias, lrelu=True, gain=math.sqrt(2))


class Conv(nn.Module):
    """A discriminator convolution: equalised weight, 'same' or 'down' resampling, bias + leaky ReLU."""

    def __init__(self, fan_in: int, fan_out: int, k: int, lrelu: bool = True, down: bool = False, bias: bool = True,
                 clamp: float | None = None):
        super().__init__()
        self.lrelu, self.mode, self.clamp = lrelu, "down" if down else "same", clamp
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in, k, k))
        self.bias = nn.Parameter(torch.zeros(fan_out)) if bias else None
        self.register_buffer("resample_filter", fir_kernel(BLUR_TAPS))

    def forward(self, x, gain: float = 1.0):
        weight = self.weight / math.sqrt(self.weight[0].numel())
        x = resampling_conv(x, weight, self.resample_filter, self.mode)
        clamp = None if self.clamp is None else self.clamp * gain
        return activate(x, self.bias, self.lrelu, (math.sqrt(2) if self.lrelu else 1.0) * gain, clamp)


class StyledConv(nn.Module):
    """A synthesis layer (modulated 3x3 convolution, noise, bias, leaky ReLU) or, with rgb=True, a toRGB layer
    (modulated 1x1 convolution without demodulation, bias)."""

    def __init__(self, fan_in: int, fan_out: int, w_dim: int, resolution: int = 0, up: bool = False,
                 rgb: bool = False, clamp: float | None = None):
        super().__init__()
        self.rgb, self.mode, self.clamp, self.resolution = rgb, "up" if up else "same", clamp, resolution
        k = 1 if rgb else 3
        self.affine = Dense(w_dim, fan_in, bias_init=1)
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in, k, k))
        self.bias = nn.Parameter(torch.zeros(fan_out))
        if not rgb:
            self.register_buffer("resample_filter", fir_kernel(BLUR_TAPS))
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(self, x, w, noise_mode: str = "random"):
        styles = self.affine(w)
        grouped = not self.training
        if self.rgb:
            styles = styles / math.sqrt(self.weight.shape[1])
            y = modulated_conv(x, self.weight, styles, None, demodulate=False, grouped=grouped)
            return activate(y, self.bias, clamp=self.clamp)
        noise = None
        if noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        elif noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device) * self.noise_strength
        y = modulated_conv(x, self.weight, styles, self.resample_filter, self.mode, noise=noise, grouped=grouped)
        return activate(y, self.bias, lrelu=True, gain=math.sqrt(2), clamp=self.clamp)


# --------------------------------------------------------------------------------------------
# Networks (config F's skip generator and residual discriminator)


def _channels(res: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // res, channel_max)


class SynthesisBlock(nn.Module):
    def __init__(self, fan_in: int, fan_out: int, w_dim: int, res: int, img_channels: int, clamp: float | None):
        super().__init__()
        self.first = fan_in == 0
        if self.first:
            self.const = nn.Parameter(torch.randn(fan_out, res, res))
        else:
            self.conv0 = StyledConv(fan_in, fan_out, w_dim, res, up=True, clamp=clamp)
        self.conv1 = StyledConv(fan_out, fan_out, w_dim, res, clamp=clamp)
        self.torgb = StyledConv(fan_out, img_channels, w_dim, rgb=True, clamp=clamp)
        self.register_buffer("resample_filter", fir_kernel(BLUR_TAPS))
        self.num_conv = 1 if self.first else 2

    def forward(self, x, img, ws, noise_mode):
        """ws [N, num_conv + 1, w_dim]: one w per convolution and the last for toRGB."""
        if self.first:
            x = self.const[None].repeat(ws.shape[0], 1, 1, 1)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
        x = self.conv1(x, ws[:, self.num_conv - 1], noise_mode)
        rgb = self.torgb(x, ws[:, self.num_conv])
        return x, rgb if img is None else upsample(img, self.resample_filter).add_(rgb)


class Synthesis(nn.Module):
    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int, channel_max: int,
                 clamp: float | None):
        super().__init__()
        self.resolutions = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
        for res in self.resolutions:
            fan_in = 0 if res == 4 else _channels(res // 2, channel_base, channel_max)
            setattr(self, f"b{res}", SynthesisBlock(fan_in, _channels(res, channel_base, channel_max), w_dim, res,
                                                    img_channels, clamp))
        self.num_ws = 2 * len(self.resolutions)

    def forward(self, ws, noise_mode: str = "random"):
        ws = ws.to(self.b4.const.dtype)
        x = img = None
        first = 0
        for res in self.resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws[:, first:first + block.num_conv + 1], noise_mode)
            first += block.num_conv
        return img


class Mapping(nn.Module):
    def __init__(self, z_dim: int, w_dim: int, num_ws: int, layers: int = 8, lr_mul: float = 0.01,
                 w_avg_beta: float = 0.995):
        super().__init__()
        self.num_ws, self.layers, self.w_avg_beta = num_ws, layers, w_avg_beta
        for i in range(layers):
            setattr(self, f"fc{i}", Dense(z_dim if i == 0 else w_dim, w_dim, lrelu=True, lr_mul=lr_mul))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z, c=None, skip_w_avg_update: bool = False):
        """w for every layer [N, num_ws, w_dim] from z [N, z_dim] (c: no conditioning, kept for callers' shape)."""
        x = z.to(self.w_avg.dtype)
        x = x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.layers):
            x = getattr(self, f"fc{i}")(x)
        if self.training and not skip_w_avg_update:
            self.w_avg.copy_(self.w_avg.lerp(x.detach().mean(dim=0), 1 - self.w_avg_beta))
        return x[:, None].repeat(1, self.num_ws, 1)


class Generator(nn.Module):
    def __init__(self, z_dim: int = 512, w_dim: int = 512, img_resolution: int = 1024, img_channels: int = 3,
                 channel_base: int = 32768, channel_max: int = 512, conv_clamp: float | None = None):
        super().__init__()
        self.z_dim, self.w_dim = z_dim, w_dim
        self.synthesis = Synthesis(w_dim, img_resolution, img_channels, channel_base, channel_max, conv_clamp)
        self.num_ws = self.synthesis.num_ws
        self.mapping = Mapping(z_dim, w_dim, self.num_ws)


class DiscriminatorBlock(nn.Module):
    """Residual: (conv 3x3, conv 3x3 down) + (1x1 down, no bias), each path scaled by sqrt(1/2)."""

    def __init__(self, fan_in: int, hidden: int, fan_out: int, img_channels: int, clamp: float | None):
        super().__init__()
        self.first = fan_in == 0
        if self.first:
            self.fromrgb = Conv(img_channels, hidden, 1, clamp=clamp)
        self.conv0 = Conv(hidden, hidden, 3, clamp=clamp)
        self.conv1 = Conv(hidden, fan_out, 3, down=True, clamp=clamp)
        self.skip = Conv(hidden, fan_out, 1, lrelu=False, down=True, bias=False)
        self.register_buffer("resample_filter", fir_kernel(BLUR_TAPS))  # a key of the checkpoint format alone

    def forward(self, x, img):
        if self.first:
            x = self.fromrgb(img)
        half = math.sqrt(0.5)
        main = self.conv1(self.conv0(x), gain=half)
        return main.add_(self.skip(x, gain=half))


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, channels: int, group: int, clamp: float | None, res: int = 4):
        super().__init__()
        self.group = group
        self.conv = Conv(channels + 1, channels, 3, clamp=clamp)
        self.fc = Dense(channels * res * res, channels, lrelu=True)
        self.out = Dense(channels, 1)

    def stddev_feature(self, x):
        """Minibatch standard deviation (ProGAN): samples i, i + N/G, ... form a group; the mean over C, H, W of
        their per-pixel standard deviation is appended as one more channel."""
        n, c, h, w = x.shape
        group = min(self.group, n)
        grouped = x.reshape(group, n // group, c, h, w)
        spread = (grouped.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [N / G]
        return torch.cat([x, spread.reshape(1, -1, 1, 1, 1).expand(group, -1, 1, h, w).reshape(n, 1, h, w)], dim=1)

    def forward(self, x):
        return self.out(self.fc(self.conv(self.stddev_feature(x)).flatten(1)))


class Discriminator(nn.Module):
    def __init__(self, img_resolution: int = 1024, img_channels: int = 3, channel_base: int = 32768,
                 channel_max: int = 512, conv_clamp: float | None = None, mbstd_group_size: int = 4):
        super().__init__()
        self.resolutions = [2**i for i in range(int(math.log2(img_resolution)), 2, -1)]
        for res in self.resolutions:
            fan_in = 0 if res == img_resolution else _channels(res, channel_base, channel_max)
            setattr(self, f"b{res}", DiscriminatorBlock(fan_in, _channels(res, channel_base, channel_max),
                                                        _channels(res // 2, channel_base, channel_max), img_channels,
                                                        conv_clamp))
        self.b4 = DiscriminatorEpilogue(_channels(4, channel_base, channel_max), mbstd_group_size, conv_clamp)

    def forward(self, img):
        x = None
        for res in self.resolutions:
            x = getattr(self, f"b{res}")(x, img)
        return self.b4(x)


# --------------------------------------------------------------------------------------------
# Projection (StyleGAN2 paper, appendix D)


class VGG16Features(nn.Module):
    """Stand-in for the projector's TorchScript LPIPS VGG16: VGG16's convolutions to relu5_3 on images in
    [0, 255]; at each of LPIPS' five taps the features are unit-normalised per pixel, weighted per channel and
    flattened, so that the squared distance of two outputs is LPIPS. Frozen, as that file's parameters are."""

    LAYOUT = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))

    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleList()
        fan_in = 3
        for widths in self.LAYOUT:
            stage = []
            for width in widths:
                stage += [nn.Conv2d(fan_in, width, 3, padding=1), nn.ReLU(inplace=True)]
                fan_in = width
            self.stages.append(nn.Sequential(*stage))
        self.requires_grad_(False)
        for i, widths in enumerate(self.LAYOUT):
            self.register_buffer(f"lin{i}", torch.rand(widths[-1], 1, 1))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1))

    def forward(self, img):
        x = (img / 255 - self.mean) / self.std
        out = []
        for i, stage in enumerate(self.stages):
            if i:
                x = F.max_pool2d(x, 2)
            x = stage(x)
            unit = x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            weighted = unit * getattr(self, f"lin{i}").sqrt() / math.sqrt(x.shape[2] * x.shape[3])
            out.append(weighted.flatten(1))
        return torch.cat(out, dim=1)


def _noise_penalty(noise: torch.Tensor) -> torch.Tensor:
    """The paper's noise regulariser for one noise map: the squared autocorrelation at a one-pixel shift in x and
    in y, summed over a pyramid of 2x2-average downsamplings down to 8 x 8."""
    pyramid = [noise[None, None]]
    while pyramid[-1].shape[-1] > 8:
        pyramid.append(F.avg_pool2d(pyramid[-1], 2))
    return sum((level * level.roll(1, dims=dim)).mean() ** 2 for level in pyramid for dim in (3, 2))


def _to_lpips_input(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images to [0, 255], averaged down to 256 px when larger (the paper compares at 256 px)."""
    pixels = images.add(1).mul(127.5)
    return pixels if pixels.shape[-1] <= 256 else F.adaptive_avg_pool2d(pixels, 256)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def project_steps(G, target: torch.Tensor, vgg16: nn.Module, space: str = "w", num_steps: int = 1000,
                  w_avg_samples: int = 10000, callback: Callable[[int], None] | None = None) -> torch.Tensor:
    """The StyleGAN2 paper's projector (appendix D) for one target [1, 3, R, R] in [-1, 1]; returns w [1, 1 or
    num_ws, w_dim]. Start at the mean w of `w_avg_samples` mapped z; Adam (max lr 0.1, ramped up over the first 5%
    of steps and down by a cosine over the last 25%) on w (one, or one per layer for space='w+': the paper has
    W only) and on every noise map, re-normalised to zero mean and unit variance after each step; Gaussian noise
    added to w, its scale 0.05 x the spread of w falling quadratically to 0 over the first 75%; loss = LPIPS
    (`vgg16`) + 1e5 x the noise regulariser. `callback(step)` runs after each step. Runs on G's device."""
    G = copy.deepcopy(G).eval().requires_grad_(False)
    device = next(G.parameters()).device
    with torch.no_grad():
        z = torch.randn(w_avg_samples, G.z_dim, dtype=torch.float64, generator=_seeded(123)).to(device)
        samples = G.mapping(z)[:, 0].float()
    w_mean = samples.mean(dim=0, keepdim=True)
    w_spread = float((samples - w_mean).square().sum(dim=1).mean().sqrt())
    target_features = vgg16(_to_lpips_input(target.to(device)))

    noises = [buf for name, buf in G.synthesis.named_buffers() if name.endswith("noise_const")]
    for buf in noises:
        buf.copy_(torch.randn_like(buf)).requires_grad_(True)
    w = w_mean[:, None].repeat(1, G.num_ws if space == "w+" else 1, 1).requires_grad_(True)
    optimizer = torch.optim.Adam([w, *noises], lr=0.1, betas=(0.9, 0.999))

    for step in range(num_steps):
        progress = step / num_steps
        noise_scale = 0.05 * w_spread * max(0.0, 1 - progress / 0.75) ** 2
        lr = 0.1 * min(1.0, progress / 0.05) * (0.5 - 0.5 * math.cos(math.pi * min(1.0, (1 - progress) / 0.25)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        noisy = w + torch.randn_like(w) * noise_scale
        ws = noisy.repeat(1, G.num_ws // noisy.shape[1], 1)
        image = G.synthesis(ws, noise_mode="const")
        distance = (vgg16(_to_lpips_input(image)) - target_features).square().sum()
        loss = distance + 1e5 * sum(_noise_penalty(buf) for buf in noises)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for buf in noises:
                buf.sub_(buf.mean()).div_(buf.square().mean().sqrt())
        if callback is not None:
            callback(step)
    return w.detach()


# --------------------------------------------------------------------------------------------
# Training (ADA paper's loop: StyleGAN2's losses, lazy regularisation, 'bgc' augmentation)


class AugmentBGC(nn.Module):
    """The compute of ADA's 'bgc' augmentation applied to every image (whatever p, as the pipeline does): random
    parameters drawn per image, one geometric warp (reflect padding to cover the rotated image, 2x upsampling
    with a 12-tap filter, bilinear sampling at that size, 2x filtered downsampling that crops the padding) and one
    colour matrix. Transforms are kept with probability p, otherwise identity. The padding, and so the cost, depends
    on the draws (at p = 0.2 and 256 px it is a third of a training phase's time, or more): they come from a
    generator of their own, seeded with `seed`, the same in every run whatever else draws random numbers."""

    def __init__(self, p: float = 0.0, seed: int = 0):
        super().__init__()
        self.p = p
        self.draws = _seeded(seed)
        self.register_buffer("kernel", fir_kernel([math.comb(11, k) for k in range(12)]))

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self.draws)

    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.draws)

    def _maybe(self, values: torch.Tensor, identity: float) -> torch.Tensor:
        return torch.where(self._rand(*values.shape) < self.p, values, torch.full_like(values, identity))

    def forward(self, images):
        n, c, h, w = images.shape
        # Geometry: a flip, then seven random rotations with shifts, composed as 3x3 matrices (pixel units).
        matrix = torch.eye(3).repeat(n, 1, 1)
        matrix[:, 0, 0] = 1 - 2 * self._maybe((self._rand(n) < 0.5).float(), 0)
        for _ in range(7):
            angle = self._maybe(self._randn(n) * 0.2, 0.0)
            step = torch.eye(3).repeat(n, 1, 1)
            step[:, :2, :2] = torch.stack([angle.cos(), -angle.sin(), angle.sin(), angle.cos()], 1).reshape(n, 2, 2)
            step[:, 0, 2], step[:, 1, 2] = angle * w, angle * h
            matrix = matrix @ step
        # Padding on each side: how far the warped image's bounding box (centred pixel coordinates: a box of
        # half-size |A| half about the shift t, for the linear part A) reaches past that side over the batch, plus
        # the filter's reach, at most the image less a pixel (reflection's limit).
        half = torch.tensor([(w - 1) / 2, (h - 1) / 2])
        extent, shift = matrix[:, :2, :2].abs() @ half, matrix[:, :2, 2]  # [N, 2] each
        border = self.kernel.shape[0] // 4
        before, after = (extent - shift).amax(dim=0) - half, (extent + shift).amax(dim=0) - half  # (x, y) each
        largest = torch.tensor([w - 1, h - 1])
        (left, top), (right, bottom) = [(side + 2 * border).clamp(min=0).ceil().minimum(largest).int().tolist()
                                        for side in (before, after)]
        images = F.pad(images, [left, right, top, bottom], mode="reflect")
        images = upsample(images, self.kernel)
        theta = matrix[:, :2, :].clone()
        theta[:, :, 2] = 0
        size = [n, c, (h + 2 * border) * 2, (w + 2 * border) * 2]
        images = F.grid_sample(images, F.affine_grid(theta, size, align_corners=False), mode="bilinear",
                               padding_mode="zeros", align_corners=False)
        images = downsample(images, self.kernel, pad=-2 * border)
        # Colour: brightness, contrast, luma flip, hue, saturation as five random 4x4 matrices.
        colour = torch.eye(4).repeat(n, 1, 1)
        for _ in range(5):
            step = torch.eye(4).repeat(n, 1, 1)
            step[:, :3, :3] *= self._maybe(torch.exp2(self._randn(n) * 0.5), 1.0)[:, None, None]
            colour = step @ colour
        flat = colour[:, :3, :3] @ images.reshape(n, c, h * w) + colour[:, :3, 3:]
        return flat.reshape(n, c, h, w)


def train_phase_fn(G: Generator, D: Discriminator, batch: int, pl_weight: float = 2.0, r1_gamma: float = 10.0,
                   style_mixing: float = 0.9, ada_p: float = 0.0) -> Callable[[str, torch.Tensor], None]:
    """`run(phase, reals)`: one optimiser step of a training phase, 'Gmain' (non-saturating logistic loss), 'Greg'
    (path length regularisation on half the batch, every 4th minibatch), 'Dmain' (logistic loss on fakes, then on
    reals) or 'Dreg' (R1, every 16th), as the papers define them: Adam(0.002, 0, 0.99) with lazy regularisation's
    rescaled lr and beta2, style mixing, every image D sees augmented, gradients cleaned of NaN and infinities.
    Like toonlib's `Trainer.run_phase`, a phase leaves out the once-per-minibatch G_ema update."""
    G.train().requires_grad_(False)
    D.train().requires_grad_(False)
    augment = AugmentBGC(ada_p)

    def adam(net, interval):
        ratio = interval / (interval + 1)
        return torch.optim.Adam(net.parameters(), lr=0.002 * ratio, betas=(0.0, 0.99**ratio), eps=1e-8)

    optimizers = {"G": adam(G, 4), "D": adam(D, 16)}
    weights = {"Gmain": 1, "Greg": 4, "Dmain": 1, "Dreg": 16}
    pl_mean = torch.zeros([])

    def generate(n):
        z = torch.randn(n, G.z_dim)
        ws = G.mapping(z)
        other = G.mapping(torch.randn_like(z), skip_w_avg_update=True)  # mapped every time, mixed or not
        if torch.rand([]) < style_mixing:
            cut = int(torch.randint(1, ws.shape[1], []))
            ws[:, cut:] = other[:, cut:]
        return G.synthesis(ws), ws

    def losses(phase: str, reals: torch.Tensor):
        """The phase's weighted losses, each to be back-propagated on its own."""
        nonlocal pl_mean
        weight = weights[phase]
        if phase == "Gmain":
            yield F.softplus(-D(augment(generate(batch)[0]))).mean() * weight
        elif phase == "Greg":
            penalty, pl_mean = _path_length_penalty(*generate(batch // 2), pl_mean)
            yield penalty * pl_weight * weight
        elif phase == "Dmain":
            yield F.softplus(D(augment(generate(batch)[0]))).mean() * weight
            yield F.softplus(-D(augment(reals.detach()))).mean() * weight
        else:
            reals = reals.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(augment(reals)).sum(), reals, create_graph=True)
            yield grad.square().sum(dim=(1, 2, 3)).mean() * (r1_gamma / 2) * weight

    def run(phase: str, reals: torch.Tensor) -> None:
        with _training(G if phase[0] == "G" else D, optimizers[phase[0]]):
            for loss in losses(phase, reals):
                loss.backward()

    return run


def _path_length_penalty(images: torch.Tensor, ws: torch.Tensor, running_mean: torch.Tensor, decay: float = 0.01):
    """The StyleGAN2 paper's path length regulariser, (|J^T y| - a)^2 averaged over the batch, for y a random image
    scaled to unit total variance and a the running mean of |J^T y|; returns the penalty and a's new value."""
    y = torch.randn_like(images) * images[0, 0].numel() ** -0.5  # unit variance over the image's pixels
    (jty,) = torch.autograd.grad((images * y).sum(), ws, create_graph=True)  # [N, num_ws, w_dim]
    norms = jty.square().sum(dim=-1).mean(dim=-1).sqrt()
    target = torch.lerp(running_mean, norms.mean(), decay)
    return (norms - target).square().mean(), target.detach()


class _training:
    """Within the block `net`'s weights take gradients; after it, they no longer do, non-finite gradients are
    replaced (NaN by 0, infinities by +-1e5) and `optimizer` takes one step."""

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer):
        self.net, self.optimizer = net, optimizer

    def __enter__(self):
        self.optimizer.zero_grad(set_to_none=True)
        self.net.requires_grad_(True)

    def __exit__(self, *error):
        self.net.requires_grad_(False)
        if error[0] is None:
            for group in self.optimizer.param_groups:
                for grad in (p.grad for p in group["params"] if p.grad is not None):
                    grad.nan_to_num_(nan=0.0, posinf=1e5, neginf=-1e5)
            self.optimizer.step()
