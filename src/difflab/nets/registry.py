"""Network registry: the names a config may use, one builder that turns a name into a network.

NETWORKS maps "mlp", "unet", "dit", "classifier" to their classes and every preset size (UNet-T, UNet-10M,
DiT-S/2, DiT-B/2, ...) to its constructor, as DiT's `DiT_models` does; preset arguments can be
overridden by keyword. `check_network_options` checks names, types (the constructor's annotations) and
ranges (RANGES) before anything is built, so `--set model.options.channel_mult=xxxx` gets one message.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from difflab.nets.classifier import NoisyClassifier
from difflab.nets.dit import DiT, DiT_models
from difflab.nets.mlp import MLPNet
from difflab.nets.unet import UNet, UNet_models
from difflab.utils.errors import DifflabError, check_choice
from difflab.utils.keywords import check_keywords

NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLPNet, "unet": UNet, "dit": DiT, "classifier": NoisyClassifier, **UNet_models, **DiT_models
}


#: (low, high) inclusive for the numbers a network option may take, by option name (shared across networks);
#: widths and counts are capped so a typo cannot ask for terabytes. Items of a list option obey the same range.
WIDTH, COUNT = (1, 4096), (1, 64)
RANGES: dict[str, tuple[float, float]] = {
    **dict.fromkeys(("data_dim", "hidden_dim", "frequency_dim", "in_channels", "out_channels", "base_channels",
                     "hidden_size", "context_dim", "num_classes"), WIDTH),
    **dict.fromkeys(("num_blocks", "num_res_blocks", "depth", "num_heads", "num_null_tokens", "patch_size"), COUNT),
    "image_size": (1, 1024), "input_size": (1, 1024), "attention_resolutions": (1, 1024),
    "channel_mult": (1, 16), "dropout": (0.0, 0.99), "mlp_ratio": (0.01, 64.0),
}


def _check_range(name: str, value, what: str) -> None:
    if name not in RANGES or value is None:
        return
    lo, hi = RANGES[name]
    for v in value if isinstance(value, (list, tuple)) else [value]:
        if not lo <= v <= hi:
            raise DifflabError(f"{what} option {name}: {v!r} is outside {lo}..{hi}")
    if name == "channel_mult" and len(value) == 0:
        raise DifflabError(f"{what} option channel_mult: give at least one level, e.g. [1, 2]")


def check_network_options(name: str, kwargs: dict) -> dict:
    """kwargs for NETWORKS[name], checked (names, types, ranges) and coerced (lists -> tuples, 2.0 -> 2)."""
    ctor = NETWORKS[check_choice("network", name, NETWORKS)]
    what = f"network {name!r} (model.options)"
    out = check_keywords(ctor, kwargs, what)
    for key, value in out.items():
        _check_range(key, value, what)
    return out


def build_network(name: str, **kwargs) -> nn.Module:
    """NETWORKS[name](**kwargs); an unknown name or argument, a wrong type or an out-of-range value raises
    one DifflabError naming the valid ones (check_network_options)."""
    kwargs = check_network_options(name, kwargs)
    return NETWORKS[name](**kwargs)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of `module` (only those with requires_grad when trainable_only)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
