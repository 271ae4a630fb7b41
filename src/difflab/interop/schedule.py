"""A diffusers scheduler config read as a difflab process, parameterization and default grid.

Two families (diffusers 0.42.1 names):

* DDPM-style configs (DDPM / DDIM / PNDM / DPMSolver* / UniPC / Euler* / LMS / DEIS ... with
  `num_train_timesteps`, `beta_schedule` or `trained_betas`): a `DiffusersVP`, the discrete VP chain whose
  table alphabar_i IS diffusers' float32 `alphas_cumprod` (held exactly in float64), built by diffusers'
  own scheduler class from the config, so every beta schedule, `trained_betas` and rounding is diffusers'.
  prediction_type epsilon / v_prediction / sample -> parameterization eps / v / x0.
* Flow-matching configs (FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler): rectified flow
  x_t = (1 - t) x0 + t eps (Esser et al. 2024, SD3 eq. 1-2), velocity prediction v = eps - x0, and the
  config's `shift` as the default grid, the resolution shift t' = s t / (1 + (s - 1) t) (SD3 eq. 23).

Time mapping (exact; T = num_train_timesteps):

* discrete VP: diffusers' 0-based timestep tau in 0..T-1 is difflab's step i = tau + 1 at t = (tau + 1) / T,
  so alpha(t)^2 = alphas_cumprod[tau]; between table points difflab's log-SNR is linear in t, which is
  diffusers' interpolation of log sigma~ = -lambda linear in tau (`_sigma_to_t`). The network receives
  tau = T t - 1 (a float off the table), the level of the x it is given.
* flow: diffusers' timestep is sigma T with sigma = t (x_t = (1 - sigma) x0 + sigma eps), so the network
  receives T t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from difflab.param.parameterization import Parameterization, get_parameterization
from difflab.process.base import NoiseProcess
from difflab.process.continuous import RectifiedFlow
from difflab.process.discrete import DiscreteVP
from difflab.sampling.grids import check_grid, discrete, shifted
from difflab.utils.errors import DifflabError

f64 = torch.float64
PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0", "flow_prediction": "velocity"}
FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler")


class DiffusersVP(DiscreteVP):
    """DiscreteVP whose table is a given alphas_cumprod, bit for bit (float32 values are exact in float64).

    DiscreteVP rebuilds alphabar as cumprod(1 - beta) in float64, which differs from diffusers' float32
    cumprod in the last bits; here the table is taken as given and beta_i = 1 - abar_i / abar_{i-1} is
    derived from it (informational: every coefficient difflab uses is read from alphabar or lambda).
    """

    name = "ddpm"

    def __init__(self, alphas_cumprod: Tensor, schedule: str = "diffusers"):
        abar = torch.as_tensor(alphas_cumprod).detach().to(f64).flatten().cpu()
        if abar.numel() < 1 or not bool(((abar > 0) & (abar < 1)).all()):
            raise DifflabError(
                "diffusers' alphas_cumprod must lie strictly inside (0, 1); a zero-terminal-SNR table "
                "(rescale_betas_zero_snr=True) has alphabar_T = 0: load it with rescale_betas_zero_snr=False"
            )
        prev = torch.cat([torch.ones(1, dtype=f64), abar[:-1]])
        super().__init__(betas=(1 - abar / prev).clamp(1e-300, 1 - 1e-16))
        self.schedule = schedule
        self.alphas_cumprod = abar
        self._lam = 0.5 * (torch.log(abar) - torch.log1p(-abar))

    def __repr__(self):
        return f"DiffusersVP(T={self.T}, schedule={self.schedule!r})"


@dataclass(frozen=True)
class DiffusersSchedule:
    """What a scheduler config says about sampling: process, parameterization, time scale and default grid.

    `timestep(t)` is the diffusers timestep the network is trained on at difflab time t (module doc).
    """

    process: NoiseProcess
    parameterization: Parameterization
    num_train_timesteps: int
    flow: bool
    shift: float = 1.0

    def timestep(self, t: Tensor) -> Tensor:
        """Diffusers' timestep at difflab time t: T t - 1 (VP; exact integers on the table) or T t (flow)."""
        T = self.num_train_timesteps
        tau = t.to(f64) * T - (0.0 if self.flow else 1.0)
        near = torch.round(tau)
        return torch.where((tau - near).abs() < 1e-6, near, tau)

    def time(self, timesteps) -> Tensor:
        """difflab times of diffusers timesteps (the inverse of `timestep`)."""
        tau = torch.as_tensor(timesteps).detach().to(f64).cpu()
        return (tau + (0.0 if self.flow else 1.0)) / self.num_train_timesteps

    def grid_from_timesteps(self, timesteps, end: float = 0.0) -> Tensor:
        """A difflab grid on diffusers' own timesteps (e.g. `scheduler.timesteps`), ending at `end`."""
        return check_grid(torch.cat([self.time(timesteps), torch.tensor([end], dtype=f64)]))

    def default_grid(self, steps: int) -> Tensor:
        """Trailing spacing on a VP table (starts at t = 1); the config's shift, applied once, on a flow."""
        if self.flow:
            return shifted(self.process, steps, shift=self.shift)
        return discrete(self.process, steps, spacing="trailing")


def _config_dict(config) -> dict:
    if hasattr(config, "config"):  # a scheduler object: its FrozenDict config omits the class name
        return {"_class_name": type(config).__name__, **dict(config.config)}
    return dict(config)


def schedule_from_config(config, *, shift: float | None = None) -> DiffusersSchedule:
    """The DiffusersSchedule of a diffusers scheduler config (a dict, a FrozenDict or a scheduler)."""
    import diffusers

    cfg = _config_dict(config)
    name = cfg.get("_class_name", "DDPMScheduler")
    T = int(cfg.get("num_train_timesteps", 1000))
    if name in FLOW_SCHEDULERS:
        if cfg.get("use_dynamic_shifting") and shift is None:
            raise DifflabError(
                f"{name} uses resolution-dependent shifting (use_dynamic_shifting=True), whose shift exp(mu) "
                "depends on the image size: pass shift=... (e.g. 3.0 for SD3 at 1024 px)"
            )
        for key in ("invert_sigmas", "shift_terminal", "use_karras_sigmas", "use_exponential_sigmas",
                    "use_beta_sigmas"):
            if cfg.get(key):
                raise DifflabError(f"the flow config sets {key}={cfg[key]!r}, which difflab does not read: "
                                   "unset it, and choose the grid with difflab's schedule instead")
        s = float(cfg.get("shift", 1.0) if shift is None else shift)
        if not s > 0 or not math.isfinite(s):
            raise DifflabError(f"shift must be a positive number; got {s!r}")
        return DiffusersSchedule(RectifiedFlow(), get_parameterization("velocity"), T, True, s)
    cls = getattr(diffusers, name, None)
    if cls is None or not hasattr(cls, "from_config"):
        cls = diffusers.DDPMScheduler
    sched = cls.from_config(cfg)
    if not hasattr(sched, "alphas_cumprod"):
        sched = diffusers.DDPMScheduler.from_config(cfg)
    ptype = cfg.get("prediction_type", "epsilon")
    if ptype not in PREDICTION_TYPES or ptype == "flow_prediction":
        raise DifflabError(
            f"unknown prediction_type {ptype!r} in the scheduler config; valid: epsilon, v_prediction, sample"
        )
    process = DiffusersVP(sched.alphas_cumprod, schedule=str(cfg.get("beta_schedule", "trained")))
    return DiffusersSchedule(process, get_parameterization(PREDICTION_TYPES[ptype]), T, False)
