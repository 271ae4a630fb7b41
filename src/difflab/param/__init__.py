"""Parameterizations (eps, x0, v, velocity), their exact conversions, and the denoiser contract."""

from difflab.param.classifier import TimeClassifier
from difflab.param.denoiser import Denoiser, EDMDenoiser, NetworkDenoiser, is_denoiser
from difflab.param.parameterization import (
    PARAMETERIZATIONS,
    Coefficients,
    Prediction,
    check_parameterization,
    coefficients,
    ode_velocity,
    score,
    target,
    to_x0_eps,
    x0_error_scale,
)

__all__ = [
    "PARAMETERIZATIONS",
    "Coefficients",
    "Denoiser",
    "EDMDenoiser",
    "NetworkDenoiser",
    "Prediction",
    "TimeClassifier",
    "check_parameterization",
    "coefficients",
    "is_denoiser",
    "ode_velocity",
    "score",
    "target",
    "to_x0_eps",
    "x0_error_scale",
]
