"""Few-step generation on digits (issue 13): each distillation method at 1, 2 and 4 NFE beside the teacher's
best solver at 1, 2, 4, 10 and 20 NFE, with the distillation cost (the table of docs/benchmarks.md).

    OMP_NUM_THREADS=1 python benchmarks/distill_digits.py --teacher /work/runs/digits --out outputs/distill \
        --parts teacher progressive reflow      # each part may run as its own process, in parallel
    python benchmarks/distill_digits.py --out outputs/distill --report docs/figures/distill_steps.png

The teacher run is copied into OUT/teacher (its run.json and newest checkpoint) and never written. Each
method part distils the copy with `difflab distill` (difflab.jobs.distill.run_distill) into OUT/<method>
with the METHODS entry's --set overrides and step budget, then scores its students with `difflab eval`'s
digit metrics (difflab.jobs.evaluate.evaluate_loaded: FDD and class coverage against the training split,
n samples on each of seeds 0..SEEDS-1, their mean and spread) at the NFE the entry names; the teacher part scores the teacher with every solver of
TEACHER_SOLVERS at each NFE. Parts write OUT/<part>.json (rows, CPU seconds of the process, wall seconds,
steps); --report merges them into one markdown table and the picture of 1/2/4-step samples beside the
teacher's. The straightness part (after reflow) measures Liu et al.'s straightness of the teacher's ODE and of
the 2-rectified flow's.

A method is one METHODS entry (H7 adds "consistency"):
    "name": {"method": <distill method>, "set": [--set overrides], "steps": <optimizer steps>,
             "rows": [(label, nfe, checkpoint step or None = newest, sampler steps[, sample])]}
Rows with a checkpoint step score that checkpoint (progressive: the student of the phase that ends there);
a row's optional `sample` dict (sampler, schedule, options, schedule_options) replaces those fields of the
run's own sample config for that row (a named field replaces the run's whole value, so another grid does not
inherit the run's grid options); an entry's optional "teacher" names the part whose run is its teacher
(default: the copied teacher); an entry with "preset" instead of "method" is trained from scratch with
`difflab train PRESET` (difflab.jobs.train.run_train) and scored the same way (MeanFlow). The picture shows, for each model and NFE, the row of lowest FDD.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import shutil
import statistics
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import date
from pathlib import Path

import torch

from difflab.config.factory import build_denoiser, build_process
from difflab.distill.straightness import straightness
from difflab.jobs.distill import run_distill
from difflab.jobs.evaluate import evaluate_loaded
from difflab.jobs.fit_schedule import resolve_schedule, schedule_path
from difflab.jobs.fit_times import run_fit_times
from difflab.jobs.generate import generate
from difflab.jobs.runs import LoadedRun, load_run
from difflab.jobs.train import run_train
from difflab.train.checkpoint import load_weights, newest_intact_checkpoint
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write_json, atomic_write_text
from difflab.viz import save_image_grid

TEACHER_NFE = (1, 2, 4, 10, 20)
#: the teacher's solvers at each NFE (1 NFE per step each): at 1 NFE they are all the one Euler / DDIM step, at 2
#: NFE all three take the same two first-order steps (docs/benchmarks.md's earlier table: equal FDD), and Euler,
#: first order, is never the best at 10 and 20
TEACHER_SOLVERS = {1: ("euler",), 2: ("euler",), 4: ("euler", "dpmpp_2m", "unipc"), 10: ("dpmpp_2m", "unipc"),
                   20: ("dpmpp_2m", "unipc")}
#: optimizer steps of the progressive phases (students of 32, 16, 8, 4, 2, 1 steps): the first phases, whose
#: students of many steps start close to their teacher's 2N steps, get fewer; each phase starts from the last
#: one's EMA student, its EMA restarts and its LR decays linearly (lr_anneal, the method's default, named below);
#: the 8 -> 4 phase of 600 steps (5.34 at 4 NFE on five seeds against 5.45 with 400: docs/benchmarks.md)
PHASES = [60, 120, 240, 600, 300, 300]
ENDS = list(itertools.accumulate(PHASES))  # the step at which each phase ends
TRAIN = ["train.batch_size=64", "train.lr=3e-4", "train.warmup_steps=20", "train.sample_every=0",
         "train.log_every=20"]
#: the consistency student's 1/2/4-step grid uniform in t from sigma~ = 80 (t = 80/81 on the flow process):
#: sigma~ = 80, 2.9, 0.97, 0.33 at 4 steps, 80, 0.99 at 2 (the run's own Karras grid puts its second of 4 levels at
#: sigma~ = 23.5, where re-noising forgets x_T)
UNIFORM_FROM_80 = {"sampler": "consistency", "schedule": "uniform", "schedule_options": {"t_max": 80 / 81}}
#: the consistency students' 2- and 4-step times chosen by FDD (Song et al. 2023, sec. 6: a greedy search, here
#: difflab.jobs.fit_times from the uniform grid above, on seed 1000, scored on seeds 0..4), and their rows
CONSISTENCY_FITS = [{"sampler": "consistency", "steps": k, "metric": "fdd", "pilot": 1000, "start_schedule": "uniform",
                     "start_options": {"t_max": 80 / 81}} for k in (4, 2)]
FITTED_TIMES = {"sampler": "consistency", "schedule": "fitted"}
CONSISTENCY_ROWS = [("4 steps", 4, None, 4), ("2 steps", 2, None, 2), ("1 step", 1, None, 1),
                    ("4 steps, uniform t", 4, None, 4, UNIFORM_FROM_80), ("2 steps, uniform t", 2, None, 2, UNIFORM_FROM_80),
                    ("4 steps, times by FDD", 4, None, 4, FITTED_TIMES), ("2 steps, times by FDD", 2, None, 2, FITTED_TIMES)]
METHODS = {
    # 64 teacher DDIM steps -> 32 -> 16 -> 8 -> 4 -> 2 -> 1 student steps, PHASES steps each; the 4-, 2- and
    # 1-step students are the checkpoints at the ends of phases 4, 5 and 6
    "progressive": {"method": "progressive", "steps": ENDS[-1],
                    "set": [*TRAIN, "distill.options.start_steps=64", "distill.options.final_steps=1",
                            f"distill.options.phase_steps={PHASES}", "distill.options.lr_anneal=true",
                            "train.ckpt_every=10", "train.keep_last=null"],
                    "rows": [("4 steps", 4, ENDS[3], 4), ("2 steps", 2, ENDS[4], 2), ("1 step", 1, ENDS[5], 1)]},
    # 2-rectified flow on the method's default pairs: 10000 of the teacher's UniPC 20-step ODE, 4000 steps (4000
    # pairs of 10 steps and 500 steps, the setting until session 10, gave 5.62 at 4 NFE on five seeds; 2000 steps
    # 5.41); Euler at 1, 2, 4 steps, UniPC at 4
    "reflow": {"method": "reflow", "steps": 4000,
               "set": [*TRAIN, "distill.options.pairs=10000", "distill.options.pair_sampler=unipc",
                       "distill.options.pair_steps=20", "train.ckpt_every=500"],
               "rows": [("4 steps", 4, None, 4), ("2 steps", 2, None, 2), ("1 step", 1, None, 1),
                        ("4 steps, unipc", 4, None, 4, {"sampler": "unipc"})]},
    # consistency distillation: N = 18 Karras levels, Heun teacher steps, the EMA target (mu = 0.95: 12.8 at 4
    # NFE after 600 steps where iCT's stop-grad target was at 207 after 300), pseudo-Huber; the multistep
    # consistency sampler on the run's Karras grid from sigma~ = 80 (second level 0.8) and on the grid uniform
    # in t from sigma~ = 80
    "consistency": {"method": "consistency", "steps": 600,
                    "set": [*TRAIN, "distill.options.steps=18", "distill.options.solver=heun",
                            "train.ckpt_every=300"],
                    "fit": CONSISTENCY_FITS, "rows": CONSISTENCY_ROWS},
    # Liu et al.'s one-step distillation of that 2-rectified flow: 2000 pairs of its own Euler 4-step ODE,
    # trained at t = 1 only (run after "reflow": its teacher is OUT/reflow)
    "reflow-1step": {"method": "reflow", "steps": 200, "teacher": "reflow",
                     "set": [*TRAIN, "distill.options.pairs=2000", "distill.options.pair_sampler=euler",
                             "distill.options.pair_steps=4", "distill.options.pair_schedule=uniform",
                             "distill.options.one_step=true", "train.ckpt_every=200"],
                     "rows": [("1 step", 1, None, 1)]},
    # MeanFlow distillation: the teacher's network plus a zero-started interval embedding, the teacher's
    # velocity in the MeanFlow target (difflab.distill.meanflow); the meanflow sampler at 1, 2, 4 steps
    "meanflow-distill": {"method": "meanflow", "steps": 600, "set": [*TRAIN, "train.ckpt_every=300"],
                         "rows": [("4 steps", 4, None, 4), ("2 steps", 2, None, 2), ("1 step", 1, None, 1)]},
    # consistency tuning (ECT, Geng et al. 2024): consistency training (no teacher calls) started from the
    # teacher's weights, iCT's curriculum N = 11 -> 321 over its 1000 steps, pseudo-Huber, stop-grad target
    "consistency-tuning": {"method": "consistency_tuning", "steps": 1000,
                           "set": [*TRAIN, "distill.options.total_steps=1000", "train.ckpt_every=250"],
                           "fit": CONSISTENCY_FITS, "rows": CONSISTENCY_ROWS},
    # consistency training from scratch (iCT, Song & Dhariwal 2023; no teacher): the `digits-ct` preset (dropout
    # 0.2 since 2026-12-07; the five-seed table's 8.56 / 8.91 were trained without it; the
    # teacher's U-Net and process in the consistency preconditioning, iCT's curriculum over its 4000 steps of
    # 128, pseudo-Huber); the multistep consistency sampler on the preset's Karras grid and uniform in t
    "consistency-training": {"preset": "digits-ct", "steps": 4000,
                             "set": ["train.sample_every=0", "train.ckpt_every=500", "train.log_every=50"],
                             "fit": CONSISTENCY_FITS, "rows": CONSISTENCY_ROWS},
    # MeanFlow (Geng et al. 2025) trained from scratch on the `digits` preset (no teacher): the average velocity
    # u(z, r, t), the network's time input on t's own scale (time_scale 1: the target differentiates the net in
    # t), logit-normal times of mean -0.4 as the paper; the meanflow sampler at 1, 2, 4 steps
    "meanflow": {"preset": "digits", "steps": 1500,
                 "set": ["train.batch_size=64", "train.sample_every=0", "train.ckpt_every=250", "train.log_every=50",
                         "model.objective=meanflow", "model.time_scale=1", "loss.mean=-0.4"],
                 "rows": [("4 steps", 4, None, 4), ("2 steps", 2, None, 2), ("1 step", 1, None, 1)]},
}


def copy_teacher(src: Path, dst: Path) -> Path:
    """run.json and the newest intact checkpoint of `src` into `dst` (once); the source is only read."""
    if (dst / "run.json").is_file():
        return dst
    ckpt, _ = newest_intact_checkpoint(src)
    if ckpt is None:
        raise DifflabError(f"{src} has no intact checkpoint to distil")
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ckpt, dst / ckpt.name)
    shutil.copy2(src / "run.json", dst / "run.json")
    return dst


def at_checkpoint(loaded: LoadedRun, run: Path, step: int | None) -> LoadedRun:
    """The run's model with the EMA weights of ckpt-<step> (the newest when step is None)."""
    if step is None:
        return loaded
    ckpt = run / f"ckpt-{step}"
    cfg = loaded.config
    model = build_denoiser(cfg, build_process(cfg.process), loaded.meta.data_shape, loaded.meta.num_classes,
                           loaded.meta.context_dim)
    load_weights(ckpt, model, ema=True)
    return replace(loaded, model=model.eval().requires_grad_(False), checkpoint=ckpt)


SAMPLE_FIELDS = ("sampler", "schedule", "options", "schedule_options")


def with_sample(loaded: LoadedRun, sample: dict | None) -> LoadedRun:
    """The run with the fields of `sample` (SAMPLE_FIELDS) replacing its sample config's; None: unchanged.
    A named field replaces the run's value whole (schedule_options are not merged with the run's)."""
    if not sample:
        return loaded
    unknown = sorted(set(sample) - set(SAMPLE_FIELDS))
    if unknown:
        raise DifflabError(f"a METHODS row's sample dict takes {', '.join(SAMPLE_FIELDS)}; got {unknown}")
    changes = dict(sample)
    if "schedule" in changes:
        changes.setdefault("schedule_options", {})
    if "sampler" in changes:
        changes.setdefault("options", {})
    return replace(loaded, config=replace(loaded.config, sample=replace(loaded.config.sample, **changes)))


def score(loaded: LoadedRun, n: int, sampler: str | None, steps: int, schedule: str | None, seeds: int = 1) -> dict:
    """FDD and class coverage of n samples for each seed 0..seeds-1 (FDD of 1000 samples moves by about +-0.7
    between seeds at FDD 5: docs/benchmarks.md), and their means, which the table and the goals use."""
    start = time.perf_counter()
    runs = [evaluate_loaded(loaded, n=n, sampler=sampler, steps=steps, schedule=schedule, seed=seed,
                            metrics=["fdd", "class_coverage"], batch_size=500) for seed in range(seeds)]
    st, s = runs[0].settings, loaded.config.sample
    fdd = [r.results["fdd"] for r in runs]
    return {"sampler": st["sampler"], "schedule": st["schedule"], "steps": steps,
            "nfe": st["nfe"], "options": s.options if sampler is None else {},
            "schedule_options": s.schedule_options if schedule is None else {},
            "fdd": statistics.fmean(fdd), "fdd_seeds": fdd, "fdd_sd": statistics.stdev(fdd) if seeds > 1 else None,
            "class_coverage": statistics.fmean(r.results["class_coverage"] for r in runs),
            "checkpoint": str(loaded.checkpoint), "seconds": time.perf_counter() - start}


def teacher_part(teacher: Path, n: int, seeds: int = 1) -> dict:
    loaded = load_run(teacher)
    rows = []
    for nfe in TEACHER_NFE:
        for solver in TEACHER_SOLVERS[nfe]:
            row = score(loaded, n, solver, nfe, "default", seeds)
            rows.append({"label": f"{solver}, {nfe} steps", **row})
            print(f"teacher {solver} {nfe}: FDD {row['fdd']:.3f}", file=sys.stderr)
    return {"rows": rows}


def fit_times(run: Path, fits: list[dict]) -> list[dict]:
    """The entry's metric-chosen grids (difflab fit-schedule RUN --metric fdd: Song et al.'s greedy search, on
    seed 1000, away from the scored seeds), each fitted once and kept in RUN/schedules; their one-time cost."""
    done = []
    for fit in fits:
        path = schedule_path(run, fit["sampler"], fit["steps"])
        if not path.is_file():
            run_fit_times(run, **fit, log=lambda line: print(line, file=sys.stderr))
        saved = json.loads(path.read_text())
        done.append({**fit, "times": saved["times"], "fit_nfe": saved["fit_nfe"], "pilot": saved["pilot"],
                     "grids_scored": saved["max_evals"], "metric_value": saved["metric_value"],
                     "seconds": saved["seconds"]})
    return done


def method_part(name: str, teacher: Path | None, out: Path, n: int, rescore: bool = False, seeds: int = 1) -> dict:
    """Distil (or resume) OUT/<name> and score its rows; rescore: only score the rows again, keeping the
    distillation cost recorded in OUT/<name>.json."""
    entry = METHODS[name]
    run = out / name
    if rescore:
        saved = out / f"{name}.json"
        if not saved.is_file():
            raise DifflabError(f"--rescore {name}: {saved} holds no distillation to rescore; run the part first")
        cost = json.loads(saved.read_text())["cost"]
    else:
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        resume = newest_intact_checkpoint(run)[0] is not None
        teacher = out / entry["teacher"] if "teacher" in entry else teacher
        if "preset" in entry:  # trained from scratch, not distilled
            result = run_train(None if resume else entry["preset"], run, resume=resume,
                               steps=None if resume else entry["steps"], overrides=[] if resume else entry["set"])
        else:
            result = run_distill(None if resume else teacher, run, method=entry["method"], resume=resume,
                                 steps=None if resume else entry["steps"], overrides=[] if resume else entry["set"])
        cost = {"steps": result.step, "train_seconds": result.elapsed,
                "wall_seconds": time.perf_counter() - start_wall, "cpu_seconds": time.process_time() - start_cpu}
    fits = fit_times(run, entry.get("fit", []))
    loaded = load_run(run)
    rows = []
    for label, _nfe, step, steps, *sample in entry["rows"]:
        row = score(with_sample(at_checkpoint(loaded, run, step), sample[0] if sample else None), n, None, steps, None,
                    seeds)
        rows.append({"label": label, **row})
        print(f"{name} {label}: FDD {row['fdd']:.3f} (nfe {row['nfe']})", file=sys.stderr)
    return {"rows": rows, "cost": cost, "set": entry["set"], "fits": fits}


def straightness_part(out: Path, n: int = 256, steps: int = 32) -> dict:
    """Liu et al.'s straightness of the teacher's ODE (the 1-rectified flow) and of the reflow student's (the
    2-rectified flow) from the same n noises (seed 0), on `steps` Euler steps (difflab.distill.straightness)."""
    z = torch.randn((n, *load_run(out / "teacher").meta.data_shape), generator=torch.Generator().manual_seed(0))
    rows = {}
    for name in ("teacher", "reflow"):
        loaded = load_run(out / name)
        s = straightness(loaded.model, z * float(loaded.model.process.sigma(torch.tensor(1.0))), steps=steps)
        rows[name] = {"mean": float(s.mean()), "se": float(s.std() / n**0.5), "checkpoint": str(loaded.checkpoint)}
        print(f"straightness {name}: {rows[name]['mean']:.4f} +- {rows[name]['se']:.4f}", file=sys.stderr)
    return {"rows": rows, "n": n, "steps": steps}


def report(out: Path, figure: Path | None, parts: list[str], n: int) -> str:
    data = {p: json.loads((out / f"{p}.json").read_text()) for p in parts if (out / f"{p}.json").is_file()}
    bent = data.pop("straightness", None)
    lines = ["| model | sampler | NFE | FDD | class coverage | distillation cost |", "|---|---|---|---|---|---|"]
    for name, d in data.items():
        cost = d.get("cost")
        cost_text = "" if cost is None else (f"{cost['steps']} steps, {cost['cpu_seconds'] / 60:.1f} CPU min "
                                             f"({cost['wall_seconds'] / 60:.1f} min wall)")
        best, count = best_rows(d["rows"]), Counter(r["nfe"] for r in d["rows"])
        for r in d["rows"]:
            mark = " (best)" if best[r["nfe"]] is r and count[r["nfe"]] > 1 else ""
            spread = "" if r.get("fdd_sd") is None else f" +- {r['fdd_sd']:.2f}"
            lines.append(f"| {name} | {r['sampler']} ({grid_text(r)}) | {r['nfe']} | {r['fdd']:.3f}{spread}{mark} | "
                         f"{r['class_coverage']:.2f} | {cost_text if r is d['rows'][0] else ''} |")
    table = "\n".join(lines) + "\n"
    seeds = {d.get("seeds", 1) for d in data.values()}
    table += (f"\nFDD: the mean over seeds {' or '.join(f'0..{k - 1}' for k in sorted(seeds))} of {n} samples each, +- "
              "their standard deviation.\n")
    for name, d in data.items():
        for f in d.get("fits", []):
            table += (f"{name}: the {f['steps']}-step times chosen by {f['metric']} on seed 1000 (greedy search from "
                      f"{f['start_schedule']}): {', '.join(f'{t:.4f}' for t in f['times'])}; {f['grids_scored']} grids "
                      f"of {f['pilot']} samples, {f['fit_nfe']} denoiser calls on {f['pilot']} samples, "
                      f"{f['seconds'] / 60:.1f} min (one-time set-up)\n")
    if bent is not None:
        r = bent["rows"]
        table += (f"\nStraightness (Liu et al. 2022, eq. 8; {bent['n']} noises, {bent['steps']} Euler steps): teacher "
                  f"(1-rectified) {r['teacher']['mean']:.4f} +- {r['teacher']['se']:.4f}, reflow student (2-rectified) "
                  f"{r['reflow']['mean']:.4f} +- {r['reflow']['se']:.4f}\n")
    if figure is not None:
        picture(out, figure, data)
    return table


def grid_text(row: dict) -> str:
    """The row's grid as the table shows it: its name and any grid options (e.g. "uniform, t_max=0.9877")."""
    opts = row.get("schedule_options") or {}
    return ", ".join([row["schedule"], *(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in opts.items())])


def best_rows(rows: list[dict]) -> dict[int, dict]:
    """For each NFE, the row of lowest FDD (the first of equals)."""
    best: dict[int, dict] = {}
    for r in rows:
        if r["nfe"] not in best or r["fdd"] < best[r["nfe"]]["fdd"]:
            best[r["nfe"]] = r
    return best


def _samples(loaded: LoadedRun, row: dict):
    schedule = resolve_schedule(loaded.checkpoint.parent, row["schedule"], row["sampler"], row["steps"])  # 'fitted'
    return generate(loaded.model, loaded.meta, 10, sampler=row["sampler"], steps=row["steps"], seed=0,
                    schedule=schedule, options=row.get("options") or {},
                    schedule_options=row.get("schedule_options") or {}).x


def picture(out: Path, figure: Path, data: dict) -> None:
    """One row of 10 samples (seed 0) per model and NFE (1, 2, 4): the row of lowest FDD of the teacher and of
    each method, each sampled exactly as it was scored (its checkpoint, sampler, grid and options)."""
    rows, captions = [], []
    for name, d in data.items():
        base = load_run(out / name)
        best = best_rows(d["rows"])
        for nfe in (1, 2, 4):
            if nfe in best:
                r = best[nfe]
                step = int(Path(r["checkpoint"]).name.split("-")[1])
                rows.append(_samples(at_checkpoint(base, out / name, step), r))
                captions.append(f"{name}: {r['sampler']} ({grid_text(r)}), {nfe} NFE, FDD {r['fdd']:.1f}")
    caption = "10 noises (seed 0) per row; each model at its lowest-FDD setting per NFE"
    save_image_grid(torch.cat(rows), figure, nrow=10, scale=8, caption=caption, row_labels=captions)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, default=Path("/work/runs/digits"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", nargs="*", default=[], help="teacher and/or METHODS names to run")
    parser.add_argument("--n", type=int, default=1000, help="samples per row")
    parser.add_argument("--seeds", type=int, default=5, help="score each row on seeds 0..SEEDS-1 and report the mean")
    parser.add_argument("--rescore", action="store_true",
                        help="method parts: score the rows of the distilled run again, keeping its recorded cost")
    parser.add_argument("--report", type=Path, nargs="?", const=None, default=False,
                        help="merge OUT/*.json into the table (and write the picture at this path)")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    a = parser.parse_args(argv)
    torch.manual_seed(0)
    for part in a.parts:
        if part not in ("teacher", "straightness") and part not in METHODS:
            raise DifflabError(f"unknown part {part!r}; parts are: teacher, straightness, {', '.join(METHODS)}")
        # the parts trained from scratch (a METHODS entry with a preset) need no teacher
        from_scratch = "preset" in METHODS.get(part, {})
        teacher = None if from_scratch else copy_teacher(a.teacher, a.out / "teacher")
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        if part == "straightness":
            d = straightness_part(a.out)
        else:
            d = teacher_part(teacher, a.n, a.seeds) if part == "teacher" else method_part(
                part, teacher, a.out, a.n, a.rescore, a.seeds)
        d.setdefault("n", a.n)
        d["seeds"] = a.seeds
        d.update(part=part, wall_seconds=time.perf_counter() - start_wall,
                 cpu_seconds=time.process_time() - start_cpu, threads=torch.get_num_threads(),
                 machine=f"{platform.machine()}, torch {torch.__version__}", date=str(date.today()))
        atomic_write_json(a.out / f"{part}.json", d)
    if a.report is not False:
        table = report(a.out, a.report, ["teacher", *METHODS, "straightness"], a.n)
        print(table)
        if a.markdown:
            atomic_write_text(a.markdown, table)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except DifflabError as e:
        raise SystemExit(f"error: {e}") from None
