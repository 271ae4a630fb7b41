"""What every sampler shares, written once: the grid's float64 table, the denoiser evaluated at precomputed
times, the noise source, and the per-step callback.

A sampler is a pure function `sampler(denoiser, x, ts, *, cond=None, generator=None, callback=None,
**options) -> x`. It builds a `Run`, precomputes its per-step coefficients from `run.alpha`, `run.sigma`,
`run.lam` (float64, before the loop), and walks the grid. Schedule arithmetic never happens inside the
loop: times, conversion coefficients and step coefficients are cast once to the sample's dtype and
device, and the loop only does tensor arithmetic (no host syncs).

Randomness is injected (DESIGN example 8): `generator` is None (torch's global RNG), a torch.Generator,
a sequence of generators (one per sample, EDM's per-sample seeds: sample b draws all its noise from its
own generator, so it does not depend on the batch it is drawn in), or a `NoiseSource` such as
`difflab.sampling.brownian.BrownianNoise`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from difflab.param.denoiser import is_denoiser
from difflab.param.parameterization import Coefficients, Prediction, get_parameterization
from difflab.sampling.grids import check_grid
from difflab.utils.errors import DifflabError
from difflab.utils.tensors import f64


class Step(NamedTuple):
    """What a callback receives after step i (from t to t_next): the new state and the x0 estimate used."""

    i: int
    n: int
    t: float
    t_next: float
    x: Tensor
    x0: Tensor


Callback = Callable[[Step], None]


class NoiseSource:
    """Standard normal noise shaped like the sample: `source(t, t_next)` for the stochastic part of the step
    from t to t_next (t > t_next), `source.extra()` for noise tied to no time interval (Langevin moves)."""

    def __call__(self, t: float, t_next: float) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def extra(self) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class GaussianNoise(NoiseSource):
    """Fresh N(0, I) draws from one generator, or from one generator per sample (a Python loop over the
    generators is the price of per-sample reproducibility; EDM's StackedRandomGenerator does the same)."""

    def __init__(self, like: Tensor, generator: torch.Generator | Sequence[torch.Generator] | None):
        self.shape, self.dtype, self.device = tuple(like.shape), like.dtype, like.device
        self.generator = generator
        if isinstance(generator, Sequence) and len(generator) != like.shape[0]:
            raise DifflabError(f"got {len(generator)} per-sample generators for a batch of {like.shape[0]}")

    def __call__(self, t: float, t_next: float) -> Tensor:
        g = self.generator
        if isinstance(g, Sequence):
            rows = [torch.randn(self.shape[1:], generator=gi, dtype=self.dtype, device=gi.device) for gi in g]
            return torch.stack(rows).to(self.device)
        return torch.randn(self.shape, generator=g, dtype=self.dtype, device=self.device)

    def extra(self) -> Tensor:
        return self(0.0, 0.0)


def as_noise_source(generator, like: Tensor) -> NoiseSource:
    """Accept None, a torch.Generator, a sequence of generators, or a ready NoiseSource."""
    if isinstance(generator, NoiseSource):
        return generator
    if generator is None or isinstance(generator, torch.Generator):
        return GaussianNoise(like, generator)
    if isinstance(generator, Sequence) and all(isinstance(g, torch.Generator) for g in generator):
        return GaussianNoise(like, list(generator))
    raise DifflabError(
        "generator must be None, a torch.Generator, a list of generators (one per sample) or a NoiseSource; "
        f"got {type(generator).__name__}"
    )


def _time_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else f64  # MPS has no float64


class Evaluator:
    """The denoiser at a fixed list of times: `ev(x, j)` -> Prediction(x0_hat, eps_hat) at times[j].

    Conversion coefficients come from difflab.param (the one place that knows prediction types), evaluated
    in float64 for all times at once and cast once; per call only the network and two tensor ops run.
    """

    def __init__(self, denoiser, times: Tensor, like: Tensor, cond=None):
        self.denoiser, self.cond = denoiser, cond
        self.parameterization = get_parameterization(denoiser.parameterization)
        k = self.parameterization.coefficients(denoiser.process, times, 1, f64)
        cast = [v.to(device=like.device, dtype=like.dtype) for v in k]
        self._k = [Coefficients(*(v[j] for v in cast)) for j in range(times.numel())]
        t_dev = times.to(device=like.device, dtype=_time_dtype(like.device))
        self._t = [t_dev[j].expand(like.shape[0]) for j in range(times.numel())]

    def __call__(self, x: Tensor, j: int) -> Prediction:
        raw = self.denoiser(x, self._t[j], self.cond)
        return self.parameterization.to_x0_eps(raw, x, self._k[j])

    def raw(self, x: Tensor, j: int, cond) -> tuple[Tensor, Coefficients]:
        """The denoiser's raw output at times[j] under `cond` (the run's, extended) and the coefficients there."""
        return self.denoiser(x, self._t[j], cond), self._k[j]


class Run:
    """One sampling call's shared state, built before the loop.

    alpha, sigma, lam: float64 CPU tensors at the grid points; at(x, i): the denoiser at ts[i];
    evaluator(times): the denoiser at extra times (Heun's churned time, a midpoint); noise(t, t_next);
    done(i, x, x0): report step i to the callback and return x.
    """

    def __init__(self, denoiser, x: Tensor, ts, *, cond=None, generator=None, callback: Callback | None = None):
        if not is_denoiser(denoiser):
            raise DifflabError(
                "the denoiser must be callable as D(x_t, t, cond) with .parameterization and .process attributes"
            )
        if not isinstance(x, Tensor) or x.ndim < 1 or x.shape[0] < 1:
            raise DifflabError(f"x must be a batch tensor of shape (B, ...); got {type(x).__name__}")
        if not x.is_floating_point():
            raise DifflabError(f"x must be a floating-point tensor; got {x.dtype}")
        self.process = denoiser.process
        self.ts = check_grid(ts)
        self.n = self.ts.numel() - 1
        self.alpha = self.process.alpha(self.ts).to(f64)
        self.sigma = self.process.sigma(self.ts).to(f64)
        self.lam = self.process.log_snr(self.ts).to(f64)
        param = get_parameterization(denoiser.parameterization)
        if param.needs_signal and float(self.alpha[0]) == 0.0:
            raise DifflabError(
                f"an {param}-prediction denoiser cannot estimate x0 where alpha(t) = 0 (t = 1 of rectified flow); "
                "start the grid below 1 (e.g. t_max=0.999) or use a v, x0 or velocity denoiser"
            )
        self.denoiser, self.cond, self.like = denoiser, cond, x
        self.noise = as_noise_source(generator, x)
        self.callback = callback
        self.at = Evaluator(denoiser, self.ts, x, cond)
        self.t = self.ts.tolist()  # Python floats for callbacks and noise intervals

    def evaluator(self, times: Tensor) -> Evaluator:
        """The denoiser at other precomputed times (float64 tensor)."""
        return Evaluator(self.denoiser, times.to(f64), self.like, self.cond)

    def done(self, i: int, x: Tensor, x0: Tensor) -> Tensor:
        if self.callback is not None:
            self.callback(Step(i, self.n, self.t[i], self.t[i + 1], x, x0))
        return x


def floats(v: Tensor) -> list[float]:
    """A float64 coefficient vector as Python floats: one host transfer before the loop, none inside."""
    return v.to(f64).tolist()


def lincomb(x: Tensor, a: float, terms: Sequence[tuple[float, Tensor]]) -> Tensor:
    """a x + sum_j w_j y_j with Python-float weights (zero weights skipped), one output allocation."""
    out = torch.mul(x, a)
    for w, y in terms:
        if w != 0.0:
            out.add_(y, alpha=w)
    return out


def check_unit_interval(name: str, value: float) -> float:
    """Options such as eta must lie in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise DifflabError(f"{name} must be a number in [0, 1]; got {value!r}")
    return float(value)


def check_nonnegative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0.0:
        raise DifflabError(f"{name} must be a number >= 0; got {value!r}")
    return float(value)
