"""seed 004's pipeline on a tiny latent run: every stage written and labelled, deterministic for a seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from difflab.cli.main import app
from difflab.jobs.pipeline import chosen_steps, run_pipeline
from difflab.jobs.runs import load_run
from difflab.utils.errors import DifflabError

PROMPT = "a small red circle in the center"


def test_pipeline_writes_each_stage_labelled_and_deterministic(latent_run, tmp_path):
    run, _ = latent_run
    r = CliRunner().invoke(app, ["pipeline", str(run), "--prompt", PROMPT, "--out", str(tmp_path / "a"), "--steps", "3",
                                 "--guidance", "3", "--seed", "7", "--frames", "2", "--negative-prompt", "a blue cross"])
    assert r.exit_code == 0, r.output
    names = ["1_tokens.png", "2_embedding.png", "3_noise.png", "4_denoise.png", "5_image.png"]
    for stage in ("tokenize", "encode", "noise", "denoise", "decode"):
        assert f"{stage}:" in r.output
    record = json.loads((tmp_path / "a" / "pipeline.json").read_text())
    assert sorted(record["files"].values()) == names
    loaded = load_run(run)
    ids = loaded.text_encoder.tokenizer(PROMPT)["input_ids"]
    assert record["token_ids"] == ids and record["tokens"][1:-1] == PROMPT.split()  # [CLS] ... [SEP]
    assert record["latent_shape"] == [4, 8, 8] and record["image_shape"] == [3, 32, 32]
    assert "negative prompt 'a blue cross'" in record["captions"]["denoise"]
    # the decoded picture: one 32 x 32 image at scale 4 below its caption band
    image = Image.open(tmp_path / "a" / "5_image.png")
    assert image.width >= 4 * 34 and image.height > 4 * 34
    stages = run_pipeline(loaded, PROMPT, out_dir=tmp_path / "b", steps=3, guidance=3.0, seed=7, frames=2,
                          negative="a blue cross", log=lambda line: None)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = run_pipeline(loaded, PROMPT, out_dir=tmp_path / "c", steps=3, guidance=3.0, seed=8, frames=2,
                         negative="a blue cross", log=lambda line: None)
    assert (tmp_path / "c" / "3_noise.png").read_bytes() != (tmp_path / "a" / "3_noise.png").read_bytes()
    assert set(stages.files) == set(other.files) == {"tokenize", "encode", "noise", "denoise", "decode"}


def test_stage_five_is_what_sample_draws(latent_run, tmp_path):
    run, _ = latent_run
    loaded = load_run(run)
    seen = []
    run_pipeline(loaded, PROMPT, out_dir=tmp_path, steps=2, guidance=2.0, seed=3, log=seen.append)
    r = CliRunner().invoke(app, ["sample", str(run), "--prompt", PROMPT, "--n", "1", "--steps", "2", "--guidance", "2",
                                 "--seed", "3", "--out", str(tmp_path / "s.png")])
    assert r.exit_code == 0, r.output
    # both at scale 4 with 1-pixel padding; the pipeline's has a caption band above the same pixels
    sampled, staged = Image.open(tmp_path / "s.png"), Image.open(tmp_path / "5_image.png")
    band = staged.height - sampled.height
    assert np.array_equal(np.asarray(staged.crop((0, band, sampled.width, staged.height))), np.asarray(sampled))
    assert len(seen) == 5


def test_chosen_steps_and_bad_input(latent_run, tmp_path):
    assert chosen_steps(20, 6) == [0, 4, 8, 11, 15, 19] and chosen_steps(3, 6) == [0, 1, 2] and chosen_steps(5, 1) == [0]
    run, _ = latent_run
    with pytest.raises(DifflabError, match="prompt is empty"):
        run_pipeline(run, " ", out_dir=tmp_path)
    (tmp_path / "f").write_text("")
    with pytest.raises(DifflabError, match="is a file"):
        run_pipeline(run, PROMPT, out_dir=tmp_path / "f")
