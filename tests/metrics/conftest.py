"""Metrics test fixtures: one digit classifier per test run, trained once into a shared temp cache.

DIFFLAB_CACHE points at a directory shared by all pytest-xdist workers of the run; a file lock makes
the first worker train and the others load its cached weights.
"""

from __future__ import annotations

import os

import pytest
import torch
from filelock import FileLock

from difflab.data import load_digits
from difflab.metrics import load_digit_classifier


@pytest.fixture(scope="session", autouse=True)
def difflab_cache(tmp_path_factory):
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers' base temps share this run's parent
        root = root.parent
    shared = root / "difflab-metrics-cache"
    shared.mkdir(exist_ok=True)
    old = os.environ.get("DIFFLAB_CACHE")
    os.environ["DIFFLAB_CACHE"] = str(shared)
    yield shared
    if old is None:
        del os.environ["DIFFLAB_CACHE"]
    else:
        os.environ["DIFFLAB_CACHE"] = old


@pytest.fixture(scope="session")
def digit_classifier(difflab_cache):
    with FileLock(str(difflab_cache / "train.lock")):
        return load_digit_classifier()


@pytest.fixture(scope="session")
def digits():
    """(train images, train labels, test images, test labels), 8x8 in [-1, 1]."""
    x_train, y_train = load_digits("train")
    x_test, y_test = load_digits("test")
    return x_train, y_train, x_test, y_test


class TinyExtractor(torch.nn.Module):
    """A small deterministic feature extractor with a classifier head (fixed random weights)."""

    name = "tiny"

    def __init__(self, in_dim: int = 64, num_features: int = 8, num_classes: int = 5):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(in_dim, num_features, generator=g) / in_dim**0.5
        self.head = torch.randn(num_features, num_classes, generator=g)
        self.num_features, self.num_classes = num_features, num_classes

    def features(self, images):
        return torch.tanh(images.flatten(1).float() @ self.w)

    def logits(self, images):
        return self.features(images) @ self.head


@pytest.fixture
def tiny_extractor():
    return TinyExtractor()
