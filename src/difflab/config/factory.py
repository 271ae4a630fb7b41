"""The factory: the only place where config strings become objects.

Every builder takes its config section (plus what it must know of the data) and returns a library
object; a bad value raises one DifflabError naming the key and the valid choices.
"""

from __future__ import annotations

import os
from dataclasses import replace

from torch import nn

from difflab.baselines.base import Baseline
from difflab.baselines.registry import build_baseline
from difflab.config.schema import ClassifierRun, DataConfig, LossConfig, ModelConfig, ProcessConfig, RunConfig
from difflab.data.datasets import build_dataset
from difflab.distill.consistency import CONSISTENCY_GRID, training_objective
from difflab.nets.registry import NETWORKS, build_network
from difflab.objectives import DiffusionLoss, TimeSampler
from difflab.objectives.meanflow import MeanFlowLoss
from difflab.param import X0, EDMDenoiser, NetworkDenoiser, get_parameterization
from difflab.param.classifier import TimeClassifier
from difflab.param.consistency import ConsistencyDenoiser
from difflab.process import PROCESSES, NoiseProcess
from difflab.train.objective import DenoisingObjective
from difflab.train.prepare import Captions, ClassLabels, Unconditional
from difflab.utils.errors import DifflabError, check_choice
from difflab.utils.keywords import check_keywords

CONDITIONINGS = ("none", "class", "text")
PRECONDITIONINGS = ("none", "edm", "consistency")
OBJECTIVES = ("denoising", "consistency_training", "meanflow")


def build_process(cfg: ProcessConfig) -> NoiseProcess:
    cls = PROCESSES[check_choice("process", cfg.name, PROCESSES)]
    try:
        return cls(**cfg.options)
    except TypeError as e:
        raise DifflabError(f"process.options for {cfg.name!r}: {e}") from None
    except ValueError as e:
        raise DifflabError(f"process.options: {e}") from None


def build_data(cfg: DataConfig):
    """The data set; `~` in a path option (`--set data.options.root=~/pictures`) is the home folder."""
    return build_dataset(cfg.name, **{k: _home(v) for k, v in cfg.options.items()})


def held_out_config(data: DataConfig) -> DataConfig | None:
    """The held-out split matching a training-data config (digits split=train -> split=test), else None.

    The one held-out rule of every job (eval's memorization check, the classifier's accuracy, analyze).
    The subset options of the training data (first=N, repeat=k) are not carried over: a run trained on the
    first 10 digits is judged against the whole test split, not its first 10 images repeated."""
    if data.name == "digits" and data.options.get("split", "train") == "train":
        kept = {k: v for k, v in data.options.items() if k not in ("first", "repeat")}
        return replace(data, options={**kept, "split": "test"})
    return None


def data_levels(data: DataConfig) -> int | None:
    """The number of discrete levels L of a data config's values in [-1, 1] (None: continuous data).

    Digits at their native 8x8 are the integers 0..16: 17 levels; resized digits, image folders (resized,
    flipped) and vectors are treated as continuous. The one rule of the likelihoods' dequantization and
    the baselines' level count (difflab.likelihood.result)."""
    if data.name == "digits" and data.options.get("size", 8) == 8:
        return 17
    return None


def _home(value):
    """A string that starts with ~/ (or is ~) with the home folder expanded; anything else unchanged."""
    if isinstance(value, str) and (value == "~" or value.startswith("~/")):
        return os.path.expanduser(value)
    return value


def network_kwargs(cfg: ModelConfig, data_shape: tuple[int, ...], num_classes: int | None,
                   context_dim: int | None) -> dict:
    """The network's constructor arguments: the config's options plus what the data decides."""
    name = cfg.network
    check_choice("network", name, NETWORKS)
    kw = dict(cfg.options)
    family = "mlp" if name == "mlp" else ("dit" if name.lower().startswith("dit") else "unet")
    if family == "mlp":
        if len(data_shape) != 1:
            raise DifflabError(f"network 'mlp' is for vector data; this data set has items of shape {data_shape}: "
                               "use model.network=unet or dit")
        kw.setdefault("data_dim", data_shape[0])
    else:
        if len(data_shape) != 3 or data_shape[1] != data_shape[2]:
            raise DifflabError(f"network {name!r} needs square images (C, H, H); the data has shape {data_shape}: "
                               "use model.network=mlp for vector data")
        kw.setdefault("in_channels", data_shape[0])
        kw.setdefault("input_size" if family == "dit" else "image_size", data_shape[1])
    check_choice("model.conditioning", cfg.conditioning, CONDITIONINGS)
    if cfg.conditioning == "class":
        if num_classes is None:
            raise DifflabError("model.conditioning=class needs a labelled data set; this one has no labels")
        kw.setdefault("num_classes", num_classes)
    if cfg.conditioning == "text":  # ModelConfig refuses text with the MLP (no cross-attention)
        kw.setdefault("context_dim", context_dim)
    return kw


def build_denoiser(cfg: RunConfig, process: NoiseProcess, data_shape: tuple[int, ...],
                   num_classes: int | None = None, context_dim: int | None = None) -> nn.Module:
    """Network + parameterization + preconditioning -> a denoiser module."""
    m = cfg.model
    net = build_network(m.network, **network_kwargs(m, data_shape, num_classes, context_dim))
    check_choice("model.preconditioning", m.preconditioning, PRECONDITIONINGS)
    parameterization = get_parameterization(m.parameterization)  # the name becomes the object, once
    if m.preconditioning == "edm":
        if parameterization is not X0:
            raise DifflabError("model.preconditioning=edm makes the network an x0 predictor: "
                               "set model.parameterization=x0")
        return EDMDenoiser(net, process, sigma_data=m.sigma_data)
    if m.preconditioning == "consistency":
        return ConsistencyDenoiser(NetworkDenoiser(net, process, parameterization, m.time_scale),
                                   sigma_data=m.sigma_data)
    return NetworkDenoiser(net, process, parameterization, m.time_scale)


def build_loss(cfg: LossConfig, model: ModelConfig | None = None) -> DiffusionLoss:
    """The loss of `cfg`; the edm weighting takes sigma_data from the model config (as the preconditioner)."""
    sampler = TimeSampler(cfg.time_sampler, mean=cfg.mean, std=cfg.std, shift=cfg.shift)
    kw = {"gamma": cfg.gamma} if cfg.weighting == "min_snr" else {}
    if cfg.weighting == "edm" and model is not None:
        kw["sigma_data"] = model.sigma_data
    return DiffusionLoss(sampler, cfg.weighting, **kw)


def build_meanflow_loss(options: dict, loss: LossConfig, teacher=None) -> MeanFlowLoss:
    """MeanFlow's loss (difflab.objectives.meanflow) with `options` its keywords (ratio_r_neq_t, p, c); the loss
    section's time density draws r and t (the paper's: time_sampler=logit_normal, mean=-0.4, std=1)."""
    sampler = TimeSampler(loss.time_sampler, mean=loss.mean, std=loss.std, shift=loss.shift)
    options = check_keywords(MeanFlowLoss, dict(options), "model.objective_options for meanflow",
                             skip=("teacher", "time_sampler"))
    return MeanFlowLoss(teacher, time_sampler=sampler, **options)


def build_objective(cfg: RunConfig):
    """(loss_fn, MakeObjective) of the trainer for model.objective: the loss section's DiffusionLoss in
    DenoisingObjective, MeanFlow's loss in it, or consistency training from scratch (its curriculum over
    train.max_steps unless model.objective_options.total_steps is given)."""
    kind = check_choice("model.objective", cfg.model.objective, OBJECTIVES)
    if kind == "denoising":
        return build_loss(cfg.loss, cfg.model), DenoisingObjective
    if kind == "meanflow":
        if cfg.model.parameterization != "velocity" or cfg.model.preconditioning != "none":
            raise DifflabError("model.objective=meanflow trains an average velocity: set "
                               "model.parameterization=velocity and model.preconditioning=none")
        return build_meanflow_loss(cfg.model.objective_options, cfg.loss), DenoisingObjective
    if cfg.model.preconditioning != "consistency":
        raise DifflabError("model.objective=consistency_training fits a consistency function: "
                           "set model.preconditioning=consistency")
    return training_objective(dict(cfg.model.objective_options), cfg.train.max_steps)


def objective_defaults(cfg: RunConfig) -> RunConfig:
    """What model.objective implies, fixed at a run's first start (consistency_defaults, meanflow_defaults)."""
    return meanflow_defaults(consistency_defaults(cfg))


def meanflow_defaults(cfg: RunConfig) -> RunConfig:
    """What model.objective=meanflow implies: the network's interval embedding (model.options
    interval_embedding=true) and, when the sample section names no sampler, the meanflow sampler at 1 step
    (or the section's steps if 4 or fewer) on the grid uniform in t."""
    m, s = cfg.model, cfg.sample
    if m.objective != "meanflow":
        return cfg
    m = replace(m, options={**m.options, "interval_embedding": True})
    if s.sampler == "default":
        s = replace(s, sampler="meanflow", steps=s.steps if s.steps <= 4 else 1)
    return replace(cfg, model=m, sample=s)


def consistency_defaults(cfg: RunConfig) -> RunConfig:
    """What model.objective=consistency_training implies, fixed at a run's first start (and so written into
    every checkpoint's config): the consistency preconditioning in place of `none`; the curriculum length
    K = train.max_steps in model.objective_options.total_steps, so a resume with more --steps continues the
    same curriculum; and, when the sample section names no sampler, the multistep consistency sampler (2 steps,
    or the section's if 4 or fewer) on a Karras grid from sigma~ = 80 (difflab.distill.consistency)."""
    m, s = cfg.model, cfg.sample
    if m.objective != "consistency_training":
        return cfg
    options = dict(m.objective_options)
    if "total_steps" not in options and cfg.train.max_steps is not None:
        options["total_steps"] = cfg.train.max_steps
    m = replace(m, objective_options=options,
                preconditioning="consistency" if m.preconditioning == "none" else m.preconditioning)
    if s.sampler == "default":
        default_grid = s.schedule == "default"
        s = replace(s, sampler="consistency", steps=s.steps if s.steps <= 4 else 2,
                    schedule="karras" if default_grid else s.schedule,
                    schedule_options={**CONSISTENCY_GRID, **s.schedule_options} if default_grid else s.schedule_options)
    return replace(cfg, model=m, sample=s)


def build_text_encoder(cfg: ModelConfig, device="cpu"):
    """The frozen text encoder of a text-conditional model (None otherwise)."""
    if cfg.conditioning != "text":
        return None
    from difflab.nets.text_encoder import TextEncoder

    return TextEncoder(cfg.text_encoder, device=device)


def build_baseline_model(cfg: RunConfig, data_shape: tuple[int, ...], num_classes: int | None = None) -> Baseline:
    """The model of a run whose family is a baseline (vae | gan | pixelcnn): difflab.baselines' builder on the
    data's shape and levels (data_levels), model.options its constructor options; model.conditioning=class
    adds num_classes. Its trainer objective is difflab.baselines.registry.baseline_objective(cfg.family)."""
    options = dict(cfg.model.options)
    kind = check_choice("model.conditioning", cfg.model.conditioning, CONDITIONINGS)
    if kind == "text":
        raise DifflabError(f"a {cfg.family} baseline takes no text condition: use model.conditioning=none or class")
    if kind == "class":
        if num_classes is None:
            raise DifflabError("model.conditioning=class needs a labelled data set; this one has no labels")
        options.setdefault("num_classes", num_classes)
    return build_baseline(cfg.family, data_shape, data_levels(cfg.data), **options)


def build_prepare(cfg: RunConfig, text_encoder=None):
    """The trainer's prepare(batch, generator) -> (x0, cond) for model.conditioning, with the run's
    condition dropout train.p_uncond (difflab.train.prepare); text needs the run's text encoder."""
    kind = check_choice("model.conditioning", cfg.model.conditioning, CONDITIONINGS)
    if kind == "class":
        return ClassLabels(cfg.train.p_uncond)
    if kind == "text":
        if text_encoder is None:
            raise DifflabError("model.conditioning=text needs the run's text encoder (build_text_encoder)")
        return Captions(text_encoder.encode, cfg.train.p_uncond)
    return Unconditional()


def build_classifier(saved: ClassifierRun) -> TimeClassifier:
    """The TimeClassifier (NoisyClassifier + the run's process) that a classifier's config describes, untrained."""
    shape = tuple(saved.data_shape)
    if len(shape) != 3 or shape[1] != shape[2]:
        raise DifflabError(f"the noise-aware classifier takes square images (C, H, H); the run's data has items "
                           f"of shape {shape}: classifier guidance is for image runs")
    kw = {**saved.classifier.options, "in_channels": shape[0], "num_classes": saved.num_classes,
          "image_size": shape[1]}
    return TimeClassifier(build_network("classifier", **kw), build_process(saved.process))
