"""Capture and restore every random stream a training step reads, in a JSON-safe form.

Exact resume needs the Python, NumPy, torch CPU and CUDA global states (dropout and user code draw
from them) and the trainer's own generators (the loss draws t and eps from one, condition dropout
from the same). `capture_rng` copies the raw states (cheap: the trainer snapshots them every step so
an interrupted step can be rolled back); `encode_rng` turns a snapshot into JSON (bytes as base64)
for `state.json`, and `decode_rng` / `restore_rng` reverse it.
"""

from __future__ import annotations

import base64
import random

import numpy as np
import torch

Snapshot = dict


def capture_rng(generators: dict[str, torch.Generator] | None = None) -> Snapshot:
    """The current states of the global RNGs and of `generators` (raw Python objects, not JSON)."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the global state is what user code draws from)
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }


def restore_rng(snapshot: Snapshot, generators: dict[str, torch.Generator] | None = None) -> None:
    """Set the global RNGs and `generators` back to a snapshot from `capture_rng` or `decode_rng`."""
    random.setstate(snapshot["python"])
    np.random.set_state(snapshot["numpy"])  # noqa: NPY002
    torch.set_rng_state(snapshot["torch"])
    if snapshot["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(snapshot["cuda"])
    for name, g in (generators or {}).items():
        g.set_state(snapshot["generators"][name])


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _tensor(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def encode_rng(snapshot: Snapshot) -> dict:
    """A JSON-serializable copy of a snapshot (torch byte states and the NumPy key as base64)."""
    version, internal, gauss_next = snapshot["python"]
    kind, key, pos, has_gauss, cached = snapshot["numpy"]
    return {
        "python": [version, list(internal), gauss_next],
        "numpy": {
            "kind": kind,
            "key": base64.b64encode(np.ascontiguousarray(key, dtype="<u4").tobytes()).decode("ascii"),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": _b64(snapshot["torch"]),
        "cuda": [_b64(s) for s in snapshot["cuda"]],
        "generators": {name: _b64(s) for name, s in snapshot["generators"].items()},
    }


def decode_rng(encoded: dict) -> Snapshot:
    """Inverse of `encode_rng`."""
    version, internal, gauss_next = encoded["python"]
    npy = encoded["numpy"]
    key = np.frombuffer(base64.b64decode(npy["key"]), dtype="<u4").astype(np.uint32)
    return {
        "python": (version, tuple(internal), gauss_next),
        "numpy": (npy["kind"], key, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]),
        "torch": _tensor(encoded["torch"]),
        "cuda": [_tensor(s) for s in encoded["cuda"]],
        "generators": {name: _tensor(s) for name, s in encoded["generators"].items()},
    }
