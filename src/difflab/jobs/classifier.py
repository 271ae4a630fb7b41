"""`difflab train-classifier RUN`: the noise-aware classifier p_phi(y | x_t, t) that guides a run's sampler.

Classifier guidance (Dhariwal & Nichol 2021 §4, Algorithm 1; seeds 001 and 002) adds s grad log p_phi(y | x_t)
to the score, so the classifier must be right on the x_t the sampler visits: it is trained on the run's
data set (its labels), under the run's process, with x_t drawn at the run's own loss time density
(objectives.NoisyClassifierLoss). The existing Trainer does the work (checkpoints, EMA, resume, log, loss
curve); everything lands in

    RUN/classifier/ckpt-<step>/    weights (model + EMA); config.yaml holds a ClassifierRun (below)
    RUN/classifier/log.jsonl, loss.png
    RUN/classifier/accuracy.json   held-out top-1 accuracy of the EMA classifier at a few t

The classifier's own settings are a ClassifierConfig, validated like a RunConfig (`--set train.lr=1e-3`,
`--set options.base_channels=16`; difflab.config.loader's functions).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Subset

from difflab.config.factory import build_data, build_loss, build_process
from difflab.config.loader import apply_overrides, config_from_dict
from difflab.config.schema import DataConfig, LossConfig, ProcessConfig
from difflab.config.validate import from_dict, to_dict
from difflab.data.datasets import collate
from difflab.jobs.runs import torch_device
from difflab.nets.registry import build_network, count_parameters
from difflab.objectives import NoisyClassifierLoss
from difflab.param.classifier import TimeClassifier
from difflab.train import Trainer, latest_checkpoint, load_checkpoint, read_config
from difflab.train.settings import TrainConfig, TrainResult
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write_json

CLASSIFIER_DIR = "classifier"
DATA_KEYS = ("in_channels", "num_classes", "image_size")  # set from the data, not by options


def _classifier_train_defaults() -> TrainConfig:
    # Digits on a CPU: a few thousand steps of 128 images; EMA half-life of ~80 steps.
    return TrainConfig(lr=1e-3, warmup_steps=100, batch_size=128, ema=10_000, max_steps=4000, log_every=50,
                       sample_every=0, ckpt_every=500, keep_last=2, p_uncond=0.0, condition="class")


def _classifier_net_defaults() -> dict[str, Any]:
    # ~0.2M parameters: two levels (8x8, 4x4 on digits), attention at 4x4 and in the middle, ADM's
    # attention pooling.
    return {"base_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [4],
            "num_heads": 4, "dropout": 0.0, "pool": "attention"}


@dataclass
class ClassifierConfig:
    """Settings of a run's classifier: difflab.nets.NoisyClassifier `options` (in_channels, num_classes and
    image_size come from the data), the Trainer's `train` settings (always condition="class", no condition
    dropout: the labels are the target), and the times `eval_times` at which held-out accuracy is measured
    on at most `eval_items` items."""

    options: dict[str, Any] = field(default_factory=_classifier_net_defaults)
    train: TrainConfig = field(default_factory=_classifier_train_defaults)
    eval_times: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75])
    eval_items: int = 2000

    def __post_init__(self):
        fixed = sorted(set(self.options) & set(DATA_KEYS))
        if fixed:
            raise DifflabError(f"classifier options {fixed} are set from the run's data; drop them from options")
        if self.train.condition != "class" or self.train.p_uncond != 0.0:
            raise DifflabError("a classifier trains on class labels with no condition dropout: "
                               "leave train.condition (class) and train.p_uncond (0) as they are")
        if not self.eval_times or not all(0.0 <= t <= 1.0 for t in self.eval_times):
            raise DifflabError(f"eval_times must be a non-empty list of times in [0, 1]; got {self.eval_times}")
        if self.eval_items < 1:
            raise DifflabError(f"eval_items must be >= 1; got {self.eval_items}")


@dataclass
class ClassifierRun:
    """What a classifier checkpoint's config.yaml holds: its settings plus the run's process, loss time
    density and data it was trained for, so the classifier can be rebuilt without the run's config."""

    classifier: ClassifierConfig
    process: ProcessConfig
    loss: LossConfig
    data: DataConfig
    num_classes: int
    data_shape: list[int]


@dataclass
class ClassifierTrainResult:
    """The trainer's result, and the held-out accuracy {t: fraction correct} on `split`."""

    train: TrainResult
    accuracy: dict[float, float]
    split: str


def build_classifier(saved: ClassifierRun) -> TimeClassifier:
    """The TimeClassifier (NoisyClassifier + the run's process) that `saved` describes, untrained."""
    shape = tuple(saved.data_shape)
    if len(shape) != 3 or shape[1] != shape[2]:
        raise DifflabError(f"the noise-aware classifier takes square images (C, H, H); the run's data has items "
                           f"of shape {shape}: classifier guidance is for image runs")
    kw = {**saved.classifier.options, "in_channels": shape[0], "num_classes": saved.num_classes,
          "image_size": shape[1]}
    net = build_network("classifier", **kw)
    return TimeClassifier(net, build_process(saved.process))


def classifier_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CLASSIFIER_DIR


def load_run_classifier(run_dir: str | Path, device: str = "cpu", ema: bool = True) -> TimeClassifier:
    """The newest classifier of a run (EMA weights by default), in eval mode with frozen parameters."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DifflabError(f"run folder {run_dir} does not exist; train one with `difflab train PRESET --out {run_dir}`")
    ckpt = latest_checkpoint(classifier_dir(run_dir))
    if ckpt is None:
        raise DifflabError(f"{run_dir} has no trained classifier (no checkpoint in {classifier_dir(run_dir)}): "
                           f"train one with `difflab train-classifier {run_dir}`")
    saved = from_dict(ClassifierRun, read_config(ckpt))
    clf = build_classifier(saved)
    if ema:
        load_checkpoint(ckpt, build_classifier(saved), clf)
    else:
        load_checkpoint(ckpt, clf)
    return clf.to(device).eval().requires_grad_(False)


@torch.no_grad()
def classifier_accuracy(classifier: TimeClassifier, data, times: list[float], *, seed: int = 0,
                        batch_size: int = 256, device: str = "cpu") -> dict[float, float]:
    """Top-1 accuracy of argmax_y classifier(x_t, t) on data's ("x", "label") items at each t, with
    x_t = alpha(t) x0 + sigma(t) eps. eps (N, *shape) is drawn once from `seed` for the whole set and shared
    by every t, so the result does not depend on batch_size."""
    process = classifier.process
    eps_all = torch.randn((len(data), *data[0]["x"].shape), generator=torch.Generator().manual_seed(seed))
    correct = torch.zeros(len(times), dtype=torch.long, device=device)
    start = 0
    for batch in DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate):
        x0, y = batch["x"].to(device), batch["label"].to(device)  # (B, C, H, W), (B,)
        eps = eps_all[start:start + len(y)].to(device)  # (B, C, H, W)
        start += len(y)
        for i, t in enumerate(times):
            t_b = torch.full((len(y),), float(t), dtype=torch.float64, device=device)  # (B,)
            x_t = process.sample_xt(x0, t_b, eps)
            correct[i] += (classifier(x_t, t_b.to(x0.dtype)).argmax(-1) == y).sum()
    return {float(t): c / len(data) for t, c in zip(times, correct.tolist(), strict=True)}


def held_out(data: DataConfig) -> tuple[DataConfig, str]:
    """The data to measure a classifier trained on `data` with, and its name: digits' test split when the
    run trained on the train split; otherwise the training data itself (said so in the report)."""
    if data.name == "digits" and data.options.get("split", "train") == "train":
        return replace(data, options={**data.options, "split": "test"}), "test split"
    return data, "training data (no held-out split for this data set)"


def _resolve(run_dir: Path, overrides: list[str], resume: bool):
    """(settings, process, loss, data) sections: on resume the saved ones (overrides apply to the settings),
    else the defaults + overrides and the run's own process, loss time density and data."""
    ckpt = latest_checkpoint(classifier_dir(run_dir)) if resume else None
    if ckpt is not None:
        saved = read_config(ckpt)
        saved["classifier"] = apply_overrides(saved["classifier"], overrides)
        s = from_dict(ClassifierRun, saved)
        return s.classifier, s.process, s.loss, s.data
    run_ckpt = latest_checkpoint(run_dir)
    if run_ckpt is None:
        raise DifflabError(f"{run_dir} has no checkpoint yet (its config lives there); train the run first")
    cfg = config_from_dict(read_config(run_ckpt))
    settings = from_dict(ClassifierConfig, apply_overrides(to_dict(ClassifierConfig()), overrides))
    return settings, cfg.process, cfg.loss, cfg.data


def run_train_classifier(run: str | Path, *, minutes: float | None = None, steps: int | None = None,
                         overrides: list[str] | None = None, resume: bool = False) -> ClassifierTrainResult:
    """Train (or resume) RUN's classifier, then measure and store its held-out accuracy at eval_times."""
    console = Console()
    run_dir = Path(run)
    if not run_dir.is_dir():
        raise DifflabError(f"run folder {run_dir} does not exist; train one with `difflab train PRESET --out {run_dir}`")
    settings, process_cfg, loss_cfg, data_cfg = _resolve(run_dir, list(overrides or []), resume)
    train_cfg = settings.train
    if minutes is not None:
        train_cfg = replace(train_cfg, max_minutes=minutes)
    if steps is not None:
        train_cfg = replace(train_cfg, max_steps=steps)
    dataset = build_data(data_cfg)
    if getattr(dataset, "num_classes", None) is None:
        raise DifflabError(f"the run's data set ({data_cfg.name}) has no class labels: a guidance classifier needs "
                           "labelled data (digits, a labelled toy2d set, a folder with labels_from_subfolders=true)")
    saved = ClassifierRun(replace(settings, train=train_cfg), process_cfg, loss_cfg, data_cfg,
                          int(dataset.num_classes), list(dataset.data_shape))
    model = build_classifier(saved)
    out = classifier_dir(run_dir)
    console.print(f"[bold]difflab train-classifier[/] {run_dir} -> {out}: NoisyClassifier "
                  f"({count_parameters(model) / 1e6:.2f}M parameters), {type(model.process).__name__}, "
                  f"{saved.num_classes} classes, t ~ {saved.loss.time_sampler}, {len(dataset)} items")
    loss = NoisyClassifierLoss(build_loss(saved.loss).time_sampler)
    trainer = Trainer(model, loss, dataset, train_cfg, out, run_config=to_dict(saved))
    result = trainer.train(resume=resume)

    device = torch_device()
    classifier = load_run_classifier(run_dir, device=device, ema=True)
    eval_cfg, split = held_out(saved.data)
    eval_data = build_data(eval_cfg)
    eval_data = Subset(eval_data, range(min(len(eval_data), saved.classifier.eval_items)))
    accuracy = classifier_accuracy(classifier, eval_data, saved.classifier.eval_times, seed=train_cfg.seed,
                                   batch_size=train_cfg.batch_size, device=device)
    atomic_write_json(out / "accuracy.json", {
        "step": result.step, "checkpoint": result.checkpoint.name if result.checkpoint else None, "ema": True,
        "split": split, "items": len(eval_data), "accuracy": {str(t): a for t, a in accuracy.items()},
    })
    console.print(f"held-out accuracy of the EMA classifier at step {result.step} ({split}, {len(eval_data)} items):")
    table = Table()
    table.add_column("t", justify="right")
    table.add_column("accuracy", justify="right")
    for t, a in accuracy.items():
        table.add_row(f"{t:g}", f"{a:.3f}")
    console.print(table)
    console.print(f"wrote {out / 'accuracy.json'}")
    return ClassifierTrainResult(result, accuracy, split)
