"""Drawing samples from a trained model: conditions, guidance and the sampler settings in one place.

Used by the trainer's preview grids and by `difflab sample`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from difflab.guidance.cfg import classifier_free
from difflab.sampling import sample
from difflab.utils.errors import DifflabError


def build_cond(model, meta, n: int, labels: Sequence[int] | None, prompts: Sequence[str] | None,
               text_encoder, device) -> dict | None:
    """The condition dict for n samples of a model built with `meta` (None for unconditional models).

    A class model without labels cycles through its classes; a text model needs prompts.
    """
    if labels is not None:
        if meta.num_classes is None:
            raise DifflabError("this model is not class-conditional: drop --class")
        y = torch.as_tensor(list(labels), dtype=torch.long)
        bad = y[(y < 0) | (y >= meta.num_classes)]
        if bad.numel():
            raise DifflabError(f"class {int(bad[0])} is outside this model's classes 0..{meta.num_classes - 1}")
        if y.numel() == 1:
            y = y.expand(n)
        if y.numel() != n:
            raise DifflabError(f"give one class or {n} classes; got {y.numel()}")
        return {"class_labels": y.to(device)}
    if prompts is not None:
        if text_encoder is None:
            raise DifflabError("this model is not text-conditional: drop --prompt")
        prompts = list(prompts)
        if any(not p.strip() for p in prompts):
            raise DifflabError("a prompt is empty: give some text, e.g. --prompt 'a red circle'")
        if len(prompts) == 1:
            prompts = prompts * n
        if len(prompts) != n:
            raise DifflabError(f"give one prompt or {n} prompts; got {len(prompts)}")
        context, mask = text_encoder.encode(prompts)
        return {"context": context.to(device), "context_mask": mask.to(device)}
    if text_encoder is not None:
        raise DifflabError("this model is text-conditional: give a prompt (--prompt 'a small red circle')")
    if meta.num_classes is not None:
        return {"class_labels": (torch.arange(n) % meta.num_classes).to(device)}
    return None


def negative_cond(prompt: str | None, n: int, text_encoder, device) -> dict | None:
    """A negative prompt as the unconditional branch of classifier-free guidance."""
    if prompt is None:
        return None
    if text_encoder is None:
        raise DifflabError("a negative prompt needs a text-conditional model")
    context, mask = text_encoder.encode([prompt] * n)
    return {"context": context.to(device), "context_mask": mask.to(device)}


@torch.no_grad()
def generate(model, meta, n: int, *, sampler: str, steps: int, schedule: str, seed: int,
             guidance: float = 1.0, labels=None, prompts=None, negative: str | None = None,
             text_encoder=None, device="cpu", return_trajectory: bool = False):
    """n samples (n, *data_shape) in the data range, plus the sampler's NFE count (SampleResult)."""
    cond = build_cond(model, meta, n, labels, prompts, text_encoder, device)
    guide = None
    if guidance != 1.0:
        if cond is None:
            raise DifflabError("guidance needs a conditional model (class or text); use --guidance 1 (none)")
        guide = classifier_free(guidance, negative_cond(negative, n, text_encoder, device))
    kwargs = {} if sampler == "default" else {"sampler": sampler}
    if schedule != "default":
        kwargs["schedule"] = schedule
    return sample(model, (n, *meta.data_shape), steps=steps, seed=seed, cond=cond, guidance=guide,
                  device=device, return_trajectory=return_trajectory, **kwargs)


def clamp_to_data(x: Tensor) -> Tensor:
    return x.clamp(-1, 1)
