"""Post-hoc averaging of a run's saved weights: one set of sampling weights from several checkpoints.

    theta_bar = sum_k w_k theta_k / sum_k w_k        (w_k >= 0, uniform by default)

over the chosen checkpoints k (their EMA weights, or their raw weights). Uniform weights over the latest
checkpoints is latest weight averaging (LAWA, Kaddour 2022; stochastic weight averaging, Izmailov et al. 2018,
over a cyclic schedule); Liu et al. 2025 ("Linear combination of saved checkpoints makes consistency and
diffusion models better", LCSC, ICLR 2025) show that such combinations lower the FID of consistency models
whose checkpoints fluctuate, and search the w_k by FID. Averaging snapshots of a short EMA widens the EMA's
averaging window after the fact (EDM2's post-hoc EMA, Karras et al. 2024, reconstructs a target EMA profile
from snapshots of two power-function EMAs by least squares; this is the box-window case).

The coefficients come from the checkpoints' training steps s_1 < ... < s_K (`checkpoint_coefficients`):

    w_k = q_k * 2^(-(s_K - s_k) / h)

with q_k = 1 ('equal': one vote per saved checkpoint) or the trapezoid weights of the steps ('steps': q_1 =
(s_2 - s_1) / 2, q_k = (s_{k+1} - s_{k-1}) / 2, q_K = (s_K - s_{K-1}) / 2, so a window saved unevenly is still
an average over training time, exact for weights that move linearly in s), and an optional half-life h (in
steps) that leans the mean toward the newest checkpoint: an exponential moving average of the snapshots,
taken after the fact (h = None: no lean, the box window).

Pure tensor code: it reads safetensors files (never a pickle) and returns a state dict. The sum is taken in
float64 and cast back to each tensor's own dtype; tensors that are not floating point (counters, indices)
cannot be averaged and are taken from the last file, which must hold the same keys and shapes as the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from difflab.utils.errors import DifflabError


def _read(file: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(file))
    except (OSError, SafetensorError) as e:
        raise DifflabError(f"cannot read weights from {file}: {e}") from None


def _check_same_layout(reference: dict[str, Tensor], other: dict[str, Tensor], first: Path, file: Path) -> None:
    """One message naming the file and the first keys that differ from the first file's layout."""
    missing, extra = sorted(set(reference) - set(other)), sorted(set(other) - set(reference))
    reshaped = sorted(k for k in set(reference) & set(other) if reference[k].shape != other[k].shape
                      or reference[k].dtype != other[k].dtype)
    if missing or extra or reshaped:
        parts = [f"{len(missing)} keys missing (e.g. {missing[0]})" if missing else "",
                 f"{len(extra)} extra keys (e.g. {extra[0]})" if extra else "",
                 f"{len(reshaped)} keys of another shape or dtype (e.g. {reshaped[0]})" if reshaped else ""]
        raise DifflabError(f"{file} does not hold the same weights as {first}: "
                           f"{'; '.join(p for p in parts if p)}; average checkpoints of one architecture only")


WEIGHTINGS = ("equal", "steps")


def checkpoint_coefficients(steps: Sequence[int], weighting: str = "equal",
                            half_life: float | None = None) -> list[float]:
    """The averaging coefficients w_k (summing to 1) of checkpoints saved at training `steps` (increasing):
    q_k * 2^(-(s_K - s_k) / half_life), q_k = 1 ('equal') or the trapezoid weights of the steps ('steps');
    see the module docstring."""
    steps = [int(s) for s in steps]
    if weighting not in WEIGHTINGS:
        raise DifflabError(f"the averaging weighting must be one of {', '.join(WEIGHTINGS)}, not {weighting!r}")
    if len(steps) < 2 or any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise DifflabError(f"checkpoint steps must be at least two and increasing, got {steps}")
    if half_life is not None and not half_life > 0:
        raise DifflabError(f"the averaging half-life must be a positive number of steps, not {half_life}")
    s = torch.tensor(steps, dtype=torch.float64)
    if weighting == "equal":
        q = torch.ones_like(s)
    else:
        edges = torch.cat([s[:1], (s[1:] + s[:-1]) / 2, s[-1:]])  # the midpoints between neighbours
        q = edges[1:] - edges[:-1]
    if half_life is not None:
        q = q * torch.exp2(-(s[-1] - s) / half_life)
    return (q / q.sum()).tolist()


def average_weights(files: Sequence[str | Path], coefficients: Sequence[float] | None = None) -> dict[str, Tensor]:
    """The weighted mean sum_k w_k theta_k / sum_k w_k of the state dicts in `files` (safetensors), key by key.

    `coefficients`: one non-negative w_k per file with a positive sum (default: all 1, the plain mean).
    Floating-point tensors are summed in float64 and returned in their own dtype; other tensors come from
    the last file. A file that is not readable, or whose keys, shapes or dtypes differ from the first
    file's, raises one DifflabError naming it.
    """
    files = [Path(f) for f in files]
    if not files:
        raise DifflabError("no weights to average: name at least one checkpoint")
    w = [1.0] * len(files) if coefficients is None else [float(c) for c in coefficients]
    if len(w) != len(files):
        raise DifflabError(f"{len(w)} coefficients for {len(files)} checkpoints: give one per checkpoint")
    if any(not c >= 0 for c in w) or sum(w) <= 0:
        raise DifflabError(f"averaging coefficients must be >= 0 with a positive sum, got {w}")
    total = sum(w)
    first = _read(files[0])
    acc = {k: v.to(torch.float64) * (w[0] / total) for k, v in first.items() if v.is_floating_point()}
    last = first
    for file, c in zip(files[1:], w[1:], strict=True):
        last = _read(file)
        _check_same_layout(first, last, files[0], file)
        for k in acc:
            acc[k].add_(last[k].to(torch.float64), alpha=c / total)
    return {k: acc[k].to(v.dtype) if k in acc else v for k, v in last.items()}
