from __future__ import annotations

import pytest
import torch

from difflab.nets import NETWORKS, DiT, MLPNet, UNet, build_network, count_parameters
from difflab.utils import DifflabError


def test_registry_names():
    assert {"mlp", "unet", "dit", "UNet-T", "UNet-10M", "DiT-T/2", "DiT-S/2", "DiT-B/2", "DiT-XL/2"} <= set(NETWORKS)


def test_build_network_passes_arguments():
    net = build_network("unet", in_channels=1, base_channels=8, channel_mult=(1,), num_heads=2, attention_resolutions=(32,))
    assert isinstance(net, UNet) and net.in_conv.weight.shape == (8, 1, 3, 3)
    dit = build_network("DiT-T/4", input_size=8, in_channels=1)
    assert isinstance(dit, DiT) and dit.patch_size == 4 and len(dit.blocks) == 2 and dit.pos_embed.shape == (1, 4, 64)
    assert isinstance(build_network("mlp", data_dim=5), MLPNet)


def test_build_network_errors():
    with pytest.raises(DifflabError, match="valid networks are: .*DiT-S/2.*mlp, unet"):
        build_network("resnet")
    with pytest.raises(DifflabError, match="bad arguments for network 'mlp'.*hidden_dim"):
        build_network("mlp", hidden=3)


def test_count_parameters():
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    assert count_parameters(m) == 3 * 4 + 4 + 4 * 2 + 2
    m[0].requires_grad_(False)
    assert count_parameters(m, trainable_only=True) == 4 * 2 + 2
