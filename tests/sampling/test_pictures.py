"""Trajectory pictures (difflab.viz.trajectories) from real sampler output: files are written, readable,
and have the frames asked for; malformed trajectories are refused."""

import pytest
import torch
from PIL import Image

from difflab.sampling import sample
from difflab.viz.trajectories import plot_denoising_strip, plot_trajectories, save_trajectory_gif
from tests.sampling.cases import MIXTURES, denoiser


@pytest.fixture(scope="module")
def runs():
    D = denoiser("flow")
    return {name: sample(D, (32, 2), sampler=name, steps=6, seed=0, return_trajectory=True)
            for name in ("euler", "unipc", "ddpm")}


def test_pictures_are_written(runs, tmp_path):
    data = MIXTURES["ring"].sample(300, torch.Generator().manual_seed(0))[0]
    p = plot_trajectories({k: r.trajectory for k, r in runs.items()}, tmp_path / "paths.png", data=data)
    with Image.open(p) as img:
        assert img.format == "PNG" and img.width > 2 * img.height  # three panels side by side
    r = runs["unipc"]
    s = plot_denoising_strip(r.trajectory, r.times, tmp_path / "strip.png", frames=4, data=data)
    with Image.open(s) as img:
        assert img.format == "PNG" and img.width > 3 * img.height
    g = save_trajectory_gif(r.trajectory, r.times, tmp_path / "strip.gif")
    with Image.open(g) as img:
        assert img.format == "GIF" and img.n_frames == r.trajectory.shape[0]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["paths.png", "strip.gif", "strip.png"]  # no temp files


def test_malformed_trajectories_are_refused(runs, tmp_path):
    r = runs["euler"]
    with pytest.raises(ValueError, match="steps \\+ 1, B, 2"):
        plot_trajectories({"x": r.trajectory[0]}, tmp_path / "a.png")
    with pytest.raises(ValueError, match="times has"):
        plot_denoising_strip(r.trajectory, r.times[:-1], tmp_path / "b.png")
    with pytest.raises(ValueError, match="2-D points"):
        plot_trajectories({"x": torch.zeros(3, 4, 5)}, tmp_path / "c.png")
