"""Projection (toonlib.projection) and its losses, on a tiny 32 px generator and an offline LPIPS.

LPIPS is built with `pnet_rand=True` (random VGG16 trunk, the real linear heads, same compute): it
works offline. Its VGG accepts 32 px inputs as they are (the deepest features are 2x2), so the tiny
generator's images are not upsampled.
"""
from __future__ import annotations

import math
import re
import threading
import time
import urllib.error
import warnings

import numpy as np
import PIL.Image
import pytest
import torch
from tiny import random_lpips

from toonlib import convolution, losses, ops, projection
from toonlib.losses import PerceptualDistance, PerceptualWeightsError, noise_regularization, normalize_noise_
from toonlib.networks import Generator, SynthesisLayer
from toonlib.projection import (
    ProjectionResult,
    as_images,
    latent_noise_scale,
    learning_rate,
    load_latent,
    project,
    render,
    save_video,
    w_statistics,
)

W_AVG_SAMPLES = 1000


@pytest.fixture(scope="module")
def G() -> Generator:
    """Tiny generator whose images lie in [-1, 1] (ToRGB scaled down) and whose noise matters."""
    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=256, channel_max=32).eval()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("torgb.weight"):
                p.mul_(0.2)
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    return G


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return random_lpips()


@pytest.fixture(scope="module")
def ws(G) -> torch.Tensor:
    """Known latents: row 0 a plain w (all layers equal), row 1 a style-mixed W+ latent."""
    with torch.no_grad():
        w = G.mapping(torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(1)), None)
    mixed = torch.cat([w[0, :3], w[1, 3:6], w[2, 6:]])
    return torch.stack([w[0], mixed])


@pytest.fixture(scope="module")
def targets(G, ws) -> torch.Tensor:
    with torch.no_grad():
        images = G.synthesis(ws, noise_mode="const")
    assert images.abs().max() < 1
    return images


def run(G, target, net, **kwargs) -> ProjectionResult:
    return project(G, target, lpips_net=net, w_avg_samples=W_AVG_SAMPLES, progress=False, **kwargs)


@pytest.fixture(scope="module")
def projections(G, targets, net) -> dict[str, ProjectionResult]:
    """The style-mixed image projected in both spaces with the same number of steps."""
    return {space: run(G, targets[1], net, space=space, steps=40) for space in ("w", "w+")}


# --------------------------------------------------------------------------------------------
# Projection


@pytest.mark.parametrize("space", ["w", "w+"])
def test_projection_of_a_generated_image_closes_in(projections, G, space):
    result = projections[space]
    dist = result.losses[:, 0]
    # Observed on CPU: w 0.039 -> 0.0095, w+ 0.040 -> 0.0061 (40 steps).
    assert dist[-1] < 0.3 * dist[0]
    assert result.w.shape == (1, G.num_ws, G.w_dim) and result.w.dtype == torch.float32
    assert result.images.shape == (1, 3, 32, 32)
    assert result.losses.shape == (40, 1) and result.steps == 40 and result.space == space
    assert {name: tuple(t.shape) for name, t in result.noise.items()} == {
        name: (1, 1, *buf.shape) for name, buf in G.named_buffers() if name.endswith("noise_const")}
    if space == "w":
        assert torch.equal(result.w, result.w[:, :1].expand_as(result.w))


def test_w_plus_fits_better_than_w(projections):
    # Observed on CPU: W+ 0.0061, W 0.0095.
    assert projections["w+"].losses[-1, 0] < projections["w"].losses[-1, 0]


def test_results_in_a_list_are_found_by_identity(projections):
    """The dataclass's generated == compared the w tensors: `results.index(r)`, `r in results`, `results.remove(r)`
    raised "Boolean value of Tensor with more than one value is ambiguous" (thirty-fourth session's API audit)."""
    results = [projections["w"], projections["w+"]]
    assert results.index(projections["w+"]) == 1 and projections["w"] in results
    assert projections["w"] != projections["w+"]


def test_images_are_w_rendered_with_the_optimised_noise(projections, G):
    result = projections["w+"]
    torch.testing.assert_close(result.images, render(G, result.w, result.noise))
    assert not torch.allclose(result.images, render(G, result.w))  # G's own noise maps differ
    # a latent read with numpy renders as it is (was: 'numpy.ndarray' object has no attribute 'to')
    assert torch.equal(render(G, result.w.numpy()), render(G, result.w))
    with pytest.raises(ValueError, match=r"one w per image: repeat it over the layers, ws = w\[:, None\]\.repeat"):
        render(G, result.w[:, 0])  # W, not W+
    # one image's W+ latent without its batch dimension: ws[None] (the repeat advice made num_ws images of it)
    with pytest.raises(ValueError, match=r"got \[8, 32\] \(one image's W\+ latent: ws\[None\], or "
                                        r"result\.w\[i:i \+ 1\] of a batch; one w per image"):
        render(G, result.w[0])
    with pytest.raises(TypeError, match=r"got ProjectionResult: pass its \.w \(ProjectionResult\.w\)"):
        render(G, result)
    # The maps were optimised: they moved away from the seed's initial draw and stayed normalised.
    initial = projection._initial_noise(G, [torch.Generator().manual_seed(0)], torch.device("cpu"))
    moved = [float((result.noise[name] - initial[name].detach()).abs().max()) for name in initial]
    assert min(moved) > 1e-3, moved
    for maps in result.noise.values():
        assert abs(float(maps.mean())) < 1e-4 and abs(float(maps.square().mean()) - 1) < 1e-3


def test_init_starts_from_the_given_latent(G, targets, ws, net, monkeypatch):
    # Starting at the true latent, a few steps keep the fit far better than starting from the mean.
    from_mean = run(G, targets[1], net, steps=3)
    from_truth = run(G, targets[1], net, steps=3, init=ws[1])
    assert from_truth.losses[0, 0] < 0.5 * from_mean.losses[0, 0]
    assert from_truth.steps == 3
    # Default length with init: DEFAULT_INIT_STEPS (100, shortened here); in W space a W+ init is averaged.
    assert projection.DEFAULT_INIT_STEPS == 100
    monkeypatch.setattr(projection, "DEFAULT_INIT_STEPS", 4)
    calls = []
    run(G, targets[0], net, space="w", init=ws[:1], callback=lambda step, d, w: calls.append(w.clone()))
    assert len(calls) == 4
    with pytest.raises(ValueError, match=r"init must have shape \[1, "):
        run(G, targets[0], net, steps=1, init=torch.zeros(2, G.num_ws, G.w_dim))
    # A NaN in init ran every step, then render blamed "a projection or an edit that diverged" for all of w: refused
    # first, before the mean w is sampled (and, in `project`, LPIPS built), with the count of what is wrong.
    bad = ws[:1].clone()
    bad[0, 2, 3] = float("nan")
    monkeypatch.setattr(projection, "w_statistics", lambda *args: pytest.fail("computed before init was checked"))
    calls.clear()
    with pytest.raises(ValueError, match=r"^init: the latents hold NaN or infinite values \(1 of \d+\): .*; project "
                                         r"starts from finite latents: fix init, or leave it out \(the mean w\)$"):
        run(G, targets[0], net, steps=3, init=bad, callback=lambda step, d, w: calls.append(step))
    assert calls == []


def test_a_projection_runs_inside_no_grad_and_inference_mode(G, targets, net):
    """Inference code runs under torch.no_grad() or torch.inference_mode(): project there failed with torch's "element
    0 of tensors does not require grad" / "Inference tensors do not track version counter". Its warnings still name
    the caller's line (torch's own decorators named theirs)."""
    expected = run(G, targets[0], net, steps=2)
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            torch.testing.assert_close(run(G, targets[0], net, steps=2).w, expected.w, rtol=0, atol=0)
        assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    with pytest.warns(UserWarning, match=r"values all lie in 0 \.\. 0") as caught, torch.no_grad():
        run(G, torch.zeros(1, 3, 32, 32), net, steps=1)
    assert caught[0].filename == __file__


def test_progress_bar_ends_complete(G, targets, net, capsys):
    run_kwargs = dict(lpips_net=net, w_avg_samples=W_AVG_SAMPLES, progress=True)
    project(G, targets[0], steps=4, **run_kwargs)
    project(G, targets[0], steps=50, early_stop=(2, 1.0), **run_kwargs)
    bars = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if "project" in line]
    assert any("4/4" in line and "100%" in line for line in bars), bars
    assert any("3/3" in line and "100%" in line for line in bars), bars  # early stop after 3 steps


def test_an_early_stopped_bar_ends_full_in_a_notebook(G, targets, net, monkeypatch):
    """In Jupyter and Colab an early-stopped projection's bar said "3/3" and 100%, but its widget stayed at 3 of 50
    steps, a green bar 6% long: tqdm's notebook widget takes its total only when it is built (thirty-ninth session's
    audit)."""
    import tqdm.asyncio
    import tqdm.auto
    import tqdm.notebook

    from toonlib import messages

    class AutoBar(tqdm.notebook.tqdm, tqdm.asyncio.tqdm):  # what tqdm.auto defines in a notebook's kernel
        pass

    AutoBar.__module__ = "tqdm.auto"
    monkeypatch.setattr(tqdm.auto, "tqdm", AutoBar)
    bars = []
    monkeypatch.setattr(projection, "progress_bar", lambda **kwargs: bars.append(messages.progress_bar(**kwargs))
                        or bars[-1])
    result = project(G, targets[0], steps=50, early_stop=(2, 1.0), lpips_net=net, w_avg_samples=W_AVG_SAMPLES)
    [bar] = bars
    widget = bar.container.children[1]
    assert (result.steps, widget.value, widget.max, widget.bar_style) == (3, 3, 3, "success")


def test_progress_bar_keeps_its_bar_at_80_columns(G, targets, net, monkeypatch):
    """The live numbers after the bar (`dist=0.1234, loss=0.1235`) squeezed it to one character in an 80-column
    terminal: the distance alone is shown."""
    import io

    from toonlib import messages

    stream = io.StringIO()
    monkeypatch.setattr(projection, "progress_bar", lambda **kwargs: messages.progress_bar(
        **kwargs, file=stream, ncols=80, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [01:23<02:05,  1.23s/step"
                                                    "{postfix}]"))  # a CPU's timing, not this tiny model's
    project(G, targets[0], steps=2, lpips_net=net, w_avg_samples=W_AVG_SAMPLES, progress=True)
    last = stream.getvalue().split("\r")[-1].strip()
    assert re.search(r", dist=\d\.\d{4}]$", last) and len(last) <= 80, last
    assert len(last.split("|")[1]) >= 10, last  # the bar itself


def test_progress_in_a_log_is_updated_seldom_and_ends_complete(G, targets, net, capsys):
    """Written to a file or a pipe, the bar was redrawn after every step (a 500-step projection wrote ~40 KB to a
    log): now every `messages.LOG_PROGRESS_INTERVAL` seconds and at its end; in a terminal as tqdm does."""
    import io

    from toonlib import messages

    started = time.monotonic()
    project(G, targets[0], steps=30, lpips_net=net, w_avg_samples=W_AVG_SAMPLES)
    elapsed = time.monotonic() - started  # a busy machine's slow steps make more intervals, not more redraws
    records = [r for r in capsys.readouterr().err.split("\r") if "project" in r]  # capsys' stderr: no terminal
    assert len(records) <= 3 + elapsed / messages.LOG_PROGRESS_INTERVAL < 30, (records, elapsed)
    assert "30/30" in records[-1] and "100%" in records[-1], records

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, interval in ((io.StringIO(), messages.LOG_PROGRESS_INTERVAL), (Terminal(), 0.1)):
        with messages.progress_bar(total=2, file=stream) as bar:
            assert bar.mininterval == interval


def test_a_projection_takes_what_load_generator_takes_and_says_what_a_target_is(G, targets, net, tmp_path):
    """`project(load_network(...), ...)` (the README's `.G_ema` forgotten) failed with "'Networks' object has no
    attribute 'parameters'"; a checkpoint's path or name loads as everywhere else. A [0, 1] tensor (torchvision's
    to_tensor) was silently read as [-1, 1]: a pale target; align_face's result gets the hint to pass `.image`."""
    from toonlib.align import AlignedFace
    from toonlib.checkpoints import Networks, save_network
    from toonlib.messages import ToonlibWarning

    expected = run(G, targets[0], net, steps=2)
    path = save_network(tmp_path / "g.safetensors", G)
    for source in (Networks(G_ema=G), path, str(path)):
        torch.testing.assert_close(run(source, targets[0], net, steps=2).w, expected.w)
        torch.testing.assert_close(render(source, expected.w), render(G, expected.w))
    with pytest.warns(ToonlibWarning, match=r"the target image tensor's values all lie in 0 \.\. 0\.9.*For a \[0, 1\] "
                                            r"tensor \(torchvision's to_tensor\) pass x \* 2 - 1"):
        as_images(torch.linspace(0, 0.99, 3 * 32 * 32).reshape(3, 32, 32), 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_images(targets[:1], 32)  # a generator's image: dark pixels below 0
    face = AlignedFace(image=PIL.Image.new("RGB", (32, 32)), landmarks=np.zeros((68, 2)), quad=np.zeros((4, 2)),
                       face_size=32.0)
    with pytest.raises(TypeError, match=r"cannot use AlignedFace as a target image .*: pass its \.image "
                                        r"\(AlignedFace\.image, the picture it holds\)"):
        as_images(face, 32)


def test_rendering_one_target_of_a_batch_with_its_noise_says_how(G, targets, net):
    """render(G, result.w[:1], result.noise) of a batch failed deep in a convolution: "output with shape [1, 16, 4,
    4] doesn't match the broadcast shape [2, 16, 4, 4]"."""
    result = run(G, targets, net, steps=1)
    with pytest.raises(ValueError, match=r"the noise maps are for 2 latents, w holds 1 .* pass result\.w\[i:i \+ 1\] "
                                         r"and \{name: n\[i:i \+ 1\] for name, n in result\.noise\.items\(\)\}"):
        render(G, result.w[:1], result.noise)
    one = {name: n[1:2] for name, n in result.noise.items()}
    torch.testing.assert_close(render(G, result.w[1:2], one), result.images[1:2])


@pytest.mark.filterwarnings("ignore::toonlib.blending.LineageWarning")  # the tiny models are unrelated
def test_rendering_no_latents_says_so(G, tmp_path):
    """render of an empty batch, and Toonifier.render through it, failed inside the first convolution: "torch.cat():
    expected a non-empty list of Tensors"."""
    from tiny import write_toonify_models

    from toonlib.pipeline import Toonifier

    with pytest.raises(ValueError, match=r"no latents to render: w has shape \[0, 8, 32\]; render takes \[N, 8, 32\] "
                                         "with N >= 1"):
        render(G, torch.zeros(0, G.num_ws, G.w_dim))
    base, toon, _, _ = write_toonify_models(tmp_path)
    toonifier = Toonifier(base, toon)
    with pytest.raises(ValueError, match=r"no latents to render: w has shape \[0, 8, 16\]"):
        toonifier.render(np.zeros((0, 8, 16), np.float32))



def test_a_generator_in_another_dtype_projects_and_renders(G, targets, net):
    """`G.double()` failed in project and render ("Input type (float) and bias type (double)"); a `G.half()`'s
    w_statistics overflowed to inf, which a Toonifier then refused as "w_stats's w_std ... got inf"."""
    import copy

    expected = run(G, targets[0], net, steps=2)
    doubled = copy.deepcopy(G).double()
    torch.testing.assert_close(run(doubled, targets[0], net, steps=2).w, expected.w, rtol=0, atol=0)  # exact in fp32
    torch.testing.assert_close(render(doubled, expected.w), render(G, expected.w), rtol=1e-5, atol=1e-5)
    halved = copy.deepcopy(G).half()
    w_avg, w_std = w_statistics(halved, 1000)
    assert math.isfinite(w_std) and w_avg.dtype == torch.float32
    assert render(halved, expected.w).dtype == torch.float32


def test_rendering_takes_w_latents_and_refuses_nan(G, ws, tmp_path):
    """An .npz of W latents [N, 1, w_dim], as load_latent reads it without num_ws, was refused by render ("ws must
    have shape [N, 8, 32]"); latents holding NaN drew a picture without a word."""
    w = ws[:2, :1]  # one w for every layer
    np.savez(tmp_path / "w.npz", w=w.numpy())
    loaded = load_latent(tmp_path / "w.npz")
    assert list(loaded.shape) == [2, 1, G.w_dim]
    torch.testing.assert_close(render(G, loaded), render(G, w.expand(-1, G.num_ws, -1)), rtol=0, atol=0)
    with pytest.raises(ValueError, match=rf"^the latents hold NaN or infinite values \({G.num_ws * G.w_dim} of "
                                         rf"{G.num_ws * G.w_dim}\): a projection or an edit that diverged; render "
                                         r"takes finite latents$"):
        render(G, torch.full((1, G.num_ws, G.w_dim), float("nan")))


def test_batch_equals_one_by_one(G, targets, net):
    batch = run(G, targets, net, steps=10, seed=[5, 7])
    for i, seed in enumerate([5, 7]):
        alone = run(G, targets[i], net, steps=10, seed=seed)
        # Only float rounding differs (each target steps on its own on the CPU, side by side on one intra-op
        # thread instead of several): observed max |dw| ~3e-6
        # (after 15 steps ~3e-3: Adam amplifies rounding where gradients are near zero).
        torch.testing.assert_close(batch.w[i:i + 1], alone.w, atol=1e-3, rtol=0)
        np.testing.assert_allclose(batch.losses[:, i:i + 1], alone.losses, rtol=1e-3)


def test_a_batch_steps_side_by_side_on_the_cpu(G, targets, net, monkeypatch):
    """With two intra-op threads, three targets step one by one on two threads side by side, of one intra-op
    thread each (with four, two each), each thread with its own copy of G (a step swaps G's noise buffers); every
    target gets its own projection (up to rounding), and the process's thread count is back afterwards, also
    after an error."""
    seen = []
    synthesize = projection._synthesize

    def spy(G_, ws, noise):
        seen.append((threading.current_thread().name, torch.get_num_threads(), id(G_), ws.shape[0]))
        return synthesize(G_, ws, noise)

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(projection, "_synthesize", spy)
        three = torch.cat([targets, targets[:1].flip(3)])
        batch = run(G, three, net, steps=6, seed=[5, 7, 9])
        steps = [s for s in seen if s[0].startswith("toonlib-project")]
        assert len(steps) == 3 * 6 and {s[1] for s in steps} == {1} and {s[3] for s in steps} == {1}
        assert len({s[0] for s in steps}) == 2 and len({s[2] for s in steps}) == 2
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(projection, "_synthesize", synthesize)
        for i, seed in enumerate([5, 7, 9]):
            alone = run(G, three[i], net, steps=6, seed=seed)
            torch.testing.assert_close(batch.w[i:i + 1], alone.w, atol=1e-3, rtol=0)
            np.testing.assert_allclose(batch.losses[:, i:i + 1], alone.losses, rtol=1e-3)

        def fail(*_):
            raise RuntimeError("stop")

        with pytest.raises(RuntimeError, match="stop"):
            run(G, targets, net, steps=3, callback=fail)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(4)  # more threads than photos: two groups of two intra-op threads each
        seen.clear()
        monkeypatch.setattr(projection, "_synthesize", spy)
        run(G, targets, net, steps=2)
        assert {s[1] for s in seen if s[0].startswith("toonlib-project")} == {2} and torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(threads)


def test_a_batch_on_one_thread_gives_each_target_its_own_latent_exactly(G, targets, net):
    """On one intra-op thread (a 1-vCPU machine) the batch stepped as one group: batched kernels rounded otherwise,
    Adam grew it (0.16 in w after 3 steps on config F), and a folder's latent was not the photo's alone, as
    `toonify_many` promises. The targets step in turn, each computing what it computes alone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        batch = run(G, targets, net, steps=15, seed=[5, 7])
        for i, seed in enumerate([5, 7]):
            alone = run(G, targets[i], net, steps=15, seed=seed)
            assert torch.equal(batch.w[i:i + 1], alone.w) and np.array_equal(batch.losses[:, i:i + 1], alone.losses)
    finally:
        torch.set_num_threads(threads)


def _channels_last(t: torch.Tensor) -> bool:
    """Laid out channels-last, and not merely a tensor that is contiguous both ways."""
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


@pytest.mark.parametrize("avx512", [True, False])
def test_projection_steps_channels_last_where_that_pays(G, targets, net, monkeypatch, avx512):
    """On AVX-512 CPUs (`convolution.channels_last_pays`) the generator's layers and VGG16 take channels-last images;
    the projection is the same as in NCHW up to float rounding (observed max |dw| ~1e-6 after 5 steps)."""
    layouts = []

    def spy(module, inputs, output):
        if torch.is_grad_enabled():  # a step (the final render is a plain forward)
            layouts.append(_channels_last(output))

    monkeypatch.setattr(convolution, "WIDE_DIRECT_CONV", avx512)
    hooks = [G.synthesis.b32.conv1.register_forward_hook(spy), net.net.slice2.register_forward_hook(spy)]
    try:
        result = run(G, targets, net, steps=5, precision="fp32")
    finally:
        for hook in hooks:
            hook.remove()
    assert len(layouts) == 2 * 5 and set(layouts) == {avx512}  # two modules, five steps
    monkeypatch.setattr(convolution, "channels_last_pays", lambda device, winograd=False: not avx512)
    other = run(G, targets, net, steps=5, precision="fp32")
    torch.testing.assert_close(result.w, other.w, atol=1e-4, rtol=0)
    np.testing.assert_allclose(result.losses, other.losses, rtol=1e-4)


@pytest.mark.parametrize("avx512", [True, False])
def test_eval_mode_synthesis_runs_channels_last_on_the_cpu(G, ws, monkeypatch, avx512):
    """In eval mode (`render`, `G(z)`, the app's sliders) the synthesis network's layers compute channels-last on the
    CPU (`convolution.channels_last_pays`) and the image comes back NCHW, with the values of the NCHW pass up to
    float rounding. Inside `convolution.winograd()` (projection's steps) only on AVX-512 CPUs: elsewhere the Winograd
    transforms tile NCHW images. A network in training mode stays NCHW."""
    monkeypatch.setattr(convolution, "WIDE_DIRECT_CONV", avx512)
    seen = []
    hook = G.synthesis.b32.conv1.register_forward_hook(
        lambda module, inputs, output: seen.append(_channels_last(output)))
    try:
        images = render(G, ws)
        with torch.no_grad():
            direct = G.synthesis(ws, noise_mode="const")
            with convolution.winograd(kernels=convolution.FrozenKernels(G)):
                G.synthesis(ws, noise_mode="const")
            G.synthesis.train()
            G.synthesis(ws, noise_mode="const")
    finally:
        G.synthesis.eval()
        hook.remove()
    assert seen == [True, True, avx512, False] and images.is_contiguous() and direct.is_contiguous()
    monkeypatch.setattr(convolution, "channels_last_pays", lambda device, winograd=False: False)
    with torch.no_grad():
        nchw = G.synthesis(ws, noise_mode="const")
    for image in (images, direct):
        torch.testing.assert_close(image, nchw, rtol=1e-5, atol=1e-6)


def test_a_seed_torch_cannot_take_is_refused_with_the_range(G, targets, net, monkeypatch):
    """seed=2**70 failed in torch.Generator.manual_seed with "Overflow when unpacking long long"; the ends of its
    range (-2**63 .. 2**64 - 1) run."""
    for seed in (-2**63, 2**64 - 1, np.uint64(2**64 - 1)):
        assert run(G, targets[0], net, steps=1, seed=seed).steps == 1
    monkeypatch.setattr(projection, "build_lpips", lambda *args: pytest.fail("LPIPS built before the seed was checked"))
    in_range = r"is out of range: a seed is a whole number in -2\*\*63 \.\. 2\*\*64 - 1"
    for target, seed, given in [(targets[0], 2**70, "seed 1180591620717411303424 "),
                                (targets[0], -2**63 - 1, "seed -9223372036854775809 "),
                                (targets, [0, 2**64], "seed 18446744073709551616 "),
                                (targets, 2**64 - 1, r"seed 18446744073709551615 \+ 1 \(target i uses seed \+ i\) ")]:
        with pytest.raises(ValueError, match=given + in_range):
            projection.project(G, target, steps=1, seed=seed, progress=False)


def test_a_target_with_nan_or_inf_is_refused_before_any_step(G, targets, monkeypatch):
    """A NaN pixel gave NaN losses and a NaN latent, silently (a float array: numpy's RuntimeWarning "invalid value
    encountered in cast" and on); an infinite one was called out of [-1, 1] as "got -inf .. inf"."""
    monkeypatch.setattr(projection, "build_lpips", lambda *args: pytest.fail("LPIPS built before the target was read"))
    nan = targets[0].clone()
    nan[0, 0, 0] = float("nan")
    inf = targets[:1].clone()
    inf[0, 1, 2, 3], inf[0, 2, 3, 4] = float("inf"), -float("inf")
    array = (targets[0].permute(1, 2, 0).numpy() + 1) / 2  # a float image array in [0, 1], as read_image reads it
    array[5, 5, 1] = np.nan
    for target, count in [(nan, 1), (inf, 2), (array, 1), ([targets[1], nan], 1), (array.astype(np.float64), 1)]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # not numpy's cast warning: refused before the cast
            with pytest.raises(ValueError, match=rf"the (target image tensor|image array) holds NaN or infinite values "
                                                 rf"\({count} of 3072\)"):  # an array: read_image's, for every reader
                projection.project(G, target, steps=1, progress=False)


def test_a_target_that_is_no_crop_is_warned_of_in_python_as_on_the_command_line(G, net):
    """`toonlib project photo.png` warned that a 600x400 photo is no aligned crop; `toonlib.project(G, photo)` said
    nothing and projected its centre square. The encoders' `encode` says the same (`images.warn_if_not_a_crop`)."""
    from PIL import Image

    from toonlib.images import NotACropWarning

    wide, square = Image.new("RGB", (48, 32), "grey"), Image.new("RGB", (32, 32), "grey")
    kwargs = dict(steps=1, lpips_net=net, w_avg_samples=W_AVG_SAMPLES, progress=False)
    with pytest.warns(NotACropWarning) as caught:
        project(G, wide, **kwargs)
        project(G, [square, np.asarray(wide)], **kwargs)
    assert [str(w.message) for w in caught] == [
        "the target image is 48x32, not square: project takes an FFHQ-aligned face (toonlib.align_face(path).image); "
        "projecting its centre square",
        "target[1] is 48x32, not square: project takes an FFHQ-aligned face (toonlib.align_face(path).image); "
        "projecting its centre square"]
    assert all(w.filename == __file__ for w in caught)  # the user's line, not toonlib's


def test_latents_are_not_written_over_a_photo(tmp_path):
    """`save_latent(w, "me.jpg")` and `ProjectionResult.save("me.jpg")` replaced the photo with an .npz file, then
    warned of the suffix; the command line refuses such an output before it writes (forty-third session's audit). An
    image file under another name is kept too."""
    import toonlib

    w = torch.randn(1, 4, 8)
    photo = tmp_path / "me.jpg"
    PIL.Image.new("RGB", (16, 16), "red").save(photo)
    PIL.Image.new("RGB", (16, 16), "red").save(tmp_path / "picture", format="PNG")
    kept = {path: path.read_bytes() for path in (photo, tmp_path / "picture")}
    result = ProjectionResult(w=w, images=torch.zeros(1, 3, 8, 8), noise={}, losses=np.zeros((1, 1), np.float32),
                              space="w+", steps=1)
    for writer, save in (("save_latent", lambda path: toonlib.save_latent(w, path)),
                         ("ProjectionResult.save", result.save)):
        with pytest.raises(ValueError, match=rf"^{re.escape(writer)} writes latents as an \.npz file \(NVIDIA's "
                                             r"projected_w\.npz\), and '.*me\.jpg' is a JPEG image: nothing was "
                                             r"written; name it 'me\.npz'$"):
            save(photo)
        with pytest.raises(ValueError, match=r"and '.*picture' is a PNG image: nothing was written; name it "
                                             r"'picture\.npz'$"):
            save(tmp_path / "picture")
        with pytest.raises(ValueError, match=r"names an image \(\.png\): nothing was written"):
            save(tmp_path / "new.png")  # none there yet: an image's name all the same
    assert {path: path.read_bytes() for path in kept} == kept and not (tmp_path / "new.png").exists()


def test_the_video_frames_of_a_projection_are_not_taken_for_a_users_tensor(net):
    """`toonlib project --video` of a PNG warned "the image tensor's values all lie in 0 .. 5.03 ... pass x / 127.5 -
    1": the frames are the generator's own drawings, whatever their values (forty-third session's audit)."""
    from toonlib.messages import ToonlibWarning

    torch.manual_seed(1)
    bright = Generator(z_dim=32, w_dim=32, img_resolution=32, channel_base=256, channel_max=32).eval()
    with torch.no_grad():
        bright.synthesis.b32.torgb.bias.add_(40.0)  # draws values above 2 only, as no FFHQ generator does
    assert render(bright, bright.mapping(torch.randn(1, 32), None)).amin() > 2
    frames = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", ToonlibWarning)
        project(bright, PIL.Image.new("RGB", (32, 32), "gray"), steps=2, save_every=1, on_frame=frames.append,
                lpips_net=net, progress=False)
    assert len(frames) == 2 and frames[-1].shape == (32, 64, 3) and (frames[-1][:, 32:] == 255).all()


def test_latents_saved_under_another_suffix_are_warned_of(tmp_path):
    """`result.save("me.png")` wrote an .npz file named me.png without a word, which `toonlib toonify me.png` then
    took for a photo and refused; the command line refuses such names (`project -o`)."""
    from toonlib.messages import ToonlibWarning
    from toonlib.projection import load_latent, save_latent

    w = torch.randn(1, 4, 8)
    with pytest.warns(ToonlibWarning, match=r"^wrote latents, an \.npz file, to '.*me\.latent': tools choose their "
                                            r"reader by the suffix .*; name it 'me\.npz'$"):
        save_latent(w, tmp_path / "me.latent")  # an image's suffix is refused (the next test)
    assert torch.equal(load_latent(tmp_path / "me.latent"), w)  # what was written is the latent all the same
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # .npz in any case: no warning
        save_latent(w, tmp_path / "me.NPZ")
    result = ProjectionResult(w=w, images=torch.zeros(1, 3, 8, 8), noise={}, losses=np.zeros((1, 1), np.float32),
                              space="w+", steps=1)
    with pytest.warns(ToonlibWarning, match=r"to '.*projection': tools choose their reader by the suffix"):
        result.save(tmp_path / "projection")  # ProjectionResult.save wrote it without a word
    # the arguments swapped, one latent without its batch: each said what to pass
    with pytest.raises(TypeError, match=r"save_latent\(w, path\) takes the latents first, then the path \(swapped\)"):
        save_latent(tmp_path / "w.npz", w)
    with pytest.raises(ValueError, match=r"latents have shape \[4, 8\], .* \(one latent \[num_ws, w_dim\]: pass "
                                         r"w\[None\]\)"):
        save_latent(w[0], tmp_path / "w.npz")
    # latents that diverged were written, and refused only when rendered; num_ws failed inside torch or gave no layers
    with pytest.raises(ValueError, match=r"^the latents hold NaN or infinite values \(32 of 32\): a projection or an "
                                         r"edit that diverged; nothing was written"):
        save_latent(torch.full_like(w, float("nan")), tmp_path / "nan.npz")
    assert not (tmp_path / "nan.npz").exists()
    written = w.double()
    written[0, 2, 5] = 1e300  # another tool's float64 file: inf in float32; read, it was refused only when drawn
    np.savez(tmp_path / "nvidia.npz", w=written.numpy())
    with pytest.raises(ValueError, match=r"nvidia.npz: the latents hold NaN or infinite values \(1 of 32\): a "
                                         r"projection or an edit that diverged wrote them; project the photo again$"):
        load_latent(tmp_path / "nvidia.npz")
    for num_ws in ("8", 0):
        with pytest.raises(ValueError, match=rf"^num_ws must be a whole number >= 1, got {num_ws!r}$"):
            load_latent(tmp_path / "me.NPZ", num_ws=num_ws)


def test_same_seed_same_result(G, targets, net):
    a, b = (run(G, targets[0], net, steps=4, seed=3) for _ in range(2))
    assert torch.equal(a.w, b.w)


def test_callers_generator_is_not_modified(G, targets, net):
    before = {k: v.clone() for k, v in G.state_dict().items()}
    run(G, targets[0], net, steps=3)
    after = G.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in G.parameters())
    assert not G.training


def test_a_callback_stops_the_projection_and_closes_its_bar(G, targets, net):
    """A callback's exception (a stop button, the web app's cancel) stops the projection and reaches the caller; the
    progress bar is closed (left open, it pushed the next bar down a line, in a terminal and in a notebook)."""
    from tqdm.auto import tqdm

    class Stop(Exception):
        pass

    steps = []

    def stop_at_the_second_step(step, distance, w):
        steps.append(step)
        if step == 1:
            raise Stop

    with pytest.raises(Stop) as stopped:  # its traceback kept, as a notebook keeps it
        project(G, targets[0], steps=50, lpips_net=net, w_avg_samples=W_AVG_SAMPLES, callback=stop_at_the_second_step)
    assert steps == [0, 1] and stopped.value.__traceback__ is not None
    assert list(tqdm._instances) == []  # no bar left open


def test_callback_frames_and_early_stop(G, targets, net):
    calls = []
    result = run(G, targets[0], net, steps=7, save_every=3,
                 callback=lambda step, dist, w: calls.append((step, dist, tuple(w.shape))))
    assert [c[0] for c in calls] == list(range(7))
    assert all(c[2] == (1, G.num_ws, G.w_dim) for c in calls)
    np.testing.assert_allclose([c[1] for c in calls], result.losses[:, 0], rtol=1e-6)
    assert len(result.frames) == 3  # steps 0, 3, 6
    assert all(f.shape == (32, 64, 3) and f.dtype == np.uint8 for f in result.frames)

    # min_delta larger than any distance: no step counts as an improvement after the first.
    stopped = run(G, targets[0], net, steps=50, early_stop=(3, 1.0), save_every=100)
    assert stopped.steps == 4 and stopped.losses.shape == (4, 1)
    assert len(stopped.frames) == 2  # step 0 and the step it stopped at


def test_save_video(G, targets, net, tmp_path):
    result = run(G, targets[0], net, steps=3, save_every=1)
    save_video(result, tmp_path / "p.mp4", fps=5)
    assert (tmp_path / "p.mp4").stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == ["p.mp4"]
    with pytest.raises(ValueError, match="save_every"):
        save_video(run(G, targets[0], net, steps=1), tmp_path / "q.mp4")


def test_a_video_ffmpeg_failed_to_write_keeps_the_one_there(G, targets, net, tmp_path, monkeypatch):
    """imageio-ffmpeg does not check ffmpeg's exit status: on a full disk ("Could not write header") an empty file
    replaced the video that was there, and `toonlib project --video` said "wrote" (audit)."""
    import imageio_ffmpeg

    result = run(G, targets[0], net, steps=3, save_every=1)
    save_video(result, tmp_path / "p.mp4", fps=5)
    before = (tmp_path / "p.mp4").read_bytes()
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "p.mp4"))[0] == len(result.frames) == 3

    def failing_ffmpeg(path, size, **kwargs):  # ffmpeg stopped at its header: an empty file, no error raised
        open(path, "wb").close()
        while True:
            yield

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", failing_ffmpeg)
    with pytest.raises(OSError, match=r"cannot write .*p\.mp4: the video ffmpeg wrote holds 0 of its 3 frames \(\d+ MB "
                                      r"free there; ffmpeg's own messages say why\)"):
        save_video(result, tmp_path / "p.mp4", fps=5)
    assert (tmp_path / "p.mp4").read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["p.mp4"]


def test_frames_go_to_on_frame_as_they_are_made_and_a_video_is_written_from_them(G, targets, net, tmp_path):
    """`toonlib project --video` kept every frame in memory until the end (6 MiB each at 1024 px: 3 GB with
    --video-every 1; forty-first session's audit): `on_frame` takes each as it is made, and `video_writer` sends it
    to ffmpeg at once."""
    import imageio_ffmpeg

    steps_done, seen = [], []
    result = run(G, targets[0], net, steps=7, save_every=3, callback=lambda step, dist, w: steps_done.append(step),
                 on_frame=lambda frame: seen.append((len(steps_done), frame.shape, frame.dtype)))
    # steps 0, 3 and 6, each before its step's callback: as it came, not at the end
    assert seen == [(0, (32, 64, 3), np.uint8), (3, (32, 64, 3), np.uint8), (6, (32, 64, 3), np.uint8)]
    assert result.frames == []  # none kept
    with projection.video_writer(tmp_path / "p.mp4", fps=5) as send:
        again = run(G, targets[0], net, steps=4, save_every=1, on_frame=send)
        assert [p.name for p in tmp_path.iterdir() if p.name == "p.mp4"] == []  # replaced once the block ends
    assert again.frames == [] and imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "p.mp4"))[0] == 4
    # an error in the block writes nothing; on_frame without save_every would get nothing: refused
    with pytest.raises(KeyboardInterrupt), projection.video_writer(tmp_path / "q.mp4") as send:
        run(G, targets[0], net, steps=4, save_every=1, on_frame=send,
            callback=lambda step, dist, w: (_ for _ in ()).throw(KeyboardInterrupt) if step == 2 else None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.mp4"]
    with pytest.raises(ValueError, match=r"^on_frame gets the frames save_every=k makes: give save_every too"):
        run(G, targets[0], net, steps=1, on_frame=print)


def test_bad_arguments(G, targets, net, monkeypatch):
    with pytest.raises(ValueError, match="space"):
        run(G, targets[0], net, space="z")
    with pytest.raises(ValueError, match="seeds"):
        run(G, targets, net, steps=1, seed=[1])
    with pytest.raises(TypeError, match=r"an image, not a file name \('me.jpg'\): .*toonlib.align_face\(path\)"):
        run(G, "me.jpg", net, steps=1)
    # checked before LPIPS is built (which may download VGG16)
    monkeypatch.setattr(projection, "build_lpips", lambda *args: pytest.fail("LPIPS built before the arguments"))
    with pytest.raises(ValueError, match="precision must be one of"):
        projection.project(G, targets[0], steps=1, precision="fp8")
    # numbers a user gets wrong: named, with their range, before any work (they used to fail inside the loop,
    # with Python's words for it, or to give NaN latents: w_avg_samples=0)
    for kwargs, message in [({"save_every": 0}, r"save_every \(a frame every k steps\) must be a whole number >= 1, "
                                                  "got 0"),
                            ({"steps": 2.5}, "steps must be a whole number >= 1, got 2.5"),
                            ({"steps": 500.0}, r"steps must be a whole number >= 1, write it as an int: 500, "
                                                 r"not 500\.0"),
                            ({"steps": "5"}, "steps must be a whole number >= 1, got '5'"),
                            ({"w_avg_samples": 0}, "w_avg_samples must be a whole number >= 2, got 0"),
                            # beside w_stats, which it is ignored beside, it passed
                            ({"w_avg_samples": 1, "w_stats": (G.mapping.w_avg[None], 1.0)},
                             "w_avg_samples must be a whole number >= 2, got 1"),
                            ({"early_stop": 5}, r"early_stop is \(patience, min_delta\): .* got 5"),
                            ({"early_stop": (0, 1e-4)}, "early_stop's patience must be a whole number >= 1, got 0")]:
        with pytest.raises(ValueError, match=message):
            projection.project(G, targets[0], **{"steps": 1, **kwargs})
    assert projection.project(G, targets[0], steps=np.int64(1), lpips_net=net, progress=False).steps == 1


# --------------------------------------------------------------------------------------------
# Schedules and losses


def test_schedules_match_the_formulas():
    # lr = 0.1 * (0.5 - 0.5 cos(pi * min(1, (1 - t) / 0.25))) * min(1, t / 0.05)
    expected_lr = {0.0: 0.0, 0.02: 0.04, 0.5: 0.1, 0.8: 0.05 * (1 + math.cos(0.2 * math.pi)),
                   0.99: 0.05 * (1 - math.cos(0.04 * math.pi))}
    for t, lr in expected_lr.items():
        assert learning_rate(t) == pytest.approx(lr, abs=1e-12), t
    assert learning_rate(0.8) == pytest.approx(0.0904508, abs=1e-7)
    assert learning_rate(0.5, initial=0.3) == pytest.approx(0.3)
    # scale = w_std * 0.05 * max(0, 1 - t / 0.75)^2, with w_std = 2
    expected_scale = {0.0: 0.1, 0.02: 0.1 * (1 - 0.02 / 0.75) ** 2, 0.5: 0.1 / 9, 0.8: 0.0, 0.99: 0.0}
    for t, scale in expected_scale.items():
        assert latent_noise_scale(t, 2.0) == pytest.approx(scale, abs=1e-12), t


def test_perceptual_distance_equals_lpips_with_its_gradient(net):
    """The fused per-layer distance (losses._UnitChannelDistance) against lpips' own composition: values and the
    gradient with respect to the images, per sample."""
    a, b = torch.rand(2, 2, 3, 32, 32) * 2 - 1
    a.requires_grad_(True)
    weights = torch.tensor([1.0, -2.0])
    ours, theirs = PerceptualDistance(net, b)(a), net(a, b).flatten()
    torch.testing.assert_close(ours, theirs)
    (g_ours,) = torch.autograd.grad((ours * weights).sum(), a)
    (g_theirs,) = torch.autograd.grad((theirs * weights).sum(), a)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-4, atol=1e-5 * float(g_theirs.abs().max()))


def test_perceptual_distance_under_bfloat16_autocast_takes_its_layers_in_float32(net, monkeypatch):
    """Under autocast (bf16 projection) the trunk computes in bfloat16 and each layer's distance from its bfloat16
    features in float32 by the fused function, not lpips' composition in bfloat16: the value is float32 and close to
    lpips' float32 one."""
    a, b = torch.rand(2, 2, 3, 32, 32) * 2 - 1
    calls = []
    apply = losses._UnitChannelDistance.apply
    monkeypatch.setattr(losses._UnitChannelDistance, "apply", lambda f, *rest: calls.append(f.dtype) or apply(f, *rest))
    a.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = PerceptualDistance(net, b)(a)
    assert calls == [torch.bfloat16] * len(net.lins) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, net(a, b).flatten(), rtol=0.03, atol=0)
    (grad,) = torch.autograd.grad(ours.sum(), a)
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_perceptual_distance_layer_by_hand_and_at_dead_pixels():
    """One layer: the value by its formula, the gradient against float64 autograd of the plain composition, and at a
    pixel whose features are all zero (|f| = 0, where autograd of the composition gives NaN: sqrt at 0) the
    derivative of f / (|f| + eps) there, w (0 - t) / eps, not NaN."""
    torch.manual_seed(0)
    f = torch.rand(2, 5, 4, 3, dtype=torch.float64)
    f[0, :, 1, 2] = 0
    target = losses._unit_channels(torch.rand(1, 5, 4, 3, dtype=torch.float64))
    w = torch.rand(5, dtype=torch.float64)
    unit = f / (f.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
    expected = ((unit - target).square() * w.reshape(1, -1, 1, 1)).sum(dim=1).mean(dim=[1, 2])
    x = f.clone().requires_grad_(True)
    dist = losses._UnitChannelDistance.apply(x, target, w)
    torch.testing.assert_close(dist, expected)
    (grad,) = torch.autograd.grad(dist.sum(), x)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad[0, :, 1, 2], 2 / 12 * w * (0 - target[0, :, 1, 2]) / 1e-10)
    live = f.clone().requires_grad_(True)
    live_unit = live / (live.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
    reference = ((live_unit - target).square() * w.reshape(1, -1, 1, 1)).sum(dim=1).mean(dim=[1, 2]).sum()
    (expected_grad,) = torch.autograd.grad(reference, live)
    mask = torch.ones_like(f, dtype=torch.bool)
    mask[0, :, 1, 2] = False
    torch.testing.assert_close(grad[mask], expected_grad[mask])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("targets", [1, 3])  # one target for the batch, or one per image
def test_perceptual_distance_layer_in_chunks(dtype, layout, targets, monkeypatch):
    """On the CPU a layer's distance and gradient are computed `DISTANCE_CHUNK` values at a time (here 7 pixels,
    the last chunk shorter), in either layout (the target's the other one when there is one target), from float32
    or bfloat16 features: the values of the float64 composition of those features, the gradient too (rounded to
    bfloat16 for bfloat16 features, in their layout)."""
    monkeypatch.setattr(losses, "DISTANCE_CHUNK", 6 * 7)
    torch.manual_seed(0)
    f = torch.rand(3, 6, 5, 4).to(dtype).contiguous(memory_format=layout)
    other = torch.channels_last if layout == torch.contiguous_format else torch.contiguous_format
    target = losses._unit_channels(torch.rand(targets, 6, 5, 4))
    target = target.contiguous(memory_format=other if targets == 1 else layout)
    w = torch.rand(6)
    x = f.double().requires_grad_(True)
    unit = x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
    expected = ((unit - target.double()).square() * w.double().reshape(1, -1, 1, 1)).sum(dim=1).mean(dim=[1, 2])
    (expected_grad,) = torch.autograd.grad((expected * torch.tensor([1.0, -2.0, 0.5])).sum(), x)
    ours = f.clone().requires_grad_(True)
    dist = losses._UnitChannelDistance.apply(ours, target, w)
    assert dist.dtype == torch.float32
    torch.testing.assert_close(dist.double(), expected, rtol=1e-6, atol=0)
    (grad,) = torch.autograd.grad((dist * torch.tensor([1.0, -2.0, 0.5])).sum(), ours)
    assert grad.dtype == dtype and grad.is_contiguous(memory_format=layout)
    exact = 2**-8 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(grad.double(), expected_grad, rtol=exact, atol=1e-6 * float(expected_grad.abs().max()))


def test_perceptual_distance_of_a_net_in_training_mode_is_the_metric_without_dropout(net):
    """A metric left in training mode (as a training loss leaves it) ran its heads through dropout: the distance, and
    so a projection with the same seed, changed from call to call. It is lpips' metric in eval mode."""
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    distance = PerceptualDistance(net, images)
    expected = net(images + 0.1, images).flatten()
    net.train()
    try:
        assert losses._plain_lin_weight(net.lins[0]) is not None
        for _ in range(2):
            torch.testing.assert_close(distance(images + 0.1), expected)
    finally:
        net.eval()


def test_noise_regularization_by_hand():
    ones16, ones4 = torch.ones(1, 1, 16, 16), torch.ones(1, 1, 4, 4)
    # Constant maps correlate fully: 2 terms per scale; 16x16 has scales 16 and 8, 4x4 only 4.
    assert noise_regularization([ones16, ones4]).tolist() == [6.0]
    checker = (torch.arange(8)[:, None] + torch.arange(8)).remainder(2).float().mul(2).sub(1)
    assert noise_regularization([checker[None, None] * 2]).tolist() == [2 * 16.0]
    batch = torch.randn(3, 1, 16, 16)
    torch.testing.assert_close(noise_regularization([batch]),
                               torch.cat([noise_regularization([m[None]]) for m in batch]))


def test_normalize_noise_per_sample():
    maps = [torch.randn(2, 1, 8, 8) * torch.tensor([3.0, 0.5]).view(2, 1, 1, 1) + 4]
    normalize_noise_(maps)
    torch.testing.assert_close(maps[0].mean(dim=[1, 2, 3]), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(maps[0].square().mean(dim=[1, 2, 3]), torch.ones(2))


def test_default_lpips_explains_missing_vgg_weights(monkeypatch, tmp_path):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)  # never download 553 MB in a test
    monkeypatch.setattr(losses, "_LPIPS_CACHE", {})
    with pytest.raises(PerceptualWeightsError) as info:
        losses.build_lpips("cpu")
    message = str(info.value)
    assert "VGG16" in message and str(tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth") in message


# --------------------------------------------------------------------------------------------
# Targets and files


def test_targets_in_every_form():
    rgb = np.random.RandomState(0).randint(0, 256, (40, 48, 3), dtype=np.uint8)
    images = as_images([PIL.Image.fromarray(rgb).convert("RGBA"), rgb, torch.zeros(3, 32, 32),
                        torch.zeros(2, 3, 64, 64)], 32)
    assert images.shape == (5, 3, 32, 32) and images.dtype == torch.float32
    torch.testing.assert_close(images[0], images[1])
    same_size = torch.from_numpy(rgb[4:36, 8:40]).permute(2, 0, 1).float() / 127.5 - 1  # centre crop, 32 px
    torch.testing.assert_close(as_images(rgb[4:36, 8:40], 32)[0], same_size)
    with pytest.raises(TypeError):
        as_images("face.png", 32)
    # a stacked array [N, H, W, 3] is N images, as a tensor [N, 3, H, W] is (it was refused by its shape)
    torch.testing.assert_close(as_images(np.stack([rgb, rgb[::-1]]), 32), as_images([rgb, rgb[::-1]], 32))


def test_targets_are_read_as_photos_are():
    """16-bit and transparent images and float arrays as `read_image` reads them (a 16-bit PNG used to become a
    white target, transparency black); a [0, 255] tensor is refused, not clamped to white."""
    rgb = np.random.RandomState(0).randint(0, 256, (32, 32, 3), dtype=np.uint8)
    expected = as_images(rgb, 32)
    grey16 = PIL.Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257)  # mode I;16
    torch.testing.assert_close(as_images(grey16, 32), as_images(np.repeat(rgb[:, :, :1], 3, axis=2), 32))
    torch.testing.assert_close(as_images(rgb.astype(np.float32) / 255, 32), expected)
    torch.testing.assert_close(as_images(rgb.astype(np.uint16) * 257, 32), expected)
    clear = np.zeros((32, 32, 4), np.uint8)  # fully transparent: white, as read_image composites it
    assert as_images(clear, 32).min() == 1 and as_images(PIL.Image.fromarray(clear), 32).min() == 1
    with pytest.raises(ValueError, match=r"values in \[-1, 1\], got 0 .. 255: for 0 .. 255 use x / 127.5 - 1"):
        as_images(torch.tensor([0.0, 255.0]).repeat(3, 16, 1), 32)


def test_npz_round_trip(projections, tmp_path):
    result = projections["w+"]
    path = tmp_path / "projected_w.npz"
    result.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["projected_w.npz"]  # no temporary file left
    loaded = ProjectionResult.load(path)
    assert torch.equal(loaded.w, result.w) and np.array_equal(loaded.losses, result.losses)
    assert loaded.noise.keys() == result.noise.keys()
    assert all(torch.equal(loaded.noise[k], result.noise[k]) for k in result.noise)
    assert (loaded.space, loaded.steps, loaded.images) == ("w+", 40, None)
    assert torch.equal(load_latent(path), result.w)


def test_load_nvidia_npz(tmp_path):
    w = np.random.RandomState(0).randn(1, 8, 32).astype(np.float32)
    np.savez(tmp_path / "projected_w.npz", w=w)
    assert torch.equal(load_latent(tmp_path / "projected_w.npz"), torch.from_numpy(w))
    # as a ProjectionResult too (it used to be KeyError: 'losses is not a file in the archive')
    loaded = ProjectionResult.load(tmp_path / "projected_w.npz")
    assert torch.equal(loaded.w, torch.from_numpy(w)) and (loaded.space, loaded.steps, loaded.noise) == ("w+", 0, {})
    assert loaded.losses.shape == (0, 1)
    np.savez(tmp_path / "w_space.npz", w=np.repeat(w[:, :1], 8, axis=1))  # NVIDIA's projector: W, repeated
    assert ProjectionResult.load(tmp_path / "w_space.npz").space == "w"
    np.savez(tmp_path / "single.npz", w=w[0])
    assert load_latent(tmp_path / "single.npz", num_ws=8).shape == (1, 8, 32)
    with pytest.raises(ValueError, match=r"\[N, 18, w_dim\]"):
        load_latent(tmp_path / "projected_w.npz", num_ws=18)
    # 2-D with another number of rows than num_ws: another model's W+ latent (or W latents, saved as [N, 1, w_dim])
    with pytest.raises(ValueError, match=r"w has shape \[8, 32\], one W\+ latent of 8 layers, and this model takes 18: "
                                         r"a latent of another model; W latents are read as \[N, 1, 32\]"):
        load_latent(tmp_path / "single.npz", num_ws=18)
    np.savez(tmp_path / "other.npz", z=w)
    with pytest.raises(ValueError, match="'w'"):
        load_latent(tmp_path / "other.npz")


def test_load_w_latents_from_npz(projections, G, tmp_path):
    """W latents [N, 1, w_dim] are repeated to num_ws layers, as rosinality's W latents are; a 2-D array is one W+
    latent (another model's when its rows are not num_ws: refused, not read as W latents, which gave a 1024 px
    latent [18, 512] 18 toons of a 256 px model); the docstring said [N, w_dim] for W latents."""
    w = torch.randn(3, 32)
    repeated = w[:, None].repeat(1, 8, 1)
    np.savez(tmp_path / "one_layer.npz", w=w[:, None].numpy())
    assert torch.equal(load_latent(tmp_path / "one_layer.npz", num_ws=8), repeated)
    loaded = ProjectionResult.load(tmp_path / "one_layer.npz", num_ws=8)
    assert torch.equal(loaded.w, repeated) and loaded.w.is_contiguous()
    assert (loaded.space, loaded.steps, loaded.losses.shape) == ("w", 0, (0, 3))
    np.savez(tmp_path / "w_latents.npz", w=w.numpy())
    with pytest.raises(ValueError, match=r"W latents are read as \[N, 1, 32\]"):
        ProjectionResult.load(tmp_path / "w_latents.npz", num_ws=8)
    eight = torch.randn(8, 32)  # as many rows as layers: one W+ latent, with num_ws or without
    np.savez(tmp_path / "w_plus.npz", w=eight.numpy())
    assert torch.equal(load_latent(tmp_path / "w_plus.npz", num_ws=8), eight[None])
    assert torch.equal(load_latent(tmp_path / "w_plus.npz"), eight[None])
    # a projection in W space is saved as [N, num_ws, w_dim]: read back exactly, with num_ws or without
    result = projections["w"]
    result.save(tmp_path / "w_space.npz")
    with np.load(tmp_path / "w_space.npz") as npz:
        assert npz["w"].shape == (1, 8, 32) and str(npz["space"]) == "w"
    for num_ws in (None, 8):
        loaded = ProjectionResult.load(tmp_path / "w_space.npz", num_ws=num_ws)
        assert torch.equal(loaded.w, result.w) and (loaded.space, loaded.steps) == ("w", 40)
        assert torch.equal(render(G, loaded.w, loaded.noise), render(G, result.w, result.noise))


def test_load_rosinality_projection(tmp_path):
    w_plus, w = torch.randn(8, 32, requires_grad=True), torch.randn(32)
    entry = {"img": torch.zeros(3, 32, 32), "noise": [torch.randn(1, 1, 4, 4)]}
    torch.save({"a.png": {**entry, "latent": w_plus}, "b.png": {**entry, "latent": w}}, tmp_path / "proj.pt")
    latents = load_latent(tmp_path / "proj.pt", num_ws=8)
    assert latents.shape == (2, 8, 32)
    assert torch.equal(latents[0], w_plus.detach()) and torch.equal(latents[1], w.expand(8, 32))
    with pytest.raises(ValueError, match="it holds W latents and W\\+ latents of 8 layers; pass num_ws to repeat "
                                         "the W ones"):
        load_latent(tmp_path / "proj.pt")
    # rosinality's projector in its default W mode: [N, 1, w_dim] as an .npz's W latents, which `toonify` repeats (it
    # was "pass num_ws to repeat it", which no command can; thirty-fourth session's CLI audit)
    torch.save({"b.png": {**entry, "latent": w}}, tmp_path / "w.pt")
    assert torch.equal(load_latent(tmp_path / "w.pt"), w[None, None])
    torch.save({"a.png": {**entry, "latent": w_plus}, "c.png": {**entry, "latent": torch.zeros(10, 32)}},
               tmp_path / "two_models.pt")  # not "W latents and W+ latents"
    with pytest.raises(ValueError, match=r"its latents have different shapes \(\[8, 32\], \[10, 32\]\): latents of "
                                         r"different models$"):
        load_latent(tmp_path / "two_models.pt")
    torch.save({"a.png": {**entry, "latent": w_plus}, "c.png": {**entry, "latent": torch.zeros(8, 16)}},
               tmp_path / "two_widths.pt")  # a RuntimeError inside torch.stack (the review)
    with pytest.raises(ValueError, match=r"different shapes \(\[8, 16\], \[8, 32\]\)"):
        load_latent(tmp_path / "two_widths.pt")
    assert ProjectionResult.load(tmp_path / "proj.pt", num_ws=8).w.shape == (2, 8, 32)  # as the message says
    # e4e's scripts/inference.py saves its codes as one tensor [N, n_styles, w_dim], JoJoGAN's e4e inversion one
    # photo's as {'latent': [n_styles, w_dim]}: both were "not a latent file" (thirty-seventh session's audit)
    codes = torch.randn(3, 8, 32)
    torch.save(codes, tmp_path / "latents.pt")
    assert torch.equal(load_latent(tmp_path / "latents.pt", num_ws=8), codes)
    torch.save(codes[1], tmp_path / "one.pt")
    assert torch.equal(load_latent(tmp_path / "one.pt"), codes[1:2])
    torch.save({"latent": codes[2]}, tmp_path / "jojo.pt")
    assert torch.equal(load_latent(tmp_path / "jojo.pt", num_ws=8), codes[2:3])
    with pytest.raises(ValueError, match=r"latents\.pt: latents have shape \[3, 8, 32\], expected \[N, 10, w_dim\]"):
        load_latent(tmp_path / "latents.pt", num_ws=10)  # another model's
    # The latents are the caller's: torch maps a zip file's tensors, which a file saved over them changed (review).
    loaded = load_latent(tmp_path / "latents.pt")
    torch.save(torch.zeros(1, 8, 32), tmp_path / "latents.pt")
    assert torch.equal(loaded, codes)
    torch.save(w_plus.detach()[None, :1], tmp_path / "w.pt")  # W latents as a tensor, repeated as an .npz's are
    assert torch.equal(load_latent(tmp_path / "w.pt", num_ws=8), w_plus.detach()[None, :1].expand(1, 8, 32))
    for name, shape in (("image.pt", (3, 64, 64)), ("mask.pt", (1, 64, 64)), ("square.pt", (8, 8))):
        torch.save(torch.rand(shape), tmp_path / name)  # no latents: said at once, not "latents of another model"
        with pytest.raises(ValueError, match=rf"{re.escape(name)}: not a latent file \(expected an \.npz"):
            load_latent(tmp_path / name)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "not_latents.pt")
    with pytest.raises(ValueError, match=r"not a latent file \(expected an \.npz with key 'w', rosinality's projector "
                                         r"output: .*, e4e's latents\.pt: a tensor \[N, n_styles, w_dim\], or "
                                         r"JoJoGAN's \{'latent': tensor\}\)$"):
        load_latent(tmp_path / "not_latents.pt")
    PIL.Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")  # an image given as the latent: not torch's unpickling
    with pytest.raises(ValueError, match="photo.png: not a latent file"):  # error advising weights_only=False
        load_latent(tmp_path / "photo.png")
    with pytest.raises(FileNotFoundError):
        load_latent(tmp_path / "missing.npz")


def test_precomputed_w_statistics_give_the_same_projection(net):
    G = Generator(z_dim=16, w_dim=16, img_resolution=16, channel_base=64, channel_max=8).eval()
    target = torch.rand(1, 3, 16, 16) * 2 - 1
    a = project(G, target, steps=2, lpips_net=net, progress=False, w_avg_samples=500)
    w_avg, w_std = w_statistics(G, 500)
    b = project(G, target, steps=2, lpips_net=net, progress=False, w_stats=(w_avg, w_std))
    assert torch.equal(a.w, b.w)
    moved = project(G, target, steps=2, lpips_net=net, progress=False, w_stats=(w_avg + 1, w_std))
    assert not torch.allclose(moved.w, a.w)  # the given statistics are the ones used


def test_projection_derives_from_the_fixed_kernels_once(G, targets, net, monkeypatch):
    """project() runs inside convolution.winograd with a frozen-kernel cache: VGG16's 256-channel layers (8x8 pixels
    for these 32 px images) are transformed for Winograd, and G's demodulation energies computed, on the first step
    only; the next steps reuse them. In float32 and as on CPUs without AVX-512 (`convolution.WIDE_DIRECT_CONV`),
    where Winograd runs: 'auto' is bfloat16 on CPUs with AVX512-BF16, and AVX-512 CPUs convolve directly."""
    monkeypatch.setattr(convolution, "WIDE_DIRECT_CONV", False)
    caches = []

    class Recording(convolution.FrozenKernels):
        def __init__(self, *frozen):
            super().__init__(*frozen)
            self.derived: list[str] = []
            caches.append(self)

        def get(self, kind, weight, derive):
            return super().get(kind, weight, lambda w: self.derived.append(kind) or derive(w))

    monkeypatch.setattr(convolution, "FrozenKernels", Recording)
    run(G, targets[0], net, steps=3, precision="fp32")
    assert len(caches) == 1
    derived = caches[0].derived
    assert derived.count("winograd2") == 2  # F(2x2, 3x3) of VGG16's conv3_2 and conv3_3, once each
    layers = [m for m in G.synthesis.modules() if isinstance(m, SynthesisLayer)]  # the demodulated ones
    assert len(layers) == 7 and derived.count("energy") == len(layers)


def test_a_step_that_cannot_be_recorded_as_a_cuda_graph_runs_op_by_op():
    """On CUDA, project() records its step as a CUDA graph after GRAPH_WARMUP_STEPS steps; when the recording fails
    (here: the step itself refuses, or there is no GPU), it warns once and goes on computing the steps op by op."""
    calls = []

    def compute(capturing):
        calls.append(capturing)
        if capturing:
            raise RuntimeError("operation not permitted when stream is capturing")
        return (torch.tensor(float(len(calls))),)

    replay = projection._StepReplay(compute, graphs=True)
    replay.calls = projection.GRAPH_WARMUP_STEPS  # the warm-up steps (on a CUDA side stream) are done
    with pytest.warns(RuntimeWarning, match="CUDA graph failed.*TOONLIB_CUDA_GRAPHS=off"):
        first = replay()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = replay()  # no second attempt, no second warning
    assert calls[-2:] == [False, False] and calls.count(True) <= 1
    assert first[0].item() == len(calls) - 1 and second[0].item() == len(calls)
    assert replay.graph is None


def test_off_cuda_every_step_runs_op_by_op():
    calls = []
    replay = projection._StepReplay(lambda capturing: calls.append(capturing) or (len(calls),), graphs=False)
    assert [replay()[0] for _ in range(projection.GRAPH_WARMUP_STEPS + 3)] == [1, 2, 3, 4, 5]
    assert calls == [False] * 5 and replay.graph is None


def test_perceptual_distance_pools_by_ops_max_pool2d_on_the_cpu(net, monkeypatch):
    """VGG16's four 2x2 max pools run as `ops.max_pool2d` (its fast backward) on the CPU, and the distance and its
    gradient are still lpips' own (test_perceptual_distance_equals_lpips_with_its_gradient)."""
    calls = []
    pool = ops.max_pool2d
    monkeypatch.setattr(ops, "max_pool2d", lambda x, size: calls.append((tuple(x.shape), size)) or pool(x, size))
    a, b = torch.rand(2, 1, 3, 32, 32) * 2 - 1
    a.requires_grad_(True)
    ours = PerceptualDistance(net, b)(a)
    assert calls[-4:] == [((1, 64, 32, 32), 2), ((1, 128, 16, 16), 2), ((1, 256, 8, 8), 2), ((1, 512, 4, 4), 2)]
    assert len(calls) == 8  # the target's features, then the image's
    torch.testing.assert_close(ours, net(a, b).flatten())
    (g_ours,) = torch.autograd.grad(ours.sum(), a)
    a_ = a.detach().requires_grad_(True)
    (g_theirs,) = torch.autograd.grad(net(a_, b).sum(), a_)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-4, atol=1e-5 * float(g_theirs.abs().max()))


def test_a_latent_file_of_no_latents_is_refused_naming_it(tmp_path):
    """`np.savez(path, w=np.zeros((0, 8, 512)))`, what an export of an empty selection writes, was read without a word
    (`ProjectionResult.load` called it space 'w'), and `toonlib toonify` of it failed at an IndexError (forty-fifth
    session's audit)."""
    path = tmp_path / "empty-latent.npz"
    np.savez(path, w=np.zeros((0, 8, 32), np.float32))
    message = rf"^{re.escape(str(path))} holds no latents \(shape \[0, 8, 32\]\): nothing to draw from it; toonify "
    for read in (load_latent, ProjectionResult.load):
        with pytest.raises(ValueError, match=message + "or project the photos again$"):
            read(path)
    torch.save(torch.zeros(0, 8, 32), tmp_path / "latents.pt")  # e4e's latents.pt of no photos
    with pytest.raises(ValueError, match=r"latents\.pt holds no latents \(shape \[0, 8, 32\]\)"):
        load_latent(tmp_path / "latents.pt")


def test_an_npz_whose_w_holds_no_numbers_is_named(tmp_path):
    """An object array was numpy's "Object arrays cannot be loaded when allow_pickle=False", no file named; strings
    failed inside torch, complex latents were read as their real part (forty-fifth session's audit)."""
    for name, w in (("objects", np.array([None, "x"], dtype=object)), ("text", np.array(["a", "b"])),
                    ("complex", np.zeros((1, 8, 32), np.complex64))):
        path = tmp_path / f"{name}.npz"
        np.savez(path, w=w)
        kind = "it holds Python objects" if name == "objects" else f"its dtype is {w.dtype}"
        with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: its 'w' is not an array of real numbers "
                                             rf"\({kind}\), not latents: a latent file holds a float array"):
            load_latent(path)


def test_render_draws_a_few_latents_at_a_time(G, ws, monkeypatch):
    """Every latent was drawn in one batch: ~0.5 GB a latent at 1024 px, so that `toonlib toonify` of e4e's latents.pt
    of a test set (hundreds) ran out of memory (forty-fifth session's audit). The images are the one batch's."""
    w = torch.cat([ws, ws.flip(0) * 0.9, ws * 1.1, ws[:1]])  # 7 latents
    noise = {name: torch.randn(7, 1, *buf.shape) for name, buf in G.named_buffers() if name.endswith("noise_const")}
    batches, synthesize = [], projection._synthesize
    monkeypatch.setattr(projection, "_synthesize",
                        lambda G, ws, noise: batches.append((len(ws), {len(n) for n in noise.values()}))
                        or synthesize(G, ws, noise))
    with torch.no_grad():
        whole = synthesize(G, w, noise), G.synthesis(w, noise_mode="const")
    drawn = render(G, w, noise), render(G, w)
    assert batches == [(4, {4}), (3, {3}), (4, set()), (3, set())] and projection.RENDER_BATCH == 4
    for images, expected in zip(drawn, whole):
        torch.testing.assert_close(images, expected)


def test_render_of_another_models_latent_says_it_belongs_to_another_model(G, ws):
    """It said "ws must have shape [N, 8, 32] with N >= 1, got [1, 10, 32]", where `toonlib toonify` of the same file
    says the latents belong to another model (forty-fifth session's audit)."""
    advice = ("; render them with a generator of that model (the base they were projected into, or a toon model "
              "fine-tuned from it), or project the photo again with this one$")
    for shape, differs in (((1, 10, 32), "10 layers, a 64 px model's, where this 32 px model takes 8"),
                           ((2, 8, 16), "16 values wide, where this model's latents are 32 (its w_dim)"),
                           ((1, 18, 512), "18 layers, a 1024 px model's, where this 32 px model takes 8 and 512 values "
                                          "wide, where this model's latents are 32 (its w_dim)")):
        with pytest.raises(ValueError, match=rf"^w has shape {re.escape(str(list(shape)))}, and this 32 px generator "
                                             rf"takes \[N, 8, 32\]: they belong to another model \(they are "
                                             rf"{re.escape(differs)}\){re.escape(advice[:-1])}$"):
            render(G, torch.zeros(shape))
    torch.testing.assert_close(render(G, ws[:, :1]), render(G, ws[:, :1].expand(-1, 8, -1)))  # W latents still fit


def test_save_video_refuses_an_image_or_another_suffix_before_writing(tmp_path):
    """`save_video(result, "photo.png")` replaced the photo with an MP4, and "anim.gif" was an MP4 too, where
    `toonlib project --video` refuses both (forty-fifth session's audit)."""
    result = ProjectionResult(w=torch.zeros(1, 8, 32), images=None, noise={}, losses=np.zeros((0, 1)), space="w+",
                              steps=0, frames=[np.zeros((32, 64, 3), np.uint8)] * 2)
    PIL.Image.new("RGB", (8, 8), "red").save(tmp_path / "photo.png")
    PIL.Image.new("RGB", (8, 8), "red").save(tmp_path / "photo.mp4", format="PNG")  # an image named .mp4
    before = (tmp_path / "photo.png").read_bytes()
    for name, message in (("photo.png", r"'.*photo\.png' is a PNG image: nothing was written; name it 'photo\.mp4'"),
                          ("photo.mp4", r"'.*photo\.mp4' is a PNG image: nothing was written; give another name"),
                          ("anim.gif", r"'.*anim\.gif' names an image \(\.gif\): nothing was written; name it "
                                       r"'anim\.mp4'"),
                          ("anim.mkv", r"'.*anim\.mkv' is named \.mkv: nothing was written; name it 'anim\.mp4' "
                                       r"\(players pick their reader by the suffix\)"),
                          ("anim", r"'.*anim' is named without a suffix: nothing was written; name it 'anim\.mp4'")):
        with pytest.raises(ValueError, match=r"^save_video writes an H\.264 video \(MP4\), and " + message):
            save_video(result, tmp_path / name)
        with pytest.raises(ValueError, match=r"^video_writer writes an H\.264 video \(MP4\), and " + message):
            with projection.video_writer(tmp_path / name):
                pass
    assert (tmp_path / "photo.png").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.mp4", "photo.png"]
