"""The consistency function's boundary-condition preconditioning, as an x0-predicting denoiser.

Song et al. 2023 ("Consistency Models", sec. 3 and appendix C) parameterize the consistency function in
EDM's variance-exploding frame, x~ = x0 + sigma~ z on sigma~ in [sigma_min, sigma_max]:

    f(x~, sigma~) = c_skip(sigma~) x~ + c_out(sigma~) F(x~, sigma~),
    c_skip = sd^2 / ((sigma~ - sigma_min)^2 + sd^2),   c_out = sd (sigma~ - sigma_min) / sqrt(sd^2 + sigma~^2),

so c_skip(sigma_min) = 1 and c_out(sigma_min) = 0: f(x~, sigma_min) = x~ exactly, whatever F is.

On any process x_t = alpha x0 + sigma eps (VP, flow, VE) the same frame is x~ = x_t / alpha with
sigma~ = sigma / alpha (seed 003's generalized diffusion; EDM eq. 4 with s(t) = alpha): both probability-flow
ODEs have the same trajectories up to that scaling, so f is computed on x~ and is an estimate of x0 at
every t. The boundary time t_min is where sigma~(t_min) = sigma_min; there f(x_t, t_min) = x_t / alpha(t_min)
(= x_t exactly on a VE process, alpha = 1).

F is what an inner denoiser D (any parameterization, e.g. the teacher's own network, from which consistency
distillation starts) says in EDM's raw-output terms: D's x0 estimate is c_skip^EDM x~ + c_out^EDM F with
c_skip^EDM = sd^2 / (sigma~^2 + sd^2) and c_out^EDM = sigma~ sd / sqrt(sigma~^2 + sd^2) (Karras et al.
2022, Table 1). Then c_out / c_out^EDM = (sigma~ - sigma_min) / sigma~, and

    f = c_skip x~ + ((sigma~ - sigma_min) / sigma~) (x0_hat_D - c_skip^EDM x~),

which is bounded at every sigma~ > 0 (no division by a vanishing c_out^EDM) and equals D's x0 estimate up to
O(sigma_min / sigma~) away from the boundary: a student built around the teacher starts close to it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from difflab.param.denoiser import Denoiser, is_denoiser
from difflab.param.parameterization import X0
from difflab.utils.errors import DifflabError
from difflab.utils.tensors import append_dims

SIGMA_MIN = 0.002  # Song et al. 2023 / EDM: the smallest noise level, in sigma / alpha units
SIGMA_MAX = 80.0


def boundary_coefficients(s: Tensor, sigma_min: float, sigma_data: float) -> tuple[Tensor, Tensor]:
    """(c_skip, c_out / c_out^EDM) at sigma~ = s (float64): c_skip = sd^2 / ((s - s_min)^2 + sd^2) and the
    ratio (s - s_min) / s of the consistency c_out to EDM's (module docstring)."""
    sd2 = sigma_data**2
    return sd2 / ((s - sigma_min) ** 2 + sd2), (s - sigma_min) / s


class ConsistencyDenoiser(nn.Module, Denoiser):
    """f(x_t, t) of Song et al. 2023 around an inner denoiser; an x0 predictor for the inner one's process.

    denoiser: an nn.Module honouring the denoiser contract (NetworkDenoiser, EDMDenoiser, ...). sigma_min is
    the boundary noise level in sigma / alpha units, sigma_data the data's standard deviation (EDM's 0.5).
    """

    def __init__(self, denoiser: nn.Module, sigma_min: float = SIGMA_MIN, sigma_data: float = 0.5):
        super().__init__()
        if not is_denoiser(denoiser):
            raise DifflabError("the consistency preconditioning wraps a denoiser: D(x_t, t, cond) with "
                               ".parameterization and .process")
        if not (sigma_min > 0 and sigma_data > 0):
            raise DifflabError(f"sigma_min and sigma_data must be positive; got {sigma_min!r}, {sigma_data!r}")
        self.denoiser, self.sigma_min, self.sigma_data = denoiser, float(sigma_min), float(sigma_data)
        self.parameterization = X0

    @property
    def process(self):
        return self.denoiser.process

    def t_min(self) -> float:
        """The boundary time: sigma(t) / alpha(t) = sigma_min."""
        return float(self.process.t_from_log_snr(torch.tensor(-math.log(self.sigma_min), dtype=torch.float64)))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Also takes the inner denoiser's own state dict (no `denoiser.` keys): a distilled student starts
        from the teacher's weights (Song et al. 2023) with the teacher run's state dict as it is saved."""
        if state_dict and not any(k.startswith("denoiser.") for k in state_dict):
            return self.denoiser.load_state_dict(state_dict, strict=strict, assign=assign)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        """f = c_skip x~ + ((sigma~ - sigma_min) / sigma~) (x0_hat_D - c_skip^EDM x~), x~ = x_t / alpha,
        sigma~ = sigma / alpha (module docstring): an x0 estimate (B, ...)."""
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        alpha, sigma = self.process.alpha(t), self.process.sigma(t)  # float64
        c_skip, ratio = boundary_coefficients(sigma / alpha, self.sigma_min, self.sigma_data)
        c_skip_edm = self.sigma_data**2 / ((sigma / alpha) ** 2 + self.sigma_data**2)
        x_s = x / append_dims(alpha, x.ndim).to(x.dtype)  # x~ = x_t / alpha
        x0_hat = self.denoiser.predict(x, t, cond).x0
        k_skip, k_ratio, k_edm = (append_dims(v, x.ndim).to(x.dtype) for v in (c_skip, ratio, c_skip_edm))
        return k_skip * x_s + k_ratio * (x0_hat - k_edm * x_s)
