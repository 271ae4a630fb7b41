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
from dataclasses import fields, replace
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from difflab.data.images import to_unit_range
from difflab.metrics.folders import ImageFolderBatches, check_same_images
from difflab.metrics.options import EvalOptions, Extractors
from difflab.metrics.specs import METRICS, build_accumulators, check_counts, check_inputs
from difflab.metrics.streaming import Accumulator, BatchOutputs
from difflab.utils.errors import DifflabError, check_choice

__all__ = ["METRICS", "EvalOptions", "evaluate", "evaluate_folders"]

Data = Tensor | Iterable


def _parse_metrics(metrics: str | Sequence[str]) -> list[str]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise DifflabError(f"no metric requested; choose from: {', '.join(METRICS)}")
    return [check_choice("metric", m, METRICS) for m in dict.fromkeys(names)]


def _known_count(data: Data | None) -> int | None:
    """The number of samples of `data` when it is known before streaming: a tensor's rows, a DataLoader's
    data set, or an iterable's `n` attribute (ImageFolderBatches, a job's sample stream)."""
    if isinstance(data, Tensor):
        return data.shape[0]
    if isinstance(data, DataLoader):
        return len(data.dataset)
    n = getattr(data, "n", None)
    return n if isinstance(n, int) else None


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
    """Compute `metrics` (names in METRICS; what each needs: difflab.metrics.specs) of generated samples `fake`
    against `real` ones.

    fake, real, train: tensors (N, ...) or iterables of batches; images in [-1, 1] (or uint8). The sample
    counts are checked before streaming when they are known (tensors, DataLoaders, iterables with an `n`
    attribute), else once the stream has been read.
    labels: requested class of each generated sample (label_accuracy); captions: one per sample
    (clip_score); train: the training set (memorization); heldout: fresh real samples the model never saw,
    whose distances to `train` the memorization check compares with the generated ones (default: `real`;
    pass it to score the other metrics against the training set while memorization uses a test split).
    options / overrides: EvalOptions fields. progress(stage, samples_done) when a stage starts (0) and after
    each batch; stages are the roles "fake", "real", "heldout", "train", in that order.
    Returns a flat dict of floats (e.g. {"fdd": ..., "precision": ..., "recall": ..., "n_fake": ...}).
    """
    names = _parse_metrics(metrics)
    valid = {f.name for f in fields(EvalOptions)}
    for key in overrides:
        check_choice("evaluate option", key, valid)
    o = replace(options or EvalOptions(), **overrides)
    given = {"real": real, "train": train, "labels": labels, "captions": captions}
    check_inputs(names, [key for key, value in given.items() if value is not None])
    if heldout is not None and "memorization" not in names:
        raise DifflabError("heldout=... is only used by the memorization check: add 'memorization' or drop it")
    roles = {"fake": fake, "real": real, "heldout": heldout, "train": train}
    known = {role: _known_count(data) for role, data in roles.items()}
    known.update(labels=None if labels is None else labels.shape[0], captions=None if captions is None else len(captions))
    check_counts(names, o, known)  # before any sampling or feature extraction, where the counts are known

    accs = build_accumulators(names, o, Extractors(o), heldout_role="real" if heldout is None else "heldout")
    counts = _stream(roles, accs, o.batch_size, labels, captions, progress)
    streamed = {role: n for role, n in counts.items() if known[role] is None}  # the counts learnt by streaming
    if streamed:
        check_counts(names, o, {**streamed, "labels": known["labels"], "captions": known["captions"]})
    n_fake, n_real, n_train = counts["fake"] or 0, counts["real"], counts["train"]
    result: dict[str, float] = {}
    for acc in accs:
        result.update(acc.compute(n_fake, n_real or 0, n_train or 0))
    result["n_fake"] = n_fake
    if n_real is not None:
        result["n_real"] = n_real
    return {k: (v if isinstance(v, int) else float(v)) for k, v in result.items() if not _is_nan_std(k, v)}


def _stream(roles: dict[str, Data | None], accs: list[Accumulator], batch_size: int, labels: Tensor | None,
            captions: Sequence[str] | None, progress: Callable[[str, int], None] | None) -> dict[str, int | None]:
    """Feed every batch of each role to the accumulators that want it, once; the sample count of each role
    (None: not consumed). Every batch must share the first one's item shape."""
    counts: dict[str, int | None] = {role: None for role in roles}
    shape: tuple[int, ...] | None = None
    for role, data in roles.items():
        if data is None or not any(acc.wants(role) for acc in accs):
            continue
        counts[role] = 0
        if progress is not None:
            progress(role, 0)  # the stage starts (its clock with it)
        for x in _batches(data, batch_size, role):
            x = _prepare(x, role, shape)
            shape = tuple(x.shape[1:])
            batch = BatchOutputs(x, offset=counts[role], labels=labels, captions=captions)
            for acc in accs:
                if acc.wants(role):
                    acc.update(batch, role)
            counts[role] += x.shape[0]
            if progress is not None:
                progress(role, counts[role])
    return counts


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
