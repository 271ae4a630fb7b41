"""The forward-process pictures (seed 000): the arrays they draw are the true marginals and scores."""

import numpy as np

import difflab.jobs.forward_pictures as fp


def test_forward_pictures_draw_normalized_marginals_and_inward_scores(tmp_path, monkeypatch):
    drawn = {}
    real_1d, real_2d = fp.plot_marginals_1d, fp.plot_score_fields_2d

    def keep_1d(xs, ts, dens, path, **kw):
        drawn["1d"] = (xs, ts, dens)
        return real_1d(xs, ts, dens, path, **kw)

    def keep_2d(gx, gy, logd, scores, ts, path, **kw):
        drawn["2d"] = (gx, gy, logd, scores, ts, kw["samples"])
        return real_2d(gx, gy, logd, scores, ts, path, **kw)

    monkeypatch.setattr(fp, "plot_marginals_1d", keep_1d)
    monkeypatch.setattr(fp, "plot_score_fields_2d", keep_2d)
    paths = fp.write_forward_pictures(tmp_path)
    assert [p.name for p in paths] == ["marginals_1d.png", "score_field_2d.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 10_000 for p in paths)

    xs, ts, dens = drawn["1d"]
    mass = np.trapezoid(dens, xs, axis=1)  # each p_t integrates to 1 (the tails beyond +-4 hold < 1e-4)
    np.testing.assert_allclose(mass, 1.0, atol=2e-3)
    # at t = 1 the VP marginal is N(0, 1)
    np.testing.assert_allclose(dens[-1], np.exp(-xs**2 / 2) / np.sqrt(2 * np.pi), atol=1e-3)

    gx, gy, logd, scores, ts2, samples = drawn["2d"]
    assert samples.shape == (len(ts2), 500, 2)
    # the forward samples at the largest t are nearly N(0, I): mean radius sqrt(pi / 2) = 1.25
    assert abs(np.linalg.norm(samples[-1], axis=-1).mean() - np.sqrt(np.pi / 2)) < 0.1
    # at the largest t the score is close to -x (the N(0, I) score): arrows point to the origin
    pts = np.stack([gx, gy], -1)
    inward = (scores[-1] * -pts).sum(-1)
    assert (inward > 0).mean() > 0.99
    # the score is the gradient of the drawn log-density (central differences, away from the edges)
    h = gx[0, 1] - gx[0, 0]
    dlog_dx = (logd[2][:, 2:] - logd[2][:, :-2]) / (2 * h)
    np.testing.assert_allclose(dlog_dx[10:-10, 10:-10], scores[2][:, 1:-1, 0][10:-10, 10:-10], atol=0.05, rtol=0.02)
