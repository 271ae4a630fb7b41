"""The denoiser contract: D(x_t, t, cond) -> prediction, with its parameterization and its process.

Samplers, guidance and the analysis code all take a `Denoiser`: any object with

* `__call__(x_t, t, cond=None) -> Tensor`, the raw prediction, with t a float tensor of shape (B,) in
  [0, 1] (0 = data, 1 = noise);
* `parameterization` (a difflab.param.Parameterization, or its name: eps, x0, v, velocity) and `process`
  (a NoiseProcess).

`predict` converts the raw output to (x0_hat, eps_hat) through the parameterization object, the one place
that knows the prediction types. `NetworkDenoiser` and `EDMDenoiser` turn a raw network
forward(x, c_noise, cond) into a Denoiser; the networks themselves know nothing of processes. A wrapper
around a denoiser (guidance, counting, a device view) subclasses `DenoiserWrapper`, which answers with the
wrapped denoiser's process and parameterization.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from difflab.param.parameterization import (
    X0,
    Coefficients,
    Parameterization,
    Prediction,
    get_parameterization,
)
from difflab.process.base import NoiseProcess
from difflab.utils.errors import DifflabError
from difflab.utils.tensors import append_dims


class Denoiser:
    """Mixin giving every denoiser `predict` and `coefficients` from its parameterization and process.

    Assigning a name to `parameterization` stores the registry object (looked up once, DifflabError on
    an unknown name).
    """

    process: NoiseProcess

    @property
    def parameterization(self) -> Parameterization:
        return self._parameterization

    @parameterization.setter
    def parameterization(self, value: str | Parameterization) -> None:
        self._parameterization = get_parameterization(value)

    def coefficients(self, x: Tensor, t: Tensor) -> Coefficients:
        """The parameterization's coefficients at t, shaped and typed like x."""
        return self.parameterization.coefficients(self.process, t, x.ndim, x.dtype)

    def predict(self, x: Tensor, t: Tensor, cond=None) -> Prediction:
        """(x0_hat, eps_hat) at (x_t, t)."""
        return self.parameterization.to_x0_eps(self(x, t, cond), x, self.coefficients(x, t))


class DenoiserWrapper(Denoiser):
    """A denoiser around `self.denoiser` that predicts in its parameterization, for its process."""

    def __init__(self, denoiser):
        if not is_denoiser(denoiser):
            raise DifflabError(
                "the denoiser must be callable as D(x_t, t, cond) with .parameterization and .process attributes"
            )
        self.denoiser = denoiser

    @property
    def process(self) -> NoiseProcess:
        return self.denoiser.process

    @property
    def parameterization(self) -> Parameterization:
        return get_parameterization(self.denoiser.parameterization)


class NetworkDenoiser(nn.Module, Denoiser):
    """A raw network as a denoiser: D(x_t, t, cond) = net(x_t, time_scale * t, cond).

    time_scale = 1000 puts continuous times on the scale of DDPM's integer steps, which is where
    sinusoidal time embeddings were designed to work (Ho et al. 2020). An average-velocity model's interval
    cond["interval"] = t - r (difflab.objectives.meanflow) is a time too and goes to the network on the same
    scale.
    """

    def __init__(self, net: nn.Module, process: NoiseProcess, parameterization: str, time_scale: float = 1000.0):
        super().__init__()
        self.net = net
        self.process = process
        self.parameterization = parameterization
        self.time_scale = float(time_scale)

    def forward(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        t = torch.as_tensor(t, device=x.device, dtype=x.dtype).expand(x.shape[0])
        if cond is not None and cond.get("interval") is not None:
            cond = {**cond, "interval": cond["interval"] * self.time_scale}
        return self.net(x, t * self.time_scale, cond)


class EDMDenoiser(nn.Module, Denoiser):
    """EDM preconditioning (Karras et al. 2022, Table 1) for any process with alpha(t) > 0.

    With x~ = x_t / alpha and sigma~ = sigma / alpha (x~ = x0 + sigma~ eps, EDM's scaled variable):
    D(x_t) = c_skip x~ + c_out F(c_in x~, c_noise) with c_skip = sd^2 / (sigma~^2 + sd^2),
    c_out = sigma~ sd / sqrt(sigma~^2 + sd^2), c_in = 1 / sqrt(sigma~^2 + sd^2), c_noise = ln(sigma~) / 4.
    The output is an x0 prediction; the network F sees unit-variance input and target at every t.
    """

    def __init__(self, net: nn.Module, process: NoiseProcess, sigma_data: float = 0.5):
        super().__init__()
        if not sigma_data > 0:
            raise DifflabError(f"sigma_data must be positive; got {sigma_data!r}")
        self.net, self.process, self.sigma_data = net, process, float(sigma_data)
        self.parameterization = X0

    def forward(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        alpha, sigma = self.process.alpha(t), self.process.sigma(t)
        s = sigma / alpha  # EDM sigma, float64
        sd2 = self.sigma_data**2
        c_skip = sd2 / (s**2 + sd2)
        c_out = s * self.sigma_data / torch.sqrt(s**2 + sd2)
        c_in = 1 / torch.sqrt(s**2 + sd2)
        c_noise = torch.log(s) / 4
        x_s = x / append_dims(alpha, x.ndim).to(x.dtype)
        F = self.net(append_dims(c_in, x.ndim).to(x.dtype) * x_s, c_noise.to(x.dtype), cond)
        return append_dims(c_skip, x.ndim).to(x.dtype) * x_s + append_dims(c_out, x.ndim).to(x.dtype) * F


def is_denoiser(obj) -> bool:
    """True for objects that honour the contract (callable with parameterization and process)."""
    return callable(obj) and hasattr(obj, "parameterization") and hasattr(obj, "process")


