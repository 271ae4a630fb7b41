"""scikit-learn's bundled handwritten digits (8x8, 1797 images, 10 classes), offline.

Pixel values 0..16 are mapped to [-1, 1]. The split is deterministic: a stratified 80/20 split with
a fixed seed, so every part of difflab (trainer, digit classifier, metrics) sees the same test set.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from difflab.utils.errors import DifflabError, check_choice

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("train", "test", "all")


def load_digits(split: str = "train", size: int = 8) -> tuple[Tensor, Tensor]:
    """Images (N, 1, size, size) in [-1, 1] (float32) and labels (N,) int64.

    size 8 is the native resolution; 16 (or any larger size) is a bilinear resize, which keeps the
    strokes smooth for a U-Net with two downsamplings.
    """
    from sklearn.datasets import load_digits as _sk_load
    from sklearn.model_selection import train_test_split

    check_choice("digits split", split, SPLITS)
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise DifflabError(f"digits size must be an integer >= 8; got {size!r}")
    bunch = _sk_load()
    x = bunch.images.astype(np.float32) / 8.0 - 1.0
    y = bunch.target.astype(np.int64)
    if split != "all":
        idx = np.arange(len(y))
        tr, te = train_test_split(idx, test_size=0.2, random_state=0, stratify=y)
        pick = np.sort(tr if split == "train" else te)
        x, y = x[pick], y[pick]
    images = torch.from_numpy(x)[:, None]
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)
    return images.contiguous(), torch.from_numpy(y)


def digit_caption(label: int) -> str:
    """'a handwritten seven'."""
    return f"a handwritten {DIGIT_NAMES[int(label)]}"
