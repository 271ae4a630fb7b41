"""Guidance measurements (issue 6): how much conditioning each guidance strength buys, and what it costs.

Seed 000: classifier-free guidance with "higher s, stronger conditioning but less diversity"; seed 001/002:
classifier guidance adds s grad log p(y | x_t). Measured on trained runs:

    python benchmarks/guidance.py cfg-sweep RUNS/digits-cond --ws 0 1 1.5 2 3 4 6 8 --n-per-class 50 \
        --plot cfg.png --markdown cfg.md --json cfg.json
    python benchmarks/guidance.py classifier-guidance RUNS/digits --scales 0 1 2 4 8 \
        --cfg-run RUNS/digits-cond --w 2 --markdown cg.md
    python benchmarks/guidance.py shapes RUNS/shapes-text --n 500 --ws 1 3 5 --markdown shapes.md

Digits are judged by the deterministic digit classifier (difflab.metrics.load_digit_classifier): accuracy
(argmax == requested class), p(requested), the class-conditional FDD (Fréchet distance per class to the
train split, averaged), the pooled FDD, and the mean pixel distance between samples of one class. Shapes
are judged by the exact attribute readout, for captions of the held-out and of the train (shape, colour)
pairs. Every setting draws from the same per-sample seeds (seed + i), so rows differ only by guidance.
w = 1 is plain conditional sampling, w = 0 unconditional (the learned null condition).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from difflab.data.digits import load_digits
from difflab.data.shapes import COLOURS, SHAPES, Shapes
from difflab.jobs.generate import generate
from difflab.jobs.runs import LoadedRun, load_run, torch_device
from difflab.metrics import FeatureStats, frechet_distance_from_stats, load_digit_classifier
from difflab.metrics.guidance import (
    class_accuracy,
    class_conditional_fdd,
    mean_pairwise_distance,
    requested_probability,
    shape_accuracy,
)
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write_text
from difflab.viz.io import save_figure

console = Console(stderr=True)


@dataclass
class Sampling:
    """How every setting is sampled; None fields take the run's config.sample values."""

    sampler: str | None
    steps: int | None
    schedule: str | None
    seed: int
    batch_size: int
    device: str
    ema: bool

    def resolved(self, loaded: LoadedRun) -> Sampling:
        s = loaded.config.sample
        return Sampling(self.sampler or s.sampler, self.steps or s.steps, self.schedule or s.schedule,
                        self.seed, self.batch_size, self.device, self.ema)


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def draw(loaded: LoadedRun, n: int, opts: Sampling, progress: Progress, what: str, *, labels=None,
         prompts=None, **guide) -> tuple[torch.Tensor, int, float]:
    """n samples in [-1, 1] in batches, sample i from seed opts.seed + i; (x, NFE per sample, seconds)."""
    task = progress.add_task(what, total=n)
    xs, nfe, start = [], 0, time.perf_counter()
    for lo in range(0, n, opts.batch_size):
        hi = min(n, lo + opts.batch_size)
        result = generate(loaded.model, loaded.meta, hi - lo, sampler=opts.sampler, steps=opts.steps,
                          schedule=opts.schedule, seed=list(range(opts.seed + lo, opts.seed + hi)),
                          labels=None if labels is None else labels[lo:hi].tolist(),
                          prompts=None if prompts is None else prompts[lo:hi],
                          text_encoder=loaded.text_encoder, device=opts.device, **guide)
        xs.append(result.x.clamp(-1, 1).cpu())
        nfe = result.nfe
        progress.advance(task, hi - lo)
    return torch.cat(xs), nfe, time.perf_counter() - start


# ---- digits: classifier-free and classifier guidance ------------------------------------------------
class DigitJudge:
    """The digit classifier and its features of the train split (the reference of both FDDs)."""

    def __init__(self, device: str):
        self.net = load_digit_classifier(device=device)
        x, self.real_labels = load_digits("train")
        self.real_features = self.net.features(x).cpu()
        self.real_stats = FeatureStats.from_features(self.real_features)

    def score(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        features, logits = self.net.features_and_logits(x)
        features, logits = features.cpu(), logits.cpu()
        cfdd = class_conditional_fdd(features, labels, self.real_features, self.real_labels)
        fdd = frechet_distance_from_stats(FeatureStats.from_features(features), self.real_stats)
        p_requested = requested_probability(logits, labels)
        return {"accuracy": class_accuracy(logits, labels), "p_requested": p_requested,
                "class_fdd": cfdd.mean, "fdd": fdd, "distance": mean_pairwise_distance(x, labels)}


def check_digits_run(loaded: LoadedRun, run: Path, conditional: bool) -> None:
    if loaded.config.data.name != "digits":
        raise DifflabError(f"{run} was trained on {loaded.config.data.name!r}, not digits; give a digits run")
    if conditional and loaded.meta.num_classes is None:
        raise DifflabError(f"{run} is unconditional; classifier-free guidance needs a class-conditional run "
                           "(train the digits-cond preset)")


def digit_row(judge: DigitJudge, x, labels, setting: str, run: Path, nfe: int, seconds: float, **key) -> dict:
    return {"setting": setting, "run": str(run), **key, **judge.score(x, labels), "nfe": nfe,
            "seconds": round(seconds, 2)}


DATA_SETTING = "data (test split)"


def data_row(judge: DigitJudge) -> dict:
    """The test split scored like samples: what real, held-out digits reach on every column."""
    x, y = load_digits("test")
    return {"setting": DATA_SETTING, "run": "", **judge.score(x, y), "nfe": None, "seconds": None}


def cfg_sweep(run: Path, ws: list[float], n_per_class: int, opts: Sampling) -> tuple[list[dict], dict]:
    """One row per guidance weight w: n_per_class samples of each class with CFG w, scored by DigitJudge."""
    loaded = load_run(run, ema=opts.ema, device=opts.device)
    check_digits_run(loaded, run, conditional=True)
    opts = opts.resolved(loaded)
    judge = DigitJudge(opts.device)
    labels = torch.arange(loaded.meta.num_classes).repeat_interleave(n_per_class)
    rows = []
    with progress_bar() as progress:
        for w in ws:
            x, nfe, sec = draw(loaded, len(labels), opts, progress, f"CFG w={w:g}", labels=labels, guidance=w)
            rows.append(digit_row(judge, x, labels, f"CFG w={w:g}", run, nfe, sec, w=w))
    rows.append(data_row(judge))
    return rows, {"run": str(run), "checkpoint": str(loaded.checkpoint), "n_per_class": n_per_class,
                  **asdict(opts)}


def classifier_guidance(run: Path, scales: list[float], n_per_class: int, opts: Sampling,
                        cfg_run: Path | None = None, w: float | None = None) -> tuple[list[dict], dict]:
    """One row per classifier scale s on an unconditional run with RUN/classifier; optionally a CFG row."""
    from difflab.jobs.classifier import load_run_classifier

    loaded = load_run(run, ema=opts.ema, device=opts.device)
    check_digits_run(loaded, run, conditional=False)
    opts = opts.resolved(loaded)
    classifier = load_run_classifier(run, device=opts.device, ema=opts.ema)
    judge = DigitJudge(opts.device)
    labels = torch.arange(judge.net.num_classes).repeat_interleave(n_per_class)
    rows = []
    with progress_bar() as progress:
        for s in scales:
            # s = 0 is plain unconditional sampling: generate() takes no target labels without guidance
            guide = {"labels": labels, "classifier": classifier, "classifier_scale": s} if s != 0 else {}
            x, nfe, sec = draw(loaded, len(labels), opts, progress, f"classifier s={s:g}", **guide)
            rows.append(digit_row(judge, x, labels, f"classifier s={s:g}", run, nfe, sec, scale=s))
        if cfg_run is not None:
            other = load_run(cfg_run, ema=opts.ema, device=opts.device)
            check_digits_run(other, cfg_run, conditional=True)
            x, nfe, sec = draw(other, len(labels), opts, progress, f"CFG w={w:g}", labels=labels, guidance=w)
            rows.append(digit_row(judge, x, labels, f"CFG w={w:g}", cfg_run, nfe, sec, w=w))
    rows.append(data_row(judge))
    return rows, {"run": str(run), "checkpoint": str(loaded.checkpoint), "n_per_class": n_per_class,
                  "cfg_run": None if cfg_run is None else str(cfg_run), **asdict(opts)}


DIGIT_COLUMNS = [("setting", "setting", "{}"), ("accuracy", "accuracy", "{:.3f}"),
                 ("p_requested", "p(requested)", "{:.3f}"), ("class_fdd", "class-cond. FDD", "{:.2f}"),
                 ("fdd", "FDD", "{:.2f}"), ("distance", "within-class distance", "{:.3f}"),
                 ("nfe", "NFE", "{}"), ("seconds", "seconds", "{}")]


def plot_tradeoff(rows: list[dict], key: str, name: str, path: Path) -> None:
    """Left: accuracy and within-class distance against the guidance strength; right: accuracy against
    class-conditional FDD, each point labelled with its strength (other settings as single marked points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = [r for r in rows if r.get(key) is not None]
    others = [r for r in rows if r.get(key) is None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    s = [r[key] for r in curve]
    left.plot(s, [r["accuracy"] for r in curve], "o-", color="C0")
    left.set_xlabel(f"guidance {name}")
    left.set_ylabel("accuracy (classifier agrees with the request)", color="C0")
    left.set_ylim(0, 1.02)
    twin = left.twinx()
    twin.plot(s, [r["distance"] for r in curve], "s--", color="C1")
    twin.set_ylabel("mean within-class pixel distance (diversity)", color="C1")
    for r in others:
        if r["setting"] == DATA_SETTING:
            twin.axhline(r["distance"], color="C1", linestyle=":", label=f"{DATA_SETTING} distance")
            twin.legend(fontsize=8, loc="lower right")
    left.set_title(f"conditioning and diversity against {name}")
    right.plot([r["class_fdd"] for r in curve], [r["accuracy"] for r in curve], "o-", color="C0")
    for r in curve:
        right.annotate(f"{name}={r[key]:g}", (r["class_fdd"], r["accuracy"]), textcoords="offset points",
                       xytext=(4, 4), fontsize=8)
    for i, r in enumerate(others):
        right.plot(r["class_fdd"], r["accuracy"], "*", markersize=12, color=f"C{i + 2}", label=r["setting"])
    if others:
        right.legend(fontsize=8)
    right.set_xscale("log")  # the unguided end (w = 0, s = 0) sits an order of magnitude away
    right.set_xlabel("class-conditional FDD, log scale (lower: closer to real digits of the class)")
    right.set_ylabel("accuracy")
    right.set_ylim(0, 1.02)
    right.grid(True, alpha=0.3)
    save_figure(fig, path)


# ---- shapes: text guidance on held-out (shape, colour) pairs ----------------------------------------
def shapes(run: Path, n: int, ws: list[float], opts: Sampling) -> tuple[list[dict], dict]:
    """Per guidance weight and combo set (held-out, train): attribute accuracies of n captioned samples."""
    loaded = load_run(run, ema=opts.ema, device=opts.device)
    if loaded.config.data.name != "shapes" or loaded.text_encoder is None:
        raise DifflabError(f"{run} is not a text-conditional shapes run; train the shapes-text preset")
    opts = opts.resolved(loaded)
    rows = []
    with progress_bar() as progress:
        for combos in ("holdout", "train"):
            data = Shapes(n, seed=opts.seed, size=loaded.meta.data_shape[-1], combos=combos, jitter=0)
            captions = [data.caption(i) for i in range(n)]
            for w in ws:
                x, nfe, sec = draw(loaded, n, opts, progress, f"{combos} w={w:g}", prompts=captions,
                                   guidance=w)
                per_combo = {}
                for s, c in data.combos.tolist():
                    pick = (data.attributes[:, 0] == s) & (data.attributes[:, 1] == c)
                    if bool(pick.any()):
                        acc = shape_accuracy(x[pick], data.attributes[pick])
                        per_combo[f"{COLOURS[c]} {SHAPES[s]}"] = acc["shape_colour"]
                rows.append({"combos": combos, "w": w, **shape_accuracy(x, data.attributes), "nfe": nfe,
                             "seconds": round(sec, 2), "per_combo": per_combo})
    return rows, {"run": str(run), "checkpoint": str(loaded.checkpoint), "n": n, **asdict(opts)}


SHAPE_COLUMNS = [("combos", "pairs", "{}"), ("w", "w", "{:g}"), ("shape", "shape", "{:.3f}"),
                 ("colour", "colour", "{:.3f}"), ("shape_colour", "shape+colour", "{:.3f}"),
                 ("position", "position", "{:.3f}"), ("size", "size", "{:.3f}"),
                 ("all", "all four", "{:.3f}"), ("nfe", "NFE", "{}"), ("seconds", "seconds", "{}")]


def plot_shapes(rows: list[dict], path: Path) -> None:
    """Attribute accuracy against w: held-out pairs solid, train pairs dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
    for i, key in enumerate(("shape", "colour", "shape_colour", "all")):
        for combos, style in (("holdout", "o-"), ("train", "s--")):
            sub = [r for r in rows if r["combos"] == combos]
            ax.plot([r["w"] for r in sub], [r[key] for r in sub], style, color=f"C{i}",
                    label=f"{key} ({combos})")
    ax.set_xlabel("guidance w")
    ax.set_ylabel("accuracy (exact readout)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(True, alpha=0.3)
    save_figure(fig, path)


# ---- reports ----------------------------------------------------------------------------------------
def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + " --- |" * len(columns)]
    for r in rows:
        cells = ["" if r.get(k) is None else fmt.format(r[k]) for k, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine(device: str) -> str:
    where = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {where}, "
            f"torch {torch.__version__}")


def report(title: str, rows: list[dict], settings: dict, columns, notes: str, argv: list[str]) -> str:
    header = (f"## {title}\n\n`python benchmarks/guidance.py {shlex.join(argv)}`  \n"
              f"{time.strftime('%Y-%m-%d %H:%M')}, {machine(settings['device'])}  \n"
              f"run {settings['run']} ({Path(settings['checkpoint']).name}); sampler {settings['sampler']}, "
              f"{settings['steps']} steps, schedule {settings['schedule']}, seeds {settings['seed']} + i "
              "(the same noise for every setting)\n\n")
    return header + markdown_table(rows, columns) + "\n\n" + notes + "\n"


def held_out_table(rows: list[dict]) -> str:
    held = [r for r in rows if r["combos"] == "holdout"]
    names = list(held[0]["per_combo"]) if held else []
    table = [{"w": r["w"], **r["per_combo"]} for r in held]
    return markdown_table(table, [("w", "w", "{:g}")] + [(c, c, "{:.3f}") for c in names])


NOTES = {
    "cfg-sweep": "w = 1 is plain conditional sampling, w = 0 unconditional (the learned null label). FDDs "
                 "use the digit classifier's features against the train split; the class-conditional FDD "
                 "averages the per-class distances. Within-class distance: mean L2 between samples of one "
                 "class in [-1, 1] pixels. The data row scores the test split the same way (fewer samples "
                 "per class).",
    "classifier-guidance": "s = 0 is the unconditional model (accuracy near 0.1 by chance). Columns as in "
                           "the CFG sweep.",
    "shapes": "Held-out pairs were never seen together in training: their shape+colour accuracy measures "
              "compositional generalization. Accuracies come from the exact readout "
              "(difflab.data.shapes.read_attributes). w = 1: no guidance.",
}


def write(path: Path | None, text: str) -> None:
    if path is not None:
        atomic_write_text(path, text)
        console.print(f"wrote {path}")


def parse(argv: list[str]) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--sampler", help="sampler name (default: the run's config)")
    common.add_argument("--steps", type=int, help="sampler steps (default: the run's config)")
    common.add_argument("--schedule", help="time grid (default: the run's config)")
    common.add_argument("--seed", type=int, default=0, help="sample i uses seed + i in every setting")
    common.add_argument("--batch-size", type=int, default=500, help="samples per generate call")
    common.add_argument("--device", help="torch device (default: cuda when available)")
    common.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    common.add_argument("--markdown", type=Path, help="write the table as markdown")
    common.add_argument("--json", type=Path, help="write the settings and rows as JSON")
    common.add_argument("--plot", type=Path, help="write the figure (PNG)")
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("cfg-sweep", parents=[common], help="classifier-free guidance, class-conditional run")
    p.add_argument("run", type=Path)
    p.add_argument("--ws", nargs="+", type=float, default=[0, 1, 1.5, 2, 3, 4, 6, 8])
    p.add_argument("--n-per-class", type=int, default=50)
    p = sub.add_parser("classifier-guidance", parents=[common], help="classifier guidance, unconditional run")
    p.add_argument("run", type=Path)
    p.add_argument("--scales", nargs="+", type=float, default=[0, 1, 2, 4, 8])
    p.add_argument("--n-per-class", type=int, default=50)
    p.add_argument("--cfg-run", type=Path, help="a class-conditional run to add one CFG row from")
    p.add_argument("--w", type=float, help="the CFG weight of that row")
    p = sub.add_parser("shapes", parents=[common], help="text guidance on held-out shape/colour pairs")
    p.add_argument("run", type=Path)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--ws", nargs="+", type=float, default=[1, 3, 5])
    return parser.parse_args(argv)


def measure(a: argparse.Namespace, argv: list[str]) -> tuple[str, list[dict], dict]:
    """Run the subcommand; (markdown report, rows, settings). Writes the figure when --plot is given."""
    opts = Sampling(a.sampler, a.steps, a.schedule, a.seed, a.batch_size, torch_device(a.device),
                    ema=not a.no_ema)
    if a.batch_size < 1 or getattr(a, "n_per_class", 2) < 2 or getattr(a, "n", 2) < 2:
        raise DifflabError("--batch-size must be >= 1 and --n / --n-per-class >= 2")
    note = NOTES[a.command]
    if a.command == "cfg-sweep":
        rows, settings = cfg_sweep(a.run, a.ws, a.n_per_class, opts)
        text = report("Classifier-free guidance sweep (digits)", rows, settings, DIGIT_COLUMNS, note, argv)
        if a.plot:
            plot_tradeoff(rows, "w", "w", a.plot)
    elif a.command == "classifier-guidance":
        if (a.cfg_run is None) != (a.w is None):
            raise DifflabError("--cfg-run and --w go together: give both (--cfg-run RUN2 --w 2) or neither")
        rows, settings = classifier_guidance(a.run, a.scales, a.n_per_class, opts, a.cfg_run, a.w)
        text = report("Classifier guidance (digits)", rows, settings, DIGIT_COLUMNS, note, argv)
        if a.plot:
            plot_tradeoff(rows, "scale", "s", a.plot)
    else:
        rows, settings = shapes(a.run, a.n, a.ws, opts)
        text = (report("Text guidance on coloured shapes", rows, settings, SHAPE_COLUMNS, note, argv)
                + "\nShape+colour accuracy per held-out pair:\n\n" + held_out_table(rows) + "\n")
        if a.plot:
            plot_shapes(rows, a.plot)
    return text, rows, settings


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = parse(argv)
    try:
        text, rows, settings = measure(a, argv)
    except DifflabError as e:
        console.print(f"[bold red]error:[/] {e}")
        return 2
    print(text)
    write(a.markdown, text)
    write(a.json, json.dumps({"command": f"python benchmarks/guidance.py {shlex.join(argv)}",
                              "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(settings["device"]),
                              "settings": settings, "rows": rows}, indent=1))
    if a.plot:
        console.print(f"wrote {a.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
