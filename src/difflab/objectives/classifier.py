"""The training loss of the noise-aware classifier of classifier guidance.

    x0, y ~ data,  t ~ p(t),  eps ~ N(0, I),  x_t = alpha(t) x0 + sigma(t) eps,
    loss = -log p_phi(y | x_t, t) = -log softmax(classifier(x_t, t))_y.

Dhariwal & Nichol 2021 §4 ("we train classifiers on noisy images x_t"; seed 002: "Solution: finetune the
classifier on noisy images"); x_t is drawn from the same process, with the same time density, as the
denoiser's, so the classifier is accurate exactly where the sampler will ask for its gradient.
The loss returns UNREDUCED per-sample values; the trainer reduces.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from difflab.objectives.time_sampling import TimeSampler
from difflab.utils.errors import DifflabError


class NoisyClassifierLoss:
    """Per-sample cross-entropy of model(x_t, t) against cond["class_labels"]; owns the time density.

    model is a classifier with a `process` (difflab.param.classifier.TimeClassifier). The random draws
    come in DiffusionLoss's order (t, then eps) from `generator`. cond["drop"], set by the trainer's
    condition dropout, is ignored: the labels are the target here, never an input.
    """

    def __init__(self, time_sampler: TimeSampler | None = None):
        self.time_sampler = time_sampler or TimeSampler()

    def __call__(self, model, x0: Tensor, cond=None, generator: torch.Generator | None = None) -> Tensor:
        labels = _class_labels(cond, x0.shape[0])
        process = getattr(model, "process", None)
        if process is None:
            raise DifflabError(
                "NoisyClassifierLoss needs a classifier that knows its noise process: wrap the network as "
                "difflab.param.classifier.TimeClassifier(net, process)"
            )
        t = self.time_sampler(x0.shape[0], process, generator=generator, device=x0.device)  # (B,) float64
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = process.sample_xt(x0, t, eps)
        logits = model(x_t, t.to(x0.dtype))  # (B, num_classes)
        return F.cross_entropy(logits.float(), labels, reduction="none")  # (B,)

    def __repr__(self) -> str:
        return f"NoisyClassifierLoss(time_sampler={self.time_sampler})"


def _class_labels(cond, batch: int) -> Tensor:
    """cond["class_labels"] as a (batch,) long tensor, or one DifflabError naming the fix."""
    labels = None if cond is None else cond.get("class_labels")
    if labels is None:
        raise DifflabError(
            "NoisyClassifierLoss needs class labels: pass cond={'class_labels': y} with y a (B,) integer "
            "tensor (train the classifier on a labelled dataset)"
        )
    if labels.shape != (batch,) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise DifflabError(
            f"class_labels must be an integer tensor of shape ({batch},), one label per image; got "
            f"{labels.dtype} of shape {tuple(labels.shape)}"
        )
    return labels.long()
