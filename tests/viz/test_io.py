"""Image grids and atomic picture writes."""

import numpy as np
import pytest
import torch
from PIL import Image

from difflab.viz import image_grid, save_image_grid, to_uint8


def test_quantization_is_the_standard_one():
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0, 2.0]).reshape(1, 1, 1, 5)
    assert to_uint8(x).reshape(-1).tolist() == [0, 64, 128, 255, 255]


def test_grid_places_each_image_in_its_cell():
    imgs = torch.stack([torch.full((3, 2, 2), v) for v in (-1.0, 0.0, 1.0)])  # 3 images
    grid = image_grid(imgs, nrow=2, pad=1)
    assert grid.shape == (8, 8, 3)
    assert (grid[1:3, 1:3] == 0).all() and (grid[1:3, 5:7] == 128).all() and (grid[5:7, 1:3] == 255).all()
    assert (grid[5:7, 5:7] == 0).all() and (grid[0] == 0).all()  # the missing 4th cell stays blank


def test_save_image_grid_writes_a_png_atomically(tmp_path):
    path = save_image_grid(torch.zeros(4, 1, 8, 8), tmp_path / "sub" / "g.png", scale=2)
    img = Image.open(path)
    assert img.size == (40, 40) and img.mode == "L"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["g.png"]
    assert np.asarray(img)[2, 2] == 128


def test_grid_rejects_wrong_shape():
    with pytest.raises(ValueError, match="N, C, H, W"):
        image_grid(torch.zeros(3, 8, 8))
