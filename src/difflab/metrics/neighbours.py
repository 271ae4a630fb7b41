"""Nearest-neighbour distances in bounded memory, shared by precision/recall and the memorization check.

All functions take feature matrices (N, F) and compute Euclidean distances with torch.cdist on row
chunks, so at most about `max_elements` distances live in memory at a time (a chunk of rows against all
reference points).
"""

from __future__ import annotations

import torch
from torch import Tensor

from difflab.utils.errors import DifflabError

DEFAULT_MAX_ELEMENTS = 2**24  # 16M float32 distances = 64 MiB per chunk


def _check_pair(query: Tensor, ref: Tensor) -> None:
    if query.ndim != 2 or ref.ndim != 2:
        raise DifflabError(
            f"features must be matrices (N, F); got shapes {tuple(query.shape)} and {tuple(ref.shape)}"
        )
    if query.shape[1] != ref.shape[1]:
        raise DifflabError(f"feature dimensions differ: {query.shape[1]} vs {ref.shape[1]}")


def _row_chunk(n_cols: int, max_elements: int) -> int:
    return max(1, max_elements // max(1, n_cols))


def kth_neighbour_distance(
    query: Tensor, ref: Tensor, k: int = 1, *, exclude_self: bool = False, max_elements: int = DEFAULT_MAX_ELEMENTS
) -> Tensor:
    """Distance (N_query,) from each query point to its k-th nearest point of `ref`.

    With `exclude_self` (query is ref), each point's zero distance to itself is skipped, i.e. the
    (k+1)-th smallest distance is returned: the k-NN radius of Kynkäänniemi et al. 2019, sec. 3.
    """
    _check_pair(query, ref)
    rank = k + 1 if exclude_self else k
    if not 1 <= rank <= ref.shape[0]:
        raise DifflabError(
            f"k={k} needs more reference points: have {ref.shape[0]}, need at least {rank}; lower k or add samples"
        )
    step = _row_chunk(ref.shape[0], max_elements)
    out = [
        torch.cdist(q, ref).topk(rank, dim=1, largest=False).values[:, -1] for q in query.split(step)
    ]
    return torch.cat(out)


def within_any_ball(
    query: Tensor, centres: Tensor, radii: Tensor, *, max_elements: int = DEFAULT_MAX_ELEMENTS
) -> Tensor:
    """Bool (N_query,): query point q lies in some ball ||q - c_j|| <= r_j (the manifold estimate)."""
    _check_pair(query, centres)
    if radii.shape != (centres.shape[0],):
        raise DifflabError(f"need one radius per centre: {centres.shape[0]}, got shape {tuple(radii.shape)}")
    step = _row_chunk(centres.shape[0], max_elements)
    out = [(torch.cdist(q, centres) <= radii).any(dim=1) for q in query.split(step)]
    return torch.cat(out)
