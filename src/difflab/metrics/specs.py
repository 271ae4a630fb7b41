"""The metric table: for every metric name, what it needs and the accumulator that computes it.

SPECS drives every check of an evaluation, so that no caller restates it: which inputs a metric needs
(real samples, the training set, one requested label or one caption per generated sample), the fewest
samples of each role it can work with (some depend on the options: KID's subset size, the IS splits,
precision/recall's k), and the accumulator family that streams it (metrics of one family, e.g. sw2 and
mmd, share one accumulator and so one pass over the features). `resolve_metrics` turns a --metrics
string into names: AUTO picks, for a kind of data, the metrics whose inputs are available.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from difflab.metrics.options import EvalOptions, Extractors
from difflab.metrics.streaming import (
    Accumulator,
    Classes,
    Clip,
    FrechetDigits,
    LowDim,
    Memorization,
    PrecisionRecallAcc,
    TorchmetricsFID,
    TorchmetricsIS,
    TorchmetricsKID,
)
from difflab.utils.errors import DifflabError, check_choice

#: the inputs beyond the generated samples a metric may need, and how a user supplies each
INPUTS = {
    "real": "real samples to compare with: pass real=... (a run is compared with its training data)",
    "train": "the training set: evaluate a run (difflab eval RUN), or pass train=...",
    "labels": "the requested class of each generated sample: evaluate a class-conditional run, or pass labels=...",
    "captions": "the caption of each generated sample: evaluate a text-conditional run, or pass captions=...",
    "likelihood": "a model whose likelihood takes one pass (a PixelCNN or VAE run; a diffusion run's nll is "
                  "asked for by name, --metrics auto,nll, as it solves an ODE per image)",
}
MORE = "generate or supply more samples"
#: a minimum: (role "fake" / "real" / "train", least count, what needs it, how to fix it)
Minimum = tuple[str, int, str, str]
#: builds a family's accumulator from (the requested names of that family, options, extractors, held-out role)
Build = Callable[[list[str], EvalOptions, Extractors, str], Accumulator]


@dataclass(frozen=True)
class MetricSpec:
    description: str
    build: Build
    needs: frozenset[str] = frozenset()  # keys of INPUTS
    minimum: Callable[[str, EvalOptions], list[Minimum]] = lambda name, o: [("fake", 1, f"{name} on generated samples", MORE)]


def _pairs(least: int, what: str, fix: str = MORE) -> list[Minimum]:
    return [("fake", least, f"{what} on generated samples", fix), ("real", least, f"{what} on real samples", fix)]


def _covariance(name: str, o: EvalOptions) -> list[Minimum]:
    return _pairs(2, f"{name} (a covariance / U-statistic)")


def _kid(name: str, o: EvalOptions) -> list[Minimum]:
    size = o.kid_subset_size
    return _pairs(2, name) if size is None else _pairs(size, f"{name} with kid_subset_size={size}", "lower kid_subset_size")


def _is(name: str, o: EvalOptions) -> list[Minimum]:
    fix = f"lower is_splits (--is-splits; at most the number of samples) or drop {name!r} from the metrics"
    return [("fake", o.is_splits, f"the inception score with is_splits={o.is_splits}", fix)]


def _knn(name: str, o: EvalOptions) -> list[Minimum]:
    return _pairs(o.k + 1, f"precision/recall with k={o.k}", "lower k")


def _sw2(name: str, o: EvalOptions) -> list[Minimum]:
    return [("fake", 1, "sw2 on generated samples", MORE), ("real", 2, "sw2 and its floor on real samples", MORE)]


def _memorization(name: str, o: EvalOptions) -> list[Minimum]:
    return [("fake", 1, f"{name} on generated samples", MORE), ("train", 1, f"{name} on training samples", MORE)]


_fdd: Build = lambda names, o, ex, held: FrechetDigits(ex.digits())  # noqa: E731
_kdd: Build = lambda names, o, ex, held: TorchmetricsKID(ex.digits(), "kdd", o)  # noqa: E731
_fid: Build = lambda names, o, ex, held: TorchmetricsFID(ex.inception())  # noqa: E731
_kid_acc: Build = lambda names, o, ex, held: TorchmetricsKID(ex.inception(), "kid", o)  # noqa: E731
_is_acc: Build = lambda names, o, ex, held: TorchmetricsIS(ex.inception(), o)  # noqa: E731
_pr: Build = lambda names, o, ex, held: PrecisionRecallAcc(ex.space(), o)  # noqa: E731
_memo: Build = lambda names, o, ex, held: Memorization(ex.space(), o, held)  # noqa: E731
_classes: Build = lambda names, o, ex, held: Classes(ex.digits(), names)  # noqa: E731
_clip: Build = lambda names, o, ex, held: Clip(o)  # noqa: E731
_lowdim: Build = lambda names, o, ex, held: LowDim(names, o)  # noqa: E731


def _of_the_model(names: list[str], o: EvalOptions, ex: Extractors, held: str) -> Accumulator:
    raise DifflabError(f"{', '.join(names)} measure(s) a model, not samples: evaluate a run (difflab eval RUN "
                       "--metrics nll)")


REAL = frozenset({"real"})

SPECS: dict[str, MetricSpec] = {
    "fid": MetricSpec("Fréchet Inception Distance (torchmetrics; Inception-v3 pool3, needs its weights)",
                      _fid, REAL, _covariance),
    "kid": MetricSpec("Kernel Inception Distance, mean and std over subsets (torchmetrics)", _kid_acc, REAL, _kid),
    "is": MetricSpec("Inception Score, mean and std over splits (torchmetrics); generated samples only",
                     _is_acc, minimum=_is),
    "fdd": MetricSpec("Fréchet Digit Distance: the FID formula on the digit classifier's features (NOT comparable "
                      "to FID)", _fdd, REAL, _covariance),
    "kdd": MetricSpec("Kernel Digit Distance: the KID estimator on the digit classifier's features", _kdd, REAL, _kid),
    "precision_recall": MetricSpec("improved precision and recall (k-NN manifolds) in the `features` space",
                                   _pr, REAL, _knn),
    "class_coverage": MetricSpec("digit classes present, entropy of the predicted classes, mean classifier "
                                 "confidence", _classes),
    "label_accuracy": MetricSpec("fraction of samples classified as their requested label (needs labels)",
                                 _classes, frozenset({"labels"})),
    "clip_score": MetricSpec("CLIP score of samples against their captions (needs captions and a local CLIP model)",
                             _clip, frozenset({"captions"})),
    "sw2": MetricSpec("sliced Wasserstein-2 distance between the flattened samples, with its finite-sample floor "
                      "and the ratio to it", _lowdim, REAL, _sw2),
    "mmd": MetricSpec("unbiased MMD^2 with an RBF kernel between the flattened samples", _lowdim, REAL, _covariance),
    "memorization": MetricSpec("nearest-neighbour distances to the training set vs those of real held-out samples",
                               _memo, frozenset({"train", "real"}), _memorization),
    "nll": MetricSpec("bits/dim of held-out data under the model and its standard error (difflab.jobs.likelihood: "
                      "ode | elbo | vlb for diffusion, a PixelCNN's exact likelihood, a VAE's IWAE bound)",
                      _of_the_model, frozenset({"likelihood"}), lambda name, o: []),
}
#: metrics of the model itself, computed by the eval job from real data, never from samples
MODEL_METRICS = ("nll",)
METRICS: dict[str, str] = {name: spec.description for name, spec in SPECS.items()}

# ---------------------------------------------------------------- choosing metrics

AUTO = "auto"
#: short names accepted by --metrics ("confidence" comes with class_coverage)
ALIASES = {"pr": "precision_recall", "coverage": "class_coverage", "confidence": "class_coverage"}
#: what AUTO means for each kind of data (each metric kept only when its inputs are available)
AUTO_METRICS = {
    "digits": ("fdd", "class_coverage", "precision_recall", "memorization", "label_accuracy", "nll"),
    "images": ("fid", "kid", "is", "precision_recall", "nll"),
    "vectors": ("sw2", "mmd"),
}
#: the feature space of precision/recall and memorization for each kind of data
FEATURES = {"digits": "digits", "images": "inception", "vectors": "raw"}


def data_kind(shape: Sequence[int], dataset: str | None = None) -> str:
    """'digits', 'images' or 'vectors'. A run names its data set; a folder of grey 8x8 or 16x16 images is digits."""
    shape = tuple(shape)
    if len(shape) == 1:
        return "vectors"
    if dataset is not None:
        return "digits" if dataset == "digits" else "images"
    return "digits" if shape[0] == 1 and shape[1:] in ((8, 8), (16, 16)) else "images"


def resolve_metrics(spec: str | Sequence[str], kind: str, available: Iterable[str] = ("real", "train")) -> list[str]:
    """AUTO or comma-separated names (METRICS or ALIASES) -> metric names, in order, without repeats.

    AUTO is AUTO_METRICS[kind] without the metrics whose inputs (keys of INPUTS) are not `available`.
    """
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [s for s in names if s]
    if not names:
        raise DifflabError(f"--metrics is empty; give '{AUTO}' or names from: {', '.join(sorted(METRICS))}")
    have = set(available)
    out: list[str] = []
    for name in names:
        if name == AUTO:
            out.extend(m for m in AUTO_METRICS[kind] if SPECS[m].needs <= have)
        else:
            out.append(ALIASES.get(name) or check_choice("metric", name, (*METRICS, *ALIASES, AUTO)))
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------- checks and accumulators


def check_inputs(names: Sequence[str], given: Iterable[str]) -> None:
    """One DifflabError naming the metrics whose inputs (keys of INPUTS) are not among `given`."""
    have = set(given)
    for need, how in INPUTS.items():
        lacking = [m for m in names if need in SPECS[m].needs and need not in have]
        if lacking:
            raise DifflabError(f"{', '.join(lacking)} need(s) {how}")


def check_counts(names: Sequence[str], o: EvalOptions, counts: dict[str, int | None]) -> None:
    """Raise one DifflabError if a metric lacks the samples it needs; counts: role -> n (None: not known yet).

    "labels" and "captions" counts must equal the generated ones: one per sample.
    """
    for name in names:
        for role, least, what, fix in SPECS[name].minimum(name, o):
            n = counts.get(role)
            if n is not None and n < least:
                raise DifflabError(f"{what} needs at least {least} samples, got {n}; {fix}")
        n_fake = counts.get("fake")
        for need, one in (("labels", "requested label"), ("captions", "caption")):
            n = counts.get(need)
            if need in SPECS[name].needs and None not in (n, n_fake) and n != n_fake:
                raise DifflabError(f"{name} needs one {one} per sample: {n_fake} samples, {n} {need}")


def build_accumulators(names: Sequence[str], o: EvalOptions, ex: Extractors, heldout_role: str = "real"
                       ) -> list[Accumulator]:
    """One accumulator per family of the requested metrics (memorization's held-out samples: `heldout_role`)."""
    families: dict[Build, list[str]] = {}
    for name in names:
        families.setdefault(SPECS[name].build, []).append(name)
    return [build(members, o, ex, heldout_role) for build, members in families.items()]
