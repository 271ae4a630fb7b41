"""Checkpoint averaging: the weighted mean against an independent computation, dtypes, layout checks,
and a checkpoint copied with replaced weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from difflab.train import checkpoint as ckpt_mod
from difflab.train.averaging import average_weights, checkpoint_coefficients
from difflab.utils.errors import DifflabError


def _files(tmp_path, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    files, dicts = [], []
    for k in range(n):
        d = {"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g).to(torch.float16),
             "count": torch.tensor([10 * k], dtype=torch.int64)}
        save_file(d, str(tmp_path / f"w{k}.safetensors"))
        files.append(tmp_path / f"w{k}.safetensors")
        dicts.append(d)
    return files, dicts


def test_the_mean_and_the_weighted_mean_against_numpy(tmp_path):
    files, dicts = _files(tmp_path)
    mean = average_weights(files)
    for key in ("w", "b"):
        want = np.mean([d[key].double().numpy() for d in dicts], axis=0)
        assert mean[key].dtype == dicts[0][key].dtype
        np.testing.assert_allclose(mean[key].double().numpy(), want, rtol=0, atol=1e-6 if key == "w" else 1e-3)
    assert mean["count"].item() == 20  # not a float: the last file's
    c = [0.5, 0.0, 1.5]
    weighted = average_weights(files, c)
    want = sum(ci * d["w"].double().numpy() for ci, d in zip(c, dicts, strict=True)) / sum(c)
    np.testing.assert_allclose(weighted["w"].double().numpy(), want, rtol=0, atol=1e-6)
    # the mean of one file is that file, to the bit
    assert torch.equal(average_weights(files[:1])["w"], dicts[0]["w"])


def test_float64_accumulation_keeps_the_mean_of_equal_weights_exact(tmp_path):
    x = torch.full((1000,), 0.1, dtype=torch.float32)
    files = []
    for k in range(7):
        save_file({"x": x}, str(tmp_path / f"{k}.safetensors"))
        files.append(tmp_path / f"{k}.safetensors")
    assert torch.equal(average_weights(files)["x"], x)


@pytest.mark.parametrize("change, words", [
    ({"extra": torch.zeros(1)}, "1 extra keys (e.g. extra)"),
    ({"w": torch.zeros(2, 3)}, "1 keys of another shape or dtype (e.g. w)"),
])
def test_another_layout_is_named(tmp_path, change, words):
    files, dicts = _files(tmp_path, 2)
    save_file({**dicts[1], **change}, str(files[1]))
    with pytest.raises(DifflabError, match=r"w1\.safetensors does not hold the same weights as") as e:
        average_weights(files)
    assert words in str(e.value)


def test_bad_coefficients_and_unreadable_files(tmp_path):
    files, _ = _files(tmp_path, 2)
    with pytest.raises(DifflabError, match="2 coefficients for 1 checkpoints"):
        average_weights(files[:1], [1, 1])
    with pytest.raises(DifflabError, match=">= 0 with a positive sum"):
        average_weights(files, [1, -1])
    with pytest.raises(DifflabError, match=">= 0 with a positive sum"):
        average_weights(files, [0, 0])
    with pytest.raises(DifflabError, match="no weights to average"):
        average_weights([])
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DifflabError, match="cannot read weights from .*bad.safetensors"):
        average_weights([files[0], tmp_path / "bad.safetensors"])


def test_checkpoint_coefficients_by_hand():
    np.testing.assert_allclose(checkpoint_coefficients([10, 20, 40]), [1 / 3] * 3, rtol=0, atol=1e-15)
    # trapezoid shares of steps 0, 500, 1000, 1250, 1500: 250, 500, 375, 250, 125 of 1500
    np.testing.assert_allclose(checkpoint_coefficients([0, 500, 1000, 1250, 1500], "steps"),
                               np.array([250, 500, 375, 250, 125]) / 1500, rtol=0, atol=1e-15)
    # a half-life of 500 steps halves the share of a checkpoint 500 steps older: 1/4, 1/2, 1 of 7/4
    np.testing.assert_allclose(checkpoint_coefficients([1000, 1500, 2000], half_life=500),
                               np.array([0.25, 0.5, 1.0]) / 1.75, rtol=0, atol=1e-15)
    np.testing.assert_allclose(checkpoint_coefficients([2, 4, 6], "steps", half_life=2),
                               np.array([0.25, 1.0, 1.0]) / 2.25, rtol=0, atol=1e-15)


def test_step_shares_integrate_weights_that_move_linearly():
    """The 'steps' average of theta(s) = a + b s over unevenly saved s is theta at the window's middle (the
    mean of theta over [s_1, s_K]); the 'equal' mean is not."""
    steps = [3000, 3500, 4000, 4250, 4500, 4750, 5000]
    theta = 0.7 - 0.002 * np.array(steps, dtype=np.float64)
    middle = 0.7 - 0.002 * (3000 + 5000) / 2
    assert np.dot(checkpoint_coefficients(steps, "steps"), theta) == pytest.approx(middle, abs=1e-12)
    assert abs(np.dot(checkpoint_coefficients(steps), theta) - middle) > 0.1


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": [4, 2]}, "at least two and increasing"),
    ({"steps": [4]}, "at least two and increasing"),
    ({"steps": [2, 4], "weighting": "linear"}, "must be one of equal, steps, not 'linear'"),
    ({"steps": [2, 4], "half_life": 0}, "positive number of steps, not 0"),
])
def test_bad_coefficient_settings(kwargs, message):
    with pytest.raises(DifflabError, match=message):
        checkpoint_coefficients(**kwargs)


def test_save_with_weights_copies_the_rest_and_writes_a_manifest(tmp_path):
    from tests.train.test_checkpoint import _net, _save

    source = _save(tmp_path / "run", 6, _net(seed=0))
    new = {k: torch.full_like(v, 0.25) for k, v in load_file(str(source / "ema.safetensors")).items()}
    written = ckpt_mod.save_with_weights(source, tmp_path / "out", {"ema.safetensors": new})
    assert written == tmp_path / "out" / "ckpt-6"
    ckpt_mod.check_checkpoint(written)  # every file against the new manifest
    for name in ("model.safetensors", "trainer.pt", "state.json", "config.yaml"):
        assert (written / name).read_bytes() == (source / name).read_bytes()
    assert all(torch.equal(v, new[k]) for k, v in load_file(str(written / "ema.safetensors")).items())
    manifest = json.loads((written / ckpt_mod.MANIFEST).read_text())["files"]
    assert manifest["ema.safetensors"]["sha256"] == ckpt_mod.sha256(written / "ema.safetensors")
    with pytest.raises(DifflabError, match="exists already"):
        ckpt_mod.save_with_weights(source, tmp_path / "out", {"ema.safetensors": new})
    with pytest.raises(DifflabError, match="only model.safetensors and ema.safetensors"):
        ckpt_mod.save_with_weights(source, tmp_path / "out2", {"trainer.pt": new})
    assert not list((tmp_path / "out").glob(ckpt_mod.TMP_PREFIX + "*"))
