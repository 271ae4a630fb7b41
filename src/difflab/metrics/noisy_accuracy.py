"""Held-out accuracy of a noise-aware classifier p(y | x_t, t) at fixed times (classifier guidance).

A guidance classifier (Dhariwal & Nichol 2021 §4, Algorithm 1; seeds 001 and 002) must be right on the
noisy x_t = alpha(t) x0 + sigma(t) eps the sampler visits, so its accuracy is measured on those: for each
t, the fraction of items whose argmax_y classifier(x_t, t) is their label.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from difflab.data.datasets import collate


@torch.no_grad()
def classifier_accuracy(classifier, data, times: list[float], *, seed: int = 0, batch_size: int = 256,
                        device: str = "cpu") -> dict[float, float]:
    """{t: top-1 accuracy of argmax_y classifier(x_t, t)} on data's ("x", "label") items.

    classifier(x_t, t) -> logits, with a `.process` (sample_xt). eps (N, *shape) is drawn once from `seed`
    for the whole set and shared by every t, so the result does not depend on batch_size.
    """
    process = classifier.process
    eps_all = torch.randn((len(data), *data[0]["x"].shape), generator=torch.Generator().manual_seed(seed))
    correct = torch.zeros(len(times), dtype=torch.long, device=device)
    start = 0
    for batch in DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate):
        x0, y = batch["x"].to(device), batch["label"].to(device)  # (B, C, H, W), (B,)
        eps = eps_all[start:start + len(y)].to(device)  # (B, C, H, W)
        start += len(y)
        for i, t in enumerate(times):
            t_b = torch.full((len(y),), float(t), dtype=torch.float64, device=device)  # (B,)
            x_t = process.sample_xt(x0, t_b, eps)
            correct[i] += (classifier(x_t, t_b.to(x0.dtype)).argmax(-1) == y).sum()
    return {float(t): c / len(data) for t, c in zip(times, correct.tolist(), strict=True)}
