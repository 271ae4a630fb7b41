"""Injected randomness: global seeding for training, generators and per-sample seeds for sampling.

Per-sample seeds follow EDM (Karras et al. 2022, generate.py): image i of a batch is drawn from its
own generator, so it is reproducible whatever batch it is generated in.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices). PYTHONHASHSEED (read only by child interpreters, which
    refuse values above 2**32 - 1) is set to seed mod 2**32."""
    os.environ["PYTHONHASHSEED"] = str(seed % 2**32)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeding the legacy global RNG is the point
    torch.manual_seed(seed)


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator | None:
    """A torch.Generator seeded with `seed` on `device`, or None for the global RNG."""
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def per_sample_noise(seeds: Sequence[int], shape: Sequence[int], device="cpu", dtype=torch.float32) -> Tensor:
    """Standard normal noise of shape (len(seeds), *shape), row i drawn from a generator seeded seeds[i]."""
    rows = [torch.randn(tuple(shape), generator=make_generator(s), dtype=dtype) for s in seeds]
    return torch.stack(rows).to(device)
