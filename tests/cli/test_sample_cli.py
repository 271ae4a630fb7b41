"""`difflab sample` from the command line: outputs, labels, sampler options, `~`, and literal messages."""

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from difflab.cli.common import run_job
from difflab.cli.main import app
from difflab.utils.errors import DifflabError

runner = CliRunner()


def sample(run, *args):
    return runner.invoke(app, ["sample", str(run), "--steps", "2", "--n", "8", *args])


def test_messages_print_literally_brackets_and_all():
    """rich markup ate `[fid]` (`pip install 'difflab'`) and a path with `[/x]` raised a MarkupError."""
    one = typer.Typer()

    @one.command()
    def go():
        run_job(lambda: (_ for _ in ()).throw(DifflabError("needs torch-fidelity: pip install 'difflab[fid]' [/x]")))

    r = runner.invoke(one, [])
    assert r.exit_code == 2 and "error: needs torch-fidelity: pip install 'difflab[fid]' [/x]" in r.output
    r = runner.invoke(app, ["sample", "nowhere/[/x]/[bold]run"])
    assert r.exit_code == 2 and "nowhere/[/x]/[bold]run does not exist" in r.output and "Traceback" not in r.output


def test_array_alone_with_labels_and_no_default_grid(toy_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = sample(toy_run, "--save-array", "x.npy", "--class", "3")
    assert r.exit_code == 0, r.output
    assert np.load("x.npy").shape == (8, 2) and np.load("x.labels.npy").tolist() == [3] * 8
    assert not (tmp_path / "samples.png").exists()  # --save-array without --out: the array alone
    r = sample(toy_run, "--save-array", "y.npy", "--no-grid")
    assert r.exit_code == 0, r.output
    assert np.load("y.labels.npy").tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0][:8]  # cycles through the classes
    r = sample(toy_run)  # neither: the grid at samples.png, as before
    assert r.exit_code == 0 and (tmp_path / "samples.png").is_file()
    r = sample(toy_run, "--out", "[/x].png")
    assert r.exit_code == 0 and (tmp_path / "[" / "x].png").is_file() and "[/x].png" in r.output


def test_sampler_and_grid_options_reach_the_sampler(toy_run, tmp_path):
    def draw(*args):
        path = tmp_path / f"a{len(list(tmp_path.iterdir()))}.npy"
        r = sample(toy_run, "--sampler", "heun", "--schedule", "karras", "--steps", "4", "--save-array", str(path), *args)
        assert r.exit_code == 0, r.output
        return np.load(path)

    base = draw()
    assert np.array_equal(base, draw("--option", "s_churn=0", "--schedule-option", "rho=7"))  # the defaults
    assert not np.allclose(base, draw("--schedule-option", "rho=2"))
    assert not np.allclose(base, draw("--option", "s_churn=5", "--option", "s_noise=1.0"))


@pytest.mark.parametrize("sampler", ["euler_maruyama", "pc"])
def test_reverse_sde_samplers_work_on_a_flow_preset(toy_run, tmp_path, sampler):
    """toy2d is rectified flow; these failed with 'set t_max', which no flag could set (now they start at 0.999,
    and --schedule-option t_max chooses)."""
    for extra in ([], ["--schedule-option", "t_max=0.99"]):
        r = sample(toy_run, "--sampler", sampler, "--save-array", str(tmp_path / "x.npy"), *extra)
        assert r.exit_code == 0, r.output
        assert np.isfinite(np.load(tmp_path / "x.npy")).all()
    r = sample(toy_run, "--sampler", sampler, "--schedule-option", "t_max=1.5", "--save-array", str(tmp_path / "y.npy"))
    assert r.exit_code == 2 and "t_max" in r.output


def test_home_folder_is_expanded_in_paths_and_set_options(toy_run, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sample(toy_run, "--save-array", "~/h.npy").exit_code == 0 and (tmp_path / "h.npy").is_file()
    (tmp_path / "pictures").mkdir()
    r = runner.invoke(app, ["train", "folder", "--set", "data.options.root=~/pictures", "--out", str(tmp_path / "f")])
    assert r.exit_code == 2 and f"no images found in {tmp_path / 'pictures'}" in r.output.replace("\n", "")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "0"], "steps must be an integer >= 1; got 0"),  # sampled 20 steps silently before
        (["--n", "0"], "--n must be a whole number of samples >= 1; got 0"),  # drew the run's 100 before
        (["--n", "-1"], "--n must be a whole number of samples >= 1; got -1"),
        (["--negative", "blurry"], "guidance weight 1 never evaluates: add --guidance W"),
        (["--option", "eta=0.5"], "sampler 'unipc' (--option) has no option 'eta'; its options are: corrector"),
        (["--option", "order"], "--option 'order' must look like KEY=VALUE"),
        (["--schedule-option", "rho=7"], "schedule 'uniform' (--schedule-option) has no option 'rho'"),
        (["--device", "cuda:7"], "--device cuda:7"),
        (["--out", "."], "is a folder: give a file name"),
        (["--save-array", "."], "--save-array . is a folder"),
        (["--save-array", "x.txt"], "--save-array x.txt must end in .npy"),
        (["--no-grid"], "--no-grid leaves nothing to write: add --save-array"),
        (["--no-grid", "--out", "a.png"], "--no-grid writes no picture"),
    ],
)
def test_bad_sample_options_get_one_message(toy_run, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = sample(toy_run, *args)
    assert r.exit_code == 2 and r.output.count("error: ") == 1 and message in r.output, r.output
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_a_fitted_grid_is_used_by_name_and_its_cost_reported(toy_run, tmp_path):
    r = runner.invoke(app, ["fit-schedule", str(toy_run), "--steps", "3", "--sampler", "euler", "--pilot", "8"])
    assert r.exit_code == 0, r.output
    r = sample(toy_run, "--sampler", "euler", "--steps", "3", "--schedule", "fitted", "--no-grid",
               "--save-array", str(tmp_path / "x.npy"))
    assert r.exit_code == 0 and "(8 samples, 3 denoiser evaluations; its grid was fitted once with" in r.output
    r = sample(toy_run, "--sampler", "heun", "--steps", "3", "--schedule", "fitted", "--no-grid",
               "--save-array", str(tmp_path / "x.npy"))
    assert r.exit_code == 2 and "no grid fitted for sampler 'heun' with 3 steps" in r.output


def test_image_runs_write_a_png_grid_and_arrays_in_the_image_range(digits_run, tmp_path):
    r = sample(digits_run, "--n", "4", "--out", str(tmp_path / "g.png"), "--save-array", str(tmp_path / "g.npy"))
    assert r.exit_code == 0, r.output
    x = np.load(tmp_path / "g.npy")
    assert x.shape == (4, 1, 8, 8) and x.min() >= -1 and x.max() <= 1  # digits declare value_range (-1, 1)
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "g.labels.npy").exists()
    r = sample(digits_run, "--out", str(tmp_path / "g.pdf"))
    assert r.exit_code == 2 and "--out" in r.output and "must end in .png" in r.output


def test_train_classifier_prints_a_bracketed_run_path_literally(digits_run, tmp_path, monkeypatch):
    """A run under `a[/x]b` (rich reads `[/x]` as a closing tag: MarkupError) trains its classifier and says so
    literally; `~` in RUN is the home folder."""
    import shutil

    run = shutil.copytree(digits_run, tmp_path / "a[" / "x]b", ignore=shutil.ignore_patterns(".lock"))
    monkeypatch.setenv("HOME", str(tmp_path))
    r = runner.invoke(app, ["train-classifier", "~/a[/x]b", "--steps", "1",
                            "--set", "options={base_channels: 8, channel_mult: [1], num_res_blocks: 1, "
                            "attention_resolutions: [], num_heads: 1, pool: mean}",
                            "--set", "train.batch_size=16", "--set", "eval_items=16", "--set", "eval_times=[0.5]"])
    text = "".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert f"difflabtrain-classifier{run}->{run}/classifier" in text and f"wrote{run}/classifier/accuracy.json" in text
    assert (run / "classifier" / "accuracy.json").is_file()


def test_sampling_shows_its_steps_off_a_terminal(toy_run, tmp_path):
    """`difflab sample` was silent for minutes; off a terminal it prints plain progress lines, the last at 100%."""
    r = sample(toy_run, "--steps", "3", "--save-array", str(tmp_path / "p.npy"))
    lines = [line for line in r.output.splitlines() if line.startswith("sample 8")]
    assert r.exit_code == 0 and lines, r.output
    assert "3/3" in lines[-1] and "100%" in lines[-1]


def test_the_bespoke_solver_is_fitted_then_sampled_and_evaluated_by_name(toy_run, tmp_path):
    r = runner.invoke(app, ["fit-schedule", str(toy_run), "--steps", "3", "--sampler", "bespoke", "--pilot", "8",
                            "--max-evals", "2"])
    assert r.exit_code == 0 and "grid and weights for bespoke" in r.output, r.output
    r = sample(toy_run, "--sampler", "bespoke", "--steps", "3", "--schedule", "fitted", "--no-grid",
               "--save-array", str(tmp_path / "x.npy"))
    assert r.exit_code == 0 and "(8 samples, 3 denoiser evaluations; its grid was fitted once with" in r.output
    assert "note:" not in r.output
    r = sample(toy_run, "--sampler", "bespoke", "--steps", "3", "--no-grid", "--save-array", str(tmp_path / "y.npy"))
    assert r.exit_code == 0 and "without its fitted weights is DEIS" in " ".join(r.output.split()), r.output
    r = runner.invoke(app, ["eval", str(toy_run), "--sampler", "bespoke", "--steps", "3", "--schedule", "fitted",
                            "--n", "16", "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    import json

    report = json.loads((tmp_path / "e.json").read_text())
    assert report["settings"]["nfe"] == 3 and report["settings"]["schedule"] == "fitted", report


def test_another_grid_or_sampler_does_not_inherit_the_runs_keywords():
    """A run sampled on a Karras grid with sigma_max (a consistency student) and --schedule uniform: the
    uniform grid starts from its own defaults (it has no sigma_max), and so does another sampler; the run's
    own grid and sampler keep their keywords, under the user's."""
    from difflab.config.schema import SampleConfig
    from difflab.jobs.generate import run_sample_keywords

    s = SampleConfig(sampler="ddim", schedule="karras", options={"eta": 0.5}, schedule_options={"sigma_max": 80.0})
    assert run_sample_keywords(s, None, None, None, None) == ({"eta": 0.5}, {"sigma_max": 80.0})
    assert run_sample_keywords(s, "ddim", "karras", {"eta": 1.0}, {"rho": 3}) == (
        {"eta": 1.0}, {"sigma_max": 80.0, "rho": 3})
    assert run_sample_keywords(s, "heun", "uniform", None, {"t_max": 0.9}) == ({}, {"t_max": 0.9})


def test_eval_on_another_grid_of_a_run_with_grid_options(tmp_path):
    run = tmp_path / "karras-run"
    r = runner.invoke(app, ["train", "toy2d", "--out", str(run), "--steps", "1", "--set", "train.sample_every=0",
                            "--set", "model.options={hidden_dim: 16, num_blocks: 1}", "--set", "train.batch_size=16",
                            "--set", "data.options={name: 8gaussians, n: 64}", "--set", "sample.schedule=karras",
                            "--set", "sample.schedule_options={sigma_max: 50.0}"])
    assert r.exit_code == 0, r.output
    for cmd in (["sample", str(run), "--n", "8", "--no-grid", "--save-array", str(tmp_path / "a.npy")],
                ["eval", str(run), "--n", "32", "--json", str(tmp_path / "e.json")]):
        r = runner.invoke(app, [*cmd, "--steps", "2", "--schedule", "uniform", "--schedule-option", "t_max=0.9"])
        assert r.exit_code == 0, r.output
