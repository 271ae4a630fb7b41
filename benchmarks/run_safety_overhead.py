"""What run-folder safety costs the trainer: per step, per batch and per checkpoint.

    python benchmarks/run_safety_overhead.py [--reps 2000]

Measured in CPU seconds of this process (time.process_time, one torch thread), which a busy shared
machine disturbs far less than wall time:

* per step: the commit block that a second Ctrl-C cannot cut short (four signal.signal swaps around the
  parameter update, EMA and counters);
* per batch: SeededFetch, the per-item augmentation seeds (save and restore of the torch, Python and
  NumPy global RNG states, one seeding per batch of a batched-fetch data set, one torch seeding per item
  otherwise);
* per checkpoint: the SHA-256 manifest of the digits preset's checkpoint files (written once per save,
  verified once per load).

Each figure is set against the digits preset's optimizer step (`--step-seconds`, from the trainer
overhead table in docs/benchmarks.md: 355.6 images/s at batch 128 on one thread, 0.36 s a step).
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
from pathlib import Path

import torch

from difflab.config.factory import build_denoiser, build_process
from difflab.config.loader import load_config
from difflab.train.checkpoint import check_checkpoint, save_checkpoint
from difflab.train.data import AUG_STREAM, SeededFetch, SeededIndices, TensorBatchDataset, derive_seed


def cpu_seconds(fn, reps: int) -> float:
    """Median over 5 rounds of the CPU time of one call."""
    rounds = []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(reps):
            fn()
        rounds.append((time.process_time() - t0) / reps)
    return sorted(rounds)[2]


def commit_block() -> None:
    previous = {s: signal.signal(s, lambda *a: None) for s in (signal.SIGINT, signal.SIGTERM)}
    for s, h in previous.items():
        signal.signal(s, h)


class PerItem(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--step-seconds", type=float, default=128 / 355.6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(1797, 1, 8, 8)
    batch = SeededIndices(torch.randperm(1797)[:128].tolist(), derive_seed(0, AUG_STREAM, 0), 0)
    batched, per_item = SeededFetch(TensorBatchDataset(x)), SeededFetch(PerItem(x))
    rows = [
        ("commit block (per step)", cpu_seconds(commit_block, args.reps)),
        ("SeededFetch, batched data set (per batch of 128)", cpu_seconds(lambda: batched.__getitems__(batch), args.reps)),
        ("plain batched fetch (per batch of 128)", cpu_seconds(lambda: batched.dataset.__getitems__(list(batch)),
                                                               args.reps)),
        ("SeededFetch, per-item data set (per batch of 128)",
         cpu_seconds(lambda: per_item.__getitems__(batch), max(1, args.reps // 20))),
        ("plain per-item fetch (per batch of 128)", cpu_seconds(lambda: [per_item.dataset[i] for i in batch],
                                                                max(1, args.reps // 20))),
    ]
    cfg = load_config("digits")
    model = build_denoiser(cfg, build_process(cfg.process), (1, 8, 8))
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 1, 8, 8), torch.rand(2)).square().mean().backward()
    opt.step()
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(tmp, 1, model, model, {"optimizer": opt.state_dict()}, {"step": 1}, {})
        size = sum(f.stat().st_size for f in Path(path).iterdir())
        rows.append((f"verify a digits checkpoint ({size / 2**20:.1f} MiB, per load)",
                     cpu_seconds(lambda: check_checkpoint(path), 3)))
    print(f"| what | CPU ms | share of a digits step ({args.step_seconds * 1e3:.0f} ms) |")
    print("| --- | ---: | ---: |")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1e3:.4f} | {100 * seconds / args.step_seconds:.3f} % |")


if __name__ == "__main__":
    main()
