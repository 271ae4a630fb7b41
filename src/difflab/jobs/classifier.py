"""`difflab train-classifier RUN`: the noise-aware classifier p_phi(y | x_t, t) that guides a run's sampler.

Classifier guidance (Dhariwal & Nichol 2021 §4, Algorithm 1; seeds 001 and 002) adds s grad log p_phi(y | x_t)
to the score, so the classifier must be right on the x_t the sampler visits: it is trained on the run's
data set (its labels), under the run's process, with x_t drawn at the run's own loss time density
(objectives.NoisyClassifierLoss). The existing Trainer does the work (checkpoints, EMA, resume, log, loss
curve); everything lands in

    RUN/classifier/ckpt-<step>/    weights (model + EMA); config.yaml holds a ClassifierRun (below)
    RUN/classifier/log.jsonl, loss.png
    RUN/classifier/accuracy.json   held-out top-1 accuracy of the EMA classifier at a few t

The classifier's own settings are a ClassifierConfig (difflab.config.schema), validated like a RunConfig
(`--set train.lr=1e-3`, `--set options.base_channels=16`; difflab.config.loader's functions); the factory
builds it (config.factory.build_classifier), and its accuracy is difflab.metrics.noisy_accuracy's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.text import Text
from torch.utils.data import Subset

from difflab.config.factory import build_classifier, build_data, build_loss, held_out_config
from difflab.config.loader import apply_overrides, config_from_dict
from difflab.config.schema import ClassifierConfig, ClassifierRun, DataConfig
from difflab.config.validate import from_dict, to_dict
from difflab.jobs.generate import resolve_device
from difflab.jobs.runs import sampling_checkpoint
from difflab.metrics.noisy_accuracy import classifier_accuracy
from difflab.nets.registry import count_parameters
from difflab.objectives import NoisyClassifierLoss
from difflab.param.classifier import TimeClassifier
from difflab.train import Trainer, latest_checkpoint, read_config
from difflab.train.checkpoint import load_weights
from difflab.train.prepare import ClassLabels
from difflab.train.settings import TrainResult
from difflab.utils.errors import DifflabError
from difflab.utils.files import atomic_write_json
from difflab.utils.tables import value_table

__all__ = ["ClassifierTrainResult", "classifier_accuracy", "classifier_dir", "load_run_classifier",
           "run_train_classifier"]

CLASSIFIER_DIR = "classifier"


@dataclass
class ClassifierTrainResult:
    """The trainer's result, and the held-out accuracy {t: fraction correct} on `split`."""

    train: TrainResult
    accuracy: dict[float, float]
    split: str


def classifier_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CLASSIFIER_DIR


def load_run_classifier(run_dir: str | Path, device: str = "cpu", ema: bool = True) -> TimeClassifier:
    """The newest classifier of a run (EMA weights by default), in eval mode with frozen parameters."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DifflabError(f"run folder {run_dir} does not exist; train one with `difflab train PRESET --out {run_dir}`")
    if latest_checkpoint(classifier_dir(run_dir)) is None:
        raise DifflabError(f"{run_dir} has no trained classifier (no checkpoint in {classifier_dir(run_dir)}): "
                           f"train one with `difflab train-classifier {run_dir}`")
    ckpt = sampling_checkpoint(classifier_dir(run_dir), ema)  # trainer.pt not read; damaged ones skipped
    clf = build_classifier(from_dict(ClassifierRun, read_config(ckpt)))
    load_weights(ckpt, clf, ema=ema)
    return clf.to(device).eval().requires_grad_(False)


def held_out(data: DataConfig) -> tuple[DataConfig, str]:
    """The data to measure a classifier trained on `data` with, and its name: the held-out split of the one
    rule (config.factory.held_out_config) when there is one; otherwise the training data itself (said so)."""
    held = held_out_config(data)
    if held is not None:
        return held, "test split"
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
    run_dir = Path(run).expanduser()
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
    console.print(Text.assemble(("difflab train-classifier", "bold"), f" {run_dir} -> {out}: NoisyClassifier "
                                f"({count_parameters(model) / 1e6:.2f}M parameters), {type(model.process).__name__}, "
                                f"{saved.num_classes} classes, t ~ {saved.loss.time_sampler}, {len(dataset)} items"),
                  highlight=False, soft_wrap=True)  # a Text prints literally: a folder named [/x] is no markup
    loss = NoisyClassifierLoss(build_loss(saved.loss).time_sampler)
    trainer = Trainer(model, loss, dataset, train_cfg, out, prepare=ClassLabels(), run_config=to_dict(saved))
    result = trainer.train(resume=resume)

    device = resolve_device()
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
    console.print(f"held-out accuracy of the EMA classifier at step {result.step} ({split}, {len(eval_data)} items):",
                  markup=False, highlight=False)
    console.print(value_table({f"{t:g}": a for t, a in accuracy.items()}, "t", "accuracy"))
    console.print(f"wrote {out / 'accuracy.json'}", markup=False, highlight=False, soft_wrap=True)
    return ClassifierTrainResult(result, accuracy, split)
