"""Network registry: the names a config may use, one builder that turns a name into a network.

NETWORKS maps "mlp", "unet", "dit", "classifier" to their classes and every preset size (UNet-T, UNet-10M,
DiT-S/2, DiT-B/2, ...) to its constructor, as DiT's `DiT_models` does; preset arguments can be
overridden by keyword.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from difflab.nets.classifier import NoisyClassifier
from difflab.nets.dit import DiT, DiT_models
from difflab.nets.mlp import MLPNet
from difflab.nets.unet import UNet, UNet_models
from difflab.utils.errors import DifflabError, check_choice

NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLPNet, "unet": UNet, "dit": DiT, "classifier": NoisyClassifier, **UNet_models, **DiT_models
}


def build_network(name: str, **kwargs) -> nn.Module:
    """NETWORKS[name](**kwargs); an unknown name or argument raises one DifflabError naming the valid ones."""
    ctor = NETWORKS[check_choice("network", name, NETWORKS)]
    signature = inspect.signature(ctor)
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        raise DifflabError(
            f"bad arguments for network {name!r}: {err}; valid arguments are: {', '.join(signature.parameters)}"
        ) from None
    return ctor(**kwargs)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of `module` (only those with requires_grad when trainable_only)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
