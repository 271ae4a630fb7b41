"""What guidance buys and what it costs: agreement with the condition against diversity (seeds 000, 001).

Seed 000 on classifier-free guidance: "higher s, stronger conditioning but less diversity". These
functions put numbers on both sides of that trade:

* conditioning strength: `class_accuracy` (argmax of a classifier == requested class),
  `requested_probability` (mean softmax probability of the requested class) and, for coloured shapes,
  `shape_accuracy` from the exact attribute readout (an exact stand-in for the CLIP score of seed 000);
* diversity: `mean_pairwise_distance` (mean L2 distance between distinct samples, optionally within
  each class) and `class_conditional_fdd`, the Fréchet distance between generated and real features of
  each class, averaged over classes. Guidance that collapses a class onto its mode keeps accuracy high
  while its per-class covariance shrinks, which the class-conditional Fréchet distance sees and an
  unconditional one (pooled over classes, whose means stay apart) largely does not.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from difflab.data.shapes import ATTRIBUTES, read_attributes
from difflab.metrics.frechet import FeatureStats, frechet_distance_from_stats
from difflab.utils.errors import DifflabError

PAIR_BUDGET = 1 << 22  # distances held at once by mean_pairwise_distance (32 MiB of float64)


def _check_requested(logits: Tensor, requested: Tensor) -> Tensor:
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise DifflabError(f"logits must have shape (N, num_classes) with N >= 1; got {tuple(logits.shape)}")
    requested = torch.as_tensor(requested, device=logits.device)
    if requested.shape != logits.shape[:1] or requested.is_floating_point():
        raise DifflabError(
            f"requested must hold one integer class per sample, shape ({logits.shape[0]},); "
            f"got {requested.dtype} {tuple(requested.shape)}"
        )
    if bool(((requested < 0) | (requested >= logits.shape[1])).any()):
        raise DifflabError(f"requested classes must lie in 0..{logits.shape[1] - 1}")
    return requested.long()


def class_accuracy(logits: Tensor, requested: Tensor) -> float:
    """mean_i 1[argmax_k logits_ik = requested_i]: how often a sample shows the class it was asked for."""
    requested = _check_requested(logits, requested)
    return float((logits.argmax(1) == requested).double().mean())


def requested_probability(logits: Tensor, requested: Tensor) -> float:
    """mean_i softmax(logits_i)[requested_i]: the classifier's mean confidence in the requested class."""
    requested = _check_requested(logits, requested)
    p = logits.double().softmax(1)
    return float(p.gather(1, requested[:, None]).mean())


def mean_pairwise_distance(x: Tensor, labels: Tensor | None = None, budget: int = PAIR_BUDGET) -> float:
    """Mean Euclidean distance between distinct samples, in float64, in memory bounded by `budget`.

    Without labels: sum_{i != j} ||x_i - x_j|| / (N (N - 1)) over the flattened samples x (N, ...).
    With labels (N,): the same mean within each class k, sum_{i != j, y_i = y_j = k} ||x_i - x_j|| /
    (n_k (n_k - 1)), averaged over the classes present (each needs n_k >= 2), so a class that collapses
    onto one image lowers the score however many classes stay apart. Rows are processed in chunks of
    max(1, budget // N) against all N samples.
    """
    if x.ndim < 2 or x.shape[0] < 2:
        raise DifflabError(f"mean_pairwise_distance needs samples (N, ...) with N >= 2; got {tuple(x.shape)}")
    flat = x.detach().reshape(x.shape[0], -1).double()  # (N, D)
    n = flat.shape[0]
    if labels is None:
        ids, counts = torch.zeros(n, dtype=torch.long, device=flat.device), torch.tensor([n])
    else:
        labels = torch.as_tensor(labels, device=flat.device)
        if labels.shape != (n,) or labels.is_floating_point():
            raise DifflabError(f"labels must hold one integer per sample, shape ({n},); "
                               f"got {tuple(labels.shape)}")
        classes, ids, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        if bool((counts < 2).any()):
            k = int(classes[counts < 2][0])
            raise DifflabError(f"class {k} has fewer than 2 samples; a within-class distance needs 2 or more")
    sums = torch.zeros(len(counts), dtype=torch.float64, device=flat.device)
    rows = max(1, budget // n)
    for start in range(0, n, rows):
        chunk, chunk_ids = flat[start : start + rows], ids[start : start + rows]
        d = torch.cdist(chunk, flat)  # (r, N); the diagonal adds ~0 and is removed below
        d[torch.arange(len(chunk)), torch.arange(start, start + len(chunk))] = 0.0
        same = chunk_ids[:, None] == ids[None, :]  # (r, N)
        sums.index_add_(0, chunk_ids, (d * same).sum(1))
    counts = counts.to(sums)
    return float((sums / (counts * (counts - 1))).mean())


class ClassFrechet(NamedTuple):
    mean: float  # the average over classes of per_class
    per_class: dict[int, float]  # class -> Fréchet distance between generated and real features of it


def class_conditional_fdd(features: Tensor, labels: Tensor, real_features: Tensor, real_labels: Tensor,
                          eps: float = 1e-6) -> ClassFrechet:
    """Fréchet distance per class between generated and real features, and its mean over classes.

    For every class k among `labels`: d_k^2 = ||mu_k - mu_k'||^2 + Tr(S_k + S_k' - 2 (S_k S_k')^(1/2)) with
    (mu_k, S_k) fitted to the generated features of class k and (mu_k', S_k') to the real ones
    (Heusel et al. 2017 eq. 6, via difflab.metrics.frechet); with digit-classifier features it is a
    class-conditional FDD. Each class needs >= 2 generated and >= 2 real samples. Like FID it is biased
    upward at small n: compare values measured with the same numbers of samples.
    """
    for name, f, y in (("features", features, labels), ("real_features", real_features, real_labels)):
        if f.ndim != 2 or torch.as_tensor(y).shape != f.shape[:1]:
            raise DifflabError(f"{name} must be (N, F) with one label per row; got {tuple(f.shape)} and "
                               f"labels {tuple(torch.as_tensor(y).shape)}")
    if features.shape[1] != real_features.shape[1]:
        raise DifflabError(f"generated and real features differ in width: {features.shape[1]} vs "
                           f"{real_features.shape[1]}; extract both with the same feature extractor")
    features, real_features = features.detach().cpu(), real_features.detach().cpu()
    labels, real_labels = torch.as_tensor(labels).cpu(), torch.as_tensor(real_labels).cpu()
    per_class = {}
    for k in torch.unique(labels).tolist():  # one matrix square root per class
        fake, real = features[labels == k], real_features[real_labels == k]
        if len(fake) < 2 or len(real) < 2:
            raise DifflabError(f"class {k} has {len(fake)} generated and {len(real)} real samples; "
                               "a per-class Fréchet distance needs at least 2 of each")
        stats = FeatureStats.from_features(fake), FeatureStats.from_features(real)
        per_class[int(k)] = frechet_distance_from_stats(*stats, eps=eps)
    return ClassFrechet(sum(per_class.values()) / len(per_class), per_class)


def shape_accuracy(images: Tensor, attributes: Tensor) -> dict[str, float]:
    """Per-attribute accuracy of coloured-shape images against the attributes they were asked for.

    attributes: (N, 4) int64 in difflab.data.shapes.ATTRIBUTES order (shape, colour, position, size), as
    Shapes.attributes holds them. The images are read exactly by difflab.data.shapes.read_attributes (an
    image without foreground reads -1, never right). Returns the accuracy of each attribute, of
    "shape_colour" (both right: the compositional question for held-out pairs) and of "all" four.
    """
    attributes = torch.as_tensor(attributes)
    if attributes.shape != (images.shape[0], len(ATTRIBUTES)):
        raise DifflabError(f"attributes must be ({images.shape[0]}, {len(ATTRIBUTES)}) ids in the order "
                           f"{ATTRIBUTES}; got {tuple(attributes.shape)}")
    read = read_attributes(images)
    asked = attributes.cpu().long()
    hits = torch.stack([read[a] == asked[:, i] for i, a in enumerate(ATTRIBUTES)], dim=1)  # (N, 4) bool
    out = {a: float(hits[:, i].double().mean()) for i, a in enumerate(ATTRIBUTES)}
    out["shape_colour"] = float(hits[:, :2].all(1).double().mean())
    out["all"] = float(hits.all(1).double().mean())
    return out
