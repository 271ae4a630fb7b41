"""Consistency distillation (CD) and consistency training (CT): the loss, its curriculum, the objective.

Song et al. 2023 ("Consistency Models", Algorithms 2 and 3) and the improved recipe of Song & Dhariwal 2023
("Improved Techniques for Training Consistency Models", iCT), written in EDM's frame x~ = x_t / alpha,
sigma~ = sigma / alpha of the run's process (difflab.param.consistency), on the Karras grid

    sigma_i = (sigma_min^(1/rho) + (i - 1) / (N - 1) (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho,  i = 1..N.

One update draws n, z ~ N(0, I) and

    x_{n+1} = alpha(t_{n+1}) (x0 + sigma_{n+1} z)
    x^_n    = one teacher ODE step (Heun or Euler in sigma~, dx~/dsigma~ = eps_hat) from x_{n+1}   (CD)
            = alpha(t_n) (x0 + sigma_n z), the same z                                              (CT)
    loss    = lambda(sigma_n) d(f_theta(x_{n+1}, t_{n+1}), f_theta-(x^_n, t_n))

with theta- an EMA of theta (CD, Song et al. 2023: mu = 0.95 at N = 18) or theta itself under stop-grad
(iCT), whose two calls then draw the same dropout masks (ECT's shared mask: the global RNG is rewound
between them). iCT's choices: the pseudo-Huber metric d(x, y) = sqrt(||x - y||^2 + c^2) - c, c = 0.00054 sqrt(d);
the curriculum N(k) = min(s0 2^floor(k / K'), s1) + 1, K' = floor(K / (log2 floor(s1 / s0) + 1)) over K
training steps; n drawn with p(n) proportional to erf((ln sigma_{n+1} - P_mean) / (sqrt(2) P_std)) -
erf((ln sigma_n - P_mean) / (sqrt(2) P_std)) (P_mean = -1.1, P_std = 2); lambda(sigma_n) = 1 / (sigma_{n+1} -
sigma_n). The curriculum step k is the objective's own update count, saved in its state: a resumed run
draws the same N(k) as the uninterrupted one.

ECT's continuous schedule (Geng et al. 2024, "Consistency Models Made Easy", sec. 3; schedule=ect) replaces
the grid: a level sigma_t ~ lognormal(P_mean, P_std) (clipped to [sigma_min, sigma_max]) and its partner

    sigma_r = max(0, sigma_t (1 - n(sigma_t) / q^(a + 1))),   n(s) = 1 + k sigmoid(-b s),   a = floor(k_step / d),

with d = K / stages, so the gap sigma_t - sigma_r shrinks by q at every stage. Where sigma_r < sigma_min the
target is x0 itself (the boundary condition): at stage 0 most low-noise pairs are denoising score matching,
and training moves from diffusion to consistency as the gap closes. lambda = 1 / (sigma_t - sigma_r) and
the pseudo-Huber metric stay (ECT's adaptive weighting is pseudo-Huber's gradient).
"""

from __future__ import annotations

import contextlib
import copy
import math
from functools import partial

import torch
from torch import Tensor, nn

from difflab.distill.base import DistillContext, DistillMethod, DistillPlan
from difflab.param.consistency import SIGMA_MAX, SIGMA_MIN
from difflab.param.parameterization import X0, coefficients, get_parameterization
from difflab.train.objective import DenoisingObjective
from difflab.train.rng import capture_rng, restore_rng
from difflab.utils.errors import DifflabError, check_choice
from difflab.utils.keywords import check_keywords
from difflab.utils.tensors import append_dims

f64 = torch.float64
SAMPLE_SIGMA = 0.8  # the sampler's last evaluated level (2 steps: sigma~ = 80, 0.8); docs/benchmarks.md's sweep
CONSISTENCY_GRID = {"sigma_max": SIGMA_MAX, "sigma_min": SAMPLE_SIGMA}  # the karras grid's options
NOISES = ("lognormal", "uniform")
WEIGHTINGS = ("reciprocal", "uniform")
METRICS = ("pseudo_huber", "l2")
SOLVERS = ("heun", "euler")
SCHEDULES = ("ict", "ect")


# ---- the pieces of the recipe -------------------------------------------------------------------------
def pseudo_huber(x: Tensor, y: Tensor, c: float | None = None) -> Tensor:
    """Per-sample sqrt(||x - y||^2 + c^2) - c (iCT sec. 3.3), c = 0.00054 sqrt(d) by default (d = features)."""
    diff = (x - y).flatten(1)
    if c is None:
        c = 0.00054 * math.sqrt(diff.shape[1])
    return torch.sqrt(diff.square().sum(1) + c**2) - c


def curriculum_steps(k: int, total_steps: int, s0: int = 10, s1: int = 1280) -> int:
    """iCT's discretization N(k) = min(s0 2^floor(k / K'), s1) + 1, K' = floor(K / (log2 floor(s1 / s0) + 1))."""
    k_prime = max(1, math.floor(total_steps / (math.log2(s1 // s0) + 1)))
    return min(s0 * 2 ** (k // k_prime), s1) + 1


def karras_sigmas(n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = 7.0) -> Tensor:
    """The N ascending noise levels sigma_1 = sigma_min .. sigma_N = sigma_max (module docstring), float64."""
    ramp = torch.linspace(0, 1, n, dtype=f64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (lo + ramp * (hi - lo)) ** rho


def lognormal_probabilities(sigmas: Tensor, p_mean: float = -1.1, p_std: float = 2.0) -> Tensor:
    """p(n) for n = 1..N-1: the lognormal N(P_mean, P_std^2) mass of [sigma_n, sigma_{n+1}] (iCT eq. 10)."""
    cdf = torch.erf((torch.log(sigmas) - p_mean) / (math.sqrt(2) * p_std))
    mass = cdf[1:] - cdf[:-1]
    return mass / mass.sum()


def ect_stage(k: int, total_steps: int, stages: int) -> int:
    """ECT's stage a = floor(k / d), d = K / stages, held at stages - 1 past the curriculum's end."""
    return min(k * stages // total_steps, stages - 1)


def ect_partner(sigma_t: Tensor, stage: int, q: float = 2.0, k: float = 8.0, b: float = 1.0) -> Tensor:
    """ECT's mapping sigma_r = max(0, sigma_t (1 - (1 + k sigmoid(-b sigma_t)) / q^(stage + 1))) (module docstring)."""
    shrink = (1 + k * torch.sigmoid(-b * sigma_t)) / q ** (stage + 1)
    return (sigma_t * (1 - shrink)).clamp(min=0)


def sigma_to_t(process, sigma: Tensor) -> Tensor:
    """The time whose sigma(t) / alpha(t) is `sigma` (log-SNR -ln sigma)."""
    return process.t_from_log_snr(-torch.log(sigma.to(f64))).to(f64)


def _eps(denoiser, x: Tensor, t: Tensor, cond) -> Tensor:
    """E[eps | x_t] from any denoiser (the contract's parameterization conversion)."""
    param = get_parameterization(denoiser.parameterization)
    k = coefficients(param, denoiser.process, t, x.ndim, x.dtype)
    return param.to_x0_eps(denoiser(x, t, cond), x, k).eps


def teacher_step(teacher, x: Tensor, t: Tensor, t_next: Tensor, cond=None, solver: str = "heun") -> Tensor:
    """One probability-flow step of `teacher` from (x, t) to t_next < t, per sample, in EDM's frame:
    x~ = x / alpha, dx~/dsigma~ = eps_hat; Euler x~' = x~ + (sigma~' - sigma~) eps_hat, Heun averages eps_hat
    at both ends (Karras et al. 2022, Algorithm 1). Returns x at t_next (alpha(t_next) x~')."""
    process = teacher.process
    a, a_next = process.alpha(t), process.alpha(t_next)
    h = append_dims(process.sigma(t_next) / a_next - process.sigma(t) / a, x.ndim).to(x.dtype)
    x_s = x / append_dims(a, x.ndim).to(x.dtype)
    eps = _eps(teacher, x, t, cond)
    scale_next = append_dims(a_next, x.ndim).to(x.dtype)
    x_next = scale_next * (x_s + h * eps)
    if solver == "heun":
        x_next = scale_next * (x_s + h * 0.5 * (eps + _eps(teacher, x_next, t_next, cond)))
    return x_next


# ---- the loss -------------------------------------------------------------------------------------------
class ConsistencyLoss:
    """Per-sample consistency loss (module docstring); teacher None is consistency training.

    steps: a fixed N (CD's default 18), or None for iCT's curriculum N(k) over total_steps with (s0, s1).
    schedule=ect (teacher-free only) draws the pairs of ECT's continuous schedule instead (module
    docstring: ect_q, ect_k, ect_b, stages over total_steps). `k` (the curriculum step) and `target` (theta-; None = the trained model under stop-grad) are set by
    ConsistencyObjective. The trained model must be an x0 predictor (model.preconditioning=consistency).
    """

    def __init__(self, teacher=None, *, steps: int | None = None, total_steps: int | None = None, s0: int = 10,
                 s1: int = 1280, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = 7.0,
                 noise: str = "lognormal", p_mean: float = -1.1, p_std: float = 2.0,
                 weighting: str = "reciprocal", metric: str = "pseudo_huber", huber_c: float | None = None,
                 solver: str = "heun", schedule: str = "ict", ect_q: float = 2.0, ect_k: float = 8.0,
                 ect_b: float = 1.0, stages: int = 8):
        for name, value, choices in (("noise", noise, NOISES), ("weighting", weighting, WEIGHTINGS),
                                     ("metric", metric, METRICS), ("solver", solver, SOLVERS),
                                     ("schedule", schedule, SCHEDULES)):
            check_choice(f"consistency {name}", value, choices)
        if schedule == "ect":
            if teacher is not None or steps is not None:
                raise DifflabError("the ect schedule is consistency training's (no teacher, no fixed steps=N)")
            if not (ect_q > 1 and ect_k >= 0 and ect_b > 0 and isinstance(stages, int) and stages >= 1):
                raise DifflabError(f"the ect schedule needs ect_q > 1, ect_k >= 0, ect_b > 0 and an integer "
                                   f"stages >= 1; got {ect_q}, {ect_k}, {ect_b}, {stages!r}")
        if steps is None and not (isinstance(total_steps, int) and total_steps >= 1):
            raise DifflabError("the consistency curriculum needs its length in steps: set train.max_steps or "
                               "total_steps (or a fixed discretization with steps=N)")
        if steps is not None and steps < 2:
            raise DifflabError(f"a consistency discretization needs at least 2 noise levels; got steps={steps}")
        if not 0 < sigma_min < sigma_max:
            raise DifflabError(f"consistency noise levels need 0 < sigma_min < sigma_max; got {sigma_min}, {sigma_max}")
        if not (1 <= s0 <= s1):
            raise DifflabError(f"the curriculum needs 1 <= s0 <= s1; got s0={s0}, s1={s1}")
        self.teacher, self.steps, self.total_steps, self.s0, self.s1 = teacher, steps, total_steps, s0, s1
        self.sigma_min, self.sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)
        self.noise, self.p_mean, self.p_std, self.weighting = noise, p_mean, p_std, weighting
        self.metric, self.huber_c, self.solver = metric, huber_c, solver
        self.schedule, self.ect_q, self.ect_k, self.ect_b, self.stages = schedule, ect_q, ect_k, ect_b, stages
        self.k = 0
        self.target: nn.Module | None = None

    def discretization(self) -> int:
        """N at the current step k: fixed, or the curriculum's N(k)."""
        return self.steps if self.steps is not None else curriculum_steps(self.k, self.total_steps, self.s0, self.s1)

    def index_probabilities(self, sigmas: Tensor) -> Tensor:
        """p(n) over the N - 1 intervals: lognormal (iCT) or uniform (Song et al. 2023)."""
        if self.noise == "uniform":
            return torch.full((sigmas.numel() - 1,), 1.0 / (sigmas.numel() - 1), dtype=f64)
        return lognormal_probabilities(sigmas, self.p_mean, self.p_std)

    def levels(self, batch: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """(sigma_n, sigma_{n+1}) per sample, float64 on the CPU: an interval of the Karras grid drawn with
        p(n) (ict), or ECT's (sigma_r, sigma_t) at the current stage (ect; sigma_r may be 0)."""
        gen_device = generator.device if generator is not None else torch.device("cpu")
        if self.schedule == "ect":
            z = torch.randn(batch, generator=generator, device=gen_device, dtype=f64).cpu()
            s_t = (self.p_mean + self.p_std * z).exp().clamp(self.sigma_min, self.sigma_max)
            stage = ect_stage(self.k, self.total_steps, self.stages)
            return ect_partner(s_t, stage, self.ect_q, self.ect_k, self.ect_b), s_t
        sigmas = karras_sigmas(self.discretization(), self.sigma_min, self.sigma_max, self.rho)
        n = torch.multinomial(self.index_probabilities(sigmas).to(gen_device), batch, replacement=True,
                              generator=generator).cpu()
        return sigmas[n], sigmas[n + 1]

    def distance(self, x: Tensor, y: Tensor) -> Tensor:
        """d(x, y) per sample (B,): pseudo-Huber sqrt(||x - y||^2 + c^2) - c (iCT) or ||x - y||^2 (l2)."""
        return pseudo_huber(x, y, self.huber_c) if self.metric == "pseudo_huber" else (x - y).flatten(1).square().sum(1)

    def __call__(self, model, x0: Tensor, cond=None, generator: torch.Generator | None = None) -> Tensor:
        """(B,) lambda(sigma_n) d(f_theta(x_{n+1}, t_{n+1}), sg[f_theta-(x^_n, t_n)]) (Song et al. 2023, Alg. 2
        and 3): n ~ p(n), x_{n+1} = alpha(t_{n+1}) (x0 + sigma_{n+1} z), x^_n one teacher step from it (CD) or
        alpha(t_n) (x0 + sigma_n z) with the same z (CT), or x0 where sigma_n < sigma_min (ECT's r = 0);
        module docstring."""
        if get_parameterization(model.parameterization) is not X0:
            raise DifflabError("consistency training fits an x0-predicting consistency function: set "
                               "model.preconditioning=consistency")
        process, device, dtype = model.process, x0.device, x0.dtype
        s_n, s_next = self.levels(x0.shape[0], generator)  # (B,) float64
        at_boundary = s_n < self.sigma_min  # only ECT's pairs reach below the grid
        t_n = sigma_to_t(process, s_n.clamp(min=self.sigma_min)).to(device)
        t_next = sigma_to_t(process, s_next).to(device)
        z = torch.randn(x0.shape, generator=generator, device=device, dtype=dtype)

        def scale(t: Tensor) -> Tensor:  # x_t = alpha x~
            return append_dims(process.alpha(t), x0.ndim).to(dtype)

        x_next = scale(t_next) * (x0 + append_dims(s_next.to(device), x0.ndim).to(dtype) * z)
        shared = capture_rng() if self.target is None else None
        with torch.no_grad():
            if self.teacher is None:
                x_n = scale(t_n) * (x0 + append_dims(s_n.to(device), x0.ndim).to(dtype) * z)
            else:
                x_n = teacher_step(self.teacher, x_next, t_next, t_n, cond, self.solver)
            target = (self.target if self.target is not None else model)(x_n, t_n, cond)
            if bool(at_boundary.any()):
                target = torch.where(append_dims(at_boundary.to(device), x0.ndim), x0, target)
        if shared is not None:  # the stop-grad target and the trained call draw the same dropout masks (ECT)
            restore_rng(shared)
        d = self.distance(model(x_next, t_next, cond), target.detach())
        w = 1.0 / (s_next - s_n) if self.weighting == "reciprocal" else torch.ones_like(s_n)
        return w.to(device=device, dtype=d.dtype) * d


# ---- the objective -------------------------------------------------------------------------------------
class ConsistencyObjective(DenoisingObjective):
    """DenoisingObjective (AdamW, accumulation, clipping, warm-up) on a ConsistencyLoss that counts its
    updates as the curriculum step k, and with target_ema = mu keeps CD's target network theta- <- mu theta-
    + (1 - mu) theta after every update. k and theta- are in the state dict, so resume is exact."""

    def __init__(self, model: nn.Module, loss_fn: ConsistencyLoss, config, accelerator,
                 target_ema: float | None = None):
        if not isinstance(loss_fn, ConsistencyLoss):
            raise DifflabError(f"ConsistencyObjective trains a ConsistencyLoss: pass one as the trainer's loss_fn; "
                               f"got {type(loss_fn).__name__}")
        if target_ema is not None and not 0 <= target_ema < 1:
            raise DifflabError(f"the target network's EMA rate mu must lie in [0, 1); got {target_ema!r}")
        self.target = None if target_ema is None else copy.deepcopy(model).requires_grad_(False).train(False)
        super().__init__(model, loss_fn, config, accelerator)
        self.mu, self.k = target_ema, 0
        loss_fn.target = self.target

    @torch.no_grad()
    def _update_target(self) -> None:
        targets = list(self.target.parameters())
        torch._foreach_lerp_(targets, [p.detach() for p in self.params], 1.0 - self.mu)

    def update(self, batches, generator, need_norm, commit):
        """DenoisingObjective's update at curriculum step k; inside the commit block, after the optimizer step,
        theta- <- mu theta- + (1 - mu) theta (torch lerp with weight 1 - mu) and k <- k + 1."""
        self.loss_fn.k = self.k

        @contextlib.contextmanager
        def counted():
            with commit():
                yield
                if self.target is not None:
                    self._update_target()
                self.k += 1

        return super().update(batches, generator, need_norm, counted)

    def state_dict(self) -> dict:
        target = None if self.target is None else self.target.state_dict()
        return {**super().state_dict(), "consistency_step": self.k, "target": target}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.k = int(state["consistency_step"])
        if self.target is not None:
            self.target.load_state_dict(state["target"])


def training_objective(options: dict, total_steps: int | None):
    """(loss_fn, MakeObjective) of consistency training from scratch; options are ConsistencyLoss keywords
    (teacher-free), total_steps the curriculum's K unless options name one."""
    options = check_keywords(ConsistencyLoss, {"total_steps": total_steps, **options},
                             "model.objective_options for consistency_training", skip=("teacher",))
    return ConsistencyLoss(None, **options), ConsistencyObjective


# ---- the distillation method (difflab distill RUN --method consistency) -----------------------------------
def _config(teacher_config: dict, *, sample_steps: int = 2, sample_sigma: float = SAMPLE_SIGMA, **_) -> dict:
    """The student run: the teacher's network inside the consistency preconditioning, sampled by the
    multistep consistency sampler on a Karras grid from sigma_max (the second level at `sample_sigma`)."""
    return {"model": {"preconditioning": "consistency"},
            "sample": {"sampler": "consistency", "steps": sample_steps, "schedule": "karras",
                       "schedule_options": {"sigma_max": SIGMA_MAX, "sigma_min": sample_sigma}}}


def _build(ctx: DistillContext, *, steps: int = 18, solver: str = "heun", target: str = "ema",
           target_ema: float = 0.95, metric: str = "pseudo_huber", sigma_min: float = SIGMA_MIN,
           sigma_max: float = SIGMA_MAX, rho: float = 7.0, sample_steps: int = 2,
           sample_sigma: float = SAMPLE_SIGMA) -> DistillPlan:
    """CD (Song et al. 2023, Algorithm 2): N fixed, n uniform, lambda = 1; theta- the EMA (target=ema) or
    stop-grad theta (target=stopgrad, iCT)."""
    check_choice("consistency target", target, ("ema", "stopgrad"))
    loss = ConsistencyLoss(ctx.teacher, steps=steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho,
                           noise="uniform", weighting="uniform", metric=metric, solver=solver)
    objective = partial(ConsistencyObjective, target_ema=target_ema if target == "ema" else None)
    return DistillPlan(loss, objective, notes=[f"consistency distillation: N = {steps}, {solver} teacher steps, "
                                               f"target {target}"])


CONSISTENCY = DistillMethod("consistency", _config, _build,
                            summary="consistency distillation (Song et al. 2023) with iCT's pseudo-Huber metric")


# ---- consistency tuning (difflab distill RUN --method consistency_tuning) --------------------------------
def _tuning_build(ctx: DistillContext, *, total_steps: int = 1000, schedule: str = "ict", s0: int = 10,
                  s1: int = 320, ect_q: float = 2.0, ect_k: float = 8.0, ect_b: float = 1.0, stages: int = 8,
                  metric: str = "pseudo_huber", sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                  rho: float = 7.0, p_mean: float = -1.1, p_std: float = 2.0, sample_steps: int = 2,
                  sample_sigma: float = SAMPLE_SIGMA) -> DistillPlan:
    """Consistency training started from a trained diffusion model (Geng et al. 2024, "Consistency Models Made
    Easy", ECT: a diffusion model is the consistency model of the coarsest discretization, so CT refines it
    instead of starting from noise): the teacher-free CT pair x^_n = alpha(t_n)(x0 + sigma_n z) of the module
    docstring on iCT's discrete curriculum N(k) = s0 -> s1 over total_steps (schedule=ict, the default: on the
    digits teacher, 1000 steps, it scores FDD 9.6 at 4 NFE on seed 0 against 12.2 for ECT's) or ECT's
    continuous schedule (schedule=ect: the gap sigma_t - sigma_r divided by ect_q at each of `stages` stages
    over total_steps, x0 the target where sigma_r falls below sigma_min); lambda = 1 / (sigma_t - sigma_r), the stop-grad target
    and pseudo-Huber metric of iCT. The student starts from the teacher's weights (the distill job's init) and
    the teacher is never called."""
    check_choice("consistency tuning schedule", schedule, SCHEDULES)
    grid = {"s0": s0, "s1": s1} if schedule == "ict" else {"ect_q": ect_q, "ect_k": ect_k, "ect_b": ect_b,
                                                           "stages": stages}
    loss = ConsistencyLoss(None, total_steps=total_steps, schedule=schedule, sigma_min=sigma_min,
                           sigma_max=sigma_max, rho=rho, noise="lognormal", p_mean=p_mean, p_std=p_std,
                           weighting="reciprocal", metric=metric, **grid)
    shape = (f"iCT's curriculum N = {curriculum_steps(0, total_steps, s0, s1)} -> {s1 + 1}" if schedule == "ict"
             else f"ECT's schedule, the gap divided by {ect_q:g} at each of {stages} stages")
    return DistillPlan(loss, ConsistencyObjective, notes=[
        f"consistency tuning: consistency training from the teacher's weights, {shape} over {total_steps} "
        f"steps, no teacher calls"])


def _tuning_steps(*, total_steps: int = 1000, **_) -> int:
    """The curriculum's length: the default budget (training on past it keeps N = s1 + 1)."""
    return total_steps


CONSISTENCY_TUNING = DistillMethod("consistency_tuning", _config, _tuning_build, _tuning_steps,
                                   summary="consistency training from the teacher's weights (ECT, Geng et al. 2024)")
