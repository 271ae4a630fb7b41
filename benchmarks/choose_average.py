"""Choose a checkpoint average on selection seeds, then score the choice on other seeds.

    python benchmarks/choose_average.py RUN --out DIR --from 3000 --from 5000 [--half-life 500 ...]
        [--weighting equal --weighting steps] --select-seeds 1000 1001 1002 --score-seeds 0 1 2 3 4
        --steps 4 [--score-steps 2] [--n 1000 --sampler consistency --schedule uniform --schedule-option K=V]
        [--metrics fdd,class_coverage] [--json DIR/choice.json] [--markdown DIR/choice.md]

Every candidate (window start x half-life x weighting; `--half-life 0` = none) is written by `difflab
average` (difflab.jobs.average.run_average) into DIR/<candidate>, then evaluated on every selection seed
(difflab.jobs.evaluate.evaluate_loaded, the first metric, lower is better); the candidate of lowest mean is
scored on the scoring seeds, which the choice never saw (LCSC, Liu et al. 2025, searches the coefficients by
FID on the metric it reports; a choice on the scoring seeds would fit their noise). A candidate folder that
exists with the same receipt is reused, so an interrupted search goes on where it stopped.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import torch

from difflab.config.loader import parse_options
from difflab.jobs.average import RECEIPT, choose_checkpoints, run_average
from difflab.jobs.evaluate import evaluate_loaded
from difflab.jobs.runs import load_run
from difflab.train.checkpoint import checkpoint_step
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write_json, atomic_write_text


def candidate_name(first: int, half_life: float | None, weighting: str) -> str:
    return f"from{first}-{weighting}" + ("" if half_life is None else f"-h{half_life:g}")


def make_candidate(run: Path, folder: Path, first: int, half_life: float | None, weighting: str) -> dict:
    """The averaged run of one candidate (written unless the folder holds this very candidate); its receipt."""
    receipt = folder / RECEIPT
    if receipt.is_file():
        got = json.loads(receipt.read_text())
        steps = [checkpoint_step(c) for c in choose_checkpoints(run, first=first)]  # --from need not be a step
        if (got["checkpoints"], got.get("half_life"), got.get("weighting", "equal")) != (steps, half_life, weighting):
            raise DifflabError(f"{folder} holds another average ({got}); remove it or choose another --out")
        return got
    run_average(run, folder, first=first, weighting=weighting, half_life=half_life, log=lambda _: None)
    return json.loads(receipt.read_text())


def scores(folder: Path, seeds: list[int], steps: int, a, options: dict) -> dict:
    """Each metric's value per seed, and the mean and standard deviation of each."""
    loaded = load_run(folder)
    runs = [evaluate_loaded(loaded, n=a.n, sampler=a.sampler, steps=steps, schedule=a.schedule, seed=s,
                            metrics=a.metrics, schedule_options=options) for s in seeds]
    out = {"steps": steps, "seeds": seeds, "nfe": runs[0].settings["nfe"]}
    for m in a.metrics:
        values = [r.results[m] for r in runs]
        out[m] = {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else None,
                  "per_seed": values}
    return out


def markdown(result: dict, metric: str) -> str:
    lines = [f"Candidates on the selection seeds {result['select_seeds']} ({metric}, {result['steps']} steps, mean +- sd):",
             "", "| candidate | checkpoints | coefficients | mean | per seed |", "|---|---|---|---|---|"]
    for c in result["candidates"]:
        s = c["select"][metric]
        mark = "**" if c["name"] == result["chosen"] else ""
        coefficients = ", ".join(f"{w:.3f}" for w in c["receipt"]["coefficients"])
        lines.append(f"| {mark}{c['name']}{mark} | {c['receipt']['checkpoints'][0]}..{c['receipt']['checkpoints'][-1]} "
                     f"({len(c['receipt']['checkpoints'])}) | {coefficients} | {mark}{s['mean']:.3f} +- {s['sd'] or 0:.2f}"
                     f"{mark} | {', '.join(f'{v:.2f}' for v in s['per_seed'])} |")
    lines += ["", f"The choice, {result['chosen']}, on the scoring seeds {result['score_seeds']}:", "",
              "| steps | NFE | " + " | ".join(result["metrics"]) + " | per seed |", "|---|---|" + "---|" * len(result["metrics"]) + "---|"]
    for s in result["score"]:
        cells = [f"{s[m]['mean']:.3f} +- {s[m]['sd'] or 0:.2f}" for m in result["metrics"]]
        lines.append(f"| {s['steps']} | {s['nfe']} | " + " | ".join(cells) + f" | {', '.join(f'{v:.2f}' for v in s[metric]['per_seed'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="folder of the candidate runs")
    parser.add_argument("--from", dest="first", type=int, action="append", required=True, help="window start (repeatable)")
    parser.add_argument("--half-life", type=float, action="append", help="in steps, 0 = none (repeatable; default 0)")
    parser.add_argument("--weighting", action="append", choices=["equal", "steps"], help="(repeatable; default equal)")
    parser.add_argument("--select-seeds", type=int, nargs="+", required=True)
    parser.add_argument("--score-seeds", type=int, nargs="+", required=True)
    parser.add_argument("--steps", type=int, required=True, help="sampler steps of the choice")
    parser.add_argument("--score-steps", type=int, nargs="*", default=[], help="more step counts to score the choice at")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--sampler", default=None)
    parser.add_argument("--schedule", default=None)
    parser.add_argument("--schedule-option", action="append", default=[], help="KEY=VALUE of the grid")
    parser.add_argument("--metrics", default="fdd,class_coverage", help="comma-separated; the first one chooses")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    a = parser.parse_args(argv)
    a.metrics = [m.strip() for m in a.metrics.split(",") if m.strip()]
    if set(a.select_seeds) & set(a.score_seeds):
        parser.error(f"the selection and scoring seeds overlap ({sorted(set(a.select_seeds) & set(a.score_seeds))}): "
                     "a choice must not see the seeds it is scored on")
    torch.set_num_threads(1)
    options = parse_options(a.schedule_option, "--schedule-option")
    start = time.perf_counter()
    metric, candidates = a.metrics[0], []
    for first, h, weighting in itertools.product(a.first, a.half_life or [0.0], a.weighting or ["equal"]):
        half_life = h or None
        name = candidate_name(first, half_life, weighting)
        receipt = make_candidate(a.run, a.out / name, first, half_life, weighting)
        select = scores(a.out / name, a.select_seeds, a.steps, a, options)
        candidates.append({"name": name, "receipt": receipt, "select": select})
        print(f"{name}: {metric} {select[metric]['mean']:.3f} on seeds {a.select_seeds}", flush=True)
    chosen = min(candidates, key=lambda c: c["select"][metric]["mean"])
    score = [scores(a.out / chosen["name"], a.score_seeds, k, a, options) for k in [a.steps, *a.score_steps]]
    result = {"run": str(a.run), "select_seeds": a.select_seeds, "score_seeds": a.score_seeds, "steps": a.steps,
              "n": a.n, "sampler": a.sampler, "schedule": a.schedule, "schedule_options": options,
              "metrics": a.metrics, "candidates": candidates, "chosen": chosen["name"], "score": score,
              "seconds": time.perf_counter() - start}
    print(f"chosen {chosen['name']}: {metric} {score[0][metric]['mean']:.3f} +- {score[0][metric]['sd'] or 0:.2f} "
          f"on seeds {a.score_seeds}")
    if a.json:
        atomic_write_json(a.json, result)
    if a.markdown:
        atomic_write_text(a.markdown, markdown(result, metric))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
