"""The console script, run as users run it (a subprocess), and its error handling."""
from __future__ import annotations

import subprocess
import sys

import torch
from conftest import FIXTURES

from toonlib.checkpoints import load_network


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toonlib", *args], capture_output=True, text=True, timeout=120)


def test_convert_then_load_gives_identical_outputs(tmp_path):
    out = tmp_path / "ada.pt"
    result = run_cli("convert", str(FIXTURES / "ada_tiny.pkl"), str(out))
    assert result.returncode == 0, result.stderr
    assert "nvidia checkpoint: 32x32" in result.stdout and "G_ema + G + D" in result.stdout
    original, converted = load_network(FIXTURES / "ada_tiny.pkl"), load_network(out)
    z = torch.randn(2, 64)
    with torch.no_grad():
        assert torch.equal(original.G_ema(z, None), converted.G_ema(z, None))


def test_info_and_clear_error_without_traceback(tmp_path):
    result = run_cli("info", str(FIXTURES / "ada_tiny.pkl"))
    assert result.returncode == 0 and "conv_clamp: 256" in result.stdout
    bad = tmp_path / "page.pkl"
    bad.write_text("<html>quota exceeded</html>")
    result = run_cli("convert", str(bad), str(tmp_path / "out.pt"))
    assert result.returncode == 2
    assert "web page, not a network" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.pt").exists()
