"""A network that predicts a fixed tensor and records what it saw (shared by the loss tests)."""

import torch


class Fixed(torch.nn.Module):
    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x, c_noise, cond=None):
        self.x, self.c_noise = x, c_noise
        return self.out
