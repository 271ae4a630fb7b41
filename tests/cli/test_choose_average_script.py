"""benchmarks/choose_average.py: candidates scored on selection seeds, the lowest one scored on other seeds,
each candidate the run `difflab average` writes; a search that stopped goes on with the folders it left."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from benchmarks.choose_average import main
from difflab.cli.main import app
from difflab.jobs.evaluate import evaluate_loaded
from difflab.jobs.runs import load_run
from tests.cli.conftest import TINY


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("choose") / "toy"
    r = CliRunner().invoke(app, ["train", "toy2d", "--out", str(out), "--steps", "6", *TINY,
                                 "--set", "train.keep_last=null"])
    assert r.exit_code == 0, r.output
    return out


def _args(run, out, *extra):
    return [str(run), "--out", str(out), "--from", "2", "--from", "4", "--half-life", "0", "--half-life", "2",
            "--select-seeds", "7", "8", "--score-seeds", "0", "--steps", "2", "--n", "64", "--sampler", "euler",
            "--metrics", "sw2", "--json", str(out / "choice.json"), *extra]


def test_the_choice_is_the_lowest_on_the_selection_seeds_and_scored_elsewhere(run, tmp_path):
    out = tmp_path / "search"
    assert main(_args(run, out, "--score-steps", "3")) == 0
    result = json.loads((out / "choice.json").read_text())
    names = [c["name"] for c in result["candidates"]]
    assert names == ["from2-equal", "from2-equal-h2", "from4-equal", "from4-equal-h2"]
    # each selection score is an independent evaluation of the same average written by the CLI
    for c in result["candidates"]:
        first, h = c["receipt"]["checkpoints"][0], c["receipt"]["half_life"]
        again = tmp_path / ("cli-" + c["name"])
        cli = ["average", str(run), "--out", str(again), "--from", str(first), *(["--half-life", "2"] if h else [])]
        assert CliRunner().invoke(app, cli).exit_code == 0
        loaded = load_run(again)
        values = [evaluate_loaded(loaded, n=64, sampler="euler", steps=2, seed=s, metrics=["sw2"]).results["sw2"]
                  for s in (7, 8)]
        assert c["select"]["sw2"]["per_seed"] == pytest.approx(values, rel=1e-6)
        if c["name"] == result["chosen"]:
            scored = evaluate_loaded(loaded, n=64, sampler="euler", steps=2, seed=0, metrics=["sw2"]).results["sw2"]
            assert result["score"][0]["sw2"]["mean"] == pytest.approx(scored, rel=1e-6)
    means = {c["name"]: c["select"]["sw2"]["mean"] for c in result["candidates"]}
    assert means[result["chosen"]] == min(means.values()) and len(set(means.values())) == 4
    assert [s["steps"] for s in result["score"]] == [2, 3] and result["score"][1]["nfe"] == 3
    # stopped and started again: the candidate folders are reused, the result is the same
    (out / "choice.json").unlink()
    assert main(_args(run, out, "--score-steps", "3")) == 0
    assert json.loads((out / "choice.json").read_text())["candidates"] == result["candidates"]


def test_overlapping_seeds_are_refused(run, tmp_path):
    with pytest.raises(SystemExit):
        main([str(run), "--out", str(tmp_path / "s"), "--from", "2", "--select-seeds", "0", "1",
              "--score-seeds", "1", "2", "--steps", "2"])
    assert not (tmp_path / "s").exists()


def test_a_window_start_between_checkpoints_is_reused_on_a_rerun(run, tmp_path):
    """--from 3 chooses ckpt-4 and ckpt-6; a second run finds that average and reuses it."""
    args = [str(run), "--out", str(tmp_path / "s"), "--from", "3", "--select-seeds", "7", "--score-seeds", "0",
            "--steps", "2", "--n", "32", "--sampler", "euler", "--metrics", "sw2", "--json", str(tmp_path / "c.json")]
    assert main(args) == 0
    first = json.loads((tmp_path / "c.json").read_text())
    assert first["candidates"][0]["receipt"]["checkpoints"] == [4, 6]
    assert main(args) == 0 and json.loads((tmp_path / "c.json").read_text())["candidates"] == first["candidates"]
