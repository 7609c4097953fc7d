"""Every notebook is committed without outputs, has Colab forms for its parameters, mounts Drive before it
loads anything, and runs top to bottom on tiny checkpoints (CPU), also in a fake Colab whose user declines
Drive and cancels the first upload dialog (`google.colab` replaced at its boundary: tests/fake_colab)."""
from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from tiny import INTERRUPTS, import_cut_short, tiny_generator, write_photos, write_toonify_models

from notebooks import (
    NOTEBOOKS,
    SKIP_TAG,
    cell_index,
    error_of_the_cell,
    execute,
    inject,
    outputs_text,
    prepare,
    shown_error,
)
from toonlib.checkpoints import load_network, save_network
from toonlib.projection import load_latent

ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.parametrize("name", ALL)
def test_committed_without_outputs_and_thin(name):
    nb = json.loads((NOTEBOOKS / name).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{name}: strip outputs"
            source = "".join(cell["source"])
            assert "%cd" not in source and "git clone" not in source, f"{name}: no clone/cd in notebooks"
    tags = [t for c in nb["cells"] for t in c.get("metadata", {}).get("tags", [])]
    assert "parameters" in tags and "skip-execution" in tags


def test_blend_notebook_runs(tmp_path):
    base, toon = tmp_path / "base.safetensors", tmp_path / "toon.safetensors"
    save_network(base, tiny_generator(0))
    save_network(toon, tiny_generator(1))
    nb = execute("02_blend.ipynb", {"base_model": str(base), "toon_model": str(toon), "toon_network": "G_ema",
                                    "swap_res": 8, "output": "blend.safetensors"}, cwd=tmp_path)
    assert f"saved {tmp_path / 'blend.safetensors'}: toon up to 8 px" in outputs_text(nb)  # in full, as 03's, 04's
    save = nb.cells[cell_index(nb, "explorer.save(")]
    assert [out.output_type for out in save.outputs] == ["stream"], save.outputs  # not PosixPath(...) below
    saved = load_network(tmp_path / "blend.safetensors")
    assert saved.G_ema.img_resolution == 32
    assert saved.meta["blend"] == {"toon": str(toon), "base": str(base), "swap_res": 8, "level": 0,
                                   "blend_width": None}


def test_blend_notebooks_grid_follows_the_explorers_controls(tmp_path):
    """The grid of every swap resolution was drawn with the parameters cell's level, width, truncation and seeds
    whatever the explorer above it said, and took seeds its box refuses: run again, it draws the explorer's."""
    import base64
    import io

    import numpy as np
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell
    from PIL import Image

    from toonlib.blending import swap_resolution_grid

    base, toon = tmp_path / "base.safetensors", tmp_path / "toon.safetensors"
    save_network(base, tiny_generator(0))
    save_network(toon, tiny_generator(1))
    nb = prepare("02_blend.ipynb", {"base_model": str(base), "toon_model": str(toon), "toon_network": "G_ema",
                                    "swap_res": 8, "output": "blend.safetensors", "use_drive": False})
    grid = cell_index(nb, "swap_resolution_grid(")
    nb.cells.append(new_code_cell("explorer.level.value, explorer.blend_width.value = 1, 1.0\n"
                                  "explorer.truncation.value, explorer.seeds.value = 0.5, '5'"))
    nb.cells.append(new_code_cell("explorer.seeds.value = 'x'"))
    client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells[:-2]):
            client.execute_cell(cell, index)
        for index in (len(nb.cells) - 2, grid):  # the explorer's controls moved, then the grid cell run again
            client.execute_cell(nb.cells[index], index)
        [png] = [out.data["image/png"] for out in nb.cells[grid].outputs if "image/png" in out.get("data", {})]
        client.execute_cell(nb.cells[-1], len(nb.cells) - 1)  # a seed list the explorer refuses
        client.execute_cell(nb.cells[grid], grid)
    drawn = np.asarray(Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB"))
    expected = np.asarray(swap_resolution_grid(toon, base, [5], level=1, blend_width=1.0, truncation_psi=0.5))
    assert drawn.shape == expected.shape and np.abs(drawn.astype(int) - expected).mean() < 0.5
    assert shown_error(nb.cells[grid]) == ("the explorer's seeds: bad seed list 'x': use numbers and ranges such as "
                                           "'0-3,7'")


def _photo() -> str:
    from matplotlib import cbook

    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def test_project_notebook_runs(tmp_path, monkeypatch, random_vgg_torch_home):
    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    save_network(tmp_path / "base.safetensors", tiny_generator(0))
    nb = execute("03_project.ipynb", {"photo_path": _photo(), "model": str(tmp_path / "base.safetensors"), "steps": 4,
                                      "frame_every": 2, "detector": "dlib", "output": "w.npz"}, cwd=tmp_path)
    # the video embedded, and no file written: a fixed projection.mp4 replaced the user's own (thirty-eighth session)
    assert json.dumps(nb).count("data:video/mp4;base64,") == 1  # in the panel's Output widget's state
    assert not (tmp_path / "projection.mp4").exists()
    assert "saved" in outputs_text(nb)
    assert load_latent(tmp_path / "w.npz").shape == (1, 8, 16)


def test_toonify_notebook_without_a_photo_waits_for_an_upload_outside_colab(tmp_path, monkeypatch,
                                                                           random_vgg_torch_home):
    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    write_toonify_models(tmp_path)
    nb = execute("04_toonify.ipynb", {"base_model": str(tmp_path / "base.safetensors"),
                                      "toon_model": str(tmp_path / "toon.safetensors"),
                                      "detector": "dlib"}, cwd=tmp_path)
    assert "No toon yet: upload a photo in the panel above" in outputs_text(nb)
    assert not (tmp_path / "toon.png").exists()


def _finetune_files(folder: Path) -> tuple[Path, Path]:
    """A tiny base model with its discriminator (base.safetensors) and 12 random 40 px images (faces/) in `folder`."""
    import numpy as np
    from PIL import Image

    from toonlib.checkpoints import Networks
    from toonlib.networks import Discriminator

    G = tiny_generator(0)
    D = Discriminator(img_resolution=32, channel_base=128, channel_max=16)
    save_network(folder / "base.safetensors", Networks(G_ema=G, G=G, D=D))
    data = folder / "faces"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(data / f"{i}.png")
    return folder / "base.safetensors", data


def test_finetune_notebook_runs_and_resumes(tmp_path):
    base, data = _finetune_files(tmp_path)
    params = {"data_path": str(data), "base_model": str(base), "kimg": 0.008, "batch_size": 4,
              "snapshot_kimg": 0.004}
    nb = execute("01_finetune.ipynb", params, cwd=tmp_path)
    run = tmp_path / "runs" / "toon"
    assert list(run.glob("training-state-*.pt")) and (run / "metrics.png").exists() and (run / "latest.json").exists()
    text = outputs_text(nb)
    newest = max(run.glob("network-snapshot-*"))  # what 02 needs, its base included (02's default is another)
    assert (f"Blend it in 02_blend.ipynb with base_model = {str(base.resolve())!r}, toon_model = "
            f"{str(Path('runs') / 'toon' / newest.name)!r}, toon_network = 'G_ema'") in text
    snapshots = sorted(path.name for path in run.glob("network-snapshot-*"))
    assert len(snapshots) >= 2 and "snapshots:\n  " + "\n  ".join(snapshots) in text  # show_run lists them all
    assert "kimg 0.008" in text and "  p 0.000" in text  # the snapshot viewer's line, updated in place
    shown = [out["data"]["text/plain"] for cell in nb.cells for out in cell.get("outputs", [])
             if "text/plain" in out.get("data", {})]
    assert not [t for t in shown if t.startswith(("'", '"'))], f"strings shown with their quotes: {shown}"
    # Re-running with a larger budget resumes the run instead of starting over.
    execute("01_finetune.ipynb", {**params, "kimg": 0.012}, cwd=tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3


# --------------------------------------------------------------------------------------------
# Error paths as a new user meets them: one message saying what to do, not a traceback


def _assert_brief(text: str | None, start: str) -> None:
    """`text`, a cell's error as shown, is a message starting with `start`, without a traceback's frames."""
    assert text is not None and text.startswith(start), text
    assert "Traceback" not in text and "File " not in text and "---->" not in text and "Cell In[" not in text, text


def test_finetune_notebook_says_what_to_set_and_how_to_go_on(tmp_path, monkeypatch):
    """Notebook 01 in Jupyter, as shipped (data_path empty), was a RuntimeError traceback through upload_images; a
    data_path naming nothing, or a folder without images, failed in the training cell, after the base model had
    loaded (a download), with a traceback; the last cell before any snapshot was a FileNotFoundError; stopping the
    training with the kernel's interrupt, as the notebook invites, was a KeyboardInterrupt traceback."""
    import signal
    import threading
    import time

    from nbclient import NotebookClient

    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    base, faces = _finetune_files(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    params = {"data_path": "", "base_model": str(base), "kimg": 0.4, "batch_size": 4, "snapshot_kimg": 0.008}
    nb = prepare("01_finetune.ipynb", params)
    setup, train, show = cell_index(nb, "mount_drive("), cell_index(nb, "TrainConfig("), len(nb.cells) - 1
    client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}})

    def run(index: int, **changed) -> str | None:
        if changed:
            injected = inject(nb, {**params, **changed})
            client.execute_cell(nb.cells[injected], injected)
        client.execute_cell(nb.cells[index], index)
        return shown_error(nb.cells[index])

    hint = ('Set data_path in the parameters cell to the folder or .zip file of your cartoon faces (a few hundred '
            'images), e.g. data_path = "toons" (a folder beside this notebook) or data_path = "~/Downloads/toons.zip", '
            "then run the notebook again.")
    with client.setup_kernel():
        for index in range(setup):
            client.execute_cell(nb.cells[index], index)
        assert run(setup) == f"No training images: data_path is empty.\n{hint}"
        _assert_brief(run(show), "No snapshot in runs/toon yet: run the training cell above first")
        assert run(setup, data_path="toonz") == (f"data_path = 'toonz': no such folder or .zip file: "
                                                 f"'{tmp_path / 'toonz'}'.\n{hint}")
        _assert_brief(run(setup, data_path="empty"), f"data_path = 'empty': found 0 image files in "
                                                     f"'{tmp_path / 'empty'}' (their names end in .jpg, .jpeg, .png")
        # the training cell after a set-up cell that stopped: it trained on the images of the data_path before
        _assert_brief(run(train), "data is None: the cell above that sets it did not finish. Fix what it said")
        assert run(setup, base_model="ffhq-256-noaugg").startswith("base_model")  # stopped before run_dir is set
        _assert_brief(run(show), "run_dir is None: the cell above that sets it did not finish")  # not a TypeError
        assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()  # nothing loaded or written
        # images beside the notebook: the run folder, runs/toon, is inside them; the notebook's run_dir is no
        # parameter, data_path is (it said "Put the run folder elsewhere" alone)
        assert run(setup, data_path=".") is None
        _assert_brief(run(train), f"run_dir='runs/toon' is inside the data folder {tmp_path}: the run's images "
                                  "(fakes, metrics.png) would become training images. Put the run folder elsewhere, "
                                  f"e.g. {tmp_path.parent / 'runs' / tmp_path.name}, or the images in a folder of "
                                  "their own (data_path)")
        assert run(setup, data_path="faces") is None
        # data_path or run_name changed in the parameters cell, the set-up cell skipped: said, nothing trained
        _assert_brief(run(train, data_path="empty", run_name="other"),
                      "data_path = 'empty', run_name = 'other': changed since the set-up cell ran (with data_path = "
                      "'faces', run_name = 'toon'). Run the set-up cell again, then this cell.")
        assert not (tmp_path / "runs").exists()
        injected = inject(nb, {**params, "data_path": "faces", "run_name": "toon"})  # as the set-up cell ran
        client.execute_cell(nb.cells[injected], injected)
        pid = client.km.provisioner.pid
        first_snapshot = tmp_path / "runs" / "toon" / "latest.json"

        def interrupt() -> None:  # the kernel's interrupt button, once the run has a snapshot
            deadline = time.monotonic() + 300
            while not first_snapshot.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(pid, signal.SIGINT)

        threading.Thread(target=interrupt, daemon=True).start()
        _assert_brief(run(train), "Training stopped (interrupted).\nRun this cell again to continue from its newest "
                                  "snapshot (network-snapshot-")
        said = "".join(out.get("text", "") for out in nb.cells[train].outputs)  # the trainer's words, a notebook's
        assert "Interrupted: saving the run at the end of this minibatch" in said and "Ctrl-C" not in said
        assert run(show) is None
    assert f"Blend it in 02_blend.ipynb with base_model = {str(base.resolve())!r}, toon_model" in outputs_text(nb)


def test_a_wrong_model_is_one_message_and_other_errors_keep_their_traceback(tmp_path, monkeypatch):
    """A misspelt model name or a model path that names nothing was a traceback through toonlib's loaders; the
    user's own mistakes in their own code still show Python's traceback."""
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell

    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    nb = prepare("02_blend.ipynb", {"base_model": "ffhq-1024-tfx", "use_drive": False})
    load = cell_index(nb, "load_blend_models(")
    nb.cells.append(new_code_cell("int('one')"))
    client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        for index in range(load + 1):
            client.execute_cell(nb.cells[index], index)
        _assert_brief(shown_error(nb.cells[load]), "unknown model 'ffhq-1024-tfx'. Did you mean 'ffhq-1024-tf'?")
        # the set-up cell said it first, naming the parameter: the load cell reads two models (neither was named)
        _assert_brief(shown_error(nb.cells[cell_index(nb, "check_models(")]),
                      "base_model = 'ffhq-1024-tfx': unknown model 'ffhq-1024-tfx'. Did you mean 'ffhq-1024-tf'?")
        injected = inject(nb, {"base_model": "models/ffhq.pkl"})
        client.execute_cell(nb.cells[injected], injected)
        client.execute_cell(nb.cells[load], load)
        assert shown_error(nb.cells[load]) == ("no checkpoint at models/ffhq.pkl ('ffhq.pkl' is the file of the "
                                               "registry's 'ffhq-1024': give that name to download it)")
        client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
    own = shown_error(nb.cells[-1])
    assert "Cell In[" in own and "ValueError: invalid literal for int() with base 10: 'one'" in own


def test_a_notebooks_errors_name_its_parameters(tmp_path, monkeypatch):
    """Notebook 04's misspelt base model was told as `base='ffhq-1024-tfx'`, the Toonifier's argument, which the
    notebook's user never wrote: its parameter is `base_model`."""

    from toonlib.notebook import _show_briefly, in_notebook_words

    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    nb = prepare("04_toonify.ipynb", {"base_model": "ffhq-1024-tfx", "use_drive": False, "detector": "dlib"})
    _assert_brief(error_of_the_cell(nb, "toonifier = Toonifier(", tmp_path),
                  "base_model = 'ffhq-1024-tfx': unknown model 'ffhq-1024-tfx'. Did you mean 'ffhq-1024-tf'?")
    from toonlib.checkpoints import CheckpointError
    from toonlib.notebook import check_models

    with pytest.raises(FileNotFoundError, match=r"^toon_model = 'nope\.pkl': no checkpoint at nope\.pkl$"):
        check_models(base_model="ffhq-1024-tf", toon_model="nope.pkl")  # registry names download nothing here
    with pytest.raises(CheckpointError, match=rf"^toon_model = '{tmp_path}': {tmp_path} is a folder, not a checkpoint"):
        check_models(toon_model=str(tmp_path))  # was said when loaded, without the parameter
    # the argument as a message's first word, and never inside other names or the prose
    names = {"which": "toon_network", "toon": "toon_model", "base": "base_model"}
    assert in_notebook_words("which (the generator of the checkpoint) must be 'G_ema' or 'G', got 'D'", names) == (
        "toon_network (the generator of the checkpoint) must be 'G_ema' or 'G', got 'D'")
    assert in_notebook_words("the toon model's base (--toon=x, toon_network='G')", names) == (
        "the toon model's base (--toon=x, toon_network='G')")
    # an option in both languages in Python's words alone, the notebook's parameter where it has one
    assert in_notebook_words("a new --run-dir (run_dir=); start from --resume runs/a.pkl (resume=) or the toon "
                             "(--toon, toon=); changed: --seed (seed=): 0 -> 1, --resolution 64 (resolution=64); "
                             "set TOONLIB_CACHE (or --cache-dir, cache_dir=)", {**names, "resume": "base_model"}) == (
        "a new run_dir; start from base_model=runs/a.pkl or the toon (toon_model); changed: seed: 0 -> 1, "
        "resolution=64; set TOONLIB_CACHE (or cache_dir)")
    # 01's run folder is `run_name` (it said "use a new run folder (run_dir)", a name of no parameter, and the options
    # that may change in the command line's words alone)
    finetune_names = {"resume": "base_model", "data": "data_path", "run_dir": "run_name"}
    assert '"run_dir": "run_name"' in "".join(json.loads((NOTEBOOKS / "01_finetune.ipynb").read_text())["cells"][3]
                                              ["source"])
    assert in_notebook_words("use a new run folder (--run-dir, run_dir=); --kimg (kimg=), --snapshot-kimg "
                             "(snapshot_kimg=), --metric (metric=) and the loss settings may change; a new --run-dir "
                             "(run_dir=); my_run_dirs in /content/run_dir/a, run_dir/b, run_dir.zip; --run-dir "
                             "runs/toon (run_dir='runs/toon') is inside", finetune_names) == (
        "use a new run folder (run_name); kimg, snapshot_kimg, metric and the loss settings may change; a new "
        "run_name; my_run_dirs in /content/run_dir/a, run_dir/b, run_dir.zip; run_dir='runs/toon' is inside")
    # (the value shown is no parameter's: run_name is 'toon')
    shown = []
    shell = SimpleNamespace(_showtraceback=lambda etype, value, lines: shown.append(lines))
    error = ValueError("which (the generator) must be 'G_ema' or 'G'")
    try:
        raise error
    except ValueError:  # raised here, not in toonlib: a traceback would be shown; the message as toonlib's
        monkeypatch.setattr("toonlib.notebook.in_toonlib", lambda filename: True)
        monkeypatch.setattr("toonlib.notebook._NOTEBOOK_PARAMETERS", names)  # as brief_errors(names) sets them
        _show_briefly(shell, ValueError, error, error.__traceback__)
    assert shown == [["toon_network (the generator) must be 'G_ema' or 'G'"]]


def test_blend_notebooks_bad_seeds_are_named_before_anything_downloads(tmp_path, monkeypatch):
    """02's `seeds = 'abc'` said "bad seed list 'abc'" without the parameter, and only in the explorer's cell, after
    both models had downloaded; the set-up cell names it, and the explorer's cell does too."""
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    nb = prepare("02_blend.ipynb", {"seeds": "abc", "use_drive": False})
    assert error_of_the_cell(nb, "check_models(", tmp_path) == "seeds = 'abc': use numbers and ranges such as '0-3,7'"
    assert not (tmp_path / "cache").exists()  # nothing downloaded
    assert "parse_seeds(seeds, parameter=\"seeds\")" in nb.cells[cell_index(nb, "blend_explorer(base")].source


def _blend_parameters(folder: Path, output: str) -> dict:
    """02's parameters for two tiny models written into `folder` (a base, and another as the toon's G_ema)."""
    base, toon = folder / "base.safetensors", folder / "toon.safetensors"
    save_network(base, tiny_generator(0))
    save_network(toon, tiny_generator(1))
    return {"base_model": str(base), "toon_model": str(toon), "toon_network": "G_ema", "swap_res": 8,
            "output": output, "use_drive": False}


def test_blend_notebooks_grid_and_save_cells_use_no_explorer_from_before(tmp_path):
    """02 run once, then other models and seeds = '0-40': the set-up cell let 41 seeds through (the models loaded,
    a GB each, before the explorer refused them), and after the explorer's cell stopped the grid and save cells used
    the explorer of the run before: the old models' blend was saved under the new output name."""
    good = _blend_parameters(tmp_path, "blendA.safetensors")
    nb = prepare("02_blend.ipynb", good)
    set_up, explorer, grid, save = (cell_index(nb, "check_models("), cell_index(nb, "blend_explorer(base"),
                                    cell_index(nb, "swap_resolution_grid("), cell_index(nb, "explorer.save("))
    with _ran_through(nb, len(nb.cells) - 1, tmp_path) as client:
        assert (tmp_path / "blendA.safetensors").is_file()
        injected = inject(nb, {**good, "seeds": "0-40", "output": "blendB.safetensors"})
        for index in range(injected, len(nb.cells)):  # every cell in turn, as Run All After does
            client.execute_cell(nb.cells[index], index)
    assert shown_error(nb.cells[set_up]) == ("seeds = '0-40': 41 seeds, more than the 32 taken here; give fewer, such "
                                             "as 0-5")
    assert shown_error(nb.cells[explorer]) is not None
    for index in (grid, save):
        _assert_brief(shown_error(nb.cells[index]), "explorer is None: the cell above that sets it did not finish")
    assert not (tmp_path / "blendB.safetensors").exists()


@pytest.mark.parametrize("parameter, message", [
    ({"swap_res": 33}, "swap_res must be a power of two >= 4 (a resolution such as 4, 8, ..., 1024), got 33"),
    ({"swap_res": 2048}, "swap_res 2048 is above the 1024 px of the toon model, which would then be used unblended"),
    ({"level": 2}, "level must be 0 or 1 (0: the swap block's conv0, 1: its conv1), got 2"),
    ({"truncation_psi": 1.5}, "truncation_psi must be a number from 0 to 1, got 1.5")])
def test_blend_notebooks_blend_settings_are_checked_before_anything_downloads(tmp_path, monkeypatch, parameter,
                                                                              message):
    """02's `level = 2` or `swap_res = 33` was refused by the explorer's cell, after both models had downloaded (a
    GB each); the set-up cell says it first."""
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    nb = prepare("02_blend.ipynb", {**parameter, "use_drive": False})
    assert error_of_the_cell(nb, "check_models(", tmp_path).startswith(message)
    assert not (tmp_path / "cache").exists()  # nothing downloaded


def test_blend_notebook_with_a_toon_of_another_base_stops_at_loading_saying_what_to_set(tmp_path):
    """Notebook 01's hint named the toon model but not its base, and 02's default base is another model: following it
    ended in the explorer's cell with a dump of layer shapes. The loading cell stops, saying to set base_model."""

    save_network(tmp_path / "base.safetensors", tiny_generator(0, img_resolution=64))
    save_network(tmp_path / "toon.safetensors", tiny_generator(1))
    nb = prepare("02_blend.ipynb", {"base_model": "base.safetensors", "toon_model": "toon.safetensors",
                                    "toon_network": "G_ema",
                                    "use_drive": False})
    assert error_of_the_cell(nb, "load_blend_models(", tmp_path) == (
        "toon_model = 'toon.safetensors' (32 px) cannot be blended with base_model = 'base.safetensors' (64 px): it "
        "was fine-tuned from another model. Set base_model in the parameters cell to the model the toon was "
        "fine-tuned from (notebook 01's last cell names it), then run the cells again.")


# --------------------------------------------------------------------------------------------
# Colab: forms, Drive first, a declined Drive prompt, a cancelled upload

FAKE_COLAB = Path(__file__).parent / "fake_colab"
DROPDOWNS = {"base_model", "toon_model", "model", "toon_network", "detector", "inversion", "space", "augment",
             "prepare", "swap_res", "level", "batch_size", "freeze_g", "metric"}
SLIDERS = {"steps", "truncation_psi", "blend_width", "frame_every", "freeze_d"}
LOADS = ("load_generator(", "load_blend_models(", "Toonifier(", "load_network(", "fetch(", "run_training(", "_panel(")


def _parameters(name: str) -> list[tuple[str, object, str]]:
    """(name, default, Colab form spec) of every assignment in the notebook's parameters cell."""
    nb = json.loads((NOTEBOOKS / name).read_text())
    [cell] = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    params = []
    for line in "".join(cell["source"]).splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = re.fullmatch(r"(\w+) = (.+?)  # @param (.+)", line)
        assert match, f"{name}: not a Colab form field: {line!r}"
        params.append((match[1], ast.literal_eval(match[2]), match[3]))
    return params


def _spec(spec: str) -> tuple[list | None, dict]:
    """A form spec's dropdown options (None for other fields) and its {key: value} settings."""
    options = None
    if spec.startswith("["):
        end = spec.index("]") + 1
        options, spec = ast.literal_eval(spec[:end]), spec[end:]
    settings = {k: ast.literal_eval(v) for k, v in re.findall(r'([\w-]+):\s*("[^"]*"|[-\d.]+|true|false)',
                                                              spec.replace("true", "True").replace("false", "False"))}
    return options, settings


@pytest.mark.parametrize("name", ALL)
def test_parameters_are_colab_forms_that_injection_still_overrides(name):
    from toonlib.pipeline import INVERT_MODES

    params = _parameters(name)
    names = [p[0] for p in params]
    assert "use_drive" in names, f"{name}: Drive can be skipped on purpose"
    for param, default, spec in params:
        options, settings = _spec(spec)
        if param in DROPDOWNS:
            assert options, f"{name}: {param} is a dropdown"
            assert default in options or settings.get("allow-input"), f"{name}: {param}={default!r} not offered"
        if default is None:  # "not given" (04's steps: each mode's own): a dropdown offering None, Python's value
            assert options and None in options and settings.get("type") == "raw", f"{name}: {param} offers None"
        elif param in SLIDERS:
            assert settings.get("type") == "slider", f"{name}: {param} is a slider"
            assert settings["min"] <= default <= settings["max"], f"{name}: {param}={default} outside its slider"
        if param == "swap_res":
            assert all(o is None or (o >= 4 and o & (o - 1) == 0) for o in options), "swap resolutions: powers of 2"
        if param == "inversion":
            assert options == list(INVERT_MODES), f"{name}: offer the inversion modes Toonifier has"
        if options is None:
            assert "type" in settings, f"{name}: {param} needs a form type"


@pytest.mark.parametrize("name", ALL)
def test_drive_is_mounted_before_anything_is_loaded(name):
    nb = json.loads((NOTEBOOKS / name).read_text())
    lines = [line for c in nb["cells"] if c["cell_type"] == "code" and SKIP_TAG not in c["metadata"].get("tags", [])
             for line in "".join(c["source"]).splitlines()]
    mounts = [i for i, line in enumerate(lines) if "mount_drive(use=use_drive)" in line]
    loads = [i for i, line in enumerate(lines) if any(call in line for call in LOADS)]
    assert len(mounts) == 1 and loads and mounts[0] < loads[0], f"{name}: mount Drive once, before loading models"


def _code(source: str) -> str:
    """A cell's Python: IPython's `!` and `%` lines blanked (indentation kept, so the blocks around them parse)."""
    return "\n".join(re.sub(r"^(\s*)[!%].*", r"\1pass", line) for line in source.splitlines())


@pytest.mark.parametrize("name", ALL)
def test_no_cell_overwrites_a_parameter(name):
    """A cell run again sees the parameters as the user set them: 04's photo cell once did `photo_path =
    choose_photo(photo_path)`, so running it again (what its messages say to do for another photo) reused the
    first upload instead of opening Colab's dialog."""
    nb = json.loads((NOTEBOOKS / name).read_text())
    params = {param for param, _, _ in _parameters(name)}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code" or "parameters" in cell["metadata"].get("tags", []):
            continue
        assigned = {node.id for node in ast.walk(ast.parse(_code("".join(cell["source"]))))
                    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
        assert not assigned & params, f"{name}: a cell assigns the parameters {assigned & params}"


def _run_install_cell(name: str, tmp_path: Path, colab: bool) -> bool:
    """Run `name`'s install cell in a kernel whose `pip` is a stub (on PATH), after `import google.colab` (the fake
    one, on PYTHONPATH) when `colab`; True if the cell called pip."""
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    nb = json.loads((NOTEBOOKS / name).read_text())
    [install] = [c for c in nb["cells"] if SKIP_TAG in c["metadata"].get("tags", [])]
    called = tmp_path / "pip-called"
    called.unlink(missing_ok=True)
    cells = ([new_code_cell("import google.colab")] if colab else []) + [new_code_cell("".join(install["source"]))]
    NotebookClient(new_notebook(cells=cells), timeout=120, kernel_name="python3").execute()
    return called.exists()


@pytest.mark.parametrize("name", ALL)
def test_install_cell_installs_in_colab_only(name, tmp_path, monkeypatch):
    """Run All in Jupyter ran `pip install toonlib @ git+...` too: an error screen offline, and a reinstall over
    the user's own (editable) install online."""
    stub = tmp_path / "bin" / "pip"
    stub.parent.mkdir()
    stub.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'pip-called'}\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FAKE_COLAB), os.environ.get("PYTHONPATH")])))
    assert not _run_install_cell(name, tmp_path, colab=False)
    assert _run_install_cell(name, tmp_path, colab=True)


@pytest.fixture
def fake_colab(tmp_path, monkeypatch):
    """`google.colab` replaced by tests/fake_colab, in this process and in notebook kernels started by the test.

    `answer(*dialogs)` queues what the user picks in each upload dialog (a list of paths; [] cancels);
    `log()` lists the fake's calls. FAKE_COLAB_DRIVE says whether the user accepts the Drive prompt.
    """
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(FAKE_COLAB))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FAKE_COLAB), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("FAKE_COLAB_DRIVE", "decline")
    monkeypatch.setenv("FAKE_COLAB_LOG", str(tmp_path / "colab.log"))
    monkeypatch.setenv("FAKE_COLAB_UPLOADS", str(tmp_path / "colab-uploads.json"))

    def answer(*dialogs) -> None:
        (tmp_path / "colab-uploads.json").write_text(json.dumps([[str(p) for p in d] for d in dialogs]))

    def log() -> list[str]:
        path = tmp_path / "colab.log"
        return path.read_text().splitlines() if path.exists() else []

    answer()
    yield SimpleNamespace(answer=answer, log=log)
    for module in set(sys.modules) - before:
        if module.split(".")[0] == "google":
            del sys.modules[module]


def test_outside_colab_nothing_is_mounted_or_asked(capsys):
    from toonlib.notebook import choose_photo, in_colab, mount_drive, upload_images

    assert not in_colab()
    assert mount_drive() is None and choose_photo("") is None and choose_photo("me.jpg") == "me.jpg"
    assert capsys.readouterr().out == ""
    with pytest.raises(RuntimeError, match="set data_path in the parameters cell"):
        upload_images("data", parameter="data_path")


@pytest.fixture
def ipython_shell():
    """A real IPython shell in this process, forgotten afterwards: left as IPython's singleton, later tests saw an
    IPython session (Gradio's launch then displayed its page inline)."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        yield shell
    finally:
        shell.set_custom_exc((), None)
        InteractiveShell.clear_instance()


def test_notebook_stops_show_their_message_alone(tmp_path):
    """What a notebook asks of its user (set data_path, choose a file) is a message, not a traceback; toonlib's
    fixable errors and an interrupt inside toonlib too, once `brief_errors` is on; other errors keep theirs."""
    from types import SimpleNamespace

    from toonlib.checkpoints import load_generator
    from toonlib.notebook import INTERRUPTED, NotebookStop, UploadCancelled, _show_briefly, show, upload_images

    with pytest.raises(NotebookStop) as stop:
        upload_images("data", parameter="data_path")
    assert stop.value._render_traceback_() == [str(stop.value)]
    assert issubclass(UploadCancelled, NotebookStop)
    shown = []
    shell = SimpleNamespace(user_ns={}, _showtraceback=lambda etype, value, lines: shown.append(lines),
                            showtraceback=lambda exc_tuple, tb_offset=None: shown.append("traceback"))

    class Photo:
        @property
        def width(self):
            raise KeyboardInterrupt  # the kernel's interrupt, arriving while toonlib works

    class Importing:
        @property
        def width(self):  # the interrupt while an extension module is imported
            import_cut_short()

    import toonlib

    bug = compile("undefined_name", str(Path(toonlib.__file__).parent / "widgets.py"), "exec")  # a NameError in toonlib
    for call in (lambda: load_generator(str(tmp_path / "nothing.pt")), lambda: show([Photo()]), lambda: int("one"),
                 lambda: Photo().width, lambda: show([Importing()]), lambda: exec(bug, {})):
        try:
            call()
        except BaseException as exc:
            _show_briefly(shell, type(exc), exc, exc.__traceback__)
    assert shown == [[f"no checkpoint at {tmp_path / 'nothing.pt'}"], [INTERRUPTED], "traceback", "traceback",
                     [INTERRUPTED], "traceback"]  # a bug in toonlib keeps its traceback


def test_a_cell_run_before_the_one_that_sets_its_names_says_to_run_the_cells_above(capsys, ipython_shell):
    """In a real IPython shell with `brief_errors` on, a NameError in a cell (or in a function a cell defined) keeps
    its traceback and gets the line saying how to run the cells above; one raised inside a module does not."""
    from toonlib.notebook import RUN_CELLS_ABOVE, brief_errors

    brief_errors()
    outputs = []
    for cell in ("toon = blended.show()", "def look():\n    return ffhq\nlook()",
                 "exec('undefined_here', {})"):  # raised in code with other globals than the cells'
        ipython_shell.run_cell(cell)
        outputs.append(re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out))  # without the colours
    first, second, third = outputs
    assert "NameError: name 'blended' is not defined" in first and "toon = blended.show()" in first
    assert first.rstrip().endswith(RUN_CELLS_ABOVE.format(name="blended"))
    assert second.rstrip().endswith(RUN_CELLS_ABOVE.format(name="ffhq")) and "return ffhq" in second
    assert "undefined_here" in third and "Run before" not in third


def test_toonlibs_warnings_show_as_one_line_in_a_notebook(capsys, monkeypatch, ipython_shell):
    """A toonlib warning in a notebook showed the kernel's temporary file name and the cell's source line
    ("/tmp/ipykernel_16335/2349888939.py:2: UserWarning: face-alignment is not usable: ..." and the code); with
    `brief_errors` on it is one line, as on the command line. Other warnings go to the kernel's own display."""
    import warnings

    from toonlib.notebook import brief_errors

    others = []  # what the kernel's own showwarning is given
    monkeypatch.setattr(warnings, "showwarning", lambda message, *args, **kwargs: others.append(str(message)))
    brief_errors()
    brief_errors({"resume": "base_model"})  # the set-up cell run again: still one line, not two; its parameters
    ipython_shell.run_cell("import warnings\nfrom toonlib.messages import warn\n"
                           "from toonlib.blending import LineageWarning\n"
                           "with warnings.catch_warnings():\n    warnings.simplefilter('always')\n"
                           "    warn('the face is small')\n    warn('not fine-tuned from it', LineageWarning)\n"
                           "    warn('nothing to train. To train on, give a larger --kimg (kimg=)')\n"
                           "    warn('start from --resume x.pkl (resume=)')\n"
                           "    warnings.warn('a warning of another library')")
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: the face is small", "warning: not fine-tuned from it",  # and in the notebook's words:
                   "warning: nothing to train. To train on, give a larger kimg",  # 01's finished run said '(kimg=)'
                   "warning: start from base_model=x.pkl"], err
    assert others == ["a warning of another library"]


def test_the_widgets_status_lines_take_the_parameters_brief_errors_was_given(monkeypatch, ipython_shell):
    """The set-up cell's `brief_errors(parameters)` names the notebook's parameters in the widgets' status lines too
    (`notebook.in_these_words`), as in a cell's errors; the set-up cell run again replaces them."""
    from toonlib import notebook

    monkeypatch.setattr(notebook, "_NOTEBOOK_PARAMETERS", {})  # this test's, left behind by none
    notebook.brief_errors({"base": "base_model", "invert": "inversion"})
    assert notebook.in_these_words("pair it with base=x.pkl, or --invert e4e (invert='e4e')") == (
        "pair it with base_model=x.pkl, or inversion='e4e'")
    notebook.brief_errors({"toon": "toon_model"})
    assert notebook.in_these_words("base=x.pkl, toon=y.pkl") == "base=x.pkl, toon_model=y.pkl"


def test_an_empty_output_parameter_is_named(capsys, ipython_shell):
    """Notebooks 02-04 save at `output` (on Drive when mounted); left empty it named the folder, and 04's save failed
    with a traceback ('PosixPath('.') has an empty name'). Every save cell goes through `output_path`."""
    from toonlib.notebook import brief_errors, output_path

    assert output_path("toon.png", None) == Path("toon.png")
    assert output_path("toon.png", Path("/drive/toonlib")) == Path("/drive/toonlib/toon.png")
    brief_errors()
    ipython_shell.run_cell("from toonlib.notebook import output_path\noutput_path(' ', None)")
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "output is empty: set it in the parameters cell to the name of the file to save")
    for name in ("02_blend.ipynb", "03_project.ipynb", "04_toonify.ipynb"):
        sources = ["".join(cell["source"]) for cell in json.loads((NOTEBOOKS / name).read_text())["cells"]]
        saves = [source for source in sources if ".save(" in source]
        assert len(saves) == 1 and "save(output_path(output, drive" in saves[0], name


def test_toonify_notebooks_output_without_an_image_suffix_stops_the_set_up_cell(tmp_path, monkeypatch):
    """04's `output = "toon"` (or "toon.txt") was refused by the save cell only, after the models' downloads and the
    minutes of projection: the set-up cell says it, naming the parameter, before any model is read."""
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    nb = prepare("04_toonify.ipynb", {"output": "toon", "use_drive": False, "detector": "dlib"})
    assert error_of_the_cell(nb, "toonifier = Toonifier(", tmp_path) == (
        "output in the parameters cell: cannot save an image as 'toon': the format follows the file's suffix, and it "
        "has none; name it toon.png (or .jpg, .webp, ...)")
    assert not (tmp_path / "cache").exists()  # nothing downloaded
    from toonlib.notebook import output_path

    with pytest.raises(ValueError, match=r"^output in the parameters cell: .*Pillow writes no \.txt files"):
        output_path("toon.txt", None, image=True)
    assert output_path("toon.webp", Path("/drive"), image=True) == Path("/drive/toon.webp")
    assert output_path("blend.safetensors", None) == Path("blend.safetensors")  # a network's name: not an image


def test_choose_data_checks_the_path_and_takes_a_colab_upload(fake_colab, tmp_path):
    """Notebook 01's data: the path when it holds enough images; in Colab, an uploaded .zip, or the folder of
    uploaded images (the first image alone was trained on: too few images)."""
    import shutil
    import zipfile

    from toonlib.data import MIN_IMAGES
    from toonlib.notebook import NotebookStop, choose_data

    photos = write_photos(tmp_path / "photos")
    for i in range(MIN_IMAGES - 3):  # with astronaut, hopper and coffee: just enough
        shutil.copy(photos / "hopper.jpg", photos / f"copy{i}.jpg")
    with zipfile.ZipFile(tmp_path / "toons.zip", "w") as archive:
        for i in range(MIN_IMAGES):
            archive.write(photos / "hopper.jpg", f"toons/hopper{i}.jpg")
    with zipfile.ZipFile(tmp_path / "notes.zip", "w") as archive:
        archive.writestr("notes.txt", "no images")
    with zipfile.ZipFile(tmp_path / "few.zip", "w") as archive:
        archive.write(photos / "hopper.jpg", "hopper.jpg")
    assert choose_data(str(photos)) == str(photos)
    assert choose_data(tmp_path / "toons.zip") == str(tmp_path / "toons.zip")
    with pytest.raises(NotebookStop, match=r"data_path = '.*notes.zip': found 0 image files in '.*notes.zip' "
                                           r"\(their names end in \.jpg"):
        choose_data(tmp_path / "notes.zip")
    with pytest.raises(NotebookStop, match=rf"data_path = '.*few.zip': found 1 image file in '.*few.zip'; need at "
                                           rf"least {MIN_IMAGES}\.\n"):
        choose_data(tmp_path / "few.zip")
    with pytest.raises(NotebookStop, match=r"data_path = '.*hopper.jpg': '.*hopper.jpg' is one image, not a folder "
                                           r"or \.zip file of images: give the folder that holds the training images, "
                                           r"at least 8, such as '.*photos'\.\nSet data_path"):
        choose_data(photos / "hopper.jpg")
    uploads = sorted(p for p in photos.iterdir() if p.name != "broken.jpg")
    fake_colab.answer([tmp_path / "toons.zip"], uploads)
    zipped = Path(choose_data("", tmp_path / "data"))  # each upload in a folder of its own
    assert zipped.name == "toons.zip" and zipped.parent.parent == tmp_path / "data"
    faces = Path(choose_data("", tmp_path / "faces"))
    assert faces.parent == tmp_path / "faces" and sorted(p.name for p in faces.iterdir()) == [p.name for p in uploads]


@pytest.mark.parametrize("stop", INTERRUPTS)
def test_run_training_stopped_before_its_first_snapshot(tmp_path, monkeypatch, stop, ipython_shell):
    import toonlib.train
    from toonlib.notebook import NotebookStop, run_training
    from toonlib.train import TrainConfig

    monkeypatch.setattr(toonlib.train, "finetune", lambda config, callback=None: stop())
    config = TrainConfig(data="faces", resume="base.safetensors", run_dir=str(tmp_path / "run"))
    with pytest.raises(NotebookStop, match="before its first snapshot was saved whole, so there is nothing to continue "
                                           "from: run this cell again to start over"):
        run_training(config)


def test_run_training_stopped_in_its_first_snapshot_says_it_starts_over(tmp_path, monkeypatch, ipython_shell, capsys):
    """A second interrupt in the first snapshot leaves its network without a training state: 01 said "continue from
    network-snapshot-000000056", and the cell run again started over; the next cell, show_run, failed on the missing
    metrics.png with a traceback (audit). The snapshot named is the newest state's, not the newest network file's."""
    import toonlib.train
    from toonlib.notebook import NotebookStop, run_training, show_run
    from toonlib.train import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    (run / "network-snapshot-000000056.safetensors").write_bytes(b"a network")
    monkeypatch.setattr(toonlib.train, "finetune", lambda config, callback=None: INTERRUPTS[0]())
    config = TrainConfig(data="faces", resume="base.safetensors", run_dir=str(run))
    with pytest.raises(NotebookStop, match="before its first snapshot was saved whole, so there is nothing to continue "
                                           "from"):
        run_training(config)
    (run / "training-state-000000048.pt").write_bytes(b"a state")
    with pytest.raises(NotebookStop, match=r"continue from its newest snapshot \(network-snapshot-000000048"):
        run_training(config)
    capsys.readouterr()
    show_run(run)
    assert capsys.readouterr().out.startswith(f"(no training plots in {run}: metrics.png is drawn as each snapshot is "
                                              "saved whole)\nsnapshots:\n  network-snapshot-000000056.safetensors")


def test_run_training_that_fails_before_a_snapshot_leaves_no_waiting_line(tmp_path, monkeypatch):
    """With a base model without a discriminator, 'waiting for the first snapshot...' stayed above the error; the
    line of a run that had a snapshot stays."""
    import functools

    import IPython.display

    import toonlib.train
    from toonlib.notebook import run_training
    from toonlib.train import TrainConfig

    class Handle:  # what display(..., display_id=True) returns in a kernel
        def __init__(self, shown) -> None:
            self.shown = shown

        def update(self, shown) -> None:
            self.shown = shown

    handles: list[Handle] = []
    monkeypatch.setattr(IPython.display, "display", lambda shown, display_id=None: handles.append(Handle(shown))
                        or handles[-1])
    config = TrainConfig(data="faces", resume="base.safetensors", run_dir=str(tmp_path / "run"))

    def fail(config, callback=None, snapshot: bool = False) -> None:
        if snapshot:
            callback({"kimg": 0.004})
        raise ValueError("base.safetensors has no discriminator (D)")

    for snapshot, line in ((False, ""), (True, "kimg 0.004")):
        handles.clear()
        monkeypatch.setattr(toonlib.train, "finetune", functools.partial(fail, snapshot=snapshot))
        with pytest.raises(ValueError, match="no discriminator"):
            run_training(config)
        assert str(handles[0].shown) == line
    handles.clear()  # the cell run again on a finished run: "nothing to train", and 'waiting...' stayed for ever
    monkeypatch.setattr(toonlib.train, "finetune", lambda config, callback=None: tmp_path / "run" / "last.safetensors")
    assert run_training(config) == tmp_path / "run" / "last.safetensors" and str(handles[0].shown) == ""


def test_colab_declined_drive_falls_back_to_the_local_cache_with_a_note(fake_colab, monkeypatch, capsys):
    from toonlib.download import cache_dir
    from toonlib.notebook import in_colab, mount_drive

    monkeypatch.delenv("TOONLIB_CACHE", raising=False)
    assert in_colab()
    assert mount_drive() is None
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("Google Drive not mounted (Error: credential propagation")
    assert "cached on this runtime only" in out
    assert fake_colab.log() == ["mount /content/drive decline"]
    assert cache_dir() == Path.home() / ".cache" / "toonlib"


def test_colab_drive_mounted_once_or_skipped_on_purpose(fake_colab, monkeypatch, tmp_path, capsys):
    import toonlib.notebook
    from toonlib.notebook import mount_drive

    monkeypatch.setattr(toonlib.notebook, "DRIVE_ROOT", tmp_path / "drive" / "MyDrive")
    monkeypatch.setattr(toonlib.download, "_drive_cache", True)  # put back however the test ends
    monkeypatch.setenv("FAKE_COLAB_DRIVE", "accept")
    assert mount_drive(use=False) is None
    assert "skipped" in capsys.readouterr().out and fake_colab.log() == []
    assert mount_drive() == mount_drive() == tmp_path / "drive" / "MyDrive" / "toonlib"
    assert (tmp_path / "drive" / "MyDrive" / "toonlib").is_dir()
    assert fake_colab.log() == [f"mount {tmp_path / 'drive'} accept"]  # mounted once


def test_colab_use_drive_false_keeps_downloads_off_a_drive_mounted_before(fake_colab, monkeypatch, tmp_path, capsys):
    """With Drive mounted by an earlier run (or Colab's Files pane), `use_drive = False` said "models are cached on
    this runtime only" while `cache_dir()` still put every download on Drive."""
    import toonlib.notebook
    from toonlib import download
    from toonlib.notebook import mount_drive

    drive_root = tmp_path / "drive" / "MyDrive"
    monkeypatch.setattr(toonlib.notebook, "DRIVE_ROOT", drive_root)
    monkeypatch.setattr(download, "DRIVE_ROOT", drive_root)
    monkeypatch.setattr(download, "_drive_cache", True)
    monkeypatch.delenv("TOONLIB_CACHE", raising=False)
    monkeypatch.setenv("FAKE_COLAB_DRIVE", "accept")
    assert mount_drive() == drive_root / "toonlib" and download.cache_dir() == drive_root / "toonlib" / "cache"
    capsys.readouterr()
    assert mount_drive(use=False) is None
    assert capsys.readouterr().out == ("Google Drive skipped (use_drive = False): models are cached on this runtime "
                                       "only (Drive stays mounted; nothing is saved to it).\n")
    assert download.cache_dir() == Path.home() / ".cache" / "toonlib"
    assert mount_drive() == drive_root / "toonlib" and download.cache_dir() == drive_root / "toonlib" / "cache"


def test_colab_cancelled_upload_is_asked_again_then_says_what_to_do(fake_colab, tmp_path, capsys):
    from toonlib.notebook import UploadCancelled, choose_photo

    photo = write_photos(tmp_path / "photos") / "hopper.jpg"
    fake_colab.answer([], [photo])
    upload = choose_photo("", tmp_path / "up")
    assert upload.path == tmp_path / "up" / "hopper.jpg" and upload.name == "hopper.jpg"
    assert (tmp_path / "up" / "hopper.jpg").read_bytes() == photo.read_bytes()
    assert "No file was chosen: choose one in the upload dialog" in capsys.readouterr().out
    fake_colab.answer([], [])
    with pytest.raises(UploadCancelled, match="run this cell again and choose a file, or set photo_path"):
        choose_photo(None, tmp_path / "up")
    assert choose_photo(str(photo)) == str(photo)
    assert [line.split()[0] for line in fake_colab.log()] == ["upload"] * 4  # a given path opens no dialog


def test_colab_upload_of_several_photos_says_which_is_used_and_how_to_do_the_others(fake_colab, tmp_path, capsys):
    """Several photos chosen in Colab's dialog: the first was toonified (or projected), the others saved and dropped,
    nothing said (forty-fourth session's audit). The photo cell says which it uses and how to do the others."""
    from toonlib.notebook import choose_photo

    photos = write_photos(tmp_path / "photos")
    fake_colab.answer([photos / "hopper.jpg", photos / "astronaut.png"],
                      [photos / "astronaut.png", photos / "hopper.jpg", photos / "coffee.png"], [photos / "hopper.jpg"])
    assert choose_photo("", tmp_path / "up").name == "hopper.jpg"
    assert capsys.readouterr().out == ("2 photos uploaded, and this notebook takes one at a time: it uses hopper.jpg. "
                                       "For astronaut.png, run this cell again and upload it alone.\n")
    assert choose_photo("", tmp_path / "up").name == "astronaut.png"
    assert capsys.readouterr().out == ("3 photos uploaded, and this notebook takes one at a time: it uses "
                                       "astronaut.png. For hopper.jpg, coffee.png, run this cell again and upload one "
                                       "of them alone.\n")
    assert choose_photo("", tmp_path / "up").name == "hopper.jpg" and capsys.readouterr().out == ""  # one: no line


def test_toonify_notebook_in_colab_survives_a_declined_drive_and_a_cancelled_upload(fake_colab, tmp_path, monkeypatch,
                                                                                    random_vgg_torch_home):
    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    write_toonify_models(tmp_path)
    fake_colab.answer([], [_photo()])
    nb = execute("04_toonify.ipynb", {"base_model": str(tmp_path / "base.safetensors"),
                                      "toon_model": str(tmp_path / "toon.safetensors"),
                                      "steps": 3, "detector": "dlib", "output": "me.png"}, cwd=tmp_path)
    text = outputs_text(nb)
    assert "Google Drive not mounted" in text and "No file was chosen" in text
    from PIL import Image

    assert Image.open(tmp_path / "me.png").size == (32, 32)
    assert fake_colab.log()[0] == "mount /content/drive decline"
    assert fake_colab.log()[-2:] == ["download me.png", "download me-pasted.png"]  # the latent is kept, not offered
    assert load_latent(tmp_path / "me-latent.npz").shape == (1, 8, 16)


def test_toonify_notebook_in_colab_shows_a_bad_photo_in_the_panel_and_asks_again(fake_colab, tmp_path, monkeypatch,
                                                                                  random_vgg_torch_home):
    """In Colab the photo comes from the upload dialog and the panel runs at once: a photo without a face was a
    traceback through the panel's code under a panel stuck at "finding the face...", and running the photo cell
    again (as the messages say) reused that photo instead of asking for another. The status line named the saved
    copy (uploads/coffee.png), not the file the user chose, and did not say how to choose another."""
    from nbclient import NotebookClient

    from notebooks import prepare

    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    write_toonify_models(tmp_path)
    photos = write_photos(tmp_path / "photos")
    fake_colab.answer([photos / "coffee.png"], [photos / "hopper.jpg"])
    nb = prepare("04_toonify.ipynb", {"base_model": str(tmp_path / "base.safetensors"),
                                      "toon_model": str(tmp_path / "toon.safetensors"),
                                      "steps": 2, "detector": "dlib", "output": "me.png"})
    [photo_cell] = [i for i, c in enumerate(nb.cells) if "choose_photo(" in c.source and c.cell_type == "code"]
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        text = outputs_text(nb)
        state = str(client.widget_state)  # the panel's status line:
        assert "no face was found in &#x27;coffee.png&#x27;; use a larger" in state and "uploads/" not in state
        assert "Run the photo cell again to upload another photo." in state
        assert not [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
        assert "No toon yet: run the photo cell above again to upload a photo" in text
        assert "upload a photo in the panel above" not in text  # Colab's panel has no upload button
        client.execute_cell(nb.cells[photo_cell], photo_cell)  # another photo
        client.execute_cell(nb.cells[-1], len(nb.cells) - 1)  # save
    assert [line.split()[0] for line in fake_colab.log()].count("upload") == 2
    from PIL import Image

    assert Image.open(tmp_path / "me.png").size == (32, 32)


def test_toonify_notebooks_photo_cell_run_again_starts_at_the_swap_res_parameter(tmp_path, monkeypatch,
                                                                                  random_vgg_torch_home):
    """The photo cell run again made a panel that started at the blend the last panel's slider had left in the
    toonifier, not at swap_res: a user who set swap_res in the parameters cell and ran the photo cell again got the
    old slider's blend. Each new panel starts, and runs, at the parameter (None: the published blend)."""
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell

    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    write_toonify_models(tmp_path)
    nb = prepare("04_toonify.ipynb", {"photo_path": _photo(), "base_model": str(tmp_path / "base.safetensors"),
                                      "toon_model": str(tmp_path / "toon.safetensors"), "steps": 2,
                                      "detector": "dlib", "use_drive": False})
    photo_cell = cell_index(nb, "choose_photo(")
    shown = "print(panel.swap_res.value, toonifier.blend_setting[0], panel.tiles['toon'][0].value)"
    nb.cells += [new_code_cell("panel.swap_res.value = 16"), new_code_cell(shown)]
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):  # the panel runs at once, then its slider is moved to 16 px
            client.execute_cell(cell, index)
        assert outputs_text(nb).count("16 16 ") == 1, outputs_text(nb)
        said = {}
        for swap_res in (None, 8):  # the parameter as shipped, then changed in the parameters cell
            injected = inject(nb, {"photo_path": _photo(), "base_model": str(tmp_path / "base.safetensors"),
                                   "toon_model": str(tmp_path / "toon.safetensors"), "steps": 2, "detector": "dlib",
                                   "use_drive": False, "swap_res": swap_res})
            for index in (injected, photo_cell, len(nb.cells) - 1):
                client.execute_cell(nb.cells[index], index)
            said[swap_res] = nb.cells[-1].outputs[-1].text
    assert said[None].startswith("published None ") and "toon, published blend" in said[None], said
    assert said[8].startswith("8 8 ") and "toon, blend at 8 px" in said[8], said


def test_toonify_notebooks_steps_start_each_mode_at_its_own_unless_set(tmp_path, monkeypatch, random_vgg_torch_home):
    """04's steps, 500 as shipped, was taken for "each mode's own": a user who set 500 got e4e+optimize at 100 (forty-
    third session's audit). Its default, None, is each mode's own (optimise 500, e4e then optimise 100); a number set
    is every mode's start."""
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell

    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    write_toonify_models(tmp_path)
    parameters = {"base_model": str(tmp_path / "base.safetensors"), "toon_model": str(tmp_path / "toon.safetensors"),
                  "detector": "dlib", "use_drive": False}  # no photo: the panel waits for an upload
    nb = prepare("04_toonify.ipynb", parameters)
    photo_cell = cell_index(nb, "choose_photo(")
    shown = "starts = [panel.steps.value]; panel.inversion.value = 'e4e+optimize'; print(starts + [panel.steps.value])"
    nb.cells.append(new_code_cell(shown))
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    said = {}
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):  # the parameters as shipped
            client.execute_cell(cell, index)
        said[None] = nb.cells[-1].outputs[-1].text
        for steps in (500, 300):
            injected = inject(nb, {**parameters, "steps": steps})
            for index in (injected, photo_cell, len(nb.cells) - 1):
                client.execute_cell(nb.cells[index], index)
            said[steps] = nb.cells[-1].outputs[-1].text
    assert said == {None: "[500, 100]\n", 500: "[500, 500]\n", 300: "[300, 300]\n"}, said


@contextlib.contextmanager
def _ran_through(nb, last: int, cwd: Path):
    """A kernel (an nbclient client) that has run the cells of `nb` up to `last`, which finished without an error."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}},
                            allow_errors=True)
    with client.setup_kernel():
        for index in range(last + 1):
            client.execute_cell(nb.cells[index], index)
        assert shown_error(nb.cells[last]) is None
        yield client


def test_a_set_up_cell_that_fails_leaves_no_models_from_before(tmp_path, monkeypatch, random_vgg_torch_home):
    """04 run once, then a misspelt base_model: the set-up cell said so, and the photo cell ran a whole toonify with
    the models of the earlier set-up, nothing said (the same in 02 and 03). It now stops, saying to run that cell."""
    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    write_toonify_models(tmp_path)
    good = {"photo_path": _photo(), "base_model": str(tmp_path / "base.safetensors"),
            "toon_model": str(tmp_path / "toon.safetensors"), "steps": 2, "detector": "dlib", "use_drive": False}
    nb = prepare("04_toonify.ipynb", good)
    set_up, photo_cell = cell_index(nb, "toonifier = Toonifier("), cell_index(nb, "choose_photo(")
    with _ran_through(nb, photo_cell, tmp_path) as client:
        injected = inject(nb, {**good, "base_model": "ffhq-1024-tfx"})
        for index in (injected, set_up, photo_cell):
            client.execute_cell(nb.cells[index], index)
    _assert_brief(shown_error(nb.cells[set_up]), "base_model = 'ffhq-1024-tfx': unknown model 'ffhq-1024-tfx'.")
    _assert_brief(shown_error(nb.cells[photo_cell]), "toonifier is None: the cell above that sets it did not finish. "
                                                     "Fix what it said (a parameter, in the parameters cell) and run "
                                                     "it again, then this cell.")
    from toonlib.notebook import NotebookStop
    from toonlib.widgets import blend_explorer, projection_panel

    with pytest.raises(NotebookStop, match=r"^base is None: the cell above that sets it did not finish"):
        blend_explorer(None, None)  # 02's explorer cell after its load cell stopped
    with pytest.raises(NotebookStop, match=r"^G is None: the cell above that sets it did not finish"):
        projection_panel(None)  # 03's photo cell after its set-up cell stopped


@pytest.mark.parametrize("name, model, bad", [("03_project.ipynb", "model", {"detector": "Dlib"}),
                                              ("04_toonify.ipynb", "toon_model", {"steps": 0})])
def test_a_photo_cell_uses_no_models_or_panel_from_before(tmp_path, monkeypatch, random_vgg_torch_home, name, model,
                                                          bad):
    """03/04 run once, then a model parameter changed and only the photo cell run again: it projected with the models
    of the set-up before, nothing said; a photo cell stopped by a bad setting left the panel before it, and the save
    cell saved the earlier photo's result (thirty-fourth session's notebook audit)."""
    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    base, toon, _, _ = write_toonify_models(tmp_path)
    models = ({"model": str(base)} if name.startswith("03") else {"base_model": str(base), "toon_model": str(toon)})
    good = {"photo_path": _photo(), **models, "steps": 2, "detector": "dlib", "use_drive": False}
    nb = prepare(name, good)
    photo_cell, save = cell_index(nb, "choose_photo("), cell_index(nb, "panel.save(")
    with _ran_through(nb, photo_cell, tmp_path) as client:
        injected = inject(nb, {**good, model: str(tmp_path / "other.safetensors")})
        for index in (injected, photo_cell):
            client.execute_cell(nb.cells[index], index)
        changed = str(tmp_path / "other.safetensors")
        _assert_brief(shown_error(nb.cells[photo_cell]), f"{model} = {changed!r}: changed since the set-up cell ran "
                                                         f"(with {model} = {good[model]!r}). Run the set-up cell "
                                                         "again, then this cell.")
        injected = inject(nb, {**good, **bad})
        for index in (injected, photo_cell, save):
            client.execute_cell(nb.cells[index], index)
    assert shown_error(nb.cells[photo_cell]) is not None
    _assert_brief(shown_error(nb.cells[save]), "panel is None: the cell above that sets it did not finish")
    assert not [path for path in tmp_path.iterdir() if path.suffix in (".npz", ".png")]  # nothing saved


def test_the_blend_notebook_takes_the_toon_network_toonlib_blend_takes(tmp_path, monkeypatch):
    """02's toon_network defaulted to "G": a notebook 01 snapshot was blended from its training copy G, where `toonlib
    blend`, toonify and 01's own advice take its G_ema (audit). `load_blend_models` takes the network as
    `blending.toon_generator` does unless the parameter names one; two models it cannot blend are refused before
    either is returned."""
    import torch

    from toonlib.checkpoints import Networks
    from toonlib.notebook import NotebookStop, load_blend_models

    base_path, toonify_path, base, toon = write_toonify_models(tmp_path)  # G the toon, G_ema its blend
    snapshot = tmp_path / "network-snapshot-000004.safetensors"
    save_network(snapshot, Networks(G_ema=tiny_generator(2), G=tiny_generator(3),
                                    meta={"finetune": {"base": str(base_path)}}))

    def same(a, b):
        return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

    assert same(load_blend_models(str(base_path), str(snapshot))[1], tiny_generator(2))  # its G_ema
    assert same(load_blend_models(str(base_path), str(snapshot), "G")[1], tiny_generator(3))
    got_base, got_toon = load_blend_models(str(base_path), str(toonify_path))
    assert same(got_base, base) and same(got_toon, toon)  # Toonify's layout: its G
    save_network(tmp_path / "big.safetensors", tiny_generator(0, img_resolution=64))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotebookStop, match=r"cannot be blended with base_model = 'big.safetensors' \(64 px\)"):
        load_blend_models("big.safetensors", snapshot.name)


def test_blend_notebooks_loading_cell_stopped_leaves_no_models(tmp_path):
    """02 run once, then a base the toon cannot be blended with and the cells run again in order: the loading cell
    stopped, saying so, but had kept this attempt's models, and the explorer's cell then said base_model was "changed
    since the set-up cell ran", which had just run (audit). It says the loading cell did not finish."""
    good = _blend_parameters(tmp_path, "blend.safetensors")
    save_network(tmp_path / "big.safetensors", tiny_generator(0, img_resolution=64))
    nb = prepare("02_blend.ipynb", good)
    load, explorer = cell_index(nb, "load_blend_models("), cell_index(nb, "blend_explorer(base")
    with _ran_through(nb, explorer, tmp_path) as client:
        injected = inject(nb, {**good, "base_model": str(tmp_path / "big.safetensors")})
        for index in range(injected, explorer + 1):
            client.execute_cell(nb.cells[index], index)
    assert "cannot be blended with base_model" in shown_error(nb.cells[load])
    _assert_brief(shown_error(nb.cells[explorer]), "base is None: the cell above that sets it did not finish")


def test_blend_notebooks_explorer_uses_no_models_from_before(tmp_path):
    """02 run once, then toon_model changed and the explorer and save cells run again, not the load cell: the old
    models were blended, and the saved file's record named the new toon model (`toonlib info` said a blend of a model
    it is not; thirty-fourth session's notebook audit)."""
    good = _blend_parameters(tmp_path, "blend.safetensors")
    nb = prepare("02_blend.ipynb", good)
    explorer, save = cell_index(nb, "blend_explorer(base"), cell_index(nb, "explorer.save(")
    with _ran_through(nb, explorer - 1, tmp_path) as client:
        injected = inject(nb, {**good, "toon_model": "my-toon.safetensors"})
        for index in (injected, explorer, save):
            client.execute_cell(nb.cells[index], index)
    _assert_brief(shown_error(nb.cells[explorer]), f"toon_model = 'my-toon.safetensors': changed since the set-up cell "
                                                   f"ran (with toon_model = {good['toon_model']!r})")
    _assert_brief(shown_error(nb.cells[save]), "explorer is None: the cell above that sets it did not finish")
    assert not (tmp_path / "blend.safetensors").exists()
    nb = prepare("02_blend.ipynb", good)
    with _ran_through(nb, explorer - 1, tmp_path) as client:  # the save cell's folder (Drive or not) too
        injected = inject(nb, {**good, "use_drive": True})
        for index in (injected, explorer):
            client.execute_cell(nb.cells[index], index)
    _assert_brief(shown_error(nb.cells[explorer]), "use_drive = True: changed since the set-up cell ran (with "
                                                   "use_drive = False)")


def _kernel_run(client, code: str, timeout: float = 300) -> str:
    """Execute `code` in the kernel of `client` and wait until it is done; returns what it printed (an error fails)."""
    outputs: list[dict] = []
    reply = client.execute_interactive(code, timeout=timeout, output_hook=outputs.append)
    assert reply["content"]["status"] == "ok", [m["content"] for m in outputs if m["msg_type"] == "error"]
    return "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream")


def _click_in_subshell(client, button: str) -> None:
    """Click the Button widget `button` (an expression in the kernel) as JupyterLab 4.6 does: its messages go to a
    kernel subshell, which ipykernel 7 runs in a thread of its own."""
    client.control_channel.send(client.session.msg("create_subshell_request", {}))
    subshell = client.control_channel.get_msg(timeout=60)["content"]["subshell_id"]
    model = _kernel_run(client, f"print({button}.model_id)").strip()

    def send(data: dict) -> str:
        """A message to the button's model as JupyterLab sends it (to the subshell); returns its id."""
        message = client.session.msg("comm_msg", {"comm_id": model, "data": data})
        message["header"]["subshell_id"] = subshell
        client.shell_channel.send(message)
        return message["header"]["msg_id"]

    asked = send({"method": "request_state"})  # its answer routes the button's next messages to the subshell
    while (answer := client.get_iopub_msg(timeout=60))["parent_header"].get("msg_id") != asked or \
            answer["msg_type"] != "comm_msg":
        pass
    send({"method": "custom", "content": {"event": "click"}})


#: Whether the kernel's SIGINT handler is its own idle one, asked from the main shell: an execution there runs under
#: `default_int_handler` (ipykernel's `pre_handler_hook`), which keeps the handler it replaced in `saved_sigint_handler`
HANDLER_IDLE = "print(get_ipython().kernel.saved_sigint_handler is idle_handler)"


def test_a_panel_run_from_jupyterlab_stops_at_the_kernels_interrupt(tmp_path, random_vgg_torch_home):
    """JupyterLab 4.6 sends widget messages to a subshell, which ipykernel 7 runs in a thread of its own: the
    interrupt's SIGINT reached only the idle main thread (which ignores it), and a Run went on to its last step. In a
    real kernel, a Run button clicked the way JupyterLab clicks it stops after the step under way with the panel's
    message; the kernel's SIGINT handling is as before and its next cell runs."""
    import time

    from jupyter_client.manager import start_new_kernel

    save_network(tmp_path / "base.safetensors", tiny_generator(0))
    km, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path),
                                  env={**os.environ, "TORCH_HOME": str(random_vgg_torch_home)})
    try:
        client.kernel_info()
        if "kernel subshells" not in client.get_shell_msg(timeout=60)["content"].get("supported_features", []):
            pytest.skip("this ipykernel runs no subshells")  # then every widget message runs in the main thread
        _kernel_run(client, "import signal\nfrom toonlib.widgets import ProjectionPanel\n"
                            f"panel = ProjectionPanel({str(tmp_path / 'base.safetensors')!r}, steps=100000, "
                            f"frame_every=100000, detector='dlib')\npanel.set_photo({_photo()!r})\n"
                            "idle_handler = get_ipython().kernel.saved_sigint_handler")
        _click_in_subshell(client, "panel.run_button")
        deadline = time.monotonic() + 300
        while not re.search(r"step \d\d+ of", _kernel_run(client, "print(panel.status.value)")):  # the main shell
            assert time.monotonic() < deadline, "the run never reached step 10"  # answers meanwhile
            time.sleep(0.5)
        km.interrupt_kernel()
        deadline = time.monotonic() + 60
        while "Interrupted. Press Run to start again." not in _kernel_run(client, "print(panel.status.value)"):
            assert time.monotonic() < deadline, "the run went on after the interrupt"
            time.sleep(0.5)
        assert _kernel_run(client, "print(panel.progress.value < 1000, not panel.run_button.disabled)").split() == \
            ["True", "True"]
        deadline = time.monotonic() + 60  # the handler is restored from the main thread's loop, soon after
        while _kernel_run(client, HANDLER_IDLE).strip() != "True":
            assert time.monotonic() < deadline, "the kernel's SIGINT handler was not restored"
            time.sleep(0.5)
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_panel_run_stops_at_the_kernels_interrupt_while_it_downloads_a_model(tmp_path, random_vgg_torch_home):
    """Only the projection's steps looked at the interrupt of a Run clicked in JupyterLab (a widget callback in a
    kernel subshell): while 04's panel loaded the models of another inversion mode (the e4e encoder and the base, a
    download of about 1 GB in Colab), aligned the face or ran an encoder, it went on; in the encoder modes, which have
    no steps, to the end. In a real kernel with a subshell, the interrupt now stops the Run in the base model's
    download with the panel's message, and the kernel's next Run finishes."""
    import threading
    import time

    from http_server import serve
    from jupyter_client.manager import start_new_kernel
    from test_readme import build_sandbox

    from toonlib.models import MODELS

    box = build_sandbox(tmp_path)
    toon, base = box.cache / MODELS["toonify-blended-tf"].filename, box.cache / MODELS["ffhq-1024-tf"].filename
    with serve({"/ffhq.safetensors": base.read_bytes()}) as server:
        server.hold = threading.Event()  # the download stops half way until the test lets it go on
        km, client = start_new_kernel(kernel_name="python3", cwd=str(box.work),
                                      env={**os.environ, "TORCH_HOME": str(random_vgg_torch_home),
                                           "TOONLIB_CACHE": str(box.cache), "no_proxy": "127.0.0.1",
                                           "NO_PROXY": "127.0.0.1"})
        try:
            client.kernel_info()
            assert "kernel subshells" in client.get_shell_msg(timeout=60)["content"].get("supported_features", [])
            models = {"base": f"{server.base}/ffhq.safetensors", "toon": str(toon), "detector": "dlib"}
            # the panel's Toonifier reads the base from the cache; the Run's other mode downloads it (held below)
            shown = {**models, "base": str(base)}
            _kernel_run(client, "import signal\nfrom toonlib.pipeline import Toonifier\n"
                                "from toonlib.widgets import ToonifyPanel\n"
                                f"panel = ToonifyPanel(Toonifier(**{shown!r}), steps=2, models={models!r})\n"
                                "panel.inversion.value = 'e4e'\npanel.set_photo('me.jpg')\n"
                                "idle_handler = get_ipython().kernel.saved_sigint_handler")
            _click_in_subshell(client, "panel.run_button")
            assert server.streaming.wait(120), "the Run never started the base model's download"
            deadline = time.monotonic() + 60  # the handler is installed from the main thread's loop: wait till it is
            while _kernel_run(client, HANDLER_IDLE).strip() == "True":
                assert time.monotonic() < deadline, "the Run never installed its interrupt handler"
                time.sleep(0.1)
            km.interrupt_kernel()
            time.sleep(1)
            server.hold.set()  # the download goes on: the interrupt lands in its next Python instruction
            deadline = time.monotonic() + 120
            while "Interrupted. Press Run to start again." not in (
                    status := _kernel_run(client, "print(panel.status.value)")):
                assert time.monotonic() < deadline and "done:" not in status, f"the run went on: {status}"
                time.sleep(0.5)
            assert _kernel_run(client, "print(panel.result is None, not panel.run_button.disabled)").split() == \
                ["True", "True"]
            deadline = time.monotonic() + 60
            while _kernel_run(client, HANDLER_IDLE).strip() != "True":
                assert time.monotonic() < deadline, "the kernel's SIGINT handler was not restored"
                time.sleep(0.5)
            server.hold = None
            # The first Run's message replaced, so that one seen from here on is the second Run's (the click is
            # handled in the subshell after _click_in_subshell returns: the old message was read as the new one)
            _kernel_run(client, "panel.status.value = 'clicked again'")
            _click_in_subshell(client, "panel.run_button")  # run again: the subshell is alive, the run finishes
            deadline = time.monotonic() + 300
            while "done: e4e" not in (status := _kernel_run(client, "print(panel.status.value)")):
                assert time.monotonic() < deadline and "Interrupted" not in status, status
                time.sleep(0.5)
        finally:
            client.stop_channels()
            km.shutdown_kernel(now=True)


@pytest.mark.parametrize("name, model", [("03_project.ipynb", "model"), ("04_toonify.ipynb", "toon_model")])
def test_a_panel_made_before_the_set_up_cell_ran_again_neither_runs_nor_saves(tmp_path, monkeypatch,
                                                                            random_vgg_torch_home, name, model):
    """04 run once, then another toon_model and the set-up cell run again (it loads the new models): the panel still
    shown ran with the models before when its Run was pressed, and the save cell saved that toon, nothing said
    (thirty-ninth session's audit). Both now say to run the photo cell again, which makes a panel of the new models."""
    said = "The set-up cell ran again since this panel was made: run the photo cell again."
    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    base, toon, _, _ = write_toonify_models(tmp_path)
    (tmp_path / "other.safetensors").write_bytes((base if name.startswith("03") else toon).read_bytes())
    models = ({"model": str(base)} if name.startswith("03") else {"base_model": str(base), "toon_model": str(toon)})
    good = {"photo_path": _photo(), **models, "steps": 2, "detector": "dlib", "use_drive": False}
    nb = prepare(name, good)
    set_up, photo_cell, save = cell_index(nb, "brief_errors("), cell_index(nb, "choose_photo("), cell_index(
        nb, "panel.save(")
    from nbformat.v4 import new_code_cell

    nb.cells.append(new_code_cell("panel.run_button.click()\nprint(panel.status.value)"))  # Run pressed
    with _ran_through(nb, photo_cell, tmp_path) as client:
        injected = inject(nb, {**good, model: str(tmp_path / "other.safetensors")})
        for index in (injected, set_up, save, len(nb.cells) - 1):
            client.execute_cell(nb.cells[index], index)
        _assert_brief(shown_error(nb.cells[save]), said)
        assert said in nb.cells[-1].outputs[-1].text
        assert not [path for path in tmp_path.iterdir() if path.suffix in (".npz", ".png")]  # nothing saved
        for index in (photo_cell, save):  # the photo cell run again: a panel of the new models
            client.execute_cell(nb.cells[index], index)
        assert shown_error(nb.cells[save]) is None
    assert [path for path in tmp_path.iterdir() if path.suffix in (".npz", ".png")]


def test_a_file_named_as_an_argument_keeps_its_name_in_a_notebooks_warning():
    """01's warning "runs holds 4 files (e.g. resume) ..." named the folder 'resume' base_model, the parameter that
    01 passes as `resume` (and 'data' data_path): a bare word in parentheses is renamed no more, only an option given
    in both languages, '(--toon, toon=)' (thirty-ninth session's audit)."""
    from toonlib.notebook import in_notebook_words

    finetune_names = {"resume": "base_model", "data": "data_path", "run_dir": "run_name"}
    for folder in ("resume", "data"):
        warning = (f"runs holds 4 files (e.g. {folder}) and no fine-tuning run: the run's snapshots, fakes and metrics "
                   "go in among them; a new folder of its own (--run-dir, run_dir=) keeps them apart")
        assert in_notebook_words(warning, finetune_names) == warning.replace("(--run-dir, run_dir=)", "(run_name)")
    names = {"toon": "toon_model", "cache_dir": "cache"}
    assert in_notebook_words("the toon (--toon, toon=) or (or --cache-dir, cache_dir=); (pSp's encoder, straight to "
                             "the toon)", names) == (
        "the toon (toon_model) or (or cache); (pSp's encoder, straight to the toon)")


def test_an_empty_or_path_like_run_name_is_refused_by_name(tmp_path, monkeypatch):
    """01's `run_name = ""` trained into runs/ itself, the run's snapshots among the other runs' folders (thirty-ninth
    session's audit): its set-up cell refuses it, naming the parameter, as `output_path` does an empty output."""
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    base, faces = _finetune_files(tmp_path)
    nb = prepare("01_finetune.ipynb", {"data_path": str(faces), "base_model": str(base), "run_name": "",
                                       "use_drive": False})
    assert error_of_the_cell(nb, "brief_errors(", tmp_path) == (
        'run_name is empty: set it in the parameters cell to a name for this run (its files go in runs/<run_name>), '
        'e.g. run_name = "toon"')
    assert not (tmp_path / "runs").exists()
    from toonlib.notebook import run_path

    assert run_path("toon", None) == Path("runs/toon")
    assert run_path("toon", Path("/drive/toonlib")) == Path("/drive/toonlib/runs/toon")
    for name in ("a/b", "..", ".", "toon/"):  # a folder in the name: runs/a/b, or runs itself
        with pytest.raises(ValueError, match=rf"^run_name = {re.escape(repr(name))} is a path: set it in the "
                                             r"parameters cell to a name alone"):
            run_path(name, None)


# --------------------------------------------------------------------------------------------
# Fortieth session's audit of notebooks 02 and 03


@pytest.mark.parametrize("name", ["03_project.ipynb", "04_toonify.ipynb"])
def test_the_set_up_cell_builds_lpips_before_a_photo_is_chosen(tmp_path, monkeypatch, random_vgg_torch_home, name):
    """03's Run (and 04's in the optimise mode) fetched LPIPS' VGG16, 553 MB, under the status "finding the face...",
    its download bar in JupyterLab's log (fortieth session's audit): the set-up cell builds it, its bar in that cell."""
    from nbformat.v4 import new_code_cell

    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    base, toon, _, _ = write_toonify_models(tmp_path)
    models = ({"model": str(base)} if name.startswith("03") else {"base_model": str(base), "toon_model": str(toon)})
    nb = prepare(name, {**models, "detector": "dlib", "use_drive": False})
    set_up = cell_index(nb, "brief_errors(")
    nb.cells.insert(set_up + 1, new_code_cell("from toonlib.losses import lpips_needs_weights\n"
                                              "print('LPIPS to build:', lpips_needs_weights())"))
    with _ran_through(nb, set_up + 1, tmp_path):
        pass
    assert "LPIPS to build: False" in nb.cells[set_up + 1].outputs[0].text


def test_projection_notebooks_set_up_cell_says_lpips_is_missing_offline_before_a_photo(tmp_path, monkeypatch):
    """Offline without LPIPS' VGG16, 03 said so only once a photo was chosen and Run pressed: the set-up cell says it,
    and leaves no model for the photo cell."""
    from http_server import OFFLINE_URL
    from nbformat.v4 import new_code_cell

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    save_network(tmp_path / "base.safetensors", tiny_generator(0))
    nb = prepare("03_project.ipynb", {"model": "base.safetensors", "detector": "dlib", "use_drive": False})
    set_up = cell_index(nb, "brief_errors(")
    nb.cells.insert(set_up, new_code_cell(  # no internet: the registry's address of the weights resolves nowhere
        "import dataclasses\nfrom toonlib import models\nmodels.MODELS['lpips-vgg16'] = dataclasses.replace("
        f"models.MODELS['lpips-vgg16'], sources=({OFFLINE_URL!r},))"))
    said = error_of_the_cell(nb, "brief_errors(", tmp_path)
    assert said is not None and said.startswith("LPIPS (the projection loss) needs torchvision's ImageNet VGG16 "
                                                "weights") and "toonlib fetch lpips-vgg16" in said, said


def test_projection_notebooks_output_is_an_npz_that_names_no_model_or_photo(tmp_path, monkeypatch):
    """03's `output = "base.safetensors"` wrote the latent over the model (then no network), `output = "me.jpg"` over
    the photo, with a warning after the fact (fortieth session's audit): the set-up cell refuses a name that is no
    .npz file, before any model is read, and so does the save cell; `output = "."` is said naming the parameter."""
    from toonlib.notebook import output_path

    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    nb = prepare("03_project.ipynb", {"output": "base.safetensors", "use_drive": False})
    assert error_of_the_cell(nb, "brief_errors(", tmp_path) == (
        "output = 'base.safetensors': it is saved as a .npz file (tools pick their reader by the suffix); set output "
        "in the parameters cell to 'base.npz'")
    assert not (tmp_path / "cache").exists()  # nothing downloaded
    assert 'panel.save(output_path(output, drive, suffix=".npz"))' in nb.cells[cell_index(nb, "panel.save(")].source
    with pytest.raises(ValueError, match=r"^output = 'me\.jpg': it is saved as a \.npz file .* to 'me\.npz'$"):
        output_path("me.jpg", None, suffix=".npz")
    assert output_path("w.npz", Path("/drive/toonlib"), suffix=".npz") == Path("/drive/toonlib/w.npz")
    for name in (".", str(tmp_path)):  # a folder (02's and 03's): "cannot write .: it is a folder", no parameter
        with pytest.raises(IsADirectoryError, match=rf"^output = {re.escape(repr(name))}: cannot write .*: it is a "
                                                    "folder; name a file$"):
            output_path(name, None)


def test_a_file_that_is_no_model_is_said_naming_its_parameter(tmp_path):
    """03's `model = "photos/hopper.jpg"` said "photos/hopper.jpg is a JPEG image, not a checkpoint ..." without the
    parameter, and 02's `toon_model = "w.npz"` the same (`check_models` names a missing file only; fortieth session's
    audit): the loading names it."""
    import numpy as np

    from toonlib.checkpoints import CheckpointError
    from toonlib.notebook import load_blend_models

    save_network(tmp_path / "base.safetensors", tiny_generator(0))
    np.savez(tmp_path / "w.npz", w=np.zeros((1, 8, 16), dtype=np.float32))
    photo = _photo()
    with pytest.raises(CheckpointError, match=rf"^toon_model = '{re.escape(str(tmp_path))}/w\.npz': .* is a NumPy "
                                              r"\.npz file \(arrays w\), not a network"):
        load_blend_models(str(tmp_path / "base.safetensors"), str(tmp_path / "w.npz"))
    with pytest.raises(CheckpointError, match=rf"^base_model = {re.escape(repr(photo))}: "):
        load_blend_models(photo, str(tmp_path / "base.safetensors"))
    from toonlib.notebook import load_model  # 03's set-up cell loads its model so

    with pytest.raises(CheckpointError, match=rf"^model = {re.escape(repr(photo))}: .* is a JPEG image, not a "
                                              "checkpoint"):
        load_model(photo)
    assert "G = load_model(model, " in "".join(json.loads((NOTEBOOKS / "03_project.ipynb").read_text())["cells"][3]
                                               ["source"])


def test_blend_notebooks_registry_models_of_two_resolutions_are_refused_before_anything_downloads(tmp_path,
                                                                                               monkeypatch):
    """02 offers FFHQ 256 and 512 beside Toonify's 1024 px toon: both downloaded (hundreds of MB) before the loading
    cell said they cannot be blended (fortieth session's audit). The set-up cell says it, with the toon's base."""
    said = ("toon_model = 'toonify-blended-tf' (1024 px) cannot be blended with base_model = 'ffhq-512-noaug' (512 "
            "px): it was fine-tuned from 'ffhq-1024-tf'. Set base_model in the parameters cell to 'ffhq-1024-tf', "
            "then run the cells again.")
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    nb = prepare("02_blend.ipynb", {"base_model": "ffhq-512-noaug", "use_drive": False})
    assert error_of_the_cell(nb, "check_models(", tmp_path) == said
    assert not (tmp_path / "cache").exists()  # nothing downloaded
    from toonlib.notebook import NotebookStop, check_blend_pair

    with pytest.raises(NotebookStop, match=r"^toon_model = 'toonify-blended-tf \(G\)' \(1024 px\) cannot be blended "
                                           r"with base_model = 'ffhq-256-noaug' \(256 px\)"):
        check_blend_pair("ffhq-256-noaug", "toonify-blended-tf (G)")
    for pair in (("ffhq-1024-tf", "toonify-blended-tf"), ("ffhq-1024-noaug", "toonify-blended-tf"),
                 ("base.pkl", "toonify-blended-tf"), ("ffhq-512-noaug", "toon.pkl")):
        check_blend_pair(*pair)  # one resolution (the lineage is compared once loaded), or a file: said once loaded


def test_a_blend_given_as_the_toon_model_is_refused_in_the_notebooks_words(tmp_path):
    """02 with `toon_model` a blend it saved said "(--toon-network G_ema; in Python 'FILE (G_ema)')", the command
    line's and Python's words, where the notebook has `toon_network` (fortieth session's audit)."""
    from toonlib.blending import toon_generator
    from toonlib.notebook import in_notebook_words
    from toonlib.widgets import blend_explorer

    blend_explorer(tiny_generator(0), tiny_generator(1), seeds=[0], swap_res=8).save(tmp_path / "blend.safetensors")
    with pytest.raises(ValueError) as refused:
        toon_generator(str(tmp_path / "blend.safetensors"))
    said = in_notebook_words(str(refused.value), {"which": "toon_network"})  # as 02's brief_errors names them
    assert said.endswith("name the blend's network to blend it all the same (toon_network='G_ema')"), said
    assert "--toon-network" not in said and "in Python" not in said


def test_blend_notebooks_save_in_colab_offers_the_download(fake_colab, tmp_path, capsys):
    """In Colab without Drive, 03's save offered the download and 02's left the blend on the runtime alone, lost at
    disconnect (fortieth session's audit): 02's save offers it too, and its markdown says so."""
    from toonlib.widgets import blend_explorer

    explorer = blend_explorer(tiny_generator(0), tiny_generator(1), seeds=[0], swap_res=8)
    explorer.save(tmp_path / "blend.safetensors")
    assert capsys.readouterr().out.strip() == (f"saved {tmp_path / 'blend.safetensors'}: toon up to 8 px (level 0), "
                                               "FFHQ above; hard switch; your browser downloads a copy")
    assert fake_colab.log()[-1] == f"download {tmp_path / 'blend.safetensors'}"
    nb = json.loads((NOTEBOOKS / "02_blend.ipynb").read_text())
    [markdown] = ["".join(c["source"]) for c in nb["cells"] if "".join(c["source"]).startswith("## Save the blend")]
    assert "in Colab your browser also downloads a copy" in markdown


def _markdown(name: str, start: str) -> str:
    """The markdown cell of notebook `name` that starts with `start`, as one string."""
    nb = json.loads((NOTEBOOKS / name).read_text())
    [markdown] = ["".join(c["source"]) for c in nb["cells"]
                  if c["cell_type"] == "markdown" and "".join(c["source"]).startswith(start)]
    return " ".join(markdown.split())


@pytest.mark.parametrize("name, start, done", [("03_project.ipynb", "## Your photo and its projection", "projected"),
                                               ("04_toonify.ipynb", "## Your photo, your toon", "toonified")])
def test_photo_notebooks_say_a_given_or_dialog_photo_runs_at_once(name, start, done):
    """03's and 04's text said to pick the settings and press Run, where a photo given by photo_path, or chosen in
    Colab's dialog, runs at once with the parameters cell's (`_PhotoPanel._start`; forty-fourth session's audit)."""
    assert (f"a photo from `photo_path` or Colab's dialog is {done} at once with the parameters above: press **Run** "
            "again") in _markdown(name, start)


def test_blend_notebooks_grid_text_says_what_its_base_column_is(monkeypatch):
    """02's grid labels its first column as `swap_resolution_grid` does ("base", as `toonlib blend --grid` does: the
    base model may be other than FFHQ), where the explorer above says "FFHQ": its text says which the column is
    (forty-fourth session's audit)."""
    from toonlib import images
    from toonlib.widgets import blend_explorer

    drawn = {}
    monkeypatch.setattr(images, "labelled_grid", lambda rows, **labels: drawn.update(labels))
    explorer = blend_explorer(tiny_generator(0), tiny_generator(1), seeds=[0], swap_res=8)
    explorer.swap_resolution_grid(cell=32, progress=False)
    base, toon = drawn["col_labels"][0], drawn["col_labels"][-1]
    markdown = _markdown("02_blend.ipynb", "## Every swap resolution at once")
    assert (f"The first column, *{base}*, is `base_model`'s face (the explorer's {explorer.names[0]} column), the "
            f"last the {toon} model's.") in markdown


def test_projection_notebooks_cpu_speed_agrees_with_its_set_up_cells_report(monkeypatch):
    """03's introduction said "about 1 to 10 s a step at 1024 px" on a CPU, its set-up cell "about 0.7 s" (bfloat16 in
    hardware) or "3-11 s" (fortieth session's audit): the introduction's range holds both."""
    import torch

    from toonlib import notebook, runtime

    reports = []
    monkeypatch.setattr(notebook, "default_device", lambda *args, **kwargs: torch.device("cpu"))
    for bf16 in (True, False):
        monkeypatch.setattr(runtime, "native_bf16", lambda device, bf16=bf16: bf16)
        reports.append(notebook.device_report(print_it=False))
    steps = [float(x) for report in reports
             for x in re.search(r"a projection step at 1024 px takes (?:about )?([\d.]+)(?:-([\d.]+))? s",
                                report).groups() if x]
    intro = "".join(json.loads((NOTEBOOKS / "03_project.ipynb").read_text())["cells"][0]["source"])
    low, high = re.search(r"on a CPU, from under (\d+) s to about (\d+) s a step at 1024 px", intro).groups()
    assert min(steps) < float(low) and max(steps) == float(high), (steps, intro)


def test_projection_notebooks_save_cell_saves_after_the_set_up_cell_ran_again_unchanged(tmp_path, monkeypatch,
                                                                                        random_vgg_torch_home):
    """03 projected a photo, then its set-up cell ran again with nothing changed: the save cell refused the finished
    projection, of the same model, the only way out a projection again, up to an hour on a CPU (fortieth session's
    audit). It saves it (another model's set-up still refuses: the photo cell's test above)."""
    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    save_network(tmp_path / "base.safetensors", tiny_generator(0))
    nb = prepare("03_project.ipynb", {"photo_path": _photo(), "model": "base.safetensors", "steps": 1,
                                      "frame_every": 1, "detector": "dlib", "use_drive": False, "output": "w.npz"})
    set_up, photo_cell, save = (cell_index(nb, "brief_errors("), cell_index(nb, "choose_photo("),
                                cell_index(nb, "panel.save("))
    with _ran_through(nb, photo_cell, tmp_path) as client:
        for index in (set_up, save):
            client.execute_cell(nb.cells[index], index)
    assert shown_error(nb.cells[save]) is None, shown_error(nb.cells[save])
    assert load_latent(tmp_path / "w.npz").shape == (1, 8, 16)


# --------------------------------------------------------------------------------------------
# Forty-first session's audit of notebook 01


def test_finetune_set_up_cell_refuses_a_base_model_that_is_no_checkpoint_or_has_no_discriminator(tmp_path,
                                                                                                 monkeypatch):
    """01's `base_model = "photos/hopper.jpg"` passed the set-up cell (`check_models` only looked for the file), and
    the training cell failed on it without the parameter's name; a G-only file (a blend, a generator saved alone) the
    same with "has no discriminator (D)" (forty-first session's audit): the set-up cell refuses both, by name, before
    anything is downloaded or written."""
    from nbclient import NotebookClient

    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    base, faces = _finetune_files(tmp_path)
    save_network(tmp_path / "g.safetensors", tiny_generator(0))
    photo = _photo()
    params = {"data_path": str(faces), "base_model": photo, "use_drive": False}
    nb = prepare("01_finetune.ipynb", params)
    setup = cell_index(nb, "mount_drive(")
    client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}})
    said = []
    with client.setup_kernel():
        for index in range(setup + 1):
            client.execute_cell(nb.cells[index], index)
        said.append(shown_error(nb.cells[setup]))
        for base_model in ("g.safetensors", str(base)):
            injected = inject(nb, {**params, "base_model": base_model})
            client.execute_cell(nb.cells[injected], injected)
            client.execute_cell(nb.cells[setup], setup)
            said.append(shown_error(nb.cells[setup]))
    _assert_brief(said[0], f"base_model = {photo!r}: {photo} is a JPEG image, not a checkpoint")
    _assert_brief(said[1], "base_model = 'g.safetensors': it holds a generator alone, no discriminator (D)")
    assert "set base_model in the parameters cell to a model with D, e.g. 'ffhq-256-noaug'" in said[1], said[1]
    assert said[2] is None, said[2]  # a base with D passes
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()


def test_a_run_name_that_is_no_text_is_refused_by_name():
    """01's `run_name = None` was a 20-line TypeError traceback through `run_path` (forty-first session's audit): it is
    refused as an empty name is, naming the parameter (a ValueError: one message in a notebook)."""
    from toonlib.messages import expected_errors
    from toonlib.notebook import run_path

    for value in (None, 3):
        with pytest.raises(ValueError, match=rf"^run_name = {value!r}: set it in the parameters cell to a name for "
                                             r"this run, in quotes .*e\.g\. run_name = \"toon\"$") as raised:
            run_path(value, None)
        assert isinstance(raised.value, expected_errors())


def _write_images(folder: Path, count: int, seed: int) -> list[Path]:
    """`count` random 40 px PNGs in `folder`, of other contents for each `seed`."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{seed}-{i}.png")
    return sorted(folder.iterdir())


def test_colab_uploads_of_training_images_are_trained_on_alone(fake_colab, tmp_path, capsys):
    """In Colab, 01's uploads all went into data/, the run trained on the whole folder: a rejected upload of 3 images
    and the next one of 12 made 15 training images, nothing said (forty-first session's audit). Each upload is a
    folder of its own; the same images uploaded again (a new runtime, the run resumed) are the same folder."""
    from toonlib.data import image_files
    from toonlib.notebook import NotebookStop, choose_data

    wrong, right = _write_images(tmp_path / "wrong", 3, 1), _write_images(tmp_path / "right", 12, 2)
    fake_colab.answer(wrong, right, right)
    with pytest.raises(NotebookStop):
        choose_data("", tmp_path / "data")
    capsys.readouterr()
    data = choose_data("", tmp_path / "data")
    assert image_files(data) == [path.name for path in right]  # the 3 rejected images are not among them
    assert capsys.readouterr().out == (f"Training images: this upload alone (2-0.png, 2-1.png, 2-10.png and 9 more; "
                                       f"12 image files), saved in {data} on this runtime: after a disconnect, "
                                       "upload the same images again to continue the run.\n")
    assert choose_data("", tmp_path / "data") == data


def test_colab_upload_of_too_few_training_images_names_the_files_and_says_to_upload_more(fake_colab, tmp_path):
    """01's message about an upload of 3 images named a data_path the user never set (the runtime's copy,
    'data/three.zip') and advised '~/Downloads/toons.zip', a path on the user's own computer (forty-first session's
    audit): it names the files uploaded and says to run the cell again and upload more."""
    import zipfile

    from toonlib.notebook import NotebookStop, choose_data

    images = _write_images(tmp_path / "few", 3, 1)
    with zipfile.ZipFile(tmp_path / "three.zip", "w") as archive:
        for image in images:
            archive.write(image, image.name)
    (tmp_path / "notes.txt").write_text("no image")
    fake_colab.answer(images, [tmp_path / "three.zip"], [tmp_path / "notes.txt"])
    then = ("fine-tuning needs at least 8, and a few hundred is best.\nRun this cell again and upload more: all your "
            "training images at once, as a .zip or as images (an upload is trained on alone, not with the ones "
            "before).")
    for said in ("Your upload (1-0.png, 1-1.png, 1-2.png) holds 3 image files; ",
                 "Your upload (three.zip) holds 3 image files; ",
                 "Your upload (notes.txt) holds 0 image files (their names end in .jpg, .jpeg, .png"):
        with pytest.raises(NotebookStop) as stop:
            choose_data("", tmp_path / "data")
        assert str(stop.value).startswith(said) and str(stop.value).endswith(then), str(stop.value)
        assert "data_path" not in str(stop.value) and "Downloads" not in str(stop.value)


def recorded_displays(monkeypatch: pytest.MonkeyPatch) -> list[list]:
    """IPython's `display` recorded: each display's contents, its handle's updates appended."""
    import IPython.display

    shown: list[list] = []

    class Handle:
        def __init__(self, index: int) -> None:
            self.index = index

        def update(self, content) -> None:
            shown[self.index].append(content)

    def display(content, display_id=None):
        shown.append([content])
        return Handle(len(shown) - 1)

    monkeypatch.setattr(IPython.display, "display", display)
    return shown


def test_finetune_progress_bars_show_above_the_fakes_grid_and_the_plots(tmp_path, monkeypatch):
    """01's training cell showed the line of numbers, the fakes grid and the plots, then the progress bars that
    `finetune` shows: the first snapshot's grid and plots (~1500 px at 1024 px models) pushed the bar that counts the
    run out of the window (forty-first session's audit). The grid and the plots are shown at the first snapshot, below
    the bars, and updated in place after it."""
    import IPython.display
    from PIL import Image

    import toonlib.train
    from toonlib.notebook import run_training
    from toonlib.train import TrainConfig

    shown = recorded_displays(monkeypatch)
    Image.new("RGB", (8, 8)).save(tmp_path / "metrics.png")
    fakes = Image.new("RGB", (8, 8))

    def finetune(config, callback=None):
        IPython.display.display("the fine-tuning bar")  # as tqdm's notebook bar shows itself when `finetune` makes it
        for kimg in (0.004, 0.008):
            callback({"kimg": kimg, "fakes": fakes, "plot_path": tmp_path / "metrics.png"})
        return tmp_path / "last.safetensors"

    monkeypatch.setattr(toonlib.train, "finetune", finetune)
    run_training(TrainConfig(data="faces", resume="base.safetensors", run_dir=str(tmp_path / "run")))
    kinds = [type(contents[0]).__name__ if not isinstance(contents[0], str) else contents[0] for contents in shown]
    assert str(shown[0][0]) == "waiting for the first snapshot..." and kinds[1:] == [
        "the fine-tuning bar", "Image", "Image"], kinds  # the line, the bar, the grid, the plots
    assert [str(line) for line in shown[0][1:]] == ["kimg 0.004", "kimg 0.008"]
    assert shown[2] == [fakes, fakes] and len(shown[3]) == 2  # updated in place, not shown again


# --------------------------------------------------------------------------------------------
# Forty-first session's audit of notebook 04 (and 03's shared parts)


@pytest.mark.parametrize("name", ["03_project.ipynb", "04_toonify.ipynb"])
def test_the_set_up_cell_builds_the_face_landmarker_before_a_photo_is_chosen(tmp_path, monkeypatch,
                                                                            random_vgg_torch_home, name):
    """04's first Run (and 03's) fetched face-alignment's weights under "finding the face...", their bar in
    JupyterLab's log, and with detector "auto" offline said the fallback to dlib there too (forty-first session's
    audit): the set-up cell builds the landmarker the Run then uses, and says the fallback itself."""
    from http_server import OFFLINE_URL
    from nbformat.v4 import new_code_cell

    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))  # LPIPS' weights; face-alignment's are not there
    base, toon, _, _ = write_toonify_models(tmp_path)
    models = ({"model": str(base)} if name.startswith("03") else {"base_model": str(base), "toon_model": str(toon)})
    nb = prepare(name, {**models, "detector": "auto", "use_drive": False})
    set_up = cell_index(nb, "brief_errors(")
    nb.cells.insert(set_up, new_code_cell(  # no internet: the registry's addresses of the weights resolve nowhere
        "import dataclasses\nfrom toonlib import models\nfor name in ('face-alignment-sfd', 'face-alignment-2dfan4'):\n"
        f"    models.MODELS[name] = dataclasses.replace(models.MODELS[name], sources=({OFFLINE_URL!r},))"))
    nb.cells.insert(set_up + 2, new_code_cell("from toonlib import align\n"
                                              "print('landmarkers:', sorted(align._BACKENDS))"))
    with _ran_through(nb, set_up + 2, tmp_path):
        pass
    said = "".join(out.get("text", "") for out in nb.cells[set_up + 1].outputs)
    assert re.search(r"^warning: face-alignment is not .*; using dlib's landmarks instead$", said, re.MULTILINE), said
    assert "('auto', 'cpu')" in nb.cells[set_up + 2].outputs[0].text  # the photo panel's (detector, device)


def test_the_toonify_notebooks_set_up_names_a_model_file_that_is_no_checkpoint(tmp_path, monkeypatch):
    """04's `toon_model = "photos/hopper.jpg"` said "photos/hopper.jpg is a JPEG image, not a checkpoint ..." without
    its parameter, where 02 and 03 name theirs (forty-first session's audit); the base_model's the same."""
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    base, toon, _, _ = write_toonify_models(tmp_path)
    photo = _photo()
    nb = prepare("04_toonify.ipynb", {"base_model": str(base), "toon_model": photo, "use_drive": False,
                                      "detector": "dlib"})
    _assert_brief(error_of_the_cell(nb, "toonifier = Toonifier(", tmp_path),
                  f"toon_model = {photo!r}: {photo} is a JPEG image, not a checkpoint: expected a network pickle")
    from toonlib.checkpoints import CheckpointError
    from toonlib.notebook import naming_files
    from toonlib.pipeline import Toonifier

    with pytest.raises(CheckpointError, match=rf"^base_model = {re.escape(repr(photo))}: .* is a JPEG image, not a "):
        with naming_files(base_model=photo, toon_model=str(toon)):  # as 04's set-up cell builds its toonifier
            Toonifier(photo, toon, detector="dlib")


def test_a_photo_path_that_is_no_path_is_refused_by_name():
    """03's and 04's `photo_path = 3` reached the panel, whose status line said "TypeError: expected a path, bytes, PIL
    image or numpy array, got int" (forty-first session's audit): the photo cell says what to set."""
    from toonlib.notebook import choose_photo

    for value in (3, ["me.jpg"]):
        with pytest.raises(ValueError) as error:
            choose_photo(value)
        assert str(error.value) == (f"photo_path = {value!r}: set it in the parameters cell to the path of your photo, "
                                    'in quotes, e.g. photo_path = "me.jpg", or leave it empty ("") to upload one')
    assert choose_photo(Path("me.jpg")) == Path("me.jpg") and choose_photo(None) is None


@pytest.mark.parametrize("name", ["03_project.ipynb", "04_toonify.ipynb"])
def test_the_photo_notebooks_name_output_where_their_save_refuses_its_path(name):
    """03's and 04's save cells refused an output that names the photo with "choose another path", an argument of the
    panels' `save` (forty-first session's audit): their set-up cells give `brief_errors` the parameter for it, which
    the panels' refusal then names ("choose another output (in the parameters cell)")."""
    sources = ["".join(cell["source"]) for cell in json.loads((NOTEBOOKS / name).read_text())["cells"]]
    [set_up] = [source for source in sources if "brief_errors(" in source]
    call = re.search(r"brief_errors\((\{.*?\})\)", set_up)
    assert call is not None and ast.literal_eval(call.group(1)).get("path") == "output", set_up


def test_the_landmarker_the_set_up_cell_builds_on_a_gpu_is_the_one_the_panel_uses(monkeypatch):
    """On a GPU, 03's set-up cell names its device 'cuda' and its panel aligns on its model's 'cuda:0': kept apart,
    the Run built face-alignment a second time (and offline, with detector "auto", tried the download again and warned
    in JupyterLab's log). One landmarker for both names of the GPU."""
    import torch

    from toonlib import align

    built = []

    class Landmarker:  # face-alignment, as built on a device, without its weights
        name = "face-alignment"

        def __init__(self, device) -> None:
            built.append(device)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(align, "_FaceAlignmentBackend", Landmarker)
    monkeypatch.setattr(align, "_BACKENDS", {})
    made = align._get_backend("face_alignment", str(torch.device("cuda")))  # as 03's set-up cell names its device
    assert align._get_backend("face_alignment", "cuda:0") is made and built == ["cuda:0"]  # its panel's Run
    from toonlib.notebook import prepare_landmarks

    monkeypatch.setattr(align, "_BACKENDS", {})
    prepare_landmarks("face_alignment", torch.device("cuda"))  # 03's set-up cell
    assert isinstance(align._get_backend("face_alignment", "cuda:0"), Landmarker) and built == ["cuda:0"] * 2


# --------------------------------------------------------------------------------------------
# Forty-second session: 04's set-up cell in the order 03's has


def test_the_toonify_set_up_cell_stopped_by_the_landmarker_leaves_no_toonifier(tmp_path, monkeypatch,
                                                                               random_vgg_torch_home):
    """04's set-up cell built its toonifier, then stopped offline in `prepare_landmarks` (detector "face_alignment"):
    the toonifier stayed, and the photo cell's Run stopped on the same missing weights, far from the set-up cell that
    said how to fix it (forty-first session's audit). The toonifier is set last, when all it needs is ready."""
    from http_server import OFFLINE_URL
    from nbformat.v4 import new_code_cell

    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))  # LPIPS' weights; face-alignment's are not there
    base, toon, _, _ = write_toonify_models(tmp_path)
    nb = prepare("04_toonify.ipynb", {"base_model": str(base), "toon_model": str(toon), "detector": "face_alignment",
                                      "use_drive": False})
    set_up = cell_index(nb, "brief_errors(")
    nb.cells.insert(set_up, new_code_cell(  # no internet: the registry's addresses of the weights resolve nowhere
        "import dataclasses\nfrom toonlib import models\nfor name in ('face-alignment-sfd', 'face-alignment-2dfan4'):\n"
        f"    models.MODELS[name] = dataclasses.replace(models.MODELS[name], sources=({OFFLINE_URL!r},))"))
    nb.cells.insert(set_up + 2, new_code_cell("print('toonifier:', toonifier)"))
    said = error_of_the_cell(nb, "print('toonifier:'", tmp_path)
    assert shown_error(nb.cells[set_up + 1]) is not None  # the set-up cell said what is missing
    assert said is None and nb.cells[set_up + 2].outputs[0].text == "toonifier: None\n"


def test_the_toonify_set_up_cell_names_a_misspelt_model_before_any_download(tmp_path, monkeypatch):
    """With the landmarker and LPIPS built before the toonifier (above), a misspelt base_model would have been said
    only after LPIPS' 553 MB (offline: LPIPS' error, not the name). The model names are checked first, as in 03."""
    from http_server import OFFLINE_URL
    from nbformat.v4 import new_code_cell

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no LPIPS weights, and they cannot download
    _, toon, _, _ = write_toonify_models(tmp_path)
    nb = prepare("04_toonify.ipynb", {"base_model": "ffhq-1024-tfx", "toon_model": str(toon), "detector": "dlib",
                                      "use_drive": False})
    set_up = cell_index(nb, "brief_errors(")
    nb.cells.insert(set_up, new_code_cell(
        "import dataclasses\nfrom toonlib import models\nmodels.MODELS['lpips-vgg16'] = dataclasses.replace("
        f"models.MODELS['lpips-vgg16'], sources=({OFFLINE_URL!r},))"))
    _assert_brief(error_of_the_cell(nb, "brief_errors(", tmp_path),
                  "base_model = 'ffhq-1024-tfx': unknown model 'ffhq-1024-tfx'.")


def test_blend_notebooks_output_is_a_safetensors_file_said_before_anything_downloads(tmp_path, monkeypatch):
    """02 with `output = "photos/hopper.jpg"` wrote the blend over the user's photo (`blend.pkl`, `blend` the same),
    warning only after the write, where `toonlib blend -o` refuses it (forty-second session's audit): the set-up cell
    refuses a name that is no .safetensors file before any model is read, and so does the save cell, as 03's do; and
    the toon model's own file, which the save refused only after both models had loaded and the explorer had drawn."""
    from toonlib.notebook import output_path

    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    nb = prepare("02_blend.ipynb", {"output": "photos/hopper.jpg", "use_drive": False})
    assert error_of_the_cell(nb, "brief_errors(", tmp_path) == (
        "output = 'photos/hopper.jpg': it is saved as a .safetensors file (tools pick their reader by the suffix); set "
        "output in the parameters cell to 'photos/hopper.safetensors'")
    assert not (tmp_path / "cache").exists()  # nothing downloaded
    save = nb.cells[cell_index(nb, "explorer.save(")].source
    assert 'explorer.save(output_path(output, drive, suffix=".safetensors"))' in save, save
    for name in ("blend.pkl", "blend"):
        with pytest.raises(ValueError, match=rf"^output = '{name}': .* to 'blend\.safetensors'$"):
            output_path(name, None, suffix=".safetensors")
    toon = tmp_path / "toon.safetensors"
    save_network(toon, tiny_generator(1))
    nb = prepare("02_blend.ipynb", {"base_model": "ffhq-256-noaug", "toon_model": str(toon), "toon_network": "G_ema",
                                    "swap_res": 8, "output": "toon.safetensors", "use_drive": False})
    assert error_of_the_cell(nb, "brief_errors(", tmp_path) == (
        "output = toon.safetensors is the toon model's file: writing there would replace that model; give another "
        "output file")
    assert not (tmp_path / "cache").exists()


def test_blend_notebooks_set_up_cell_shows_no_python_value(tmp_path, monkeypatch):
    """02's set-up cell ended in `output_path(output, drive)`, whose value IPython showed below the cell:
    "PosixPath('blend.safetensors')", in a notebook that otherwise says sentences (forty-second session's audit)."""
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    nb = prepare("02_blend.ipynb", {"output": "blend.safetensors", "use_drive": False})
    assert error_of_the_cell(nb, "brief_errors(", tmp_path) is None
    outputs = nb.cells[cell_index(nb, "brief_errors(")].outputs
    assert "execute_result" not in [out.output_type for out in outputs], outputs
    assert "PosixPath" not in json.dumps(outputs)


@pytest.mark.parametrize("name, example", [("02_blend.ipynb", "result.safetensors"),
                                           ("03_project.ipynb", "result.npz")])
def test_an_output_that_is_no_text_is_refused_by_name(tmp_path, monkeypatch, name, example):
    """02's and 03's `output = None` stopped the set-up cell with an 18-line TypeError traceback through
    `output_path`, naming no parameter, where `run_name = None` and `photo_path = 3` are refused by name (forty-second
    session's audit)."""
    from toonlib.messages import expected_errors
    from toonlib.notebook import output_path

    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    nb = prepare(name, {"output": None, "use_drive": False})
    assert error_of_the_cell(nb, "brief_errors(", tmp_path) == (
        f'output = None: set it in the parameters cell to the name of the file to save, in quotes, e.g. output = '
        f'"{example}"')
    with pytest.raises(ValueError, match=r'^output = 3: .* e\.g\. output = "result\.png"$') as raised:
        output_path(3, None, image=True)  # 04's
    assert isinstance(raised.value, expected_errors())


def test_blend_notebook_says_what_blending_takes_and_names_output_where_its_save_refuses(tmp_path):
    """02's device report quoted a projection step's time and the e4e mode's, which that notebook does neither of, and
    its save refused the toon model's file as output saying "the path toon.safetensors ...", where 03 and 04 name
    `output` (forty-second session's audit)."""
    from nbformat.v4 import new_code_cell

    base, toon = tmp_path / "base.safetensors", tmp_path / "toon.safetensors"
    save_network(base, tiny_generator(0))
    save_network(toon, tiny_generator(1))
    before = toon.read_bytes()
    nb = prepare("02_blend.ipynb", {"base_model": str(base), "toon_model": str(toon), "toon_network": "G_ema",
                                    "swap_res": 8, "output": "blend.safetensors", "use_drive": False})
    # output changed in the parameters cell after the set-up cell ran, the save cell run again
    nb.cells.insert(cell_index(nb, "explorer.save("), new_code_cell('output = "toon.safetensors"'))
    assert error_of_the_cell(nb, "explorer.save(", tmp_path) == (
        "output = toon.safetensors is the toon model's file: writing there would replace that model; give another "
        "output file")
    assert toon.read_bytes() == before
    report = "".join(out.get("text", "") for out in nb.cells[cell_index(nb, "brief_errors(")].outputs)
    assert "toonlib will" in report and "projection" not in report and "e4e" not in report, report


def test_widgets_without_ipywidgets_say_the_notebook_extra_without_a_traceback(monkeypatch):
    """02-04's set-up cells import toonlib.widgets first (before `brief_errors`): without ipywidgets they stopped in
    a ModuleNotFoundError traceback through widgets.py that said nothing of the extra (forty-second session's audit).
    IPython shows an exception's `_render_traceback_` instead of its traceback."""
    import importlib

    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # `import ipywidgets` now raises ImportError
    monkeypatch.delitem(sys.modules, "toonlib.widgets", raising=False)
    with pytest.raises(ImportError) as info:
        importlib.import_module("toonlib.widgets")
    message = str(info.value)
    assert message.startswith("the notebooks' widgets need ipywidgets") and 'pip install "toonlib[notebook]"' in message
    assert info.value._render_traceback_() == message.splitlines()


@pytest.mark.parametrize("name, video", [("03_project.ipynb", True), ("04_toonify.ipynb", False)])
def test_set_up_cells_check_the_extras_their_settings_need_before_anything_downloads(name, video):
    """03 projected for minutes, then showed a traceback for want of imageio-ffmpeg; with detector = "dlib" and no
    dlib, 03 and 04 said so after LPIPS' VGG16 (553 MB) had downloaded (forty-second session's audit)."""
    nb = json.loads((NOTEBOOKS / name).read_text())
    [source] = ["".join(cell["source"]) for cell in nb["cells"] if "prepare_lpips(" in "".join(cell["source"])]
    call = "check_extras(detector, video=True)" if video else "check_extras(detector)"
    assert source.index("brief_errors(") < source.index(call) < source.index("prepare_lpips(device"), source
    assert source.index("prepare_lpips(device") < source.index("prepare_landmarks(detector")  # 04's order kept


def test_check_extras_and_the_projection_panel_refuse_what_is_not_installed(monkeypatch):
    import importlib.util

    from toonlib.align import LandmarkBackendError
    from toonlib.notebook import check_extras
    from toonlib.widgets import ProjectionPanel

    find_spec = importlib.util.find_spec
    hidden: set[str] = set()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name in hidden
                        else find_spec(name, *args))
    check_extras("dlib", video=True)  # all installed
    hidden.add("dlib")
    with pytest.raises(LandmarkBackendError, match=r"^dlib is not installed \(no module 'dlib'\): `pip install "
                                                   r"\"toonlib\[dlib\]\"`$"):
        check_extras("dlib")
    hidden.clear()
    hidden.add("imageio_ffmpeg")
    check_extras("dlib")  # no video asked for
    with pytest.raises(ImportError, match="writing a video needs imageio-ffmpeg"):
        check_extras("auto", video=True)
    # the panel draws a video at every Run: said when it is made, before a Run projects for minutes
    with pytest.raises(ImportError, match="writing a video needs imageio-ffmpeg"):
        ProjectionPanel(tiny_generator(0))


def test_toonify_notebooks_base_of_another_resolution_names_base_model(tmp_path, monkeypatch):
    """04's set-up cell with a base of another resolution than the toon's said to see `toonlib models`, a command,
    and named no parameter, where 02 says to set base_model (forty-second session's audit): said as 02 says it."""
    from toonlib.notebook import NotebookStop, naming_files
    from toonlib.pipeline import Toonifier

    write_toonify_models(tmp_path)
    save_network(tmp_path / "big.safetensors", tiny_generator(0, img_resolution=64))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotebookStop) as stop:
        with naming_files(base_model="big.safetensors", toon_model="toon.safetensors"):  # as 04's set-up cell
            Toonifier(base="big.safetensors", toon="toon.safetensors", detector="dlib")
    assert str(stop.value) == (
        "toon_model = 'toon.safetensors' (32 px) cannot toonify the latents of base_model = 'big.safetensors' (64 px): "
        "it was fine-tuned from another model. Set base_model in the parameters cell to the model the toon was "
        "fine-tuned from (notebook 01's last cell names it), then run the cells again.")


# --------------------------------------------------------------------------------------------
# Forty-third session's audit of notebook 01


def test_colab_without_drive_says_where_the_run_is_and_that_a_disconnect_deletes_it(fake_colab, tmp_path, capsys):
    """In Colab without Drive, 01's run folder is on the runtime's disk, and the only line said "models are cached on
    this runtime only": nothing said that a disconnect loses the run (forty-third session's audit)."""
    from toonlib.notebook import run_path

    assert run_path("toon", None) == Path("runs") / "toon"
    assert capsys.readouterr().out == (
        "runs/toon is on this Colab runtime's disk only: a disconnect deletes the run (its snapshots and training "
        "state). To keep it, set use_drive = True and allow Google Drive, then run the notebook again.\n")
    assert run_path("toon", tmp_path / "drive") == tmp_path / "drive" / "runs" / "toon"
    assert capsys.readouterr().out == ""  # on Drive: kept


def test_use_drive_that_is_no_flag_is_refused_by_name(fake_colab, monkeypatch, tmp_path):
    """`use_drive = "no"` mounted Drive; outside Colab it was never checked (forty-third session's audit)."""
    import toonlib.notebook
    from toonlib.messages import expected_errors
    from toonlib.notebook import mount_drive

    monkeypatch.setattr(toonlib.notebook, "DRIVE_ROOT", tmp_path / "drive" / "MyDrive")
    monkeypatch.setattr(toonlib.download, "_drive_cache", True)  # put back however the test ends
    monkeypatch.setenv("FAKE_COLAB_DRIVE", "accept")
    for value in ("no", 0):
        with pytest.raises(ValueError, match=rf"^use_drive must be True or False, got {value!r}: set it in the "
                                             "parameters cell$") as raised:
            mount_drive(use=value)
        assert isinstance(raised.value, expected_errors())
    assert fake_colab.log() == []  # nothing mounted


def test_finetune_notebooks_texts_say_what_a_disconnect_keeps():
    """01's texts: the intro said a disconnect resumes the run, not that without Drive it is deleted; nothing said
    that uploaded images must be uploaded again; data_path's comment said to upload a zip, where images are taken
    too (forty-third session's audit)."""
    import nbformat

    nb = nbformat.read(NOTEBOOKS / "01_finetune.ipynb", as_version=4)
    text = " ".join(" ".join(cell.source.split()) for cell in nb.cells)
    assert "without Drive, a disconnect deletes the run" in text
    assert "Images you uploaded are on the runtime only: upload the same images again to continue the run." in text
    assert "leave it empty to upload images or a .zip (Colab):" in text
    assert "Keep the model cache and the training run on Google Drive (Colab): without it, a disconnect deletes" in text


def test_a_refused_resume_names_base_model_and_data_path():
    """01's refused resume said "(resume: 'base.pt' -> 'base2.pt')" and "(data: ...)": arguments no cell shows, for
    base_model and data_path (forty-third session's audit)."""
    from toonlib.notebook import in_notebook_words
    from toonlib.train.resume import option_both

    message = (f"runs/toon holds a run started with other settings ({option_both('resume')}: 'base.pt' -> 'base2.pt'; "
               f"{option_both('data')}: 'faces' -> 'faces2'). A resumed run keeps its networks, data and random "
               "streams: restore those settings or use a new run folder (--run-dir, run_dir=); --kimg (kimg=) may "
               "change.")
    said = in_notebook_words(message, {"resume": "base_model", "data": "data_path", "run_dir": "run_name"})
    assert said.startswith("runs/toon holds a run started with other settings (base_model: 'base.pt' -> 'base2.pt'; "
                           "data_path: 'faces' -> 'faces2')."), said
    assert said.endswith("use a new run folder (run_name); kimg may change."), said


def test_choose_data_refuses_too_few_readable_images_before_anything_downloads(tmp_path):
    """01's set-up cell counted file names: 6 images and 3 damaged .jpg files passed it, and the training cell
    refused them after the base's download (forty-third session's audit). The damaged ones are named."""
    from toonlib.notebook import NotebookStop, choose_data

    faces = tmp_path / "faces"
    _write_images(faces, 6, 0)
    for i in range(3):
        (faces / f"bad{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.raises(NotebookStop) as stop:
        choose_data(str(faces))
    assert str(stop.value).startswith(
        f"data_path = {str(faces)!r}: 3 of its 9 image files cannot be read as images: bad0.jpg (the file is cut "
        "short (a download or copy that did not finish?): download or copy it again), bad1.jpg (the file is cut "
        "short"), str(stop.value)  # in the photo commands' words (forty-fourth session's audit)
    assert "fine-tuning needs at least 8 images it can read. Replace or add images.\nSet data_path" in str(stop.value)
    _write_images(tmp_path / "more", 2, 1)
    for image in (tmp_path / "more").iterdir():
        image.rename(faces / image.name)
    assert choose_data(str(faces)) == str(faces)  # 8 readable: the damaged ones are skipped in training, said there


def test_colab_upload_of_other_images_than_the_runs_is_refused_naming_run_name(fake_colab, tmp_path, monkeypatch,
                                                                               capsys):
    """A Colab run trained on an upload resumes only with the same images: nothing said so, and another upload was
    refused in the training cell, after the base's download, naming two data/upload-<digest> folders the user never
    chose (forty-third session's audit). The dialog is told, and the upload refused in the set-up cell."""
    import torch

    from toonlib.data import image_entries
    from toonlib.notebook import NotebookStop, choose_data
    from toonlib.train.snapshots import state_name

    monkeypatch.chdir(tmp_path)
    right, other = _write_images(tmp_path / "right", 12, 2), _write_images(tmp_path / "other", 12, 3)
    fake_colab.answer(right, other, right)
    data = choose_data("", "data")
    assert "upload the same images again to continue the run" in capsys.readouterr().out
    run = Path("runs") / "toon"
    run.mkdir(parents=True)
    recorded = str(Path(data).absolute())
    torch.save({"config": {"data": recorded}, "data_files": image_entries(recorded)}, run / state_name(4))
    with pytest.raises(NotebookStop) as stop:
        choose_data("", "data", run_dir=run)
    assert str(stop.value) == (
        "Your upload (3-0.png, 3-1.png, 3-10.png and 9 more) is not the images runs/toon was trained on (12 images: "
        "2-0.png, 2-1.png, 2-10.png and 9 more), and a resumed run keeps its images: run this cell again and upload "
        "those same images to continue it, or set run_name in the parameters cell to a new name to train a new run "
        "on these.")
    said = ("runs/toon was trained on an upload of 12 images: 2-0.png, 2-1.png, 2-10.png and 9 more: to continue it, "
            "upload those same images (or a .zip of them); other images need a new run_name.\n")
    assert capsys.readouterr().out == said
    assert choose_data("", "data", run_dir=run) == data  # the same images: resumed
    assert capsys.readouterr().out.startswith(said)



def _zip_images(images: list[Path], path: Path, folder: str = "") -> Path:
    """A .zip at `path` of `images`, in `folder` inside it as Finder's Compress and Windows' Compressed folder make
    it ('faces/0.png'), or at its top where `folder` is empty."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for image in images:
            archive.write(image, f"{folder}/{image.name}" if folder else image.name)
    return path


def _record_upload_run(data: str, run: Path) -> dict:
    """A training state in `run`, as 01's training cell records one for a run trained on `data` (its files and their
    contents, `ImageDataset.files` and `.digests`); returns it."""
    import torch

    from toonlib.data import ImageDataset
    from toonlib.train import TrainConfig
    from toonlib.train.snapshots import state_name

    dataset = ImageDataset(data, 32, progress=False)
    config = TrainConfig(data=str(Path(data).absolute()), resume="base.safetensors", run_dir=str(run))
    state = {"config": config.to_dict(), "networks": {"G": {"img_resolution": 32}}, "data_files": dataset.files,
             "data_digests": dataset.digests}
    run.mkdir(parents=True, exist_ok=True)
    torch.save(state, run / state_name(4))
    return state


@pytest.mark.parametrize("first, then", [("images", "folder.zip"), ("folder.zip", "images"),
                                         ("images", "flat.zip")])
def test_colab_run_trained_on_an_upload_continues_with_the_same_images_loose_or_in_a_zip(fake_colab, tmp_path,
                                                                                         monkeypatch, capsys, first,
                                                                                         then):
    """After a disconnect, 01's set-up cell said "upload those same images (or a .zip of them)", and refused a .zip of
    their folder (its names 'faces/0.png'), a run trained on such a .zip refused the images themselves, and a .zip
    without a folder was taken with a warning naming two data/upload-<digest> folders (forty-fifth session's audit).
    The same images, loose or in a .zip, are put back where the run recorded them: it resumes as it was."""
    import shutil

    from toonlib.data import ImageDataset
    from toonlib.notebook import choose_data
    from toonlib.train import TrainConfig
    from toonlib.train.resume import check_resumable, data_changes

    monkeypatch.chdir(tmp_path)
    images = _write_images(tmp_path / "faces", 12, 2)
    given = {"images": images, "folder.zip": [_zip_images(images, tmp_path / "folder.zip", "faces")],
             "flat.zip": [_zip_images(images, tmp_path / "flat.zip")]}
    fake_colab.answer(given[first], given[then])
    run = Path("runs") / "toon"
    recorded = str(Path(choose_data("", "data", run_dir=run)).absolute())
    state = _record_upload_run(recorded, run)
    shutil.rmtree("data")  # a disconnect: the runtime's disk is new
    capsys.readouterr()
    data = choose_data("", "data", run_dir=run)
    assert str(Path(data).absolute()) == recorded
    out = capsys.readouterr().out
    shown = "2-0.png, 2-1.png, 2-10.png and 9 more" if then == "images" else then
    assert out.endswith(f"Training images: this upload alone ({shown}; 12 image files), the images runs/toon was "
                        f"trained on, saved in {data} on this runtime: after a "
                        "disconnect, upload the same images again to continue the run.\n"), out
    # the training cell resumes it as it was: the same data, nothing said changed
    check_resumable(state, TrainConfig(data=data, resume="base.safetensors", run_dir=str(run)))
    dataset = ImageDataset(data, 32, progress=False)
    assert data_changes(state, dataset.files, dataset.digests) is None


def test_colab_upload_of_a_zip_with_other_files_or_two_zips_says_to_upload_one_zip(fake_colab, tmp_path):
    """One upload of a .zip and images trained on the images alone, the .zip said in the training cell, after the
    base's download, naming the runtime's folder; two .zip files were "0 image files ... upload more" (forty-fifth
    session's audit). The set-up cell says to upload one .zip, or the images."""
    from toonlib.notebook import NotebookStop, choose_data

    images = _write_images(tmp_path / "faces", 20, 1)
    one, two = _zip_images(images[:10], tmp_path / "toons-1.zip"), _zip_images(images[10:], tmp_path / "toons-2.zip")
    fake_colab.answer([one, *images[10:]], [one, two])
    then = (", and one upload is trained on as one .zip or as images: run this cell again and upload one .zip of all "
            "your training images, or the images themselves.")
    for said in (f"Your upload (toons-1.zip, {images[10].name}, {images[11].name} and 8 more) holds a .zip "
                 f"(toons-1.zip) and other files{then}",
                 f"Your upload (toons-1.zip, toons-2.zip) holds 2 .zip files{then}"):
        with pytest.raises(NotebookStop) as stop:
            choose_data("", tmp_path / "data")
        assert str(stop.value) == said


def test_colab_data_path_for_a_run_trained_on_an_upload_is_said_in_upload_words(fake_colab, tmp_path, monkeypatch,
                                                                                capsys):
    """A data_path for a run trained on an upload was refused in the training cell, after the base's download, as a
    change of data_path from the runtime's data/upload-<digest> folder, to be restored (gone after a disconnect); the
    same images at a data_path were taken with a warning naming that folder (forty-fifth session's audit). Other
    images are refused in the set-up cell in upload words; the same images continue the run, nothing said of it."""
    import shutil

    from toonlib.notebook import NotebookStop, choose_data

    monkeypatch.chdir(tmp_path)
    images = _write_images(tmp_path / "faces", 12, 2)
    _write_images(tmp_path / "other", 12, 3)
    _zip_images(images, tmp_path / "mine.zip", "faces")
    fake_colab.answer(images)
    run = Path("runs") / "toon"
    recorded = str(Path(choose_data("", "data", run_dir=run)).absolute())
    _record_upload_run(recorded, run)
    shutil.rmtree("data")
    capsys.readouterr()
    with pytest.raises(NotebookStop) as stop:
        choose_data("other", "data", run_dir=run)
    assert str(stop.value) == (
        "data_path = 'other' is not the images runs/toon was trained on (an upload of 12 images: 2-0.png, 2-1.png, "
        "2-10.png and 9 more), and a resumed run keeps its images: leave data_path empty and run this cell again to "
        "upload those same images to continue it, or set run_name in the parameters cell to a new name to train a "
        "new run on 'other'.")
    assert str(Path(choose_data("mine.zip", "data", run_dir=run)).absolute()) == recorded
    assert capsys.readouterr().out == ("data_path = 'mine.zip' holds the 12 images runs/toon was trained on (an "
                                       "upload): the run goes on with them.\n")


def test_finetune_training_cell_stops_where_base_model_changed_since_the_set_up_cell(tmp_path, monkeypatch):
    """base_model set after the set-up cell ran, and the training cell run alone, bypassed the set-up cell's checks:
    the loader's errors named no parameter, and a registry name was downloaded unchecked (forty-fifth session's
    audit). The training cell says it changed, as for data_path."""
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    base, faces = _finetune_files(tmp_path)
    params = {"data_path": str(faces), "base_model": str(base), "use_drive": False}
    nb = prepare("01_finetune.ipynb", params)
    train = cell_index(nb, "TrainConfig(")
    with _ran_through(nb, cell_index(nb, "mount_drive("), tmp_path) as client:
        injected = inject(nb, {**params, "base_model": "photo.png"})
        for index in (injected, train):
            client.execute_cell(nb.cells[index], index)
    _assert_brief(shown_error(nb.cells[train]), f"base_model = 'photo.png': changed since the set-up cell ran (with "
                                                f"base_model = {str(base)!r}). Run the set-up cell again, then this "
                                                "cell.")
    assert not (tmp_path / "runs").exists()


def test_a_resumed_run_says_so_and_shows_its_grid_and_plots_at_once(tmp_path, monkeypatch):
    """01's training cell run again on a run with snapshots said "waiting for the first snapshot..." above a bar at
    33%, and showed none of the run till its next snapshot (forty-third session's audit). Its line's losses, means
    since the snapshot before, were under the names the bar gives the last minibatch's."""
    from toonlib.notebook import run_training
    from toonlib.train import TrainConfig

    shown = recorded_displays(monkeypatch)
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    base, faces = _finetune_files(tmp_path)
    run = tmp_path / "runs" / "toon"
    config = dict(data=str(faces), resume=str(base), run_dir=str(run), batch_size=4, snapshot_kimg=0.004)
    run_training(TrainConfig(kimg=0.004, **config))
    assert str(shown[0][-1]).startswith("kimg 0.004  G ") and " (means since the snapshot before)  p " in str(
        shown[0][-1])
    shown.clear()
    run_training(TrainConfig(kimg=0.008, **config))
    lines = [str(line) for line in shown[0]]
    said = f"{run.as_posix()} at 0.004 kimg (network-snapshot-000000004.safetensors): waiting for the next snapshot..."
    assert lines[:2] == [f"resuming {said}", f"resumed {said}"] and lines[-1].startswith("kimg 0.008  G "), lines
    images = [contents for contents in shown[1:] if type(contents[0]).__name__ == "Image"]
    assert [Path(contents[0].filename).name for contents in images] == ["fakes-000000004.png", "metrics.png"]
    assert len(images[0]) == len(images[1]) == 2  # the next snapshot's replace them in place


def test_metrics_png_is_read_on_a_phone():
    """metrics.png, 960 x 480 px of panels side by side, was shown at 296 x 148 px in a phone's notebook, its titles
    and ticks ~3 px tall (forty-third session's audit): its panels are stacked, at most 420 px wide."""
    from PIL import Image

    from toonlib.train.metrics_log import PANELS, plot_metrics

    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"metrics-{os.getpid()}.png"
    try:
        plot_metrics([{"kimg": 0.004, "loss_G": 1.0, "loss_D": 0.9, "kid": 0.0144}], path)
        with Image.open(path) as image:
            width, height = image.size
    finally:
        path.unlink(missing_ok=True)
    assert width <= 420 and height >= len(PANELS) * 150, (width, height)
