"""From a data batch to what the loss sees: prepare(batch, generator) -> (x0, cond).

The trainer knows nothing of conditioning: it calls one injected `prepare` on every micro-batch
(difflab.config.factory.build_prepare picks it from model.conditioning). x0 and cond land on the
generator's device; with a condition, a fraction p_uncond of the batch is marked cond["drop"] with
draws from that generator (classifier-free guidance training, Ho & Salimans 2022; seed 000), so
condition dropout resumes exactly with the trainer's loss generator.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from difflab.utils.errors import DifflabError

Cond = dict[str, Tensor] | None
EncodeCaptions = Callable[[list[str]], tuple[Tensor, Tensor]]


class Unconditional:
    """(batch["x"], None): an unconditional model."""

    needs: str | None = None

    def __init__(self, p_uncond: float = 0.0):
        if not 0 <= p_uncond < 1:
            raise DifflabError(f"p_uncond must lie in [0, 1); got {p_uncond!r}")
        self.p_uncond = float(p_uncond)

    def condition(self, batch: dict, device: torch.device) -> Cond:
        return None

    def __call__(self, batch: dict, generator: torch.Generator) -> tuple[Tensor, Cond]:
        device = generator.device
        x0 = batch["x"].to(device, non_blocking=True)
        if self.needs is not None and self.needs not in batch:
            raise DifflabError(f"{type(self).__name__} needs batches with a {self.needs!r} entry; the data has none: "
                               "use a data set that provides it, or model.conditioning=none")
        cond = self.condition(batch, device)
        if cond is not None and self.p_uncond > 0:
            cond["drop"] = torch.rand(x0.shape[0], generator=generator, device=device) < self.p_uncond
        return x0, cond


class ClassLabels(Unconditional):
    """cond = {"class_labels": batch["label"]} (model.conditioning=class)."""

    needs = "label"

    def condition(self, batch: dict, device: torch.device) -> Cond:
        return {"class_labels": batch["label"].to(device, non_blocking=True)}


class Captions(Unconditional):
    """cond = {"context", "context_mask"} = encode(batch["caption"]) (model.conditioning=text), encoded
    without gradients by a frozen text encoder."""

    needs = "caption"

    def __init__(self, encode: EncodeCaptions, p_uncond: float = 0.0):
        super().__init__(p_uncond)
        self.encode = encode

    def condition(self, batch: dict, device: torch.device) -> Cond:
        with torch.no_grad():
            context, mask = self.encode(list(batch["caption"]))
        return {"context": context.to(device), "context_mask": mask.to(device)}
