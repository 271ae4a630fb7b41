"""The one entry point of `difflab eval`: the requested metrics of generated samples, in one streaming pass.

`evaluate(fake, real, metrics, ...)` takes tensors or iterables of batches (tensors, or dicts with an
"x" tensor as difflab's data loaders yield). Each batch is passed once through each feature extractor
a requested metric needs, and every metric accumulates from those features, so images are never all in
memory. FID, FDD and the class statistics keep constant-size state; KID, IS, precision/recall, SW2, MMD
and the memorization check need every feature vector (N x F floats), which is inherent to them.

`evaluate_folders(fake_dir, real_dir, ...)` does the same for two folders of images, after checking
that they hold images of one size and mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
from torch import Tensor

from difflab.data.images import to_unit_range
from difflab.metrics.clip_score import DEFAULT_CLIP_MODEL
from difflab.metrics.digit_classifier import load_digit_classifier
from difflab.metrics.features import FeatureExtractor, get_feature_extractor
from difflab.metrics.folders import ImageFolderBatches, check_same_images
from difflab.metrics.inception import InceptionV3Features
from difflab.metrics.streaming import BatchOutputs, build_accumulators
from difflab.utils.errors import DifflabError, check_choice

METRICS: dict[str, str] = {
    "fid": "Fréchet Inception Distance (torchmetrics; Inception-v3 pool3, needs its weights)",
    "kid": "Kernel Inception Distance, mean and std over subsets (torchmetrics)",
    "is": "Inception Score, mean and std over splits (torchmetrics); generated samples only",
    "fdd": "Fréchet Digit Distance: the FID formula on the digit classifier's features (NOT comparable to FID)",
    "kdd": "Kernel Digit Distance: the KID estimator on the digit classifier's features",
    "precision_recall": "improved precision and recall (k-NN manifolds) in the `features` space",
    "class_coverage": "digit classes present, entropy of the predicted classes, mean classifier confidence",
    "label_accuracy": "fraction of samples classified as their requested label (needs labels)",
    "clip_score": "CLIP score of samples against their captions (needs captions and a local CLIP model)",
    "sw2": "sliced Wasserstein-2 distance between the flattened samples",
    "mmd": "unbiased MMD^2 with an RBF kernel between the flattened samples",
    "memorization": "nearest-neighbour distances to the training set vs those of real held-out samples",
}
NEEDS_REAL = frozenset({"fid", "kid", "fdd", "kdd", "precision_recall", "sw2", "mmd", "memorization"})

Data = Tensor | Iterable


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


def _parse_metrics(metrics: str | Sequence[str]) -> list[str]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise DifflabError(f"no metric requested; choose from: {', '.join(METRICS)}")
    return [check_choice("metric", m, METRICS) for m in dict.fromkeys(names)]


def _known_count(data: Data | None) -> int | None:
    if isinstance(data, Tensor):
        return data.shape[0]
    if isinstance(data, ImageFolderBatches):
        return data.n
    return None


def check_counts(
    metrics: Sequence[str],
    o: EvalOptions,
    n_fake: int | None,
    n_real: int | None,
    n_train: int | None = None,
    n_labels: int | None = None,
    n_captions: int | None = None,
) -> None:
    """Raise one DifflabError if a statistic lacks the samples it needs (None = not known yet)."""

    def need(n: int | None, minimum: int, what: str, fix: str) -> None:
        if n is not None and n < minimum:
            raise DifflabError(f"{what} needs at least {minimum} samples, got {n}; {fix}")

    more = "generate or supply more samples"
    for m in metrics:
        if m in ("fid", "fdd", "mmd"):
            need(n_fake, 2, f"{m} (a covariance / U-statistic) on generated samples", more)
            need(n_real, 2, f"{m} on real samples", more)
        if m in ("kid", "kdd"):
            size = o.kid_subset_size
            if size is not None:
                if size < 2:
                    raise DifflabError(f"kid_subset_size must be at least 2; got {size}")
                need(n_fake, size, f"{m} with kid_subset_size={size} on generated samples", "lower kid_subset_size")
                need(n_real, size, f"{m} with kid_subset_size={size} on real samples", "lower kid_subset_size")
            else:
                need(n_fake, 2, f"{m} on generated samples", more)
                need(n_real, 2, f"{m} on real samples", more)
        if m == "is":
            if o.is_splits < 1:
                raise DifflabError(f"is_splits must be at least 1; got {o.is_splits}")
            need(n_fake, o.is_splits, f"the inception score with is_splits={o.is_splits}", "lower is_splits")
        if m == "precision_recall":
            if o.k < 1:
                raise DifflabError(f"precision/recall k must be at least 1; got {o.k}")
            need(n_fake, o.k + 1, f"precision/recall with k={o.k} on generated samples", "lower k")
            need(n_real, o.k + 1, f"precision/recall with k={o.k} on real samples", "lower k")
        if m == "memorization":
            need(n_train, 1, "the memorization check (pass train=...) on training samples", "pass the training set")
        if m == "label_accuracy" and n_labels is not None and n_fake is not None and n_labels != n_fake:
            raise DifflabError(f"label_accuracy needs one requested label per sample: {n_fake} samples, {n_labels} labels")
        if m == "clip_score" and n_captions is not None and n_fake is not None and n_captions != n_fake:
            raise DifflabError(f"clip_score needs one caption per sample: {n_fake} samples, {n_captions} captions")
        if m in ("sw2", "memorization", "class_coverage", "label_accuracy", "clip_score", "is"):
            need(n_fake, 1, f"{m} on generated samples", more)


def _batches(data: Data, batch_size: int, role: str) -> Iterator[Tensor]:
    if isinstance(data, Tensor):
        yield from data.split(batch_size)
        return
    if isinstance(data, (str, Path)):
        raise DifflabError(f"{role} samples must be tensors or batches; for a folder use evaluate_folders")
    for item in data:
        x = item.get("x") if isinstance(item, dict) else item
        if not isinstance(x, Tensor):
            raise DifflabError(
                f"{role} batches must be tensors (or dicts with an 'x' tensor); got {type(item).__name__}"
            )
        yield x


def _prepare(x: Tensor, role: str, shape: tuple[int, ...] | None) -> Tensor:
    """uint8 -> [-1, 1]; check the shape against the first batch, finiteness, and the image value range.

    Images (4-D) outside [-1.5, 1.5] are rejected as another convention (e.g. [0, 255]); the small
    overshoot of unclipped samples is allowed. Floating samples keep their dtype (float64 points stay so).
    """
    if x.ndim < 2:
        raise DifflabError(f"{role} samples must be batched (N, ...); got shape {tuple(x.shape)}")
    if shape is not None and tuple(x.shape[1:]) != shape:
        raise DifflabError(
            f"{role} samples have shape {tuple(x.shape[1:])} but earlier samples have {shape}; real, generated and "
            "training samples must share one shape (same size and channels)"
        )
    if x.dtype == torch.uint8:
        return to_unit_range(x)
    if not x.is_floating_point():
        raise DifflabError(f"{role} samples must be floating point or uint8 tensors; got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise DifflabError(f"{role} samples contain NaN or infinite values; the sampler diverged or the data is broken")
    if x.ndim == 4 and x.numel():
        lo, hi = torch.aminmax(x)
        if lo < -1.5 or hi > 1.5:
            raise DifflabError(
                f"{role} images must lie in [-1, 1] (x = u8 / 127.5 - 1); got values in [{float(lo):.3g}, "
                f"{float(hi):.3g}]; rescale them, or pass uint8 tensors"
            )
    return x


def evaluate(
    fake: Data,
    real: Data | None = None,
    metrics: str | Sequence[str] = ("fdd",),
    *,
    train: Data | None = None,
    heldout: Data | None = None,
    labels: Tensor | None = None,
    captions: Sequence[str] | None = None,
    options: EvalOptions | None = None,
    progress: Callable[[str, int], None] | None = None,
    **overrides,
) -> dict[str, float]:
    """Compute `metrics` (names in METRICS) of generated samples `fake` against `real` ones.

    fake, real, train: tensors (N, ...) or iterables of batches; images in [-1, 1] (or uint8).
    labels: requested class of each generated sample (label_accuracy); captions: one per sample
    (clip_score); train: the training set (memorization); heldout: fresh real samples the model never saw,
    whose distances to `train` the memorization check compares with the generated ones (default: `real`;
    pass it to score the other metrics against the training set while memorization uses a test split).
    options / overrides: EvalOptions fields. progress(stage, samples_done) after each batch.
    Returns a flat dict of floats (e.g. {"fdd": ..., "precision": ..., "recall": ..., "n_fake": ...}).
    """
    names = _parse_metrics(metrics)
    valid = {f.name for f in fields(EvalOptions)}
    for key in overrides:
        check_choice("evaluate option", key, valid)
    o = replace(options or EvalOptions(), **overrides)
    missing_real = [m for m in names if m in NEEDS_REAL and real is None]
    if missing_real:
        raise DifflabError(f"{', '.join(missing_real)} compare(s) with real data: pass real=... samples")
    if "memorization" in names and train is None:
        raise DifflabError("the memorization check needs the training set: pass train=...")
    if "label_accuracy" in names and labels is None:
        raise DifflabError("label_accuracy needs the requested labels of the generated samples: pass labels=...")
    if "clip_score" in names and captions is None:
        raise DifflabError("clip_score needs one caption per generated sample: pass captions=...")
    n_labels = None if labels is None else labels.shape[0]
    n_captions = None if captions is None else len(captions)
    if heldout is not None and "memorization" not in names:
        raise DifflabError("heldout=... is only used by the memorization check: add 'memorization' or drop it")
    check_counts(names, o, _known_count(fake), _known_count(real), _known_count(train), n_labels, n_captions)

    extractors = Extractors(o)
    accs = build_accumulators(names, o, extractors, heldout_role="real" if heldout is None else "heldout")
    roles = [("fake", fake), ("real", real), ("heldout", heldout), ("train", train)]
    counts: dict[str, int | None] = {role: None for role, _ in roles}  # None: not consumed
    shape: tuple[int, ...] | None = None
    for role, data in roles:
        if data is None or not any(acc.wants(role) for acc in accs):
            continue
        counts[role] = 0
        for x in _batches(data, o.batch_size, role):
            x = _prepare(x, role, shape)
            shape = tuple(x.shape[1:])
            batch = BatchOutputs(x, offset=counts[role], labels=labels, captions=captions)
            for acc in accs:
                if acc.wants(role):
                    acc.update(batch, role)
            counts[role] += x.shape[0]
            if progress is not None:
                progress(role, counts[role])
    n_fake, n_real, n_train = counts["fake"] or 0, counts["real"], counts["train"]
    check_counts(names, o, n_fake, n_real, n_train, n_labels, n_captions)
    result: dict[str, float] = {}
    for acc in accs:
        result.update(acc.compute(n_fake, n_real or 0, n_train or 0))
    result["n_fake"] = n_fake
    if n_real is not None:
        result["n_real"] = n_real
    return {k: (v if isinstance(v, int) else float(v)) for k, v in result.items() if not _is_nan_std(k, v)}


def _is_nan_std(key: str, value: float) -> bool:
    # torchmetrics returns NaN for the std of a single split / subset: leave it out rather than print nan.
    return key.endswith("_std") and isinstance(value, float) and math.isnan(value)


def evaluate_folders(
    fake_dir: str | Path,
    real_dir: str | Path | None = None,
    metrics: str | Sequence[str] = ("fdd",),
    *,
    train_dir: str | Path | None = None,
    labels: Tensor | None = None,
    captions: Sequence[str] | None = None,
    progress: Callable[[str, int], None] | None = None,
    **options,
) -> dict[str, float]:
    """evaluate() on folders of images (`difflab eval --fake DIR --real DIR`), all of one size and mode."""
    batch_size = options.get("batch_size", EvalOptions.batch_size)
    fake = ImageFolderBatches(fake_dir, batch_size)
    real = None if real_dir is None else ImageFolderBatches(real_dir, batch_size)
    train = None if train_dir is None else ImageFolderBatches(train_dir, batch_size)
    for other in (real, train):
        if other is not None:
            check_same_images(fake, other)
    return evaluate(
        fake, real, metrics, train=train, labels=labels, captions=captions, progress=progress, **options
    )
