"""Checkpoints: round trip, atomicity under a failure and under SIGKILL, pruning, incompatible shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from difflab.train import checkpoint as ckpt_mod
from difflab.train import latest_checkpoint, list_checkpoints, load_checkpoint, read_config, save_checkpoint
from difflab.utils.errors import DifflabError


def _net(hidden: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, hidden), nn.SiLU(), nn.Linear(hidden, 2))


def _save(run_dir, step, model, keep_last=None):
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    trainer_state = {"optimizer": opt.state_dict(), "scheduler": {"last_epoch": step}, "scaler": None}
    state = {"step": step, "rng": [{"torch": "AAA="}]}
    return save_checkpoint(run_dir, step, model, model, trainer_state, state, {"lr": 0.1, "betas": (0.9, 0.99)},
                           keep_last)


def test_round_trip(tmp_path):
    model = _net(seed=0)
    path = _save(tmp_path, 7, model)
    assert path == tmp_path / "ckpt-7" and sorted(os.listdir(path)) == sorted([*ckpt_mod.FILES, ckpt_mod.MANIFEST])
    fresh, ema = _net(seed=1), _net(seed=2)
    trainer_state, state = load_checkpoint(path, fresh, ema)
    for a, b, c in zip(model.state_dict().values(), fresh.state_dict().values(), ema.state_dict().values(), strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert state["step"] == 7 and trainer_state["scheduler"] == {"last_epoch": 7}
    assert len(trainer_state["optimizer"]["state"]) == 4  # Adam moments of the 4 tensors
    assert read_config(path) == {"lr": 0.1, "betas": [0.9, 0.99]}


def test_failure_mid_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = _net()
    _save(tmp_path, 1, model)

    def broken_save(*args, **kwargs):  # model/ema safetensors are already written at this point
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        _save(tmp_path, 2, model)
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-1"
    assert os.listdir(tmp_path) == ["ckpt-1"]  # the temporary folder was removed
    load_checkpoint(tmp_path / "ckpt-1", _net(seed=3))


def test_sigkill_mid_write_leaves_previous_checkpoint_loadable(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, torch
        from torch import nn
        from difflab.train import checkpoint as c
        torch.manual_seed(0)
        m = nn.Linear(3, 2)
        c.save_checkpoint({str(tmp_path)!r}, 1, m, m, {{}}, {{"step": 1}}, {{}})
        c.torch.save = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        c.save_checkpoint({str(tmp_path)!r}, 2, m, m, {{}}, {{"step": 2}}, {{}})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    leftovers = [p for p in os.listdir(tmp_path) if p.startswith(ckpt_mod.TMP_PREFIX)]
    assert len(leftovers) == 1 and "model.safetensors" in os.listdir(tmp_path / leftovers[0])
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-1"
    torch.manual_seed(0)
    expected = nn.Linear(3, 2)
    loaded = nn.Linear(3, 2)
    _, state = load_checkpoint(tmp_path / "ckpt-1", loaded)
    assert state == {"step": 1} and torch.equal(loaded.weight, expected.weight)
    save_checkpoint(tmp_path, 3, loaded, loaded, {}, {"step": 3}, {})  # the next save sweeps the leftover
    assert sorted(os.listdir(tmp_path)) == ["ckpt-1", "ckpt-3"]


def test_keep_last_prunes_oldest(tmp_path):
    model = _net()
    for step in (5, 10, 15, 20):
        _save(tmp_path, step, model, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-15", "ckpt-20"]
    (tmp_path / "ckpt-25").mkdir()  # a folder without state.json is not a checkpoint
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-20"


def test_incompatible_checkpoint_names_the_keys(tmp_path):
    path = _save(tmp_path, 1, _net(hidden=4))
    other = _net(hidden=5, seed=1)
    before = [t.clone() for t in other.state_dict().values()]
    with pytest.raises(DifflabError) as err:
        load_checkpoint(path, other)
    msg = str(err.value)
    assert "0.weight: checkpoint (4, 3) vs model (5, 3)" in msg
    assert "2.weight: checkpoint (2, 4) vs model (2, 5)" in msg
    assert "config.yaml" in msg
    assert all(torch.equal(a, b) for a, b in zip(before, other.state_dict().values(), strict=True))  # untouched
    deeper = nn.Sequential(nn.Linear(3, 4), nn.SiLU(), nn.Linear(4, 2), nn.Linear(2, 2))
    with pytest.raises(DifflabError, match="3.weight: missing from the checkpoint"):
        load_checkpoint(path, deeper)


def test_trainer_state_is_never_unpickled(tmp_path):
    path = _save(tmp_path, 1, _net())
    torch.save({"optimizer": nn.Linear(1, 1)}, path / "trainer.pt")  # a pickled module, not plain data
    with pytest.raises(DifflabError, match="trainer.pt is damaged .*the manifest says"):
        load_checkpoint(path, _net())
    (path / ckpt_mod.MANIFEST).unlink()  # as written before manifests: trainer.pt is parsed, never unpickled
    with pytest.raises(DifflabError, match="trainer.pt is damaged .*[Ww]eights only load failed"):
        load_checkpoint(path, _net())
    assert json.loads((path / "state.json").read_text())["step"] == 1


def test_newest_intact_checkpoint_skips_damaged_files_named(tmp_path):
    model = _net()
    for step in (1, 2, 3):
        _save(tmp_path, step, model)
    (tmp_path / "ckpt-3" / "trainer.pt").write_bytes(b"\0" * 10)
    state = tmp_path / "ckpt-2" / "state.json"
    state.write_text(state.read_text().replace("2", "7"))  # same size, other bytes: only the checksum tells
    path, skipped = ckpt_mod.newest_intact_checkpoint(tmp_path)
    assert path == tmp_path / "ckpt-1"
    assert [(e.file.parent.name, e.file.name) for e in skipped] == [("ckpt-3", "trainer.pt"), ("ckpt-2", "state.json")]
    assert "the manifest says" in str(skipped[0]) and "checksum differs" in str(skipped[1])
    # sampling needs no trainer.pt: ckpt-3 is intact for it
    assert ckpt_mod.newest_intact_checkpoint(tmp_path, ("ema.safetensors", "state.json", "config.yaml"))[0].name == "ckpt-3"
    with pytest.raises(ckpt_mod.DamagedCheckpoint, match="trainer.pt is damaged"):
        load_checkpoint(tmp_path / "ckpt-3", _net())
    ckpt_mod.load_weights(tmp_path / "ckpt-3", _net(seed=4))


def test_checkpoints_without_a_manifest_still_load_and_are_checked_by_parsing(tmp_path):
    model = _net()
    for step in (1, 2):
        _save(tmp_path, step, model)
    for step in (1, 2):
        (tmp_path / f"ckpt-{step}" / ckpt_mod.MANIFEST).unlink()  # as written by difflab 0.1
    fresh = _net(seed=5)
    load_checkpoint(tmp_path / "ckpt-2", fresh)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True))
    weights = tmp_path / "ckpt-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    path, skipped = ckpt_mod.newest_intact_checkpoint(tmp_path)
    assert path == tmp_path / "ckpt-1" and skipped[0].file == weights and "SafetensorError" in str(skipped[0])


def test_pruning_is_atomic_and_half_deleted_folders_are_cleaned(tmp_path, monkeypatch):
    model = _net()
    _save(tmp_path, 1, model)
    _save(tmp_path, 2, model)
    real_rmtree = ckpt_mod.shutil.rmtree

    def killed_midway(path, ignore_errors=False):  # deletes one file, then the process "dies"
        os.unlink(os.path.join(path, "model.safetensors"))
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod.shutil, "rmtree", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 3, model, keep_last=2)
    monkeypatch.setattr(ckpt_mod.shutil, "rmtree", real_rmtree)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-2", "ckpt-3"]  # no half-deleted ckpt-1
    assert any(p.startswith(ckpt_mod.TRASH_PREFIX) for p in os.listdir(tmp_path))
    old_style = tmp_path / "ckpt-9"  # left half-deleted by an older difflab: state.json but no weights
    old_style.mkdir()
    (old_style / "state.json").write_text("{}")
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-3"
    _save(tmp_path, 4, model, keep_last=2)
    assert sorted(os.listdir(tmp_path)) == ["ckpt-3", "ckpt-4"]  # trash and the half-deleted folder swept


def test_a_checkpoint_without_trainer_state_samples_but_is_not_resumed(tmp_path):
    model = _net()
    _save(tmp_path, 1, model)
    _save(tmp_path, 2, model)
    (tmp_path / "ckpt-2" / "trainer.pt").unlink()  # optimizer states deleted to save space
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-2"
    ckpt_mod.load_weights(tmp_path / "ckpt-2", _net(seed=1))
    path, skipped = ckpt_mod.newest_intact_checkpoint(tmp_path)
    assert path == tmp_path / "ckpt-1" and "trainer.pt is damaged (missing)" in str(skipped[0])
