"""The ideal score machine: the exact denoiser of the empirical training distribution.

For a training set {x^n}, n = 1..N, and a process x_t = alpha x0 + sigma eps, the empirical data
distribution p(x0) = (1/N) sum_n delta(x0 - x^n) gives (seed 000, "the central puzzle"; the ideal score
machine of Kamb & Ganguli 2025)

    p(n | x_t) = softmax_n( -||x_t - alpha x^n||^2 / (2 sigma^2) ),
    E[x0 | x_t] = sum_n p(n | x_t) x^n,            E[eps | x_t] = (x_t - alpha E[x0 | x_t]) / sigma.

||x_t||^2 is the same for every n, so the logits reduce to (alpha <x_t, x^n> - alpha^2 ||x^n||^2 / 2) /
sigma^2 (one matrix product). The softmax is accumulated over chunks of training images with a running
log-sum-exp in float64, so memory stays at about `max_elements` logits whatever N is. Sampling with this
denoiser reproduces training images: "perfect training = only memorization".

`PosteriorMeanMachine` is the shared denoiser shell of the ideal, local and equivariant local machines:
each supplies E[x0 | x_t] at one time, the shell answers in any parameterization, for batches that mix
times.
"""

from __future__ import annotations

import torch
from torch import Tensor

from difflab.param.denoiser import Denoiser
from difflab.param.parameterization import check_parameterization, coefficients, target
from difflab.process.base import NoiseProcess
from difflab.utils.errors import DifflabError

DEFAULT_MAX_ELEMENTS = 2**23  # float64 logits held at once (64 MiB)
SIGMA2_FLOOR = 1e-24  # sigma^2 below this (t = 0) is the hard nearest-neighbour limit of the softmax


class OnlineSoftmax:
    """Running sum_k softmax(l)_k v_k over chunks of logits l (..., K), float64.

    Keeps the running max m, the rescaled normalizer s = sum exp(l - m) and numerator u = sum exp(l - m) v
    (u_chunk = weigh(w) with w = exp(l - m), e.g. w @ values); rows whose logits are all -inf so far keep
    zero weight.
    """

    def __init__(self):
        self.m = self.s = self.u = None

    def add(self, logits: Tensor, weigh) -> None:
        """logits (..., K); weigh(w) -> (..., F) is sum_k w_k v_k for the chunk's values."""
        m_chunk = logits.amax(dim=-1)
        m_new = m_chunk if self.m is None else torch.maximum(self.m, m_chunk)
        safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        w = logits.sub_(safe[..., None]).exp_()  # (..., K) in place (callers pass a scratch tensor)
        s_chunk = w.sum(-1)
        u_chunk = weigh(w)
        if self.m is None:
            self.s, self.u = s_chunk, u_chunk
        else:
            scale = torch.exp(self.m - safe)  # exp(-inf) = 0 for rows with nothing yet
            scale = torch.where(torch.isfinite(self.m), scale, torch.zeros_like(scale))
            self.s = self.s * scale + s_chunk
            self.u = self.u * scale[..., None] + u_chunk
        self.m = m_new

    def mean(self) -> Tensor:
        if self.s is None or bool((self.s <= 0).any()):
            raise DifflabError("a softmax row had no finite logit: the machine has no candidate for some pixel")
        return self.u / self.s[..., None]


def check_training_images(train: Tensor, what: str = "training set") -> Tensor:
    """Training images (N, C, H, W) or vectors (N, D) as float64."""
    if not isinstance(train, Tensor) or train.ndim < 2 or train.shape[0] == 0:
        raise DifflabError(f"the {what} must be a non-empty tensor (N, ...) with one row per image")
    if not train.is_floating_point():
        raise DifflabError(f"the {what} must be floating point (images in [-1, 1]); got {train.dtype}")
    return train.detach().to(torch.float64)


class PosteriorMeanMachine(Denoiser):
    """A denoiser built from an estimate of E[x0 | x_t]: subclasses implement `x0_at(x, alpha, sigma, t)`.

    __call__ returns c(t) x0_hat + d(t) eps_hat for the chosen parameterization, with
    eps_hat = (x_t - alpha x0_hat) / sigma (Tweedie), in x's dtype; x0_hat is computed in float64.
    Batches whose rows carry different times are split by distinct time (samplers pass one time per batch).
    """

    def __init__(self, process: NoiseProcess, parameterization: str = "x0"):
        self.process = process
        self.parameterization = check_parameterization(parameterization)

    def x0_at(self, x: Tensor, alpha: float, sigma: float, t: float) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def posterior_mean(self, x: Tensor, t: Tensor) -> Tensor:
        """E[x0 | x_t = x] under this machine, float64, shape of x."""
        x64 = x.detach().to(torch.float64)
        t = torch.as_tensor(t, dtype=torch.float64, device=x.device).expand(x.shape[0])
        out = torch.empty_like(x64)
        for tv in torch.unique(t).tolist():
            rows = t == tv
            tt = torch.tensor(tv, dtype=torch.float64)
            alpha, sigma = float(self.process.alpha(tt)), float(self.process.sigma(tt))
            out[rows] = self.x0_at(x64[rows], alpha, sigma, tv)
        return out

    def __call__(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float64, device=x.device).expand(x.shape[0])
        x0 = self.posterior_mean(x, t)
        k = coefficients(self.parameterization, self.process, t, x.ndim, torch.float64)
        eps = (x.to(torch.float64) - k.alpha * x0) / k.sigma
        return target(self.parameterization, x0, eps, k).to(x.dtype)


class IdealScoreMachine(PosteriorMeanMachine):
    """The exact denoiser of the empirical distribution of `train` (N, ...): memorizes by construction.

    Equal to `empirical_mixture(train).denoiser(process)` (the zero-variance Gaussian mixture), but batched
    over training images in chunks so thousands of images fit in bounded memory.
    """

    def __init__(self, train: Tensor, process: NoiseProcess, parameterization: str = "x0", *,
                 max_elements: int = DEFAULT_MAX_ELEMENTS):
        super().__init__(process, parameterization)
        self.train = check_training_images(train)
        self.flat = self.train.reshape(self.train.shape[0], -1)  # (N, D)
        self.half_norms = 0.5 * (self.flat**2).sum(1)  # (N,)
        self.max_elements = int(max_elements)

    def x0_at(self, x: Tensor, alpha: float, sigma: float, t: float) -> Tensor:
        B = x.shape[0]
        q = x.reshape(B, -1)  # (B, D)
        if q.shape[1] != self.flat.shape[1]:
            raise DifflabError(f"x has {q.shape[1]} values per sample; the training images have {self.flat.shape[1]}")
        inv = 1.0 / max(sigma**2, SIGMA2_FLOOR)
        acc = OnlineSoftmax()
        step = max(1, self.max_elements // max(1, B))
        for lo in range(0, self.flat.shape[0], step):
            m = self.flat[lo:lo + step].to(x.device)  # (n, D)
            logits = (alpha * (q @ m.T) - alpha**2 * self.half_norms[lo:lo + step].to(x.device)) * inv  # (B, n)
            acc.add(logits, lambda w, m=m: w @ m)  # (B, D)
        return acc.mean().reshape(x.shape)
