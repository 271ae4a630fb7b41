"""Sample quality of a digits run per sampler and NFE (issue 5; the table of docs/benchmarks.md).

    python benchmarks/digits_eval.py runs/digits --n 1000 --markdown outputs/digits_eval.md \
        --json outputs/digits_eval.json

Each row draws n samples with one (sampler, steps) pair and scores them with `difflab eval`'s digit metrics
(difflab.jobs.evaluate.evaluate_loaded) against the training split: FDD, class coverage, mean classifier
confidence, precision and recall in the digit classifier's feature space, and the memorization ratio
(median nearest-neighbour distance of the samples to the training set over that of the held-out test
images; < 1 = closer to training images than fresh data is). The floor row scores the test split itself
the same way (difflab.jobs.evaluate.evaluate_split); it has n = the test split's size, and FDD is biased
upwards at small n, so compare rows of equal n with each other and the floor as a guide.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch

from difflab.jobs.evaluate import EvalReport, evaluate_loaded, evaluate_split
from difflab.jobs.runs import load_run, torch_device
from difflab.metrics import data_kind
from difflab.sampling import DEFAULT_SAMPLER
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write_json, atomic_write_text

#: (sampler, steps): the default sampler at 5/10/20 NFE, first-order Euler, DPM-Solver++(2M), and two
#: stochastic samplers (ancestral DDPM; DPM-Solver++(2M) SDE; Euler-Maruyama needs t_max < 1 under flow)
ROWS = [(DEFAULT_SAMPLER, 5, {}), (DEFAULT_SAMPLER, 10, {}), (DEFAULT_SAMPLER, 20, {}), ("euler", 10, {}),
        ("euler", 50, {}), ("dpmpp_2m", 10, {}), ("ddpm", 50, {}), ("dpmpp_2m_sde", 20, {})]
COLUMNS = [("FDD", "fdd", ".3f"), ("coverage", "class_coverage", ".2f"), ("confidence", "mean_confidence", ".3f"),
           ("precision", "precision", ".3f"), ("recall", "recall", ".3f"), ("memorization", "memorization_ratio", ".3f")]


def parse_rows(text: str) -> list[tuple[str, int, dict]]:
    """'unipc:5,euler:50,adaptive:1:rtol=1e-5:atol=1e-5' -> [('unipc', 5, {}), ('euler', 50, {}),
    ('adaptive', 1, {'rtol': 1e-05, 'atol': 1e-05})]: sampler:steps, then the sampler's own options."""
    rows = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, steps, *pairs = item.split(":")
        if not steps.isdigit() or not all("=" in p for p in pairs):
            raise argparse.ArgumentTypeError(f"a row is sampler:steps[:key=value...] (e.g. euler:50); got {item!r}")
        options = {k: float(v) if k in ("rtol", "atol", "eta") else v for k, v in (p.split("=", 1) for p in pairs)}
        rows.append((name, int(steps), options))
    return rows


def markdown(rows: list[dict], floor: EvalReport, header: str) -> str:
    """The table: one line per (sampler, NFE), then the floor row."""
    head = ["sampler", "steps", "NFE", *(c[0] for c in COLUMNS), "seconds"]
    lines = [header, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        res = r["results"]
        cells = [r["sampler"], str(r["steps"]), str(r["nfe"]), *(format(res[k], f) for _, k, f in COLUMNS),
                 f"{r['seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    res = floor.results
    cells = [f"test split (n={floor.settings['n']})", "", "", *(format(res[k], f) for _, k, f in COLUMNS), ""]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a digits run folder (difflab train digits)")
    parser.add_argument("--n", type=int, default=1000, help="samples per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--rows", type=parse_rows, default=ROWS, help="sampler:steps,... (default: 8 rows)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    parser.add_argument("--markdown", type=Path, help="write the table as markdown")
    parser.add_argument("--json", type=Path, help="write every row's settings and results as JSON")
    a = parser.parse_args(argv)
    device = torch_device(a.device)
    loaded = load_run(a.run, ema=not a.no_ema, device=device)
    if data_kind(loaded.meta.data_shape, loaded.config.data.name) != "digits":
        raise DifflabError(f"{a.run} was not trained on digits; score it with `difflab eval {a.run}`")
    rows = []
    for sampler, steps, options in a.rows:
        start = time.perf_counter()
        report = evaluate_loaded(loaded, n=a.n, sampler=sampler, steps=steps, schedule="default", seed=a.seed,
                                 batch_size=a.batch_size, device=device, progress=True, options=options)
        seconds = time.perf_counter() - start
        st = report.settings
        rows.append({"sampler": st["sampler"] + "".join(f" {k}={v}" for k, v in options.items()),
                     "schedule": st["schedule"], "steps": steps, "nfe": st["nfe"],
                     "seconds": seconds, "results": report.results})
        print(f"{st['sampler']} {steps} steps: FDD {report.results['fdd']:.3f} ({seconds:.0f} s)", file=sys.stderr)
    floor = evaluate_split(loaded, batch_size=a.batch_size, seed=a.seed, device=device)
    header = (f"Digits sample quality: {loaded.checkpoint} ({'raw' if a.no_ema else 'EMA'} weights), n={a.n} "
              f"samples per row, seed {a.seed}, each sampler on its default grid; {device} "
              f"({platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads), {date.today()}. Reference: {floor.settings['reference']}.")
    table = markdown(rows, floor, header)
    print(table)
    if a.markdown:
        atomic_write_text(a.markdown, table)
    if a.json:
        payload = {"run": str(loaded.checkpoint), "n": a.n, "seed": a.seed, "ema": not a.no_ema, "rows": rows,
                   "floor": {"settings": floor.settings, "results": floor.results}}
        atomic_write_json(a.json, payload)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except DifflabError as e:
        raise SystemExit(f"error: {e}") from None
