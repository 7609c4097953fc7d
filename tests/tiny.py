"""Tiny random generators for tests: 32 px, few channels, images scaled into about [-1, 1]."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from toonlib.networks import Generator

TINY = dict(z_dim=16, w_dim=16, img_resolution=32, channel_base=128, channel_max=16)


def tiny_generator(seed: int, **overrides) -> Generator:
    """A random generator whose biases and noise strengths are non-zero and whose images lie in ~[-1, 1]."""
    torch.manual_seed(seed)
    G = Generator(**{**TINY, **overrides}).eval()
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith(("bias", "noise_strength")) and "affine" not in name:
                param.add_(0.2 * torch.randn_like(param))
            if name.endswith("torgb.weight"):
                param.mul_(0.15)
    return G.requires_grad_(False)


def write_toonify_models(folder: Path) -> tuple[Path, Path, Generator, Generator]:
    """base.safetensors (a tiny base model) and toon.safetensors laid out like Toonify's own file: the toon model as G,
    the published blend (swap at 8 px) as G_ema. Returns both paths and the two generators."""
    from toonlib.blending import blend
    from toonlib.checkpoints import Networks, save_network

    base, toon = tiny_generator(0), tiny_generator(1)
    save_network(folder / "base.safetensors", base)
    save_network(folder / "toon.safetensors", Networks(G_ema=blend(toon, base, 8), G=toon))
    return folder / "base.safetensors", folder / "toon.safetensors", base, toon


def write_photos(folder: Path) -> Path:
    """Real photos shipped by installed packages, plus a photo without a face and a corrupt file."""
    from matplotlib import cbook
    from PIL import Image
    from skimage import data as skdata

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(skdata.astronaut()).save(folder / "astronaut.png")
    Image.open(cbook.get_sample_data("grace_hopper.jpg")).save(folder / "hopper.jpg")
    Image.fromarray(skdata.coffee()).save(folder / "coffee.png")  # no face
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


def keyboard_interrupt() -> None:
    """Ctrl-C, or a Jupyter kernel's interrupt, as it arrives in Python code."""
    raise KeyboardInterrupt


def import_cut_short() -> None:
    """What pybind11 raises when Ctrl-C lands while one of its extension modules (matplotlib's) is imported."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as exc:
        raise ImportError("initialization failed") from exc


#: Both ways an interrupt reaches toonlib's code.
INTERRUPTS = [keyboard_interrupt, import_cut_short]


def random_lpips(seed: int = 0) -> torch.nn.Module:
    """LPIPS-VGG with a random VGG16 trunk (`pnet_rand=True`: the same compute, the real linear heads), built offline,
    its trunk drawn from `seed`."""
    import lpips

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's about the unused pretrained weights
        return lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
