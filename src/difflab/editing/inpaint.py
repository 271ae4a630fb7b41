"""Inpainting: the replacement method and RePaint's resampling, for any sampler and any guidance.

mask m (1 = regenerate, 0 = keep; broadcastable to the image), input y. Both methods evaluate the denoiser
through `KnownRegion`, which is a denoiser itself, so every sampler walks it unchanged:

    D'(x_t, t) = D(x_in, t),   x_in = m x_t + (1 - m) (alpha_t y + sigma_t z),   z ~ N(0, I) fresh per call,

i.e. the known region the network sees is re-noised from the input at every evaluation (the replacement
method: Song et al. 2021, 'Score-Based Generative Modeling through SDEs', App. I.2; Lugmayr et al. 2022,
'RePaint', eq. 8), and D' answers in x0-prediction with x0_hat = m x0_hat(x_in) + (1 - m) y, so the
sampler's own state agrees with y on the known region and ends there exactly.

RePaint (Lugmayr et al. 2022, Algorithm 1 and sec. 4.2) adds resampling: the grid is walked in blocks of
`jump_length` steps; each block is solved `resample` times, and between two passes the state is sent back
up the block by the forward process, x_{t_a} = alpha_{a|b} x_{t_b} + sigma_{a|b} z, which lets the
unknown region harmonize with the known one (the replacement method alone ignores that the known
region constrains the unknown one; its bias is measured in tests/editing and docs/benchmarks.md).
resample = 1 is the replacement method. Each pass is one difflab.sample call on the block's times, so a
multistep sampler restarts its history at each block.
"""

from __future__ import annotations

import torch
from torch import Tensor

from difflab.editing.common import EditResult, base_grid, check_image, generator_for, randn_like
from difflab.param.denoiser import Denoiser
from difflab.param.parameterization import X0, get_parameterization
from difflab.sampling import DEFAULT, DEFAULT_SCHEDULE, DEFAULT_STEPS, resolve_sampler, sample
from difflab.utils.errors import DifflabError, check_choice
from difflab.utils.tensors import append_dims, f64

METHODS = ("replace", "repaint")


def check_mask(mask, image: Tensor) -> Tensor:
    """A {0, 1} float mask broadcastable to the image batch (1 = regenerate); one message otherwise."""
    if not isinstance(mask, Tensor):
        raise DifflabError(f"the mask must be a tensor; got {type(mask).__name__}")
    mask = mask.to(device=image.device, dtype=image.dtype)
    if mask.ndim == image.ndim - 1:
        mask = mask[None]
    try:
        mask = torch.broadcast_to(mask, image.shape)
    except RuntimeError:
        raise DifflabError(f"the mask has shape {tuple(mask.shape)}, which does not fit the image "
                           f"{tuple(image.shape[1:])}: give a mask of the image's size") from None
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise DifflabError("the mask must hold only 0 (keep) and 1 (regenerate)")
    return mask


class KnownRegion(Denoiser):
    """The denoiser seen through the replacement method (module doc); answers in x0-prediction."""

    def __init__(self, denoiser, known: Tensor, mask: Tensor, generator: torch.Generator | None = None):
        self.denoiser, self.known, self.mask, self.generator = denoiser, known, mask, generator
        self.process = denoiser.process
        self.parameterization = X0
        self.inner = get_parameterization(denoiser.parameterization)

    def __call__(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        t64 = torch.as_tensor(t, device=x.device).to(f64).expand(x.shape[0])
        a = append_dims(self.process.alpha(t64), x.ndim).to(x.dtype)
        s = append_dims(self.process.sigma(t64), x.ndim).to(x.dtype)
        noisy_known = a * self.known + s * randn_like(x, self.generator)
        x_in = self.mask * x + (1 - self.mask) * noisy_known
        k = self.inner.coefficients(self.process, t64, x.ndim, x.dtype)
        x0_hat = self.inner.to_x0_eps(self.denoiser(x_in, t, cond), x_in, k).x0
        return self.mask * x0_hat + (1 - self.mask) * self.known


def inpaint(denoiser, image: Tensor, mask: Tensor, *, method: str = "replace", jump_length: int = 10,
            resample: int = 10, sampler: str = DEFAULT, steps: int = DEFAULT_STEPS,
            schedule=DEFAULT_SCHEDULE, schedule_options: dict | None = None, seed: int | None = None,
            generator: torch.Generator | None = None, cond=None, guidance=None, **options) -> EditResult:
    """Regenerate image where mask = 1 by the replacement method or RePaint (module doc); guidance (a
    function denoiser -> guided denoiser, as in difflab.sample) acts inside the replacement."""
    image = check_image(image, "the image")
    mask = check_mask(mask, image)
    check_choice("inpainting method", method, METHODS)
    if method == "repaint":
        for name, v in (("jump_length", jump_length), ("resample", resample)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise DifflabError(f"RePaint's {name} must be an integer >= 1; got {v!r}")
    else:
        resample = 1
    sampler = resolve_sampler(sampler, denoiser.process, steps)  # once: RePaint's blocks have fewer steps
    if sampler == "adaptive":
        raise DifflabError("the adaptive ODE solver cannot inpaint: the known region is re-noised with fresh noise "
                           "at every call, which its step-size control cannot follow; use a fixed-step sampler")
    inner = guidance(denoiser) if guidance is not None else denoiser
    process = denoiser.process
    ts = base_grid(process, schedule, steps, schedule_options, sampler)
    if get_parameterization(denoiser.parameterization).needs_signal and float(process.alpha(ts[:1])) == 0.0:
        raise DifflabError("an eps-prediction model cannot inpaint from t = 1 of rectified flow (alpha = 0): "
                           "set schedule_options t_max=0.999")
    g = generator_for(seed, generator, image.device)
    wrapped = KnownRegion(inner, image, mask, g)
    x = randn_like(image, g) * float(process.sigma(ts[:1]))
    n, nfe = ts.numel() - 1, 0
    block = n if method == "replace" else jump_length
    for start in range(0, n, block):
        times = ts[start:min(start + block, n) + 1]
        for r in range(resample):
            result = sample(wrapped, x, sampler=sampler, schedule=times, generator=g, cond=cond, **options)
            x, nfe = result.x, nfe + result.nfe
            if r < resample - 1:  # back up the block: x_{t_a} ~ q(x_{t_a} | x_{t_b})
                a_ab, s_ab = process.transition(times[-1:], times[:1])
                x = float(a_ab) * x + float(s_ab) * randn_like(x, g)
    return EditResult(mask * x + (1 - mask) * image, nfe, ts)
