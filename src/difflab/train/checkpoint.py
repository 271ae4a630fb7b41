"""Checkpoints: one folder per step, written atomically, verified before loading, the newest k kept.

    <run_dir>/ckpt-<step>/
        model.safetensors   the trained weights
        ema.safetensors     the EMA weights
        trainer.pt          optimizer, LR-scheduler and grad-scaler states (plain tensors and numbers,
                            read back with torch.load(weights_only=True) only: never unpickled code)
        state.json          step, images seen, elapsed time, data position, RNG states of every rank
        config.yaml         the full run config
        manifest.json       {"files": {name: {"bytes": n, "sha256": hex}}} of the five files above

A checkpoint is written into a hidden temporary folder next to its final place and renamed in one
os.replace, so a process killed mid-write leaves the previous checkpoints untouched and at worst a
`.tmp-ckpt-*` folder that listing ignores and the next save removes. Pruning is atomic the same way:
a folder is renamed to a hidden `.trash-*` name before it is deleted, so no `ckpt-<step>` folder is
ever half-deleted (and one left half-deleted by an older difflab, without model.safetensors, is
neither listed nor kept). Every file is checked against the manifest's size and SHA-256 before it is
loaded; a damaged checkpoint raises DamagedCheckpoint naming the file, and `newest_intact_checkpoint`
falls back to the newest checkpoint whose files are all sound. Checkpoints written before manifests
existed still load: their files are checked by parsing them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_model, save_file, save_model
from torch import nn

from difflab.utils.errors import DifflabError

CKPT_RE = re.compile(r"ckpt-(\d+)")
TMP_PREFIX = ".tmp-ckpt-"
TRASH_PREFIX = ".trash-"
MANIFEST = "manifest.json"
FILES = ("model.safetensors", "ema.safetensors", "trainer.pt", "state.json", "config.yaml")


class DamagedCheckpoint(DifflabError):
    """A checkpoint file that is missing, truncated or corrupt; `file` is its path."""

    def __init__(self, file: Path, problem: str):
        self.file, self.problem = Path(file), problem
        super().__init__(f"{file} is damaged ({problem})")


def checkpoint_step(path: str | Path) -> int | None:
    """The step of a `ckpt-<step>` folder name, None for anything else."""
    m = CKPT_RE.fullmatch(Path(path).name)
    return int(m.group(1)) if m else None


def _is_complete(folder: Path) -> bool:
    """Weights, EMA, state and config present (trainer.pt may be gone: it is needed to resume only)."""
    return all((folder / name).is_file() for name in FILES if name != "trainer.pt")


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first: everything but trainer.pt must be there (a run
    whose optimizer states were deleted to save space still samples; resuming skips such a folder).

    Temporary, trash and half-deleted folders are never listed; a complete folder may still hold a
    damaged file: `newest_intact_checkpoint` checks their contents.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted((p for p in found if _is_complete(p)), key=checkpoint_step)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None (its files are not verified here)."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def _delete(path: Path) -> None:
    """Remove a folder atomically as far as listing goes: rename it to a trash name, then delete it."""
    trash = path.parent / f"{TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def prune_checkpoints(run_dir: str | Path, keep_last: int | None, keep: Iterable[int] = ()) -> None:
    """Delete all but the newest `keep_last` checkpoints (None keeps all) except those of the steps in
    `keep`, leftover temporary and trash folders, and half-deleted `ckpt-<step>` folders (no model.safetensors)."""
    keep = set(keep)
    run_dir = Path(run_dir)
    for p in [*run_dir.glob(TMP_PREFIX + "*"), *run_dir.glob(TRASH_PREFIX + "*")]:
        shutil.rmtree(p, ignore_errors=True)
    for p in run_dir.iterdir():
        if p.is_dir() and checkpoint_step(p) is not None and not (p / "model.safetensors").is_file():
            _delete(p)
    if keep_last is not None:
        for p in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
            if checkpoint_step(p) not in keep:
                _delete(p)


def set_aside(path: str | Path) -> Path:
    """Rename a damaged checkpoint folder out of the run's listing (nothing is deleted): ckpt-N.damaged."""
    path = Path(path)
    target = path.with_name(f"{path.name}.damaged")
    while target.exists():
        target = path.with_name(f"{path.name}.damaged-{uuid.uuid4().hex[:6]}")
    os.replace(path, target)
    return target


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _manifest(folder: Path, names: Iterable[str] = FILES) -> dict:
    return {"files": {name: {"bytes": (folder / name).stat().st_size, "sha256": sha256(folder / name)}
                      for name in names}}


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: nn.Module,
    ema_module: nn.Module,
    trainer_state: dict,
    state: dict,
    config: dict,
    keep_last: int | None = None,
    keep: Iterable[int] = (),
) -> Path:
    """Write `<run_dir>/ckpt-<step>` with its manifest atomically and prune to `keep_last` (never the steps
    in `keep`); returns its path.

    An intact checkpoint of the same step is kept as it is (same step, same state); a damaged one is
    set aside (`ckpt-<step>.damaged`) and written anew.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / f"ckpt-{step}"
    if final.is_dir():
        try:
            check_checkpoint(final)
            return final
        except DamagedCheckpoint:
            set_aside(final)
    try:
        config_text = yaml.safe_dump(config, sort_keys=False)
    except yaml.representer.RepresenterError as e:
        raise DifflabError(f"the run config must hold plain data (numbers, strings, lists, dicts): {e}") from e

    def write(tmp: Path) -> None:
        save_model(model, str(tmp / "model.safetensors"))
        save_model(ema_module, str(tmp / "ema.safetensors"))
        torch.save(trainer_state, tmp / "trainer.pt")
        (tmp / "config.yaml").write_text(config_text)
        (tmp / "state.json").write_text(json.dumps(state))

    _write_atomically(run_dir, step, write, FILES)
    prune_checkpoints(run_dir, keep_last, keep)
    return final


def _write_atomically(run_dir: Path, step: int, write, names: tuple[str, ...]) -> Path:
    """Fill a hidden temporary folder with `write(tmp)` (the files `names`), add the manifest, fsync, and
    rename it to `run_dir/ckpt-<step>` in one os.replace; nothing is left behind on failure."""
    final = run_dir / f"ckpt-{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{step}-", dir=run_dir))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint is an ordinary folder
        write(tmp)
        (tmp / MANIFEST).write_text(json.dumps(_manifest(tmp, names), indent=1))
        for name in (*names, MANIFEST):
            _fsync(tmp / name)
        os.replace(tmp, final)
        _fsync(run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def save_with_weights(source: str | Path, run_dir: str | Path, weights: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write `run_dir/ckpt-<step>` as a copy of the checkpoint `source` (same step) whose safetensors files
    named in `weights` (e.g. {"ema.safetensors": state_dict}) hold the given tensors instead; the other files
    of `source` (trainer.pt only if it has one) are copied byte for byte, after verifying them, and the new
    folder gets its own manifest. Atomic like save_checkpoint; an existing ckpt-<step> is refused."""
    source, run_dir = Path(source), Path(run_dir)
    step = checkpoint_step(source)
    if step is None:
        raise DifflabError(f"{source} is not a ckpt-<step> folder")
    names = tuple(n for n in FILES if (source / n).is_file() or n in weights)
    unknown = sorted(set(weights) - {n for n in FILES if n.endswith(".safetensors")})
    if unknown:
        raise DifflabError(f"only model.safetensors and ema.safetensors can be replaced, not {', '.join(unknown)}")
    check_checkpoint(source, [n for n in names if n not in weights])
    if (run_dir / f"ckpt-{step}").exists():
        raise DifflabError(f"{run_dir / f'ckpt-{step}'} exists already; write into a new run folder")
    run_dir.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        for name in names:
            if name in weights:
                save_file({k: v.contiguous() for k, v in weights[name].items()}, str(tmp / name))
            else:
                shutil.copyfile(source / name, tmp / name)

    return _write_atomically(run_dir, step, write, names)


# ---- verification -----------------------------------------------------------------------------------
def verify_files(folder: str | Path, names: Iterable[str] = FILES) -> None:
    """Raise DamagedCheckpoint for the first of `names` that is missing or differs from the manifest
    (size, then SHA-256). A checkpoint without a manifest (written before they existed) passes here."""
    folder = Path(folder)
    names = list(names)
    for name in names:
        if not (folder / name).is_file():
            raise DamagedCheckpoint(folder / name, "missing")
    if not (folder / MANIFEST).is_file():
        return
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
        expected = {name: (int(files[name]["bytes"]), str(files[name]["sha256"])) for name in names}
    except (ValueError, KeyError, TypeError) as e:
        raise DamagedCheckpoint(folder / MANIFEST, f"not a valid manifest: {e}") from None
    for name in names:
        size, digest = (folder / name).stat().st_size, expected[name]
        if size != digest[0]:
            raise DamagedCheckpoint(folder / name, f"{size} bytes where the manifest says {digest[0]}: truncated "
                                    "or overwritten")
        if sha256(folder / name) != digest[1]:
            raise DamagedCheckpoint(folder / name, "its SHA-256 checksum differs from the manifest: corrupt")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _read_mapping(file: Path, parse, kind: str) -> dict:
    """A file parsed into a mapping, or DamagedCheckpoint naming it."""
    try:
        data = parse(file.read_text())
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise DamagedCheckpoint(file, _first_line(e)) from None
    if not isinstance(data, dict):
        raise DamagedCheckpoint(file, f"a {kind} mapping was expected, found {type(data).__name__}")
    return data


def read_state(path: str | Path) -> dict:
    """The state.json of a checkpoint (DamagedCheckpoint if it is not a JSON mapping)."""
    return _read_mapping(Path(path) / "state.json", json.loads, "JSON")


def read_config(path: str | Path) -> dict:
    """The run config stored in a checkpoint (DamagedCheckpoint if it is not a YAML mapping)."""
    return _read_mapping(Path(path) / "config.yaml", yaml.safe_load, "YAML")


def read_trainer_state(path: str | Path) -> dict:
    """trainer.pt as plain data (torch.load(weights_only=True): never unpickled code)."""
    file = Path(path) / "trainer.pt"
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated zip, a pickle of code, garbage: all one message naming the file
        raise DamagedCheckpoint(file, _first_line(e)) from None


def _safetensor_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    try:
        with safe_open(str(file), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # SafetensorError for a bad header or a truncated file
        raise DamagedCheckpoint(file, _first_line(e)) from None


def check_checkpoint(path: str | Path, files: Iterable[str] = FILES) -> None:
    """Raise DamagedCheckpoint unless every one of `files` is sound: against the manifest when there is
    one, else by parsing each file (state, config, safetensors headers, and trainer.pt if listed)."""
    path, files = Path(path), tuple(files)
    verify_files(path, files)
    read_state(path)
    read_config(path)
    if not (path / MANIFEST).is_file():
        for name in files:
            if name.endswith(".safetensors"):
                _safetensor_shapes(path / name)
        if "trainer.pt" in files:
            read_trainer_state(path)


def newest_intact_checkpoint(run_dir: str | Path, files: Iterable[str] = FILES
                             ) -> tuple[Path | None, list[DamagedCheckpoint]]:
    """(the newest checkpoint whose `files` are all sound or None, the damaged newer ones skipped)."""
    skipped = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            check_checkpoint(path, files)
            return path, skipped
        except DamagedCheckpoint as e:
            skipped.append(e)
    return None, skipped


# ---- loading ----------------------------------------------------------------------------------------
def weight_mismatches(module: nn.Module, path: str | Path) -> list[str]:
    """Differences between a safetensors file and a module's state_dict, one line each (empty if none).

    Names that save_model dropped because they alias another saved tensor (tied weights) are not
    reported as missing.
    """
    shapes = _safetensor_shapes(Path(path))
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


def _load_modules(path: Path, targets: list[tuple[str, nn.Module, str]]) -> None:
    """Check every (what, module, file) against its module first, then load them all (strict)."""
    for what, module, name in targets:
        problems = weight_mismatches(module, path / name)
        if problems:
            shown = "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else "")
            raise DifflabError(
                f"checkpoint {path} does not fit the {what} ({len(problems)} mismatched keys):\n  {shown}\n"
                f"it was written for a different architecture: build the model from {path / 'config.yaml'}, "
                "or start a new run in another output folder"
            )
    for _, module, name in targets:
        try:
            load_model(module, str(path / name), strict=True, device=str(next(module.parameters()).device))
        except Exception as e:  # the header was sound but the data is not (an old checkpoint, no manifest)
            raise DamagedCheckpoint(path / name, _first_line(e)) from None


def load_checkpoint(path: str | Path, model: nn.Module, ema_module: nn.Module | None = None) -> tuple[dict, dict]:
    """Load weights into `model` (and `ema_module`); return (trainer_state, state).

    Every file is verified (manifest checksums, or parsing for an old checkpoint) and checked against
    the modules before anything is loaded, so a damaged file raises one DamagedCheckpoint naming it
    and an incompatible checkpoint one DifflabError naming the mismatched keys, the modules untouched.
    """
    path = Path(path)
    check_checkpoint(path, FILES)
    trainer_state, state = read_trainer_state(path), read_state(path)
    targets = [("model", model, "model.safetensors")]
    if ema_module is not None:
        targets.append(("EMA model", ema_module, "ema.safetensors"))
    _load_modules(path, targets)
    return trainer_state, state


def load_weights(path: str | Path, module: nn.Module, ema: bool = True) -> dict:
    """Load one set of weights (the EMA's by default) into `module` for sampling; returns state.json.

    trainer.pt is neither read nor required: a damaged optimizer state does not stop sampling.
    """
    path = Path(path)
    name = "ema.safetensors" if ema else "model.safetensors"
    check_checkpoint(path, (name, "state.json", "config.yaml"))
    _load_modules(path, [("EMA model" if ema else "model", module, name)])
    return read_state(path)
