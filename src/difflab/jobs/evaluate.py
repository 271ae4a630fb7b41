"""`difflab eval`: score a trained run's samples, or two image folders, with the metrics that fit the data.

A run is scored against its own training data (the config's data set). Samples are drawn in batches and
streamed into difflab.metrics.evaluate, so memory stays constant in n for the Fréchet distances and
class statistics (precision/recall and the memorization check keep one feature vector per sample, which
is inherent to them). Sample i of an evaluation is drawn from its own generator (EDM's per-sample seeds,
see sample_seeds), so the samples do not depend on --batch-size.

Metrics by data ("auto"): digits (1x8x8 / 1x16x16) -> the digit classifier's FDD, class coverage and
confidence, precision/recall in its feature space and the memorization check against the held-out test
split; RGB images -> FID, KID, IS and precision/recall in Inception space; vectors -> SW2 (with its
finite-sample floor and the ratio to it) and MMD.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from rich import progress as rp
from rich.console import Console
from rich.table import Table
from rich.text import Text
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from difflab.config.factory import build_data
from difflab.config.schema import DataConfig
from difflab.data.datasets import collate
from difflab.jobs.generate import clamp_to_data, generate
from difflab.jobs.runs import LoadedRun, load_run, torch_device
from difflab.metrics.evaluate import METRICS, EvalOptions, check_counts, evaluate, evaluate_folders
from difflab.metrics.folders import ImageFolderBatches
from difflab.metrics.lowdim import sliced_wasserstein2
from difflab.sampling import DEFAULT_SAMPLER, default_schedule
from difflab.utils.errors import DifflabError, check_choice
from difflab.utils.files import atomic_write_json

AUTO = "auto"
DEFAULT_N = 2000
#: short names accepted by --metrics for difflab.metrics names ("confidence" comes with class_coverage)
ALIASES = {"pr": "precision_recall", "coverage": "class_coverage", "confidence": "class_coverage"}
AUTO_METRICS = {
    "digits": ("fdd", "class_coverage", "precision_recall", "memorization"),
    "images": ("fid", "kid", "is", "precision_recall"),
    "vectors": ("sw2", "mmd"),
}
FEATURES = {"digits": "digits", "images": "inception", "vectors": "raw"}
#: metrics a pair of folders cannot give, and why
FOLDER_UNSUPPORTED = {
    "memorization": "needs the training set and a held-out split: evaluate a run (difflab eval RUN)",
    "label_accuracy": "needs the requested class of each sample: evaluate a class-conditional run",
    "clip_score": "needs the caption of each sample: evaluate a text-conditional run",
}
SEED_SPACE = 2**32
REAL_VECTOR_CAP = 10_000  # vector metrics hold every point and MMD is quadratic in them
SW2_FLOOR_REPEATS = 3
STAGES = {"fake": "sampling", "real": "reference", "heldout": "held-out", "train": "training set"}


@dataclass
class EvalReport:
    """What `difflab eval` measured: the settings used, the numbers, and notes (e.g. a skipped metric)."""

    settings: dict
    results: dict[str, float]
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- choosing metrics


def data_kind(shape: Sequence[int], dataset: str | None = None) -> str:
    """'digits', 'images' or 'vectors'. A run names its data set; a folder of grey 8x8 or 16x16 images is digits."""
    shape = tuple(shape)
    if len(shape) == 1:
        return "vectors"
    if dataset is not None:
        return "digits" if dataset == "digits" else "images"
    return "digits" if shape[0] == 1 and shape[1:] in ((8, 8), (16, 16)) else "images"


def resolve_metrics(
    spec: str | Sequence[str], kind: str, *, class_conditional: bool = False, has_train: bool = True
) -> list[str]:
    """'auto' or comma-separated names (difflab.metrics.METRICS or ALIASES) -> metric names, in order.

    'auto' is AUTO_METRICS[kind] (without memorization when there is no training set, as for two folders),
    plus label_accuracy for a class-conditional digits model.
    """
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [s for s in names if s]
    if not names:
        raise DifflabError(f"--metrics is empty; give 'auto' or names from: {', '.join(sorted(METRICS))}")
    out: list[str] = []
    for name in names:
        if name == AUTO:
            out.extend(m for m in AUTO_METRICS[kind] if has_train or m != "memorization")
            if class_conditional and kind == "digits":
                out.append("label_accuracy")
        else:
            out.append(ALIASES.get(name) or check_choice("metric", name, (*METRICS, *ALIASES, AUTO)))
    return list(dict.fromkeys(out))


def sample_seeds(seed: int, start: int, count: int) -> list[int]:
    """Seeds of samples start..start+count-1 of an evaluation seeded `seed`: (h(seed) + i) mod 2**32.

    torch's CPU generator keeps only the low 32 bits of a seed, so seeds must differ there. h is a 32-bit
    hash of the seed (numpy's SeedSequence): the n seeds of one evaluation are distinct, and two evaluation
    seeds share a sample only when their offsets fall within n of each other (probability ~ 2n / 2**32).
    """
    base = int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0])
    return [(base + i) % SEED_SPACE for i in range(start, start + count)]


def _check_settings(n: int, batch_size: int, seed: int) -> None:
    if n < 1:
        raise DifflabError(f"--n must be at least 1; got {n}")
    if batch_size < 1:
        raise DifflabError(f"--batch-size must be at least 1; got {batch_size}")
    if seed < 0:
        raise DifflabError(f"--seed must be a non-negative integer; got {seed}")


# ---------------------------------------------------------------- data of a run


def held_out_config(data: DataConfig) -> DataConfig | None:
    """The held-out split matching a training-data config (digits split=train -> split=test), else None."""
    if data.name == "digits" and data.options.get("split", "train") == "train":
        return replace(data, options={**data.options, "split": "test"})
    return None


def _loader(dataset: Dataset, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)


@dataclass
class RunData:
    """The real data a run is scored against, built from its data config."""

    train: Dataset  # the training data as it is (no random flips)
    reference: Dataset  # what samples are compared with: `train`, or a seeded random subset of it
    heldout: Dataset | None  # the matching held-out split (memorization), when asked for and one exists
    describe: dict[str, str | None]  # the three, in words, for the report's settings


def run_data(data: DataConfig, *, n_real: int | None = None, cap: int | None = None, seed: int = 0,
             heldout: bool = False) -> RunData:
    """Training set, reference (n_real items, default all but at most `cap`) and, if asked, the held-out split."""
    if n_real is not None and n_real < 2:
        raise DifflabError(f"--n-real must be at least 2; got {n_real}")
    train_cfg = replace(data, options={**data.options, "hflip": False}) if "hflip" in data.options else data
    train = build_data(train_cfg)
    size = len(train)
    want = min(size, n_real if n_real is not None else (cap or size))
    reference = train
    if want < size:
        g = torch.Generator().manual_seed(seed)
        reference = Subset(train, torch.randperm(size, generator=g)[:want].sort().values.tolist())
    held_cfg = held_out_config(data) if heldout else None
    held = None if held_cfg is None else build_data(held_cfg)
    describe = {
        "reference": f"{data.name} {data.options} ({want} of {size})",
        "heldout": None if held is None else f"{data.name} {held_cfg.options} ({len(held)})",
    }
    return RunData(train, reference, held, describe)


def sw2_against_floor(fake: Tensor, reference: Tensor, num_projections: int, seed: int) -> tuple[float, float, int]:
    """(model SW2, floor SW2, m), measured at the same sample sizes so that their ratio is unbiased.

    The reference is split at random into A (m = min(n, N // 2) points) and B (the other N - m); the floor is
    SW2(A, B), what a perfect model's m samples reach, and the model's value is SW2(m of its samples, B).
    Both are means over SW2_FLOOR_REPEATS seeded splits. (SW2 against the whole reference would shrink the
    model's value below the floor's: a larger second set has less sampling noise.)
    """
    size, n = reference.shape[0], fake.shape[0]
    m = min(n, size // 2)
    if m < 1:
        raise DifflabError(f"the SW2 floor needs at least 2 reference points; got {size}")
    g = torch.Generator().manual_seed(seed)
    floor, model = [], []
    for _ in range(SW2_FLOOR_REPEATS):
        perm = torch.randperm(size, generator=g)
        rest = reference[perm[m:]]
        floor.append(sliced_wasserstein2(reference[perm[:m]], rest, num_projections, g))
        pick = torch.randperm(n, generator=g)[:m]
        model.append(sliced_wasserstein2(fake[pick].to(reference.dtype), rest, num_projections, g))
    return sum(model) / len(model), sum(floor) / len(floor), m


# ---------------------------------------------------------------- generated samples


def generated_batches(loaded: LoadedRun, n: int, batch_size: int, *, sampler: str, steps: int, schedule: str,
                      seed: int, guidance: float, device: str, prompts: Callable[[int, int], list[str]] | None = None,
                      nfe: list[int] | None = None) -> Iterator[Tensor]:
    """n samples of a run, yielded in batches; sample i has its own seed (sample_seeds), so the samples do
    not depend on batch_size. Class models get class i % K for sample i; text models prompts(start, count).
    The per-sample NFE of each batch is appended to `nfe`."""
    classes = loaded.meta.num_classes
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        labels = (torch.arange(start, start + count) % classes).tolist() if classes is not None else None
        result = generate(
            loaded.model, loaded.meta, count, sampler=sampler, steps=steps, schedule=schedule,
            seed=sample_seeds(seed, start, count), guidance=guidance, labels=labels,
            prompts=prompts(start, count) if prompts is not None else None,
            text_encoder=loaded.text_encoder, device=device,
        )  # fmt: skip
        if nfe is not None:
            nfe.append(result.nfe)
        yield clamp_to_data(result.x) if len(loaded.meta.data_shape) == 3 else result.x


# ---------------------------------------------------------------- progress and output


class RateColumn(rp.ProgressColumn):
    """Samples per second."""

    def render(self, task) -> Text:
        return Text(f"{task.speed:,.1f}/s" if task.speed else "?/s", style="progress.data.speed")


class StageProgress:
    """One rich progress bar per stage (sampling, reference, ...), with rate and ETA: call(stage, done)."""

    def __init__(self, console: Console, totals: dict[str, int | None]):
        self.totals = totals
        self.bar = rp.Progress(
            rp.TextColumn("{task.description:<13}"), rp.BarColumn(), rp.MofNCompleteColumn(), RateColumn(),
            rp.TimeRemainingColumn(), console=console, transient=True,
        )  # fmt: skip
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> StageProgress:
        self.bar.__enter__()
        self("fake", 0)  # sampling comes first: start its clock now; later stages start when they do
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, stage: str, done: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(STAGES.get(stage, stage), total=self.totals.get(stage))
        self.bar.update(self.tasks[stage], completed=done)


def results_table(report: EvalReport) -> Table:
    """The numbers as a rich table (metric, value)."""
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in report.results.items():
        table.add_row(key, str(value) if isinstance(value, int) else f"{value:.4g}")
    return table


# ---------------------------------------------------------------- scoring


def evaluate_loaded(loaded: LoadedRun, *, n: int = DEFAULT_N, sampler: str | None = None, steps: int | None = None,
                    schedule: str | None = None, seed: int = 0, guidance: float | None = None, batch_size: int = 500,
                    metrics: str | Sequence[str] = AUTO, n_real: int | None = None, device: str = "cpu",
                    inception: str | Path | None = None, console: Console | None = None) -> EvalReport:
    """Draw n samples of a loaded run and score them against its training data (see the module docstring).

    sampler / steps / schedule / guidance default to the run's `sample` config. n_real: reference items
    (default: the whole training set; vector data at most REAL_VECTOR_CAP, a seeded random subset).
    console: show progress bars there.
    """
    _check_settings(n, batch_size, seed)
    cfg, meta = loaded.config, loaded.meta
    s = cfg.sample
    sampler, steps, schedule = sampler or s.sampler, steps or s.steps, schedule or s.schedule
    guidance = s.guidance if guidance is None else guidance
    kind = data_kind(meta.data_shape, cfg.data.name)
    names = resolve_metrics(metrics, kind, class_conditional=meta.num_classes is not None)
    if "label_accuracy" in names and meta.num_classes is None:
        raise DifflabError("label_accuracy needs a class-conditional run; this model is unconditional")
    data = run_data(cfg.data, n_real=n_real, cap=REAL_VECTOR_CAP if kind == "vectors" else None, seed=seed,
                    heldout="memorization" in names)
    notes: list[str] = []
    if "memorization" in names and data.heldout is None:
        names.remove("memorization")
        notes.append(f"no held-out split exists for data set {cfg.data.name!r} with options {cfg.data.options}: "
                     "the memorization ratio is skipped")
    ref = data.reference
    real = _loader(ref, batch_size)
    if kind == "vectors":  # the SW2 floor needs the points; vector data is small
        real = torch.cat([b["x"] for b in real]).double()
    prompts = None
    if loaded.text_encoder is not None:  # text models: the captions of the reference items, cycled
        prompts = lambda start, count: [ref[i % len(ref)]["caption"] for i in range(start, start + count)]
    labels = torch.arange(n) % meta.num_classes if "label_accuracy" in names else None
    captions = prompts(0, n) if "clip_score" in names and prompts is not None else None
    o = EvalOptions(features=FEATURES[kind], inception=inception, batch_size=batch_size, seed=seed, device=device)
    check_counts(names, o, n, len(ref), len(data.train), None if labels is None else n)

    nfe: list[int] = []
    fake = generated_batches(loaded, n, batch_size, sampler=sampler, steps=steps, schedule=schedule, seed=seed,
                             guidance=guidance, device=device, prompts=prompts, nfe=nfe)
    kept: list[Tensor] = []
    if kind == "vectors":  # the matched SW2 floor needs the sample points too; vector samples are small
        fake = (kept.append(b.detach().cpu()) or b for b in fake)
    memo = data.heldout is not None
    totals = {"fake": n, "real": len(ref), "heldout": memo and len(data.heldout), "train": len(data.train)}
    with StageProgress(console, totals) if console is not None else nullcontext() as progress:
        results = evaluate(fake, real, names, train=_loader(data.train, batch_size) if memo else None,
                           heldout=_loader(data.heldout, batch_size) if memo else None, labels=labels,
                           captions=captions, options=o, progress=progress)
    if "sw2" in results:
        matched, floor, m = sw2_against_floor(torch.cat(kept), real, o.num_projections, seed)
        results.update(sw2_matched=matched, sw2_floor=floor, sw2_ratio=matched / floor)
        notes.append(f"sw2_ratio = SW2({m} samples, {len(real) - m} reference points) / SW2({m} other reference "
                     f"points, the same {len(real) - m}), averaged over {SW2_FLOOR_REPEATS} random splits")
    settings = {
        "run": str(loaded.checkpoint.parent), "checkpoint": str(loaded.checkpoint),
        "sampler": DEFAULT_SAMPLER if sampler == "default" else sampler,
        "schedule": default_schedule(loaded.model.process) if schedule in ("default", AUTO) else schedule,
        "steps": steps, "nfe": nfe[0], "n": n, "seed": seed,
        "sample_seeds": f"({sample_seeds(seed, 0, 1)[0]} + i) mod 2**32", "guidance": guidance,
        "batch_size": batch_size, "data": kind, **data.describe, "metrics": names, "device": device,
    }  # fmt: skip
    return EvalReport(settings, results, notes)


def evaluate_split(loaded: LoadedRun, *, batch_size: int = 500, seed: int = 0, device: str = "cpu") -> EvalReport:
    """The floor of a run: its held-out split scored like samples against the training data.

    The 'auto' metrics of evaluate_loaded (the memorization ratio is 1 by construction).
    """
    cfg = loaded.config
    data = run_data(cfg.data, heldout=True)
    if data.heldout is None:
        raise DifflabError(f"data set {cfg.data.name!r} with options {cfg.data.options} has no held-out split")
    kind = data_kind(loaded.meta.data_shape, cfg.data.name)
    names = resolve_metrics(AUTO, kind)
    o = EvalOptions(features=FEATURES[kind], batch_size=batch_size, seed=seed, device=device)
    train, held = _loader(data.train, batch_size), _loader(data.heldout, batch_size)
    results = evaluate(held, train, names, train=train, heldout=held, options=o)
    settings = {"run": str(loaded.checkpoint.parent), "samples": data.describe["heldout"], "n": len(data.heldout),
                "reference": data.describe["reference"], "metrics": names, "device": device}
    return EvalReport(settings, results)


def evaluate_folder_pair(real: str | Path, fake: str | Path, *, metrics: str | Sequence[str] = AUTO,
                         batch_size: int = 500, seed: int = 0, device: str = "cpu",
                         inception: str | Path | None = None, console: Console | None = None) -> EvalReport:
    """Score the images of `fake` against those of `real` (same size and mode; no resizing)."""
    _check_settings(1, batch_size, seed)
    probe = ImageFolderBatches(fake, batch_size)
    kind = data_kind((1 if probe.mode == "L" else 3, *probe.size))
    names = resolve_metrics(metrics, kind, has_train=False)
    for name in names:
        if name in FOLDER_UNSUPPORTED:
            raise DifflabError(f"{name} {FOLDER_UNSUPPORTED[name]}")
    totals = {"fake": probe.n, "real": None}
    with StageProgress(console, totals) if console is not None else nullcontext() as progress:
        results = evaluate_folders(fake, real, names, progress=progress, features=FEATURES[kind],
                                   inception=inception, batch_size=batch_size, seed=seed, device=device)
    settings = {"real": str(real), "fake": str(fake), "n_fake": results["n_fake"], "n_real": results["n_real"],
                "images": f"{probe.size[0]}x{probe.size[1]} {probe.mode}", "data": kind, "metrics": names,
                "seed": seed}
    return EvalReport(settings, results)


def run_eval(run: str | Path | None = None, *, real: str | Path | None = None, fake: str | Path | None = None,
             n: int | None = None, sampler: str | None = None, steps: int | None = None, schedule: str | None = None,
             seed: int = 0, guidance: float | None = None, batch_size: int = 500, metrics: str = AUTO,
             n_real: int | None = None, ema: bool = True, device: str | None = None,
             inception: str | Path | None = None, json_path: str | Path | None = None) -> EvalReport:
    """`difflab eval RUN ...` or `difflab eval --real DIR --fake DIR`: score, print a table, write --json."""
    if (run is None) == (real is None and fake is None):
        raise DifflabError("give either a RUN folder or both --real DIR and --fake DIR (not both, not neither)")
    out, err = Console(), Console(stderr=True)
    device = torch_device(device)
    if run is None:
        if real is None or fake is None:
            raise DifflabError("comparing folders needs both --real DIR and --fake DIR")
        run_only = {"--n": n, "--sampler": sampler, "--steps": steps, "--schedule": schedule,
                    "--guidance": guidance, "--n-real": n_real}
        given = [k for k, v in run_only.items() if v is not None]
        if given or not ema:
            raise DifflabError(f"{', '.join(given) or '--no-ema'} only apply to a RUN, not to --real/--fake folders")
        report = evaluate_folder_pair(real, fake, metrics=metrics, batch_size=batch_size, seed=seed, device=device,
                                      inception=inception, console=err)
        title = f"difflab eval: {fake} against {real}"
    else:
        loaded = load_run(run, ema=ema, device=device)
        report = evaluate_loaded(loaded, n=DEFAULT_N if n is None else n, sampler=sampler, steps=steps,
                                 schedule=schedule, seed=seed, guidance=guidance, batch_size=batch_size,
                                 metrics=metrics, n_real=n_real, device=device, inception=inception, console=err)
        report.settings["ema"] = ema
        st = report.settings
        title = (f"difflab eval: {st['checkpoint']}: {st['sampler']}, {st['schedule']} grid, {st['steps']} steps, "
                 f"NFE {st['nfe']}, n={st['n']}, seed {st['seed']}")
    out.print(title, highlight=False)
    out.print(results_table(report))
    for note in report.notes:
        out.print(f"[yellow]note:[/] {note}")
    if json_path is not None:
        out.print(f"wrote {atomic_write_json(json_path, asdict(report))}")
    return report
