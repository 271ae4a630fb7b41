"""Tensor helpers, seeding and errors shared by every layer."""

from difflab.utils.errors import DifflabError, check_choice
from difflab.utils.seeding import make_generator, per_sample_noise, seed_everything
from difflab.utils.tensors import append_dims, f64

__all__ = [
    "DifflabError",
    "append_dims",
    "check_choice",
    "f64",
    "make_generator",
    "per_sample_noise",
    "seed_everything",
]
