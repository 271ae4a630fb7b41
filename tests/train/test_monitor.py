"""Training progress (train.monitor.ProgressBar) and the loss curve: true ETA, lines off a terminal."""

from __future__ import annotations

import io

from PIL import Image

from difflab.objectives import DiffusionLoss
from difflab.train import TrainConfig, Trainer
from difflab.train.monitor import ProgressBar, RunLog, loss_figure

from .helpers import tiny_denoiser, toy_data


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def test_eta_under_minutes_is_the_time_left_not_the_step_budget():
    # Issue 19: "eta 55:21:49" in a 1-minute run: 100000 steps at ~0.5 step/s.
    clock, out = Clock(), io.StringIO()
    bar = ProgressBar(100_000, 0, deadline_s=60.0, stream=out, clock=clock)
    for step in range(1, 6):
        clock.t += 2.0
        bar.update(step, loss=0.5, images_per_s=64.0)
    bar.close()
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("train 5/100000 (0%) loss=0.5 img/s=64.0 0.5 step/s")
    assert last.endswith("eta 0:50")  # 60 s budget - 10 s elapsed


def test_trainer_prints_lines_when_stdout_is_not_a_terminal(tmp_path, capsys):
    cfg = TrainConfig(batch_size=8, max_steps=12, log_every=4, ckpt_every=0, ema=64.0, lr=1e-2, seed=7)
    Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), cfg, tmp_path).train()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("train ")]
    assert lines, "no progress lines on a non-terminal stdout"
    assert lines[-1].startswith("train 12/12 (100%) loss=")
    assert "step/s" in lines[-1] and "eta 0:00" in lines[-1]


def test_trainer_eta_with_minutes_is_bounded_by_the_budget(tmp_path, capsys):
    cfg = TrainConfig(batch_size=8, max_steps=10_000_000, max_minutes=0.02, log_every=1, ckpt_every=0,
                      ema=64.0, lr=1e-2, seed=7)
    Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), cfg, tmp_path).train()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("train ")]
    eta = lines[-1].rsplit("eta ", 1)[1]
    assert eta in ("0:00", "0:01"), lines[-1]  # 1.2 s budget, not 10M steps at the measured rate


def test_loss_curve_marks_few_points_and_shows_every_one():
    fig = loss_figure([50, 100, 150], [0.9, 0.6, 0.5])
    ax = fig.axes[0]
    (line,) = ax.lines
    assert line.get_marker() == "o"
    lo, hi = ax.get_xlim()
    assert lo <= 0 and 150 < hi < 170
    ylo, yhi = ax.get_ylim()
    assert ylo < 0.5 and yhi > 0.9
    assert "3 logged points" in ax.get_title()
    assert ax.get_yscale() == "linear"  # within a decade: every tick a plain number
    labels = [t for t in ax.get_yticks() if ylo <= t <= yhi]
    assert len(labels) >= 3 and min(labels) <= 0.6 and max(labels) >= 0.8
    many = loss_figure(list(range(1, 101)), [1.0 / s for s in range(1, 101)])
    assert many.axes[0].lines[0].get_marker() in (None, "None", "")
    assert many.axes[0].get_yscale() == "log"  # two decades


def test_run_log_writes_the_curve(tmp_path):
    log = RunLog(tmp_path, plot_interval=1e9)
    for step, loss in ((50, 0.9), (100, 0.6), (150, 0.5)):
        log.log({"step": step, "loss": loss})
    log.close()
    assert Image.open(tmp_path / "loss.png").size == (600, 400)
