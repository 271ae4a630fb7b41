"""The generative trilemma on digits (issue 12): diffusion, VAE, DC-GAN and PixelCNN on one data set, one
held-out split and one training budget; and on the 2-D ring, the mode coverage of a GAN against diffusion.

    OMP_NUM_THREADS=1 python benchmarks/trilemma.py train --runs RUNS --minutes 10
    OMP_NUM_THREADS=1 python benchmarks/trilemma.py measure --runs RUNS --diffusion runs/digits \
        --cells diffusion:samples,vae:samples,...  --out RUNS/cells
    python benchmarks/trilemma.py table --out RUNS/cells --figure docs/figures/trilemma_samples.png

`train` trains the presets digits-vae, digits-gan and digits-pixelcnn into RUNS/<family> for --minutes each
(a folder that already holds a run is left alone), and the ring pair (toy2d: the preset's flow MLP, and a
GAN with an MLP generator) into RUNS/ring-diffusion and RUNS/ring-gan for --ring-minutes. `measure`
computes the named cells, one JSON file each in the folder --out (so cells can run in separate processes
on a loaded machine); a cell is FAMILY:MEASURE with FAMILY diffusion | vae | gan | pixelcnn | ring-diffusion | ring-gan:

    samples  FDD, precision, recall, class coverage of --n samples against the training split
             (difflab.jobs.evaluate.evaluate_loaded, the digit classifier's metrics), and samples/s: one
             batch of 500 drawn again and timed alone, with the network evaluations per sample
    nll      bits/dim on the digits test split (difflab.jobs.likelihood, the dequantized 17 levels for
             diffusion): a baseline's own likelihood (PixelCNN exact, VAE IWAE k=--iwae-k) on all 360
             images; diffusion's continuous ELBO on all 360
    ode      diffusion's probability-flow ODE bits/dim (Hutchinson, 4 probes) on the first --n-ode test images
    nll100   the nll cell on those first --n-ode test images (every family's likelihood on the ODE's subset)
    speed    samples/s of one batch of 500 alone (run the families' speed cells in one process, in turn, so
             they share one load; the table prefers it to the samples cell's figure)
    modes    (ring runs) mode TV of --n samples: each sample goes to its nearest of the 8 modes, or to an
             'off' bin when farther than 3 std from every mode; TV = 1/2 (sum_k |p_k - 1/8| + p_off); with the
             same figures for --n exact samples (the finite-sample floor)

Every cell records the run's steps and training minutes (its newest checkpoint's state). `table` prints
the markdown tables and draws one labelled sample grid per family side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from datetime import date
from pathlib import Path

import torch

from difflab.data.toy2d import EIGHT_GAUSSIANS_STD, eight_gaussians_mixture, sample_toy
from difflab.jobs.evaluate import evaluate_loaded
from difflab.jobs.generate import generate
from difflab.jobs.likelihood import evaluate_nll
from difflab.jobs.runs import load_run, sampling_checkpoint
from difflab.jobs.train import run_train
from difflab.train.checkpoint import read_state
from difflab.utils.files import atomic_write_json
from difflab.viz.io import add_caption, image_grid

FAMILIES = ("diffusion", "vae", "gan", "pixelcnn")
RING = ("ring-diffusion", "ring-gan")
SPEED_BATCH = 500
RING_GAN = ["family=gan", "model.options={latent_dim: 8, width: 128, d_width: 128, r1_gamma: 0.1}",
            "train.lr=2e-4", "train.betas=[0.5, 0.999]", "train.grad_clip=null", "train.warmup_steps=0"]


def run_dir(args, family: str) -> Path:
    return Path(args.diffusion) if family == "diffusion" else Path(args.runs) / family


def budget(run: Path) -> dict:
    """Steps and training minutes of a run's newest checkpoint."""
    ckpt = sampling_checkpoint(run)
    state = read_state(ckpt)
    return {"run": str(run), "checkpoint": ckpt.name, "steps": int(state["step"]),
            "minutes": round(float(state["elapsed"]) / 60, 2)}


# ---------------------------------------------------------------- cells


def samples_cell(run: Path, n: int, seed: int) -> dict:
    loaded = load_run(run)
    t0 = time.perf_counter()
    report = evaluate_loaded(loaded, n=n, seed=seed, batch_size=500, metrics="fdd,class_coverage,precision_recall")
    total = time.perf_counter() - t0
    s = loaded.config.sample
    t0 = time.perf_counter()  # sampling alone: one batch of SPEED_BATCH drawn again, timed without the metrics
    generate(loaded.model, loaded.meta, SPEED_BATCH, sampler=s.sampler, steps=s.steps, schedule=s.schedule,
             seed=seed, options=s.options, schedule_options=s.schedule_options)
    draw = time.perf_counter() - t0
    r = report.results
    return {"fdd": r["fdd"], "precision": r["precision"], "recall": r["recall"],
            "class_coverage": r["class_coverage"], "samples_per_s": SPEED_BATCH / draw, "nfe_per_sample": report.settings["nfe"],
            "sampler": report.settings["sampler"], "steps_sampler": report.settings["steps"], "n": n,
            "eval_seconds": round(total, 1)}


def speed_cell(run: Path, seed: int) -> dict:
    """Samples/s of one batch of SPEED_BATCH (after one warm-up batch of 8): run every family's cell in one
    process, one after another, so that they share the machine's load."""
    loaded = load_run(run)
    s = loaded.config.sample
    times = []
    for n in (8, SPEED_BATCH):
        t0 = time.perf_counter()
        r = generate(loaded.model, loaded.meta, n, sampler=s.sampler, steps=s.steps, schedule=s.schedule, seed=seed,
                     options=s.options, schedule_options=s.schedule_options)
        times.append(time.perf_counter() - t0)
    return {"samples_per_s": SPEED_BATCH / times[-1], "nfe_per_sample": r.nfe, "n": SPEED_BATCH}


def nll_cell(run: Path, method: str | None, n: int | None, iwae_k: int, seed: int) -> dict:
    loaded = load_run(run)
    probes = iwae_k if getattr(loaded.model, "family", None) == "vae" else None
    t0 = time.perf_counter()
    results, settings = evaluate_nll(loaded, method=method, probes=probes, n=n, seed=seed)
    return {**results, "method": settings["method"], "data": settings["data"], "n": settings["n"],
            "seconds": round(time.perf_counter() - t0, 1)}


def mode_tv(x: torch.Tensor, means: torch.Tensor, std: float) -> dict:
    """TV between the samples' mode histogram (K modes plus an 'off' bin: farther than 3 std from every mode)
    and the data's (1/K each, off 0): 1/2 (sum_k |p_k - 1/K| + p_off); the off-mode fraction; modes holding
    at least a fifth of their share."""
    d = torch.cdist(x.double(), means.double())  # (n, K)
    near, k = d.min(1)
    on = near <= 3 * std
    p = torch.bincount(k[on], minlength=means.shape[0]).double() / len(x)
    return {"mode_tv": float(0.5 * (p - 1 / means.shape[0]).abs().sum() + 0.5 * (1 - on.double().mean())),
            "off_mode": float(1 - on.double().mean()), "modes_hit": int((p > 0.2 / means.shape[0]).sum())}


def modes_cell(run: Path, n: int, seed: int) -> dict:
    loaded = load_run(run)
    s = loaded.config.sample
    x = generate(loaded.model, loaded.meta, n, sampler=s.sampler, steps=s.steps, schedule=s.schedule, seed=seed,
                 options=s.options, schedule_options=s.schedule_options).x
    mix = eight_gaussians_mixture()
    exact = sample_toy("8gaussians", n, torch.Generator().manual_seed(seed + 1))
    floor = mode_tv(exact, mix.means, EIGHT_GAUSSIANS_STD)
    return {**mode_tv(x, mix.means, EIGHT_GAUSSIANS_STD), "floor_mode_tv": floor["mode_tv"],
            "floor_off_mode": floor["off_mode"], "n": n}


def measure(args) -> None:
    out = Path(args.out)
    for cell in filter(None, (c.strip() for c in args.cells.split(","))):
        family, _, what = cell.partition(":")
        run = run_dir(args, family)
        if what == "samples":
            value = samples_cell(run, args.n, args.seed)
        elif what == "nll":
            value = nll_cell(run, "elbo" if family == "diffusion" else None, None, args.iwae_k, args.seed)
        elif what == "nll100":  # the same, on the ODE's images: the likelihoods side by side on one subset
            value = nll_cell(run, "elbo" if family == "diffusion" else None, args.n_ode, args.iwae_k, args.seed)
        elif what == "ode":
            value = nll_cell(run, "ode", args.n_ode, args.iwae_k, args.seed)
        elif what == "speed":
            value = speed_cell(run, args.seed)
        elif what == "modes":
            value = modes_cell(run, args.n, args.seed)
        else:
            raise SystemExit(f"unknown measure {what!r} in cell {cell!r}: samples, nll, nll100, ode, speed or modes")
        value.update(budget(run), threads=torch.get_num_threads(), date=str(date.today()),
                     machine=f"{platform.machine()}, torch {torch.__version__}")
        atomic_write_json(out / f"{family}-{what}.json", value)  # one file a cell: processes never collide
        print(f"{cell}: {value}", flush=True)


def train(args) -> None:
    runs = Path(args.runs)
    for family in FAMILIES[1:]:
        if not (runs / family / "run.json").exists():
            run_train(f"digits-{family}", runs / family, minutes=args.minutes)
    for name, overrides in (("ring-diffusion", []), ("ring-gan", RING_GAN)):
        if not (runs / name / "run.json").exists():
            run_train("toy2d", runs / name, minutes=args.ring_minutes, overrides=overrides)


# ---------------------------------------------------------------- the tables and the figure


def _f(v, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _bits(x: dict) -> str:
    return f"{x['bits_per_dim']:.3f} ± {x['bits_per_dim_se']:.3f} ({x['method']}, n={x['n']})"


def table(args) -> None:
    data: dict[str, dict] = {}
    for path in sorted(Path(args.out).glob("*.json")):
        family, _, what = path.stem.rpartition("-")
        data.setdefault(family, {})[what] = json.loads(path.read_text())
    print("| family | steps | minutes | FDD | precision | recall | coverage | bits/dim (test split) | bits/dim "
          "(first test images) | samples/s | NFE/sample |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |")
    rows = [f for f in FAMILIES if f in data] + sorted(k for k in data if k not in FAMILIES and k not in RING)
    for family in rows:  # the four families, then longer-trained copies (e.g. vae-30min)
        cells = data.get(family, {})
        s, nll, ode, sub = cells.get("samples", {}), cells.get("nll"), cells.get("ode"), cells.get("nll100")
        speed = cells.get("speed", s)
        b = s or nll or ode or {}
        none = ["none (no likelihood)"] if family.startswith("gan") else ["-"]
        bits = "; ".join([_bits(x) for x in (nll,) if x] or none)
        first = "; ".join([_bits(x) for x in (ode, sub) if x] or none)
        print(f"| {family} | {b.get('steps', '-')} | {b.get('minutes', '-')} | {_f(s.get('fdd'), '.2f')} | "
              f"{_f(s.get('precision'), '.3f')} | {_f(s.get('recall'), '.3f')} | {_f(s.get('class_coverage'), '.1f')} | "
              f"{bits} | {first} | {_f(speed.get('samples_per_s'), '.1f')} | {speed.get('nfe_per_sample', '-')} |")
    print()
    print("| ring run | steps | minutes | mode TV | off-mode | modes hit | exact samples' mode TV |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in RING:
        m = data.get(name, {}).get("modes")
        if m:
            print(f"| {name} | {m['steps']} | {m['minutes']} | {m['mode_tv']:.3f} | {m['off_mode']:.3f} | "
                  f"{m['modes_hit']}/8 | {m['floor_mode_tv']:.3f} |")
    if args.figure:
        figure(args, data)


def figure(args, data: dict) -> None:
    """One labelled 6x6 grid per family (seed 0, the run's own sampler), side by side."""
    from PIL import Image

    panels = []
    for family in args.figure_rows.split(","):
        run = Path(data[family]["samples"]["run"])
        loaded = load_run(run)
        s = loaded.config.sample
        x = generate(loaded.model, loaded.meta, 36, sampler=s.sampler, steps=s.steps, schedule=s.schedule, seed=0,
                     options=s.options, schedule_options=s.schedule_options).x
        img = Image.fromarray(image_grid(x, 6)[:, :, 0]).resize((6 * 10 * 8, 6 * 10 * 8), Image.NEAREST)
        cell = data[family]["samples"]
        panels.append(add_caption(img, f"{family.split('-')[0]}\n{cell['steps']} steps, {cell['minutes']:.0f} min\n"
                                       f"FDD {cell['fdd']:.1f}"))
    width = sum(p.width for p in panels) + 10 * (len(panels) - 1)
    out = Image.new("L", (width, max(p.height for p in panels)), "white")
    x0 = 0
    for p in panels:
        out.paste(p, (x0, 0))
        x0 += p.width + 10
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    out.save(args.figure)
    print(f"wrote {args.figure}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("train", "measure", "table"))
    p.add_argument("--runs", default="runs/trilemma", help="folder of the baseline and ring runs")
    p.add_argument("--diffusion", default="runs/digits", help="the diffusion run (the digits preset)")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--ring-minutes", type=float, default=5.0)
    p.add_argument("--cells", default=",".join([*(f"{f}:samples" for f in FAMILIES), "diffusion:nll", "vae:nll",
                                                "pixelcnn:nll", "diffusion:ode", "ring-diffusion:modes",
                                                "ring-gan:modes"]))
    p.add_argument("--n", type=int, default=2000, help="samples per sample-metric cell and ring cell")
    p.add_argument("--n-ode", type=int, default=100, help="test images of the ODE likelihood")
    p.add_argument("--iwae-k", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/trilemma/cells", help="folder of the cells' JSON files")
    p.add_argument("--figure", default=None)
    p.add_argument("--figure-rows", default=",".join(FAMILIES), help="the runs drawn, left to right")
    args = p.parse_args()
    {"train": train, "measure": measure, "table": table}[args.action](args)


if __name__ == "__main__":
    main()
