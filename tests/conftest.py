"""Shared test helpers: where the reference fixtures live, and tiny random networks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"


def load_ref(name: str) -> dict:
    """An npz of reference data as a dict; JSON-text entries are decoded."""
    with np.load(FIXTURES / name) as npz:
        out = {}
        for key in npz.files:
            value = npz[key]
            out[key] = json.loads(str(value)) if value.dtype.kind == "U" else value
        return out


def assert_close(actual: torch.Tensor, expected: np.ndarray, rtol: float = 1e-5, atol: float = 1e-4) -> None:
    np.testing.assert_allclose(actual.detach().cpu().numpy(), expected, rtol=rtol, atol=atol)


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def encoder_checkpoint(tmp_path_factory):
    """`encoder_checkpoint(name)`: the pSp / e4e reference checkpoint `name` ('psp_tiny', 'e4e_tiny') rebuilt
    from its recipe (tests/encoder_fixtures.py), once per session: ~580 MB and a few seconds each. Read-only for
    the tests; deleted when the session ends."""
    from encoder_fixtures import build_checkpoint

    folder = tmp_path_factory.mktemp("encoders")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = build_checkpoint(name, folder / f"{name}.pt")
        return built[name]

    yield get
    for path in built.values():
        path.unlink()


@pytest.fixture(scope="session")
def random_vgg_torch_home(tmp_path_factory):
    """A TORCH_HOME whose hub cache holds a seeded *random* VGG16 under the ImageNet file's name.

    lpips.LPIPS(net='vgg') then builds offline through the product's own code path (torchvision checks
    the hash only when downloading): same compute as the real metric, different trunk weights.
    """
    import torchvision

    home = tmp_path_factory.mktemp("torch_home")
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg16().state_dict(), checkpoints / "vgg16-397923af.pth")
    return home
