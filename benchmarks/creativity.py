"""Memorization to generalization: a training-set-size sweep of the digits U-Net (issue 15).

    OMP_NUM_THREADS=1 python benchmarks/creativity.py --sizes 10 100 1000 --steps 1000 --out /work/runs/h8-sweep \
        --json sweep.json --markdown sweep.md --figure docs/figures/creativity_sweep.png

For each size N: `difflab train digits` on the first N images of the digits training split (data options
first=N, repeat=ceil(1000 / N): every image listed equally often, so a batch of 128 fits and the data
distribution is still the empirical one of the N images), the preset's U-Net without attention, the SAME
number of optimizer steps for every N (--steps; OMP_NUM_THREADS=1); then 100 samples (seeds 0..99, the
run's sampler) are drawn and compared with the N training images by difflab.metrics.memorization_check
(pixels; held-out baseline: the 360 digits of the test split, their nearest-training-neighbour distances to
the same N images). Reported: the ratio median NN distance (samples) / median NN distance (held-out), the
fraction of samples closer to a training image than the 1% quantile of held-out distances (memorized
fraction: the sample copies a training image), the same for the ideal score machine of the N images, and
the steps each run trained. Kamb & Ganguli 2025 and seed 000: a network that learned the ideal score
would copy (ratio ~ 0); a network that generalizes keeps held-out-like distances (ratio ~ 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch

from difflab.analysis.creativity import build_machine
from difflab.data.digits import load_digits
from difflab.jobs.runs import load_run
from difflab.metrics.lowdim import memorization_check
from difflab.sampling.api import DEFAULT_SAMPLER, sample
from difflab.train.checkpoint import checkpoint_step
from difflab.utils.seeding import per_sample_noise
from difflab.viz import save_image_grid

DIFFLAB = str(Path(sys.executable).with_name("difflab"))


def train_run(out: Path, size: int, steps: int, min_items: int = 1000) -> None:
    if (out / "run.json").is_file():
        return
    cmd = [DIFFLAB, "train", "digits", "--out", str(out), "--steps", str(steps),
           "--set", f"data.options.first={size}", "--set", f"data.options.repeat={math.ceil(min_items / size)}",
           "--set", "model.options.attention_resolutions=[]", "--set", "train.sample_every=0"]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def measure(run: Path, train: torch.Tensor, held: torch.Tensor, n: int = 100) -> tuple[dict, torch.Tensor]:
    loaded = load_run(run)
    s = loaded.config.sample
    how = {"sampler": DEFAULT_SAMPLER if s.sampler == "default" else s.sampler, "steps": s.steps}
    x_T = per_sample_noise(range(n), train.shape[1:])
    with torch.no_grad():
        net = sample(loaded.model, x_T, **how).x.clamp(-1, 1)
        ideal = sample(build_machine("ideal", train.double(), loaded.model.process), x_T.double(), **how).x.float()
    rows = {}
    for name, x in (("network", net), ("ideal", ideal)):
        m = memorization_check(x, train, held)
        rows[name] = {"ratio": round(m.ratio, 4), "memorized_fraction": round(m.memorized_fraction, 3)}
    return {"steps_trained": checkpoint_step(loaded.checkpoint), **rows}, net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--steps", type=int, default=1000, help="optimizer steps, the same for every size")
    ap.add_argument("--out", type=Path, default=Path("runs/creativity-sweep"))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--figure", type=Path)
    args = ap.parse_args()
    images, _ = load_digits("train")
    held, _ = load_digits("test")
    results, pictures = {}, []
    for size in args.sizes:
        train = images[:size]
        run = args.out / f"run-{size}"
        train_run(run, size, args.steps)
        results[size], net = measure(run, train, held)
        nearest = train[torch.cdist(net[:10].reshape(10, -1), train.reshape(size, -1)).argmin(1)]
        pictures += [net[:10], nearest]
        print(size, results[size], flush=True)
    lines = ["| training images | steps trained | network NN ratio | network memorized | ideal NN ratio | ideal memorized |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for size, r in results.items():
        lines.append(f"| {size} | {r['steps_trained']} | {r['network']['ratio']:.3f} | {r['network']['memorized_fraction']:.2f} "
                     f"| {r['ideal']['ratio']:.3f} | {r['ideal']['memorized_fraction']:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "results": results}, indent=1))
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.figure:
        save_image_grid(torch.cat(pictures), args.figure, nrow=10, scale=8,
                        caption="per size N = " + ", ".join(map(str, args.sizes))
                        + ": network samples, then their nearest training images")


if __name__ == "__main__":
    main()
