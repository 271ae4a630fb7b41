"""Shared test settings: one torch thread per pytest worker (the suite runs with -n 2 on 2 cores)."""

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture
def gen():
    """A fresh, seeded CPU generator."""
    return torch.Generator().manual_seed(1234)
