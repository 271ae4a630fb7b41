"""MeanFlow: one-step generation by learning the average velocity (Geng et al. 2025, 'Mean Flows for
One-step Generative Modeling'; seed 003's rectified flow, seed 000's few-step outlook).

Along the probability-flow ODE dz/dt = v(z, t) the average velocity over [r, t] is

    u(z_t, r, t) = 1 / (t - r) * integral_r^t v(z_s, s) ds,   so   z_r = z_t - (t - r) u(z_t, r, t)

is one exact jump (difflab.sampling.meanflow). Differentiating (t - r) u = integral_r^t v ds in t along the
trajectory gives the MeanFlow identity

    u(z_t, r, t) = v(z_t, t) - (t - r) du/dt,   du/dt = v . d_z u + d_t u,

the total derivative being the Jacobian-vector product of u with the tangent (v, 0, 1) in (z, r, t)
(torch.func.jvp: one forward pass with dual numbers). Training regresses u_theta(z_t, r, t) on the
stop-gradient target v - (t - r) JVP, where v is the conditional velocity dx_t/dt = alpha'(t) x0 + sigma'(t)
eps (eps - x0 on rectified flow; unbiased for the marginal v, as in flow matching) or, distilling, a
teacher's probability-flow velocity at (z_t, t). At r = t the target is v: the loss is flow matching.

The model is a velocity denoiser whose network embeds the interval t - r as cond["interval"]
(difflab.nets.embeddings.ConditionEmbedding, interval_embedding=True): u(z, r, t) = D(z, t, cond + interval).
(r, t): two draws of the time sampler (paper: logit-normal, mean -0.4, std 1), t the larger; with probability
1 - ratio_r_neq_t (paper: 0.75) r = t. Loss: the paper's adaptive weighting, w = sg(1 / (||Delta||^2 + c)^p)
times ||Delta||^2 with Delta = u_theta - target, here with ||.||^2 the mean over the sample's entries (not the
sum: c keeps its meaning at every data size), p = 1, c = 1e-3.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from difflab.objectives.time_sampling import TimeSampler
from difflab.param.parameterization import get_parameterization, ode_velocity
from difflab.utils.cond import with_interval
from difflab.utils.errors import DifflabError
from difflab.utils.tensors import append_dims


def average_velocity(model, z: Tensor, r: Tensor, t: Tensor, cond=None) -> Tensor:
    """u(z, r, t) of a velocity denoiser whose network embeds the interval: D(z, t, cond + {interval: t - r})."""
    return model(z, t, with_interval(cond, t - r))


def meanflow_target(u_fn, z: Tensor, r: Tensor, t: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """(u, target): u = u_fn(z, r, t) and the MeanFlow identity's target v - (t - r) du/dt, du/dt the JVP of u_fn
    along (dz, dr, dt) = (v, 0, 1) (module doc), the target detached. u keeps its graph for the loss."""

    def u_of(z_, t_):
        return u_fn(z_, r, t_)

    with sdpa_kernel(SDPBackend.MATH):  # the fused CPU / flash kernels have no forward-mode derivative
        u, du_dt = torch.func.jvp(u_of, (z, t), (v, torch.ones_like(t)))
    target = v - append_dims(t - r, z.ndim).to(z.dtype) * du_dt
    return u, target.detach()


class MeanFlowLoss:
    """Per-sample MeanFlow loss (module doc): loss_fn(model, x0, cond, generator) -> (B,).

    teacher: None (v = the conditional velocity of the data) or a denoiser whose probability-flow velocity at
    (z_t, t) is v (MeanFlow distillation: lower variance, one more call). time_sampler draws r and t."""

    def __init__(self, teacher=None, time_sampler: TimeSampler | None = None, ratio_r_neq_t: float = 0.25,
                 p: float = 1.0, c: float = 1e-3):
        if not 0.0 <= ratio_r_neq_t <= 1.0:
            raise DifflabError(f"ratio_r_neq_t is a probability, in [0, 1]; got {ratio_r_neq_t!r}")
        if not (p >= 0 and c > 0):
            raise DifflabError(f"the adaptive weight needs p >= 0 and c > 0; got p={p!r}, c={c!r}")
        self.teacher = teacher
        self.time_sampler = time_sampler or TimeSampler("logit_normal", mean=-0.4, std=1.0)
        self.ratio, self.p, self.c = float(ratio_r_neq_t), float(p), float(c)

    def times(self, n: int, process, generator=None, device=None) -> tuple[Tensor, Tensor]:
        """(r, t), r <= t: two time draws sorted, and r = t where a uniform draw is >= ratio_r_neq_t."""
        a = self.time_sampler(n, process, generator=generator, device=device)
        b = self.time_sampler(n, process, generator=generator, device=device)
        t, r = torch.maximum(a, b), torch.minimum(a, b)
        same = torch.rand(n, generator=generator, device=device, dtype=t.dtype) >= self.ratio
        return torch.where(same, t, r), t

    def velocity(self, model, x0: Tensor, eps: Tensor, z: Tensor, t: Tensor, cond) -> Tensor:
        """v at (z_t, t): the conditional velocity, or the teacher's probability-flow velocity."""
        process = model.process
        if self.teacher is None:
            d_alpha, d_sigma = (append_dims(f(t), x0.ndim).to(x0.dtype) for f in (process.d_alpha, process.d_sigma))
            return d_alpha * x0 + d_sigma * eps
        param = get_parameterization(self.teacher.parameterization)
        k = param.coefficients(self.teacher.process, t, z.ndim, z.dtype)
        with torch.no_grad():
            return ode_velocity(param.to_x0_eps(self.teacher(z, t, cond), z, k), k).to(z.dtype)

    def __call__(self, model, x0: Tensor, cond=None, generator: torch.Generator | None = None) -> Tensor:
        if get_parameterization(model.parameterization).name != "velocity":
            raise DifflabError("MeanFlow trains an average velocity: set model.parameterization=velocity")
        r, t = self.times(x0.shape[0], model.process, generator=generator, device=x0.device)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        z = model.process.sample_xt(x0, t, eps)
        r, t = r.to(x0.dtype), t.to(x0.dtype)
        v = self.velocity(model, x0, eps, z, t, cond)
        u, target = meanflow_target(lambda z_, r_, t_: average_velocity(model, z_, r_, t_, cond), z, r, t, v)
        dtype = torch.promote_types(u.dtype, torch.float32)
        err = (u.to(dtype) - target.to(dtype)).square().flatten(1).mean(1)  # ||Delta||^2, mean over entries
        w = 1.0 / (err.detach() + self.c) ** self.p
        return w * err

    def __repr__(self) -> str:
        return (f"MeanFlowLoss(teacher={'yes' if self.teacher is not None else 'no'}, "
                f"time_sampler={self.time_sampler}, ratio_r_neq_t={self.ratio}, p={self.p}, c={self.c})")
