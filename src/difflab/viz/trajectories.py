"""Sampling trajectories of 2-D data: paths from noise to data, the denoising process as a strip of frames
(seed 002's 'from noise to an image', for point clouds), and an animated GIF.

Every function takes tensors that a sampler already produced (difflab.sample(..., return_trajectory=True)
gives trajectory (steps + 1, B, 2) and times) and an output path; nothing here runs a sampler.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from difflab.utils.files import atomic_write
from difflab.viz.io import save_figure


def _points(x: Tensor) -> np.ndarray:
    x = torch.as_tensor(x).detach().to(torch.float64).cpu()
    if x.shape[-1] != 2:
        raise ValueError(f"trajectory plots need 2-D points (last dimension 2); got shape {tuple(x.shape)}")
    return x.numpy()


def _check_trajectory(trajectory: Tensor) -> np.ndarray:
    if trajectory.ndim != 3:
        raise ValueError(f"a trajectory has shape (steps + 1, B, 2); got {tuple(trajectory.shape)}")
    return _points(trajectory)


def _limits(arrays: Sequence[np.ndarray], quantile: float = 0.995) -> tuple[float, float]:
    values = np.abs(np.concatenate([a.reshape(-1) for a in arrays]))
    r = float(np.quantile(values, quantile)) * 1.1
    return -r, r


def plot_trajectories(
    trajectories: Mapping[str, Tensor],
    path: str | os.PathLike,
    *,
    data: Tensor | None = None,
    max_paths: int = 64,
    title: str | None = None,
) -> Path:
    """Side-by-side panels, one per sampler: each sample's path from x_T (grey dot) to its end (colored dot),
    over exact data points if given. trajectories: name -> (steps + 1, B, 2)."""
    import matplotlib.pyplot as plt

    if not trajectories:
        raise ValueError("plot_trajectories needs at least one trajectory")
    arrays = {k: _check_trajectory(v)[:, :max_paths] for k, v in trajectories.items()}
    lo, hi = _limits(list(arrays.values()))
    fig, axes = plt.subplots(1, len(arrays), figsize=(4 * len(arrays), 4.2), squeeze=False)
    for ax, (name, tr) in zip(axes[0], arrays.items(), strict=True):
        if data is not None:
            d = _points(data)
            ax.scatter(d[:, 0], d[:, 1], s=2, c="0.8", zorder=0)
        colors = plt.cm.viridis(np.linspace(0, 1, tr.shape[1]))
        for b in range(tr.shape[1]):
            ax.plot(tr[:, b, 0], tr[:, b, 1], "-", lw=0.8, color=colors[b], alpha=0.8)
        ax.scatter(tr[0, :, 0], tr[0, :, 1], s=6, c="0.4", zorder=2)
        ax.scatter(tr[-1, :, 0], tr[-1, :, 1], s=10, c=colors, zorder=3)
        ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", title=f"{name} ({tr.shape[0] - 1} steps)")
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def _frame_indices(n_points: int, frames: int) -> list[int]:
    return sorted(set(np.linspace(0, n_points - 1, min(frames, n_points)).round().astype(int).tolist()))



def _draw_frame(ax, points: Tensor, data: Tensor | None, t: float, limits: tuple[float, float], size: float) -> None:
    """One frame: the data in light grey behind the sample cloud at time t, square axes without ticks."""
    if data is not None:
        d = _points(data)
        ax.scatter(d[:, 0], d[:, 1], s=1, c="0.85", zorder=0)
    ax.scatter(points[:, 0], points[:, 1], s=size, c="C0")
    ax.set(xlim=limits, ylim=limits, aspect="equal", title=f"t = {t:.3f}")
    ax.set_xticks([])
    ax.set_yticks([])

def plot_denoising_strip(
    trajectory: Tensor,
    times: Tensor,
    path: str | os.PathLike,
    *,
    frames: int = 8,
    data: Tensor | None = None,
) -> Path:
    """The sample cloud at `frames` grid times from t = 1 (noise) to the end (data), left to right."""
    import matplotlib.pyplot as plt

    tr = _check_trajectory(trajectory)
    times = torch.as_tensor(times).reshape(-1)
    if times.numel() != tr.shape[0]:
        raise ValueError(f"times has {times.numel()} entries for a trajectory of {tr.shape[0]} states")
    idx = _frame_indices(tr.shape[0], frames)
    lo, hi = _limits([tr])
    fig, axes = plt.subplots(1, len(idx), figsize=(2.4 * len(idx), 2.6), squeeze=False)
    for ax, i in zip(axes[0], idx, strict=True):
        _draw_frame(ax, tr[i], data, float(times[i]), (lo, hi), size=2)
    return save_figure(fig, path)


def save_trajectory_gif(
    trajectory: Tensor,
    times: Tensor,
    path: str | os.PathLike,
    *,
    data: Tensor | None = None,
    frame_ms: int = 120,
    size: float = 4.0,
) -> Path:
    """An animated GIF (Pillow) of the sample cloud moving from noise to data, one frame per grid time,
    holding the last frame a little longer."""
    import matplotlib.pyplot as plt
    from PIL import Image

    tr = _check_trajectory(trajectory)
    times = torch.as_tensor(times).reshape(-1)
    lo, hi = _limits([tr])
    images = []
    for i in range(tr.shape[0]):
        fig, ax = plt.subplots(figsize=(size, size))
        _draw_frame(ax, tr[i], data, float(times[i]), (lo, hi), size=3)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        plt.close(fig)
        buffer.seek(0)
        images.append(Image.open(buffer).convert("P", palette=Image.ADAPTIVE))
    durations = [frame_ms] * (len(images) - 1) + [frame_ms * 8]
    return atomic_write(
        path,
        lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations,
                                   loop=0),
    )
