"""Editing and control with a trained denoiser: SDEdit, inpainting (replacement, RePaint), deterministic
inversion and reconstruction, interpolation of noises and conditions. Every method composes with every
sampler and with guidance, because each is a grid, a start point or a denoiser wrapper handed to
difflab.sample."""

from difflab.editing.common import EditResult, check_strength, cut_grid
from difflab.editing.inpaint import METHODS, KnownRegion, check_mask, inpaint
from difflab.editing.interpolate import MixedCondition, slerp, slerp_frames
from difflab.editing.inversion import INVERSION_ORDERS, check_inversion_sampler, invert, reconstruct
from difflab.editing.sdedit import sdedit

__all__ = [
    "INVERSION_ORDERS",
    "METHODS",
    "EditResult",
    "KnownRegion",
    "MixedCondition",
    "check_inversion_sampler",
    "check_mask",
    "check_strength",
    "cut_grid",
    "inpaint",
    "invert",
    "reconstruct",
    "sdedit",
    "slerp",
    "slerp_frames",
]
