"""Interpolation between samples: spherical interpolation of their noises (or inverted images) and mixing
of two conditions.

slerp (Shoemake 1985; used for diffusion noises by Song et al. 2021, 'DDIM', sec. 5.3): per row,

    slerp(z0, z1; w) = sin((1 - w) theta) / sin(theta) z0 + sin(w theta) / sin(theta) z1,
    cos(theta) = <z0, z1> / (|z0| |z1|),

which keeps a Gaussian noise's norm near sqrt(D) along the path (a straight line would pass through
low-norm noise the model never saw); it falls back to the straight line where theta ~ 0.

Conditions are mixed where the model reads them, in its prediction (any condition type: labels, prompts):
D_w(x, t) = (1 - w) D(x, t, c0) + w D(x, t, c1), linear in x0_hat and eps_hat, hence the score of
p(x | c0)^(1 - w) p(x | c1)^w (product of experts, as classifier-free guidance mixes c and the null
condition). Both conditions run in one batched call.
"""

from __future__ import annotations

import torch
from torch import Tensor

from difflab.param.denoiser import DenoiserWrapper
from difflab.utils.cond import cond_cat
from difflab.utils.errors import DifflabError
from difflab.utils.tensors import append_dims


def slerp(z0: Tensor, z1: Tensor, w) -> Tensor:
    """Spherical interpolation per row of (B, ...) tensors; w a float or a (B,) tensor in [0, 1]."""
    if z0.shape != z1.shape:
        raise DifflabError(f"slerp needs two tensors of one shape; got {tuple(z0.shape)} and {tuple(z1.shape)}")
    a, b = z0.flatten(1).double(), z1.flatten(1).double()
    w = torch.as_tensor(w, dtype=torch.float64, device=z0.device).expand(a.shape[0])[:, None]
    cos = (a * b).sum(1, keepdim=True) / (a.norm(dim=1, keepdim=True) * b.norm(dim=1, keepdim=True)).clamp(min=1e-300)
    theta = torch.arccos(cos.clamp(-1.0, 1.0))
    sin = torch.sin(theta)
    straight = sin < 1e-6
    safe = torch.where(straight, torch.ones_like(sin), sin)
    c0 = torch.where(straight, 1 - w, torch.sin((1 - w) * theta) / safe)
    c1 = torch.where(straight, w, torch.sin(w * theta) / safe)
    return (c0 * a + c1 * b).reshape(z0.shape).to(z0.dtype)


def slerp_frames(z0: Tensor, z1: Tensor, frames: int) -> Tensor:
    """`frames` points from z0 to z1 (single samples of shape (1, ...) or (...)): a (frames, ...) batch."""
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise DifflabError(f"frames must be an integer >= 2; got {frames!r}")
    z0, z1 = z0.reshape(1, -1), z1.reshape(1, -1)
    w = torch.linspace(0, 1, frames, dtype=torch.float64)
    return slerp(z0.expand(frames, -1), z1.expand(frames, -1), w)


class MixedCondition(DenoiserWrapper):
    """D_w = (1 - w) D(., c0) + w D(., c1) with per-row weights w (B,) (module doc)."""

    def __init__(self, denoiser, cond0, cond1, weights: Tensor):
        super().__init__(denoiser)
        self.cond0, self.cond1 = cond0, cond1
        self.weights = torch.as_tensor(weights, dtype=torch.float64)

    def __call__(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        B = x.shape[0]
        out = self.denoiser(torch.cat([x, x]), torch.cat([t, t]), cond_cat(self.cond0, self.cond1))
        w = append_dims(self.weights.to(x.device), x.ndim).to(out.dtype)
        return (1 - w) * out[:B] + w * out[B:]
