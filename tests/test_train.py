"""Fine-tuning (toonlib.train) and the GAN losses: formulas, NVIDIA's defaults, freezing, learning, snapshots,
exact resume, torchrun, errors.

Tiny 16 px networks learn a synthetic data set (an orange square with one blue disk). Everything runs on
one CPU thread: on the shared 2-core test machines two threads were up to 100x slower under load.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import toonlib.cli
from toonlib import download
from toonlib.checkpoints import CheckpointError, Networks, load_network, save_network
from toonlib.losses import discriminator_loss, generator_loss, r1_penalty
from toonlib.networks import Discriminator, Generator
from toonlib.train import (
    Distributed,
    TrainConfig,
    Trainer,
    add_train_arguments,
    config_from_args,
    d_layer_names,
    ema_beta,
    finetune,
    latest_snapshot,
    lazy_regularization,
    newest_state,
    update_ema,
)
from toonlib.train.arguments import EXIT_STATUS
from toonlib.train.snapshots import hold_run_dir

TINY = dict(img_resolution=16, channel_base=256, channel_max=32)
BACKGROUND, BLOB = (230, 150, 60), (30, 40, 160)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_networks(seed: int = 0) -> Networks:
    torch.manual_seed(seed)
    G = Generator(z_dim=32, w_dim=32, **TINY)
    return Networks(G_ema=copy.deepcopy(G), G=G, D=Discriminator(**TINY))


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    """A folder of 64 synthetic 16 px images, each its own (no two the same: copies are warned of), and a random base
    checkpoint with G, G_ema and D."""
    root = tmp_path_factory.mktemp("train")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    blobs = [(x, y, r) for x in range(5, 11) for y in range(5, 11) for r in range(2, 5)]
    for i, index in enumerate(rng.choice(len(blobs), 64, replace=False)):
        image = Image.new("RGB", (16, 16), BACKGROUND)
        x, y, r = blobs[index]
        ImageDraw.Draw(image).ellipse([x - r, y - r, x + r, y + r], fill=BLOB)
        image.save(data / f"{i:02d}.png")
    save_network(root / "base.safetensors", tiny_networks())
    return {"data": data, "base": root / "base.safetensors", "root": root}


def config(base: dict, run: str, **overrides) -> TrainConfig:
    fields = dict(data=str(base["data"]), resume=str(base["base"]), run_dir=str(base["root"] / run), prepare="none",
                  batch_size=4, kimg=0.016, snapshot_kimg=0.008, image_seeds=(0, 1, 2, 3))
    return TrainConfig(**{**fields, **overrides})


def data_images(base: dict) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.asarray(Image.open(p), dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1
                        for p in sorted(base["data"].glob("*.png"))])


def distance_to_data(G: Generator, reals: torch.Tensor) -> float:
    """How far G's images are from the data: RMS difference of the mean images plus that of the per-pixel
    standard deviations (over 64 samples)."""
    with torch.no_grad():
        fakes = G(torch.randn(64, G.z_dim, generator=torch.Generator().manual_seed(1)), None, noise_mode="const")
    rms = lambda a, b: float((a - b).square().mean().sqrt())  # noqa: E731
    return rms(fakes.mean(0), reals.mean(0)) + rms(fakes.std(0), reals.std(0))


# ---------------------------------------------------------------------------------------------
# Formulas


def test_r1_penalty_of_linear_and_quadratic_discriminators():
    gamma = 10.0
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    a = torch.randn(3, 4, 4)
    linear = (x * a).sum(dim=[1, 2, 3])[:, None]  # grad = a for every sample
    assert torch.allclose(r1_penalty(x, linear, gamma), gamma / 2 * a.square().sum())
    quadratic = x.square().sum(dim=[1, 2, 3])[:, None]  # grad = 2x
    expected = gamma / 2 * (2 * x.detach()).square().sum(dim=[1, 2, 3]).mean()
    assert torch.allclose(r1_penalty(x, quadratic, gamma), expected)


def test_logistic_losses():
    real, fake = torch.tensor([[2.0], [-1.0]]), torch.tensor([[0.5], [-3.0]])
    sp = lambda t: np.log1p(np.exp(t))  # noqa: E731
    assert generator_loss(fake).item() == pytest.approx((sp(-0.5) + sp(3.0)) / 2, rel=1e-6)
    expected_d = (sp(0.5) + sp(-3.0)) / 2 + (sp(-2.0) + sp(1.0)) / 2
    assert discriminator_loss(real, fake).item() == pytest.approx(expected_d, rel=1e-6)


def test_g_ema_follows_the_formula():
    nets = tiny_networks()
    G, G_ema = nets.G, nets.G_ema
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p))
        G.mapping.w_avg.normal_()
    old = {k: v.clone() for k, v in G_ema.state_dict().items()}
    # batch 8, half-life 2.5 kimg, ramp-up 0.05 at 10 kimg: the half-life is min(2500, 500) = 500 images
    beta = ema_beta(8, 2.5, 10_000, 0.05)
    assert beta == pytest.approx(0.5 ** (8 / 500))
    assert ema_beta(8, 2.5, 10_000, None) == pytest.approx(0.5 ** (8 / 2500))
    assert ema_beta(8, 2.5, 0, 0.05) == 0.0  # at the start G_ema copies G
    update_ema(G_ema, G, beta)
    params = dict(G.named_parameters())
    for name, value in G_ema.state_dict().items():
        if name in params:
            expected = params[name] + beta * (old[name] - params[name])
            assert torch.allclose(value, expected, atol=1e-6), name
        else:
            assert torch.equal(value, G.state_dict()[name]), name  # buffers copied


def test_lazy_regularization_correction():
    lr, betas = lazy_regularization(0.002, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.002 * 16 / 17)
    assert betas == (0.0, pytest.approx(0.99 ** (16 / 17)))
    assert lazy_regularization(0.002, (0.0, 0.99), 4) == (pytest.approx(0.0016), (0.0, pytest.approx(0.99**0.8)))
    assert lazy_regularization(0.002, (0.0, 0.99), None) == (0.002, (0.0, 0.99))


def test_freeze_d_keeps_the_first_layers_bit_identical(base):
    D = Discriminator(**TINY)
    assert d_layer_names(D) == ["b16.fromrgb", "b16.conv0", "b16.conv1", "b16.skip", "b8.conv0", "b8.conv1", "b8.skip"]
    trainer = Trainer(config(base, "freeze", freeze_d=5), progress=False)
    before = {k: v.clone() for k, v in trainer.D.state_dict().items()}
    reals = torch.stack([trainer.dataset[i] for i in range(4)])
    for _ in range(2):
        trainer.step(reals)
    frozen = ("b16.fromrgb.", "b16.conv0.", "b16.conv1.", "b16.skip.", "b8.conv0.")
    optimised = {id(p) for group in trainer.opt_D.param_groups for p in group["params"]}
    for name, param in trainer.D.named_parameters():
        if name.startswith(frozen):
            assert torch.equal(param, before[name]) and not param.requires_grad and id(param) not in optimised, name
        else:
            assert not torch.equal(param, before[name]) and id(param) in optimised, name


# ---------------------------------------------------------------------------------------------
# Training


def test_training_moves_samples_towards_the_data(base):
    reals = data_images(base)
    start = distance_to_data(load_network(base["base"]).G_ema, reals)
    infos = []
    cfg = config(base, "learn", batch_size=8, kimg=0.8, snapshot_kimg=0.4, mirror=False, pl_weight=0, ema_kimg=0.1)
    path = finetune(cfg, progress=False, callback=infos.append)
    run = Path(cfg.run_dir)
    assert path == run / "network-snapshot-000000800.safetensors" == latest_snapshot(run)
    nets = load_network(path)
    end = distance_to_data(nets.G_ema, reals)
    # G_ema with a short half-life (the default, 2.5 kimg, is longer than this run), so that it shows the learning.
    assert end < 0.35 * start, (start, end)
    assert nets.D is not None and nets.G is not None
    for name in ("fakes-000000400.png", "fakes-000000800.png", "metrics.png", "config.json"):
        assert (run / name).is_file(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in records] == [0.4, 0.8] and [i["kimg"] for i in infos] == [0.4, 0.8]
    for key in ("loss_G", "loss_D", "r1", "augment_p", "r_t", "sec_per_kimg"):
        assert all(isinstance(r[key], float) for r in records), key
    assert "kid" not in records[-1]  # metric='auto' is off on the CPU
    assert isinstance(infos[-1]["fakes"], Image.Image) and infos[-1]["fakes_path"].is_file()
    assert infos[-1]["plot_path"] == run / "metrics.png"


# ---------------------------------------------------------------------------------------------
# NVIDIA's transfer-learning defaults


def test_defaults_are_nvidias_transfer_learning_recipe(base):
    cfg = TrainConfig(data="d", resume="r", run_dir="o")
    assert (cfg.ada_target, cfg.ada_interval, cfg.ada_kimg, cfg.augment, cfg.augment_p) == (0.6, 4, 100, "ada", 0)
    assert cfg.ema_rampup is None and cfg.resolved_ema_kimg == 8 * 10 / 32
    assert (cfg.r1_interval, cfg.pl_weight, cfg.pl_interval, cfg.betas) == (16, 2, 4, (0.0, 0.99))
    assert cfg.resolved_gamma(256) == pytest.approx(0.0002 * 256**2 / 8)  # 1.6384
    assert cfg.resolved_gamma(1024) == pytest.approx(0.0002 * 1024**2 / 8)
    assert (cfg.resolved_lr(256), cfg.resolved_lr(512), cfg.resolved_lr(1024)) == (0.0025, 0.0025, 0.002)
    assert (cfg.freeze_d, cfg.freeze_g, cfg.freeze_mapping) == (0, 0, False)
    trainer = Trainer(config(base, "defaults"), progress=False)  # 16 px, batch 4
    assert trainer.gamma == pytest.approx(0.0002 * 16**2 / 4) and trainer.lr == 0.0025
    assert [name for name, _ in trainer.phases] == ["Gmain", "Greg", "Dmain", "Dreg"]  # lazy regularisation of both
    lr_g, lr_d = (opt.param_groups[0]["lr"] for opt in (trainer.opt_G, trainer.opt_D))
    assert lr_g == pytest.approx(0.0025 * 4 / 5) and lr_d == pytest.approx(0.0025 * 16 / 17)
    assert trainer.opt_D.param_groups[0]["betas"][1] == pytest.approx(0.99 ** (16 / 17))
    # The mapping network is trained, as in NVIDIA's code.
    assert {id(p) for p in trainer.G.mapping.parameters()} <= {id(p) for p in trainer.g_params}


def test_default_ada_raises_p_when_d_overfits(base):
    """Default settings (no ADA override) on 8 images that a 16 px D tells from the fakes at once: r_t stays
    above the target and p climbs by 4 minibatches * 4 images / 100 kimg at each adjustment."""
    small = base["root"] / "eight"
    small.mkdir()
    for path in sorted(base["data"].glob("*.png"))[:8]:
        (small / path.name).write_bytes(path.read_bytes())
    cfg = config(base, "ada-default", data=str(small), kimg=0.256, snapshot_kimg=0.064, pl_weight=0)
    finetune(cfg, progress=False)
    records = [json.loads(line) for line in (Path(cfg.run_dir) / "metrics.jsonl").read_text().splitlines()]
    ps = [r["augment_p"] for r in records]
    assert all(r["r_t"] > 0.6 for r in records[1:]), records
    assert ps[0] > 0 and all(b > a for a, b in zip(ps, ps[1:])), ps
    step = 4 * 4 / (100 * 1000)
    assert ps[-1] / step == pytest.approx(round(ps[-1] / step)) and ps[-1] <= 256 / 16 * step + 1e-12


# ---------------------------------------------------------------------------------------------
# Freezing


def test_freeze_g_and_mapping_keep_the_base_g_ema_bit_identical(base):
    nets = tiny_networks()
    with torch.no_grad():  # G differs from G_ema, as in NVIDIA's pickles
        for p in nets.G.parameters():
            p.add_(0.01 * torch.randn_like(p))
        nets.G.mapping.w_avg.add_(0.5)
    save_network(base["root"] / "differs.safetensors", nets)
    trainer = Trainer(config(base, "freeze_g", resume=str(base["root"] / "differs.safetensors"), freeze_g=8,
                             freeze_mapping=True), progress=False)
    reals = torch.stack([trainer.dataset[i] for i in range(4)])
    for _ in range(3):
        trainer.step(reals)
    frozen = ("mapping.", "synthesis.b4.", "synthesis.b8.")
    base_ema = nets.G_ema.state_dict()
    optimised = {id(p) for group in trainer.opt_G.param_groups for p in group["params"]}
    for name, param in trainer.G.named_parameters():
        ema = trainer.G_ema.get_parameter(name)
        if name.startswith(frozen):
            assert torch.equal(param, base_ema[name]) and torch.equal(ema, base_ema[name]), name
            assert id(param) not in optimised and not param.requires_grad, name
        else:
            assert name.startswith("synthesis.b16.") and id(param) in optimised, name
            assert not torch.equal(param, nets.G.state_dict()[name]) and not torch.equal(ema, base_ema[name]), name
    assert torch.equal(trainer.G_ema.mapping.w_avg, nets.G_ema.mapping.w_avg)  # FFHQ's W space and its mean
    assert torch.equal(trainer.G.mapping.w_avg, nets.G_ema.mapping.w_avg)


def test_freeze_g_must_leave_a_block_to_train(base):
    with pytest.raises(ValueError, match="--freeze-g 16 \\(freeze_g=16\\) freezes every synthesis block.*\\[4, 8\\]"):
        Trainer(config(base, "freeze_all", freeze_g=16), progress=False)
    with pytest.raises(ValueError, match="freeze_g must be 0 \\(off\\) or a resolution"):
        TrainConfig(data="d", resume="r", run_dir="o", freeze_g=12)


# ---------------------------------------------------------------------------------------------
# Snapshots and resume


def test_snapshots_are_named_by_images_and_never_collide(base):
    cfg = config(base, "names", kimg=0.012, snapshot_kimg=0.004, pl_weight=0)
    finetune(cfg, progress=False)
    run = Path(cfg.run_dir)
    assert sorted(p.name for p in run.glob("network-snapshot-*")) == [
        f"network-snapshot-{n:09d}.safetensors" for n in (4, 8, 12)]
    assert sorted(p.name for p in run.glob("fakes-*")) == [
        "fakes-000000004.png", "fakes-000000008.png", "fakes-000000012.png"]
    assert sorted(p.name for p in run.glob("training-state-*")) == [  # the newest two are kept
        "training-state-000000008.pt", "training-state-000000012.pt"]
    latest = json.loads((run / "latest.json").read_text())
    assert latest == {"kimg": 0.012, "network": "network-snapshot-000000012.safetensors",
                      "fakes": "fakes-000000012.png", "state": "training-state-000000012.pt"}
    assert not (run / "latest.json").is_symlink() and latest_snapshot(run) == run / latest["network"]
    for path in run.glob("network-snapshot-*"):
        assert load_network(path).meta["finetune"]["kimg"] == int(path.stem[-9:]) / 1000
    # latest.json cut short (an interrupted copy or Drive sync), emptied, or naming a snapshot that is gone: `blend`,
    # `toonify`, `info` and 01 said "Expecting ',' delimiter" naming no file, or a KeyError traceback; the newest
    # snapshot file is taken
    text = (run / "latest.json").read_text()
    (run / "network-snapshot-000000004.safetensors").rename(run / "network-snapshot-000000004.kept")
    for damaged in (text[:12], "", "{}", "[1]", text.replace("000000012.safetensors", "000000099.safetensors")):
        (run / "latest.json").write_text(damaged)
        assert latest_snapshot(run) == run / "network-snapshot-000000012.safetensors", damaged
        with pytest.raises(CheckpointError, match=r"is a folder, not a checkpoint file: for the fine-tuning run there, "
                                                  r"give its newest snapshot, .*network-snapshot-000000012"):
            load_network(run)
    (run / "latest.json").write_text(text.replace("000000012.safetensors", "000000008.safetensors"))
    assert latest_snapshot(run) == run / "network-snapshot-000000008.safetensors"  # a whole one is followed
    for path in run.glob("network-snapshot-*.safetensors"):
        path.unlink()
    assert latest_snapshot(run) is None  # none left: said as before the first one, not a path that is not there


def test_resume_skips_a_half_written_training_state(base):
    cfg = config(base, "half", kimg=0.008, snapshot_kimg=0.004, pl_weight=0)
    finetune(cfg, progress=False)
    run = Path(cfg.run_dir)
    good = run / "training-state-000000008.pt"
    (run / "training-state-000000012.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.warns(UserWarning, match="unreadable training state .*training-state-000000012.pt"):
        path, state = newest_state(run)
    assert path == good and state["cur_nimg"] == 8
    with pytest.warns(UserWarning, match="unreadable"):
        finetune(config(base, "half", kimg=0.016, snapshot_kimg=0.004, pl_weight=0), progress=False)
    path, state = newest_state(run)
    assert path.name == "training-state-000000016.pt" and state["cur_nimg"] == 16 and state["batch_idx"] == 4
    assert [json.loads(line)["kimg"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [
        0.004, 0.008, 0.012, 0.016]


def test_a_run_of_an_older_toonlib_is_not_overwritten(base, tmp_path):
    (tmp_path / "training-state.pt").write_bytes(b"version 1")
    (tmp_path / "metrics.jsonl").write_text('{"kimg": 1.0}\n')
    with pytest.raises(ValueError, match=r"older toonlib .*use a new run folder \(--run-dir, run_dir=\)"):
        finetune(config(base, "unused", run_dir=str(tmp_path)), progress=False)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"kimg": 1.0}\n'


def test_interrupted_run_resumes_exactly(base):
    # Every random stream is used: ADA p moves each minibatch, style mixing, path length every 2nd, R1 every 3rd,
    # micro-batches of 2. Run A does 8 minibatches in one go; run B does 4, stops, and is resumed to 8.
    settings = dict(augment_p=0.3, ada_interval=1, ada_kimg=0.02, pl_weight=2, pl_interval=2, r1_interval=3,
                    batch_gpu=2, snapshot_kimg=0.016)
    finetune(config(base, "uninterrupted", kimg=0.032, **settings), progress=False)
    finetune(config(base, "interrupted", kimg=0.016, **settings), progress=False)
    _, halfway = newest_state(base["root"] / "interrupted")
    assert halfway["cur_nimg"] == 16 and halfway["batch_idx"] == 4
    finetune(config(base, "interrupted", kimg=0.032, **settings), progress=False)
    _, a = newest_state(base["root"] / "uninterrupted")
    _, b = newest_state(base["root"] / "interrupted")
    assert a["cur_nimg"] == b["cur_nimg"] == 32
    for name in ("G", "G_ema", "D"):
        for key, value in a[name].items():
            assert torch.equal(value, b[name][key]), f"{name}.{key}"
    assert a["augment_p"] == b["augment_p"] and a["ada"]["p"] == b["ada"]["p"] and a["ada"]["rt"] == b["ada"]["rt"]
    assert torch.equal(a["pl_mean"], b["pl_mean"]) and a["pl_mean"] > 0
    assert torch.equal(a["rng"][0]["cpu"], b["rng"][0]["cpu"])
    assert not torch.equal(halfway["G"]["synthesis.b16.torgb.bias"], b["G"]["synthesis.b16.torgb.bias"])
    lines = (base["root"] / "interrupted" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["kimg"] for line in lines] == [0.016, 0.032]

    with pytest.raises(ValueError, match=r"--seed \(seed=\): 0 -> 1"):
        finetune(config(base, "interrupted", kimg=0.05, seed=1, **settings), progress=False)


# ---------------------------------------------------------------------------------------------
# Several processes (torchrun)


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture()
def served(base):
    """An HTTP server on 127.0.0.1 serving the base folder; yields (base URL, list of requested paths)."""
    seen: list[str] = []
    handler = type("Handler", (_CountingHandler,), {"requests": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=base["root"]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


# Each torchrun starts three Python processes that import torch: ~25 s alone on this machine, several times
# that when the test suite and other work share its two cores. The limit only stops a hung run.
TORCHRUN_LIMIT = 900


def torchrun(base: dict, run: Path, resume: str, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    """Train 4 minibatches of 4 (2 per process) with two gloo processes on the CPU."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "toonlib.train", "--data", str(base["data"]), "--resume", resume, "--run-dir", str(run),
               "--prepare", "none", "--batch-size", "4", "--kimg", "0.016", "--snapshot-kimg", "0.008",
               "--image-seeds", "0-3", "--pl-weight", "2", "--pl-interval", "2", "--r1-interval", "2",
               "--augment-p", "0.2", "--ada-interval", "1", "--ada-kimg", "0.05", "--no-progress", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOONLIB_CACHE": str(cache)}
    return subprocess.run(command, capture_output=True, text=True, timeout=TORCHRUN_LIMIT, env=env)


def test_torchrun_two_processes_agree_and_download_once(base, served, tmp_path):
    url, seen = served
    run = base["root"] / "ddp"
    result = torchrun(base, run, f"{url}/base.safetensors", tmp_path / "cache")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # One download: rank 0 fetched the base model while rank 1 waited, then read the cached file. (fetch's
    # per-file lock alone would also serialise two downloads into one; that rank 1 does not try at all shows
    # in test_torchrun_stops_every_process_when_the_download_fails.)
    assert seen == ["/base.safetensors"]
    assert download.local_path(f"{url}/base.safetensors", cache_dir=tmp_path / "cache").is_file()
    assert not list((tmp_path / "cache").glob("*.part"))
    # Each snapshot checks inside the training code (all_gather of state digests) that both processes hold
    # bit-identical networks; a mismatch raises and torchrun fails.
    _, state = newest_state(run)
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and state["cur_nimg"] == 16
    assert not torch.equal(state["rng"][0]["cpu"], state["rng"][1]["cpu"])
    assert load_network(run / "network-snapshot-000000016.safetensors").D is not None
    assert "last snapshot:" in result.stdout
    with hold_run_dir(run):  # rank 0 held the run folder for both (rank 1 taking it too would have been refused)
        pass  # and it is free again


def test_torchrun_stops_every_process_when_the_download_fails(base, served, tmp_path):
    url, seen = served
    result = torchrun(base, base["root"] / "ddp-missing", f"{url}/missing.pt", tmp_path / "cache")
    assert result.returncode != 0
    assert seen == ["/missing.pt"]  # rank 1 did not try: it was told that rank 0 failed
    assert "HTTP 404" in result.stderr and "main training process (rank 0) failed" in result.stderr


HOLD_RUN_DIR = """
import sys
from toonlib.train.snapshots import hold_run_dir
with hold_run_dir(sys.argv[1]):
    print("holding", flush=True)
    sys.stdin.read()  # until the test closes stdin
"""


def test_torchrun_on_a_busy_run_folder_stops_every_process(base, tmp_path):
    run = base["root"] / "ddp-busy"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_RUN_DIR, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        result = torchrun(base, run, str(base["base"]), tmp_path / "cache")
    finally:
        holder.communicate(timeout=60)  # closes its stdin: it lets go and exits
    assert result.returncode != 0
    assert f"error: {run} is in use by another fine-tuning run (process {holder.pid})" in result.stderr  # rank 0
    assert "main training process (rank 0) failed: BlockingIOError" in result.stderr  # rank 1, not left waiting
    assert [p.relative_to(run).as_posix() for p in sorted(run.rglob("*"))] == [".locks", ".locks/run.lock"]


PROCESS_GROUP_FREED = """
import os, socket, torch, torch.distributed as torch_dist
from toonlib.train.distributed import _init_process_group
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1")
_init_process_group("gloo")
torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # imports torch._dynamo, as the trainer's optimizers do
torch_dist.destroy_process_group()
print(sorted(open(f"/proc/self/task/{task}/comm").read().strip() for task in os.listdir("/proc/self/task")))
"""


def test_a_destroyed_process_group_stops_its_threads():
    """torchrun's processes aborted now and then at exit: the gloo group outlived destroy_process_group() (held by
    torch.distributed.nn's default arguments, imported when the optimizers were built) and its threads were torn
    down during interpreter exit. A fresh interpreter, as under torchrun."""
    result = subprocess.run([sys.executable, "-c", PROCESS_GROUP_FREED], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    threads = result.stdout.strip().splitlines()[-1]
    assert "gloo" not in threads, threads


def test_diverging_processes_are_detected(base):
    """The check torchrun runs relies on: a digest of every process's state, compared through all_gather."""
    trainer = Trainer(config(base, "agree"), progress=False)
    gathered = []

    class TwoProcesses(Distributed):
        def all_gather(self, obj: object) -> list:
            gathered.append(obj)
            return [obj, gathered[0]]  # the other process holds the first state seen

    trainer.dist = TwoProcesses(world_size=2)
    trainer._check_processes_agree()
    trainer.G.mapping.w_avg.add_(1e-7)
    with pytest.raises(RuntimeError, match="training processes diverged at kimg 0.0"):
        trainer._check_processes_agree()


# ---------------------------------------------------------------------------------------------
# Configuration and errors


def test_command_line_options_map_to_the_config():
    parser = add_train_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--data", "d", "--resume", "ffhq-256-noaug", "--run-dir", "r", "--kimg", "20",
                              "--freeze-d", "4", "--freeze-g", "32", "--freeze-mapping", "--metric", "kid",
                              "--no-mirror", "--image-seeds", "0-2,7", "--ema-rampup", "0.05", "--gamma", "3",
                              "--betas", "0", "0.9", "--no-progress"])
    cfg = config_from_args(args)
    assert (cfg.kimg, cfg.freeze_d, cfg.mirror, cfg.image_seeds, cfg.ema_rampup) == (20, 4, False, (0, 1, 2, 7), 0.05)
    assert (cfg.freeze_g, cfg.freeze_mapping, cfg.metric, cfg.gamma, cfg.lr) == (32, True, "kid", 3.0, None)
    assert cfg.betas == (0.0, 0.9) and cfg.batch_size == TrainConfig.batch_size and args.progress is False
    defaults = config_from_args(parser.parse_args(["--data", "d", "--resume", "x", "--run-dir", "r"]))
    assert defaults == TrainConfig(data="d", resume="x", run_dir="r")


def test_the_torchrun_entry_point_checks_its_arguments_as_finetune_does(capsys):
    """`python -m toonlib.train --data "$DATA"` with DATA unset said "TrainConfig.data is required", and a misspelt
    option got no "did you mean", where `toonlib finetune` says both."""
    from toonlib.train.arguments import main

    for argv, said in ((["--data", "", "--resume", "x", "--run-dir", "r"],
                        "python -m toonlib.train: error: argument --data: it is empty (''), which an unset shell "
                        "variable gives: give a path\n"),
                       (["--data", "d", "--resume", "x", "--run-dir", "r", "--snaphot-kimg", "1"],
                        "python -m toonlib.train: error: unrecognized arguments: --snaphot-kimg 1\n  --snaphot-kimg: "
                        "did you mean --snapshot-kimg?\n")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2 and capsys.readouterr().err.endswith(said)


def test_invalid_settings_are_reported_together():
    with pytest.raises(ValueError, match="kimg must be > 0.*augment must be one of"):
        TrainConfig(data="d", resume="r", run_dir="o", kimg=0, augment="maybe")
    # a value of the wrong type, and others out of range: all said (the ranges were checked once every type was right)
    with pytest.raises(ValueError, match=r"^invalid TrainConfig: batch_size must be a whole number >= 1, write it as "
                                         r"an int: 4, not 4\.0; kimg must be > 0, got -1\.0; augment must be one of"):
        TrainConfig(data="d", resume="r", run_dir="o", batch_size=4.0, kimg=-1, augment="maybe")
    with pytest.raises(ValueError, match=r"^invalid TrainConfig: kimg must be a finite number, got nan; gamma must be "
                                         r">= 0 or None \(auto\), got -1\.0$"):  # nan said once, as not finite
        TrainConfig(data="d", resume="r", run_dir="o", kimg=float("nan"), gamma=-1)


@pytest.mark.parametrize("settings, said", [
    ({"kimg": "0.008"}, "kimg must be a number, got '0.008'"),  # was: '>' not supported between 'str' and 'int'
    ({"kimg": float("inf")}, "kimg must be a finite number, got inf"),  # was: OverflowError, and a dataset cache
    ({"snapshot_kimg": float("inf"), "gamma": float("nan"), "ema_rampup": float("inf")},
     "gamma must be a finite number, got nan; ema_rampup must be a finite number, got inf; snapshot_kimg must be"),
    ({"batch_size": 4.5}, "batch_size must be a whole number >= 1, got 4.5"),  # was: about --batch-gpu 4.0
    ({"batch_size": 4.0}, "batch_size must be a whole number >= 1, write it as an int: 4, not 4.0"),  # was: 'got 4.0'
    ({"freeze_mapping": "no"}, "freeze_mapping must be True or False, got 'no'"),  # was: frozen (a truthy string)
    ({"mirror": 0}, "mirror must be True or False, got 0"),
    ({"betas": 0.9}, "betas must be two numbers in [0, 1), got 0.9"),
    ({"image_seeds": 4}, "image_seeds: give whole numbers from 0 to 2**32 - 1, such as (0, 1, 2), or a string"),
    ({"image_seeds": "0-"}, "image_seeds: bad seed list '0-': use numbers and ranges such as '0-3,7'"),
])
def test_values_of_the_wrong_type_are_refused_naming_the_field(settings, said):
    with pytest.raises(ValueError, match=re.escape(f"invalid TrainConfig: {said}")):
        TrainConfig(data="d", resume="r", run_dir="o", **settings)


def test_seeds_are_taken_as_the_command_line_takes_them():
    """TrainConfig(image_seeds='0-3') failed with int()'s "invalid literal for int() with base 10: '-'"."""
    assert TrainConfig(data="d", resume="r", run_dir="o", image_seeds="0-2,7").image_seeds == (0, 1, 2, 7)


def test_finetune_takes_a_train_config_or_its_settings_and_says_so_otherwise(base, capsys):
    """finetune("faces") failed with "'str' object has no attribute 'device'", finetune(data=...) with "unexpected
    keyword argument 'data'"; and progress=False printed nothing until the run ended."""
    example = re.escape("finetune(TrainConfig(data='faces/', resume='ffhq-256-noaug', run_dir='runs/toon')), or its "
                        "settings as keywords, finetune(data='faces/', resume='ffhq-256-noaug', run_dir='runs/toon')")
    for wrong, got in (("faces", "got str 'faces'"), ({"data": "faces"}, r"got a dict: .* finetune\(\*\*settings\)")):
        with pytest.raises(TypeError, match=f"^finetune takes a TrainConfig, {example}; {got}"):
            finetune(wrong)
    with pytest.raises(TypeError, match=r"TrainConfig and keyword settings \(kimg\): .*dataclasses.replace"):
        finetune(config(base, "unused"), kimg=1)
    run = base["root"] / "keywords"
    path = finetune(data=str(base["data"]), resume=str(base["base"]), run_dir=str(run), prepare="none", batch_size=4,
                    kimg=0.008, snapshot_kimg=0.004, image_seeds="0", progress=False)
    assert path == run / "network-snapshot-000000008.safetensors"
    lines = capsys.readouterr().out.splitlines()
    assert [re.sub(r"\[\d\d:\d\d, G=\d\.\d{3}, D=\d\.\d{3}, p=\d\.\d{3}(, r_t=-?\d\.\d{3})?\]", "[...]",
                   re.sub(r"prepared in \d+ s$", "prepared in N s", line))
            for line in lines] == [f"{base['data']}: preparing 64 images ('none' at 16 px)",
                                   f"{base['data']}: 64 images prepared in N s",
                                   f"{run}: started, training to 0.008 kimg (a line per snapshot)",
                                   "fine-tuning 0.004/0.008 kimg [...]: network-snapshot-000000004.safetensors",
                                   "fine-tuning 0.008/0.008 kimg [...]: network-snapshot-000000008.safetensors"], lines
    finetune(data=str(base["data"]), resume=str(base["base"]), run_dir=str(run), prepare="none", batch_size=4,
             kimg=0.012, snapshot_kimg=0.004, image_seeds="0", progress=False)  # resumed: said before any snapshot
    assert capsys.readouterr().out.splitlines()[0] == f"{run}: resumed at 0.008 kimg, training to 0.012 kimg (a line " \
                                                      "per snapshot)"


def finetune_command(*options: str) -> int:
    """The exit status of `toonlib finetune` with `options` (argparse's too, which exits)."""
    try:
        status = toonlib.cli.main(["finetune", *options])
    except SystemExit as exc:
        status = exc.code
    return status


@pytest.mark.parametrize("options, said", [
    (["--kimg", "inf"], "toonlib finetune: error: --kimg must be a finite number, got inf"),
    (["--freeze-g", "12"],  # was: "or a --resolution 4, 8, 16": the word rewritten as an option
     "toonlib finetune: error: --freeze-g must be 0 (off) or a resolution 4, 8, 16, ..., got 12"),
    (["--batch-size", "4", "--batch-gpu", "8"],
     "toonlib finetune: error: --batch-gpu must be between 1 and --batch-size (4), got 8"),
    (["--image-seeds", "5-1"],  # was: "invalid _seeds value: '5-1'"
     "toonlib finetune: error: argument --image-seeds: bad seed list '5-1': the range 5-1 runs backwards; write 1-5"),
    (["--ema-rampup", "foo"],  # was: "invalid _optional_float value: 'foo'"
     "toonlib finetune: error: argument --ema-rampup: expected a number or 'none', got 'foo'"),
])
def test_bad_values_on_the_command_line_are_said_as_typed(base, options, said, tmp_path, capsys):
    run = tmp_path / "run"
    assert finetune_command("--data", str(base["data"]), "--resume", str(base["base"]), "--run-dir", str(run),
                            *options) == 2
    assert capsys.readouterr().err.splitlines()[-1] == said
    assert not run.exists()


def test_finetune_help_says_its_exit_statuses_and_the_images_it_needs(capsys):
    """Its epilog was the other commands': photos, 'no face', `toonlib models | head`."""
    assert finetune_command("--help") == 0
    text = capsys.readouterr().out
    epilog = text[text.index("\nexit status:"):]
    assert epilog == "\n" + EXIT_STATUS + "\n"
    assert "130  interrupted (Ctrl-C, SIGTERM: kill, timeout, a job scheduler, or SIGHUP: a closed\n" in epilog
    assert "face" not in epilog and "photo" not in epilog and "models | head" not in epilog
    data = " ".join(text[text.index("\n  --data DATA"):text.index("\n  --resume RESUME")].split())
    assert data == "--data DATA folder or .zip of training images, at least 8 (subfolders too); the run folder must " \
                   "not be inside it"


def test_base_without_discriminator_is_refused(base):
    save_network(base["root"] / "g_only.safetensors", tiny_networks().G_ema)
    with pytest.raises(CheckpointError, match="no discriminator.*ffhq-256-noaug"):
        finetune(config(base, "no_d", resume=str(base["root"] / "g_only.safetensors")), progress=False)


def test_resolution_mismatch_is_refused(base):
    with pytest.raises(ValueError, match=r"--resolution 32 \(resolution=32\): .* makes 16x16") as raised:
        finetune(config(base, "res", resolution=32), progress=False)
    assert raised.value.args[0].endswith("start from a model of 32 px with its discriminator.")  # no registry model
    with pytest.raises(ValueError, match=r"start from a model of 256 px \(e.g. 'ffhq-256-noaug'\)\.$"):
        finetune(config(base, "res", resolution=256), progress=False)
    with pytest.raises(ValueError, match=r"start from a model of 8 px with"):  # it said "a 8 px model"
        finetune(config(base, "res", resolution=8), progress=False)


def test_an_augmentation_probability_without_augmentation_is_said(base):
    """--augment none --augment-p 0.5 trained without augmentation, without a word."""
    with pytest.warns(UserWarning, match=r"^--augment-p 0\.5 \(augment_p=0\.5\) is ignored: --augment none "
                                            r"\(augment='none'\) augments nothing \('fixed' keeps that probability, "
                                            r"'ada' starts from it\)$"):
        finetune(config(base, "no_augment", augment="none", augment_p=0.5, kimg=0.004), progress=False)
    # 'fixed' at the default probability, 0, trained bit for bit as 'none' (thirty-eighth session's audit): a new run
    # is refused; one started so before (its training state says so) goes on as it was (review)
    fixed = config(base, "fixed", augment="fixed", kimg=0.008, snapshot_kimg=0.004)
    with pytest.raises(ValueError, match=r"^--augment fixed \(augment='fixed'\) keeps its probability, --augment-p 0 "
                                         r"\(augment_p=0\), through the run: it augments nothing\. Give the "
                                         r"probability \(such as 0\.2\), or use 'ada'"):
        finetune(fixed, progress=False)
    assert not Path(fixed.run_dir).exists()
    finetune(dataclasses.replace(fixed, augment="none", kimg=0.004), progress=False)  # such a run, started before
    [saved] = Path(fixed.run_dir).glob("training-state-*.pt")
    state = torch.load(saved, weights_only=False)
    state["config"]["augment"] = "fixed"
    torch.save(state, saved)
    assert finetune(fixed, progress=False).name == "network-snapshot-000000008.safetensors"


def test_batch_not_divisible_is_refused(base):
    with pytest.raises(ValueError, match=r"--batch-size 6 \(batch_size=6\) must be divisible by --batch-gpu 4 "
                                         r"\(batch_gpu=4\)"):
        finetune(config(base, "batch", batch_size=6, batch_gpu=4), progress=False)


def test_settings_refused_at_the_start_are_said_in_a_notebooks_words(base):
    """Notebook 01 (through `in_notebook_words`) told its user to "give a --batch-size", "--batch-gpu 3" and "Leave
    --resolution unset", options of a command line it has not (audit)."""
    from toonlib.notebook import in_notebook_words

    for settings, meant in (({"batch_size": 6}, "give a batch_size that is a multiple of 4 (e.g. 8) or at most 4, or "
                                                "keep it with micro-batches of 3 images, batch_gpu=3 (gradient"),
                            ({"resolution": 32}, "Leave resolution unset (the images are then resized to 16)")):
        with pytest.raises(ValueError) as refused:
            finetune(config(base, "notebook-words", **settings), progress=False)
        said = in_notebook_words(str(refused.value), {})
        assert meant in said and "--" not in said, said


@pytest.mark.parametrize("options, said", [
    (["--freeze-d", "8"], "--freeze-d 8 asks for more layers than D has that can be frozen: 7"),
    (["--freeze-g", "16"], "--freeze-g 16 freezes every synthesis block of this 16 px generator"),
    (["--resolution", "32"], "Leave --resolution unset"),
    (["--batch-size", "6", "--batch-gpu", "4"], "--batch-size 6 must be divisible by"),
    # was "--batch-gpu 6 must be a multiple of D's minibatch-stddev group size (4)": an option not given, and no way out
    (["--batch-size", "6"], "--batch-size 6 does not split into the groups of 4 images of D's minibatch-stddev layer "
                            "(6 images a process): give a --batch-size that is a multiple of 4 (e.g. 8) or at most 4, "
                            "or keep it with micro-batches of 3 images, --batch-gpu 3 (gradient accumulation)\n"),
    (["--batch-size", "12", "--batch-gpu", "6"],
     "--batch-gpu 6 must be at most 4 or a multiple of 4, D's minibatch-stddev group size, e.g. --batch-gpu 3\n"),
    (["--seed", "1"], "(--seed: 0 -> 1)"),
])
def test_settings_refused_at_the_start_are_named_as_typed(base, options, said, capsys):
    run = base["root"] / ("named" if "--seed" in options else "named-new")  # a run to resume, for --seed
    if "--seed" in options and not run.exists():
        finetune(config(base, "named", kimg=0.004), progress=False)
    assert toonlib.cli.main(["finetune", "--data", str(base["data"]), "--resume", str(base["base"]), "--run-dir",
                             str(run), "--prepare", "none", "--batch-size", "4", "--kimg", "0.004", "--no-progress",
                             *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("toonlib finetune: error: ") and said in err, err
    assert not re.search(r"[a-z]+_[a-z_]+\b|TrainConfig", err), err  # the options' names, not Python's


def test_a_diverged_run_is_said_and_its_log_stays_json(base):
    """With an absurd --lr the losses became NaN: the run exited 0 suggesting a blend of its broken model, without a
    word, and metrics.jsonl held bare NaN, which strict JSON readers refuse."""
    import json

    def strict(constant):
        raise ValueError(f"not JSON: {constant}")

    run = base["root"] / "diverged"
    with pytest.warns(UserWarning, match=r"loss_\w+ became (nan|inf) by [\d.]+ kimg: the training diverged and the "
                                         r"snapshots from here on are broken; start again from the base with a lower "
                                         r"--lr 1000000\.0 \(lr=1000000\.0\)$") as caught:
        finetune(config(base, run.name, lr=1e6, kimg=0.016), progress=False)
    assert sum("diverged" in str(w.message) for w in caught) == 1  # once, not at every snapshot
    records = [json.loads(line, parse_constant=strict) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and None in (records[-1]["loss_G"], records[-1]["loss_D"])


def test_read_metrics_takes_a_run_folder_and_names_a_path_that_is_not_there(tmp_path):
    """`read_metrics("runs/a")`, the run folder, gave [] without a word, as did a misspelt path; a run folder gives
    its metrics.jsonl's records, a missing other name is a FileNotFoundError, a run before its first snapshot []."""
    from toonlib.train.metrics_log import read_metrics

    run = tmp_path / "runs" / "a"
    (run / ".locks").mkdir(parents=True)
    (run / ".locks" / "run.lock").write_bytes(b"")  # a run's, from its start
    (run / "config.json").write_text("{}")
    assert read_metrics(run) == [] == read_metrics(run / "metrics.jsonl")  # no snapshot yet
    (run / "metrics.jsonl").write_text('{"kimg": 0.004, "loss_G": 1.5}\n{"kimg": 0.0\n')  # its last line cut short
    assert read_metrics(run) == read_metrics(run / "metrics.jsonl") == [{"kimg": 0.004, "loss_G": 1.5}]
    for wrong in (run / "metrics.json", tmp_path / "runs" / "b" / "metrics.jsonl", tmp_path / "runs" / "metrics.jsonl"):
        with pytest.raises(FileNotFoundError, match=rf"^no file {re.escape(str(wrong))}: read_metrics takes a "
                                                    r"fine-tuning run's folder or its metrics\.jsonl$"):
            read_metrics(wrong)
    with pytest.raises(FileNotFoundError, match=r"metrics\.jsonl: read_metrics takes"):
        read_metrics(tmp_path / "runs")  # a folder, no run's
    from toonlib.train.metrics_log import append_metrics

    append_metrics(tmp_path / "log.jsonl", {"kimg": 1})  # a new log of another name is written, as before
    assert read_metrics(tmp_path / "log.jsonl") == [{"kimg": 1}]


def test_the_bar_draws_each_minibatchs_numbers_with_it(base, monkeypatch):
    """The bar's G / D / p were set after its update had drawn it: every drawing showed the minibatch before's
    numbers (during a long last snapshot, 100% beside the numbers of the minibatch before the last)."""
    import toonlib.train.loop as loop
    from toonlib.messages import progress_bar

    drawn = []  # the bar's numbers at each update, which draws it

    def recording(**kwargs):
        bar = progress_bar(**kwargs)
        update = bar.update
        bar.update = lambda n=1: drawn.append(str(bar.postfix)) or update(n)
        return bar

    monkeypatch.setattr(loop, "progress_bar", recording)
    trainers = []
    monkeypatch.setattr(loop.Trainer, "step", lambda self, batch, step=loop.Trainer.step: (
        trainers.append(self), step(self, batch))[1])
    finetune(config(base, "bar", kimg=0.008, snapshot_kimg=0.008), progress=True)
    assert len(drawn) == 2 and all("G=" in shown for shown in drawn), drawn
    assert drawn[-1] == ", ".join(f"{k}={v}" for k, v in trainers[-1]._postfix().items())


def test_freeze_g_keeps_the_base_g_emas_const_noise_bit_for_bit(base):
    """A base whose G and G_ema hold different noise (rosinality's checkpoints, which average parameters alone; the
    fixtures): `update_ema` copies G's buffers into G_ema, so the frozen blocks' noise_const became the base's G's and
    their const-noise images changed (thirty-eighth session's audit)."""
    from conftest import FIXTURES

    source = FIXTURES / "rosinality_tiny.pt"
    nets = load_network(source)
    with pytest.warns(UserWarning, match="smaller than the training resolution, 32x32"):  # this 32 px base
        trained = finetune(config(base, "frozen_noise", resume=str(source), prepare="crop", kimg=0.004, freeze_g=8,
                                  freeze_mapping=True), progress=False)
    snapshot = load_network(trained)
    base_g, base_ema = dict(nets.G.named_buffers()), dict(nets.G_ema.named_buffers())
    frozen = ("mapping.", "synthesis.b4.", "synthesis.b8.")
    assert any(not torch.equal(base_g[name], base_ema[name]) for name in base_g if name.startswith(frozen))
    for name, buffer in snapshot.G_ema.named_buffers():
        if name.startswith(frozen):
            assert torch.equal(buffer, base_ema[name]), name
        else:  # a trained block's noise is the base G's, as NVIDIA's training makes it
            assert torch.equal(buffer, base_g[name]), name
    z = torch.randn([2, nets.G_ema.z_dim], generator=torch.Generator().manual_seed(0))
    ws = nets.G_ema.mapping(z, None)

    def frozen_blocks(G: Generator) -> torch.Tensor:
        """The 8 px image of the frozen blocks b4 and b8, with const noise (the noise of blends and fakes grids)."""
        x = img = None
        for res, w in ((4, ws[:, 0:2]), (8, ws[:, 1:4])):
            x, img = getattr(G.synthesis, f"b{res}")(x, img, w, noise_mode="const")
        return img

    with torch.no_grad():
        assert torch.equal(frozen_blocks(snapshot.G_ema), frozen_blocks(nets.G_ema))


def test_the_help_shows_the_defaults_as_typed(capsys):
    """`--betas` showed Python's tuple, '(default: (0.0, 0.99))', which cannot be typed; `--augment-p` '0.0'
    (thirty-eighth session's audit)."""
    assert finetune_command("--help") == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--betas BETAS BETAS Adam betas (default: 0 0.99)" in text
    assert "initial (ada) or fixed augmentation probability (default: 0)" in text
    assert "G_ema half-life ramp-up ratio, or 'none' (default: none)" in text


class Terminal(io.StringIO):
    """What the bar is written to: a terminal (a tty) of `columns` columns, as tqdm and `progress_bar` see one (with
    `os.get_terminal_size` patched to say its size, `terminal`), its text kept."""

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return 2


def terminal(monkeypatch, columns: int) -> Terminal:
    """sys.stderr as a terminal of `columns` columns (a fixed COLUMNS, whatever this test's terminal is)."""
    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(os, "get_terminal_size", lambda fd=None: os.terminal_size((columns, 24)))
    return stream


def drawn_lines(text: str, start: str = "fine-tuning:") -> list[str]:
    """The bar's lines as drawn (each after a '\\r' or a line end, without the spaces that erase a longer one)."""
    return [line.rstrip() for line in re.split(r"[\r\n]", text) if line.startswith(start)]


def test_the_progress_line_fits_the_terminal_with_its_numbers_whole(base, monkeypatch):
    """At 80 columns tqdm cut the line at the width: a bar of one cell, r_t and the closing ']' gone, and an hour
    into a run `p=0.123` as `p=0.1`; numbers that do not fit beside a usable bar are left out whole, the losses first
    (forty-second session's audit). At 120 columns, and in a log, all of them are shown."""
    line = re.compile(r"fine-tuning: +\d+%\|(.*)\| \d+\.\d{3}/\d+\.\d{3} kimg \[[\d:]+<[\d:?]+"
                      r"((?:, \w+=-?\d+\.\d{3})*)\]")
    for columns in (80, 120, None):
        stream = io.StringIO() if columns is None else terminal(monkeypatch, columns)
        monkeypatch.setattr(sys, "stderr", stream)  # a StringIO: a log, of no width
        finetune(config(base, f"bar-{columns}", kimg=0.024), progress=True)
        drawn = drawn_lines(stream.getvalue())
        assert drawn and drawn[-1].startswith("fine-tuning: 100%|"), stream.getvalue()
        for text in drawn:
            found = line.fullmatch(text)
            assert found, (columns, text)
            if columns is not None:  # tqdm leaves the terminal's last column free
                assert len(text) <= columns - 1 and len(found[1]) >= 10, (columns, text)
        shown = {item.split("=")[0] for item in line.fullmatch(drawn[-1])[2].split(", ") if item}
        assert shown == ({"p"} if columns == 80 else {"G", "D", "p", "r_t"}), (columns, drawn[-1])


def test_load_base_without_progress_says_that_it_waited_for_another_process_download(base, tmp_path, monkeypatch,
                                                                                       capsys):
    """`finetune --no-progress` (a log's mode) said "downloading the base model ... downloaded" of a base that another
    process was downloading, which it only waited for (blank for minutes, and fetch said nothing of the wait; forty-
    third session's audit): the wait is said as it starts, naming that process, and the end says that it waited."""
    import time

    from http_server import serve

    from toonlib.train.loop import _load_base

    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    with serve({"/base.safetensors": base["base"].read_bytes()}) as server:
        server.hold, server.cut = threading.Event(), 1000  # the other process gets 1000 bytes, then waits
        url = f"{server.base}/base.safetensors"
        fetching = "import sys; from toonlib.download import fetch; fetch(sys.argv[1], progress=False)"
        first = subprocess.Popen([sys.executable, "-c", fetching, url], env=os.environ.copy())
        loaded: list = []
        out = err = ""
        try:
            assert server.streaming.wait(timeout=300)
            loading = threading.Thread(target=lambda: loaded.append(_load_base(url, False)))
            loading.start()
            deadline = time.monotonic() + 60
            while "waiting" not in err and time.monotonic() < deadline:
                time.sleep(0.2)
                said = capsys.readouterr()
                out, err = out + said.out, err + said.err
        finally:
            server.hold.set()
        loading.join(timeout=300)
        assert first.wait(timeout=300) == 0
    said = capsys.readouterr()
    out, err = out + said.out, err + said.err
    path = download.local_path(url)
    lock = path.parent / ".locks" / f"{path.name}.lock"
    assert err == f"toonlib: waiting for process {first.pid} to finish downloading {path.name} (lock {lock})\n"
    assert out.splitlines() == [f"{url}: downloading the base model",
                                f"{url}: downloaded (this run waited for the download of process {first.pid})"]
    assert len(loaded) == 1 and loaded[0][1] is not None  # G, D, G_ema of the file the other process downloaded
    assert [path for path, _ in server.log] == ["/base.safetensors"]  # one download
