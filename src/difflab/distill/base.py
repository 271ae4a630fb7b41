"""What a distillation method is: what `difflab distill RUN --method NAME` builds and trains.

A distilled run is a run like any other (its model is a denoiser built by the factory from its config), so a
method says three things, and the job (difflab.jobs.distill) does the rest (teacher loading, the student's
start from the teacher's weights, the shared Trainer with its lock, checkpoints, resume and previews):

    DISTILL_METHODS: dict[str, DistillMethod]

    DistillMethod(
        name,
        config(teacher_config: dict, **options) -> dict,
            # overrides applied to a copy of the teacher's config (plain dict, difflab.config.validate.to_dict)
            # to give the student run's config: at least {"sample": {"sampler", "steps", "schedule", ...}} (the
            # method's own sampler), and where the student is another model, {"process": ..., "model": ...}.
            # The user's --set overrides come after, and win.
        build(ctx: DistillContext, **options) -> DistillPlan,
            # the loss (and, where one update is more than a loss, the objective) that trains ctx.student
        train_steps(**options) -> int | None,
            # the step budget the method's schedule needs when the user gives neither --steps nor --minutes
            # (progressive: phases x steps per phase); None keeps the config's max_steps
        students(**options) -> dict[int, int],
            # sampler steps -> the training step whose checkpoint holds the student that learnt them, for a
            # method whose run holds several students (progressive: one per phase); these checkpoints are
            # written and never pruned (the objective's `milestones`), and `difflab sample RUN2 --steps N`
            # loads the N-step student; {} (the default) for one student
    )

`options` are the keyword-only parameters of `build` (checked by name and type against its signature,
difflab.utils.keywords.check_keywords; `config` and `train_steps` take the same names and ignore the ones they
do not use via **_). A method is registered with one line in difflab/distill/registry.py; its module lives in difflab/distill/.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from difflab.train.loop import MakeObjective, Prepare
from difflab.train.objective import DenoisingObjective, LossFn
from difflab.utils.keywords import check_keywords


@dataclass(frozen=True)
class DistillContext:
    """What a method's `build` receives.

    teacher: the teacher's denoiser (EMA weights, frozen: eval, requires_grad False) on `device`; its
    `process` and `parameterization` are the teacher's. student: the student run's denoiser, built by the
    factory from the student run's config, holding the teacher's network weights (the papers' start), on
    `device`, trainable. data: the teacher run's training data set (batches {"x", "label", ...} in the data
    range). cond_labels: the number of classes of a class-conditional teacher (None otherwise). run_dir: the
    student run's folder (caches such as reflow's pairs go there, atomically). seed: the run's train.seed.
    log: prints one line to the user.
    """

    teacher: object
    student: nn.Module
    data: object
    data_shape: tuple[int, ...]
    num_classes: int | None
    run_dir: Path
    device: torch.device
    seed: int
    batch_size: int
    log: Callable[[str], None] = print


@dataclass(frozen=True)
class DistillPlan:
    """What the Trainer runs: loss_fn(model, x0, cond, generator) -> per-sample losses (B,) inside
    `objective` (default DenoisingObjective: AdamW on their mean). `data` replaces the teacher run's data set
    when the method trains on something else (reflow: cached pairs), and wrap_prepare(prepare) -> prepare
    wraps the factory's prepare (labels, condition dropout) to carry what else its batches hold. notes: lines
    the job prints."""

    loss_fn: LossFn
    objective: MakeObjective = DenoisingObjective
    data: object | None = None
    wrap_prepare: Callable[[Prepare], Prepare] | None = None
    notes: list[str] = field(default_factory=list)


def _no_budget(**_) -> int | None:
    return None


def _one_student(**_) -> dict[int, int]:
    return {}


@dataclass(frozen=True)
class DistillMethod:
    """A distillation method: see the module docstring for the three functions."""

    name: str
    config: Callable[..., dict]
    build: Callable[..., DistillPlan]
    train_steps: Callable[..., int | None] = _no_budget
    summary: str = ""
    students: Callable[..., dict[int, int]] = _one_student

    def check_options(self, options: dict) -> dict:
        """`options` checked against build's keyword-only parameters (unknown name: the list of valid ones)."""
        return check_keywords(self.build, options, f"distill method {self.name!r} (--set distill.options.*)",
                              skip=("ctx",), keyword_only=True)
