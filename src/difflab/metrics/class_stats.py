"""What a classifier says about generated samples: class coverage, balance, confidence, label accuracy.

Streaming (constant memory): only the predicted-class histogram and a few sums are kept.

* coverage = |{k : count_k > 0}| / K, the fraction of classes generated at all (mode dropping);
* entropy H = -sum_k p_k log p_k of the predicted-class histogram p (nats), normalized by log K
  (1 = perfectly balanced classes);
* mean confidence = mean_i max_k softmax(logits_i)_k (recognisable samples score near 1);
* label accuracy = mean_i 1[argmax logits_i = requested label_i] (does conditioning work?).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from difflab.utils.errors import DifflabError


class ClassStatistics(NamedTuple):
    coverage: float
    entropy: float
    normalized_entropy: float
    mean_confidence: float
    label_accuracy: float | None  # None when no labels were given
    histogram: Tensor  # (K,) counts of predicted classes


class ClassCounter:
    """Accumulates the predicted-class histogram, confidence and (optionally) label hits of logits."""

    def __init__(self, num_classes: int):
        if num_classes < 2:
            raise DifflabError(f"class statistics need at least 2 classes; got {num_classes}")
        self.num_classes = num_classes
        self.histogram = torch.zeros(num_classes, dtype=torch.long)
        self.confidence_sum = torch.zeros((), dtype=torch.float64)
        self.n = 0
        self.correct = torch.zeros((), dtype=torch.long)
        self.n_labelled = 0

    def update(self, logits: Tensor, labels: Tensor | None = None) -> ClassCounter:
        """Add logits (B, K) and, optionally, the requested labels (B,) they should show."""
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise DifflabError(f"logits must have shape (batch, {self.num_classes}); got {tuple(logits.shape)}")
        logits = logits.detach().cpu().double()
        pred = logits.argmax(1)
        self.histogram += torch.bincount(pred, minlength=self.num_classes)
        self.confidence_sum += logits.softmax(1).amax(1).sum()
        self.n += logits.shape[0]
        if labels is not None:
            if labels.shape != pred.shape:
                raise DifflabError(
                    f"need one requested label per sample: {pred.shape[0]} samples, labels {tuple(labels.shape)}"
                )
            self.correct += (pred == labels.detach().cpu().long()).sum()
            self.n_labelled += labels.shape[0]
        return self

    def compute(self) -> ClassStatistics:
        if self.n == 0:
            raise DifflabError("class statistics need at least one sample")
        p = self.histogram.double() / self.n
        entropy = float(-(p * p.clamp_min(1e-300).log()).sum())
        return ClassStatistics(
            coverage=float((self.histogram > 0).double().mean()),
            entropy=entropy,
            normalized_entropy=entropy / math.log(self.num_classes),
            mean_confidence=float(self.confidence_sum) / self.n,
            label_accuracy=float(self.correct) / self.n_labelled if self.n_labelled else None,
            histogram=self.histogram.clone(),
        )


def class_statistics(logits: Tensor, labels: Tensor | None = None) -> ClassStatistics:
    """ClassStatistics of one tensor of logits (N, K), with label accuracy when `labels` (N,) is given."""
    return ClassCounter(logits.shape[-1]).update(logits, labels).compute()
