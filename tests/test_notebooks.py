"""Every notebook is committed without outputs and runs top to bottom on tiny checkpoints (CPU)."""
from __future__ import annotations

import json

import pytest
from tiny import tiny_generator

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
