"""generate(progress=True): the sampler's steps shown (plain lines off a terminal), one per grid step."""

from __future__ import annotations

from difflab.jobs.generate import generate
from difflab.jobs.runs import RunMeta
from tests.train.helpers import tiny_denoiser


def test_generate_shows_every_sampler_step(capsys):
    model = tiny_denoiser(num_classes=None)
    meta = RunMeta((2,), None, None)
    out = generate(model, meta, 4, sampler="euler", steps=5, schedule="default", seed=0, progress=True)
    lines = capsys.readouterr().out.splitlines()
    assert out.x.shape == (4, 2)
    assert lines[-1].startswith("sample 4 5/5 (100%)") and "step/s" in lines[-1]
    assert len(lines) == 5  # every step is a tenth or more of five: one line each


def test_generate_is_silent_by_default(capsys):
    generate(tiny_denoiser(num_classes=None), RunMeta((2,), None, None), 4, sampler="euler", steps=5,
             schedule="default", seed=0)
    assert capsys.readouterr().out == ""
