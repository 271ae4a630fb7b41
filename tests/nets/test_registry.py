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
    with pytest.raises(DifflabError, match="network 'mlp' .* has no option 'hidden'; its options are: .*hidden_dim"):
        build_network("mlp", hidden=3)


@pytest.mark.parametrize(
    "options, message",
    [  # the four, each a traceback inside the constructor before
        ({"channel_mult": 1e400}, "option channel_mult: expected a list; got inf"),
        ({"channel_mult": "xxxx"}, "option channel_mult: expected a list; got 'xxxx'"),
        ({"num_heads": {}}, "option num_heads: expected an integer; got {}"),
        ({"dropout": float("inf")}, "option dropout: expected a finite number"),
        ({"dropout": 1.5}, "option dropout: 1.5 is outside 0.0..0.99"),
        ({"base_channels": 0}, "option base_channels: 0 is outside 1..4096"),
        ({"channel_mult": [1, -2]}, "option channel_mult: -2 is outside 1..16"),
        ({"channel_mult": []}, "give at least one level"),
        ({"num_res_blocks": 2.5}, "option num_res_blocks: expected an integer; got 2.5"),
        ({"num_heads": True}, "option num_heads: expected an integer; got True"),
    ],
)
def test_network_options_are_checked_before_building(options, message):
    with pytest.raises(DifflabError) as err:
        build_network("unet", in_channels=1, image_size=8, **options)
    assert message in str(err.value)


def test_checked_options_are_coerced_and_presets_can_be_overridden():
    """YAML gives lists and 2.0; the constructor gets tuples and ints; a preset's own argument can be overridden."""
    net = build_network("UNet-T", in_channels=1, image_size=8, channel_mult=[1], num_res_blocks=1.0,
                        attention_resolutions=[8], base_channels=8)
    assert net.in_conv.weight.shape == (8, 1, 3, 3)


def test_count_parameters():
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    assert count_parameters(m) == 3 * 4 + 4 + 4 * 2 + 2
    m[0].requires_grad_(False)
    assert count_parameters(m, trainable_only=True) == 4 * 2 + 2
