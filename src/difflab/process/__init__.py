"""Noise processes x_t = alpha(t) x0 + sigma(t) eps, and the registry that names them."""

from difflab.process.base import NoiseProcess, check_time
from difflab.process.continuous import VESDE, VPSDE, CustomProcess, RectifiedFlow
from difflab.process.discrete import DiscreteVP, cosine_betas, linear_betas
from difflab.process.time_warp import shift_time

PROCESSES = {"ddpm": DiscreteVP, "vp": VPSDE, "ve": VESDE, "flow": RectifiedFlow}


def make_process(name: str, **kwargs) -> NoiseProcess:
    """Build a process by registry name: ddpm (discrete VP), vp (VP-SDE), ve (VE-SDE), flow (rectified flow)."""
    from difflab.utils.errors import check_choice

    check_choice("process", name, PROCESSES)
    return PROCESSES[name](**kwargs)


__all__ = [
    "PROCESSES",
    "VESDE",
    "VPSDE",
    "CustomProcess",
    "DiscreteVP",
    "NoiseProcess",
    "RectifiedFlow",
    "check_time",
    "cosine_betas",
    "linear_betas",
    "make_process",
    "shift_time",
]
