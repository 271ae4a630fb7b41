"""Baseline tests run their tiny models on one torch thread: the trainer tests' autouse fixture, shared."""

from __future__ import annotations

from tests.train.conftest import one_thread  # noqa: F401  (an autouse fixture: imported, it applies here)
