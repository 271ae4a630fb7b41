"""Streaming accumulators behind evaluate(): one per metric family, fed batch by batch.

Each accumulator says which sample roles it wants ("fake", "real", "heldout", "train"), updates from a
BatchOutputs (the batch plus its features, computed once per extractor and shared by all
accumulators), and computes its numbers at the end. FID, KID and IS are torchmetrics metrics given the
shared features through an identity feature module (Passthrough), so each image is fed through an
extractor once however many metrics use it.
"""

from __future__ import annotations

import abc
import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from difflab.metrics.class_stats import ClassCounter
from difflab.metrics.clip_score import ClipScorer
from difflab.metrics.features import FeatureExtractor, Passthrough, features_and_logits, logits_of
from difflab.metrics.frechet import FeatureStats, frechet_distance_from_stats
from difflab.metrics.lowdim import memorization_check, mmd_rbf, sliced_wasserstein2, sw2_ratio
from difflab.metrics.precision_recall import precision_recall
from difflab.utils.errors import DifflabError

if TYPE_CHECKING:
    from difflab.metrics.options import EvalOptions

KID_DEFAULT_SUBSET = 1000  # torchmetrics' default subset size, capped by the sample counts


class BatchOutputs:
    """One batch of samples, its position in the generated stream, and its memoized features."""

    def __init__(self, x: Tensor, offset: int, labels: Tensor | None, captions: Sequence[str] | None):
        self.x = x
        self.offset = offset
        self._labels = labels
        self._captions = captions
        self._outputs: dict[int, tuple[Tensor, Tensor | None]] = {}

    def outputs(self, extractor: FeatureExtractor) -> tuple[Tensor, Tensor | None]:
        """(features (B, F), logits (B, K) or None) on the CPU, computed once per extractor."""
        key = id(extractor)
        if key not in self._outputs:
            if hasattr(extractor, "logits"):
                f, logits = features_and_logits(extractor, self.x)
                self._outputs[key] = (f.double().cpu(), logits.double().cpu())
            else:  # statistics in float64 (kernel and covariance sums cancel in float32)
                self._outputs[key] = (extractor.features(self.x).double().cpu(), None)
            if not bool(torch.isfinite(self._outputs[key][0]).all()):
                raise DifflabError(f"feature extractor {extractor.name!r} returned NaN or infinite features")
        return self._outputs[key]

    def logits(self, extractor: FeatureExtractor) -> Tensor:
        logits = self.outputs(extractor)[1]
        return logits if logits is not None else logits_of(extractor, self.x)

    @property
    def labels(self) -> Tensor | None:
        return None if self._labels is None else self._labels[self.offset : self.offset + self.x.shape[0]]

    @property
    def captions(self) -> list[str] | None:
        return None if self._captions is None else list(self._captions[self.offset : self.offset + self.x.shape[0]])


class Accumulator(abc.ABC):
    roles: tuple[str, ...] = ("fake", "real")

    def wants(self, role: str) -> bool:
        return role in self.roles

    @abc.abstractmethod
    def update(self, batch: BatchOutputs, role: str) -> None: ...

    @abc.abstractmethod
    def compute(self, n_fake: int, n_real: int, n_train: int) -> dict[str, float]: ...


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Fork the global RNG and seed it: torchmetrics' KID and IS draw subsets with torch.randperm."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class FrechetDigits(Accumulator):
    """FDD: FeatureStats of digit features, Fréchet distance with the reference (sqrtm) numerics."""

    def __init__(self, extractor: FeatureExtractor):
        self.extractor = extractor
        self.stats = {"fake": FeatureStats(), "real": FeatureStats()}

    def update(self, batch: BatchOutputs, role: str) -> None:
        self.stats[role].update(batch.outputs(self.extractor)[0])

    def compute(self, n_fake, n_real, n_train):
        return {"fdd": frechet_distance_from_stats(self.stats["fake"], self.stats["real"])}


class TorchmetricsFID(Accumulator):
    def __init__(self, extractor: FeatureExtractor):
        from torchmetrics.image.fid import FrechetInceptionDistance

        self.extractor = extractor
        self.metric = FrechetInceptionDistance(feature=Passthrough(extractor.num_features))

    def update(self, batch, role):
        self.metric.update(batch.outputs(self.extractor)[0], real=role == "real")

    def compute(self, n_fake, n_real, n_train):
        return {"fid": float(self.metric.compute())}


class TorchmetricsKID(Accumulator):
    """KID (Bińkowski et al. 2018) through torchmetrics: polynomial-kernel unbiased MMD^2 over subsets."""

    def __init__(self, extractor: FeatureExtractor, prefix: str, o: EvalOptions):
        from torchmetrics.image.kid import KernelInceptionDistance

        self.extractor, self.prefix, self.o = extractor, prefix, o
        with warnings.catch_warnings():  # "will save all extracted features": known, and bounded here
            warnings.simplefilter("ignore", UserWarning)
            self.metric = KernelInceptionDistance(feature=Passthrough(extractor.num_features), subsets=o.kid_subsets)

    def update(self, batch, role):
        self.metric.update(batch.outputs(self.extractor)[0], real=role == "real")  # float64 kernel sums

    def compute(self, n_fake, n_real, n_train):
        self.metric.subset_size = self.o.kid_subset_size or min(KID_DEFAULT_SUBSET, n_fake, n_real)
        with _seeded(self.o.seed):
            mean, std = self.metric.compute()
        return {f"{self.prefix}_mean": float(mean), f"{self.prefix}_std": float(std)}


class TorchmetricsIS(Accumulator):
    """Inception Score exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016) through torchmetrics."""

    roles = ("fake",)

    def __init__(self, extractor: FeatureExtractor, o: EvalOptions):
        from torchmetrics.image.inception import InceptionScore

        self.extractor, self.o = extractor, o
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.metric = InceptionScore(feature=Passthrough(extractor.num_classes), splits=o.is_splits)

    def update(self, batch, role):
        self.metric.update(batch.logits(self.extractor))

    def compute(self, n_fake, n_real, n_train):
        with _seeded(self.o.seed), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the std of one split is undefined (nan)
            mean, std = self.metric.compute()
        return {"is_mean": float(mean), "is_std": float(std)}


class Collect(Accumulator):
    """Keeps every feature vector per role (for statistics that need all of them)."""

    def __init__(self, extractor: FeatureExtractor | None, roles: tuple[str, ...]):
        self.extractor, self.roles = extractor, roles
        self.parts: dict[str, list[Tensor]] = {r: [] for r in roles}

    def update(self, batch, role):
        x = batch.x.flatten(1).double().cpu() if self.extractor is None else batch.outputs(self.extractor)[0]
        self.parts[role].append(x)

    def all(self, role: str) -> Tensor:
        return torch.cat(self.parts[role])


class PrecisionRecallAcc(Collect):
    def __init__(self, extractor: FeatureExtractor, o: EvalOptions):
        super().__init__(extractor, ("fake", "real"))
        self.k = o.k

    def compute(self, n_fake, n_real, n_train):
        p, r = precision_recall(self.all("real"), self.all("fake"), self.k)
        return {"precision": p, "recall": r}


class LowDim(Collect):
    """sw2 (with sw2_matched, sw2_floor, sw2_ratio: lowdim.sw2_ratio) and mmd on the flattened samples."""

    def __init__(self, names: Sequence[str], o: EvalOptions):
        super().__init__(None, ("fake", "real"))
        self.names, self.o = names, o

    def compute(self, n_fake, n_real, n_train):
        g = torch.Generator().manual_seed(self.o.seed)
        out = {}
        if "sw2" in self.names:
            fake, real = self.all("fake"), self.all("real")
            out["sw2"] = sliced_wasserstein2(fake, real, self.o.num_projections, g)
            r = sw2_ratio(fake, real, self.o.num_projections, seed=self.o.seed)
            out.update(sw2_matched=r.model, sw2_floor=r.floor, sw2_ratio=r.ratio)
        if "mmd" in self.names:
            out["mmd"] = mmd_rbf(self.all("fake"), self.all("real"), self.o.mmd_bandwidth, generator=g)
        return out


class Memorization(Collect):
    """Generated vs training-set NN distances, relative to those of the held-out role ("real" or "heldout")."""

    def __init__(self, extractor: FeatureExtractor, o: EvalOptions, heldout_role: str = "real"):
        super().__init__(extractor, ("fake", heldout_role, "train"))
        self.quantile, self.heldout_role = o.memorization_quantile, heldout_role

    def compute(self, n_fake, n_real, n_train):
        held = self.all(self.heldout_role)
        rep = memorization_check(self.all("fake"), self.all("train"), held, quantile=self.quantile)
        return {
            "memorization_ratio": rep.ratio,
            "memorized_fraction": rep.memorized_fraction,
            "memorization_threshold": rep.threshold,
        }


class Classes(Accumulator):
    """class_coverage and label_accuracy from the digit classifier's predictions."""

    roles = ("fake",)

    def __init__(self, extractor: FeatureExtractor, names: Sequence[str]):
        self.extractor, self.names = extractor, names
        self.counter = ClassCounter(extractor.num_classes)

    def update(self, batch, role):
        labels = batch.labels if "label_accuracy" in self.names else None
        self.counter.update(batch.logits(self.extractor), labels)

    def compute(self, n_fake, n_real, n_train):
        s = self.counter.compute()
        out = {}
        if "class_coverage" in self.names:
            out.update(
                class_coverage=s.coverage,
                class_entropy=s.entropy,
                class_entropy_normalized=s.normalized_entropy,
                mean_confidence=s.mean_confidence,
            )
        if "label_accuracy" in self.names:
            out["label_accuracy"] = s.label_accuracy
        return out


class Clip(Accumulator):
    roles = ("fake",)

    def __init__(self, o: EvalOptions):
        self.scorer = ClipScorer(o.clip_model)

    def update(self, batch, role):
        self.scorer.update(batch.x, batch.captions)

    def compute(self, n_fake, n_real, n_train):
        return {"clip_score": self.scorer.compute()}
