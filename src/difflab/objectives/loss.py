"""The denoising loss of seed 003's generalized diffusion, one small callable for every model.

    x0 ~ data, eps ~ N(0, I), t ~ p(t),  x_t = alpha(t) x0 + sigma(t) eps,
    y = c(t) x0 + d(t) eps  (the parameterization's target),
    loss = w(t) * mean_dims (y - D(x_t, t, cond))^2.

With eps-prediction, a uniform discrete p(t) and uniform weighting this is L_simple (seed 001,
Algorithm 1); with rectified flow, velocity prediction and uniform weighting it is seed 003's
||(z - x) - v_theta||^2. The loss returns UNREDUCED per-sample values; the trainer reduces.
"""

from __future__ import annotations

import torch
from torch import Tensor

from difflab.objectives.time_sampling import TimeSampler
from difflab.objectives.weighting import WEIGHTING_NAMES, WEIGHTINGS, check_weighting_options
from difflab.param.parameterization import coefficients, target, x0_error_scale
from difflab.utils.errors import DifflabError, check_choice


class DiffusionLoss:
    """Per-sample denoising loss; owns the time density and the weighting.

    The model is a denoiser (difflab.param contract): its `process` and `parameterization` decide
    x_t and the target, so a loss can never train one prediction type and sample another.
    weighting_kw are the weighting's options (difflab.objectives.weighting), checked here. The edm
    weighting takes sigma_data from the model when it carries one (EDMDenoiser); an explicit
    sigma_data that disagrees with the model's is refused.
    """

    def __init__(self, time_sampler: TimeSampler | None = None, weighting: str = "uniform", **weighting_kw):
        self.time_sampler = time_sampler or TimeSampler()
        self.weighting = check_choice("weighting", weighting, WEIGHTING_NAMES)
        self.weighting_kw = check_weighting_options(weighting, weighting_kw)

    def options_for(self, model) -> dict[str, float]:
        """The weighting's options for `model`: sigma_data follows the model's preconditioner."""
        kw = dict(self.weighting_kw)
        model_sd = getattr(model, "sigma_data", None)
        if self.weighting == "edm" and model_sd is not None:
            if "sigma_data" in kw and abs(kw["sigma_data"] - float(model_sd)) > 1e-12:
                raise DifflabError(f"the edm weighting's sigma_data={kw['sigma_data']} disagrees with the "
                                   f"model's preconditioner sigma_data={float(model_sd)}: drop the option or "
                                   "set the same value (model.sigma_data)")
            kw["sigma_data"] = float(model_sd)
        return kw

    def __call__(self, model, x0: Tensor, cond=None, generator: torch.Generator | None = None) -> Tensor:
        process, param = model.process, model.parameterization
        t = self.time_sampler(x0.shape[0], process, generator=generator, device=x0.device)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = process.sample_xt(x0, t, eps)
        k = coefficients(param, process, t, x0.ndim, x0.dtype)
        y = target(param, x0, eps, k)
        pred = model(x_t, t.to(x0.dtype), cond)
        dtype = torch.promote_types(pred.dtype, torch.float32)  # at least float32 under autocast
        mse = (pred.to(dtype) - y.to(dtype)).square().flatten(1).mean(1)
        if self.weighting == "uniform":
            return mse
        w_x0 = WEIGHTINGS[self.weighting](process, t, **self.options_for(model))
        scale = x0_error_scale(param, coefficients(param, process, t, 1, torch.float64)).reshape(-1)
        return (w_x0 * scale**2).to(mse.dtype) * mse

    def __repr__(self) -> str:
        return f"DiffusionLoss(time_sampler={self.time_sampler}, weighting={self.weighting!r})"
