"""Few-step generation on digits (issue 13): each distillation method at 1, 2 and 4 NFE beside the teacher's
best solver at 1, 2, 4, 10 and 20 NFE, with the distillation cost (the table of docs/benchmarks.md).

    OMP_NUM_THREADS=1 python benchmarks/distill_digits.py --teacher /work/runs/digits --out outputs/distill \
        --parts teacher progressive reflow      # each part may run as its own process, in parallel
    python benchmarks/distill_digits.py --out outputs/distill --report docs/figures/distill_steps.png

The teacher run is copied into OUT/teacher (its run.json and newest checkpoint) and never written. Each
method part distils the copy with `difflab distill` (difflab.jobs.distill.run_distill) into OUT/<method>
with the METHODS entry's --set overrides and step budget, then scores its students with `difflab eval`'s
digit metrics (difflab.jobs.evaluate.evaluate_loaded: FDD and class coverage against the training split,
n samples, seed 0) at the NFE the entry names; the teacher part scores the teacher with every solver of
TEACHER_SOLVERS at each NFE. Parts write OUT/<part>.json (rows, CPU seconds of the process, wall seconds,
steps); --report merges them into one markdown table and the picture of 1/2/4-step samples beside the
teacher's. The straightness part (after reflow) measures Liu et al.'s straightness of the teacher's ODE and of
the 2-rectified flow's.

A method is one METHODS entry (H7 adds "consistency"):
    "name": {"method": <distill method>, "set": [--set overrides], "steps": <optimizer steps>,
             "rows": [(label, nfe, checkpoint step or None = newest, sampler steps)]}
Rows with a checkpoint step score that checkpoint (progressive: the student of the phase that ends there);
an entry's optional "teacher" names the part whose run is its teacher (default: the copied teacher).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import torch

from difflab.config.factory import build_denoiser, build_process
from difflab.distill.straightness import straightness
from difflab.jobs.distill import run_distill
from difflab.jobs.evaluate import evaluate_loaded
from difflab.jobs.generate import generate
from difflab.jobs.runs import LoadedRun, load_run
from difflab.train.checkpoint import load_weights, newest_intact_checkpoint
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write_json, atomic_write_text
from difflab.viz import save_image_grid

TEACHER_NFE = (1, 2, 4, 10, 20)
#: the teacher's solvers (1 NFE per step each); at 1 NFE they are all the one Euler / DDIM step
TEACHER_SOLVERS = ("euler", "dpmpp_2m", "unipc")
PHASE = 110  # optimizer steps per progressive phase
TRAIN = ["train.batch_size=64", "train.lr=3e-4", "train.warmup_steps=20", "train.sample_every=0",
         "train.log_every=20"]
METHODS = {
    # 16 teacher DDIM steps -> 8 -> 4 -> 2 -> 1 student steps, PHASE steps a phase; the 4-, 2- and 1-step
    # students are the checkpoints at the ends of phases 2, 3 and 4
    "progressive": {"method": "progressive", "steps": 4 * PHASE,
                    "set": [*TRAIN, "distill.options.start_steps=16", "distill.options.final_steps=1",
                            f"distill.options.phase_steps={PHASE}", f"train.ckpt_every={PHASE}", "train.keep_last=null"],
                    "rows": [("4 steps", 4, 2 * PHASE, 4), ("2 steps", 2, 3 * PHASE, 2), ("1 step", 1, 4 * PHASE, 1)]},
    # 2-rectified flow on 2000 pairs of the teacher's UniPC 10-step ODE; Euler at 1, 2, 4 steps
    "reflow": {"method": "reflow", "steps": 300,
               "set": [*TRAIN, "distill.options.pairs=2000", "distill.options.pair_sampler=unipc",
                       "distill.options.pair_steps=10", "train.ckpt_every=300"],
               "rows": [("4 steps", 4, None, 4), ("2 steps", 2, None, 2), ("1 step", 1, None, 1)]},
    # consistency distillation (H7): N = 18 Karras levels, Heun teacher steps, EMA target mu = 0.95, pseudo-Huber;
    # the multistep consistency sampler on the run's Karras grid from sigma~ = 80 (second level 0.8)
    "consistency": {"method": "consistency", "steps": 600,
                    "set": [*TRAIN, "distill.options.steps=18", "distill.options.target_ema=0.95",
                            "train.ckpt_every=200"],
                    "rows": [("4 steps", 4, None, 4), ("2 steps", 2, None, 2), ("1 step", 1, None, 1)]},
    # Liu et al.'s one-step distillation of that 2-rectified flow: 2000 pairs of its own Euler 4-step ODE,
    # trained at t = 1 only (run after "reflow": its teacher is OUT/reflow)
    "reflow-1step": {"method": "reflow", "steps": 200, "teacher": "reflow",
                     "set": [*TRAIN, "distill.options.pairs=2000", "distill.options.pair_sampler=euler",
                             "distill.options.pair_steps=4", "distill.options.pair_schedule=uniform",
                             "distill.options.one_step=true", "train.ckpt_every=200"],
                     "rows": [("1 step", 1, None, 1)]},
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


def score(loaded: LoadedRun, n: int, sampler: str | None, steps: int, schedule: str | None) -> dict:
    start = time.perf_counter()
    report = evaluate_loaded(loaded, n=n, sampler=sampler, steps=steps, schedule=schedule, seed=0,
                             metrics=["fdd", "class_coverage"], batch_size=500)
    st = report.settings
    return {"sampler": st["sampler"], "schedule": st["schedule"], "steps": steps, "nfe": st["nfe"],
            "fdd": report.results["fdd"], "class_coverage": report.results["class_coverage"],
            "checkpoint": str(loaded.checkpoint), "seconds": time.perf_counter() - start}


def teacher_part(teacher: Path, n: int) -> dict:
    loaded = load_run(teacher)
    rows = []
    for nfe in TEACHER_NFE:
        for solver in TEACHER_SOLVERS[:1] if nfe == 1 else TEACHER_SOLVERS:
            row = score(loaded, n, solver, nfe, "default")
            rows.append({"label": f"{solver}, {nfe} steps", **row})
            print(f"teacher {solver} {nfe}: FDD {row['fdd']:.3f}", file=sys.stderr)
    return {"rows": rows}


def method_part(name: str, teacher: Path, out: Path, n: int) -> dict:
    entry = METHODS[name]
    run = out / name
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    resume = newest_intact_checkpoint(run)[0] is not None
    teacher = out / entry["teacher"] if "teacher" in entry else teacher
    result = run_distill(None if resume else teacher, run, method=entry["method"], resume=resume,
                         steps=None if resume else entry["steps"], overrides=[] if resume else entry["set"])
    cost = {"steps": result.step, "train_seconds": result.elapsed, "wall_seconds": time.perf_counter() - start_wall,
            "cpu_seconds": time.process_time() - start_cpu}
    loaded = load_run(run)
    rows = []
    for label, _nfe, step, steps in entry["rows"]:
        row = score(at_checkpoint(loaded, run, step), n, None, steps, None)
        rows.append({"label": label, **row})
        print(f"{name} {label}: FDD {row['fdd']:.3f} (nfe {row['nfe']})", file=sys.stderr)
    return {"rows": rows, "cost": cost, "set": entry["set"]}


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
        best = {}
        for r in d["rows"]:
            if name == "teacher":
                best.setdefault(r["nfe"], r)
                if r["fdd"] < best[r["nfe"]]["fdd"]:
                    best[r["nfe"]] = r
        for r in d["rows"]:
            mark = " (best)" if name == "teacher" and best[r["nfe"]] is r and r["nfe"] > 1 else ""
            lines.append(f"| {name} | {r['sampler']} ({r['schedule']}) | {r['nfe']} | {r['fdd']:.3f}{mark} | "
                         f"{r['class_coverage']:.2f} | {cost_text if r is d['rows'][0] else ''} |")
    table = "\n".join(lines) + "\n"
    if bent is not None:
        r = bent["rows"]
        table += (f"\nStraightness (Liu et al. 2022, eq. 8; {bent['n']} noises, {bent['steps']} Euler steps): teacher "
                  f"(1-rectified) {r['teacher']['mean']:.4f} +- {r['teacher']['se']:.4f}, reflow student (2-rectified) "
                  f"{r['reflow']['mean']:.4f} +- {r['reflow']['se']:.4f}\n")
    if figure is not None:
        picture(out, figure, data)
    return table


def picture(out: Path, figure: Path, data: dict) -> None:
    """One row of 10 samples (seed 0) per model and NFE: the teacher's best solver, then each method."""
    rows, captions = [], []
    teacher = load_run(out / "teacher")
    for nfe in (1, 2, 4):
        cands = [r for r in data.get("teacher", {}).get("rows", []) if r["nfe"] == nfe]
        if cands:
            r = min(cands, key=lambda r: r["fdd"])
            rows.append(generate(teacher.model, teacher.meta, 10, sampler=r["sampler"], steps=nfe, seed=0,
                                 schedule="default").x)
            captions.append(f"teacher {r['sampler']} {nfe}")
    for name in (p for p in data if p != "teacher"):
        loaded = load_run(out / name)
        for _label, nfe, step, steps in METHODS[name]["rows"][::-1]:
            m = at_checkpoint(loaded, out / name, step)
            s = m.config.sample
            rows.append(generate(m.model, m.meta, 10, sampler=s.sampler, steps=steps, seed=0, schedule=s.schedule,
                                 options=s.options, schedule_options=s.schedule_options).x)
            captions.append(f"{name} {nfe}")
    caption = "rows: " + "; ".join(captions) + " (NFE)"
    save_image_grid(torch.cat(rows), figure, nrow=10, scale=8, caption=caption)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, default=Path("/work/runs/digits"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", nargs="*", default=[], help="teacher and/or METHODS names to run")
    parser.add_argument("--n", type=int, default=1000, help="samples per row")
    parser.add_argument("--report", type=Path, nargs="?", const=None, default=False,
                        help="merge OUT/*.json into the table (and write the picture at this path)")
    parser.add_argument("--markdown", type=Path, help="write the table here")
    a = parser.parse_args(argv)
    torch.manual_seed(0)
    for part in a.parts:
        if part not in ("teacher", "straightness") and part not in METHODS:
            raise DifflabError(f"unknown part {part!r}; parts are: teacher, straightness, {', '.join(METHODS)}")
        teacher = copy_teacher(a.teacher, a.out / "teacher")
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        if part == "straightness":
            d = straightness_part(a.out)
        else:
            d = teacher_part(teacher, a.n) if part == "teacher" else method_part(part, teacher, a.out, a.n)
        d.setdefault("n", a.n)
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
