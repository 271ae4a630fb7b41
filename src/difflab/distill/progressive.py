"""Progressive distillation (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion
Models", Algorithm 2; seed 000's closing section): a student learns two teacher DDIM steps in one, then
becomes the teacher, halving the step count N -> N/2 -> ... -> final_steps within one run.

On the uniform grid of 2N teacher steps, t_i = 1 - i / (2N), a student step starts at t = t_{2j}
(j ~ U{0..N-1}), t' = t_{2j+1}, t'' = t_{2j+2}. With z_t = alpha_t x + sigma_t eps, the teacher's two
DDIM steps (eta = 0; every step x_s = alpha_s x0_hat + (sigma_s / sigma_t)(z_t - alpha_t x0_hat)) give
x_{t''}; the x0 target that makes ONE student DDIM step t -> t'' land on x_{t''} is (Algorithm 2)

    x~ = (x_{t''} - (sigma_{t''} / sigma_t) z_t) / (alpha_{t''} - (sigma_{t''} / sigma_t) alpha_t),

and the student's x0 estimate (its own parameterization, converted by difflab.param) regresses it with the
paper's weighting of the x0 error: 'truncated_snr' w = max(SNR(t), 1) (sec. 4, "truncated SNR"; the
default) or 'snr_plus_one' w = SNR(t) + 1 (which is the v-prediction loss ||v - v_hat||^2 on a VP process).

Phases: phase k (k = 0..K-1) trains the student of N_k = start_steps / 2^(k+1) steps for phase_steps
optimizer steps (one count for every phase, or a list of K counts, one per phase: the early phases, whose
student of many steps starts close to its teacher's 2N steps, may take fewer than the last ones). Phase 0 is
taught by the loaded teacher. A phase's result is its EMA student (what is sampled and checkpointed at the
phase's end), so phase k >= 1 starts by loading that EMA into the student and freezing a copy of it as the
teacher (the paper's "student becomes the teacher"; the raw weights sample worse than their average: the
8-step digits student of docs/benchmarks.md scores FDD 7.1 raw and 3.8 as its EMA). The
phase counter and the phase teacher's weights live in the objective's state_dict, so a resumed run continues
the same phase exactly. The optimizer runs on across phases (its Adam moments carry over). The EMA restarts
with every phase: its ramp-up clock (`ema_images`, EDM's half-life ramp-up, difflab.train.ema) counts the
images of the current phase only, and `config` sets the ramp-up to 1/8 (a phase of L images ends with a
half-life of L/8, capped at 1/8 of the longest phase), so the EMA at the end of a phase averages that phase's
own student. Option lr_anneal (on by default) decays the learning rate linearly within each phase, lr (1 - j / L)
at the phase's update j of L (after the run's warm-up), so each student ends its phase at a small step size
(the digits 4-step student: FDD 6.38 without it, 5.45 with it, docs/benchmarks.md).
"""

from __future__ import annotations

import bisect
import copy
import itertools
import math

import torch
from torch import Tensor, nn

from difflab.distill.base import DistillContext, DistillMethod, DistillPlan
from difflab.sampling.grids import uniform_time
from difflab.train.objective import DenoisingObjective
from difflab.utils.errors import DifflabError, check_choice
from difflab.utils.tensors import append_dims

WEIGHTINGS = ("truncated_snr", "snr_plus_one")


# ---- the target, exactly ---------------------------------------------------------------------------
def ddim_step(x: Tensor, x0: Tensor, a_t: Tensor, s_t: Tensor, a_s: Tensor, s_s: Tensor) -> Tensor:
    """One deterministic DDIM step t -> s: x_s = alpha_s x0 + (sigma_s / sigma_t)(x_t - alpha_t x0)
    (Song et al. 2021, eq. 12 with eta = 0; difflab.sampling.ddim on a per-sample time)."""
    return a_s * x0 + (s_s / s_t) * (x - a_t * x0)


def progressive_target(z_t: Tensor, x_t2: Tensor, a_t: Tensor, s_t: Tensor, a_t2: Tensor, s_t2: Tensor) -> Tensor:
    """The x0 target x~ whose single DDIM step t -> t'' from z_t lands on x_t2 (Salimans & Ho 2022, Alg. 2):
    x~ = (x_{t''} - (sigma_{t''}/sigma_t) z_t) / (alpha_{t''} - (sigma_{t''}/sigma_t) alpha_t). The
    denominator is (alpha_{t''} sigma_t - sigma_{t''} alpha_t) / sigma_t > 0 because log-SNR grows toward t''."""
    r = s_t2 / s_t
    return (x_t2 - r * z_t) / (a_t2 - r * a_t)


def _coeffs(process, t: Tensor, ndim: int) -> tuple[Tensor, Tensor]:
    """(alpha(t), sigma(t)) in float64, shaped to broadcast against a batch of `ndim` dimensions."""
    return append_dims(process.alpha(t), ndim), append_dims(process.sigma(t), ndim)


def two_teacher_steps(teacher, z_t: Tensor, times: tuple[Tensor, Tensor, Tensor], cond=None) -> Tensor:
    """x_{t''}: two teacher DDIM steps t -> t' -> t'' from z_t (times: per-sample (B,) tensors), in z_t's
    dtype with float64 coefficients cast once per step."""
    t, t1, t2 = times
    (a_t, s_t), (a_1, s_1), (a_2, s_2) = (_coeffs(teacher.process, tt, z_t.ndim) for tt in times)
    cast = {"dtype": z_t.dtype, "device": z_t.device}
    x0 = teacher.predict(z_t, t.to(**cast), cond).x0
    x1 = ddim_step(z_t, x0, *(v.to(**cast) for v in (a_t, s_t, a_1, s_1)))
    x0 = teacher.predict(x1, t1.to(**cast), cond).x0
    return ddim_step(x1, x0, *(v.to(**cast) for v in (a_1, s_1, a_2, s_2)))


def x0_weight(process, t: Tensor, weighting: str) -> Tensor:
    """The weight on the x0 error: max(SNR, 1) ('truncated_snr') or SNR + 1 ('snr_plus_one'), float64."""
    snr = process.snr(t)
    return torch.clamp(snr, min=1.0) if weighting == "truncated_snr" else snr + 1.0


# ---- the loss of one phase -------------------------------------------------------------------------
class ProgressiveLoss:
    """loss_fn(model, x0, cond, generator) -> (B,) weighted x0 errors against the two-step target of the
    current teacher on the grid of 2 * student_steps steps (module docstring). `teacher` and `student_steps`
    are set by the objective at each phase."""

    def __init__(self, teacher, student_steps: int, weighting: str = "truncated_snr"):
        self.weighting = check_choice("progressive weighting", weighting, WEIGHTINGS)
        self.set_phase(teacher, student_steps)

    def set_phase(self, teacher, student_steps: int) -> None:
        self.teacher, self.student_steps = teacher, int(student_steps)
        self.grid = uniform_time(teacher.process, 2 * self.student_steps)  # float64, t_0 = 1 ... t_2N = 0

    def times(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """(t, t', t'') per sample (float64 CPU): j ~ U{0..N-1}, t = grid[2j], t' = grid[2j+1], t'' = grid[2j+2]."""
        device = generator.device if generator is not None else torch.device("cpu")
        j = torch.randint(0, self.student_steps, (n,), generator=generator, device=device).cpu()
        return self.grid[2 * j], self.grid[2 * j + 1], self.grid[2 * j + 2]

    def targets(self, x0: Tensor, cond, generator: torch.Generator):
        """(z_t, t, x~, w): the noised input, its times, the target and the weights; no gradients."""
        t, t1, t2 = self.times(x0.shape[0], generator)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        process = self.teacher.process
        (a_t, s_t), (a_2, s_2) = _coeffs(process, t, x0.ndim), _coeffs(process, t2, x0.ndim)
        cast = {"dtype": x0.dtype, "device": x0.device}
        z_t = a_t.to(**cast) * x0 + s_t.to(**cast) * eps
        with torch.no_grad():
            x_t2 = two_teacher_steps(self.teacher, z_t, (t, t1, t2), cond)
            target = progressive_target(z_t, x_t2, *(v.to(**cast) for v in (a_t, s_t, a_2, s_2)))
        w = x0_weight(process, t, self.weighting).to(**cast)
        return z_t, t.to(**cast), target, w

    def __call__(self, model, x0: Tensor, cond=None, generator: torch.Generator | None = None) -> Tensor:
        z_t, t, target, w = self.targets(x0, cond, generator)
        x0_hat = model.predict(z_t, t, cond).x0
        return w * (x0_hat - target).pow(2).flatten(1).mean(1)


# ---- phases ----------------------------------------------------------------------------------------
def phase_plan(start_steps: int, final_steps: int) -> list[int]:
    """The student step counts of the phases: start/2, start/4, ..., final (each a halving)."""
    if start_steps < 2 or final_steps < 1 or final_steps >= start_steps:
        raise DifflabError(f"progressive distillation halves start_steps down to final_steps: need start_steps >= 2 and "
                           f"1 <= final_steps < start_steps; got {start_steps} and {final_steps}")
    ratio = start_steps // final_steps
    if start_steps % final_steps or ratio & (ratio - 1):
        raise DifflabError(f"start_steps / final_steps must be a power of two (e.g. 64 and 1, or 32 and 4); got "
                           f"{start_steps} / {final_steps}")
    return [start_steps >> k for k in range(1, int(math.log2(ratio)) + 1)]


def _frozen_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval().requires_grad_(False)


class ProgressiveObjective(DenoisingObjective):
    """DenoisingObjective on ProgressiveLoss that moves to the next phase when the current one's updates are
    done (`phase_steps`: one count for every phase, or one per phase): the student's current weights become the
    (frozen) teacher and the student's step count halves."""

    def __init__(self, model, loss_fn: ProgressiveLoss, config, accelerator, *, phases: list[int],
                 phase_steps: int | list[int], teacher0, lr_anneal: bool = True):
        self.phases, self.teacher0, self.lr_anneal = list(phases), teacher0, bool(lr_anneal)
        self.phase_steps = _phase_steps(phase_steps, len(self.phases))
        self.ends = list(itertools.accumulate(self.phase_steps))  # the update count at which each phase ends
        super().__init__(model, loss_fn, config, accelerator)  # its LR schedule reads the phases (lr_factor)
        self.milestones = frozenset(self.ends)  # each phase's student: checkpointed there, never pruned
        self.updates, self.phase = 0, 0
        self.phase_teacher: nn.Module | None = None  # the frozen student copy teaching phases k >= 1
        self.ema = None  # the trainer's EMA (bind_ema): each new phase starts from it

    def bind_ema(self, ema) -> None:
        """The trainer's EMA, whose weights (the phase's sampled student) start the next phase."""
        self.ema = ema

    def _enter(self, phase: int, teacher_state: dict | None = None) -> None:
        """Make `phase` current. A new phase >= 1 (no saved teacher) first loads the EMA into the student, then
        freezes a copy of it as the teacher; a resumed one loads the saved teacher weights."""
        self.phase = phase
        if phase == 0:
            self.phase_teacher = None
            self.loss_fn.set_phase(self.teacher0, self.phases[0])
            return
        if teacher_state is None and self.ema is not None:
            self.ema.copy_to(self.model)  # the phase's result is its EMA: the student and teacher go on from it
        teacher = _frozen_copy(self.model)
        if teacher_state is not None:
            teacher.load_state_dict(teacher_state)
        self.phase_teacher = teacher
        self.loss_fn.set_phase(teacher, self.phases[phase])

    def lr_factor(self, step: int) -> float:
        """The warm-up, times (lr_anneal) a linear decay within each phase: 1 - (step - start) / L at the
        phase's update step - start of L, so its last update runs at 1 / L of the rate; past the schedule the
        last phase's last factor."""
        factor = super().lr_factor(step)
        if not self.lr_anneal:
            return factor
        k = min(bisect.bisect_right(self.ends, step), len(self.ends) - 1)
        start, length = (self.ends[k - 1] if k else 0), self.phase_steps[k]
        return factor * max(1.0 - (step - start) / length, 1.0 / length)

    def update(self, batches, generator, need_norm, commit):
        """One DenoisingObjective update in the phase whose span holds `updates` (the last phase after the
        schedule), entered first when it changed (the student's copy becomes the frozen teacher)."""
        due = min(bisect.bisect_right(self.ends, self.updates), len(self.phases) - 1)
        if due != self.phase:
            self._enter(due)
        out = super().update(batches, generator, need_norm, commit)
        self.updates += 1
        return out

    def ema_images(self) -> int:
        """The EMA ramp-up's clock: images of the current phase before this update (the trainer's EMA restarts
        with every phase: at a phase's first update the half-life is ~0, so the EMA becomes the student)."""
        start = self.ends[self.phase - 1] if self.phase else 0
        return (self.updates - start) * self.config.batch_size

    @property
    def student_steps(self) -> int:
        return self.phases[self.phase]

    def progress_note(self) -> str | None:
        """A line for the user when the run stopped before its last phase ended (its sample config names the
        final step count, which the student has not learnt yet); None once the schedule is done."""
        done = self.ends[-1]
        if self.updates >= done:
            return None
        return (f"progressive distillation stopped in phase {self.phase + 1} of {len(self.phases)} (a "
                f"{self.student_steps}-step student, {self.updates} of {done} steps): resume with --resume to "
                f"reach {self.phases[-1]} step(s), or sample it with --steps {self.student_steps}")

    def state_dict(self) -> dict:
        teacher = None if self.phase_teacher is None else {k: v.detach().clone() for k, v in
                                                           self.phase_teacher.state_dict().items()}
        return {**super().state_dict(), "progressive": {"updates": self.updates, "phase": self.phase,
                                                        "teacher": teacher}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        saved = state["progressive"]
        self.updates = int(saved["updates"])
        self._enter(int(saved["phase"]), saved["teacher"])


# ---- the method ------------------------------------------------------------------------------------
def _phase_steps(phase_steps: int | list[int], phases: int) -> list[int]:
    """The optimizer steps of each of the `phases` phases: one count for all, or a list of one count per phase."""
    steps = [phase_steps] * phases if isinstance(phase_steps, int) else list(phase_steps)
    if len(steps) != phases:
        raise DifflabError(f"distill.options.phase_steps lists {len(steps)} phase lengths for {phases} phases "
                           f"(start_steps halved down to final_steps): give {phases} counts, or one for every phase")
    if not all(isinstance(k, int) and k >= 1 for k in steps):
        raise DifflabError(f"distill.options.phase_steps must be >= 1 optimizer steps per phase; got {phase_steps}")
    return steps


def build(ctx: DistillContext, *, start_steps: int = 64, final_steps: int = 1, phase_steps: int | list[int] = 500,
          weighting: str = "truncated_snr", lr_anneal: bool = True) -> DistillPlan:
    """Progressive distillation of ctx.teacher into ctx.student: halving from start_steps teacher DDIM steps
    (uniform in t) to final_steps student steps, phase_steps optimizer steps per phase (or a list, one count per
    phase), with the paper's weighting (truncated_snr or snr_plus_one); lr_anneal decays the learning rate
    linearly within each phase (ProgressiveObjective.lr_factor)."""
    phases = phase_plan(start_steps, final_steps)
    steps = _phase_steps(phase_steps, len(phases))
    loss = ProgressiveLoss(ctx.teacher, phases[0], weighting)

    def objective(model, loss_fn, config, accelerator):
        return ProgressiveObjective(model, loss_fn, config, accelerator, phases=phases, phase_steps=steps,
                                    teacher0=ctx.teacher, lr_anneal=lr_anneal)

    return DistillPlan(loss, objective, notes=[f"phases (student steps): {phases}, optimizer steps: {steps}"])


#: the EMA half-life at the end of a phase, as a fraction of the phase's images (the ramp-up of its per-phase clock)
EMA_RAMPUP = 0.125


def config(teacher: dict, *, start_steps: int = 64, final_steps: int = 1, phase_steps: int | list[int] = 500,
           **_) -> dict:
    """The student run's sampler (DDIM on the uniform grid it was distilled on, final_steps steps) and its EMA:
    restarted at every phase (ProgressiveObjective.ema_images) with a ramp-up of 1/8, capped at 1/8 of the
    longest phase in images, so each phase's sampled student is that phase's own average."""
    longest = max(_phase_steps(phase_steps, len(phase_plan(start_steps, final_steps))))
    batch = int(teacher.get("train", {}).get("batch_size", 128))
    return {"sample": {"sampler": "ddim", "schedule": "uniform", "steps": final_steps, "options": {},
                       "schedule_options": {}},
            "train": {"ema": float(max(1, longest * batch // 8)), "ema_rampup": EMA_RAMPUP}}


def students(*, start_steps: int = 64, final_steps: int = 1, phase_steps: int | list[int] = 500, **_) -> dict[int, int]:
    """Student steps -> the optimizer step at which its phase ends (its checkpoint): {32: 500, 16: 1000, ...}."""
    phases = phase_plan(start_steps, final_steps)
    return dict(zip(phases, itertools.accumulate(_phase_steps(phase_steps, len(phases))), strict=True))


def train_steps(*, start_steps: int = 64, final_steps: int = 1, phase_steps: int | list[int] = 500, **_) -> int:
    """Every phase's steps: their sum (len(phases) x phase_steps for one count)."""
    return sum(_phase_steps(phase_steps, len(phase_plan(start_steps, final_steps))))


PROGRESSIVE = DistillMethod("progressive", config, build, train_steps,
                            summary="two teacher DDIM steps in one, halving (Salimans & Ho 2022)", students=students)
