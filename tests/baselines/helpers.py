"""Tiny data and the straight-vs-resumed trainer check shared by the baseline objective tests."""

from __future__ import annotations

import torch

from difflab.baselines.base import from_levels
from difflab.baselines.registry import baseline_objective, build_baseline
from difflab.train import TensorBatchDataset, TrainConfig, Trainer, read_log
from difflab.train.prepare import ClassLabels, Unconditional


def level_data(n: int = 48, shape=(1, 4, 4), levels: int = 5, num_classes: int = 3, seed: int = 0) -> TensorBatchDataset:
    g = torch.Generator().manual_seed(seed)
    x = from_levels(torch.randint(0, levels, (n, *shape), generator=g), levels)
    return TensorBatchDataset(x, torch.randint(0, num_classes, (n,), generator=g))


def train_and_resume(tmp_path, family: str, data, steps: int = 4, levels: int | None = 5, grad_accum: int = 1,
                     **options):
    """A straight run of `steps` steps and a run stopped at steps // 2 then resumed (from a model built
    with another seed): returns (straight trainer, resumed trainer, straight log, resumed log)."""
    conditional = options.get("num_classes") is not None
    shape = tuple(data.x.shape[1:])

    def trainer(out, n, seed):
        torch.manual_seed(seed)
        model = build_baseline(family, shape, levels, **options)
        cfg = TrainConfig(batch_size=8, max_steps=n, log_every=1, ckpt_every=0, ema=64.0, lr=1e-3, seed=3, p_uncond=0.25,
                          grad_accum=grad_accum)
        prepare = ClassLabels(cfg.p_uncond) if conditional else Unconditional()
        return Trainer(model, None, data, cfg, out, prepare=prepare, objective=baseline_objective(family))

    straight = trainer(tmp_path / "a", steps, 0)
    straight.train()
    trainer(tmp_path / "b", steps // 2, 0).train()
    resumed = trainer(tmp_path / "b", steps, 1)
    resumed.train(resume=True)
    losses = [[r["loss"] for r in read_log(tmp_path / d / "log.jsonl")] for d in ("a", "b")]
    return straight, resumed, *losses


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), k
