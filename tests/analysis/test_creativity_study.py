"""Calibration, agreement and the `difflab analyze creativity` command on a tiny run."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from difflab.analysis.creativity import build_machine, calibrate_patch_sizes, pearson_agreement, x0_strip
from difflab.analysis.local_score import EquivariantLocalScoreMachine, PatchSchedule
from difflab.cli.main import app
from difflab.config.factory import build_denoiser, build_process
from difflab.config.loader import load_config
from difflab.data.digits import load_digits
from difflab.jobs.analyze import creativity_study, training_images
from difflab.jobs.runs import LoadedRun, RunMeta
from difflab.process import RectifiedFlow
from difflab.utils.errors import DifflabError

runner = CliRunner()



def test_pearson_agreement_is_a_centred_cosine():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 1, 4, 4, generator=g, dtype=torch.float64)
    b = torch.randn(5, 1, 4, 4, generator=g, dtype=torch.float64)
    assert torch.allclose(pearson_agreement(a, 3 * a + 2), torch.ones(5, dtype=torch.float64))
    assert torch.allclose(pearson_agreement(a, -a), -torch.ones(5, dtype=torch.float64))
    want = torch.stack([torch.corrcoef(torch.stack([x.flatten(), y.flatten()]))[0, 1] for x, y in zip(a, b, strict=True)])
    assert torch.allclose(pearson_agreement(a, b), want)


def test_calibration_recovers_the_patch_size_of_a_machine_network():
    """If the 'network' is itself an ELS machine with P = 3 late and P = 5 early, calibration finds it."""
    g = torch.Generator().manual_seed(1)
    train = torch.randn(6, 1, 6, 6, generator=g, dtype=torch.float64).tanh()
    process = RectifiedFlow()
    truth = PatchSchedule((1.0, 0.7, 0.5, 0.2), (5, 5, 3, 3))
    network = EquivariantLocalScoreMachine(train, process, truth, "velocity", boundary_broken=True)
    x_T = torch.randn(4, 1, 6, 6, generator=g, dtype=torch.float64)
    scored = []
    cal = calibrate_patch_sizes(network, lambda P: EquivariantLocalScoreMachine(train, process, P, boundary_broken=True),
                                x_T, [1, 3, 5, 7], sampler="euler", steps=4, callback=lambda: scored.append(1))
    assert len(scored) == 4 * 4  # the progress callback: once per (time, size) score
    assert cal.schedule.sizes[1:] == (5, 3, 3)  # at t = 1 (alpha = 0) every size gives the same estimate
    assert cal.scores.shape == (4, 4) and bool((cal.scores[1:].max(1).values > 0.999).all())


def tiny_run(seed=0, mid_attention=True):
    """An untrained tiny U-Net with the digits preset's process and sampler (the study needs no training)."""
    torch.manual_seed(seed)
    cfg = load_config("digits", ["model.options={base_channels: 8, channel_mult: [1], num_res_blocks: 1, "
                                 f"attention_resolutions: [], mid_attention: {str(mid_attention).lower()}}}",
                                 "sample.steps=3", "sample.sampler=euler"])
    model = build_denoiser(cfg, build_process(cfg.process), (1, 8, 8), None, None).eval().requires_grad_(False)
    return LoadedRun(cfg, RunMeta((1, 8, 8), None, None), model, Path("ckpt-0"), None)


def test_creativity_study_on_a_tiny_run(tmp_path, capsys):
    images, _ = load_digits("train")
    held, _ = load_digits("test")
    train = images[:40].double()
    rep = creativity_study({"a": tiny_run(0, mid_attention=False), "b": tiny_run(1)}, train, held[:30].double(),
                           tmp_path, n=4, calibration_n=2, sizes=[1, 3])
    res = rep["runs"]["a"]
    assert res["attention_layers"] == 0 and rep["runs"]["b"]["attention_layers"] == 1  # ADM's middle attention
    assert set(res["agreement"]) == {"ideal", "ls", "els", "nearest_training_image", "other_seed"}
    assert all(-1 <= a <= 1 for v in res["agreement_per_seed"].values() for a in v)
    assert res["steps_trained"] == 0 and len(res["calibration"]["els"]["sizes"]) == 3
    assert set(res["calibration"]["els"]["sizes"]) <= {1, 3}
    assert res["memorization"]["ideal"]["ratio"] < 0.2  # the ideal machine reproduces training digits
    assert 0 <= res["els_closer_than_ideal"] <= 1 and res["rmse_to_network"]["ideal"]["median"] >= 0
    saved = np.load(res["samples"])
    assert saved["network"].shape == (4, 1, 8, 8) and set(saved.files) == {"network", "ls", "els", "ideal"}
    for f in [*res["figures"].values(), rep["black_white"]["figure"]]:
        assert Path(f).is_file()
    assert rep["black_white"]["fraction_farther_than_0.1_rms_from_both"]["ideal"] == 0.0
    assert rep["black_white"]["fraction_farther_than_0.1_rms_from_both"]["ls_P1"] > 0.5  # mosaics
    assert json.loads((tmp_path / "creativity.json").read_text())["metric"].startswith("Pearson")
    # n = 4 seeds: the console's median is the JSON's (interpolated between the middle two), not the lower one
    per_seed = torch.tensor(res["agreement_per_seed"]["els"], dtype=torch.float64)
    middle = per_seed.sort().values[1:3].mean()
    assert abs(res["agreement"]["els"]["median"] - float(middle)) < 1e-5  # per-seed values are rounded to 1e-5
    printed = " ".join(capsys.readouterr().out.split())
    assert f"els {res['agreement']['els']['median']:.3f}" in printed
    assert "calibrate els" in printed and "sample els (" in printed  # the long stages show their progress


def test_creativity_command_bad_input(tmp_path):
    r = runner.invoke(app, ["analyze", "creativity", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "does not exist" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["analyze", "creativity", str(tmp_path), "-n", "1"])
    assert r.exit_code == 2 and "at least 2" in r.output


def test_x0_strip_and_machine_choice():
    g = torch.Generator().manual_seed(2)
    train = torch.randn(5, 1, 4, 4, generator=g, dtype=torch.float64).tanh()
    process = RectifiedFlow()
    ideal = build_machine("ideal", train, process, parameterization="velocity")
    x_T = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    est, times, final = x0_strip(ideal, x_T, [1.0, 0.5, 0.0], sampler="euler", steps=4)
    assert est.shape == (3, 3, 1, 4, 4) and times[0] == 1.0 and times[1] == 0.5
    assert torch.allclose(est[0], train.mean(0).expand(3, 1, 4, 4))  # alpha(1) = 0: the mean image
    assert torch.allclose(est[-1], final)  # Euler's last step to t = 0 lands on its x0 estimate
    with pytest.raises(DifflabError, match="patch size"):
        build_machine("els", train, process)
    with pytest.raises(DifflabError, match="unknown machine"):
        build_machine("sls", train, process, 3)


@pytest.mark.parametrize("options, message", [({"steps": 0}, "steps must be at least 1"),
                                              ({"sizes": [2]}, "positive odd integer")])
def test_zero_steps_and_even_patches_are_refused_before_any_sampling(tmp_path, options, message):
    images, _ = load_digits("train")
    with pytest.raises(DifflabError, match=message):
        creativity_study({"a": tiny_run(0)}, images[:8].double(), None, tmp_path, n=2, calibration_n=1, **options)
    assert not (tmp_path / "creativity.json").exists()


def test_a_shapes_run_gets_held_out_images_it_never_trained_on():
    cfg = load_config("shapes-text", ["data.options.n=400", "data.options.combos=all"])
    train, held, words = training_images(LoadedRun(cfg, RunMeta((3, 32, 32), None, 384), None, Path("ckpt-0"), None))
    assert train.shape == (400, 3, 32, 32) and train.dtype == torch.float64
    assert 0 < len(held) < 400 and "seed 1" in words
    d = torch.cdist(held.flatten(1), train.flatten(1))
    assert float(d.min()) > 0  # no held-out image is a training image
    digits = load_config("digits")
    _, held_digits, words = training_images(LoadedRun(digits, RunMeta((1, 8, 8), None, None), None, Path("c"), None))
    assert len(held_digits) == 360 and "'split': 'test'" in words


def test_creativity_command_end_to_end_streamed_equals_tabulated(tmp_path):
    """`difflab train` a tiny digits run, then `analyze creativity` with every table streamed (--table-mib 0) and
    with tables: the same agreements (streamed == tabulated posterior), the cap written to the report."""
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "digits", "--out", str(run), "--steps", "2", "--threads", "1",
                            "--set", "data.options.first=40", "--set", "train.batch_size=8",
                            "--set", "train.sample_every=0", "--set", "train.warmup_steps=1",
                            "--set", "model.options={base_channels: 8, channel_mult: [1], num_res_blocks: 1, "
                                     "attention_resolutions: []}"])
    assert r.exit_code == 0, r.output
    reports = {}
    for mib in (0, 256):
        out = tmp_path / f"cr{mib}"
        r = runner.invoke(app, ["analyze", "creativity", str(run), "--out", str(out), "-n", "3", "--calibration-n", "1",
                                "--size", "1", "--size", "3", "--steps", "2", "--sampler", "euler",
                                "--table-mib", str(mib), "--threads", "1"])
        assert r.exit_code == 0, r.output
        reports[mib] = json.loads((out / "creativity.json").read_text())
    assert reports[0]["settings"]["max_table_elements"] == 0
    assert reports[256]["settings"]["max_table_elements"] == 2**25
    assert "'split': 'test'" in reports[0]["settings"]["heldout"]
    a, b = (rep["runs"]["run"]["agreement_per_seed"] for rep in (reports[0], reports[256]))
    assert set(a) == set(b) and all(abs(x - y) <= 2e-5 for k in a for x, y in zip(a[k], b[k], strict=True))
    r = runner.invoke(app, ["analyze", "creativity", str(run), "--table-mib", "-1"])
    assert r.exit_code == 2 and "--table-mib must be 0" in r.output
    # --machine els: the LS pass skipped, the ELS numbers and the network's those of the full study
    out = tmp_path / "els-only"
    r = runner.invoke(app, ["analyze", "creativity", str(run), "--out", str(out), "-n", "3", "--calibration-n", "1",
                            "--size", "1", "--size", "3", "--steps", "2", "--sampler", "euler", "--machine", "els",
                            "--threads", "1"])
    assert r.exit_code == 0 and "calibrate ls" not in r.output, r.output
    only = json.loads((out / "creativity.json").read_text())
    c = only["runs"]["run"]
    assert only["settings"]["machines"] == ["els"] and set(c["agreement_per_seed"]) == set(b) - {"ls"}
    assert all(c["agreement_per_seed"][k] == b[k] for k in c["agreement_per_seed"])
    assert set(np.load(c["samples"]).files) == {"network", "els", "ideal"} and "ls" not in c["calibration"]
    assert c["els_closer_than_ideal"] == reports[256]["runs"]["run"]["els_closer_than_ideal"]
    r = runner.invoke(app, ["analyze", "creativity", str(run), "--out", str(tmp_path / "x"), "--machine", "sls"])
    assert r.exit_code == 2 and "--machine must be one or more of ls, els; got sls" in r.output, r.output
    assert not (tmp_path / "x").exists()
