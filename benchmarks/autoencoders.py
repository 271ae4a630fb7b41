"""Autoencoders on held-out shapes (issue 11): KL-VAE with and without the discriminator, side by side, and VQ.

    OMP_NUM_THREADS=1 python benchmarks/autoencoders.py --run kl-disc=RUN --run kl-nodisc=RUN --run vq=RUN \
        --n 2000 --figure docs/figures/ae_disc_vs_nodisc.png --json ae.json

Each run is scored by `difflab eval RUN`'s job (difflab.jobs.reconstruct.evaluate_autoencoder, EMA weights):
n images of the (shape, colour) pairs the runs did not train on, another seed: PSNR, SSIM, the high-frequency
energy ratios of reconstruction to input (Laplacian, top half of the spectrum), the exact readout agreement
of reconstructions with their inputs, and for VQ the codebook usage and perplexity. The figure shows the
first `--show` held-out images above each run's reconstructions (one row per run, in --run order), with
each run's PSNR and high-frequency ratio in its caption.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from difflab.config.autoencoder import held_out_images
from difflab.config.factory import build_data
from difflab.data.datasets import collate
from difflab.jobs.autoencoder_runs import load_autoencoder_run
from difflab.jobs.reconstruct import evaluate_autoencoder
from difflab.jobs.train_autoencoder import reconstruct
from difflab.train.checkpoint import read_state
from difflab.viz import save_image_grid

COLUMNS = ("psnr", "ssim", "hf_ratio_laplacian", "hf_ratio_fft", "readout_shape", "readout_colour",
           "readout_shape_colour", "readout_all", "code_usage", "perplexity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="NAME=RUN_FOLDER (repeatable)")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--show", type=int, default=10)
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    runs = dict(item.split("=", 1) for item in args.run)

    rows = {}
    for name, run in runs.items():
        start = time.perf_counter()
        report = evaluate_autoencoder(run, n=args.n, batch_size=250)
        state = read_state(Path(report.settings["checkpoint"]))
        rows[name] = {"run": run, "step": state["step"], "train_minutes": state["elapsed"] / 60,
                      "eval_seconds": time.perf_counter() - start, **report.results}

    print("| run | steps (train minutes) | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for name, r in rows.items():
        cells = [f"{r[c]:.4g}" if c in r else "" for c in COLUMNS]
        print(f"| {name} | {r['step']} ({r['train_minutes']:.0f}) | " + " | ".join(cells) + " |")

    if args.figure is not None:
        first = load_autoencoder_run(next(iter(runs.values())))
        data_cfg, _ = held_out_images(first.config.data)
        data_cfg = replace(data_cfg, options={**data_cfg.options, "n": args.show})
        x = collate([item for item in build_data(data_cfg)])["x"]
        tiles, lines = [x], ["top row: held-out inputs; below, one row per run:"]
        for name, run in runs.items():
            tiles.append(reconstruct(load_autoencoder_run(run).model, x).clamp(-1, 1))
            r = rows[name]
            lines.append(f"{name} (step {r['step']}): PSNR {r['psnr']:.2f} dB, high-frequency energy ratio "
                         f"{r['hf_ratio_laplacian']:.3f} (Laplacian) {r['hf_ratio_fft']:.3f} (FFT)")
        save_image_grid(torch.cat(tiles), args.figure, nrow=args.show, scale=3, caption="\n".join(lines))
        print(f"wrote {args.figure}")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
