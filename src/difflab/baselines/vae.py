"""Convolutional VAE (Kingma & Welling 2014; seed 002) on images with L discrete levels.

    q(z|x) = N(mu(x), diag e^logvar(x))   (conv encoder),   p(z) = N(0, I),
    p(x|z) = prod_pixels P(x | decoder(z))  (conv decoder),

with P one of
* "logistic": the discretized logistic over the L levels (Salimans et al. 2017; edges at the extreme
  bins; difflab.baselines.discretized), location and log-scale per pixel and channel;
* "bernoulli": a Bernoulli over binary data (levels = 2 only: the categorical over two levels; for
  17-level digits use "logistic", the Bernoulli of level / (L - 1) targets is no likelihood of them).

Both are probabilities of the discrete data, so log_likelihood is a lower bound on log P(x) in nats:
the ELBO (k=None) or the IWAE bound with k samples (Burda et al. 2016; difflab.baselines.bounds), in
float64. Training minimizes -ELBO / D (one reparameterized draw per image). `sample` decodes z ~ N(0, I)
to the decoder's location (mean=True, the usual picture of a VAE's samples) or draws x ~ p(x|z).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from difflab.baselines.base import Baseline, check_shape, to_levels
from difflab.baselines.bounds import elbo, iwae
from difflab.baselines.discretized import discretized_logistic_log_prob, discretized_logistic_sample
from difflab.utils.errors import DifflabError, check_choice

DECODERS = ("logistic", "bernoulli")


class VAE(Baseline):
    """A VAE over data_shape (C, H, W) with `levels` levels.

    latent_dim: size of z; width: channels of the first conv stage (doubled at each of `downsample`
    stride-2 stages; H and W must divide by 2^downsample); decoder: "logistic" | "bernoulli";
    mean: whether `sample` returns the decoder's location (True) or a draw from p(x|z) (False).
    """

    family, has_likelihood, nfe_per_sample = "vae", True, 1

    def __init__(self, data_shape, levels: int, latent_dim: int = 16, width: int = 32, downsample: int = 1,
                 decoder: str = "logistic", mean: bool = True):
        super().__init__()
        self.data_shape = check_shape(data_shape, (3,), "vae")
        C, H, W = self.data_shape
        self.decoder_kind = check_choice("VAE decoder", decoder, DECODERS)
        if not isinstance(levels, int) or levels < 2:
            raise DifflabError(f"a VAE needs the data's number of levels (digits: 17, 8-bit: 256); got {levels!r}")
        if decoder == "bernoulli" and levels != 2:
            raise DifflabError(f"a Bernoulli decoder is a likelihood of binary data only (levels=2); these data have "
                               f"{levels} levels: use decoder='logistic'")
        f = 2 ** downsample
        if downsample < 0 or H % f or W % f or latent_dim < 1 or width < 1:
            raise DifflabError(f"VAE options: H and W ({H}, {W}) must divide by 2^downsample = {f}, latent_dim and "
                               f"width >= 1; got downsample={downsample}, latent_dim={latent_dim}, width={width}")
        self.levels, self.latent_dim, self.mean = levels, latent_dim, mean
        widths = [width * 2**i for i in range(downsample + 1)]
        self.bottom = (widths[-1], H // f, W // f)
        n_bottom = math.prod(self.bottom)

        enc: list[nn.Module] = [nn.Conv2d(C, widths[0], 3, padding=1), nn.SiLU()]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            enc += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.SiLU()]
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(n_bottom, 2 * latent_dim))

        dec: list[nn.Module] = []
        for a, b in zip(widths[::-1][:-1], widths[::-1][1:], strict=True):
            dec += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.SiLU()]
        out = 2 * C if decoder == "logistic" else C
        self.decoder = nn.Sequential(nn.Linear(latent_dim, n_bottom), nn.SiLU(), nn.Unflatten(1, self.bottom), *dec,
                                     nn.Conv2d(widths[0], out, 3, padding=1))

    # ---- q(z|x) and p(x|z) -----------------------------------------------------------------------
    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar), each (B, latent_dim), of q(z|x)."""
        return self.encoder(x).chunk(2, dim=1)

    def log_px_given_z(self, x: Tensor, z: Tensor, dtype: torch.dtype) -> Tensor:
        """(S, B) log p(x | z) summed over pixels and channels, for z (S, B, d) (decoded in the model's
        dtype, the likelihood taken in `dtype`)."""
        S, B = z.shape[:2]
        out = self.decoder(z.reshape(S * B, -1).to(next(self.parameters()).dtype)).to(dtype)
        xs = x.to(dtype).expand(S, *x.shape).reshape(S * B, *x.shape[1:])
        if self.decoder_kind == "logistic":
            mu, log_s = out.chunk(2, dim=1)
            logp = discretized_logistic_log_prob(xs, mu, log_s, self.levels)
        else:  # Bernoulli on the two levels -1, 1
            logp = -F.binary_cross_entropy_with_logits(out, (xs > 0).to(dtype), reduction="none")
        return logp.flatten(1).sum(1).view(S, B)

    # ---- bounds --------------------------------------------------------------------------------------
    def forward(self, x: Tensor, cond: dict | None = None, generator: torch.Generator | None = None) -> Tensor:
        """The training loss per image: -ELBO / D in nats per dimension, one reparameterized draw."""
        mu, logvar = self.posterior(x)
        return -elbo(mu, logvar, lambda z: self.log_px_given_z(x, z, mu.dtype), generator) / math.prod(self.data_shape)

    def log_likelihood(self, x: Tensor, *, generator: torch.Generator | None = None, k: int | None = None,
                       labels: Tensor | None = None, chunk: int = 4096) -> Tensor:
        """(B,) float64 lower bound on log P(x) in nats per image: the ELBO (k=None, one draw and the
        analytic KL) or IWAE_k (chunks of `chunk` decoder inputs)."""
        if labels is not None:
            raise DifflabError("this VAE is unconditional: pass no labels")
        to_levels(x, self.levels)
        with torch.no_grad():
            mu, logvar = (t.double() for t in self.posterior(x))
            log_lik = lambda z: self.log_px_given_z(x, z, torch.float64)  # noqa: E731
            return elbo(mu, logvar, log_lik, generator) if k is None else iwae(mu, logvar, log_lik, k, generator, chunk)

    @torch.no_grad()
    def draw(self, n: int, draws, device, labels: Tensor | None) -> Tensor:
        """n images from z ~ N(0, I) (from `draws`): the decoder's location, or x ~ p(x|z) by inversion of
        uniforms from `draws` (a logistic variate; a Bernoulli pixel is +1 where u < p)."""
        if labels is not None:
            raise DifflabError("this VAE is unconditional: pass no labels")
        out = self.decoder(draws.normal((self.latent_dim,)))
        u = None if self.mean else draws.uniform(self.data_shape, out.dtype)
        if self.decoder_kind == "logistic":
            mu, log_s = out.chunk(2, dim=1)
            return mu.clamp(-1, 1) if self.mean else discretized_logistic_sample(mu, log_s, self.levels, u)
        p = torch.sigmoid(out)
        return 2 * p - 1 if self.mean else 2 * (u < p).to(p.dtype) - 1
