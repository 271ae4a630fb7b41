"""A fitted grid with its receipt: the times, what they were fitted for, and what the fit cost.

A grid fitted to a denoiser (difflab.sampling.optimize.fit_grid) is a one-time set-up cost: an adaptive
ODE solve and up to ~150 solver runs on a pilot batch. It is fitted once, saved (`to_dict`, JSON), and
reused by passing it as `schedule=` to difflab.sample; every table that uses it states `fit_nfe` beside
the sampling NFE, never inside it and never left out. A bespoke solver (difflab.sampling.bespoke) is a
fitted grid with its fitted weight table: sampler 'bespoke', `weights` set. A grid chosen by a sample-quality
metric instead of the ODE endpoint (difflab.sampling.time_search, e.g. a consistency model's times by FDD)
names the metric and its value on the selection samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from difflab.sampling.bespoke import check_weights
from difflab.sampling.grids import check_grid
from difflab.utils.errors import DifflabError

KIND = "difflab.fitted_grid"
VERSION = 1


def _optional(value, kind):
    return None if value is None else kind(value)


@dataclass(frozen=True)
class FittedGrid:
    """times: the grid (float64, steps + 1 times); sampler / options / steps: what it was fitted for;
    fit_nfe: denoiser calls the fit made (each on a batch of `pilot` samples); pilot_rmse: the fitted
    solver's RMSE to the exact ODE endpoint on the pilot batch (for 'bespoke': on its held-out part; None for a
    metric fit); process: repr of the denoiser's process; weights: the bespoke solver's (steps, steps) table,
    None for a grid; start: where the fit started ('<weights> on <grid>', or the start grid), a receipt only;
    metric / metric_value: a grid chosen by a sample metric (e.g. 'fdd') of `pilot` samples from `seed`, and
    that metric's value on them (None for a fit to the ODE endpoint)."""

    times: Tensor
    sampler: str
    steps: int
    fit_nfe: int
    pilot: int
    seed: int
    max_evals: int
    pilot_rmse: float | None
    process: str
    options: dict = field(default_factory=dict)
    weights: Tensor | None = None
    start: str | None = None
    metric: str | None = None
    metric_value: float | None = None

    def to_dict(self) -> dict:
        return {"kind": KIND, "version": VERSION, "sampler": self.sampler, "options": dict(self.options),
                "steps": self.steps, "times": [float(t) for t in self.times], "fit_nfe": self.fit_nfe,
                "pilot": self.pilot, "seed": self.seed, "max_evals": self.max_evals,
                "pilot_rmse": self.pilot_rmse, "process": self.process,
                **({} if self.weights is None else {"weights": self.weights.tolist()}),
                **({} if self.start is None else {"start": self.start}),
                **({} if self.metric is None else {"metric": self.metric, "metric_value": self.metric_value})}

    @classmethod
    def from_dict(cls, d: dict, where: str = "the fitted grid") -> FittedGrid:
        if not isinstance(d, dict) or d.get("kind") != KIND:
            raise DifflabError(f"{where} is not a difflab fitted grid (no \"kind\": \"{KIND}\")")
        if d.get("version") != VERSION:
            raise DifflabError(f"{where} has version {d.get('version')!r}; this difflab reads version {VERSION}: "
                               "fit it again with `difflab fit-schedule`")
        try:
            times = check_grid(d["times"])
            grid = cls(times, str(d["sampler"]), int(d["steps"]), int(d["fit_nfe"]), int(d["pilot"]),
                       int(d["seed"]), int(d["max_evals"]), _optional(d["pilot_rmse"], float), str(d["process"]),
                       dict(d.get("options") or {}),
                       None if d.get("weights") is None else check_weights(d["weights"], int(d["steps"])),
                       _optional(d.get("start"), str), _optional(d.get("metric"), str),
                       _optional(d.get("metric_value"), float))
        except KeyError as err:
            raise DifflabError(f"{where} lacks the field {err.args[0]!r}: fit it again with `difflab fit-schedule`") from None
        except (TypeError, ValueError) as err:
            raise DifflabError(f"{where} has a malformed field ({err}): fit it again with `difflab fit-schedule`") from None
        if times.numel() != grid.steps + 1:
            raise DifflabError(f"{where} says {grid.steps} steps but holds {times.numel()} times")
        return grid

    def check_use(self, process, sampler: str, steps: int, options: dict) -> Tensor:
        """The times, after checking that this grid was fitted for this process, sampler, steps and options."""
        wanted = (repr(process), sampler, steps, dict(options))
        have = (self.process, self.sampler, self.steps, dict(self.options))
        if wanted != have:
            raise DifflabError(
                f"this grid was fitted for sampler {self.sampler!r} with {self.steps} steps, options {self.options} "
                f"on {self.process}; it is asked for {sampler!r} with {steps} steps, options {dict(options)} on "
                f"{process!r}: fit one for that (`difflab fit-schedule RUN --steps {steps} --sampler {sampler}` "
                "or difflab.sampling.fit_grid)"
            )
        return self.times.to(torch.float64)
