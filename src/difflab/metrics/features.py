"""Pluggable feature extractors: the protocol, raw features, the torchmetrics adapter and the registry.

A feature extractor is any object with

* `name: str` (names the feature space in reports: "inception", "digits", "raw", ...);
* `features(images) -> Tensor (N, F)`, batched internally so any N fits in memory;
* optionally `logits(images) -> Tensor (N, K)` (class logits, for the Inception Score and class
  statistics), `num_features: int`, `num_classes: int`, and `features_and_logits(images)` when both
  come from one forward pass.

Distances computed in different feature spaces are not comparable: an FID (Inception-v3 pool3) and an
FDD (the digit classifier's penultimate layer) measure different things on different scales.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from difflab.utils.errors import DifflabError, check_choice

FEATURE_SPACES = ("digits", "inception", "raw")


@runtime_checkable
class FeatureExtractor(Protocol):
    name: str

    def features(self, images: Tensor) -> Tensor: ...


def batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int) -> Tensor:
    """fn applied to slices of at most `batch_size` rows, concatenated (bounded peak memory)."""
    if x.shape[0] <= batch_size:
        return fn(x)
    return torch.cat([fn(chunk) for chunk in x.split(batch_size)])


def features_and_logits(extractor: FeatureExtractor, images: Tensor) -> tuple[Tensor, Tensor]:
    """Both outputs, from one forward pass when the extractor offers it."""
    both = getattr(extractor, "features_and_logits", None)
    if both is not None:
        return both(images)
    return extractor.features(images), logits_of(extractor, images)


def logits_of(extractor: FeatureExtractor, images: Tensor) -> Tensor:
    """extractor.logits(images), or a DifflabError naming the extractor when it has no classifier head."""
    fn = getattr(extractor, "logits", None)
    if fn is None:
        raise DifflabError(
            f"feature extractor {extractor.name!r} has no logits(); class-based metrics (inception score, "
            "class coverage, label accuracy) need a classifier such as 'digits' or 'inception'"
        )
    return fn(images)


def images_to_uint8(images: Tensor) -> Tensor:
    """Images in [-1, 1] (N, 1 or 3, H, W) -> uint8 RGB (N, 3, H, W): x * 127.5 + 128, clipped, floored.

    The same quantization as saving a PNG (EDM generate.py), i.e. round to nearest.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DifflabError(f"expected images (N, 1 or 3, H, W); got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        x = images
    else:
        x = (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class RawFeatures:
    """The samples themselves, flattened: (N, ...) -> (N, prod(...)) float32. For 2-D toys and pixels."""

    name = "raw"

    def features(self, images: Tensor) -> Tensor:
        return images.flatten(1).float()


class FeatureModule(nn.Module):
    """Any extractor as an nn.Module, to give torchmetrics metrics a custom `feature` network.

    torchmetrics' FrechetInceptionDistance, KernelInceptionDistance and InceptionScore accept an
    nn.Module whose forward maps a batch to (N, d); `num_features` spares them a dummy forward pass.
    `output` selects "features" (FID, KID) or "logits" (IS). Pass the images as the extractor expects
    them (e.g. float in [-1, 1]) and construct FID with normalize=False so torchmetrics leaves them as is.
    """

    def __init__(self, extractor: FeatureExtractor, output: str = "features", num_features: int | None = None):
        super().__init__()
        self.extractor = extractor
        self.output = check_choice("feature output", output, ("features", "logits"))
        attr = "num_features" if output == "features" else "num_classes"
        dim = num_features if num_features is not None else getattr(extractor, attr, None)
        if not isinstance(dim, int) or dim < 1:
            raise DifflabError(
                f"FeatureModule needs the output width: extractor {extractor.name!r} has no {attr}; "
                "pass num_features="
            )
        self.num_features = dim

    def forward(self, images: Tensor) -> Tensor:
        if self.output == "features":
            return self.extractor.features(images)
        return logits_of(self.extractor, images)


class Passthrough(nn.Module):
    """Identity feature module: lets torchmetrics metrics consume features computed once elsewhere."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, features: Tensor) -> Tensor:
        return features


def get_feature_extractor(spec: str | FeatureExtractor, **kwargs) -> FeatureExtractor:
    """An extractor by name ("digits", "inception", "raw") or the extractor object itself.

    Keyword arguments go to the named extractor's loader: load_digit_classifier(...) for "digits",
    InceptionV3Features(...) for "inception".
    """
    if not isinstance(spec, str):
        if not isinstance(spec, FeatureExtractor):
            raise DifflabError(
                f"a feature extractor needs a `name` and a features(images) method; got {type(spec).__name__}"
            )
        return spec
    check_choice("feature space", spec, FEATURE_SPACES)
    if spec == "raw":
        return RawFeatures()
    # Imported here: both modules build on this one (the protocol and `batched`).
    if spec == "digits":
        from difflab.metrics.digit_classifier import load_digit_classifier

        return load_digit_classifier(**kwargs)
    from difflab.metrics.inception import InceptionV3Features

    return InceptionV3Features(**kwargs)
