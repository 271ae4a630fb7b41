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


class Draws:
    """The random numbers of a batch of n samples: from one generator for the whole batch, or, given `seeds`,
    row i from its own generator seeded seeds[i] (EDM's per-sample seeds), so sample i's draws are the same in
    any batch. Successive calls continue the same streams. Values are made on the generators' device (CPU for
    seeds) and moved to `device`."""

    def __init__(self, n: int, *, generator: torch.Generator | None = None, seeds: Sequence[int] | None = None,
                 device: torch.device | str = "cpu"):
        if seeds is not None and len(seeds) != n:
            raise ValueError(f"Draws needs one seed per sample: {n} samples, {len(seeds)} seeds")
        self.n, self.device, self.generator = n, torch.device(device), generator
        self.generators = None if seeds is None else [make_generator(s) for s in seeds]

    def _draw(self, fn, shape: Sequence[int], dtype: torch.dtype) -> Tensor:
        shape = tuple(shape)
        if self.generators is None:
            where = self.generator.device if self.generator is not None else self.device
            return fn((self.n, *shape), generator=self.generator, dtype=dtype, device=where).to(self.device)
        if self.n == 0:
            return torch.empty((0, *shape), dtype=dtype, device=self.device)
        return torch.stack([fn(shape, generator=g, dtype=dtype) for g in self.generators]).to(self.device)

    def normal(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> Tensor:
        """(n, *shape) standard normal values."""
        return self._draw(torch.randn, shape, dtype)

    def uniform(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> Tensor:
        """(n, *shape) values uniform on [0, 1)."""
        return self._draw(torch.rand, shape, dtype)
