"""Latent versus pixel text-to-image on coloured shapes at 32x32, in one run (issue 11; seed 000 "latent
diffusion": 16x fewer positions per step at f = 4).

    OMP_NUM_THREADS=1 python benchmarks/latent_vs_pixel.py --autoencoder runs/shapes-kl --steps 300 \
        --out runs/latent-vs-pixel --n 100 --figures docs/figures

Trains `shapes-text` (pixels, 3x32x32) and `shapes-latent` (the autoencoder's 4x8x8 latents) on the same
data and batch (or resumes runs already there), then measures for each:
* training images/s, from the trainer's log (steps after the first log line, so setup and the one-off latent
  encoding are left out; the encoding is timed on its own from the latent run's log line);
* sampling images/s at the same sampler, steps and CFG weight, the denoising alone and with the decode;
* held-out prompt accuracy: n captions of the held-out (shape, colour) pairs, read exactly by
  difflab.data.shapes.read_attributes (shape, colour, both);
and writes seed 004's pipeline pictures of the latent run (difflab.jobs.pipeline) as
FIGURES/pipeline_*.png. Prints a markdown report; --json writes the numbers.

The same CPU budget (`--cpu-minutes M` instead of `--steps`): the two denoisers' training steps (forward,
backward, AdamW at the preset's batch) are first timed taking turns (`network_step_times`, so both see the same
load on a shared machine, CPU time of this process, not wall time), and each run gets M*60 / (its median CPU
seconds per step) steps; the budget is written to OUT/budget.json and reused by later calls (so the runs can be
trained one at a time: `--train-only pixel`, then `--train-only latent` once the autoencoder exists, then a
call without it measures). The process CPU seconds of each training call are recorded beside it (they include
the run's setup and, for the latent run, the one-off encoding of the data set, also reported on its own).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

from difflab.data.shapes import Shapes
from difflab.jobs.autoencoder_runs import load_autoencoder
from difflab.jobs.generate import generate
from difflab.jobs.latent import decode_latents
from difflab.jobs.pipeline import run_pipeline
from difflab.jobs.runs import load_run
from difflab.jobs.train import run_train
from difflab.metrics.guidance import shape_accuracy
from difflab.train.checkpoint import list_checkpoints
from difflab.viz import save_image_grid

COMMON = ["train.sample_every=0", "train.log_every=10", "train.keep_last=1"]


def trained(out: Path, preset: str, steps: int, extra: list[str]) -> tuple[float, float]:
    """Train `preset` into `out` for `steps` steps (resume a shorter run); wall and process CPU seconds spent in
    this call."""
    start, cpu = time.perf_counter(), time.process_time()
    done = max((int(p.name.split("-")[1]) for p in list_checkpoints(out)), default=0) if out.exists() else 0
    overrides = [*COMMON, f"train.ckpt_every={steps}", *extra]
    if done == 0:
        run_train(preset, out, steps=steps, overrides=overrides)
    elif done < steps:
        run_train(None, out, steps=steps - done, overrides=overrides, resume=True)
    return time.perf_counter() - start, time.process_time() - cpu


def train_rate(out: Path) -> dict:
    """Training images/s and s/step between the first and last log lines (setup excluded)."""
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "images_seen" in r and "elapsed" in r]
    if len(rows) < 2:
        raise SystemExit(f"{out}: fewer than two log lines to time training between; train more steps")
    first, last = rows[0], rows[-1]
    images, seconds = last["images_seen"] - first["images_seen"], last["elapsed"] - first["elapsed"]
    steps = last["step"] - first["step"]
    trained_steps = max(int(p.name.split("-")[1]) for p in list_checkpoints(out))
    return {"train_img_s": images / seconds, "train_s_per_step": seconds / steps,
            "train_steps_timed": f"{first['step']}-{last['step']}", "steps": trained_steps}


def sample_and_score(run: Path, captions: list[str], attributes, *, steps: int, guidance: float, batch: int,
                     seed: int) -> tuple[torch.Tensor, dict]:
    """Held-out samples in batches: denoising and decoding timed apart, then read exactly."""
    loaded = load_run(run)
    xs, denoise_s, decode_s, nfe = [], 0.0, 0.0, 0
    for lo in range(0, len(captions), batch):
        hi = min(len(captions), lo + batch)
        t0 = time.perf_counter()
        result = generate(loaded.model, loaded.meta, hi - lo, sampler="default", steps=steps, schedule="default",
                          seed=list(range(seed + lo, seed + hi)), guidance=guidance, prompts=captions[lo:hi],
                          text_encoder=loaded.text_encoder)
        t1 = time.perf_counter()
        x = result.x if loaded.autoencoder is None else decode_latents(loaded.autoencoder, result.x)
        t2 = time.perf_counter()
        denoise_s, decode_s, nfe = denoise_s + t1 - t0, decode_s + t2 - t1, result.nfe
        xs.append(x.clamp(-1, 1))
    n = len(captions)
    x = torch.cat(xs)
    acc = shape_accuracy(x, attributes)
    return x, {"sample_img_s": n / denoise_s, "sample_img_s_with_decode": n / (denoise_s + decode_s),
            "sample_s_per_step_per_img": denoise_s / (nfe * n), "decode_s": decode_s, "nfe": nfe,
            "shape": acc["shape"], "colour": acc["colour"], "shape_colour": acc["shape_colour"],
            "latent_shape": list(loaded.meta.data_shape)}


def encoding_seconds(out: Path) -> float | None:
    """The one-off latent encoding, as the latent cache's manifest records it."""
    manifest = out / "latents" / "cache.json"
    return json.loads(manifest.read_text()).get("encode_seconds") if manifest.is_file() else None


def network_step_times(presets: dict[str, tuple[str, tuple[int, ...]]], batch: int, repeats: int,
                       clock=time.perf_counter) -> dict:
    """Median seconds (of `clock`: wall by default, time.process_time for CPU seconds) of one training step (forward, backward, AdamW) and one CFG sampling call (batch 2B, no
    grad) of each preset's denoiser on random inputs of its data shape, the presets taking turns (ABAB...),
    so both see the same load on a shared machine. Context: 12 random tokens of the encoder's width 384."""
    from difflab.config.factory import build_denoiser, build_process
    from difflab.config.loader import load_config

    nets, times = {}, {name: {"train": [], "sample": []} for name in presets}
    for name, (preset, shape) in presets.items():
        cfg = load_config(preset, ["model.autoencoder=null"])
        torch.manual_seed(0)
        model = build_denoiser(cfg, build_process(cfg.process), shape, None, 384)
        nets[name] = (model, torch.optim.AdamW(model.parameters(), 1e-4), shape)
    ctx = {"context": torch.randn(2 * batch, 12, 384), "context_mask": torch.ones(2 * batch, 12, dtype=torch.bool)}
    half = {k: v[:batch] for k, v in ctx.items()}
    for _ in range(repeats + 1):  # the first round warms up
        for name, (model, opt, shape) in nets.items():
            x, t = torch.randn(batch, *shape), torch.rand(batch)
            t0 = clock()
            model(x, t, half).square().mean().backward()
            opt.step()
            opt.zero_grad()
            t1 = clock()
            with torch.no_grad():
                model(torch.randn(2 * batch, *shape), torch.rand(2 * batch), ctx)
            t2 = clock()
            times[name]["train"].append(t1 - t0)
            times[name]["sample"].append(t2 - t1)
    med = {name: {k: float(torch.tensor(v[1:]).median()) for k, v in d.items()} for name, d in times.items()}
    return {**med, "batch": batch, "repeats": repeats}


def ae_latent_shape(source: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    """The latent shape an autoencoder run's run.json records, or `default` when it is not there yet."""
    meta = Path(source) / "run.json" if source else None
    if meta is not None and meta.is_file():
        return tuple(json.loads(meta.read_text())["latent_shape"])
    return default


def cpu_budget(out: Path, minutes: float, latent_shape: tuple[int, ...], batch: int, repeats: int) -> dict:
    """Steps of each run for `minutes` CPU minutes, from the turn-taking CPU timing of a training step; written
    to OUT/budget.json once and read back by later calls."""
    path = out / "budget.json"
    if path.is_file():
        budget = json.loads(path.read_text())
        if budget["cpu_minutes"] != minutes:
            raise SystemExit(f"{path} holds a budget of {budget['cpu_minutes']} CPU minutes, not {minutes}; "
                             "use another --out or the same --cpu-minutes")
        return budget
    timing = network_step_times({"pixel": ("shapes-text", (3, 32, 32)), "latent": ("shapes-latent", latent_shape)},
                                batch=batch, repeats=repeats, clock=time.process_time)
    steps = {name: max(1, round(minutes * 60 / timing[name]["train"])) for name in ("pixel", "latent")}
    budget = {"cpu_minutes": minutes, "steps": steps, "cpu_s_per_step": {k: timing[k]["train"] for k in steps},
              "timing": timing, "latent_shape": list(latent_shape)}
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(budget, indent=1) + "\n")
    return budget


@torch.no_grad()
def reconstruction_readout(source: str, held: Shapes) -> dict:
    """The ceiling of any latent model: the exact readout of the autoencoder's reconstructions D(E(x)) of the
    held-out images themselves."""
    ae = load_autoencoder(source)
    x = held.render(list(range(len(held))))
    x_hat = torch.cat([ae.from_latent(ae.to_latent(x[i : i + 50])).clamp(-1, 1) for i in range(0, len(x), 50)])
    return shape_accuracy(x_hat, held.attributes)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--autoencoder", default=None, help="The KL autoencoder (a shapes-kl run) of the latent run.")
    p.add_argument("--steps", type=int, default=300, help="Training steps of each run (without --cpu-minutes).")
    p.add_argument("--cpu-minutes", type=float, default=None,
                   help="The same CPU budget for both runs: steps = M*60 / CPU s per step (turn-taking timing).")
    p.add_argument("--latent-shape", default="4,8,8",
                   help="Latent shape for the budget timing when the autoencoder run is not there yet.")
    p.add_argument("--train-only", choices=["pixel", "latent"], default=None,
                   help="Train this run (to its budget) and stop; a later call without it measures both.")
    p.add_argument("--out", type=Path, default=Path("runs/latent-vs-pixel"), help="Folder of the two runs.")
    p.add_argument("--n", type=int, default=100, help="Held-out captions sampled per run.")
    p.add_argument("--sample-steps", type=int, default=20, help="Sampler steps.")
    p.add_argument("--guidance", type=float, default=3.0, help="CFG weight of the held-out samples.")
    p.add_argument("--batch", type=int, default=50, help="Sampling batch.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt", default="a large yellow diamond in the center", help="The pipeline pictures' prompt.")
    p.add_argument("--figures", type=Path, default=None, help="Write pipeline_*.png here (e.g. docs/figures).")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="An override for both runs.")
    p.add_argument("--repeats", type=int, default=5, help="Rounds of the turn-taking network timing.")
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = parse(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if a.autoencoder is None and a.train_only != "pixel":
        raise SystemExit("--autoencoder is required (only --train-only pixel runs without it)")
    runs = {"pixel": ("shapes-text", []), "latent": ("shapes-latent", [f"model.autoencoder={a.autoencoder}"])}
    budget = None
    if a.cpu_minutes is not None:
        shape = ae_latent_shape(a.autoencoder, tuple(int(v) for v in a.latent_shape.split(",")))
        budget = cpu_budget(a.out, a.cpu_minutes, shape, batch=64, repeats=a.repeats)
        print(f"budget {a.cpu_minutes:g} CPU min: {budget['steps']} steps "
              f"(CPU s/step {budget['cpu_s_per_step']})", flush=True)
    steps = {name: budget["steps"][name] if budget else a.steps for name in runs}
    if a.train_only is not None:
        name = a.train_only
        wall, cpu = trained(a.out / name, runs[name][0], steps[name], [*a.overrides, *runs[name][1]])
        record = a.out / f"{name}.train.json"
        prior = json.loads(record.read_text()) if record.is_file() else {"wall_s": 0.0, "cpu_s": 0.0}
        record.write_text(json.dumps({"wall_s": prior["wall_s"] + wall, "cpu_s": prior["cpu_s"] + cpu,
                                      "steps": steps[name]}, indent=1) + "\n")
        print(f"{name}: {steps[name]} steps, this call {wall:.0f} s wall, {cpu:.0f} s CPU", flush=True)
        return 0
    held = Shapes(a.n, seed=a.seed + 1, size=32, combos="holdout", jitter=0)
    captions = [held.caption(i) for i in range(a.n)]
    rows, pictures = {}, {}
    for name, (preset, extra) in runs.items():
        wall, cpu = trained(a.out / name, preset, steps[name], [*a.overrides, *extra])
        record = a.out / f"{name}.train.json"
        if record.is_file():
            prior = json.loads(record.read_text())
            wall, cpu = wall + prior["wall_s"], cpu + prior["cpu_s"]
        pictures[name], scores = sample_and_score(a.out / name, captions, held.attributes, steps=a.sample_steps,
                                                  guidance=a.guidance, batch=a.batch, seed=a.seed)
        rows[name] = {"preset": preset, "train_wall_s": wall, "train_cpu_s": cpu, **train_rate(a.out / name),
                      **scores}
    rows["latent"]["encode_s"] = encoding_seconds(a.out / "latent")
    ceiling = reconstruction_readout(a.autoencoder, held)
    shapes = {"pixel": ("shapes-text", tuple(rows["pixel"]["latent_shape"])),
              "latent": ("shapes-latent", tuple(rows["latent"]["latent_shape"]))}
    micro = network_step_times(shapes, batch=64, repeats=a.repeats)
    if a.figures is not None:
        tmp = a.out / "pipeline"
        run_pipeline(a.out / "latent", a.prompt, out_dir=tmp, steps=a.sample_steps, guidance=a.guidance, seed=a.seed)
        a.figures.mkdir(parents=True, exist_ok=True)
        for png in sorted(tmp.glob("*.png")):
            shutil.copyfile(png, a.figures / f"pipeline_{png.name}")
        k = min(10, a.n)
        save_image_grid(torch.cat([pictures["pixel"][:k], pictures["latent"][:k]]), a.figures / "latent_vs_pixel.png",
                        nrow=k, scale=2, caption=f"held-out prompts, w = {a.guidance:g}, {a.sample_steps} steps; "
                        f"top: pixel (shapes-text, {rows['pixel']['steps']} steps), bottom: latent (shapes-latent, "
                        f"{rows['latent']['steps']} steps)" + (f", {a.cpu_minutes:g} CPU min each" if budget else "")
                        + "\n"
                        + "; ".join(captions[:3]) + " ...")
    p, q = rows["pixel"], rows["latent"]
    speed = {"train": q["train_img_s"] / p["train_img_s"], "sample": q["sample_img_s"] / p["sample_img_s"],
             "sample_with_decode": q["sample_img_s_with_decode"] / p["sample_img_s"]}
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    lines = [f"`OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')} python benchmarks/latent_vs_pixel.py "
             f"{shlex.join(argv)}`  ", f"{time.strftime('%Y-%m-%d %H:%M')}, {machine}", "",
             "| run | data shape | steps | train CPU min | train img/s | s/step | sample img/s (denoise) | with decode | "
             "held-out shape | colour | shape+colour |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        lines.append(f"| {name} | {'x'.join(map(str, r['latent_shape']))} | {r['steps']} | {r['train_cpu_s'] / 60:.1f} | "
                     f"{r['train_img_s']:.1f} | "
                     f"{r['train_s_per_step']:.2f} | {r['sample_img_s']:.2f} | {r['sample_img_s_with_decode']:.2f} | "
                     f"{r['shape']:.3f} | {r['colour']:.3f} | {r['shape_colour']:.3f} |")
    lines.append(f"| autoencoder D(E(x)) of the held-out images (the latent run's ceiling) | | | | | | | | "
                 f"{ceiling['shape']:.3f} | {ceiling['colour']:.3f} | {ceiling['shape_colour']:.3f} |")
    lines += ["", f"latent / pixel: training {speed['train']:.2f}x, sampling {speed['sample']:.2f}x per step "
              f"({speed['sample_with_decode']:.2f}x with the decode); n = {a.n} held-out captions, "
              f"{a.sample_steps} steps, w = {a.guidance:g}; the latent encoding took {q['encode_s'] or 0:.0f} s once"]
    pm, lm = micro["pixel"], micro["latent"]
    lines += ["", f"turn-taking network timing (batch 64, median of {a.repeats} rounds, same load for both): a training "
              f"step {pm['train']:.3f} s pixel, {lm['train']:.3f} s latent ({pm['train'] / lm['train']:.2f}x); a CFG "
              f"sampling call on 2 x 64 {pm['sample']:.3f} s pixel, {lm['sample']:.3f} s latent "
              f"({pm['sample'] / lm['sample']:.2f}x)"]
    if budget:
        b = budget["cpu_s_per_step"]
        lines += ["", f"CPU budget {a.cpu_minutes:g} min each: turn-taking CPU timing of a training step (batch 64) "
                  f"{b['pixel']:.3f} s pixel, {b['latent']:.3f} s latent, so {budget['steps']['pixel']} and "
                  f"{budget['steps']['latent']} steps; train CPU min counts each training call's process CPU time "
                  "(setup and, for latent, the encoding included)"]
    print("\n".join(lines))
    if a.json is not None:
        a.json.write_text(json.dumps({"rows": rows, "speedup": speed, "ceiling": ceiling, "network": micro,
                                      "budget": budget, "argv": argv}, indent=1)
                          + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
