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


def test_caption_band_sits_above_the_grid(tmp_path):
    path = save_image_grid(torch.full((4, 3, 8, 8), -1.0), tmp_path / "c.png", scale=4,
                           caption="digits run: 412 steps\nconfidence 0.93, coverage 100%")
    img = np.asarray(Image.open(path).convert("L"))
    band = img.shape[0] - 40  # the 40-pixel grid sits at the bottom, the band above it
    assert img.shape[1] >= 40 and band > 10
    assert (img[band:, :40] == 0).all()  # the grid, untouched
    top = img[:band]
    assert (top == 255).mean() > 0.5 and (top < 128).any()  # white band with dark text in it


def test_row_labels_sit_left_of_their_rows(tmp_path):
    path = save_image_grid(torch.full((6, 1, 8, 8), -1.0), tmp_path / "r.png", nrow=3, scale=4,
                           row_labels=["teacher 4 NFE", "student 4 NFE"])
    img = np.asarray(Image.open(path).convert("L"))
    band = img.shape[1] - 120  # the 3 x 40-pixel grid at the right, the label band left of it
    assert img.shape[0] == 80 and band > 20
    assert (img[:, band:] == 0).all()  # the grid, untouched
    for rows in (slice(0, 40), slice(40, 80)):  # dark text on white in each row's band
        assert (img[rows, :band] == 255).mean() > 0.5 and (img[rows, :band] < 128).any()
    with pytest.raises(ValueError, match="one label per grid row \\(2\\); got 1"):
        save_image_grid(torch.zeros(6, 1, 8, 8), tmp_path / "x.png", nrow=3, row_labels=["one"])
