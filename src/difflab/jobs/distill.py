"""`difflab distill RUN --method NAME --out RUN2`: a few-step student of a trained run, as a run of its own.

    RUN2's config = RUN's config, changed by the method (difflab.distill: its own sampler and steps in
                    `sample`; reflow's flow process), plus a `distill` section {method, teacher, options,
                    init}, plus the user's --set overrides (which win)
    RUN2/run.json   RUN's (same data shape, classes and data range)
    RUN2/ckpt-*     the student, trained by the shared Trainer (lock, checkpoints, resume, previews)

The teacher is RUN's model with its EMA weights, frozen; the student is built by the factory from RUN2's
config and starts from the teacher's network weights (distill.init=teacher, the papers' choice) or from
scratch. So `difflab sample RUN2` and `difflab eval RUN2` read RUN2 like any run, with the method's sampler
as their default. --resume re-loads the teacher from the path recorded in RUN2's config.

Budget: --steps / --minutes as for `difflab train` (on --resume: that much more); a new run with neither
trains the method's own schedule (progressive: phases x phase_steps; reflow: train_steps).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from difflab.config.distill import build_distill_method
from difflab.config.factory import (
    build_data,
    build_denoiser,
    build_prepare,
    build_process,
    build_text_encoder,
)
from difflab.config.loader import apply_overrides, config_from_dict, config_to_dict
from difflab.distill.base import DistillContext
from difflab.jobs.generate import resolve_device
from difflab.jobs.runs import is_diffusers_source, load_run, read_meta, write_meta
from difflab.jobs.train import (
    budget,
    folder_state,
    preview_fn,
    refusal_leaves_nothing,
    refuse_existing,
    resume_point,
)
from difflab.nets.registry import count_parameters
from difflab.train import Trainer, read_config
from difflab.train.checkpoint import read_state
from difflab.train.lock import RunLock
from difflab.train.settings import TrainResult
from difflab.utils.errors import DifflabError
from difflab.utils.seeding import seed_everything


def merge(base: dict, changes: dict) -> dict:
    """`base` with `changes` applied section by section (nested dicts merged, other values replaced)."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("options", "schedule_options"):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def student_config(teacher_config: dict, teacher_path: Path, method: str, overrides: list[str]) -> dict:
    """The student run's config dict (module docstring): the teacher's, the method's changes, the distill
    section, then the user's overrides (distill.options.* among them, read first to give the method its options)."""
    section = {"method": method, "teacher": str(teacher_path), "options": {}, "init": "teacher"}
    first = apply_overrides(merge(teacher_config, {"distill": section}), list(overrides))
    cfg = config_from_dict(first)  # checks the distill section (and everything else) once
    chosen, options = build_distill_method(cfg.distill)
    changed = merge(teacher_config, chosen.config(teacher_config, **options))
    changed["distill"] = {**config_to_dict(cfg)["distill"], "options": options}
    changed["train"] = {**changed["train"], "max_minutes": None}  # the teacher's time budget is not the student's
    return apply_overrides(changed, [o for o in overrides if not o.strip().startswith("distill.")])


def load_teacher(path: str | Path, device: str, student_run: Path):
    """The teacher run (EMA weights, frozen); one message naming the recorded path when it is gone."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DifflabError(f"the teacher run {path} recorded in {student_run}'s config is missing: put it back at "
                           f"that path, or distil again into another --out")
    loaded = load_run(path, ema=True, device=device)
    loaded.model.eval().requires_grad_(False)
    return loaded


def start_from_teacher(student, teacher) -> None:
    """The teacher's weights into the student. The one part a student may add is a MeanFlow interval embedding
    (nets.embeddings.ConditionEmbedding.interval, zero-initialised so the student starts as the teacher);
    any other difference is one message."""
    try:
        missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    except RuntimeError as e:
        missing, unexpected = [str(e).splitlines()[0]], []
    missing = [k for k in missing if ".cond_embed.interval." not in k]
    if missing or unexpected:
        raise DifflabError(f"the student's network does not match the teacher's ({(missing + unexpected)[0]}): "
                           "keep model.network and model.options, or --set distill.init=scratch")


def _new_config(run: Path, method: str, overrides: list[str], device: str):
    if is_diffusers_source(run):
        raise DifflabError(f"{run} is a diffusers model: `difflab distill` takes a difflab run folder as the teacher "
                           "(train one with `difflab train PRESET --out RUN`)")
    if not run.is_dir():
        raise DifflabError(f"teacher run {run} does not exist; train one with `difflab train PRESET --out {run}`")
    teacher = load_run(run, ema=True, device=device)
    teacher.model.eval().requires_grad_(False)
    d = student_config(config_to_dict(teacher.config), run.resolve(), method, overrides)
    return teacher, config_from_dict(d)


def run_distill(run: str | Path | None, out: str | Path, *, method: str | None = None, minutes: float | None = None,
                steps: int | None = None, overrides: list[str] | None = None, resume: bool = False,
                device: str | None = None, log=None) -> TrainResult:
    """Distil RUN into `out` with `method` (a name in difflab.distill.registry.DISTILL_METHODS), or with
    resume=True continue the distillation in `out` (its teacher and method come from its config). device:
    where the teacher runs (default: cuda when available, where the Trainer puts the student too)."""
    console = Console()
    say = log or (lambda m: console.print(m, markup=False, highlight=False, soft_wrap=True))
    out, overrides = Path(out).expanduser(), list(overrides or [])
    device = resolve_device(device)
    refuse_existing(out, resume)
    state = folder_state(out)
    with RunLock(out) as lock, refusal_leaves_nothing(out, state):
        if lock.note:
            say(lock.note)
        ckpt = resume_point(out) if resume else None
        if ckpt is not None:
            cfg = config_from_dict(apply_overrides(read_config(ckpt), overrides))
            if cfg.distill is None:
                raise DifflabError(f"{out} is not a distilled run (its config has no distill section): resume it "
                                   f"with `difflab train --out {out} --resume`")
            if method is not None and method != cfg.distill.method:
                raise DifflabError(f"{out} was distilled with --method {cfg.distill.method}; resume it with that "
                                   "method (or leave --method out)")
            if run is not None and Path(run).expanduser().resolve() != Path(cfg.distill.teacher):
                raise DifflabError(f"{out} was distilled from {cfg.distill.teacher}, not {run}: leave RUN out to "
                                   "resume it (its teacher is re-loaded from its config)")
            teacher = load_teacher(cfg.distill.teacher, device, out)
        else:
            if run is None or method is None:
                raise DifflabError(f"{out} has no checkpoint to resume from: name the teacher RUN and --method")
            teacher, cfg = _new_config(Path(run).expanduser(), method, overrides, device)
        chosen, options = build_distill_method(cfg.distill)
        train_cfg = cfg.train
        if ckpt is None and minutes is None and steps is None:
            planned = chosen.train_steps(**options)
            train_cfg = replace(train_cfg, max_steps=planned if planned is not None else train_cfg.max_steps)
        cfg = replace(cfg, train=budget(train_cfg, read_state(ckpt) if ckpt else None, minutes, steps))
        seed_everything(cfg.train.seed)

        meta = teacher.meta
        if resume and (out / "run.json").is_file() and read_meta(out) != meta:
            raise DifflabError(f"{out} was distilled from a teacher of another data shape or conditioning")
        dataset = build_data(cfg.data)
        text_encoder = build_text_encoder(cfg.model)
        student = build_denoiser(cfg, build_process(cfg.process), meta.data_shape, meta.num_classes, meta.context_dim)
        if cfg.distill.init == "teacher":
            start_from_teacher(student, teacher.model)
        student.to(device)
        write_meta(out, meta)
        ctx = DistillContext(teacher.model, student, dataset, tuple(meta.data_shape), meta.num_classes, out,
                             student_device(student), cfg.train.seed, cfg.train.batch_size, say)
        plan = chosen.build(ctx, **options)
        say(f"difflab distill {cfg.distill.method}: {cfg.distill.teacher} -> {out}: student {cfg.model.network} "
            f"({count_parameters(student) / 1e6:.2f}M parameters), {type(student.process).__name__}, "
            f"{cfg.model.parameterization}-prediction, from {'the teacher' if cfg.distill.init == 'teacher' else 'scratch'}; "
            f"samples with {cfg.sample.sampler} ({cfg.sample.steps} steps); until {cfg.train.max_steps} steps"
            + (f" or {cfg.train.max_minutes:.4g} minutes" if cfg.train.max_minutes else ""))
        for note in plan.notes:
            say(f"  {note}")
        prepare = build_prepare(cfg, text_encoder)
        if plan.wrap_prepare is not None:
            prepare = plan.wrap_prepare(prepare)
        captions = None
        if text_encoder is not None:
            captions = [dataset[i]["caption"] for i in range(min(len(dataset), 64))]
        trainer = Trainer(student, plan.loss_fn, plan.data if plan.data is not None else dataset, cfg.train, out,
                          sample_fn=preview_fn(meta, cfg, text_encoder, captions), prepare=prepare,
                          run_config=config_to_dict(cfg), objective=plan.objective)
        result = trainer.train(resume=resume)
        note = getattr(trainer.objective, "progress_note", None)
        if note is not None and note() is not None:
            say(note())
        return result


def student_device(model):
    return next(model.parameters()).device
