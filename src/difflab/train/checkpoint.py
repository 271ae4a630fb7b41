"""Checkpoints: one folder per step, written atomically, the newest k kept.

    <run_dir>/ckpt-<step>/
        model.safetensors   the trained weights
        ema.safetensors     the EMA weights
        trainer.pt          optimizer, LR-scheduler and grad-scaler states (plain tensors and numbers,
                            read back with torch.load(weights_only=True) only: never unpickled code)
        state.json          step, images seen, elapsed time, data position, RNG states of every rank
        config.yaml         the full run config

A checkpoint is written into a hidden temporary folder next to its final place and renamed in one
os.replace, so a process killed mid-write leaves the previous checkpoints untouched and at worst a
`.tmp-ckpt-*` folder that `latest_checkpoint` ignores and the next save removes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from difflab.utils.errors import DifflabError

CKPT_RE = re.compile(r"ckpt-(\d+)")
TMP_PREFIX = ".tmp-ckpt-"
FILES = ("model.safetensors", "ema.safetensors", "trainer.pt", "state.json", "config.yaml")


def checkpoint_step(path: str | Path) -> int | None:
    """The step of a `ckpt-<step>` folder name, None for anything else."""
    m = CKPT_RE.fullmatch(Path(path).name)
    return int(m.group(1)) if m else None


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first (temporary folders are never listed)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted((p for p in found if (p / "state.json").is_file()), key=checkpoint_step)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def prune_checkpoints(run_dir: str | Path, keep_last: int | None) -> None:
    """Delete all but the newest `keep_last` checkpoints (None keeps all) and stale temporary folders."""
    run_dir = Path(run_dir)
    for p in run_dir.glob(TMP_PREFIX + "*"):
        shutil.rmtree(p, ignore_errors=True)
    if keep_last is not None:
        for p in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(p)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: nn.Module,
    ema_module: nn.Module,
    trainer_state: dict,
    state: dict,
    config: dict,
    keep_last: int | None = None,
) -> Path:
    """Write `<run_dir>/ckpt-<step>` atomically and prune to `keep_last`; returns its path.

    An existing checkpoint of the same step is kept as it is (same step, same state).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / f"ckpt-{step}"
    if final.is_dir():
        return final
    try:
        config_text = yaml.safe_dump(config, sort_keys=False)
    except yaml.representer.RepresenterError as e:
        raise DifflabError(f"the run config must hold plain data (numbers, strings, lists, dicts): {e}") from e
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{step}-", dir=run_dir))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint is an ordinary folder
        save_model(model, str(tmp / "model.safetensors"))
        save_model(ema_module, str(tmp / "ema.safetensors"))
        torch.save(trainer_state, tmp / "trainer.pt")
        (tmp / "config.yaml").write_text(config_text)
        (tmp / "state.json").write_text(json.dumps(state))
        for name in FILES:
            _fsync(tmp / name)
        os.replace(tmp, final)
        _fsync(run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune_checkpoints(run_dir, keep_last)
    return final


def weight_mismatches(module: nn.Module, path: str | Path) -> list[str]:
    """Differences between a safetensors file and a module's state_dict, one line each (empty if none).

    Names that save_model dropped because they alias another saved tensor (tied weights) are not
    reported as missing.
    """
    with safe_open(str(path), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    own = module.state_dict()
    saved_storages = {own[k].untyped_storage().data_ptr() for k in shapes if k in own}
    problems = [
        f"{k}: checkpoint {shapes[k]} vs model {tuple(own[k].shape)}"
        for k in shapes
        if k in own and shapes[k] != tuple(own[k].shape)
    ]
    problems += [f"{k}: not in the model" for k in shapes if k not in own]
    problems += [
        f"{k}: missing from the checkpoint"
        for k, v in own.items()
        if k not in shapes and v.untyped_storage().data_ptr() not in saved_storages
    ]
    return problems


def load_checkpoint(path: str | Path, model: nn.Module, ema_module: nn.Module | None = None) -> tuple[dict, dict]:
    """Load weights into `model` (and `ema_module`); return (trainer_state, state).

    Every file is checked against the modules before anything is loaded, so an incompatible
    checkpoint raises one DifflabError naming the mismatched keys and leaves the modules untouched.
    """
    path = Path(path)
    missing = [name for name in FILES if not (path / name).is_file()]
    if missing:
        raise DifflabError(f"{path} is not a complete difflab checkpoint: missing {', '.join(missing)}")
    targets = [("model", model, path / "model.safetensors")]
    if ema_module is not None:
        targets.append(("EMA model", ema_module, path / "ema.safetensors"))
    for what, module, file in targets:
        problems = weight_mismatches(module, file)
        if problems:
            shown = "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else "")
            raise DifflabError(
                f"checkpoint {path} does not fit the {what} ({len(problems)} mismatched keys):\n  {shown}\n"
                f"it was written for a different architecture: build the model from {path / 'config.yaml'}, "
                "or start a new run in another output folder"
            )
    for _, module, file in targets:
        load_model(module, str(file), strict=True, device=str(next(module.parameters()).device))
    trainer_state = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
    state = json.loads((path / "state.json").read_text())
    return trainer_state, state


def read_config(path: str | Path) -> dict:
    """The run config stored in a checkpoint."""
    return yaml.safe_load((Path(path) / "config.yaml").read_text())
