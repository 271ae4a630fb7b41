"""The Inside tab: what the model does along the time grid, drawn from library calls.

2-D runs: the learned score s(x, t) = -eps_hat / sigma(t) on a square grid at the chosen t (arrows), over
the samples x_t of a probability-flow run at the grid time nearest t (seed 000, 'score function as
vector field'). Image runs: the denoising strip, x_t (top row) and x0_hat (bottom row) at `frames`
times along the sampler's grid (x0_hat = the parameterization's estimate of each call; see watch.py).
"""

from __future__ import annotations

import io

import numpy as np
import torch

from difflab.jobs.generate import generate
from difflab.studio.pictures import grid_png
from difflab.studio.watch import Watched
from difflab.utils.errors import DifflabError


def _check_t(t: float) -> float:
    if not (0.0 < t <= 1.0):
        raise DifflabError(f"t must be in (0, 1] (1 = noise, 0 = data); got {t}")
    return t


@torch.no_grad()
def score_field_png(loaded, t: float, seed: int = 0, n: int = 256, sampler: str = "euler", steps: int = 20) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = _check_t(t)
    model, meta = loaded.model, loaded.meta
    result = generate(model, meta, n, sampler=sampler, steps=steps, schedule="default", seed=seed,
                      return_trajectory=True, text_encoder=loaded.text_encoder)
    traj, times = result.sampled.trajectory, result.sampled.times  # (steps+1, n, 2), (steps+1,)
    k = int(torch.argmin((times - t).abs()))
    pts = traj[k].float().cpu().numpy()
    lim = float(np.quantile(np.abs(traj[-1].float().cpu().numpy()), 0.995)) * 1.3 + 1e-3
    g = torch.linspace(-lim, lim, 21)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    x = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    tt = torch.full((len(x),), float(times[k]))
    cond = None if meta.num_classes is None else {"class_labels": torch.zeros(len(x), dtype=torch.long)}
    _, eps_hat = model.predict(x, tt, cond)
    sigma = model.process.sigma(tt).reshape(-1, 1)
    score = (-eps_hat / sigma).numpy()
    norm = np.linalg.norm(score, axis=1, keepdims=True)
    arrows = score / np.maximum(norm, 1e-12) * np.log1p(norm)  # log-scaled lengths, as viz.fields does
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.quiver(x[:, 0], x[:, 1], arrows[:, 0], arrows[:, 1], color="0.3", width=0.004)
    ax.scatter(pts[:, 0], pts[:, 1], s=3, c="tab:red", alpha=0.6)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=f"score and x_t at t = {float(times[k]):.3f}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


@torch.no_grad()
def strip_png(loaded, seed: int = 0, sampler: str = "euler", steps: int = 20, frames: int = 8,
              prompt: str | None = None) -> bytes:
    """The denoising strip of one sample; a text run follows `prompt` (required there: generate() names it)."""
    x0s = []
    model = Watched(loaded.model, 1, lambda calls, t, x0_hat: x0s.append(x0_hat[0]))
    result = generate(model, loaded.meta, 1, sampler=sampler, steps=steps, schedule="default", seed=seed,
                      return_trajectory=True, text_encoder=loaded.text_encoder,
                      prompts=[prompt] if prompt is not None else None)
    xs = result.sampled.trajectory[:-1, 0]  # x_t at each call's grid time (one call per Euler step)
    idx = np.unique(np.linspace(0, len(x0s) - 1, frames).round().astype(int))
    top = torch.stack([xs[min(i, len(xs) - 1)] for i in idx])
    bottom = torch.stack([x0s[i] for i in idx])
    pictures = loaded.to_images(torch.cat([top, bottom]))  # a latent run: x_t and x0_hat decoded
    return grid_png(pictures.clamp(-1, 1), nrow=len(idx), width=96 * len(idx))
