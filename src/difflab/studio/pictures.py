"""PNG bytes of what the page shows: an image grid (difflab.viz.io.image_grid, enlarged by nearest
neighbour) or, for 2-D runs, a scatter (difflab.viz.fields.plot_points)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from difflab.viz.fields import plot_points
from difflab.viz.io import image_grid


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def grid_png(x: Tensor, nrow: int | None = None, width: int = 256) -> bytes:
    """(N, C, H, W) in [-1, 1] (non-finite values shown as 0) -> a PNG grid about `width` pixels wide."""
    grid = image_grid(torch.nan_to_num(x.float().cpu()), nrow)
    img = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    scale = max(1, width // img.width)
    return png(img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img)


def points_png(x: Tensor, title: str = "") -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "points.png"
        plot_points(torch.nan_to_num(x.float().cpu()).reshape(len(x), -1)[:, :2], path, title=title)
        return path.read_bytes()


def samples_png(x: Tensor, title: str = "") -> bytes:
    """The picture of a batch: a grid for images, a scatter for points."""
    return grid_png(x) if x.ndim == 4 else points_png(x, title)
