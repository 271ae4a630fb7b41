"""Atomic writes of figures and images: a crash never leaves a half-written picture behind."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from difflab.utils.files import atomic_write


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=Path(path).suffix[1:]))
    finally:
        plt.close(fig)


def to_uint8(images: Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8 by round((x + 1) * 127.5), the usual quantization."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def image_grid(images: Tensor, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile (N, C, H, W) images in [-1, 1] into one (rows*H', cols*W', C) uint8 array."""
    if images.ndim != 4:
        raise ValueError(f"image_grid needs a (N, C, H, W) batch; got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    cols = nrow or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    tiles = np.zeros((rows * cols, h + 2 * pad, w + 2 * pad, c), dtype=np.uint8)
    tiles[:n, pad : pad + h, pad : pad + w] = to_uint8(images)
    grid = tiles.reshape(rows, cols, h + 2 * pad, w + 2 * pad, c).transpose(0, 2, 1, 3, 4)
    return grid.reshape(rows * (h + 2 * pad), cols * (w + 2 * pad), c)


def save_image_grid(images: Tensor, path: str | os.PathLike, nrow: int | None = None, scale: int = 1,
                    caption: str | None = None, row_labels: list[str] | None = None) -> Path:
    """Write a PNG grid of (N, C, H, W) images in [-1, 1]; `scale` enlarges small images (nearest).

    caption: lines of text written in a white band above the grid (what the picture shows: the model,
    its steps, its scores), so the picture carries its own label. row_labels: one label per grid row, written
    in a white band left of it (a comparison of models row by row).
    """
    from PIL import Image

    grid = image_grid(images, nrow)
    if grid.shape[2] == 1:
        grid = grid[:, :, 0]
    img = Image.fromarray(grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    if row_labels is not None:
        rows = -(-images.shape[0] // (nrow or int(np.ceil(np.sqrt(images.shape[0])))))
        if len(row_labels) != rows:
            raise ValueError(f"row_labels needs one label per grid row ({rows}); got {len(row_labels)}")
        img = add_row_labels(img, row_labels)
    if caption:
        img = add_caption(img, caption)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def add_row_labels(img, labels: list[str]):
    """`img` (a PIL image of len(labels) equal rows) right of a white band holding each row's label in black,
    vertically centred on its row."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    boxes = [probe.textbbox((0, 0), label or " ", font=font) for label in labels]
    band = max(b[2] for b in boxes) + 10
    out = Image.new(img.mode, (img.width + band, img.height), "white")
    draw = ImageDraw.Draw(out)
    row_h = img.height / len(labels)
    for i, (label, b) in enumerate(zip(labels, boxes, strict=True)):
        draw.text((5, round((i + 0.5) * row_h - (b[3] + b[1]) / 2)), label, fill="black", font=font)
    out.paste(img, (band, 0))
    return out


def add_caption(img, caption: str):
    """`img` (a PIL image) below a white band holding the lines of `caption` in black, left-aligned."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    lines = caption.splitlines()
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    boxes = [probe.textbbox((0, 0), line or " ", font=font) for line in lines]
    line_h = max(b[3] - b[1] for b in boxes) + 4
    width = max(img.width, max(b[2] for b in boxes) + 8)
    out = Image.new(img.mode, (width, img.height + line_h * len(lines) + 6), "white")
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((4, 3 + i * line_h), line, fill="black", font=font)
    out.paste(img, (0, line_h * len(lines) + 6))
    return out
