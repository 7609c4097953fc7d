"""Fine-tuning from Python, as users get it wrong: each mistake is said in one line naming what to pass, not with a
traceback from inside dataclasses, os or Pillow, and what the docstrings promise holds.

The tiny 16 px networks and data set of test_train.py, on one CPU thread.
"""
from __future__ import annotations

import re
import time

import numpy as np
import pytest
from test_train import base, config, one_thread, served  # noqa: F401 (fixtures)

from toonlib import data
from toonlib.checkpoints import load_network
from toonlib.data import ImageDataset
from toonlib.train import TrainConfig, finetune, latest_snapshot
from toonlib.train.config import TrainConfigError

EXAMPLE = re.escape("finetune(TrainConfig(data='faces/', resume='ffhq-256-noaug', run_dir='runs/toon')), or its "
                    "settings as keywords, finetune(data='faces/', resume='ffhq-256-noaug', run_dir='runs/toon'); ")


def test_a_run_folder_under_the_home_folder_is_there(base, tmp_path, monkeypatch):  # noqa: F811
    """run_dir='~/runs/toon' trained into a folder named '~' in the current one, and returned '~/runs/...' paths;
    latest_snapshot('~/runs/toon') said None, and resume='~/runs/toon' did not continue the run there."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    run = tmp_path / "home" / "runs" / "toon"
    path = finetune(config(base, "unused", run_dir="~/runs/toon", kimg=0.004, snapshot_kimg=0.004), progress=False)
    assert path == run / "network-snapshot-000000004.safetensors" and path.is_file()
    assert not (tmp_path / "work" / "~").exists()
    assert latest_snapshot("~/runs/toon") == path
    path = finetune(config(base, "unused", resume="~/runs/toon", run_dir="~/runs/toon", kimg=0.008,
                           snapshot_kimg=0.004), progress=False)
    assert path == run / "network-snapshot-000000008.safetensors"
    assert load_network(path).meta["finetune"]["base"] == str(base["base"])  # the run's own base, continued


def test_paths_of_another_type_are_refused_naming_the_field(base):  # noqa: F811
    """data=5 and resume=load_network(...) failed with os.fspath's "expected str, bytes or os.PathLike object, not
    int"; a Path is taken, as a string."""
    with pytest.raises(TrainConfigError, match=re.escape(
            "invalid TrainConfig: data must be the path of a folder or .zip file of images (a str or Path), got int; "
            "resume must be a checkpoint's path, URL or registry name, or a run folder (a str or Path), got Networks: "
            "give the file or registry name it was loaded from (the run records where its networks came from; "
            "save_network writes a loaded model to a file); kimg must be a number, got '20'")):
        TrainConfig(data=5, resume=load_network(base["base"]), run_dir="runs/toon", kimg="20")
    assert TrainConfig(data=base["data"], resume="r", run_dir="o").data == str(base["data"])


def test_image_seeds_may_be_a_range_or_a_numpy_array():
    """`image_seeds=range(16)` (how the default is written) and NumPy arrays were refused as not whole numbers."""
    for seeds in (range(4), np.arange(4)):
        assert TrainConfig(data="d", resume="r", run_dir="o", image_seeds=seeds).image_seeds == (0, 1, 2, 3)
    with pytest.raises(TrainConfigError, match=r"give at most 64 seeds .*; got 1000000000"):  # not a list of 1e9
        TrainConfig(data="d", resume="r", run_dir="o", image_seeds=range(10**9))
    # 0-9999 was taken: a grid of 10,000 images drawn at every snapshot (42 s and 1.5 GB at 32 px)
    assert len(TrainConfig(data="d", resume="r", run_dir="o", image_seeds="0-63").image_seeds) == 64
    for seeds in ("0-64", range(65)):
        with pytest.raises(TrainConfigError, match=r"\b65 seeds, more than the 64 taken here|give at most 64 seeds"):
            TrainConfig(data="d", resume="r", run_dir="o", image_seeds=seeds)
    for none in ((), iter([])):  # an empty iterator was told to give whole numbers
        with pytest.raises(TrainConfigError, match=r"image_seeds.* must not be empty"):
            TrainConfig(data="d", resume="r", run_dir="o", image_seeds=none)
    assert TrainConfig(data="d", resume="r", run_dir="o", image_seeds=iter([3, 1])).image_seeds == (3, 1)


def test_a_gpus_number_is_its_device():
    """`device=1` (torch.device(1) is cuda:1) was stored as '1' and refused as "not a torch device"."""
    assert TrainConfig(data="d", resume="r", run_dir="o", device=1).device == "cuda:1"
    assert TrainConfig(data="d", resume="r", run_dir="o", device=np.int64(0)).device == "cuda:0"


@pytest.mark.parametrize("settings, got", [
    ({}, "got nothing"),  # was: "TrainConfig.__init__() missing 3 required positional arguments"
    ({"data": "faces/"}, "got no resume or run_dir"),
    ({"data": "faces/", "resume": "r", "run_dir": "o", "kimgs": 20},  # was: "unexpected keyword argument 'kimgs'"
     "got 'kimgs' (did you mean 'kimg'?), which is no setting of TrainConfig"),
])
def test_finetune_without_its_settings_says_what_it_takes(settings, got):
    with pytest.raises(TypeError, match=f"^finetune takes a TrainConfig, {EXAMPLE}{re.escape(got)}$"):
        finetune(**settings)


def test_a_misspelt_argument_beside_a_config_is_not_called_a_setting():
    """finetune(config, progres=False) said to change the config with dataclasses.replace: progres is no setting."""
    with pytest.raises(TypeError, match=re.escape("got 'progres' (did you mean 'progress'?), which is no setting")):
        finetune(TrainConfig(data="d", resume="r", run_dir="o"), progres=False)


def test_a_callback_that_cannot_be_called_is_refused_before_the_run(base):  # noqa: F811
    """A callback that takes no info, or no callback at all, failed at the first snapshot, after the first hour of a
    run on a GPU; it is refused before anything is written."""
    cfg = config(base, "callback")
    with pytest.raises(TypeError, match=r"^callback is called as callback\(info\) at every snapshot, but "
                                        r"<lambda>\(\) cannot be called with 1 argument$"):
        finetune(cfg, progress=False, callback=lambda: None)
    with pytest.raises(TypeError, match=r"^callback is a function, called as callback\(info\) at every snapshot, "
                                        r"or None, got str$"):
        finetune(cfg, progress=False, callback="print")
    assert not (base["root"] / "callback").exists()


def test_a_base_with_nan_weights_is_refused_before_any_training(base, tmp_path):  # noqa: F811
    """A base (or a diverged run's snapshot given as one) whose D held a NaN trained from it: every loss NaN at once,
    the run's snapshots broken, and its advice a lower learning rate (the thirty-fourth session's review)."""
    import torch

    from toonlib.checkpoints import CheckpointError, save_network

    nets = load_network(base["base"])
    with torch.no_grad():
        nets.D.b16.fromrgb.weight[0, 0, 0, 0] = float("nan")
    broken = save_network(tmp_path / "diverged.safetensors", nets)
    with pytest.warns(UserWarning, match="its D holds weights that are NaN or infinite"), \
            pytest.raises(CheckpointError, match=rf"^{re.escape(str(broken))}: its D holds weights that are NaN or "
                                                 r"infinite \(b16\.fromrgb\.weight\): no run can continue from it"):
        finetune(config(base, "from-nan", resume=str(broken)), progress=False)
    assert not (base["root"] / "from-nan").exists()
    # a run whose newest training state diverged, continued, or another run started from its folder (the review)
    run = base["root"] / "diverging"
    finetune(config(base, "diverging", kimg=0.004), progress=False)
    [state_path] = run.glob("training-state-*.pt")
    state = torch.load(state_path, weights_only=False)
    state["G"]["synthesis.b16.conv0.weight"].fill_(float("inf"))
    torch.save(state, state_path)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(run))}: the run's newest training state: its G holds "
                                              r"weights that are NaN or infinite \(synthesis\.b16\.conv0\.weight\)"):
        finetune(config(base, "diverging", kimg=0.008), progress=False)
    with pytest.raises(CheckpointError, match=r"holds weights that are NaN or infinite"):
        finetune(config(base, "from-diverged-run", resume=str(run)), progress=False)


def test_one_image_as_the_data_names_the_folder_to_give(base, tmp_path):  # noqa: F811
    """It said "'.../00.png' is neither a folder nor a .zip file of images", and not what to give."""
    image = base["data"] / "00.png"
    with pytest.raises(ValueError, match=re.escape(
            f"'{image}' is one image, not a folder or .zip file of images: give the folder that holds the training "
            f"images, at least 8, such as '{base['data']}'")):
        finetune(config(base, "one-image", data=str(image)), progress=False)
    assert not (base["root"] / "one-image").exists()


def test_preparing_images_in_a_log_updates_its_bar_seldom(base, monkeypatch, capsys):  # noqa: F811
    """Written to a file or a pipe (capsys: no terminal), the bar of the images being prepared was redrawn ten times
    a second (tqdm's own bar, not `messages.progress_bar`)."""
    prepare = data._prepare_one

    def slowly(*args, **kwargs):
        time.sleep(0.03)
        return prepare(*args, **kwargs)

    monkeypatch.setattr(data, "_prepare_one", slowly)  # 64 images: 2 s
    ImageDataset(base["data"], 16, progress=True)
    records = [r for r in capsys.readouterr().err.split("\r") if "Preparing images" in r]
    assert len(records) <= 3 and "64/64" in records[-1], records


def test_no_progress_shows_no_download_bar(base, served, tmp_path, monkeypatch, capsys):  # noqa: F811
    """finetune(progress=False) ("no progress bars") drew the bar of the base model's download."""
    url, seen = served
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    path = finetune(config(base, "downloaded", resume=f"{url}/base.safetensors", kimg=0.004, snapshot_kimg=0.004),
                    progress=False)
    assert path.is_file() and seen == ["/base.safetensors"]
    out, err = capsys.readouterr()
    assert err == ""
    # a line as the download starts and one as it ends instead (minutes of a 1024 px base were silent; audit)
    assert out.splitlines()[:2] == [f"{url}/base.safetensors: downloading the base model",
                                    f"{url}/base.safetensors: downloaded"], out


def test_the_data_and_resolution_are_refused_before_the_base_is_downloaded(base, served, tmp_path,  # noqa: F811
                                                                           monkeypatch):
    """A misspelt data folder, one of too few images, a run folder inside it, and a resolution the registry's base
    does not have were refused after the base's download (hundreds of MB; thirty-eighth session's audit)."""
    import shutil

    from toonlib import models
    from toonlib.data import TooFewImagesError
    from toonlib.models import ModelInfo

    url, seen = served
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    remote = f"{url}/base.safetensors"
    few = tmp_path / "few"
    few.mkdir()
    for name in sorted(base["data"].iterdir())[:3]:
        shutil.copy(name, few / name.name)
    with pytest.raises(FileNotFoundError, match="no such folder or .zip file: '.*facse'"):
        finetune(config(base, "a", resume=remote, data=str(tmp_path / "facse")), progress=False)
    with pytest.raises(TooFewImagesError, match=r"^found 3 image files in '.*few'; need at least 8$"):
        finetune(config(base, "b", resume=remote, data=str(few)), progress=False)
    with pytest.raises(ValueError, match="is inside the data folder"):
        finetune(config(base, "c", resume=remote, run_dir=str(base["data"] / "run")), progress=False)
    info = ModelInfo(name="tiny", description="test", sources=(remote,), filename="tiny.safetensors",
                     format="native", resolution=16, license="test", origin="http://example.invalid")
    monkeypatch.setitem(models.MODELS, "tiny", info)
    with pytest.raises(ValueError, match=r"^--resolution 8 \(resolution=8\): the base model tiny makes 16x16 images"):
        finetune(config(base, "d", resume="tiny", resolution=8), progress=False)
    assert seen == [] and not (tmp_path / "cache").exists()
