"""difflab samplers vs diffusers schedulers on the exact-mixture model seen as a diffusers model (docs/diffusers.md).

    OMP_NUM_THREADS=1 python benchmarks/diffusers_wrapped.py --cases ring --nfes 5 10 20 --markdown out.md

The exact Gaussian-mixture eps-model (difflab.analysis) is written as a diffusers-style module
forward(sample, timestep) -> (eps,), answering at diffusers' own noise level for the timestep, and loaded the
way a user's model is: its scheduler config (DDPMScheduler, linear betas 1e-4..0.02, T = 1000) read by
difflab.interop.schedule_from_config and the module wrapped by DiffusersDenoiser. benchmarks/peers.py (helper
E1's harness, reused unchanged) then runs every difflab sampler and grid on the wrapped denoiser and every
diffusers scheduler on the same module, from the same noise, RMSE to the exact probability-flow solution.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import peers  # noqa: E402

from difflab.interop import DiffusersDenoiser, schedule_from_config  # noqa: E402


class ExactModel(nn.Module):
    """The exact eps of a mixture as a diffusers model: eps(sample, tau) at difflab time t = (tau + 1) / T."""

    def __init__(self, exact, schedule):
        super().__init__()
        self.exact, self.schedule = exact, schedule

    def forward(self, sample, timestep, return_dict=False):
        t = self.schedule.time(timestep).to(sample.device).expand(sample.shape[0])
        return (self.exact(sample.to(torch.float64), t).to(sample.dtype),)


class WrappedMixture:
    """A peers.CASES entry whose denoiser is the wrapped diffusers-style model, not the mixture's own."""

    def __init__(self, mixture):
        self.mixture, self.dim = mixture, mixture.dim

    def denoiser(self, process, parameterization="eps"):
        import diffusers

        schedule = schedule_from_config(diffusers.DDPMScheduler(**peers.BETAS))
        return DiffusersDenoiser(ExactModel(self.mixture.denoiser(schedule.process, "eps"), schedule), schedule)


def main(argv=None) -> int:
    for name, (make, n) in list(peers.CASES.items()):
        peers.CASES[name] = ((lambda make=make: WrappedMixture(make())), n)
    return peers.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
