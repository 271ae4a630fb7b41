"""The forward process made visible with the exact mixture (seed 000): marginals p_t and score fields."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from difflab.analysis import GaussianMixture, ring_mixture
from difflab.process import NoiseProcess, make_process
from difflab.viz import plot_marginals_1d, plot_score_fields_2d

f64 = torch.float64


def write_forward_pictures(out: str | Path, process: NoiseProcess | None = None) -> list[Path]:
    """Write marginals_1d.png and score_field_2d.png for `process` (default: the VP-SDE) into `out`."""
    process = process or make_process("vp")
    out = Path(out)
    name = type(process).__name__

    mix1 = GaussianMixture(torch.tensor([0.3, 0.5, 0.2]), torch.tensor([[-1.5], [0.5], [2.0]]),
                           torch.tensor([0.05, 0.1, 0.02]))
    xs = torch.linspace(-4, 4, 400, dtype=f64)
    ts = torch.linspace(0.0, 1.0, 101, dtype=f64).clamp(min=max(process.t_min, 1e-3))
    tt, xx = torch.meshgrid(ts, xs, indexing="ij")
    logp = mix1.log_prob_t(xx.reshape(-1, 1), tt.reshape(-1), process).reshape(tt.shape)
    paths = [plot_marginals_1d(xs.numpy(), ts.tolist(), logp.exp().numpy(), out / "marginals_1d.png",
                               title=f"forward marginals of a 1-D mixture under {name}")]

    ring = ring_mixture()
    lin = torch.linspace(-3.5, 3.5, 120, dtype=f64)
    gx, gy = torch.meshgrid(lin, lin, indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    panel_ts = [max(process.t_min, 0.02), 0.1, 0.25, 0.5, 0.9]
    logd, scores, samples = [], [], []
    g = torch.Generator().manual_seed(0)
    x0, _ = ring.sample(500, g)
    for t in panel_ts:
        tv = torch.full((pts.shape[0],), t, dtype=f64)
        logd.append(ring.log_prob_t(pts, tv, process).reshape(gx.shape).numpy())
        scores.append(ring.score(pts, tv, process).reshape(*gx.shape, 2).numpy())
        tb = torch.full((500,), t, dtype=f64)
        samples.append(process.sample_xt(x0, tb, torch.randn(x0.shape, generator=g, dtype=f64)).numpy())
    paths.append(plot_score_fields_2d(gx.numpy(), gy.numpy(), np.stack(logd), np.stack(scores), panel_ts,
                                      out / "score_field_2d.png", samples=np.stack(samples),
                                      title=f"log p_t and its score field, 8-Gaussian ring under {name}"))
    return paths
