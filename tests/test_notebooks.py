"""Every notebook is committed without outputs and runs top to bottom on tiny checkpoints (CPU)."""
from __future__ import annotations

import json

import pytest
from tiny import tiny_generator, write_toonify_models

from notebooks import NOTEBOOKS, execute, outputs_text
from toonlib.checkpoints import load_network, save_network

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
    save_network(tmp_path / "base.pt", tiny_generator(0))
    save_network(tmp_path / "toon.pt", tiny_generator(1))
    nb = execute("02_blend.ipynb", {"base_model": str(tmp_path / "base.pt"), "toon_model": str(tmp_path / "toon.pt"),
                                    "toon_network": "G_ema", "swap_res": 8, "output": "blend.pt"}, cwd=tmp_path)
    assert "saved blend.pt" in outputs_text(nb)
    assert load_network(tmp_path / "blend.pt").G_ema.img_resolution == 32


def _photo() -> str:
    from matplotlib import cbook

    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def test_project_notebook_runs(tmp_path, monkeypatch, random_vgg_torch_home):
    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    save_network(tmp_path / "base.pt", tiny_generator(0))
    nb = execute("03_project.ipynb", {"photo_path": _photo(), "model": str(tmp_path / "base.pt"), "steps": 4,
                                      "frame_every": 2, "detector": "dlib", "output": "w.npz"}, cwd=tmp_path)
    assert (tmp_path / "projection.mp4").stat().st_size > 0
    assert "saved" in outputs_text(nb)
    from toonlib.projection import load_latent

    assert load_latent(tmp_path / "w.npz").shape == (1, 8, 16)


def test_toonify_notebook_runs(tmp_path, monkeypatch, random_vgg_torch_home):
    monkeypatch.setenv("TORCH_HOME", str(random_vgg_torch_home))
    monkeypatch.setenv("TOONLIB_CACHE", str(tmp_path / "cache"))
    write_toonify_models(tmp_path)
    execute("04_toonify.ipynb", {"photo_path": _photo(), "base_model": str(tmp_path / "base.pt"),
                                 "toon_model": str(tmp_path / "toon.pt"), "steps": 3, "detector": "dlib",
                                 "output": "me.png"}, cwd=tmp_path)
    from PIL import Image

    assert Image.open(tmp_path / "me.png").size == (32, 32)


def test_finetune_notebook_runs_and_resumes(tmp_path):
    import numpy as np
    from PIL import Image

    from toonlib.checkpoints import Networks
    from toonlib.networks import Discriminator

    G = tiny_generator(0)
    D = Discriminator(img_resolution=32, channel_base=128, channel_max=16)
    save_network(tmp_path / "base.pt", Networks(G_ema=G, G=G, D=D))
    data = tmp_path / "faces"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(data / f"{i}.png")
    params = {"data_path": str(data), "base_model": str(tmp_path / "base.pt"), "kimg": 0.008, "batch_size": 4,
              "snapshot_kimg": 0.004}
    nb = execute("01_finetune.ipynb", params, cwd=tmp_path)
    run = tmp_path / "runs" / "toon"
    assert (run / "training-state.pt").exists() and (run / "metrics.png").exists()
    assert "Blend it in 02_blend.ipynb" in outputs_text(nb)
    # Re-running with a larger budget resumes the run instead of starting over.
    execute("01_finetune.ipynb", {**params, "kimg": 0.012}, cwd=tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
