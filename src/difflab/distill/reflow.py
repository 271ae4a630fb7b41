"""Reflow (Liu, Gong & Liu 2022, "Flow Straight and Fast", Algorithm 1; seed 003's rectified flow): draw
(z, x) pairs with the teacher's probability-flow ODE, then train the next rectified flow on the straight
interpolations between them.

Pairs: z ~ N(0, I) (from a generator), x_T = sigma(t_0) z the teacher's starting state, x = the teacher's
deterministic ODE solution from x_T (a chosen solver and step count, difflab.sample). The pairs are
(standardized noise, data), whatever the teacher's process: for rectified flow (alpha(1) = 0, sigma(1) = 1)
z is x_1 itself; for a VP or VE teacher z is its starting noise divided by its prior std, which is what
its ODE maps to x (the alpha(1) x0 term of a VP x_1 is below the noise the sampler draws, as in sampling).

The student is a rectified flow, x_t = (1 - t) x + t z (the `flow` process, seed 003), regressing the
straight velocity z - x at t ~ U(0, 1):  L = || v_theta(x_t, t) - (z - x) ||^2  (per-dimension mean; its
velocity read through the student's own parameterization, difflab.param.ode_velocity). `config` makes the
student run a flow process with velocity prediction when the teacher is not one already; a flow teacher's
config is kept, so the student starts from the 1-rectified flow's weights as Liu et al. do.

one_step=True is their distillation to one step: the same pairs, trained at t = 1 only, so that the
single Euler step x = z - v(z, 1) lands on the pair's x (Liu et al. 2022, sec. 2.3). Run it on a
2-rectified flow as the teacher (`difflab distill RUN2 --method reflow --set distill.options.one_step=true`).

Pairs are cached in the student run as RUN2/pairs/{z,x[,labels]}.npy with pairs.json (what drew them),
written atomically; a resumed run reads them back instead of drawing again.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from difflab.distill.base import DistillContext, DistillMethod, DistillPlan
from difflab.param.parameterization import ode_velocity
from difflab.sampling.api import DEFAULT, default_schedule, sample
from difflab.sampling.grids import make_grid
from difflab.sampling.registry import DETERMINISTIC
from difflab.train.data import TensorBatchDataset
from difflab.train.prepare import Unconditional
from difflab.utils.errors import DifflabError, check_choice
from difflab.utils.files import atomic_write, atomic_write_json
from difflab.utils.seeding import make_generator
from difflab.utils.tensors import append_dims

PAIRS_DIR = "pairs"


# ---- pairs -----------------------------------------------------------------------------------------
def pair_grid(process, steps: int, schedule: str = "default", schedule_options: dict | None = None,
              sampler: str | None = None) -> Tensor:
    """The teacher's ODE grid for the pairs ('default': difflab.sampling's default grid for the process,
    the pairs' sampler and steps)."""
    name = default_schedule(process, sampler, steps) if schedule == DEFAULT else schedule
    return make_grid(process, name, steps, **(schedule_options or {}))


def draw_pairs(teacher, z: Tensor, ts: Tensor, *, sampler: str = "unipc", batch: int = 500,
               labels: Tensor | None = None, device="cpu") -> Tensor:
    """The teacher's ODE endpoints x for the standardized noises z (n, ...): x_T = sigma(ts[0]) z solved
    along the grid ts with a deterministic `sampler`, in batches of `batch` on `device` (module docstring).
    labels: (n,) class labels of a class-conditional teacher (cond {"class_labels"}). Returned on the CPU,
    in z's dtype."""
    check_choice("reflow pair sampler (a deterministic ODE solver)", sampler, DETERMINISTIC)
    if batch < 1:
        raise DifflabError(f"distill.options.pair_batch must be >= 1; got {batch}")
    std = float(teacher.process.sigma(ts[:1]))
    xs = []
    for lo in range(0, z.shape[0], batch):
        zb = z[lo:lo + batch].to(device)
        cond = None if labels is None else {"class_labels": labels[lo:lo + batch].to(device)}
        with torch.no_grad():
            xs.append(sample(teacher, zb * std, sampler=sampler, schedule=ts, cond=cond).x.cpu())
    return torch.cat(xs)


def _receipt(n: int, shape, sampler: str, ts: Tensor, seed: int, num_classes: int | None) -> dict:
    return {"n": n, "shape": list(shape), "sampler": sampler, "times": [float(t) for t in ts], "seed": seed,
            "num_classes": num_classes}


def cached_pairs(ctx: DistillContext, n: int, sampler: str, ts: Tensor, batch: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """(z, x, labels) from RUN2/pairs when they were drawn for these settings, else drawn now and written
    there (each .npy atomically, pairs.json last, so a folder with pairs.json holds complete pairs)."""
    folder = Path(ctx.run_dir) / PAIRS_DIR
    receipt = _receipt(n, ctx.data_shape, sampler, ts, ctx.seed, ctx.num_classes)
    if (folder / "pairs.json").is_file():
        try:
            saved = json.loads((folder / "pairs.json").read_text())
            if saved != receipt:
                raise DifflabError(f"{folder} holds pairs drawn with other settings ({saved.get('n')} pairs, sampler "
                                   f"{saved.get('sampler')!r}, {len(saved.get('times', [])) - 1} steps): remove that "
                                   "folder to draw them again, or distil into another --out")
            z, x = (torch.from_numpy(np.load(folder / f"{k}.npy")) for k in ("z", "x"))
            labels = torch.from_numpy(np.load(folder / "labels.npy")) if ctx.num_classes else None
        except (OSError, ValueError) as e:
            if isinstance(e, DifflabError):
                raise
            raise DifflabError(f"{folder} is damaged ({type(e).__name__}: {e}): remove it to draw the pairs again") from None
        ctx.log(f"reflow: read {n} cached pairs from {folder}")
        return z, x, labels
    g = make_generator(ctx.seed + 1_000_003, "cpu")  # its own stream: not the trainer's
    z = torch.randn((n, *ctx.data_shape), generator=g)
    labels = torch.randint(0, ctx.num_classes, (n,), generator=g) if ctx.num_classes else None
    ctx.log(f"reflow: drawing {n} pairs with the teacher's ODE ({sampler}, {ts.numel() - 1} steps, "
            f"{(ts.numel() - 1) * n} sample-evaluations)")
    x = draw_pairs(ctx.teacher, z, ts, sampler=sampler, batch=batch, labels=labels, device=ctx.device)
    arrays = {"z": z, "x": x, **({"labels": labels} if labels is not None else {})}
    for key, value in arrays.items():
        atomic_write(folder / f"{key}.npy", lambda tmp, v=value: np.save(tmp, v.numpy()))
    atomic_write_json(folder / "pairs.json", receipt)
    return z, x, labels


class PairDataset(TensorBatchDataset):
    """Batches {"x", "z"[, "label"]} of cached reflow pairs (x: the teacher's endpoint, z: its noise)."""

    def __init__(self, z: Tensor, x: Tensor, label: Tensor | None = None):
        super().__init__(x, label)
        self.z = z

    def __getitems__(self, indices: list[int]) -> dict:
        batch = super().__getitems__(indices)
        batch["z"] = self.z[torch.as_tensor(indices, dtype=torch.long)]
        return batch


class PairPrepare:
    """The run's prepare (labels, condition dropout) with the pair's noise carried in cond["z"]."""

    def __init__(self, base=None):
        self.base = Unconditional() if base is None else base

    def __call__(self, batch: dict, generator: torch.Generator):
        x0, cond = self.base(batch, generator)
        return x0, {**(cond or {}), "z": batch["z"].to(x0.device, non_blocking=True)}


# ---- the loss --------------------------------------------------------------------------------------
class ReflowLoss:
    """loss_fn(model, x, cond, generator) -> (B,): || v_theta(x_t, t) - (z - x) ||^2 (mean over dimensions) at
    x_t = (1 - t) x + t z, t ~ U(0, 1), or t = 1 for the one-step distillation; z comes in cond["z"]."""

    def __init__(self, one_step: bool = False):
        self.one_step = bool(one_step)

    def __call__(self, model, x: Tensor, cond=None, generator: torch.Generator | None = None) -> Tensor:
        if cond is None or "z" not in cond:
            raise DifflabError("ReflowLoss trains on (z, x) pairs: the batches must carry cond['z'] (PairPrepare)")
        cond = dict(cond)
        z = cond.pop("z")
        n = x.shape[0]
        if self.one_step:
            t = torch.ones(n, device=x.device, dtype=x.dtype)
        else:
            t = torch.rand(n, generator=generator, device=x.device, dtype=x.dtype)
        t_ = append_dims(t, x.ndim)  # (B, 1, ...)
        x_t = (1 - t_) * x + t_ * z
        k = model.coefficients(x_t, t)
        v = ode_velocity(model.predict(x_t, t, cond or None), k)
        return (v - (z - x)).pow(2).flatten(1).mean(1)


# ---- the method ------------------------------------------------------------------------------------
def build(ctx: DistillContext, *, pairs: int = 10_000, pair_sampler: str = "unipc", pair_steps: int = 20,
          pair_schedule: str = "default", pair_batch: int = 500, one_step: bool = False, sample_steps: int = 2,
          train_steps: int = 2000) -> DistillPlan:
    """The k+1-rectified flow of ctx.teacher: `pairs` (z, x) pairs from its ODE (pair_sampler, pair_steps on
    pair_schedule, batches of pair_batch), cached in the run; the student (a flow-process model) regresses
    z - x on their straight interpolations (one_step: at t = 1 only). sample_steps and train_steps set the
    run's Euler steps and default budget (see `config`, `train_steps`)."""
    if ctx.student.process.name != "flow":
        raise DifflabError(f"the reflow student is a rectified flow: its run needs process.name=flow; got "
                           f"{ctx.student.process.name!r} (leave the process to the method)")
    if pairs < 1:
        raise DifflabError(f"distill.options.pairs must be >= 1; got {pairs}")
    ts = pair_grid(ctx.teacher.process, pair_steps, pair_schedule, sampler=pair_sampler)
    z, x, labels = cached_pairs(ctx, pairs, pair_sampler, ts, pair_batch)
    return DistillPlan(ReflowLoss(one_step), data=PairDataset(z.float(), x.float(), labels),
                       wrap_prepare=PairPrepare, notes=[f"{pairs} pairs from the teacher's ODE ({pair_sampler}, {pair_steps} steps)"])


def config(teacher: dict, *, one_step: bool = False, sample_steps: int = 2, **_) -> dict:
    """Euler on the uniform grid (sample_steps steps; 1 for one_step), and the flow process with velocity
    prediction when the teacher is not a rectified flow already (its weights still start the student)."""
    if sample_steps < 1:
        raise DifflabError(f"distill.options.sample_steps must be >= 1; got {sample_steps}")
    changes = {"sample": {"sampler": "euler", "schedule": "uniform", "steps": 1 if one_step else sample_steps,
                          "options": {}, "schedule_options": {}}}
    if teacher.get("process", {}).get("name") != "flow":
        changes["process"] = {"name": "flow", "options": {}}
        changes["model"] = {"parameterization": "velocity", "preconditioning": "none"}
    return changes


def train_steps(*, train_steps: int = 2000, **_) -> int:
    """The default budget when the user gives neither --steps nor --minutes: distill.options.train_steps."""
    return train_steps


REFLOW = DistillMethod("reflow", config, build, train_steps,
                       summary="the next rectified flow on the teacher's ODE pairs (Liu et al. 2022)")
