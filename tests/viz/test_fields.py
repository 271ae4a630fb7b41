"""viz/fields.py draws what it is given: arrows along the score, which points toward the modes."""

import numpy as np
import pytest
import torch

import difflab.viz.fields as fields
from difflab.analysis import ring_mixture
from difflab.process import make_process

f64 = torch.float64


@pytest.fixture
def captured(monkeypatch):
    """Keep each figure's axes content before save_figure closes it."""
    figures = []
    real = fields.save_figure

    def keep(fig, path, **kw):
        figures.append([(ax, list(ax.collections)) for ax in fig.axes])
        return real(fig, path, **kw)

    monkeypatch.setattr(fields, "save_figure", keep)
    return figures


def test_score_field_arrows_point_toward_the_nearest_mode(tmp_path, captured):
    ring, process = ring_mixture(), make_process("vp")
    lin = torch.linspace(-3.5, 3.5, 40, dtype=f64)
    gx, gy = torch.meshgrid(lin, lin, indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    ts = [0.02, 0.5]
    logd = np.stack([ring.log_prob_t(pts, torch.full((1600,), t, dtype=f64), process).reshape(40, 40).numpy()
                     for t in ts])
    scores = np.stack([ring.score(pts, torch.full((1600,), t, dtype=f64), process).reshape(40, 40, 2).numpy()
                       for t in ts])
    path = fields.plot_score_fields_2d(gx.numpy(), gy.numpy(), logd, scores, ts, tmp_path / "f.png")
    assert path.stat().st_size > 10_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (ax, collections), _ = captured[0]
    quiver = next(c for c in collections if hasattr(c, "U"))
    arrows = np.stack([np.asarray(quiver.U).ravel(), np.asarray(quiver.V).ravel()], 1)
    tails = quiver.get_offsets()
    # the drawn arrows are the score directions at the drawn points
    step = max(1, 40 // 20)
    s = scores[0][::step, ::step].reshape(-1, 2)
    cos = (arrows * s).sum(1) / np.maximum(np.linalg.norm(arrows, axis=1) * np.linalg.norm(s, axis=1), 1e-300)
    assert np.all(cos > 0.999999)
    # near t = 0 every arrow within 0.4 of a mode points toward it
    modes = ring.means.numpy()
    d = np.linalg.norm(tails[:, None, :] - modes[None], axis=-1)
    near = d.min(1) < 0.4
    assert near.sum() >= 8
    to_mode = modes[d.argmin(1)] - tails
    assert np.all((arrows[near] * to_mode[near]).sum(1) > 0)


def test_marginals_plot_draws_each_curve(tmp_path, captured):
    xs = np.linspace(-3, 3, 50)
    dens = np.stack([np.exp(-xs**2 / (2 * s**2)) / np.sqrt(2 * np.pi * s**2) for s in (0.5, 1.0, 2.0)])
    path = fields.plot_marginals_1d(xs, [0.0, 0.5, 1.0], dens, tmp_path / "m.png")
    assert path.is_file() and path.stat().st_size > 5_000
    (_, _), (curves_ax, _) = captured[0]
    lines = curves_ax.get_lines()
    assert len(lines) == 3
    for line, d in zip(lines, dens, strict=True):
        np.testing.assert_array_equal(line.get_ydata(), d)
