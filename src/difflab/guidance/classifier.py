"""Classifier guidance as a denoiser wrapper (Dhariwal & Nichol 2021; seeds 001, 002):

    eps_hat <- eps_hat - s sigma grad_x log p(y | x_t, t),

which, through Tweedie (grad log p_t = -eps / sigma), adds s grad log p(y | x_t) to the score: at s = 1 the
guided score is that of p(x_t | y) (Bayes), for s > 1 of p(x_t) p(y | x_t)^s. The result is returned in the
wrapped denoiser's parameterization y = c x0 + d eps: with the shift eps' = eps - s sigma g and the matching
x0' = (x_t - sigma eps') / alpha = x0 + s sigma^2 / alpha g,

    y' = y + s g (c sigma^2 / alpha - d sigma),      g = grad_x log softmax(classifier(x_t, t))[y].

Where alpha(t) = 0 (rectified flow at t = 1) x_t holds nothing of x0: p(y | x_t) = p(y), g = 0, and the x0
shift s sigma^2 g / alpha is 0 / 0; those rows get the unguided prediction (so the first step of a grid
that starts at pure noise is unguided), selected with torch.where, without a host sync. The classifier is
called once per denoiser call, with autograd; it is not counted as an NFE.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from difflab.param.denoiser import DenoiserWrapper
from difflab.utils.cond import Cond
from difflab.utils.errors import DifflabError


class ClassifierGuidance(DenoiserWrapper):
    """Wrap `denoiser` with the gradient of `classifier(x_t, t) -> logits (B, C)`, scaled by `scale`.

    The target class is cond["class_labels"]; `cond` is passed on unchanged to the denoiser (set
    cond["drop"] = True to guide an unconditional branch of a conditional model).
    """

    def __init__(self, denoiser, classifier: Callable[[Tensor, Tensor], Tensor], scale: float = 1.0):
        if not callable(classifier):
            raise DifflabError("classifier must be callable as classifier(x_t, t) -> logits (B, num_classes)")
        if not isinstance(scale, (int, float)) or isinstance(scale, bool):
            raise DifflabError(f"guidance scale must be a number; got {scale!r}")
        super().__init__(denoiser)
        self.classifier, self.scale = classifier, float(scale)

    def log_likelihood_grad(self, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        """grad_x log p(y | x_t, t) by autograd through the classifier."""
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            log_p = torch.log_softmax(self.classifier(x_in, t), dim=-1)
            picked = log_p.gather(1, labels.to(log_p.device).reshape(-1, 1)).sum()
            (grad,) = torch.autograd.grad(picked, x_in)
        return grad

    def __call__(self, x: Tensor, t: Tensor, cond: Cond | None = None) -> Tensor:
        if cond is None or "class_labels" not in cond:
            raise DifflabError("classifier guidance needs cond['class_labels'], the class to guide toward")
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        y = self.denoiser(x, t, cond)
        k = self.coefficients(x, t)
        g = self.log_likelihood_grad(x, t, cond["class_labels"])
        informative = k.alpha > 0
        shift = k.c * k.sigma**2 / torch.where(informative, k.alpha, 1) - k.d * k.sigma
        return y + torch.where(informative, self.scale * g * shift, 0)


def classifier_guided(classifier: Callable[[Tensor, Tensor], Tensor], scale: float = 1.0) -> Callable:
    """A guidance argument for difflab.sample: denoiser -> ClassifierGuidance(denoiser, classifier, scale)."""
    return lambda denoiser: ClassifierGuidance(denoiser, classifier, scale)
