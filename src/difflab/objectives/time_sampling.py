"""Timestep densities p(t) for training (seed 003: "Sample t ~ p_t").

* uniform discrete: t = i / T with i uniform in {1, ..., T} (DDPM, seed 001 Algorithm 1);
* uniform continuous: t ~ U(t_min, 1) (Song et al. 2021);
* logit-normal(m, s): t = sigmoid(m + s n), n ~ N(0, 1) (Esser et al. 2024; seed 003's
  `torch.randn(()).sigmoid()` is m = 0, s = 1): more weight on the ambiguous middle noise levels;
* any of them followed by the resolution shift of seed 003 (difflab.process.shift_time).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from difflab.process.base import NoiseProcess
from difflab.process.time_warp import shift_time
from difflab.utils.errors import DifflabError, check_choice

TIME_SAMPLERS = ("uniform", "logit_normal")


@dataclass(frozen=True)
class TimeSampler:
    """Draws n training times in [t_min, 1] as float64 on `device`.

    kind "uniform" is discrete (t = i/T) on a DiscreteVP and continuous otherwise.
    """

    kind: str = "uniform"
    mean: float = 0.0  # logit-normal m
    std: float = 1.0  # logit-normal s
    shift: float = 1.0

    def __post_init__(self):
        check_choice("time sampler", self.kind, TIME_SAMPLERS)
        if not self.std > 0:
            raise DifflabError(f"logit-normal std must be positive; got {self.std!r}")
        if not self.shift > 0:
            raise DifflabError(f"time shift must be positive; got {self.shift!r}")

    def __call__(self, n: int, process: NoiseProcess, generator=None, device="cpu") -> Tensor:
        if self.kind == "uniform" and process.is_discrete:
            i = torch.randint(1, process.T + 1, (n,), generator=generator, device=device)
            t = i.to(torch.float64) / process.T
        else:
            if self.kind == "uniform":
                u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
            else:
                z = torch.randn(n, generator=generator, device=device, dtype=torch.float64)
                u = torch.sigmoid(self.mean + self.std * z)
            t = process.t_min + (1 - process.t_min) * u
        if self.shift != 1.0:
            t = shift_time(t, self.shift)
            if process.is_discrete:  # stay on the chain's grid
                t = torch.clamp(torch.round(t * process.T), 1, process.T) / process.T
        return t
