"""The public API is importable lazily and `import toonlib` stays light."""
from __future__ import annotations

import subprocess
import sys

import toonlib


def test_public_api_resolves():
    for name in toonlib.__all__:
        assert getattr(toonlib, name) is not None, name
    for name in ("Generator", "Discriminator", "load_network", "save_network", "align_face", "project", "blend",
                 "toonify", "finetune", "TrainConfig", "fetch"):
        assert name in toonlib.__all__  # DESIGN section 2


def test_import_is_light():
    code = ("import sys, toonlib; heavy = [m for m in ('torch', 'lpips', 'face_alignment', 'ipywidgets', 'IPython') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
