"""The discretized logistic likelihood over L levels (Salimans et al. 2017, PixelCNN++, Sec. 2.1).

Data on L levels of [-1, 1] (level j at x_j = -1 + j Delta, Delta = 2 / (L - 1)); a logistic with
location mu and scale s = e^log_s, CDF sigma((x - mu) / s), puts on level j the mass of its bin:

    P(x_j) = sigma((x_j + Delta/2 - mu) / s) - sigma((x_j - Delta/2 - mu) / s),   0 < j < L - 1,
    P(x_0) = sigma((x_0 + Delta/2 - mu) / s),   P(x_{L-1}) = 1 - sigma((x_{L-1} - Delta/2 - mu) / s),

the edge bins reaching to -inf and +inf, so the L masses sum to 1. The interior difference is taken
in log space without cancellation: with a = (x + Delta/2 - mu)/s > b = (x - Delta/2 - mu)/s,

    log(sigma(a) - sigma(b)) = log sigma(a) + log sigma(-b) + log(1 - e^(b - a)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from difflab.likelihood.result import bin_width

LOG_SCALE_MIN = -7.0  # Salimans et al.'s floor on log s: bins never narrower than the data's spacing needs


def discretized_logistic_log_prob(x: Tensor, mu: Tensor, log_s: Tensor, levels: int) -> Tensor:
    """Elementwise log P(x) of data x on the L levels under logistic(mu, e^log_s), in the inputs' dtype."""
    half = bin_width(levels) / 2
    log_s = log_s.clamp(min=LOG_SCALE_MIN)
    inv_s = torch.exp(-log_s)
    a, b = (x + half - mu) * inv_s, (x - half - mu) * inv_s
    interior = F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1(-2 * half * inv_s))
    lowest, highest = x < -1 + half, x > 1 - half
    return torch.where(lowest, F.logsigmoid(a), torch.where(highest, F.logsigmoid(-b), interior))


def discretized_logistic_sample(mu: Tensor, log_s: Tensor, levels: int, u: Tensor | torch.Generator | None) -> Tensor:
    """A draw of x on the L levels: a logistic variate mu + s log(u / (1 - u)) snapped to its bin; u are the
    uniforms (shape of mu) or a generator to draw them from."""
    if not isinstance(u, Tensor):
        u = torch.rand(mu.shape, generator=u, dtype=mu.dtype, device=mu.device)
    u = u.to(mu.dtype).clamp(1e-6, 1 - 1e-6)
    y = mu + log_s.clamp(min=LOG_SCALE_MIN).exp() * (torch.log(u) - torch.log1p(-u))
    delta = bin_width(levels)
    return (((y + 1) / delta).round().clamp(0, levels - 1) * delta - 1).to(mu.dtype)
