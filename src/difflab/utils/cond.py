"""The conditioning contract shared by networks, guidance, the trainer and the samplers.

`cond` is None or a dict of batch-first tensors:

* "class_labels": LongTensor (B,), values in 0..num_classes-1;
* "context": FloatTensor (B, L, D), token embeddings of a frozen text encoder;
* "context_mask": BoolTensor (B, L), True for real tokens;
* "drop": BoolTensor (B,), True where the network must use its learned null condition instead;
* "interval": FloatTensor (B,), the length t - r of the interval an average-velocity model (MeanFlow) jumps
  over, for a network built with interval_embedding=True.

Condition dropout in training and the unconditional branch of classifier-free guidance both set
"drop", so neither needs to know how a network embeds its condition.
"""

from __future__ import annotations

import torch
from torch import Tensor

from difflab.utils.errors import DifflabError

Cond = dict[str, Tensor]


def cond_cat(a: Cond | None, b: Cond | None) -> Cond | None:
    """Concatenate two condition dicts along the batch (same keys required).

    Token sequences of different lengths ("context" (B, L, D) and "context_mask" (B, L), e.g. a prompt and a
    shorter negative prompt) are right-padded to the longer L with zeros / False: padded tokens are masked
    out, so attention over them is unchanged.
    """
    if a is None or b is None:
        if a is not None or b is not None:
            raise DifflabError("cannot concatenate a condition with None: pass a condition dict for both halves "
                               "(e.g. a negative condition for classifier-free guidance) or for neither")
        return None
    if set(a) != set(b):
        raise DifflabError(f"condition keys differ: {sorted(a)} vs {sorted(b)}; give both conditions the same "
                           "keys (a negative prompt for a text model, class_labels for a class model)")
    return {k: torch.cat(_pad_tokens(a[k], b[k])) for k in a}


def _pad_tokens(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Right-pad dim 1 of the shorter of two token tensors (zeros, or False for masks)."""
    if x.ndim < 2 or x.shape[1] == y.shape[1]:
        return x, y
    L = max(x.shape[1], y.shape[1])

    def pad(t: Tensor) -> Tensor:
        extra = t.new_zeros((t.shape[0], L - t.shape[1], *t.shape[2:]))
        return torch.cat([t, extra], dim=1)

    return pad(x), pad(y)


def cond_with_drop(cond: Cond | None, drop: Tensor) -> Cond | None:
    """A copy of `cond` whose "drop" mask is `drop` (or-ed with any existing mask)."""
    if cond is None:
        return None
    out = dict(cond)
    out["drop"] = drop if "drop" not in cond else (cond["drop"] | drop)
    return out


def with_interval(cond: Cond | None, interval: Tensor) -> Cond:
    """A copy of `cond` (or a new dict) with cond["interval"] = interval (B,)."""
    return {**(cond or {}), "interval": interval}


def cond_index(cond: Cond | None, idx) -> Cond | None:
    """Select rows of every tensor in `cond`."""
    return None if cond is None else {k: v[idx] for k, v in cond.items()}


def cond_to(cond: Cond | None, device) -> Cond | None:
    return None if cond is None else {k: v.to(device) for k, v in cond.items()}
