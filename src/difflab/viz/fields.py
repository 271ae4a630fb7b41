"""Pictures of the forward process: marginal densities p_t and score fields (seed 000).

The functions take arrays computed elsewhere (e.g. by difflab.analysis.GaussianMixture) and draw them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from difflab.viz.io import save_figure


def plot_marginals_1d(
    xs: np.ndarray, ts: Sequence[float], densities: np.ndarray, path: str | os.PathLike, title: str = ""
):
    """Left: p_t(x) as a heat map over (t, x); right: the curves p_t(x) at each t. densities: (len(ts), len(xs))."""
    import matplotlib.pyplot as plt

    fig, (ax_map, ax_curves) = plt.subplots(1, 2, figsize=(11, 4))
    ax_map.imshow(densities.T, origin="lower", aspect="auto", cmap="magma",
                  extent=(float(ts[0]), float(ts[-1]), float(xs[0]), float(xs[-1])))
    ax_map.set(xlabel="t (0 = data, 1 = noise)", ylabel="x", title="p_t(x)")
    cmap = plt.get_cmap("viridis")
    picks = np.linspace(0, len(ts) - 1, min(6, len(ts))).round().astype(int)
    for j, i in enumerate(picks):
        ax_curves.plot(xs, densities[i], color=cmap(j / max(1, len(picks) - 1)), label=f"t = {ts[i]:.2f}")
    ax_curves.set(xlabel="x", ylabel="density", title="forward marginals")
    ax_curves.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_score_fields_2d(
    grid_x: np.ndarray,
    grid_y: np.ndarray,
    log_densities: np.ndarray,
    scores: np.ndarray,
    ts: Sequence[float],
    path: str | os.PathLike,
    title: str = "",
    samples: np.ndarray | None = None,
):
    """One panel per t: log p_t as colour, the score grad log p_t as arrows (seed 000, 'score function as
    vector field'). log_densities: (T, H, W); scores: (T, H, W, 2); optional samples (T, N, 2)."""
    import matplotlib.pyplot as plt

    n = len(ts)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    step = max(1, grid_x.shape[0] // 20)
    for i, ax in enumerate(axes[0]):
        logd = np.maximum(log_densities[i], log_densities[i].max() - 12)  # 12 nats of contrast per panel
        ax.contourf(grid_x, grid_y, logd, levels=30, cmap="viridis")
        s = scores[i][::step, ::step]
        norm = np.linalg.norm(s, axis=-1, keepdims=True)
        unit = s / np.maximum(norm, 1e-12) * np.log1p(norm)  # log-scaled lengths keep every arrow readable
        ax.quiver(grid_x[::step, ::step], grid_y[::step, ::step], unit[..., 0], unit[..., 1],
                  color="black", alpha=0.7, width=0.004)
        if samples is not None:
            ax.scatter(samples[i][:, 0], samples[i][:, 1], s=1, c="red", alpha=0.3)
        ax.set_title(f"t = {ts[i]:.2f}")
        ax.set_xlim(float(grid_x.min()), float(grid_x.max()))
        ax.set_ylim(float(grid_y.min()), float(grid_y.max()))
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_points(points, path: str | os.PathLike, reference=None, title: str = ""):
    """A scatter of 2-D samples (N, 2), over an optional reference set (e.g. the training data)."""
    import matplotlib.pyplot as plt

    pts = np.asarray(points.detach().cpu() if hasattr(points, "detach") else points)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if reference is not None:
        ref = np.asarray(reference.detach().cpu() if hasattr(reference, "detach") else reference)
        ax.scatter(ref[:, 0], ref[:, 1], s=2, c="lightgray", label="data")
    ax.scatter(pts[:, 0], pts[:, 1], s=2, c="tab:blue", label="samples")
    ax.set_aspect("equal")
    ax.set_title(title)
    if reference is not None:
        ax.legend(loc="upper right", fontsize=8)
    return save_figure(fig, path)
