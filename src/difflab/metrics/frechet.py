"""Fréchet distance between Gaussians fitted to features, and streaming feature statistics.

The Fréchet (2-Wasserstein) distance between N(mu1, S1) and N(mu2, S2) is

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

(Dowson & Landau 1982; used as FID by Heusel et al. 2017, seeds 000 and 001 "FID"). The numerics follow
the reference implementation (TTUR / pytorch-fid): float64, scipy.linalg.sqrtm of the product S1 S2,
eps * I added to both covariances when the product is singular or its root is not finite, the real part
kept and an error raised when the imaginary part of the diagonal exceeds 1e-3. One deliberate difference:
when the offset is used, the traces are those of the offset covariances too, so the value is the exact
distance between N(mu1, S1 + eps I) and N(mu2, S2 + eps I); pytorch-fid mixes unregularized traces with
the regularized root, which biases it by -2 d eps (a set against itself gave -1.28e-4 for d = 64).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from difflab.utils.errors import DifflabError

ArrayLike = Tensor | np.ndarray


def _as_float64(x: ArrayLike) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _sqrtm(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """scipy's matrix square root and whether it is trustworthy (finite, product not singular)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(a)
    singular = any(issubclass(w.category, scipy.linalg.LinAlgWarning) for w in caught)
    return root, bool(np.isfinite(root).all()) and not singular


def frechet_distance(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, eps: float = 1e-6
) -> float:
    """Squared Fréchet distance ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)) in float64.

    Heusel et al. 2017 (TTUR), eq. 6. `eps` is the diagonal offset used only when S1 S2 is singular or
    its square root is not finite; then the distance is that of the offset Gaussians (0 for S1 = S2).
    """
    mu1, mu2 = np.atleast_1d(_as_float64(mu1)), np.atleast_1d(_as_float64(mu2))
    sigma1, sigma2 = np.atleast_2d(_as_float64(sigma1)), np.atleast_2d(_as_float64(sigma2))
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise DifflabError(f"means must be vectors of the same length; got shapes {mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise DifflabError(
            f"covariances must be ({d}, {d}) to match the means; got {sigma1.shape} and {sigma2.shape}"
        )
    covmean, ok = _sqrtm(sigma1 @ sigma2)
    if not ok:
        sigma1, sigma2 = sigma1 + np.eye(d) * eps, sigma2 + np.eye(d) * eps
        covmean, _ = _sqrtm(sigma1 @ sigma2)
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > 1e-3:
            raise DifflabError(
                f"the matrix square root of S1 S2 has an imaginary part of {imag:.3g} on its diagonal: the "
                "covariances are badly conditioned; use more samples than feature dimensions or a larger eps"
            )
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


class FeatureStats:
    """Running mean and unbiased covariance of feature vectors, in constant memory.

    Keeps n, the sum and the sum of outer products of (f - shift) in float64, where `shift` is the mean
    of the first batch: the covariance is shift invariant and centring near the mean avoids the
    cancellation of sum(f f^T) - n mu mu^T when |mu| >> std (the "shifted data" algorithm, Chan, Golub
    & LeVeque 1983). Memory is O(F^2) whatever the number of samples.
    """

    def __init__(self) -> None:
        self.n = 0
        self._shift: Tensor | None = None
        self._sum: Tensor | None = None
        self._outer: Tensor | None = None

    def update(self, features: Tensor) -> FeatureStats:
        """Add a batch of features (B, F); returns self."""
        if features.ndim != 2:
            raise DifflabError(f"features must have shape (batch, dim); got {tuple(features.shape)}")
        f = features.detach().to(torch.float64)
        if self._shift is None:
            self._shift = f.mean(0)
            self._sum = torch.zeros_like(self._shift)
            self._outer = f.new_zeros(f.shape[1], f.shape[1])
        elif f.shape[1] != self._shift.shape[0]:
            raise DifflabError(f"feature dimension changed from {self._shift.shape[0]} to {f.shape[1]}")
        c = f - self._shift
        self._sum += c.sum(0)
        self._outer += c.T @ c
        self.n += f.shape[0]
        return self

    @classmethod
    def from_features(cls, features: Tensor) -> FeatureStats:
        """Statistics of one tensor of features (N, F)."""
        return cls().update(features)

    @property
    def dim(self) -> int:
        return 0 if self._shift is None else self._shift.shape[0]

    @property
    def mean(self) -> Tensor:
        """mu = shift + sum(f - shift) / n, float64 (F,)."""
        self._require(1)
        return self._shift + self._sum / self.n

    @property
    def cov(self) -> Tensor:
        """Unbiased covariance (sum (f-s)(f-s)^T - n (mu-s)(mu-s)^T) / (n - 1), float64 (F, F)."""
        self._require(2)
        centred_mean = self._sum / self.n
        return (self._outer - self.n * torch.outer(centred_mean, centred_mean)) / (self.n - 1)

    def _require(self, n: int) -> None:
        if self.n < n:
            raise DifflabError(f"feature statistics need at least {n} samples; got {self.n}")


def frechet_distance_from_stats(a: FeatureStats, b: FeatureStats, eps: float = 1e-6) -> float:
    """Fréchet distance between the Gaussians fitted to two FeatureStats (each needs n >= 2)."""
    return frechet_distance(a.mean, a.cov, b.mean, b.cov, eps=eps)
