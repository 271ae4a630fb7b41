"""Metrics for low-dimensional samples (2-D toys, flattened tiny images) and the memorization check.

* sliced Wasserstein-2 (Rabin et al. 2011; Bonneel et al. 2015): SW2^2 = E_theta W2^2(theta.X, theta.Y)
  over uniform directions theta on the sphere, each 1-D W2 exact from sorted projections;
* MMD^2 with a Gaussian RBF kernel, unbiased (Gretton et al. 2012, JMLR, eq. 3 and Lemma 6);
* sw2_floor: the SW2 between two independent exact sample sets, the value a perfect model reaches
  at this sample size (report "within 1.2x of the floor");
* sw2_ratio: a model's SW2 over that floor, both measured at the same sample sizes against one finite
  reference set (difflab eval's sw2_ratio; 1 = as good as fresh data at this sample size);
* memorization_check: nearest-neighbour distances of generated samples to the training set against
  those of held-out real samples (seed 000: "perfect training = only memorization").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from difflab.metrics.neighbours import DEFAULT_MAX_ELEMENTS, kth_neighbour_distance
from difflab.utils.errors import DifflabError

MEDIAN_MAX_POINTS = 2048


def _flat_pair(x: Tensor, y: Tensor, what: str, min_n: int = 1) -> tuple[Tensor, Tensor]:
    x, y = x.flatten(1).to(torch.float64), y.flatten(1).to(torch.float64)
    if x.shape[1] != y.shape[1]:
        raise DifflabError(f"{what}: sample dimensions differ ({x.shape[1]} vs {y.shape[1]})")
    if x.shape[0] < min_n or y.shape[0] < min_n:
        raise DifflabError(f"{what} needs at least {min_n} samples per set; got {x.shape[0]} and {y.shape[0]}")
    return x, y


def random_directions(dim: int, num_projections: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniform unit vectors on the sphere S^(dim-1), float64 (dim, num_projections)."""
    theta = torch.randn(dim, num_projections, generator=generator, dtype=torch.float64)
    return theta / theta.norm(dim=0, keepdim=True)


def _w2_squared_1d(px: Tensor, py: Tensor) -> Tensor:
    """Exact W2^2 between the empirical measures of the columns of px (N, P) and py (M, P) -> (P,).

    W2^2 = int_0^1 (F^-1(u) - G^-1(u))^2 du; the quantile functions are steps at i/N and j/M, so the
    integral is a sum over the merged breakpoints (with N = M: the mean of squared sorted differences).
    """
    xs, ys = px.sort(dim=0).values, py.sort(dim=0).values
    n, m = xs.shape[0], ys.shape[0]
    if n == m:
        return (xs - ys).square().mean(0)
    step = lambda k: torch.arange(1, k + 1, dtype=torch.float64) / k  # noqa: E731
    levels = torch.cat([step(n), step(m)]).unique()  # merged breakpoints, sorted
    widths = torch.diff(levels, prepend=levels.new_zeros(1))
    mid = levels - widths / 2
    ix = (mid * n).floor().long().clamp_max(n - 1)
    iy = (mid * m).floor().long().clamp_max(m - 1)
    return ((xs[ix] - ys[iy]).square() * widths[:, None]).sum(0)


def sliced_wasserstein2(
    x: Tensor, y: Tensor, num_projections: int = 256, generator: torch.Generator | None = None
) -> float:
    """Sliced Wasserstein-2 distance sqrt(mean_theta W2^2(theta.x, theta.y)) between sample sets.

    Directions come from `generator`; unequal sample sizes use the exact quantile-function integral.
    """
    x, y = _flat_pair(x, y, "sliced Wasserstein")
    theta = random_directions(x.shape[1], num_projections, generator)
    return float(_w2_squared_1d(x @ theta, y @ theta).mean().sqrt())


def median_bandwidth(x: Tensor, y: Tensor, generator: torch.Generator | None = None) -> float:
    """Median heuristic: the median pairwise distance of the pooled samples (Gretton et al. 2012, sec. 8).

    Uses at most MEDIAN_MAX_POINTS pooled points (a random subset drawn from `generator` beyond that).
    """
    z = torch.cat(_flat_pair(x, y, "median bandwidth"))
    if z.shape[0] > MEDIAN_MAX_POINTS:
        z = z[torch.randperm(z.shape[0], generator=generator)[:MEDIAN_MAX_POINTS]]
    d = torch.pdist(z)
    if d.numel() == 0 or float(d.median()) == 0.0:
        raise DifflabError("the median heuristic needs distinct samples; pass an explicit bandwidth")
    return float(d.median())


def _kernel_sum(a: Tensor, b: Tensor, gamma: float, max_elements: int) -> Tensor:
    """sum_ij exp(-gamma ||a_i - b_j||^2), in row chunks."""
    step = max(1, max_elements // max(1, b.shape[0]))
    return sum((torch.cdist(c, b).square() * -gamma).exp().sum() for c in a.split(step))


def mmd_rbf(
    x: Tensor,
    y: Tensor,
    bandwidth: float | str = "median",
    *,
    generator: torch.Generator | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> float:
    """Unbiased MMD^2 with k(a, b) = exp(-||a - b||^2 / (2 h^2)); h = `bandwidth` or "median".

    Gretton et al. 2012, eq. 3: sum_{i!=j} k(x_i,x_j)/(n(n-1)) + sum_{i!=j} k(y_i,y_j)/(m(m-1))
    - 2 sum_{i,j} k(x_i,y_j)/(nm); for n = m the cross term also skips i = j (Lemma 6, the U-statistic
    of h(z_i, z_j)), so identical sets give exactly 0. Unbiased: it can be negative.
    """
    x, y = _flat_pair(x, y, "MMD", min_n=2)
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise DifflabError(f"MMD bandwidth must be a positive number or 'median'; got {bandwidth!r}")
        bandwidth = median_bandwidth(x, y, generator)
    if not bandwidth > 0:
        raise DifflabError(f"MMD bandwidth must be positive; got {bandwidth}")
    gamma = 1.0 / (2.0 * bandwidth**2)
    n, m = x.shape[0], y.shape[0]
    kxx = (_kernel_sum(x, x, gamma, max_elements) - n) / (n * (n - 1))
    kyy = (_kernel_sum(y, y, gamma, max_elements) - m) / (m * (m - 1))
    if n == m:
        paired = (-gamma * (x - y).square().sum(1)).exp().sum()
        kxy = (_kernel_sum(x, y, gamma, max_elements) - paired) / (n * (n - 1))
    else:
        kxy = _kernel_sum(x, y, gamma, max_elements) / (n * m)
    return float(kxx + kyy - 2 * kxy)


def sw2_floor(
    sample: Callable[[int, torch.Generator], Tensor],
    n: int,
    *,
    num_projections: int = 256,
    repeats: int = 3,
    seed: int = 0,
) -> float:
    """Mean SW2 between two independent exact sample sets of size n: the finite-sample floor.

    `sample(n, generator)` draws n exact samples. A model is "within 1.2x of the floor" when its SW2
    to n fresh exact samples (same num_projections) is <= 1.2 * sw2_floor(...).
    """
    if n < 1 or repeats < 1:
        raise DifflabError(f"sw2_floor needs n >= 1 and repeats >= 1; got n={n}, repeats={repeats}")
    g = torch.Generator().manual_seed(seed)
    values = [sliced_wasserstein2(sample(n, g), sample(n, g), num_projections, g) for _ in range(repeats)]
    return sum(values) / repeats


SW2_RATIO_REPEATS = 3


@dataclass(frozen=True)
class SW2Ratio:
    """sw2_ratio's answer: model = SW2(m samples, B), floor = SW2(A, B), means over `repeats` splits."""

    model: float
    floor: float
    m: int  # samples (and reference points in A) per comparison
    rest: int  # reference points in B
    repeats: int

    @property
    def ratio(self) -> float:
        return self.model / self.floor


def sw2_split(n: int, size: int) -> int:
    """m, the samples per comparison of sw2_ratio for n samples and a reference of `size` points."""
    return min(n, size // 2)


def describe_sw2_ratio(n: int, size: int, repeats: int = SW2_RATIO_REPEATS) -> str:
    """What sw2_ratio compared, in words, for n samples and a reference of `size` points."""
    m = sw2_split(n, size)
    return (f"sw2_ratio = SW2({m} samples, {size - m} reference points) / SW2({m} other reference points, the "
            f"same {size - m}), averaged over {repeats} random splits")


def sw2_ratio(
    samples: Tensor, reference: Tensor, num_projections: int = 256, *, repeats: int = SW2_RATIO_REPEATS, seed: int = 0
) -> SW2Ratio:
    """A model's SW2 and its finite-sample floor, at the same sample sizes so that their ratio is unbiased.

    Each repeat splits the reference at random into A (m = min(n, N // 2) points) and B (the other N - m):
    the floor is SW2(A, B), what m exact samples reach, and the model's value SW2(m of its samples, B).
    (SW2 against the whole reference would shrink the model's value below the floor's: a larger second set
    has less sampling noise.) With a sampler of exact data, pass 2n fresh points as the reference.
    """
    x, ref = _flat_pair(samples, reference, "the SW2 ratio")
    size, n = ref.shape[0], x.shape[0]
    m = sw2_split(n, size)
    if m < 1:
        raise DifflabError(f"the SW2 floor needs at least 2 reference points; got {size}")
    g = torch.Generator().manual_seed(seed)
    floor, model = [], []
    for _ in range(repeats):
        perm = torch.randperm(size, generator=g)
        rest = ref[perm[m:]]
        floor.append(sliced_wasserstein2(ref[perm[:m]], rest, num_projections, g))
        pick = torch.randperm(n, generator=g)[:m]
        model.append(sliced_wasserstein2(x[pick], rest, num_projections, g))
    return SW2Ratio(sum(model) / repeats, sum(floor) / repeats, m, size - m, repeats)


@dataclass(frozen=True)
class MemorizationReport:
    """Result of memorization_check; the distance tensors are for histograms."""

    ratio: float  # median NN distance of generated / of held-out samples to the training set
    memorized_fraction: float  # fraction of generated samples closer to the training set than threshold
    threshold: float  # the `quantile` of held-out NN distances
    generated_distances: Tensor  # (N_gen,) NN distance of each generated sample to the training set
    heldout_distances: Tensor  # (N_held,) NN distance of each held-out sample to the training set


def memorization_check(
    generated: Tensor,
    train: Tensor,
    heldout: Tensor,
    *,
    quantile: float = 0.01,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> MemorizationReport:
    """Do generated samples sit closer to the training set than fresh data does?

    A model that learned the ideal score of a finite training set reproduces training points (seed 000,
    "perfect training = only memorization"): its NN distances to the training set collapse towards 0,
    while held-out data from the same distribution keeps typical distances. ratio ~ 1 means no more
    memorization than chance; ratio -> 0 means copies. Inputs are flattened, so pass features or pixels.
    """
    if not 0.0 < quantile < 1.0:
        raise DifflabError(f"memorization quantile must lie in (0, 1); got {quantile}")
    gen, tr = _flat_pair(generated, train, "memorization check")
    held, _ = _flat_pair(heldout, train, "memorization check")
    d_gen = kth_neighbour_distance(gen, tr, 1, max_elements=max_elements)
    d_held = kth_neighbour_distance(held, tr, 1, max_elements=max_elements)
    held_median = float(d_held.median())
    if held_median == 0.0:
        raise DifflabError("held-out samples coincide with training samples; use a disjoint held-out set")
    threshold = float(torch.quantile(d_held, quantile))
    return MemorizationReport(
        ratio=float(d_gen.median()) / held_median,
        memorized_fraction=float((d_gen < threshold).double().mean()),
        threshold=threshold,
        generated_distances=d_gen,
        heldout_distances=d_held,
    )
