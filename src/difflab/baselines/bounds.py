"""Variational bounds of a latent-variable model with a diagonal Gaussian posterior q(z|x) and prior N(0, I).

ELBO (Kingma & Welling 2014, eq. 3, with the Gaussian KL of their Appendix B; seed 002 / seed 004's
"ELBO as a sum of Gaussian KLs"):

    ELBO(x) = E_q[log p(x|z)] - KL(N(mu, diag e^logvar) || N(0, I)),
    KL      = 1/2 sum_d (mu_d^2 + e^logvar_d - logvar_d - 1),

its expectation estimated with `samples` reparameterized draws z = mu + e^(logvar/2) eps.

IWAE (Burda et al. 2016, eq. 8): with z_1..z_k ~ q(z|x),

    L_k(x) = log (1/k) sum_i p(x, z_i) / q(z_i|x)
           = logsumexp_i [log p(x|z_i) + log N(z_i; 0, I) - log q(z_i|x)] - log k,

and ELBO = L_1 <= L_k <= L_{k+1} <= log p(x) in expectation, L_k -> log p(x) as k -> infinity. The
k draws are taken in chunks of at most `chunk` images at a time (B x chunk decoder inputs), combined by
a running logsumexp, so k = 1000 fits memory. Everything here is computed in the dtype of mu (the
models pass float64 for evaluation, float32 for training).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from difflab.utils.errors import DifflabError

LogLikelihood = Callable[[Tensor], Tensor]  # z (S, B, d) -> log p(x | z) (S, B)
LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """(B,) KL(N(mu, diag e^logvar) || N(0, I)) = 1/2 sum (mu^2 + e^logvar - logvar - 1)."""
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1).sum(-1)


def _draw(mu: Tensor, logvar: Tensor, s: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """s reparameterized draws (s, B, d) and their standard normal eps."""
    eps = torch.randn((s, *mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + (0.5 * logvar).exp() * eps, eps


def elbo(mu: Tensor, logvar: Tensor, log_px_given_z: LogLikelihood, generator: torch.Generator | None = None,
         samples: int = 1) -> Tensor:
    """(B,) the ELBO: the mean of log p(x|z) over `samples` draws of q(z|x), minus the analytic KL."""
    z, _ = _draw(mu, logvar, samples, generator)
    return log_px_given_z(z).mean(0) - gaussian_kl(mu, logvar)


def iwae(mu: Tensor, logvar: Tensor, log_px_given_z: LogLikelihood, k: int, generator: torch.Generator | None = None,
         chunk: int = 4096) -> Tensor:
    """(B,) the importance-weighted bound L_k (Burda et al. 2016) from k draws of q(z|x), chunked."""
    if not isinstance(k, int) or k < 1:
        raise DifflabError(f"the importance-weighted bound needs k >= 1 samples (e.g. k=1000); got k={k!r}")
    B = mu.shape[0]
    per_chunk = max(1, chunk // max(B, 1))
    total = torch.full((B,), -math.inf, dtype=mu.dtype, device=mu.device)
    done = 0
    while done < k:
        s = min(per_chunk, k - done)
        z, eps = _draw(mu, logvar, s, generator)
        log_q = -0.5 * (eps.square() + logvar + LOG_2PI).sum(-1)  # (s, B): log N(z; mu, e^logvar)
        log_prior = -0.5 * (z.square() + LOG_2PI).sum(-1)  # (s, B)
        log_w = log_px_given_z(z) + log_prior - log_q
        total = torch.logaddexp(total, torch.logsumexp(log_w, 0))
        done += s
    return total - math.log(k)
