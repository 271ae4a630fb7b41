"""Classifier-free guidance as a denoiser wrapper (Ho & Salimans 2022; seeds 000, 001, 002, 003).

    y_guided = y_u + w (y_c - y_u)        (seed 000/001: eps~ = eps(x, 0) + s [eps(x, c) - eps(x, 0)])

in the wrapped denoiser's own parameterization y. That equals guidance on eps (or on x0, v, the velocity):
at fixed (x_t, t) every parameterization is affine in (x0, eps), y = c x0 + d eps, and (x0, eps) are tied by
x_t = alpha x0 + sigma eps, so a combination whose weights sum to one commutes with the conversion.
Seed 003 writes v_cfg = (1 + w') v_y - w' v_0: the same rule with w = 1 + w' (w = 1: no guidance, w = 0:
unconditional). In score terms (seed 002) it samples from p(x)^(1 - w) p(x | y)^w.

Both branches run in ONE batched call (the condition and its unconditional twin concatenated), so the
sampler's NFE count is unchanged while the batch doubles. Samplers never know guidance exists.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from difflab.param.denoiser import DenoiserWrapper
from difflab.utils.cond import Cond, cond_cat, cond_with_drop
from difflab.utils.errors import DifflabError


class ClassifierFreeGuidance(DenoiserWrapper):
    """Wrap `denoiser` so that D(x, t, cond) returns the guided prediction.

    scale: w above. uncond: None uses `cond` with "drop" = True (the learned null condition); a dict is a
    negative condition (same keys and batch as cond). interval=(t_lo, t_hi): guide only for t in it
    (Kynkaanniemi et al. 2024, 'Applying guidance in a limited interval'); elsewhere the conditional
    prediction is returned.
    """

    def __init__(
        self,
        denoiser,
        scale: float,
        uncond: Cond | None = None,
        interval: tuple[float, float] | None = None,
    ):
        if not (isinstance(scale, (int, float)) and not isinstance(scale, bool)) or scale != scale:
            raise DifflabError(f"guidance scale must be a number; got {scale!r}")
        if interval is not None and not (len(interval) == 2 and 0 <= interval[0] <= interval[1] <= 1):
            raise DifflabError(f"interval must be (t_lo, t_hi) with 0 <= t_lo <= t_hi <= 1; got {interval!r}")
        super().__init__(denoiser)
        self.scale, self.uncond, self.interval = float(scale), uncond, interval

    def __call__(self, x: Tensor, t: Tensor, cond: Cond | None = None) -> Tensor:
        if cond is None:
            raise DifflabError("classifier-free guidance needs a condition: pass cond (e.g. class_labels)")
        batch = x.shape[0]
        t = torch.as_tensor(t, device=x.device).expand(batch)
        keep = torch.zeros(batch, dtype=torch.bool, device=x.device)
        if self.uncond is None:  # both halves carry a "drop" mask so that their keys match
            uncond = cond_with_drop(cond, ~keep)
        else:
            uncond = cond_with_drop(self.uncond, keep)
        both = self.denoiser(torch.cat([x, x]), torch.cat([t, t]), cond_cat(cond_with_drop(cond, keep), uncond))
        y_c, y_u = both[:batch], both[batch:]
        guided = torch.lerp(y_u, y_c, self.scale)  # y_u + w (y_c - y_u)
        if self.interval is None:
            return guided
        inside = (t >= self.interval[0]) & (t <= self.interval[1])
        return torch.where(inside.reshape(-1, *([1] * (x.ndim - 1))), guided, y_c)


def classifier_free(scale: float, uncond: Cond | None = None, interval=None) -> Callable:
    """A guidance argument for difflab.sample: denoiser -> ClassifierFreeGuidance(denoiser, scale, ...)."""
    return lambda denoiser: ClassifierFreeGuidance(denoiser, scale, uncond, interval)
