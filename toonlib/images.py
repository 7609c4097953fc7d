"""Images in and out of the generators: tensors in [-1, 1] <-> PIL / uint8, labelled grids, saving."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .files import atomic_write_path


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] or [C, H, W] in [-1, 1] -> uint8 array [N, H, W, C] or [H, W, C] (NVIDIA's rounding)."""
    array = (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu()
    return array.movedim(-3, -1).numpy()


def to_pil(images: torch.Tensor) -> Image.Image | list[Image.Image]:
    """One PIL image for a [C, H, W] tensor, a list for [N, C, H, W]; values in [-1, 1]."""
    array = to_uint8(images)
    if array.ndim == 3:
        return Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)
    return [Image.fromarray(a) for a in array]


def from_pil(image: Image.Image, size: int | None = None) -> torch.Tensor:
    """PIL image -> float tensor [1, 3, H, W] in [-1, 1], resized (LANCZOS) to size x size if given."""
    image = image.convert("RGB")
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    array = torch.from_numpy(np.asarray(image, dtype=np.float32).copy())
    return (array.permute(2, 0, 1)[None] / 127.5 - 1).contiguous()


def save_image(image: Image.Image | torch.Tensor, path: str | os.PathLike) -> None:
    """Save a PIL image or a [C, H, W] tensor atomically; the format follows the file extension."""
    if isinstance(image, torch.Tensor):
        image = to_pil(image)
    with atomic_write_path(path) as tmp:
        image.save(tmp, format=Image.registered_extensions().get(os.path.splitext(str(path))[1].lower(), "PNG"))


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def labelled_grid(rows: Sequence[Sequence[Image.Image]], row_labels: Sequence[str] | None = None,
                  col_labels: Sequence[str] | None = None, cell: int | None = None, pad: int = 4) -> Image.Image:
    """Lay out images in a grid with optional row labels (left) and column labels (top).

    All cells are resized to `cell` x `cell` (default: the first image's width). White background.
    """
    if not rows or not rows[0]:
        raise ValueError("labelled_grid needs at least one image")
    cell = cell or rows[0][0].width
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    font = _font(max(10, cell // 10))
    text_h = (font.getbbox("Ag")[3] + 2 * pad) if col_labels else 0
    label_w = (max(font.getbbox(str(t))[2] for t in row_labels) + 2 * pad) if row_labels else 0
    grid = Image.new("RGB", (label_w + n_cols * (cell + pad) + pad, text_h + n_rows * (cell + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for j, label in enumerate(col_labels or []):
        x = label_w + pad + j * (cell + pad) + cell // 2
        draw.text((x, pad), str(label), fill="black", font=font, anchor="ma")
    for i, row in enumerate(rows):
        y = text_h + pad + i * (cell + pad)
        if row_labels:
            draw.text((pad, y + cell // 2), str(row_labels[i]), fill="black", font=font, anchor="lm")
        for j, image in enumerate(row):
            if image.size != (cell, cell):
                image = image.resize((cell, cell), Image.Resampling.LANCZOS)
            grid.paste(image.convert("RGB"), (label_w + pad + j * (cell + pad), y))
    return grid


def bar_chart(values: Sequence[float], labels: Sequence[str] | None = None, width: int = 320, height: int = 120,
              color: str = "#e07b39", title: str | None = None) -> Image.Image:
    """A small bar chart of values in [0, 1] drawn with PIL (no matplotlib needed)."""
    font = _font(10)
    chart = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(chart)
    top, bottom = (16 if title else 4), height - (14 if labels else 4)
    if title:
        draw.text((width // 2, 2), title, fill="black", font=font, anchor="ma")
    slot = width / max(len(values), 1)
    for i, value in enumerate(values):
        x0, x1 = i * slot + 1, (i + 1) * slot - 1
        y = bottom - max(0.0, min(1.0, float(value))) * (bottom - top)
        draw.rectangle([x0, top, x1, bottom], outline="#cccccc")
        draw.rectangle([x0, y, x1, bottom], fill=color)
        if labels:
            draw.text(((x0 + x1) / 2, bottom + 2), str(labels[i]), fill="black", font=font, anchor="ma")
    return chart
