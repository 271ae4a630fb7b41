"""Improved precision and recall (Kynkäänniemi et al. 2019; seed 001 "Precision and Recall").

Each set's manifold is estimated as the union of balls centred at its points with radius the distance
to the k-th nearest neighbour within the same set (k = 3 in the paper):

    precision = (1/M) sum_j 1[ fake_j in manifold(real) ]    (how many samples look real: quality)
    recall    = (1/N) sum_i 1[ real_i in manifold(fake) ]    (how much of the data is covered: diversity)
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from difflab.metrics.neighbours import DEFAULT_MAX_ELEMENTS, kth_neighbour_distance, within_any_ball
from difflab.utils.errors import DifflabError


class PrecisionRecall(NamedTuple):
    precision: float
    recall: float


def manifold_radii(features: Tensor, k: int = 3, *, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Tensor:
    """k-NN radius of every point of a set, excluding the point itself (N,)."""
    return kth_neighbour_distance(features, features, k, exclude_self=True, max_elements=max_elements)


def precision_recall(
    real: Tensor, fake: Tensor, k: int = 3, *, max_elements: int = DEFAULT_MAX_ELEMENTS
) -> PrecisionRecall:
    """Improved precision and recall of `fake` against `real` features (N, F) and (M, F).

    Kynkäänniemi et al. 2019, eq. 1-3. Needs k < N and k < M. Distances are computed in row chunks of
    about `max_elements` entries (torch.cdist), so memory stays bounded for large sets.
    """
    for name, x in (("real", real), ("fake", fake)):
        if x.ndim != 2:
            raise DifflabError(f"{name} features must be a matrix (N, F); got shape {tuple(x.shape)}")
        if not 1 <= k < x.shape[0]:
            raise DifflabError(
                f"precision/recall with k={k} needs more than k {name} samples (got {x.shape[0]}); "
                "use a smaller k or more samples"
            )
    real, fake = real.float(), fake.float()
    real_radii = manifold_radii(real, k, max_elements=max_elements)
    fake_radii = manifold_radii(fake, k, max_elements=max_elements)
    precision = within_any_ball(fake, real, real_radii, max_elements=max_elements).float().mean()
    recall = within_any_ball(real, fake, fake_radii, max_elements=max_elements).float().mean()
    return PrecisionRecall(float(precision), float(recall))
