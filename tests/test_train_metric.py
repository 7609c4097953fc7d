"""The quality metric at fine-tuning snapshots (KID / FID through torch-fidelity), offline: a random-weights
Inception-v3 of torch-fidelity's architecture is put where the registry's `inception-fid` file lives, so the
production path (fetch from the cache, safe load, torch-fidelity) runs unchanged."""
from __future__ import annotations

import copy
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import toonlib.cli
from toonlib import download
from toonlib.checkpoints import Networks, save_network
from toonlib.networks import Discriminator, Generator
from toonlib.notebook import snapshot_viewer
from toonlib.quality import INCEPTION_MODEL, MetricUnavailable, inception_weights
from toonlib.train import TrainConfig, Trainer, finetune

TINY = dict(img_resolution=16, channel_base=256, channel_max=32)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory) -> bytes:
    """torch-fidelity's Inception-v3 with seeded random weights, as a state-dict file's bytes."""
    from torch_fidelity import feature_extractor_inceptionv3 as inception

    with pytest.MonkeyPatch.context() as mp:  # build the architecture without its pretrained weights
        mp.setattr(inception, "load_state_dict_from_url", lambda *args, **kwargs: None)
        mp.setattr(inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        torch.manual_seed(0)
        net = inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for module in net.modules():  # He initialisation keeps the features' scale through the 90+ layers
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("inception") / "weights.pth"
    torch.save(net.state_dict(), path)
    return path.read_bytes()


@pytest.fixture()
def weights_path(tmp_path, monkeypatch) -> Path:
    """Empty cache folders (toonlib's and torch hub's); returns where the registry keeps the Inception file."""
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return download.local_path(INCEPTION_MODEL)


def _place(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("metric")
    (root / "data").mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "data" / f"{i}.png")
    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, **TINY)
    save_network(root / "base.safetensors", Networks(G_ema=copy.deepcopy(G), G=G, D=Discriminator(**TINY)))
    return {"root": root, "data": root / "data", "base": root / "base.safetensors"}


def _config(base: dict, run: Path, **overrides) -> TrainConfig:
    fields = dict(data=str(base["data"]), resume=str(base["base"]), run_dir=str(run), prepare="none", batch_size=4,
                  kimg=0.008, snapshot_kimg=0.004, image_seeds=(0, 1), pl_weight=0, metric="kid", metric_images=8)
    return TrainConfig(**{**fields, **overrides})


class _Handle:
    """What IPython's `display(obj, display_id=True)` returns: `update` replaces the shown object in place."""

    def __init__(self, obj: object):
        self.shown = obj

    def update(self, obj: object) -> None:
        self.shown = obj


def test_kid_is_logged_and_plotted_at_every_snapshot_without_changing_training(base, weights_path, random_inception,
                                                                               tmp_path, monkeypatch):
    _place(weights_path, random_inception)
    handles = []
    monkeypatch.setattr("IPython.display.display", lambda obj, display_id=False: handles.append(_Handle(obj))
                        or handles[-1])
    viewer = snapshot_viewer()  # notebook 01's live display
    run = tmp_path / "run"
    infos = []
    finetune(_config(base, run, ada_interval=1), progress=False,  # ADA measures r_t at every minibatch
             callback=lambda info: (infos.append(info), viewer(info)))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in records] == [0.004, 0.008]
    assert all(isinstance(r["kid"], float) and math.isfinite(r["kid"]) for r in records), records
    assert [i["kid"] for i in infos] == [r["kid"] for r in records]
    assert records[0]["kid"] != records[1]["kid"]  # G_ema changed between the snapshots
    assert any((run / "metric-cache").rglob("*")), "the real images' features are cached"
    assert (run / "metrics.png").is_file()
    line = handles[0].shown  # the numbers of the last snapshot, p, r_t and the metric among them
    assert line.startswith("kimg 0.008") and f"p {records[1]['augment_p']:.3f}" in line
    assert f"r_t {records[1]['r_t']:.3f}" in line and line.endswith(f"KID {records[1]['kid']:.4f}")
    # The metric draws its own random numbers: the networks are the same without it.
    finetune(_config(base, tmp_path / "without", metric="none", ada_interval=1), progress=False)
    a = torch.load(run / "training-state-000000008.pt", weights_only=True)
    b = torch.load(tmp_path / "without" / "training-state-000000008.pt", weights_only=True)
    assert all(torch.equal(a["G_ema"][k], b["G_ema"][k]) for k in a["G_ema"])
    assert torch.equal(a["rng"][0]["cpu"], b["rng"][0]["cpu"])


def test_fid_too(base, weights_path, random_inception, tmp_path):
    _place(weights_path, random_inception)
    run = tmp_path / "run"
    finetune(_config(base, run, metric="fid", kimg=0.004), progress=False)
    record = json.loads((run / "metrics.jsonl").read_text())
    assert math.isfinite(record["fid"]) and record["fid"] > 0 and "kid" not in record


def test_the_quality_of_a_finished_run_is_measured_on_its_images(base, weights_path, random_inception, tmp_path):
    """A Trainer of a finished run reads no image at its start, and its `quality()` was an AttributeError on None
    (thirty-third session's audit): it reads them then, and measures the run's last network as its last snapshot did."""
    _place(weights_path, random_inception)
    run = tmp_path / "run"
    finetune(_config(base, run, kimg=0.004), progress=False)
    logged = json.loads((run / "metrics.jsonl").read_text())["kid"]
    trainer = Trainer(_config(base, run, kimg=0.004), progress=False)
    try:
        assert trainer.dataset is None  # nothing read for a run with nothing to train
        assert trainer.quality() == {"kid": pytest.approx(logged, rel=1e-5, abs=1e-7)}
    finally:
        trainer.close()
    # after run(), which released the folder, with the dataset cache deleted to free space: "another fine-tuning run
    # was started in this folder" (the review of the change)
    trainer = Trainer(_config(base, run, kimg=0.004), progress=False)
    with pytest.warns(UserWarning, match="is done"):
        trainer.run()
    shutil.rmtree(run / "dataset-cache")
    assert trainer.quality() == {"kid": pytest.approx(logged, rel=1e-5, abs=1e-7)}
    Trainer(_config(base, run, kimg=0.004), progress=False).close()  # the folder was released again


def test_metric_auto_is_off_on_the_cpu(base, weights_path, tmp_path):
    run = tmp_path / "run"
    finetune(_config(base, run, metric="auto", kimg=0.004), progress=False)  # no weights needed, none fetched
    assert "kid" not in json.loads((run / "metrics.jsonl").read_text())
    assert not weights_path.exists()


def test_unusable_weights_stop_the_command_with_a_clear_message(base, weights_path, tmp_path, capsys):
    _place(weights_path, b"\x80\x02}q\x00.not a state dict")
    err = _refused_kid_run(base, tmp_path / "run", capsys)
    assert "--metric kid:" in err and "metric='kid'" not in err  # the option as typed
    assert "not a plain Inception state dict" in err and "Traceback" not in err


def _refused_kid_run(base, run, capsys) -> str:
    """`toonlib finetune --metric kid` of `base`'s data into `run`, which must stop before training (exit 2, no
    snapshot); its stderr."""
    code = toonlib.cli.main(["finetune", "--data", str(base["data"]), "--resume", str(base["base"]), "--run-dir",
                             str(run), "--prepare", "none", "--batch-size", "4", "--kimg", "0.004", "--metric", "kid",
                             "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not run.exists() or not list(run.glob("network-snapshot-*")), "nothing trained"
    return err


def test_weights_that_cannot_be_downloaded_are_explained(monkeypatch):
    def offline(*args, **kwargs):
        raise download.DownloadError("could not download inception-fid: no internet connection.", Path("x"),
                                     "no internet connection", True)

    monkeypatch.setattr("toonlib.quality.fetch", offline)
    with pytest.raises(MetricUnavailable, match="^FID / KID need torch-fidelity's Inception-v3 weights: could not "
                                                "download .*no internet") as raised:
        inception_weights(progress=False)
    assert "  - or fetch them where there is internet (`toonlib fetch inception-fid`)" in str(raised.value)
    # the way out is the last of the download's advice lines, not a sentence glued to its file path
    assert str(raised.value).splitlines()[-1] == "  - or train without a quality metric: --metric none (metric='none')"


class _Planted:
    """A pickle that runs code when it is loaded by a full unpickler: it writes a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code from the run folder ran"))


def test_a_planted_or_damaged_feature_cache_is_computed_again_never_unpickled(base, weights_path, random_inception,
                                                                               tmp_path):
    """torch-fidelity reads the real images' features from the run folder with a full unpickler: a file planted there
    (a shared run folder, one downloaded to continue) ran its code at the next snapshot, and one cut short (a partial
    Drive sync) stopped the run there with a traceback, every time. Now either is deleted with a warning and computed
    again; FID's cached statistics (NumPy arrays) stay in use."""
    _place(weights_path, random_inception)
    run = tmp_path / "run"
    finetune(_config(base, run, kimg=0.004, metric="fid"), progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        finetune(_config(base, run, kimg=0.008, metric="fid"), progress=False)
    assert not [w for w in caught if "no usable cache" in str(w.message)]  # FID's cached statistics are usable
    assert sorted(p.name.split("-compat-")[1] for p in (run / "metric-cache").iterdir()) == [
        "features-2048.pt", "stat-fid-2048.pt"]
    (cached,) = (run / "metric-cache").glob("reals-*-features-*.pt")
    marker = tmp_path / "ran.txt"
    for kimg, damage in [(0.012, lambda: torch.save(_Planted(marker), cached)),
                         (0.016, lambda: cached.write_bytes(cached.read_bytes()[:100]))]:
        damage()
        with pytest.warns(UserWarning, match=rf"^{cached} is no usable cache of the real images' features \(\w+.*\): "
                                             "deleted, they are computed again$"):
            finetune(_config(base, run, kimg=kimg), progress=False)
        assert not marker.exists()
        torch.load(cached, weights_only=True)  # computed again
    # one that cannot be read for another reason than its content (I/O, permission, memory): the metric is computed
    # without the cache, and the snapshot saved (it stopped the run before its training state was written)
    real_load = torch.load

    def unreadable(path, *args, **kwargs):
        if "metric-cache" in str(path):
            raise OSError(5, "Input/output error")
        return real_load(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(torch, "load", unreadable)
        with pytest.warns(UserWarning, match=rf"^{cached}: the cache of the real images' features cannot be used "
                                             r"\(OSError: \[Errno 5\] Input/output error\): the metric is computed "
                                             "without it$"):
            finetune(_config(base, run, kimg=0.020), progress=False)
    assert cached.is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in records] == [0.004, 0.008, 0.012, 0.016, 0.020]
    assert all(math.isfinite(r["kid"]) for r in records[2:])


def test_a_usable_feature_cache_is_checked_once_per_process(tmp_path, monkeypatch):
    """Every snapshot loaded the whole cache (FID's statistics: ~32 MB) before torch-fidelity loaded it again: a file
    found usable, unchanged since, is not read again."""
    from toonlib import quality

    torch.save(torch.ones(4, 2048), tmp_path / "reals-8-key-inception-v3-compat-features-2048.pt")
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: loads.append(args[0]) or real_load(*args, **kwargs))
    assert quality._usable_cache(tmp_path, "reals-8-key-") and quality._usable_cache(tmp_path, "reals-8-key-")
    assert len(loads) == 1
    torch.save(torch.zeros(5, 2048), tmp_path / "reals-8-key-inception-v3-compat-features-2048.pt")  # changed
    assert quality._usable_cache(tmp_path, "reals-8-key-") and len(loads) == 2


def test_image_quality_of_one_real_or_one_generated_image_is_refused(base, random_inception, tmp_path):
    """`image_quality` with 1 real or 1 generated image gave KID = NaN after ~100 NumPy warnings, and FID a
    LinAlgError traceback (thirty-ninth session's audit): refused before torch-fidelity runs."""
    from toonlib.checkpoints import load_generator
    from toonlib.quality import image_quality

    weights = tmp_path / "inception.pth"
    weights.write_bytes(random_inception)
    G = load_generator(base["base"])
    reals = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for n_reals, n_fakes, metrics in [(1, 8, ("kid",)), (8, 1, ("kid",)), (1, 8, ("fid",)), (8, 0, ("kid", "fid"))]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # NumPy's "invalid value encountered" was all that was said
            with pytest.raises(ValueError) as error:
                image_quality(G, reals[:n_reals], metrics, weights, num_images=n_fakes, batch_size=8)
        assert str(error.value) == (f"KID / FID need at least 2 real and 2 generated images, got {n_reals} real and "
                                    f"{n_fakes} generated (num_images): give more of each")


def test_a_snapshots_metric_is_said_while_it_is_computed_and_the_clock_goes_on(base, weights_path, random_inception,
                                                                              tmp_path, monkeypatch, capsys):
    """For each snapshot's KID (minutes on a CPU) the bar stood still, its clock stopped, and with --no-progress
    nothing was said (forty-second session's audit)."""
    import time

    from test_train import drawn_lines, terminal

    from toonlib.train import loop

    _place(weights_path, random_inception)

    def slow(*args, **kwargs) -> dict[str, float]:
        time.sleep(2.5)
        return {"kid": 0.25}

    monkeypatch.setattr(loop, "image_quality", slow)
    finetune(_config(base, tmp_path / "quiet", kimg=0.004), progress=False)
    assert f"{tmp_path / 'quiet'}: computing KID of 8 generated images for the snapshot at 0.004 kimg...\n" in (
        capsys.readouterr().out)
    stream = terminal(monkeypatch, 120)
    finetune(_config(base, tmp_path / "bar", kimg=0.004), progress=True)
    computing = [line for line in drawn_lines(stream.getvalue()) if line.endswith(", computing KID...]")]
    clocks = {line.split(" [")[1].split("<")[0] for line in computing}
    assert len(clocks) >= 2, stream.getvalue()  # redrawn as the seconds go by
    assert not drawn_lines(stream.getvalue())[-1].endswith("computing KID...]")


def test_kid_without_torch_fidelity_is_refused_before_training(base, weights_path, random_inception, tmp_path,
                                                                capsys, monkeypatch):
    """torch-fidelity missing (a --no-deps or broken install) was a bare "No module named 'torch_fidelity'" at the
    first snapshot, after training had started (forty-second session's audit)."""
    import importlib.util

    _place(weights_path, random_inception)  # the weights are there: the package alone is missing
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "torch_fidelity" else find_spec(name, *args))
    err = _refused_kid_run(base, tmp_path / "run", capsys)
    assert "--metric kid: FID / KID need torch-fidelity, which is not installed: pip install torch-fidelity" in err
    assert "--metric none" in err and "Traceback" not in err
