"""MeanFlow distillation: a trained velocity model becomes a 1-4 step average-velocity model (Geng et al. 2025,
'Mean Flows for One-step Generative Modeling', with the teacher's velocity in the target; the loss and its
identity: difflab.objectives.meanflow).

The student is the teacher's network with an interval embedding added (cond["interval"] = t - r, its last
layer at zero), so it starts as the teacher: u_theta(z, r, t) = v_teacher(z, t) for every r, which is exact at
r = t and first-order right for short intervals. It regresses

    u_theta(z_t, r, t)  on  sg(v - (t - r) du_theta/dt),   v = the teacher's probability-flow velocity at (z_t, t),

with z_t drawn from the data by the run's own process, du/dt the JVP along (v, 0, 1); the teacher's v in place
of the conditional velocity alpha' x0 + sigma' eps is the lower-variance target of the distillation variant.
Sampled by the meanflow sampler (difflab.sampling.meanflow) on the uniform grid, 1 NFE per step.
"""

from __future__ import annotations

from difflab.distill.base import DistillContext, DistillMethod, DistillPlan
from difflab.objectives.meanflow import MeanFlowLoss
from difflab.objectives.time_sampling import TimeSampler
from difflab.param.parameterization import get_parameterization
from difflab.utils.errors import DifflabError


def _config(teacher: dict, *, sample_steps: int = 1, **_) -> dict:
    """The teacher's network with interval_embedding=true, velocity prediction, the meanflow sampler."""
    if sample_steps < 1:
        raise DifflabError(f"distill.options.sample_steps must be >= 1; got {sample_steps}")
    model = teacher.get("model", {})
    if model.get("parameterization") != "velocity" or model.get("preconditioning", "none") != "none":
        raise DifflabError("MeanFlow distillation starts from a velocity-prediction teacher without "
                           "preconditioning (its network becomes the average velocity at r = t); this teacher "
                           f"predicts {model.get('parameterization')!r} with preconditioning "
                           f"{model.get('preconditioning', 'none')!r}: distil it by progressive, consistency or reflow")
    return {"model": {"options": {**model.get("options", {}), "interval_embedding": True}},
            "sample": {"sampler": "meanflow", "schedule": "uniform", "steps": sample_steps, "options": {},
                       "schedule_options": {}}}


def _build(ctx: DistillContext, *, ratio_r_neq_t: float = 0.25, p: float = 1.0, c: float = 1e-3,
           time_mean: float = -0.4, time_std: float = 1.0, sample_steps: int = 1, train_steps: int = 2000) -> DistillPlan:
    """MeanFlowLoss with the teacher's velocity; (r, t) from the logit-normal (time_mean, time_std) density
    (the paper's -0.4, 1.0), r != t with probability ratio_r_neq_t; p, c: the adaptive weight. sample_steps /
    train_steps: the run's sampler steps and default budget (`_config`, `_train_steps`)."""
    if get_parameterization(ctx.student.parameterization).name != "velocity":
        raise DifflabError("the MeanFlow student predicts a velocity: leave model.parameterization to the method")
    if ctx.teacher.process.name != ctx.student.process.name:
        raise DifflabError(f"MeanFlow distillation keeps the teacher's process ({ctx.teacher.process.name}); the "
                           f"student's is {ctx.student.process.name}: leave process.* to the method")
    loss = MeanFlowLoss(ctx.teacher, TimeSampler("logit_normal", mean=time_mean, std=time_std),
                        ratio_r_neq_t=ratio_r_neq_t, p=p, c=c)
    return DistillPlan(loss, notes=[f"average velocity from the teacher's ODE velocity; r != t in "
                                    f"{ratio_r_neq_t:.0%} of the pairs"])


def _train_steps(*, train_steps: int = 2000, **_) -> int:
    """The default budget when the user gives neither --steps nor --minutes: distill.options.train_steps."""
    return train_steps


MEANFLOW = DistillMethod("meanflow", _config, _build, _train_steps,
                         summary="the teacher's flow as an average velocity for 1-4 step jumps (Geng et al. 2025)")
