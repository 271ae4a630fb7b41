"""Parameterizations (eps, x0, v, velocity) as small objects with their exact conversions, and the denoiser
contract."""

from difflab.param.classifier import TimeClassifier
from difflab.param.denoiser import Denoiser, DenoiserWrapper, EDMDenoiser, NetworkDenoiser, is_denoiser
from difflab.param.parameterization import (
    EPS,
    PARAMETERIZATIONS,
    VELOCITY,
    X0,
    Coefficients,
    Parameterization,
    Prediction,
    V,
    check_parameterization,
    coefficients,
    get_parameterization,
    ode_velocity,
    score,
    target,
    to_x0_eps,
    x0_error_scale,
)

__all__ = [
    "EPS",
    "PARAMETERIZATIONS",
    "VELOCITY",
    "X0",
    "Coefficients",
    "Denoiser",
    "DenoiserWrapper",
    "EDMDenoiser",
    "NetworkDenoiser",
    "Parameterization",
    "Prediction",
    "TimeClassifier",
    "V",
    "check_parameterization",
    "coefficients",
    "get_parameterization",
    "is_denoiser",
    "ode_velocity",
    "score",
    "target",
    "to_x0_eps",
    "x0_error_scale",
]
