"""The greedy time search (difflab.sampling.time_search) on scores whose minimizer is known."""

import pytest
import torch

from difflab.sampling.time_search import FRACTIONS, greedy_time_search
from difflab.utils.errors import DifflabError


def test_one_interior_time_lands_on_the_best_candidate():
    """Start [1, 0.5, 0], score (t_1 - 0.3)^2: the candidates are 0.2, 0.35, 0.65, 0.8 (0.5 is the start), so
    the search ends at 0.35 after 1 + 4 scores; a second round meets only grids scored already."""
    calls = []

    def score(ts):
        calls.append(ts.clone())
        return float((ts[1] - 0.3) ** 2)

    found = greedy_time_search(score, [1.0, 0.5, 0.0], rounds=1)
    assert found.times.tolist() == pytest.approx([1.0, 0.35, 0.0], abs=1e-15)
    assert found.score == pytest.approx(0.05**2, abs=1e-15) and found.evaluations == len(calls) == 5
    assert [h[0][1] for h in found.history] == pytest.approx([0.5, 0.2, 0.35, 0.65, 0.8], abs=1e-15)
    again = greedy_time_search(score, [1.0, 0.5, 0.0], rounds=2)
    assert again.evaluations == 5 and torch.equal(again.times, found.times)


def test_several_times_descend_a_separable_score_and_keep_the_ends():
    """sum_i (t_i - c_i)^2 over t_1..t_3 with c on the search's lattice: the best grid only improves, its score is
    the least in the history, the ends never move and the grid stays strictly decreasing."""
    target = torch.tensor([0.9, 0.62, 0.41, 0.17, 0.0], dtype=torch.float64)

    def score(ts):
        return float(((ts - target)[1:-1] ** 2).sum())

    start = torch.tensor([0.9, 0.675, 0.45, 0.225, 0.0], dtype=torch.float64)
    found = greedy_time_search(score, start, rounds=3)
    assert found.score == min(v for _, v in found.history) and found.score < 0.25 * score(start)
    assert found.times[0] == 0.9 and found.times[-1] == 0.0 and bool((found.times.diff() < 0).all())
    assert score(found.times) == found.score
    bests = []
    for _, v in found.history:
        bests.append(min(v, bests[-1]) if bests else v)
    assert bests[-1] == found.score and all(a >= b for a, b in zip(bests, bests[1:], strict=False))


def test_a_score_that_pushes_times_to_a_neighbour_never_crosses_it():
    found = greedy_time_search(lambda ts: -float(ts[1:-1].sum()), [1.0, 0.6, 0.3, 0.0], rounds=4)
    assert bool((found.times.diff() < 0).all()) and found.times[1] < 1.0 and found.times[2] < found.times[1]


def test_bad_searches_are_one_message():
    with pytest.raises(DifflabError, match="1-step grid has no interior time"):
        greedy_time_search(lambda ts: 0.0, [1.0, 0.0])
    with pytest.raises(DifflabError, match="rounds >= 1"):
        greedy_time_search(lambda ts: 0.0, [1.0, 0.5, 0.0], rounds=0)
    with pytest.raises(DifflabError, match="strictly between 0 and 1"):
        greedy_time_search(lambda ts: 0.0, [1.0, 0.5, 0.0], fractions=(0.5, 1.0))
    assert all(0 < f < 1 for f in FRACTIONS)


def test_a_grid_chosen_by_a_metric_round_trips_through_json():
    import json

    from difflab.sampling import FittedGrid

    times = torch.tensor([0.98, 0.4, 0.0], dtype=torch.float64)
    grid = FittedGrid(times, "consistency", 2, fit_nfe=6, pilot=10, seed=1000, max_evals=3, pilot_rmse=None,
                      process="RectifiedFlow()", start="uniform (t_max=0.98)", metric="fdd", metric_value=3.5)
    back = FittedGrid.from_dict(json.loads(json.dumps(grid.to_dict())))
    assert torch.equal(back.times, times) and (back.metric, back.metric_value, back.pilot_rmse) == ("fdd", 3.5, None)
    assert back == FittedGrid(back.times, **{k: getattr(grid, k) for k in grid.__dataclass_fields__ if k != "times"})
    ode = {**grid.to_dict(), "pilot_rmse": 0.01}
    del ode["metric"], ode["metric_value"]
    assert (FittedGrid.from_dict(ode).metric, FittedGrid.from_dict(ode).pilot_rmse) == (None, 0.01)
