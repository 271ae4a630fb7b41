"""`difflab average RUN --out RUN2`: a new run whose sampling weights are the mean of RUN's checkpoints.

    RUN2/run.json              RUN's (data shape, conditioning, value range, latent autoencoder)
    RUN2/ckpt-<N>/             RUN's newest chosen checkpoint, its ema.safetensors replaced by the average
                               (difflab.train.averaging.average_weights) of the chosen checkpoints' EMA (or raw)
                               weights; model.safetensors, trainer.pt, state.json and config.yaml as they were
    RUN2/averaged.json         the receipt: source run, checkpoints, which weights, weighting, half-life and
                               the coefficients they give

RUN2 samples and evaluates like any run (`difflab sample RUN2`, `difflab eval RUN2`); `--resume` on it would
continue RUN's training from ckpt-<N> with the average as its EMA. RUN itself is only read. A run that holds
one student per phase (progressive distillation) is averaged within one phase only.
"""

from __future__ import annotations

import bisect
import shutil
from pathlib import Path

from difflab.config.distill import build_distill_method
from difflab.config.loader import config_from_dict
from difflab.jobs.runs import read_meta, write_meta
from difflab.jobs.train import folder_state, refusal_leaves_nothing, refuse_existing
from difflab.train.averaging import average_weights, checkpoint_coefficients
from difflab.train.checkpoint import (
    DamagedCheckpoint,
    check_checkpoint,
    checkpoint_step,
    list_checkpoints,
    read_config,
    save_with_weights,
)
from difflab.train.lock import RunLock
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write_json

WEIGHTS = {"ema": "ema.safetensors", "model": "model.safetensors"}
RECEIPT = "averaged.json"


def choose_checkpoints(run: Path, steps: list[int] | None = None, first: int | None = None,
                       last: int | None = None) -> list[Path]:
    """RUN's checkpoints at `steps`, or every checkpoint with first <= step <= last (defaults: all), oldest
    first; at least two, each named by step when it is missing."""
    ckpts = {checkpoint_step(p): p for p in list_checkpoints(run)}
    have = ", ".join(map(str, ckpts)) or "(none)"
    if steps:
        if first is not None or last is not None:
            raise DifflabError("name the checkpoints either by --checkpoint or by --from / --to, not both")
        missing = [s for s in steps if s not in ckpts]
        if missing:
            raise DifflabError(f"{run} has no checkpoint at step {', '.join(map(str, missing))}; its checkpoints are "
                               f"at steps {have}")
        chosen = sorted(set(steps))
    else:
        lo, hi = -1 if first is None else first, max(ckpts, default=0) if last is None else last
        chosen = [s for s in ckpts if lo <= s <= hi]
    if len(chosen) < 2:
        raise DifflabError(f"averaging needs at least two checkpoints, {len(chosen)} chosen; {run}'s checkpoints "
                           f"are at steps {have}")
    return [ckpts[s] for s in chosen]


def _one_phase(cfg, chosen: list[Path]) -> None:
    """Refuse a window that crosses a phase boundary of a run holding one student per phase."""
    if cfg.distill is None:
        return
    method, options = build_distill_method(cfg.distill)
    ends = sorted(set(method.students(**options).values()))
    if len(ends) < 2:
        return
    phases = {bisect.bisect_left(ends, checkpoint_step(p)) for p in chosen}
    if len(phases) > 1:
        raise DifflabError(f"the checkpoints {', '.join(p.name for p in chosen)} belong to different phases of this "
                           f"{cfg.distill.method} run (its students end at steps {', '.join(map(str, ends))}): "
                           "average checkpoints of one phase, one student")


def run_average(run: str | Path, out: str | Path, *, steps: list[int] | None = None, first: int | None = None,
                last: int | None = None, weights: str = "ema", weighting: str = "equal",
                half_life: float | None = None, log=print) -> Path:
    """Average the `weights` ('ema' or 'model') of RUN's chosen checkpoints into the new run `out`, with the
    coefficients of `weighting` and `half_life` (difflab.train.averaging.checkpoint_coefficients); returns the
    written checkpoint folder."""
    run, out = Path(run).expanduser(), Path(out).expanduser()
    if weights not in WEIGHTS:
        raise DifflabError(f"--weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
    if not run.is_dir():
        raise DifflabError(f"run folder {run} does not exist; train one with `difflab train PRESET --out {run}`")
    if out.resolve() == run.resolve():
        raise DifflabError(f"--out is the source run {run}: write the average into a new run folder")
    meta = read_meta(run)
    chosen = choose_checkpoints(run, steps, first, last)
    name = WEIGHTS[weights]
    for ckpt in chosen:
        try:
            check_checkpoint(ckpt, (name, "state.json", "config.yaml"))
        except DamagedCheckpoint as e:
            raise DifflabError(f"{e}; leave {ckpt.name} out of the average") from None
    coefficients = checkpoint_coefficients([checkpoint_step(c) for c in chosen], weighting, half_life)
    newest = chosen[-1]
    _one_phase(config_from_dict(read_config(newest)), chosen)
    refuse_existing(out, resume=False, fix="choose another --out (the average is written into a new run)")
    state = folder_state(out)
    with RunLock(out) as lock, refusal_leaves_nothing(out, state):
        if lock.note:
            log(lock.note)
        averaged = average_weights([c / name for c in chosen], coefficients)
        write_meta(out, meta)
        if (run / "classifier").is_dir():  # a guidance classifier does not depend on the denoiser's weights
            shutil.copytree(run / "classifier", out / "classifier")
        written = save_with_weights(newest, out, {"ema.safetensors": averaged})
        atomic_write_json(out / RECEIPT, {"source": str(run.resolve()), "weights": weights,
                                          "checkpoints": [checkpoint_step(c) for c in chosen],
                                          "weighting": weighting, "half_life": half_life,
                                          "coefficients": coefficients})
    lean = "" if half_life is None else f", half-life {half_life:g} steps"
    log(f"averaged the {weights} weights of {len(chosen)} checkpoints of {run} (steps "
        f"{', '.join(str(checkpoint_step(c)) for c in chosen)}; {weighting} shares{lean}: coefficients "
        f"{', '.join(f'{c:.3f}' for c in coefficients)}) into {written}; sample it with "
        f"`difflab sample {out}`")
    return written
