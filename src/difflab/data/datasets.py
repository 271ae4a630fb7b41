"""The common item format, the batch collator, in-memory data and the name -> data set registry.

Every difflab data set yields items, dicts with
* "x": float32 tensor, an image (C, H, W) in [-1, 1] or a vector (D,);
* "label" (optional): int64 scalar tensor, the class;
* "caption" (optional): str, the text prompt;
* any other tensor (e.g. Shapes' "attributes"), carried along.
and has the attributes the trainer builds networks from: `data_shape` (the shape of "x"),
`num_classes` (None when unlabelled) and `has_captions`; and may say `value_range`, the interval (lo, hi)
every "x" lies in, which samples are clamped to (None: unbounded, no clamp). `value_range_of` reads it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from difflab.data.digits import digit_caption, load_digits
from difflab.data.hf import HFImageDataset
from difflab.data.images import ImageFolder
from difflab.data.shapes import Shapes
from difflab.data.toy2d import TOY_NUM_CLASSES, sample_toy_labeled
from difflab.utils.errors import DifflabError, check_choice
from difflab.utils.seeding import make_generator


def collate(items: Sequence[dict]) -> dict[str, Any]:
    """Batch a list of items: tensors stacked along a new first axis, strings gathered in a list.

    {"x": (B, ...), "label": (B,) int64, "caption": [str] * B, ...}; every item needs the same keys.
    """
    if not items:
        raise DifflabError("cannot collate an empty list of items")
    keys = set(items[0])
    for item in items[1:]:
        if set(item) != keys:
            raise DifflabError(
                f"items of one batch must have the same keys; got {sorted(keys)} and {sorted(item)}"
            )
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if isinstance(values[0], Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], str):
            batch[key] = list(values)
        else:
            batch[key] = torch.as_tensor(values)
    return batch


ValueRange = tuple[float, float] | None


def default_value_range(data_shape: Sequence[int]) -> ValueRange:
    """The data range when a data set does not say: images (C, H, W) in [-1, 1], anything else unbounded."""
    return (-1.0, 1.0) if len(data_shape) == 3 else None


def value_range_of(dataset) -> ValueRange:
    """The interval a data set's items lie in: its `value_range` attribute, else `default_value_range`."""
    if hasattr(dataset, "value_range"):
        return None if dataset.value_range is None else tuple(float(v) for v in dataset.value_range)
    return default_value_range(dataset.data_shape)


class ArrayData(Dataset):
    """In-memory data: x (N, ...) with optional labels (N,) and captions (N strings).

    num_classes defaults to max(labels) + 1; value_range (lo, hi) defaults to `default_value_range`
    (images in [-1, 1], vectors unbounded); None: unbounded.
    """

    def __init__(
        self,
        x: Tensor,
        labels: Tensor | None = None,
        captions: Sequence[str] | None = None,
        num_classes: int | None = None,
        value_range: ValueRange | str = "auto",
    ):
        if not isinstance(x, Tensor) or x.ndim < 2 or len(x) == 0:
            raise DifflabError("x must be a non-empty tensor of shape (N, ...) with one row per sample")
        if not x.is_floating_point():
            raise DifflabError(f"x must be a floating-point tensor (images in [-1, 1]); got {x.dtype}")
        n = len(x)
        if labels is not None:
            labels = torch.as_tensor(labels)
            if labels.shape != (n,) or labels.is_floating_point() or labels.dtype == torch.bool:
                raise DifflabError(f"labels must be integers of shape ({n},); got {labels.dtype} {tuple(labels.shape)}")
            labels = labels.to(torch.int64)
            if bool((labels < 0).any()):
                raise DifflabError("labels must be >= 0")
            num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
            if int(labels.max()) >= num_classes:
                raise DifflabError(f"a label is >= num_classes={num_classes}")
        if captions is not None:
            captions = list(captions)
            if len(captions) != n or not all(isinstance(c, str) for c in captions):
                raise DifflabError(f"captions must be {n} strings, one per sample; got {len(captions)} items")
        self.x, self.labels, self.captions = x, labels, captions
        self.data_shape = tuple(x.shape[1:])
        self.num_classes = num_classes if labels is not None else None
        self.has_captions = captions is not None
        self.value_range = default_value_range(self.data_shape) if value_range == "auto" else value_range

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        item = {"x": self.x[i]}
        if self.labels is not None:
            item["label"] = self.labels[i]
        if self.captions is not None:
            item["caption"] = self.captions[i]
        return item


def toy2d_dataset(name: str = "8gaussians", n: int = 100_000, seed: int = 0) -> ArrayData:
    """n samples of a 2-D toy distribution (see toy2d), labelled where it has classes."""
    x, labels = sample_toy_labeled(name, n, make_generator(seed))
    return ArrayData(x, labels, num_classes=TOY_NUM_CLASSES[name], value_range=None)


def digits_dataset(split: str = "train", size: int = 8, captions: bool = True, first: int | None = None,
                   repeat: int = 1) -> ArrayData:
    """scikit-learn's digits (1, size, size), 10 classes, captions 'a handwritten seven'.

    first=N keeps the first N images of the split (a training-set-size sweep, issue 15); repeat=k lists
    every image k times in a row (an epoch of N k items, so a batch larger than N still fits; the data
    distribution is unchanged: each image keeps weight 1/N).
    """
    images, labels = load_digits(split, size)
    if first is not None:
        if isinstance(first, bool) or not isinstance(first, int) or not 1 <= first <= len(images):
            raise DifflabError(f"digits first must be an integer in 1..{len(images)} (the {split} split's size); "
                               f"got {first!r}")
        images, labels = images[:first], labels[:first]
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise DifflabError(f"digits repeat must be a positive integer (times each image is listed); got {repeat!r}")
    if repeat > 1:
        images, labels = images.repeat_interleave(repeat, 0), labels.repeat_interleave(repeat, 0)
    text = [digit_caption(y) for y in labels.tolist()] if captions else None
    return ArrayData(images, labels, text, num_classes=10, value_range=(-1.0, 1.0))


DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": digits_dataset,
    "folder": ImageFolder,
    "hf": HFImageDataset,
    "shapes": Shapes,
    "toy2d": toy2d_dataset,
}


def build_dataset(name: str, /, **kwargs: Any) -> Dataset:
    """The data set registered as `name` (positional only, so "toy2d" can take name=...), built from kwargs.

    "toy2d" (name, n, seed), "digits" (split, size, captions, first, repeat), "folder" (ImageFolder: root,
    size, ...),
    "shapes" (Shapes: n, seed, size, combos, jitter), "hf" (HFImageDataset: path_or_name, split, ...).
    """
    check_choice("dataset", name, DATASETS)
    builder = DATASETS[name]
    signature = inspect.signature(builder)
    try:
        signature.bind(**kwargs)
    except TypeError as err:
        options = ", ".join(p.name for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD)
        raise DifflabError(f"dataset {name!r}: {err}; its options are: {options}") from err
    return builder(**kwargs)
