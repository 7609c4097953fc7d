"""augment.py: ADA's augmentation pipeline (each transform's effect, p semantics) and the p controller."""
from __future__ import annotations

import io
import math

import pytest
import torch

from toonlib.augment import TRANSFORMS, AdaptiveP, AugmentParams, AugmentPipe, augment

N, H, W = 8, 32, 32
CENTRE = slice(H // 2 - 2, H // 2 + 2)  # H == W
XINT_PIXELS = 0.125 * W
STEP = 4 * 8 / 500_000  # one adjustment: batch 8 * interval 4 images out of ada_kimg 500


def only(name: str, p: float = 1.0) -> AugmentPipe:
    return AugmentPipe(p=p, **{t: float(t == name) for t in TRANSFORMS})


def sampled(name: str, images: torch.Tensor) -> tuple[AugmentParams, torch.Tensor]:
    """One transform alone at p = 1: its sampled parameters and the augmented images."""
    n, _, h, w = images.shape
    params = only(name).sample_params(n, h, w)
    return params, augment(images, params)


def ramp() -> torch.Tensor:
    """Channel 0 = x, channel 1 = y (pixels from the centre), channel 2 = 0: a geometric transform's
    inverse can be read off the output, since bilinear sampling reproduces a linear function exactly."""
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5 - H / 2, torch.arange(W) + 0.5 - W / 2, indexing="ij")
    return torch.stack([xs, ys, torch.zeros_like(xs)]).expand(N, 3, H, W)


def centre_slopes(out: torch.Tensor, channel: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample d/dx and d/dy of one channel around the centre (away from any reflected border)."""
    c = out[:, channel, CENTRE, CENTRE]
    return c.diff(dim=2).mean(dim=(1, 2)), c.diff(dim=1).mean(dim=(1, 2))


def luma(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=1, keepdim=True)


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> None:
    torch.testing.assert_close(a, b, atol=atol, rtol=1e-5)


def test_p_zero_is_identity():
    x = torch.randn(4, 3, 16, 16)
    assert AugmentPipe.bgc(0.0)(x) is x
    # Sampling at p = 0 gives identity parameters, and those leave every sample bit for bit unchanged.
    assert torch.equal(augment(x, AugmentPipe.bgc(0.0).sample_params(4, 16, 16)), x)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_each_transform_alone_changes_images_and_is_differentiable(name):
    x = torch.randn(N, 3, 16, 16, requires_grad=True)
    out = only(name)(x)
    assert out.shape == x.shape and not torch.equal(out, x)
    (out * torch.randn_like(out)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_forward_is_augment_of_sampled_params():
    x = torch.randn(N, 3, 16, 16)
    pipe = AugmentPipe.bgc(0.7)
    out = pipe(x, torch.Generator().manual_seed(3))
    expected = augment(x, pipe.sample_params(N, 16, 16, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(out, expected)
    assert not torch.equal(out, pipe(x, torch.Generator().manual_seed(4)))


def test_xflip():
    x = torch.randn(N, 3, H, W)
    params, out = sampled("xflip", x)
    assert set(params.xflip.tolist()) == {0.0, 1.0}  # when applied, i ~ U{0, 1}
    close(out, torch.where(params.xflip.bool()[:, None, None, None], x.flip(3), x))


def test_rotate90():
    x = torch.randn(N, 3, H, W)
    params, out = sampled("rotate90", x)
    assert len(set(params.rotate90.tolist())) > 2
    close(out, torch.stack([torch.rot90(xi, int(k), dims=(1, 2)) for xi, k in zip(x, params.rotate90)]))


def test_rotate90_and_xflip_on_non_square_images():
    x = torch.randn(2, 3, 8, 16)
    params = AugmentParams(xflip=torch.tensor([1.0, 0.0]), rotate90=torch.tensor([2, 2]))
    close(augment(x, params), torch.stack([torch.rot90(x[0].flip(2), 2, (1, 2)), torch.rot90(x[1], 2, (1, 2))]))


def test_xint_moves_by_whole_pixels():
    x = torch.randn(N, 3, H, W)
    params, out = sampled("xint", x)
    t = params.xint
    assert torch.equal(t, t.round()) and t.abs().max() <= XINT_PIXELS and t.abs().sum() > 0
    for xi, oi, (tx, ty) in zip(x, out, t.long().tolist()):
        rolled = xi.roll((ty, tx), dims=(1, 2))  # wrapped rows / columns are cropped away below
        rows, cols = slice(max(ty, 0), H + min(ty, 0)), slice(max(tx, 0), W + min(tx, 0))
        close(oi[:, rows, cols], rolled[:, rows, cols])


def test_scale_zooms_about_the_centre():
    params, out = sampled("scale", ramp())
    dx, dy = centre_slopes(out, 0)
    close(dx, 1 / params.scale)
    close(dy, torch.zeros(N))


def test_aniso_zooms_x_and_y_inversely():
    params, out = sampled("aniso", ramp())
    close(centre_slopes(out, 0)[0], 1 / params.aniso)
    close(centre_slopes(out, 1)[1], params.aniso)


def test_rotate_turns_by_the_sum_of_both_angles():
    params, out = sampled("rotate", ramp())
    angle = params.rotate_pre + params.rotate_post
    dx, dy = centre_slopes(out, 0)  # the x ramp, rotated counterclockwise by `angle` (y points down)
    close(dx, angle.cos())
    close(dy, -angle.sin())


def test_xfrac_translates_by_fractional_pixels():
    params, out = sampled("xfrac", ramp())
    t = params.xfrac
    assert not torch.equal(t, t.round())
    shift = (out - ramp())[:, :2, CENTRE, CENTRE].mean(dim=(2, 3))  # the x and y ramps, shifted by t
    close(shift, -t, atol=1e-4)


def test_brightness_shifts_every_channel():
    x = torch.randn(N, 3, H, W)
    params, out = sampled("brightness", x)
    close(out - x, params.brightness[:, None, None, None].expand_as(x))


def test_contrast_scales_the_spread():
    x = torch.randn(N, 3, H, W)
    params, out = sampled("contrast", x)
    close(out.std(dim=(1, 2, 3)) / x.std(dim=(1, 2, 3)), params.contrast)


def test_lumaflip_negates_luma_and_keeps_chroma():
    x = torch.randn(N, 3, H, W)
    params, out = sampled("lumaflip", x)
    assert set(params.lumaflip.tolist()) == {0.0, 1.0}
    sign = 1 - 2 * params.lumaflip[:, None, None, None]
    close(luma(out), sign * luma(x))
    close(out - luma(out), x - luma(x))


def test_hue_rotates_chroma_about_the_luma_axis():
    x = torch.randn(N, 3, H, W)
    params, out = sampled("hue", x)
    chroma_in, chroma_out = x - luma(x), out - luma(out)
    close(luma(out), luma(x))
    cos = torch.nn.functional.cosine_similarity(chroma_in, chroma_out, dim=1)
    close(cos, params.hue.cos()[:, None, None].expand_as(cos), atol=1e-4)


def test_saturation_scales_chroma():
    x = torch.randn(N, 3, H, W)
    params, out = sampled("saturation", x)
    close(luma(out), luma(x))
    close(out - luma(out), params.saturation[:, None, None, None] * (x - luma(x)))
    grey = augment(x, AugmentParams(saturation=torch.zeros(N)))
    close(grey, luma(x).expand_as(x))


def test_fraction_of_augmented_samples_follows_p():
    p, n = 0.3, 20_000
    params = AugmentPipe.bgc(p).sample_params(n, 64, 64)
    rate = {
        "xflip": (params.xflip != 0, p / 2),  # an applied flip mirrors half the time
        "rotate90": (params.rotate90 != 0, p * 3 / 4),
        "xint": ((params.xint != 0).any(1), p * 255 / 256),  # each axis, uniform in [-8, 8] px, rounds to 0 w.p. 1/16
        "scale": (params.scale != 1, p),
        "rotate": ((params.rotate_pre != 0) | (params.rotate_post != 0), p),
        "aniso": (params.aniso != 1, p),
        "xfrac": ((params.xfrac != 0).any(1), p),
        "brightness": (params.brightness != 0, p),
        "contrast": (params.contrast != 1, p),
        "lumaflip": (params.lumaflip != 0, p / 2),
        "hue": (params.hue != 0, p),
        "saturation": (params.saturation != 1, p),
    }
    for name, (applied, expected) in rate.items():
        assert abs(applied.float().mean().item() - expected) < 0.02, name
    # The same, seen on the images: a transform alone changes about a fraction p of them.
    x = torch.randn(4000, 3, 4, 4)
    for name in ("rotate", "brightness"):
        changed = (only(name, p)(x) != x).flatten(1).any(1).float().mean().item()
        assert abs(changed - p) < 0.03, name


def test_pipe_p_is_a_saved_buffer():
    state = AugmentPipe.bgc(0.25).state_dict()
    pipe = AugmentPipe.bgc()
    pipe.load_state_dict(state)
    assert float(pipe.p) == 0.25


def feed(ada: AdaptiveP, sign: float, batches: int = 4, batch: int = 8) -> None:
    for _ in range(batches):
        ada.update(torch.full((batch, 1), sign))


def test_adaptive_p_moves_up_when_d_overfits_and_down_otherwise():
    ada = AdaptiveP()
    feed(ada, 1.0, batches=3)
    assert ada.p == 0 and ada.rt is None  # not before `interval` minibatches
    feed(ada, 1.0, batches=1)
    assert ada.rt == 1 and ada.p == pytest.approx(STEP, abs=1e-15)

    ada = AdaptiveP(p=0.5)
    feed(ada, -1.0)
    assert ada.rt == -1 and ada.p == pytest.approx(0.5 - STEP, abs=1e-15)


def test_adaptive_p_uses_the_mean_sign_and_the_target():
    ada = AdaptiveP(p=0.5)
    for _ in range(4):  # 7 positive, 1 negative: r_t = 0.75 > 0.6
        ada.update(torch.tensor([3.0, 0.1, 2, 5, 1, 1, 1, -4]))
    assert ada.rt == 0.75 and ada.p == pytest.approx(0.5 + STEP, abs=1e-15)
    for _ in range(4):  # 5 positive, 3 negative: r_t = 0.25 < 0.6
        ada.update(torch.tensor([3.0, 0.1, 2, 5, 1, -1, -1, -4]))
    assert ada.rt == 0.25 and ada.p == pytest.approx(0.5, abs=1e-15)


def test_adaptive_p_is_clamped_and_can_be_fixed():
    ada = AdaptiveP(p=1.0 - STEP / 2)
    feed(ada, 1.0)
    assert ada.p == 1.0
    ada = AdaptiveP(p=STEP / 2)
    feed(ada, -1.0)
    assert ada.p == 0.0
    fixed = AdaptiveP(p=0.2, target=None)
    feed(fixed, 1.0)
    assert fixed.p == 0.2 and fixed.rt == 1


def test_adaptive_p_all_reduce_hook_sums_across_ranks():
    calls = []

    def two_identical_ranks(t: torch.Tensor) -> None:
        calls.append(t.clone())
        t.mul_(2)

    ada = AdaptiveP(all_reduce=two_identical_ranks)
    feed(ada, 1.0)
    assert len(calls) == 1 and calls[0].tolist() == [32.0, 32.0]
    assert ada.p == pytest.approx(2 * STEP, abs=1e-15)


def test_adaptive_p_state_dict_resumes_exactly():
    logits = [torch.randn(8, 1) + 0.4 for _ in range(30)]
    ada = AdaptiveP(p=0.1)
    for batch in logits[:10]:  # 2.5 intervals: the state holds a partial accumulation
        ada.update(batch)
    buffer = io.BytesIO()
    torch.save(ada.state_dict(), buffer)
    buffer.seek(0)
    resumed = AdaptiveP()
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    fresh = AdaptiveP(p=ada.p)  # same p, but without the partial accumulation
    history = {"ada": [], "resumed": [], "fresh": []}
    for batch in logits[10:]:
        for name, controller in (("ada", ada), ("resumed", resumed), ("fresh", fresh)):
            controller.update(batch)
            history[name].append((controller.p, controller.rt))
    assert history["resumed"] == history["ada"]
    assert history["fresh"] != history["ada"]
    assert not math.isclose(ada.p, 0.1)


def test_the_warp_is_grid_sample_with_a_gradient_r1_can_differentiate():
    """R1 differentiates D's gradient with respect to the real images through the augmentation; torch 2.5 and 2.6
    have no derivative of grid_sample's backward ("derivative for aten::grid_sampler_2d_backward is not
    implemented": fine-tuning with ADA failed there). toonlib's warp has one: checked against finite differences,
    in float64, with a grid reaching past the borders (reflection) and an output of another size."""
    import torch.nn.functional as F

    from toonlib.augment import _WarpImages

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 9, 7, dtype=torch.float64, generator=generator, requires_grad=True)
    grid = torch.rand(2, 6, 5, 2, dtype=torch.float64, generator=generator) * 2.4 - 1.2
    expected = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    assert torch.equal(_WarpImages.apply(images, grid), expected)
    assert torch.autograd.gradcheck(lambda x: _WarpImages.apply(x, grid), (images,))
    assert torch.autograd.gradgradcheck(lambda x: _WarpImages.apply(x, grid), (images,))

    # As R1 uses it: the gradient penalty through a geometric augmentation reaches the discriminator's weights.
    pipe = AugmentPipe(p=1.0, xflip=0, rotate90=0, xint=0, scale=1, rotate=1, aniso=1, xfrac=1)
    weight = torch.randn(3, dtype=torch.float64, requires_grad=True)
    real = images.detach().clone().requires_grad_(True)
    score = (pipe(real) * weight[None, :, None, None]).square().sum()
    (grad,) = torch.autograd.grad(score, real, create_graph=True)
    grad.square().sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0
