"""Creativity as structured failure: comparing a trained network with the ideal, LS and ELS machines.

Kamb & Ganguli 2025 ("An analytic theory of creativity in convolutional diffusion models", ICML) show
that, from the same initial noise, a trained convolutional denoiser and the equivariant local score
machine (difflab.analysis.local_score) land on nearly the same image once the patch size is calibrated
per noise level, while the ideal machine (difflab.analysis.ideal) only reproduces training images
(seed 000, "creativity as structured failure").

* `pearson_agreement`: the agreement of two final images, as in the paper's released code: the Pearson
  correlation of the two images after each is centred (mean pixel subtracted) and normalized (unit
  norm), i.e. cos(a - mean a, b - mean b) over all pixels, one number per seed in [-1, 1].
* `calibrate_patch_sizes`: the paper's calibration. Along the network's own sampling trajectories, at
  every time t of the grid, the machine's x0 estimate at the network's state x_t is compared with the
  network's x0 estimate for each candidate patch size; the size with the highest median agreement is
  kept for that t, giving a `PatchSchedule`.
* `x0_strip`: the x0 estimate along a trajectory (coarse to fine: early estimates fix the layout, late
  ones the strokes).
* `black_white_set`: seed 000's two-image example (one all-black and one all-white image): the ideal
  machine returns one of the two, a P = 1 local machine decides every pixel independently,
  x0_hat(p) = tanh(alpha x_t(p) / sigma^2), and creates up to 2^(H W) mosaics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from difflab.analysis.ideal import IdealScoreMachine, PosteriorMeanMachine
from difflab.analysis.local_score import (
    DEFAULT_MAX_TABLE_ELEMENTS,
    EquivariantLocalScoreMachine,
    LocalScoreMachine,
    PatchSchedule,
)
from difflab.process.base import NoiseProcess
from difflab.sampling.api import sample
from difflab.utils.errors import DifflabError, check_choice

MACHINES = ("ideal", "ls", "els")


def pearson_agreement(a: Tensor, b: Tensor) -> Tensor:
    """(B,) float64: cos(a_i - mean a_i, b_i - mean b_i) over all pixels of sample i (Pearson r)."""
    if a.shape != b.shape or a.ndim < 2:
        raise DifflabError(f"agreement needs two batches of the same shape (B, ...); got {tuple(a.shape)} and {tuple(b.shape)}")
    a = a.reshape(a.shape[0], -1).to(torch.float64)
    b = b.reshape(b.shape[0], -1).to(torch.float64)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    norm = a.norm(dim=1) * b.norm(dim=1)
    return (a * b).sum(1) / norm.clamp_min(1e-300)


def build_machine(kind: str, train: Tensor, process: NoiseProcess, patch_size: int | PatchSchedule | None = None,
                  *, parameterization: str = "x0", padding: str = "zeros",
                  boundary_broken: bool = True,
                  max_table_elements: int = DEFAULT_MAX_TABLE_ELEMENTS) -> PosteriorMeanMachine:
    """'ideal', 'ls' (local) or 'els' (equivariant local; boundary_broken applies to zero padding);
    max_table_elements: the floats a patch size's table may hold before the machine streams."""
    check_choice("machine", kind, MACHINES)
    if kind == "ideal":
        return IdealScoreMachine(train, process, parameterization)
    if patch_size is None:
        raise DifflabError(f"the {kind} machine needs a patch size (an odd integer) or a calibrated schedule")
    if kind == "ls":
        return LocalScoreMachine(train, process, patch_size, parameterization, padding=padding,
                                 max_table_elements=max_table_elements)
    return EquivariantLocalScoreMachine(train, process, patch_size, parameterization, padding=padding,
                                        boundary_broken=boundary_broken and padding == "zeros",
                                        max_table_elements=max_table_elements)


@dataclass
class Calibration:
    """Per grid time: the chosen patch size and the median agreement of every candidate size."""

    schedule: PatchSchedule
    sizes: tuple[int, ...]
    scores: Tensor  # (num_times, num_sizes) median Pearson agreement of x0 estimates

    def to_dict(self) -> dict:
        return {**self.schedule.to_dict(), "candidates": list(self.sizes),
                "median_agreement": [[round(float(v), 6) for v in row] for row in self.scores]}


def calibrate_patch_sizes(network, machine_for: Callable[[int], PosteriorMeanMachine], x_T: Tensor,
                          sizes: Sequence[int], *, sampler: str = "unipc", steps: int = 20,
                          schedule="default", cond=None, callback: Callable[[], None] | None = None) -> Calibration:
    """Pick the patch size per noise level that best predicts the network's x0 estimate on its own path.

    Samples `network` from x_T, and at each grid time t_k (k < steps) scores machine_for(P)'s
    E[x0 | x_{t_k}] against the network's x0 estimate at the network's states (median Pearson agreement
    over the batch); schedule.sizes[k] is the argmax (Kamb & Ganguli 2025: a patch scale calibrated per time step).
    callback() is called after each of the steps x len(sizes) scores (a caller's progress).
    """
    if len(sizes) == 0:
        raise DifflabError("give at least one candidate patch size")
    with torch.no_grad():
        run = sample(network, x_T, sampler=sampler, steps=steps, schedule=schedule, cond=cond, return_trajectory=True)
        machines = [machine_for(int(P)) for P in sizes]
        scores = torch.empty(steps, len(sizes), dtype=torch.float64)
        for k in range(steps):
            xk = run.trajectory[k]
            tk = run.times[k].expand(xk.shape[0])
            target = network.predict(xk, tk.to(xk.dtype), cond).x0
            for j, m in enumerate(machines):
                scores[k, j] = pearson_agreement(m.posterior_mean(xk, tk), target).median()
                if callback is not None:
                    callback()
    best = scores.argmax(1)
    chosen = PatchSchedule(tuple(float(t) for t in run.times[:steps]), tuple(int(sizes[i]) for i in best))
    return Calibration(chosen, tuple(int(P) for P in sizes), scores)


def x0_strip(denoiser, x_T: Tensor, at: Sequence[float], **sample_options) -> tuple[Tensor, list[float], Tensor]:
    """Sample from x_T and keep the x0 estimate of the step nearest each time in `at`:
    (estimates (len(at), B, ...), the times used, final samples)."""
    seen: list[tuple[float, Tensor]] = []
    with torch.no_grad():
        result = sample(denoiser, x_T, callback=lambda s: seen.append((s.t, s.x0.detach().clone())), **sample_options)
    picks = [min(seen, key=lambda item, a=a: abs(item[0] - a)) for a in at]
    return torch.stack([p[1] for p in picks]), [p[0] for p in picks], result.x


def black_white_set(size: int = 8, channels: int = 1) -> Tensor:
    """Seed 000's training set of two images: all black (-1) and all white (+1), (2, C, size, size)."""
    if size < 1 or channels < 1:
        raise DifflabError(f"size and channels must be positive; got {size}, {channels}")
    return torch.stack([-torch.ones(channels, size, size), torch.ones(channels, size, size)]).to(torch.float64)
