"""Rows of samples from several runs (or checkpoints) from the same noises, each row labelled: a picture to
put beside a table of scores.

    python benchmarks/sample_rows.py OUT.png --row "LABEL=RUN[@CKPT]:STEPS" ... [--sampler S --schedule G
        --schedule-option K=V --n 10 --seed 0]

Every row is sampled with the same sampler, grid and noises (seed), so rows differ by their weights only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from difflab.config.loader import parse_options
from difflab.jobs.generate import generate
from difflab.jobs.runs import load_run
from difflab.utils.errors import DifflabError
from difflab.viz import save_image_grid


def parse_row(text: str) -> tuple[str, Path, int | None, int]:
    """'LABEL=RUN[@CKPT]:STEPS' -> (label, run, checkpoint step or None, sampler steps)."""
    try:
        label, rest = text.split("=", 1)
        where, steps = rest.rsplit(":", 1)
        run, _, ckpt = where.partition("@")
        return label, Path(run), int(ckpt) if ckpt else None, int(steps)
    except ValueError:
        raise DifflabError(f"--row {text!r}: expected LABEL=RUN[@CKPT]:STEPS, e.g. 'average=runs/ct-avg:4'") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figure", type=Path)
    parser.add_argument("--row", action="append", required=True, help="LABEL=RUN[@CKPT]:STEPS (repeatable)")
    parser.add_argument("--sampler", default="consistency")
    parser.add_argument("--schedule", default="uniform")
    parser.add_argument("--schedule-option", action="append", default=[], help="KEY=VALUE of the grid")
    parser.add_argument("--n", type=int, default=10, help="samples per row")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args(argv)
    torch.set_num_threads(1)
    options = parse_options(a.schedule_option, "--schedule-option")
    images, labels = [], []
    for label, run, ckpt, steps in map(parse_row, a.row):
        loaded = load_run(run, checkpoint=ckpt)
        images.append(generate(loaded.model, loaded.meta, a.n, sampler=a.sampler, steps=steps, schedule=a.schedule,
                               seed=a.seed, schedule_options=options).x)
        labels.append(f"{label}: {steps} NFE")
    grid = ", ".join([a.schedule, *(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items())])
    save_image_grid(torch.cat(images), a.figure, nrow=a.n, scale=8, row_labels=labels,
                    caption=f"{a.n} noises (seed {a.seed}) per row, {a.sampler} on {grid}")
    print(f"wrote {a.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
