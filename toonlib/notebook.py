"""Helpers for Jupyter and Colab notebooks: where am I, which device, Drive, uploads, showing images.

IPython and google.colab are imported inside the functions that need them, never at import time.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Mapping, Sequence

import torch
from PIL import Image

from . import runtime
from .devices import default_device
from .download import DRIVE_ROOT
from .files import atomic_write_path

__all__ = ["UploadCancelled", "choose_photo", "default_device", "device_report", "display_size", "in_colab",
           "mount_drive", "offer_download", "plot_losses", "save_uploads", "show", "snapshot_viewer",
           "upload_images"]


class UploadCancelled(RuntimeError):
    """The user closed Colab's upload dialog without choosing a file (twice)."""


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
        cpu = torch.device("cpu")
        speed = ("bfloat16 in hardware: a projection step at 1024 px takes about 0.7 s, 500 steps ~6 minutes"
                 if runtime.native_bf16(cpu) else
                 "float32, no bfloat16 in hardware: a projection step at 1024 px takes 3-11 s, 500 steps 25 minutes "
                 "to 1.5 hours")
        lines.append(f"No GPU: toonlib will run on the CPU ({os.cpu_count()} cores, {speed}; the e4e inversion mode "
                     "takes seconds). In Colab choose Runtime > Change runtime type > GPU.")
    report = "\n".join(lines)
    if print_it:
        print(report)
    return report


def mount_drive(folder: str = "toonlib", use: bool = True) -> Path | None:
    """Mount Google Drive in Colab and return `MyDrive/<folder>` (created); None outside Colab.

    Call it before anything downloads: with Drive mounted, `toonlib.download.cache_dir()` is on Drive
    and a reconnected runtime finds the models there. `use=False` skips Drive on purpose; a declined
    or failed mount is not an error either: both print one line and return None (local cache).
    """
    if not in_colab():
        return None
    if not use:
        print("Google Drive skipped (use_drive = False): models are cached on this runtime only.")
        return None
    from google.colab import drive

    if not DRIVE_ROOT.exists():
        try:
            drive.mount(str(DRIVE_ROOT.parent))
        except Exception as exc:  # Colab raises MessageError when declined, ValueError on a timeout
            print(f"Google Drive not mounted ({exc}): models are cached on this runtime only and are downloaded "
                  "again after a reconnect.")
            return None
    path = DRIVE_ROOT / folder
    path.mkdir(parents=True, exist_ok=True)
    return path


def upload_images(folder: str | os.PathLike = "uploads", parameter: str = "photo_path",
                  attempts: int = 2) -> list[Path]:
    """Ask for files with Colab's upload dialog and save them into `folder`; returns the saved paths.

    A cancelled dialog is asked again (`attempts` times in all), then `UploadCancelled` says what to do.
    Outside Colab there is no blocking dialog: set `parameter` in the notebook's parameters cell (or use
    the upload button of the notebook's panel) instead.
    """
    if not in_colab():
        raise RuntimeError(f"upload_images() needs Google Colab's upload dialog; set {parameter} in the "
                           "parameters cell instead")
    from google.colab import files

    for attempt in range(1, attempts + 1):
        uploaded = files.upload()
        if uploaded:
            return save_uploads(uploaded, folder)
        if attempt < attempts:
            print("No file was chosen: choose one in the upload dialog below.")
    raise UploadCancelled(f"no file uploaded: run this cell again and choose a file, or set {parameter} in the "
                          "parameters cell")


def save_uploads(files: Mapping[str, bytes], folder: str | os.PathLike = "uploads") -> list[Path]:
    """Write uploaded files ({file name: content}) into `folder` under their base names; returns the paths. A name
    already holding other content (an earlier upload, another file of this one) gets a number: `me-1.jpg`."""
    folder = Path(folder)
    saved = []
    for name, data in files.items():
        data = bytes(data)
        base = Path(Path(name).name or "upload")
        path, number = folder / base, 0
        while path in saved or (path.exists() and (not path.is_file() or path.read_bytes() != data)):
            number += 1
            path = folder / f"{base.stem}-{number}{base.suffix}"
        with atomic_write_path(path) as tmp:
            tmp.write_bytes(data)
        saved.append(path)
    return saved


def choose_photo(photo_path: str | os.PathLike | None = None, folder: str | os.PathLike = "uploads"
                 ) -> str | os.PathLike | None:
    """The photo a notebook works on: `photo_path` when set, else Colab's upload dialog.

    Outside Colab with no path, returns None: the notebook's panel then offers an upload button.
    """
    if photo_path:
        return photo_path
    if in_colab():
        return upload_images(folder, parameter="photo_path")[0]
    return None


def display_size(size: int, bound: int) -> int:
    """The side to show an image of side `size` at: its largest integer multiple up to `bound`, or `bound`
    when the image is larger (shrunk to fit). Never stretched to the width of the page."""
    if size < 1 or bound < 1:
        raise ValueError(f"display_size needs sides >= 1 px, got size={size}, bound={bound}")
    return bound if size >= bound else size * (bound // size)


def show(images: Image.Image | Sequence[Image.Image], titles: Sequence[str] | None = None, bound: int = 256) -> None:
    """Display one image or a row of images (with titles), each at `display_size(width, bound)`."""
    from IPython.display import display

    from .images import labelled_grid

    if isinstance(images, Image.Image):
        images = [images]
    if not images:
        raise ValueError("show: no images to show")
    display(labelled_grid([list(images)], col_labels=titles, cell=display_size(images[0].width, bound)))


def offer_download(path: str | os.PathLike) -> None:
    """Colab: start the browser download of `path`. Elsewhere: print where the file is."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no file at {path} to download")
    if in_colab():
        from google.colab import files

        files.download(str(path))
    else:
        print(f"saved {Path(path).resolve()}")


SHORT_RUN_STEPS = 30  # plot_losses marks each step of runs up to this long


def plot_losses(losses, title: str = "projection: LPIPS distance per step"):
    """A matplotlib figure of loss curves ([steps] or [steps, N] array); a short run's steps are marked (a line
    through one step draws nothing)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(losses, marker="o" if len(losses) <= SHORT_RUN_STEPS else None, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("distance")
    ax.set_title(title)
    fig.tight_layout()
    return fig


class _Line(str):
    """A string that IPython shows as it is: `display("x")` shows its repr, `'x'`, quotes included."""

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))


def snapshot_viewer():
    """A `finetune` callback for notebooks: one line of the latest numbers (kimg, losses, ADA's p and r_t, the
    quality metric), the fakes grid and the training plots (metrics.png), each updated in place at every
    snapshot, so the cell shows the run as it evolves without growing."""
    from IPython.display import Image as DisplayImage
    from IPython.display import display

    status = display(_Line("waiting for the first snapshot..."), display_id=True)
    grid = display(_Line(""), display_id=True)
    plots = display(_Line(""), display_id=True)
    shown = (("kimg", "kimg {:.3f}"), ("loss_G", "G {:.3f}"), ("loss_D", "D {:.3f}"), ("augment_p", "p {:.3f}"),
             ("r_t", "r_t {:.3f}"), ("kid", "KID {:.4f}"), ("fid", "FID {:.2f}"))

    def show_snapshot(info: dict) -> None:
        status.update(_Line("  ".join(text.format(info[key]) for key, text in shown if info.get(key) is not None)))
        if info.get("fakes") is not None:
            grid.update(info["fakes"])
        if info.get("plot_path") is not None:
            plots.update(DisplayImage(filename=str(info["plot_path"])))

    return show_snapshot
