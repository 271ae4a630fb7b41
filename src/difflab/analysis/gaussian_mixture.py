"""The exact denoiser of a Gaussian mixture: ground truth for every sampler and loss.

Data x0 ~ sum_k w_k N(mu_k, diag(v_k)). Under any process x_t = alpha x0 + sigma eps, each component
stays Gaussian, so (seed 000's mixture formula)

    p_t(x) = sum_k w_k N(x; alpha mu_k, diag(alpha^2 v_k + sigma^2)),
    r_k(x) = w_k N_k(x) / p_t(x)                                  (posterior over components),
    grad log p_t(x) = sum_k r_k (alpha mu_k - x) / (alpha^2 v_k + sigma^2),
    E[x0 | x_t = x] = sum_k r_k [mu_k + alpha v_k (x - alpha mu_k) / (alpha^2 v_k + sigma^2)],
    E[eps | x_t = x] = (x - alpha E[x0 | x]) / sigma = -sigma grad log p_t(x)     (Tweedie).

With v_k = 0 and the mu_k a training set this is the closed-form ideal denoiser of a finite data set,
the one that only memorizes (seed 000, "perfect training = memorization").
Components carry class labels (default: their index), so the same object is an exact class-conditional
model: cond["class_labels"] = y restricts the sum to components of class y, cond["drop"] lifts it.
All arithmetic is float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from difflab.param.denoiser import Denoiser
from difflab.param.parameterization import Prediction, check_parameterization, coefficients, target
from difflab.process.base import NoiseProcess
from difflab.utils.errors import DifflabError


class GaussianMixture:
    """A mixture of K diagonal Gaussians in D dimensions (isotropic when variances has shape (K,))."""

    def __init__(self, weights: Tensor, means: Tensor, variances: Tensor, labels: Tensor | None = None):
        w = torch.as_tensor(weights, dtype=torch.float64)
        mu = torch.as_tensor(means, dtype=torch.float64)
        var = torch.as_tensor(variances, dtype=torch.float64)
        if mu.ndim != 2:
            raise DifflabError(f"means must have shape (K, D); got {tuple(mu.shape)}")
        K, D = mu.shape
        if w.shape != (K,):
            raise DifflabError(f"weights must have shape ({K},) to match means; got {tuple(w.shape)}")
        if bool((w < 0).any()) or float(w.sum()) <= 0:
            raise DifflabError("weights must be non-negative with a positive sum")
        if var.ndim == 1:
            var = var[:, None].expand(K, D)
        if var.shape != (K, D):
            raise DifflabError(f"variances must have shape ({K},) or ({K}, {D}); got {tuple(var.shape)}")
        if bool((var < 0).any()):
            raise DifflabError("variances must be >= 0")
        self.weights = w / w.sum()
        self.means = mu
        self.variances = var.contiguous()
        self.labels = torch.arange(K) if labels is None else torch.as_tensor(labels, dtype=torch.long)
        if self.labels.shape != (K,):
            raise DifflabError(f"labels must have shape ({K},); got {tuple(self.labels.shape)}")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    # ---- data --------------------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Exact samples x0 (n, D) float64 and their component indices (n,)."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[comp] + self.variances[comp].sqrt() * noise, comp

    # ---- the marginal p_t ------------------------------------------------------------------------
    def _component_terms(self, x: Tensor, t: Tensor, process: NoiseProcess, cond=None):
        """Per-component log w_k + log N_k(x) (B, K), the centred x (B, K, D) and variances (B, K, D)."""
        x = x.reshape(x.shape[0], -1).to(torch.float64)
        if x.shape[1] != self.dim:
            raise DifflabError(f"x has {x.shape[1]} features per sample; this mixture has D = {self.dim}")
        t = torch.as_tensor(t, dtype=torch.float64, device=x.device).expand(x.shape[0])
        a = process.alpha(t)[:, None, None]
        s2 = process.sigma(t)[:, None, None] ** 2
        var_t = a**2 * self.variances[None] + s2  # (B, K, D)
        diff = x[:, None, :] - a * self.means[None]  # (B, K, D)
        log_n = -0.5 * ((diff**2 / var_t) + torch.log(2 * math.pi * var_t)).sum(-1)
        logits = torch.log(self.weights)[None] + log_n
        if cond is not None and "class_labels" in cond:
            y = cond["class_labels"].to(x.device)
            allowed = self.labels[None, :].to(x.device) == y[:, None]
            if "drop" in cond:
                allowed = allowed | cond["drop"].to(x.device)[:, None]
            logits = logits.masked_fill(~allowed, -math.inf)
        return logits, diff, var_t, a

    def log_prob_t(self, x: Tensor, t: Tensor, process: NoiseProcess, cond=None) -> Tensor:
        """log p_t(x) (B,), exact."""
        logits, *_ = self._component_terms(x, t, process, cond)
        return torch.logsumexp(logits, dim=1)

    def responsibilities(self, x: Tensor, t: Tensor, process: NoiseProcess, cond=None) -> Tensor:
        """Posterior over components p(k | x_t = x) (B, K)."""
        logits, *_ = self._component_terms(x, t, process, cond)
        return torch.softmax(logits, dim=1)

    def score(self, x: Tensor, t: Tensor, process: NoiseProcess, cond=None) -> Tensor:
        """grad_x log p_t(x), shape of x."""
        logits, diff, var_t, _ = self._component_terms(x, t, process, cond)
        r = torch.softmax(logits, dim=1)[..., None]
        return (-(r * diff / var_t).sum(1)).reshape(x.shape)

    def posterior_mean(self, x: Tensor, t: Tensor, process: NoiseProcess, cond=None) -> Tensor:
        """E[x0 | x_t = x], shape of x."""
        logits, diff, var_t, a = self._component_terms(x, t, process, cond)
        r = torch.softmax(logits, dim=1)[..., None]
        x0_k = self.means[None] + a * self.variances[None] * diff / var_t
        return (r * x0_k).sum(1).reshape(x.shape)

    def denoiser(self, process: NoiseProcess, parameterization: str = "eps") -> ExactMixtureDenoiser:
        """This mixture's exact denoiser under `process`, answering in `parameterization`."""
        return ExactMixtureDenoiser(self, process, parameterization)


class ExactMixtureDenoiser(Denoiser):
    """The Bayes-optimal denoiser of a GaussianMixture, honouring the denoiser contract.

    Returns c(t) E[x0|x_t] + d(t) E[eps|x_t] for the chosen parameterization (in x's dtype); accepts x of
    shape (B, D) or (B, C, H, W) with C*H*W = D.
    """

    def __init__(self, mixture: GaussianMixture, process: NoiseProcess, parameterization: str = "eps"):
        self.mixture = mixture
        self.process = process
        self.parameterization = check_parameterization(parameterization)

    def exact(self, x: Tensor, t: Tensor, cond=None) -> Prediction:
        """(E[x0|x_t], E[eps|x_t]) in float64, eps from the score so it stays finite as alpha -> 0."""
        t = torch.as_tensor(t, dtype=torch.float64, device=x.device).expand(x.shape[0])
        x0 = self.mixture.posterior_mean(x, t, self.process, cond)
        sigma = self.process.sigma(t).reshape(-1, *([1] * (x.ndim - 1)))
        eps = -sigma * self.mixture.score(x, t, self.process, cond)
        return Prediction(x0, eps)

    def __call__(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        x0, eps = self.exact(x, t, cond)
        k = coefficients(self.parameterization, self.process, t, x.ndim, torch.float64)
        return target(self.parameterization, x0, eps, k).to(x.dtype)


# ---- standard test mixtures ------------------------------------------------------------------------
def ring_mixture(k: int = 8, radius: float = 2.0, std: float = 0.15) -> GaussianMixture:
    """K equal-weight isotropic Gaussians on a circle (the '8 Gaussians' ring), 2-D."""
    angles = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture(torch.ones(k), means, torch.full((k,), std**2))


def image_like_mixture(dim: int = 64, k: int = 10, seed: int = 0) -> GaussianMixture:
    """A D-dimensional mixture that looks like small images: smooth mean patterns in [-1, 1] on a
    sqrt(D) x sqrt(D) grid, diagonal variances between 0.01 and 0.1, unequal weights."""
    side = int(round(math.sqrt(dim)))
    if side * side != dim:
        raise DifflabError(f"image_like_mixture needs a square dimension (16, 64, 256, ...); got {dim}")
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(k, 1, max(2, side // 4), max(2, side // 4), generator=g, dtype=torch.float64)
    smooth = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=True)
    means = torch.tanh(1.5 * smooth).reshape(k, dim)
    variances = 0.01 + 0.09 * torch.rand(k, dim, generator=g, dtype=torch.float64)
    weights = 0.5 + torch.rand(k, generator=g, dtype=torch.float64)
    return GaussianMixture(weights, means, variances)


def empirical_mixture(data: Tensor, labels: Tensor | None = None) -> GaussianMixture:
    """The finite training set as a zero-variance mixture: its exact denoiser is the ideal one that
    reproduces training points (seed 000)."""
    flat = torch.as_tensor(data, dtype=torch.float64).reshape(data.shape[0], -1)
    n = flat.shape[0]
    return GaussianMixture(torch.ones(n, dtype=torch.float64), flat, torch.zeros(n), labels)
