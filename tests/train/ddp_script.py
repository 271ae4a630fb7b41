"""Run by test_distributed.py under torch.distributed.run (2 CPU processes, gloo).

Each rank trains a straight 6-step run and a 3-step run resumed to 6, then writes the SHA-256 of its
model and EMA weights for both to <out>/hash-<rank>.json.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from helpers import tiny_denoiser, toy_data

from difflab.objectives import DiffusionLoss
from difflab.train import TrainConfig, Trainer
from difflab.train.prepare import ClassLabels


def digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(out: Path) -> None:
    torch.set_num_threads(1)
    cfg = dict(batch_size=8, grad_accum=2, log_every=3, ckpt_every=0, ema=32.0, seed=3)
    hashes = {}
    labels = ClassLabels(TrainConfig().p_uncond)  # class labels with the default condition dropout
    straight = Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), TrainConfig(max_steps=6, **cfg), out / "a",
                       prepare=labels)
    hashes["initial"] = digest(straight.model)
    straight.train()
    hashes["straight"], hashes["straight_ema"] = digest(straight.model), digest(straight.ema.module)
    Trainer(tiny_denoiser(), DiffusionLoss(), toy_data(), TrainConfig(max_steps=3, **cfg), out / "b",
            prepare=labels).train()
    resumed = Trainer(tiny_denoiser(seed=1), DiffusionLoss(), toy_data(), TrainConfig(max_steps=6, **cfg), out / "b",
                      prepare=labels)
    resumed.train(resume=True)
    hashes["resumed"], hashes["resumed_ema"] = digest(resumed.model), digest(resumed.ema.module)
    hashes["world_size"] = resumed.world
    (out / f"hash-{resumed.rank}.json").write_text(json.dumps(hashes))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
