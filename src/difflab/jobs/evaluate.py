"""`difflab eval`: score a trained run's samples, or two image folders, with the metrics that fit the data.

The job builds the streams and reports; difflab.metrics decides everything about the metrics (what each
needs, how many samples, which ones 'auto' means: difflab.metrics.specs). A run is scored against its own
training data (the config's data set); its samples are drawn in batches and streamed into
difflab.metrics.evaluate, so memory stays constant in n for the Fréchet distances and class statistics.
Sample i of an evaluation is drawn from its own generator (EDM's per-sample seeds, see sample_seeds), so
the samples do not depend on --batch-size.

Metrics by data ('auto'): digits (1x8x8 / 1x16x16) -> the digit classifier's FDD, class coverage and
confidence, precision/recall in its feature space and the memorization check against the held-out test
split (label accuracy for a class-conditional run); RGB images -> FID, KID, IS and precision/recall in
Inception space; vectors -> SW2 (with its finite-sample floor and the ratio to it) and MMD.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Dataset, Subset

from difflab.baselines.base import Baseline
from difflab.config.factory import build_data, held_out_config
from difflab.config.schema import DataConfig
from difflab.data.datasets import collate
from difflab.jobs.baselines import check_sampling_options
from difflab.jobs.fit_schedule import resolve_schedule
from difflab.jobs.generate import check_count, generate, resolve_device, run_sample_keywords
from difflab.jobs.likelihood import evaluate_nll
from difflab.jobs.runs import LoadedRun, load_run
from difflab.metrics import EvalOptions, describe_sw2_ratio, evaluate, resolve_inception_weights
from difflab.metrics.folders import ImageFolderBatches, check_same_images
from difflab.metrics.specs import AUTO, FEATURES, MODEL_METRICS, data_kind, resolve_metrics
from difflab.sampling import DEFAULT, default_schedule, resolve_sampler
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write_json
from difflab.utils.progress import Progress
from difflab.utils.tables import value_table

DEFAULT_N = 2000
SEED_SPACE = 2**32
REAL_VECTOR_CAP = 10_000  # vector metrics hold every point and MMD is quadratic in them
STAGES = {"fake": "sampling", "real": "reference", "heldout": "held-out", "train": "training set"}


@dataclass
class EvalReport:
    """What `difflab eval` measured: the settings used, the numbers, and notes (e.g. a skipped metric)."""

    settings: dict
    results: dict[str, float]
    notes: list[str] = field(default_factory=list)


def sample_seeds(seed: int, start: int, count: int) -> list[int]:
    """Seeds of samples start..start+count-1 of an evaluation seeded `seed`: (h(seed) + i) mod 2**32.

    torch's CPU generator keeps only the low 32 bits of a seed, so seeds must differ there. h is a 32-bit
    hash of the seed (numpy's SeedSequence): the n seeds of one evaluation are distinct, and two evaluation
    seeds share a sample only when their offsets fall within n of each other (probability ~ 2n / 2**32).
    """
    base = int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0])
    return [(base + i) % SEED_SPACE for i in range(start, start + count)]


# ---------------------------------------------------------------- the streams


def _loader(dataset: Dataset, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)


@dataclass
class RunData:
    """The real data a run is scored against, built from its data config."""

    train: Dataset  # the training data as it is (no random flips)
    reference: Dataset  # what samples are compared with: `train`, or a seeded random subset of it
    heldout: Dataset | None  # the matching held-out split (memorization), when asked for and one exists
    describe: dict[str, str | None]  # the reference and the held-out split, in words, for the report


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


@dataclass
class SampleStream:
    """n samples of a run, in batches; sample i has its own seed (sample_seeds), so the samples do not depend
    on batch_size. Class models get class i % K for sample i; text models prompts(start, count). `nfe` holds
    the per-sample NFE of the last batch drawn. Iterable once per pass; `n` lets evaluate() check counts first."""

    loaded: LoadedRun
    n: int
    batch_size: int
    sample: dict  # sampler, steps, schedule, seed, guidance, device, options, schedule_options
    prompts: Callable[[int, int], list[str]] | None = None
    nfe: int | None = None
    schedule: object = None  # the grid sampled on: sample["schedule"], or the run's FittedGrid for 'fitted'

    def __post_init__(self):
        if self.schedule is None:
            self.schedule = self.sample["schedule"]

    def __iter__(self) -> Iterator[torch.Tensor]:
        classes, s = self.loaded.meta.num_classes, self.sample
        for start in range(0, self.n, self.batch_size):
            count = min(self.batch_size, self.n - start)
            labels = (torch.arange(start, start + count) % classes).tolist() if classes is not None else None
            result = generate(
                self.loaded.model, self.loaded.meta, count, sampler=s["sampler"], steps=s["steps"],
                schedule=self.schedule, seed=sample_seeds(s["seed"], start, count), guidance=s["guidance"],
                labels=labels, prompts=self.prompts(start, count) if self.prompts is not None else None,
                text_encoder=self.loaded.text_encoder, device=s["device"], options=s["options"],
                schedule_options=s["schedule_options"],
            )  # fmt: skip
            self.nfe = result.nfe
            yield self.loaded.to_images(result.x)  # in the data range (generate clamps); a latent run's decoded


# ---------------------------------------------------------------- progress and output


class StageProgress:
    """One difflab.utils.progress.Progress per stage (sampling, reference, ...): call(stage, done). Each
    stage's rate and ETA count from that stage's start; clock: the time source (tests inject one)."""

    def __init__(self, totals: dict[str, int | None], enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self.totals, self.enabled, self.clock = totals, enabled, clock
        self.stage: str | None = None
        self.bar: Progress | None = None

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()

    def __call__(self, stage: str, done: int) -> None:
        if stage != self.stage:
            self.__exit__()
            self.stage = stage
            self.bar = Progress(self.totals.get(stage), STAGES.get(stage, stage), unit="img", enabled=self.enabled,
                                stream=sys.stderr, clock=self.clock)
        self.bar.advance(done - self.bar.completed)


def results_table(report: EvalReport) -> Table:
    """The numbers as a rich table (metric, value)."""
    return value_table(report.results)


# ---------------------------------------------------------------- scoring


def evaluate_loaded(loaded: LoadedRun, *, n: int = DEFAULT_N, sampler: str | None = None, steps: int | None = None,
                    schedule: str | None = None, seed: int = 0, guidance: float | None = None, batch_size: int = 500,
                    metrics: str | Sequence[str] = AUTO, n_real: int | None = None, device: str = "cpu",
                    inception: str | Path | None = None, is_splits: int | None = None,
                    options: dict | None = None, schedule_options: dict | None = None,
                    progress: bool = False, nll_options: dict | None = None) -> EvalReport:
    """Draw n samples of a loaded run and score them against its training data (see the module docstring).

    sampler / steps / schedule / guidance: None = the run's `sample` config; options / schedule_options
    (the sampler's and the grid's keywords, generate()) update its sample.options / schedule_options,
    as `difflab sample` does. n_real: reference items
    (default: the whole training set; vector data at most REAL_VECTOR_CAP, a seeded random subset).
    is_splits: the Inception Score's splits (None: EvalOptions'). progress: show one bar per stage.
    nll (a metric of the model, not of samples): difflab.jobs.likelihood.evaluate_nll on at most n real
    images, with nll_options (method, probes, split).
    """
    check_count(n)
    cfg, meta, s = loaded.config, loaded.meta, loaded.config.sample
    if isinstance(loaded.model, Baseline):  # a VAE, GAN or PixelCNN draws with its own sampler
        check_sampling_options(cfg.family, {"--sampler": sampler, "--steps": steps, "--schedule": schedule,
                                            "--guidance": guidance, "--option": options,
                                            "--schedule-option": schedule_options})
    keywords, grid_keywords = run_sample_keywords(s, sampler, schedule, options, schedule_options)
    sample = {"sampler": s.sampler if sampler is None else sampler, "steps": s.steps if steps is None else steps,
              "schedule": s.schedule if schedule is None else schedule, "seed": seed, "device": device,
              "guidance": s.guidance if guidance is None else guidance,
              "options": keywords, "schedule_options": grid_keywords}
    kind = data_kind(meta.data_shape, cfg.data.name)
    o = _options(kind, inception, batch_size, seed, device, is_splits)  # checks the settings before any work
    available = {"real", "train", *(["labels"] if meta.num_classes is not None else []),
                 *(["captions"] if loaded.text_encoder is not None else []),
                 *(["likelihood"] if getattr(loaded.model, "has_likelihood", False) else [])}  # PixelCNN, VAE
    names = resolve_metrics(metrics, kind, available)
    of_model = [m for m in names if m in MODEL_METRICS]
    names = [m for m in names if m not in MODEL_METRICS]
    if nll_options and not of_model:
        raise DifflabError(f"{', '.join('--' + k for k in nll_options)} set(s) the nll metric: add nll to --metrics "
                           "(e.g. --metrics nll)")
    data = run_data(cfg.data, n_real=n_real, cap=REAL_VECTOR_CAP if kind == "vectors" else None, seed=seed,
                    heldout="memorization" in names)
    notes: list[str] = []
    if "memorization" in names and data.heldout is None:
        names.remove("memorization")
        notes.append(f"no held-out split exists for data set {cfg.data.name!r} with options {cfg.data.options}: "
                     "the memorization ratio is skipped")
    ref = data.reference
    prompts = None
    if loaded.text_encoder is not None:  # text models: the captions of the reference items, cycled
        prompts = lambda start, count: [ref[i % len(ref)]["caption"] for i in range(start, start + count)]  # noqa: E731
    labels = torch.arange(n) % meta.num_classes if meta.num_classes is not None else None
    captions = prompts(0, n) if prompts is not None else None
    fake = SampleStream(loaded, n, batch_size, sample, prompts,
                        schedule=resolve_schedule(loaded.checkpoint.parent, sample["schedule"], sample["sampler"],
                                                  sample["steps"]))  # 'fitted': the grid saved in the run folder
    memo = "memorization" in names
    train, held = (_loader(data.train, batch_size), _loader(data.heldout, batch_size)) if memo else (None, None)
    totals = {"fake": n, "real": len(ref), "heldout": memo and len(data.heldout), "train": len(data.train)}
    results: dict[str, float] = {}
    if names:  # metrics of samples
        with StageProgress(totals, enabled=progress) as bar:
            results = evaluate(fake, _loader(ref, batch_size), names, train=train, heldout=held, labels=labels,
                               captions=captions, options=o, progress=bar)
    if "sw2" in results:
        notes.append(describe_sw2_ratio(results["n_fake"], results["n_real"]))
    nll = None
    if of_model:
        nll_results, nll = evaluate_nll(loaded, n=n, seed=seed, batch_size=batch_size, device=device,
                                        progress=progress, **(nll_options or {}))
        results.update(nll_results)
    own = loaded.model.family if isinstance(loaded.model, Baseline) else None  # a baseline's own sampler
    process = None if own else loaded.model.process
    resolved = None if own else resolve_sampler(sample["sampler"], process, sample["steps"])
    settings = {
        "run": str(loaded.checkpoint.parent), "checkpoint": str(loaded.checkpoint),
        # the names generate() resolves DEFAULT to, so a report says which sampler and grid ran
        "sampler": own or resolved,
        "schedule": None if own else (default_schedule(process, resolved, sample["steps"])
                                      if sample["schedule"] == DEFAULT else sample["schedule"]),
        "steps": None if own else sample["steps"], "nfe": fake.nfe, "n": n, "seed": seed,
        "sample_seeds": f"({sample_seeds(seed, 0, 1)[0]} + i) mod 2**32", "guidance": sample["guidance"],
        "options": sample["options"], "schedule_options": sample["schedule_options"],
        "batch_size": batch_size, "data": kind, **data.describe, "metrics": [*names, *of_model], "device": device,
        **({"nll": nll} if nll is not None else {}),
    }  # fmt: skip
    return EvalReport(settings, results, notes)


def nll_options(method: str | None, probes: int | None, split: str | None) -> dict:
    """The nll metric's options that were given (difflab.jobs.likelihood.evaluate_nll's keywords)."""
    return {k: v for k, v in (("method", method), ("probes", probes), ("split", split)) if v is not None}


def _options(kind: str, inception, batch_size: int, seed: int, device: str, is_splits: int | None) -> EvalOptions:
    extra = {} if is_splits is None else {"is_splits": is_splits}
    return EvalOptions(features=FEATURES[kind], inception=inception, batch_size=batch_size, seed=seed,
                       device=device, **extra)


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
    o = _options(kind, None, batch_size, seed, device, None)
    train, held = _loader(data.train, batch_size), _loader(data.heldout, batch_size)
    results = evaluate(held, train, names, train=train, heldout=held, options=o)
    settings = {"run": str(loaded.checkpoint.parent), "samples": data.describe["heldout"], "n": len(data.heldout),
                "reference": data.describe["reference"], "metrics": names, "device": device}
    return EvalReport(settings, results)


def evaluate_folder_pair(real: str | Path, fake: str | Path, *, metrics: str | Sequence[str] = AUTO,
                         batch_size: int = 500, seed: int = 0, device: str = "cpu",
                         inception: str | Path | None = None, is_splits: int | None = None,
                         progress: bool = False) -> EvalReport:
    """Score the images of `fake` against those of `real` (same size and mode; no resizing)."""
    fakes, reals = ImageFolderBatches(fake, batch_size), ImageFolderBatches(real, batch_size)
    check_same_images(fakes, reals)
    kind = data_kind((1 if fakes.mode == "L" else 3, *fakes.size))
    o = _options(kind, inception, batch_size, seed, device, is_splits)
    names = resolve_metrics(metrics, kind, available=("real",))
    with StageProgress({"fake": fakes.n, "real": reals.n}, enabled=progress) as bar:
        results = evaluate(fakes, reals, names, options=o, progress=bar)
    settings = {"real": str(real), "fake": str(fake), "n_fake": fakes.n, "n_real": reals.n,
                "images": f"{fakes.size[0]}x{fakes.size[1]} {fakes.mode}", "data": kind, "metrics": names,
                "seed": seed}
    return EvalReport(settings, results)


def run_eval(run: str | Path | None = None, *, real: str | Path | None = None, fake: str | Path | None = None,
             n: int | None = None, sampler: str | None = None, steps: int | None = None, schedule: str | None = None,
             seed: int = 0, guidance: float | None = None, batch_size: int = 500, metrics: str = AUTO,
             n_real: int | None = None, ema: bool = True, device: str | None = None,
             inception: str | Path | None = None, is_splits: int | None = None,
             json_path: str | Path | None = None, options: dict | None = None,
             schedule_options: dict | None = None, method: str | None = None, probes: int | None = None,
             split: str | None = None, checkpoint: int | None = None) -> EvalReport:
    """`difflab eval RUN ...` or `difflab eval --real DIR --fake DIR`: score, print a table, write --json.

    method / probes / split: the nll metric's (difflab.jobs.likelihood; None: its defaults); checkpoint: the
    run's ckpt-<step> instead of its newest intact checkpoint."""
    from difflab.jobs.autoencoder_runs import is_autoencoder_run

    if run is not None and real is None and fake is None and is_autoencoder_run(run):  # reconstruction metrics
        if checkpoint is not None:
            raise DifflabError("--checkpoint picks a diffusion, distilled or baseline run's step; an autoencoder "
                               "run is scored at its newest checkpoint")
        from difflab.jobs.reconstruct import evaluate_autoencoder

        return evaluate_autoencoder(run, n=n, seed=seed, batch_size=batch_size, ema=ema, device=device,
                                    json_path=json_path, metrics=metrics, sampler=sampler, steps=steps,
                                    schedule=schedule, guidance=guidance, n_real=n_real, inception=inception,
                                    is_splits=is_splits, option=options, schedule_option=schedule_options,
                                    method=method, probes=probes, split=split)
    if (run is None) == (real is None and fake is None):
        raise DifflabError("give either a RUN folder or both --real DIR and --fake DIR (not both, not neither)")
    out = Console()
    device = resolve_device(device)
    if inception is not None:
        resolve_inception_weights(inception)  # a missing weights file is refused before any work
    if json_path is not None and Path(json_path).is_dir():
        raise DifflabError(f"--json {json_path} is a folder; give a file name such as {Path(json_path) / 'eval.json'}")
    if run is None:
        if real is None or fake is None:
            raise DifflabError("comparing folders needs both --real DIR and --fake DIR")
        run_only = {"--n": n, "--sampler": sampler, "--steps": steps, "--schedule": schedule,
                    "--guidance": guidance, "--n-real": n_real, "--option": options or None,
                    "--schedule-option": schedule_options or None, "--method": method, "--probes": probes,
                    "--split": split, "--checkpoint": checkpoint}
        given = [k for k, v in run_only.items() if v is not None]
        if given or not ema:
            raise DifflabError(f"{', '.join(given) or '--no-ema'} only apply to a RUN, not to --real/--fake folders")
        report = evaluate_folder_pair(real, fake, metrics=metrics, batch_size=batch_size, seed=seed, device=device,
                                      inception=inception, is_splits=is_splits, progress=True)
        title = f"difflab eval: {fake} against {real}"
    else:
        loaded = load_run(run, ema=ema, device=device, checkpoint=checkpoint, steps=steps)
        report = evaluate_loaded(loaded, n=DEFAULT_N if n is None else n, sampler=sampler, steps=steps,
                                 schedule=schedule, seed=seed, guidance=guidance, batch_size=batch_size,
                                 metrics=metrics, n_real=n_real, device=device, inception=inception,
                                 is_splits=is_splits, options=options, schedule_options=schedule_options,
                                 progress=True, nll_options=nll_options(method, probes, split))
        report.settings["ema"] = ema
        st = report.settings
        how = f"{st['sampler']}'s own sampler" if st["schedule"] is None else \
            f"{st['sampler']}, {st['schedule']} grid, {st['steps']} steps"
        nll = f"; nll: {st['nll']['method']} on {st['nll']['data']}" if "nll" in st else ""
        title = f"difflab eval: {st['checkpoint']}: {how}, NFE {st['nfe']}, n={st['n']}, seed {st['seed']}{nll}"
    out.print(title, highlight=False, markup=False)
    out.print(results_table(report))
    for note in report.notes:
        out.print(f"note: {note}", markup=False, highlight=False)
    if json_path is not None:
        out.print(f"wrote {atomic_write_json(json_path, asdict(report))}", markup=False, highlight=False)
    return report
