"""Helpers for Jupyter and Colab notebooks: where am I, which device, Drive, uploads, showing images.

IPython and google.colab are imported inside the functions that need them, never at import time.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from .devices import default_device

__all__ = ["default_device", "device_report", "in_colab", "mount_drive", "offer_download", "plot_losses",
           "show", "snapshot_viewer", "upload_images"]

DRIVE_ROOT = Path("/content/drive")


def in_colab() -> bool:
    """True inside Google Colab."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


def device_report(print_it: bool = True) -> str:
    """One paragraph on the runtime: Python, torch, the device toonlib will use, and what to expect."""
    lines = [f"Python {platform.python_version()}, torch {torch.__version__}"]
    if default_device().type == "cuda":
        props = torch.cuda.get_device_properties(0)
        lines.append(f"GPU: {props.name}, {props.total_memory / 2**30:.1f} GiB: toonlib will use CUDA.")
    else:
        lines.append(f"No GPU: toonlib will run on the CPU ({os.cpu_count()} cores). Projection at 1024 px takes "
                     "seconds per step there; in Colab choose Runtime > Change runtime type > GPU.")
    report = "\n".join(lines)
    if print_it:
        print(report)
    return report


def mount_drive(folder: str = "toonlib") -> Path | None:
    """Mount Google Drive in Colab and return `MyDrive/<folder>` (created); None outside Colab."""
    if not in_colab():
        return None
    from google.colab import drive

    if not (DRIVE_ROOT / "MyDrive").exists():
        drive.mount(str(DRIVE_ROOT))
    path = DRIVE_ROOT / "MyDrive" / folder
    path.mkdir(parents=True, exist_ok=True)
    return path


def upload_images(folder: str | os.PathLike = "uploads") -> list[Path]:
    """Ask the user for image files (Colab's upload dialog) and save them into `folder`.

    Outside Colab there is no blocking upload dialog: pass file paths to the notebook's parameters
    instead. Returns the saved paths.
    """
    if not in_colab():
        raise RuntimeError("upload_images() needs Google Colab; elsewhere set the notebook's photo path parameter")
    from google.colab import files

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    saved = []
    for name, data in files.upload().items():
        path = folder / Path(name).name
        path.write_bytes(data)
        saved.append(path)
    return saved


def show(images: Image.Image | Sequence[Image.Image], titles: Sequence[str] | None = None, cell: int = 256) -> None:
    """Display one image or a row of images (with titles) in the notebook."""
    from IPython.display import display

    from .images import labelled_grid

    if isinstance(images, Image.Image):
        images = [images]
    display(labelled_grid([list(images)], col_labels=titles, cell=cell))


def offer_download(path: str | os.PathLike) -> None:
    """Colab: start the browser download of `path`. Elsewhere: print where the file is."""
    if in_colab():
        from google.colab import files

        files.download(str(path))
    else:
        print(f"saved {Path(path).resolve()}")


def plot_losses(losses, title: str = "projection: LPIPS distance per step"):
    """A matplotlib figure of loss curves ([steps] or [steps, N] array)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(losses)
    ax.set_xlabel("step")
    ax.set_ylabel("distance")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def snapshot_viewer():
    """A `finetune` callback that shows the latest fakes grid and losses in one cell, updated in place."""
    from IPython.display import display

    handle = display("waiting for the first snapshot...", display_id=True)

    def show_snapshot(info: dict) -> None:
        grid = info.get("fakes")
        if grid is not None:
            handle.update(grid)
        numbers = ", ".join(f"{k} {v:.3g}" for k, v in info.items() if isinstance(v, (int, float)))
        print(numbers)

    return show_snapshot
