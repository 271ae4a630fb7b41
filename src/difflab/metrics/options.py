"""The settings of one evaluation (EvalOptions, checked once when built) and its feature extractors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from difflab.metrics.clip_score import DEFAULT_CLIP_MODEL
from difflab.metrics.digit_classifier import load_digit_classifier
from difflab.metrics.features import FeatureExtractor, get_feature_extractor
from difflab.metrics.inception import InceptionV3Features
from difflab.utils.errors import DifflabError

#: integer options and their least valid value
_AT_LEAST = {"k": 1, "kid_subsets": 1, "is_splits": 1, "num_projections": 1, "batch_size": 1, "seed": 0}


@dataclass(frozen=True)
class EvalOptions:
    """Settings of evaluate(); every field can also be passed to evaluate() as a keyword."""

    features: str | FeatureExtractor = "digits"  # space of precision_recall and memorization
    digit_classifier: FeatureExtractor | None = None  # default: the cached DigitClassifier
    inception: str | Path | FeatureExtractor | None = None  # weights file, or an extractor, for fid/kid/is
    inception_download: bool = True
    clip_model: str | Path | Callable = DEFAULT_CLIP_MODEL
    k: int = 3  # neighbours of precision/recall
    kid_subsets: int = 100
    kid_subset_size: int | None = None  # default min(1000, n_fake, n_real)
    is_splits: int = 10
    num_projections: int = 256
    mmd_bandwidth: float | str = "median"
    memorization_quantile: float = 0.01
    batch_size: int = 256
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        for name, least in _AT_LEAST.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise DifflabError(f"{name} must be an integer of at least {least}; got {value!r}")
        size = self.kid_subset_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 2):
            raise DifflabError(f"kid_subset_size must be an integer of at least 2 (or None: automatic); got {size!r}")
        if not 0.0 < self.memorization_quantile < 1.0:
            raise DifflabError(f"memorization_quantile must lie in (0, 1); got {self.memorization_quantile}")


class Extractors:
    """The feature extractors of one evaluation, each built at most once, on first use."""

    def __init__(self, options: EvalOptions):
        self.options = options
        self._built: dict[str, FeatureExtractor] = {}

    def _get(self, key: str, build: Callable[[], FeatureExtractor]) -> FeatureExtractor:
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]

    def digits(self) -> FeatureExtractor:
        o = self.options
        return self._get("digits", lambda: o.digit_classifier or load_digit_classifier(device=o.device))

    def inception(self) -> FeatureExtractor:
        o = self.options
        if isinstance(o.inception, FeatureExtractor):
            return o.inception
        return self._get(
            "inception",
            lambda: InceptionV3Features(o.inception, download=o.inception_download, device=o.device),
        )

    def space(self) -> FeatureExtractor:
        """The extractor named by options.features."""
        spec = self.options.features
        if spec == "digits":
            return self.digits()
        if spec == "inception":
            return self.inception()
        return get_feature_extractor(spec)
