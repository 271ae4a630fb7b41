"""Autoencoder tests run their tiny models on one torch thread (the trainer tests' autouse fixture)."""

from __future__ import annotations

from ..train.conftest import one_thread  # noqa: F401 - an autouse fixture, used by being imported here
