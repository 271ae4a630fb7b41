"""difflab samplers vs diffusers schedulers on the exact-mixture model seen as a diffusers model (docs/diffusers.md).

    OMP_NUM_THREADS=1 python benchmarks/diffusers_wrapped.py --cases ring --nfes 5 10 20 --json rows.json
    python benchmarks/diffusers_wrapped.py --pairs rows.json     # matched difflab / diffusers table

The exact Gaussian-mixture eps-model (difflab.analysis) is written as a diffusers-style module
forward(sample, timestep) -> (eps,), answering at diffusers' own noise level for the timestep, and loaded the
way a user's model is: its scheduler config (DDPMScheduler, linear betas 1e-4..0.02, T = 1000) read by
difflab.interop.schedule_from_config and the module wrapped by DiffusersDenoiser. benchmarks/peers.py (helper
E1's harness, reused unchanged) then runs every difflab sampler and grid on the wrapped denoiser and every
diffusers scheduler on the same module, from the same noise, RMSE to the exact probability-flow solution.
"""

from __future__ import annotations

import json
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


# the same algorithm on the same grid in both libraries (difflab label, diffusers label)
PAIRS = [("ddim/trailing", "DDIM/trailing"), ("dpmpp_2m/trailing", "DPM++2M/trailing"),
         ("dpmpp_2m/karras", "DPM++2M/karras"), ("dpmpp_3m/karras", "DPM++3M/karras"),
         ("unipc/karras", "UniPC-bh2-2/karras"), ("deis/karras", "DEIS-2/karras"), ("heun/karras", "Heun/karras"),
         ("plms/trailing", "PNDM-PLMS/trailing")]


def pairs_table(rows: list[dict]) -> str:
    """RMSE of matched difflab / diffusers configurations per NFE budget, then each library's best."""
    nfes = sorted({r["nfe_budget"] for r in rows})
    at = {(r["library"], r["config"], r["nfe_budget"]): r["rmse"] for r in rows}
    head = "| difflab / diffusers | " + " | ".join(f"NFE {k}" for k in nfes) + " |"
    lines = [head, "|---|" + "---|" * len(nfes)]

    def cell(lib, cfg, k):
        v = at.get((lib, cfg, k))
        return "-" if v is None else f"{v:.3g}"

    for ours, theirs in PAIRS:
        lines.append(f"| {ours} | " + " | ".join(cell("difflab", ours, k) for k in nfes) + " |")
        lines.append(f"| {theirs} | " + " | ".join(cell("diffusers", theirs, k) for k in nfes) + " |")
    for lib in ("difflab", "diffusers"):
        best = []
        for k in nfes:
            sub = [r for r in rows if r["library"] == lib and r["nfe_budget"] == k]
            b = min(sub, key=lambda r: r["rmse"])
            best.append(f"{b['rmse']:.3g} ({b['config']})")
        lines.append(f"| best {lib} | " + " | ".join(best) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--pairs"]:  # --pairs rows.json: the matched table from a finished run's --json
        print(pairs_table(json.loads(Path(argv[1]).read_text())))
        return 0
    for name, (make, n) in list(peers.CASES.items()):
        peers.CASES[name] = ((lambda make=make: WrappedMixture(make())), n)
    return peers.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
