"""A tiny conditional denoiser and toy data for the trainer tests."""

from __future__ import annotations

import torch
from torch import nn

from difflab.nets.mlp import MLPNet
from difflab.param import NetworkDenoiser
from difflab.process import make_process
from difflab.train import TensorBatchDataset


def tiny_denoiser(seed: int = 0, num_classes: int | None = 3, dropout: float = 0.0) -> nn.Module:
    """A 2-D flow-matching denoiser around a small MLPNet, initialized from `seed`."""
    torch.manual_seed(seed)
    net = MLPNet(data_dim=2, hidden_dim=16, num_blocks=1, num_classes=num_classes, dropout=dropout, frequency_dim=8)
    nn.init.normal_(net.out_proj.weight, std=0.1)  # not zero: every layer gets a gradient from step 1
    return NetworkDenoiser(net, make_process("flow"), "velocity")


def toy_data(n: int = 96, num_classes: int = 3, seed: int = 0) -> TensorBatchDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorBatchDataset(torch.randn(n, 2, generator=g), torch.randint(0, num_classes, (n,), generator=g))
