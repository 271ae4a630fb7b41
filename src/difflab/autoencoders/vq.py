"""Vector quantization and the VQ-VAE / VQ-GAN autoencoder (seed 002 "Vector quantization").

van den Oord et al. 2017 ("Neural discrete representation learning", §3.1-3.2, App. A.1): each
encoder output vector z is snapped to its nearest code of a codebook {e_1, ..., e_K},

    k(z) = argmin_j ||z - e_j||^2,      q(z) = e_k(z)                 (seed 002: Quantize(E(x)))

and the decoder reads z + sg[q - z] (the straight-through estimator: forward q, gradient of z).
The codebook is learned by  ||sg[z] - e||^2  (codebook loss) and the encoder held to its codes by
beta ||z - sg[e]||^2  (commitment loss, beta = 0.25). With ema=True the codebook is instead an
exponential moving average of the vectors assigned to each code (App. A.1; Razavi et al. 2019),
with Laplace smoothing of the cluster sizes (the Sonnet VQ-VAE-EMA implementation):

    N_k <- d N_k + (1 - d) n_k,      m_k <- d m_k + (1 - d) sum_{i: k(z_i) = k} z_i
    N~_k = (N_k + eps) / (n + K eps) * n   (n = sum_k N_k),          e_k = m_k / N~_k

starting from N_k = 1, m_k = e_k (the initial code as one observation of itself, as Jukebox does),
and there is no codebook loss. Dead-code restart (Dhariwal et al. 2020, Jukebox §3.2; Zeghidour et
al. 2021): a code unused for `restart_after` consecutive updates is re-initialised to an encoder
output of the current batch drawn with the given generator. Batch statistics: the fraction of codes
used and the perplexity exp(H(p)) of the batch's code histogram p (K for uniform use, 1 for one code).
VQ-GAN (Esser et al. 2021) is this autoencoder trained with a patch discriminator (objective.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from difflab.autoencoders.base import Autoencoder
from difflab.autoencoders.trunk import Decoder, Encoder, check_trunk_options
from difflab.utils.errors import DifflabError


def code_statistics(counts: Tensor) -> dict[str, Tensor]:
    """{"code_usage": fraction of codes with count > 0, "perplexity": exp(-sum_k p_k log p_k)}, p = counts / sum."""
    p = counts.double() / counts.sum().clamp_min(1)
    entropy = -torch.special.xlogy(p, p).sum()  # 0 log 0 = 0
    return {"code_usage": (counts > 0).double().mean(), "perplexity": entropy.exp()}


class VectorQuantizer(nn.Module):
    """forward(z (B, dim, h, w), generator, update) -> (z + sg[q - z], per-sample losses, batch stats).

    Losses (B,), means over the latent elements: "codebook" ||sg[z] - q||^2 (0 with ema) and
    "commitment" beta ||z - sg[q]||^2. Stats: "code_usage", "perplexity" (see code_statistics).
    update=True (training) applies the EMA codebook update and dead-code restart after the assignment.
    restart_after: updates without use after which a code is restarted (0: never).
    """

    def __init__(self, num_codes: int, dim: int, beta: float = 0.25, ema: bool = False, decay: float = 0.99,
                 eps: float = 1e-5, restart_after: int = 0):
        super().__init__()
        rules = [(isinstance(num_codes, int) and num_codes >= 2, f"num_codes must be an integer >= 2; got {num_codes!r}"),
                 (isinstance(dim, int) and dim >= 1, f"the code dimension must be a positive integer; got {dim!r}"),
                 (beta >= 0, f"the commitment weight beta must be >= 0 (van den Oord et al. use 0.25); got {beta!r}"),
                 (0 < decay < 1, f"the codebook EMA decay must lie in (0, 1) (e.g. 0.99); got {decay!r}"),
                 (eps > 0, f"the Laplace smoothing eps must be positive (e.g. 1e-5); got {eps!r}"),
                 (isinstance(restart_after, int) and restart_after >= 0,
                  f"restart_after must be an integer >= 0 (0 turns dead-code restart off); got {restart_after!r}")]
        for ok, message in rules:
            if not ok:
                raise DifflabError(message)
        self.num_codes, self.dim, self.beta = num_codes, dim, float(beta)
        self.ema, self.decay, self.eps, self.restart_after = bool(ema), float(decay), float(eps), restart_after
        codebook = torch.empty(num_codes, dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)  # taming's init
        self.codebook = nn.Parameter(codebook, requires_grad=not self.ema)
        if self.ema:
            # N_k = 1, m_k = e_k: each initial code counts as one observation of itself (Jukebox's
            # k_elem = 1). With N_k = 0 an unused code would become d^t e_k / eps and fly off.
            self.register_buffer("cluster_size", torch.ones(num_codes))  # N_k
            self.register_buffer("embed_sum", codebook.clone())  # m_k
        self.register_buffer("steps_unused", torch.zeros(num_codes, dtype=torch.long))

    # ----- assignment ---------------------------------------------------------------------------
    def nearest(self, z_flat: Tensor) -> Tensor:
        """argmin_j ||z_i - e_j||^2 for rows z_i (N, dim) -> (N,) in float32 (the expanded form
        ||z||^2 - 2 z.e + ||e||^2, autocast off); ties go to the lowest index."""
        with torch.no_grad(), torch.autocast(z_flat.device.type, enabled=False):
            z, e = z_flat.float(), self.codebook.float()
            d = z.square().sum(1, keepdim=True) - 2.0 * z @ e.T + e.square().sum(1)  # (N, K)
        return d.argmin(1)

    def _flat(self, z: Tensor) -> Tensor:
        if z.ndim != 4 or z.shape[1] != self.dim:
            raise DifflabError(f"the quantizer takes latents (B, {self.dim}, h, w); got {tuple(z.shape)}")
        return z.permute(0, 2, 3, 1).reshape(-1, self.dim)  # (B*h*w, dim)

    def lookup(self, indices: Tensor) -> Tensor:
        """Code vectors of indices (B, h, w) -> (B, dim, h, w)."""
        return self.codebook[indices].permute(0, 3, 1, 2)

    def indices(self, z: Tensor) -> Tensor:
        """The nearest codes of z (B, dim, h, w) -> (B, h, w)."""
        B, _, h, w = z.shape
        return self.nearest(self._flat(z).detach()).reshape(B, h, w)

    # ----- training-time codebook maintenance ---------------------------------------------------
    @torch.no_grad()
    def _update(self, z_flat: Tensor, idx: Tensor, counts: Tensor, generator: torch.Generator | None) -> None:
        z_flat = z_flat.float()
        if self.ema:
            one_hot = F.one_hot(idx, self.num_codes).to(z_flat.dtype)  # (N, K): a deterministic sum
            self.cluster_size.mul_(self.decay).add_(counts.to(z_flat.dtype), alpha=1 - self.decay)
            self.embed_sum.mul_(self.decay).add_(one_hot.T @ z_flat, alpha=1 - self.decay)
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n  # N~_k
            self.codebook.copy_(self.embed_sum / smoothed[:, None])
        if self.restart_after:
            self.steps_unused.copy_(torch.where(counts > 0, 0, self.steps_unused + 1))
            dead = self.steps_unused >= self.restart_after  # (K,)
            # K candidate rows drawn every update (no host sync on `dead`, the same draws whatever dies)
            rows = torch.randint(0, z_flat.shape[0], (self.num_codes,), generator=generator, device=z_flat.device)
            fresh = z_flat[rows]  # (K, dim)
            self.codebook.copy_(torch.where(dead[:, None], fresh, self.codebook))
            if self.ema:
                self.embed_sum.copy_(torch.where(dead[:, None], fresh, self.embed_sum))
                self.cluster_size.copy_(torch.where(dead, 1.0, self.cluster_size))
            self.steps_unused.masked_fill_(dead, 0)

    # ----- forward ------------------------------------------------------------------------------
    def forward(self, z: Tensor, generator: torch.Generator | None = None, update: bool = False
                ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        z_flat = self._flat(z)
        idx = self.nearest(z_flat.detach())  # (N,)
        q = self.lookup(idx.reshape(z.shape[0], *z.shape[2:])).to(z.dtype)  # (B, dim, h, w)
        commitment = self.beta * (z - q.detach()).square().flatten(1).mean(1)  # (B,)
        codebook = torch.zeros_like(commitment) if self.ema else (z.detach() - q).square().flatten(1).mean(1)
        counts = torch.bincount(idx, minlength=self.num_codes)  # (K,)
        stats = code_statistics(counts)
        if update:
            self._update(z_flat.detach(), idx, counts, generator)
        return z + (q - z).detach(), {"codebook": codebook, "commitment": commitment}, stats


class VQAutoencoder(Autoencoder):
    """VQ-VAE: encoder trunk, 1x1 conv to the code dimension, quantizer, 1x1 conv, decoder trunk.

    encode(x) = the quantized code vectors (B, latent_channels, H/f, W/f); decode(z) decodes any latent
    (a diffusion model's latents are decoded as they are, not re-quantized: LDM's VQ-reg. choice,
    "the quantization layer absorbed by the decoder"); encode_indices / decode_indices work on code
    indices (B, H/f, W/f). latent_channels is the code dimension; the quantizer's options
    (num_codes, beta, ema, decay, eps, restart_after) are VectorQuantizer's.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64, channel_mult: Sequence[int] = (1, 2, 2),
                 num_res_blocks: int = 1, latent_channels: int = 4, attention: bool = False, num_codes: int = 512,
                 beta: float = 0.25, ema: bool = False, decay: float = 0.99, eps: float = 1e-5,
                 restart_after: int = 0):
        factor = check_trunk_options(in_channels, base_channels, channel_mult, num_res_blocks, latent_channels)
        super().__init__(factor, latent_channels)
        self.in_channels = in_channels
        trunk = dict(base_channels=base_channels, channel_mult=tuple(channel_mult), num_res_blocks=num_res_blocks,
                     attention=bool(attention))
        self.encoder = Encoder(in_channels, out_channels=latent_channels, **trunk)
        self.quant_conv = nn.Conv2d(latent_channels, latent_channels, 1)
        self.quantizer = VectorQuantizer(num_codes, latent_channels, beta, ema, decay, eps, restart_after)
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1)
        self.decoder = Decoder(latent_channels, out_channels=in_channels, **trunk)

    def _pre_quant(self, x: Tensor) -> Tensor:
        self.check_image_size(x)
        return self.quant_conv(self.encoder(x))  # (B, dim, H/f, W/f)

    def encode(self, x: Tensor) -> Tensor:
        return self.quantizer.lookup(self.encode_indices(x))

    def encode_indices(self, x: Tensor) -> Tensor:
        """Code indices (B, H/f, W/f) of images x in [-1, 1]."""
        return self.quantizer.indices(self._pre_quant(x))

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(z))

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Images of code indices (B, h, w)."""
        return self.decode(self.quantizer.lookup(indices))

    @property
    def last_layer(self) -> Tensor:
        """The decoder's last weight: where the adaptive GAN weight compares gradients."""
        return self.decoder.conv_out.weight

    def reconstruct(self, x: Tensor, generator: torch.Generator | None = None, sample: bool = True
                    ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """(x_hat, per-sample losses {"codebook", "commitment"}, batch stats {"code_usage", "perplexity"});
        in training mode the codebook's EMA update and dead-code restart run (`sample` is unused)."""
        q, losses, stats = self.quantizer(self._pre_quant(x), generator, update=self.training)
        return self.decode(q), losses, stats

    forward = reconstruct  # the trainer calls the (DDP-wrapped) module
