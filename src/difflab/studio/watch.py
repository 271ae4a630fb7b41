"""A denoiser wrapper that reports every call to the page: the progress and the live x0_hat.

jobs.generate.generate() takes no per-step callback, so the studio watches the denoiser instead: each
call's raw output is turned into x0_hat by the model's own parameterization (Denoiser.predict's
conversion, x0_hat = parameterization.to_x0_eps(out, x_t, coefficients(t))), and the hook gets
(calls so far, t of the call, x0_hat of the first n rows; a guided batch is [cond, uncond]).
The hook may raise (Cancelled) to stop the sampler between two calls.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from difflab.param.denoiser import DenoiserWrapper


class Cancelled(Exception):
    """The page that asked for the job went away (or a newer job replaced it)."""


class Watched(DenoiserWrapper):
    def __init__(self, denoiser, n: int, hook: Callable[[int, float, Tensor], None]):
        super().__init__(denoiser)
        self.n, self.hook, self.calls = n, hook, 0

    def __call__(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        out = self.denoiser(x, t, cond)
        self.calls += 1
        x0_hat, _ = self.parameterization.to_x0_eps(out, x, self.coefficients(x, t))
        self.hook(self.calls, float(t.reshape(-1)[0]), x0_hat[: self.n].detach())
        return out
