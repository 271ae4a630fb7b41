"""A virtual Brownian tree: one Brownian path W on [0, 1] per seed, queried at any time, so that an SDE
sampler sees the same path whatever its grid (DESIGN example 8; k-diffusion's BrownianTreeNoiseSampler,
after torchsde's BrownianTree; Li et al. 2020, 'Scalable Gradients for SDEs', sec. 4).

W(0) = 0 and W(1) ~ N(0, I). Inside a dyadic interval [a, b] with known ends, the midpoint follows the
Brownian bridge, W(m) = (W(a) + W(b)) / 2 + sqrt((b - a) / 4) Z, where Z is drawn from a generator seeded by
(seed, depth, index): every node is a pure function of the seed, nothing is stored but the last path.
A query descends to an interval shorter than `tol` and finishes with the bridge at t itself. The noise for
a step from t to t_next is the standardized increment (W(t) - W(t_next)) / sqrt(t - t_next), which is
N(0, I) and, on a finer grid, splits into the increments of the sub-steps.

Per-sample seeds give each sample its own tree (rows drawn one generator at a time, like EDM's per-sample
generators). Cost: about log2(1 / tol) normal draws per query, so this is meant for SDE studies, not speed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from difflab.sampling.core import NoiseSource
from difflab.utils.errors import DifflabError

_MASK = (1 << 64) - 1


def _mix(*values: int) -> int:
    """SplitMix64-style hash of a tuple of integers (deterministic across runs and platforms)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & _MASK
        h ^= h >> 29
    return h & ((1 << 63) - 1)


class BrownianNoise(NoiseSource):
    """Brownian-tree noise shaped like `like`, from one seed or one seed per sample."""

    def __init__(self, like: Tensor, seed: int | Sequence[int], tol: float = 2.0**-26):
        self.shape, self.dtype, self.device = tuple(like.shape), like.dtype, like.device
        if isinstance(seed, Sequence):
            if len(seed) != self.shape[0]:
                raise DifflabError(f"got {len(seed)} per-sample seeds for a batch of {self.shape[0]}")
            self.seeds: list[int] | None = [int(s) for s in seed]
            self.seed = None
        else:
            self.seeds, self.seed = None, int(seed)
        if not 0 < tol < 0.5:
            raise DifflabError(f"tol must lie in (0, 0.5); got {tol!r}")
        self.tol = tol
        self._path: list[tuple[float, float, Tensor, Tensor]] = []  # (a, b, W(a), W(b)) per depth
        self._extra = torch.Generator().manual_seed(_mix(self.seed if self.seed is not None else self.seeds[0], -1))
        self._cache: dict[float, Tensor] = {}

    def _normal(self, *key: int) -> Tensor:
        if self.seeds is None:
            g = torch.Generator().manual_seed(_mix(self.seed, *key))
            z = torch.randn(self.shape, generator=g, dtype=torch.float64)
        else:
            rows = [torch.randn(self.shape[1:], generator=torch.Generator().manual_seed(_mix(s, *key)),
                                dtype=torch.float64) for s in self.seeds]
            z = torch.stack(rows)
        return z

    def value(self, t: float) -> Tensor:
        """W(t) (float64, CPU), t in [0, 1]."""
        if not 0.0 <= t <= 1.0:
            raise DifflabError(f"Brownian tree time must lie in [0, 1]; got {t!r}")
        if t in self._cache:
            return self._cache[t]
        if not self._path:
            self._path = [(0.0, 1.0, torch.zeros(self.shape, dtype=torch.float64), self._normal(0, 0, 0))]
        depth, index = 0, 0
        while True:
            a, b, wa, wb = self._path[depth]
            if t in (a, b) or b - a < self.tol:
                break
            m = 0.5 * (a + b)
            child = 2 * index + (t >= m)
            child_interval = (m, b) if t >= m else (a, m)
            if depth + 1 >= len(self._path) or self._path[depth + 1][:2] != child_interval:
                # the midpoint belongs to the parent node (depth, index): both children see the same W(m)
                w_m = 0.5 * (wa + wb) + math.sqrt((b - a) / 4) * self._normal(1, depth, index)
                self._path = self._path[: depth + 1]
                self._path.append((m, b, w_m, wb) if t >= m else (a, m, wa, w_m))
            depth, index = depth + 1, child
        if t == a:
            w = wa
        elif t == b:
            w = wb
        else:  # Brownian bridge at t inside the leaf interval
            frac = (t - a) / (b - a)
            w = wa + frac * (wb - wa) + math.sqrt((t - a) * (b - t) / (b - a)) * self._normal(2, depth, index)
        if len(self._cache) >= 4:
            self._cache.pop(next(iter(self._cache)))
        self._cache[t] = w
        return w

    def __call__(self, t: float, t_next: float) -> Tensor:
        lo, hi = min(t, t_next), max(t, t_next)
        if hi - lo <= 0:
            raise DifflabError("a Brownian increment needs two distinct times")
        z = (self.value(hi) - self.value(lo)) / math.sqrt(hi - lo)
        return z.to(device=self.device, dtype=self.dtype)

    def extra(self) -> Tensor:
        """Noise off the path (Langevin moves), from a generator seeded by the tree's seed."""
        return torch.randn(self.shape, generator=self._extra, dtype=torch.float64).to(self.device, self.dtype)
