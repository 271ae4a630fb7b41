"""TimeClassifier: a raw classifier network as the p_phi(y | x_t) that classifier guidance calls.

Classifier guidance (Dhariwal & Nichol 2021, Algorithm 1; seeds 001 and 002) needs log p_phi(y | x_t, t)
and its gradient in x_t at the sampler's times t in [0, 1]. The raw network (difflab.nets.NoisyClassifier)
takes c_noise like the denoiser networks do; this wrapper feeds c_noise = time_scale * t, the
convention of NetworkDenoiser, and carries the process the classifier was trained on, so a guidance
wrapper can check that the classifier and the denoiser see the same x_t.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from difflab.process.base import NoiseProcess


class TimeClassifier(nn.Module):
    """classifier(x_t, t) = net(x_t, time_scale * t) -> logits (B, num_classes); log p(y|x_t) = log_softmax.

    t is a float tensor of shape (B,) or a scalar, in [0, 1] (0 = data, 1 = noise). time_scale = 1000
    puts continuous times on DDPM's step scale, as NetworkDenoiser does.
    """

    def __init__(self, net: nn.Module, process: NoiseProcess, time_scale: float = 1000.0):
        super().__init__()
        self.net, self.process, self.time_scale = net, process, float(time_scale)

    @property
    def num_classes(self) -> int | None:
        """The network's number of classes (None when the network does not say)."""
        return getattr(self.net, "num_classes", None)

    def forward(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        """cond is accepted (and unused) so the Trainer can call a classifier like a denoiser; labels are
        the loss's target, never an input."""
        t = torch.as_tensor(t, device=x.device, dtype=x.dtype).expand(x.shape[0])  # (B,)
        return self.net(x, t * self.time_scale)  # (B, num_classes)
