"""Drawing samples from a trained model: conditions, guidance and the sampler settings in one place.

Used by the trainer's preview grids and by `difflab sample`. Guidance composes as denoiser wrappers,
classifier-free inside, the classifier gradient outside (seeds 001, 002):

    eps~ = eps_u + w (eps_c - eps_u) - s sigma grad_x log p_phi(y | x_t, t).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from difflab.baselines.base import Baseline
from difflab.config.sampling import check_options, grid_options
from difflab.data.datasets import default_value_range
from difflab.guidance.cfg import classifier_free
from difflab.guidance.classifier import ClassifierGuidance
from difflab.param.denoiser import Denoiser
from difflab.sampling import resolve_sampler, sample
from difflab.sampling.api import SampleResult
from difflab.sampling.registry import SAMPLERS
from difflab.utils.cond import Cond
from difflab.utils.errors import DifflabError
from difflab.utils.progress import Progress


def class_labels(labels: Sequence[int], num_classes: int, n: int, whose: str, device) -> Tensor:
    """n class labels (n,) long from one label or n labels, each checked against 0..num_classes-1."""
    y = torch.as_tensor(list(labels), dtype=torch.long)
    bad = y[(y < 0) | (y >= num_classes)]
    if bad.numel():
        raise DifflabError(f"class {int(bad[0])} is outside {whose} classes 0..{num_classes - 1}")
    if y.numel() == 1:
        y = y.expand(n)
    if y.numel() != n:
        raise DifflabError(f"give one class or {n} classes; got {y.numel()}")
    return y.to(device)


def build_cond(model, meta, n: int, labels: Sequence[int] | None, prompts: Sequence[str] | None,
               text_encoder, device) -> dict | None:
    """The condition dict for n samples of a model built with `meta` (None for unconditional models).

    A class model without labels cycles through its classes; a text model needs prompts; a condition the
    model does not take is refused, never dropped.
    """
    if prompts is not None and text_encoder is None:
        raise DifflabError("this model is not text-conditional: drop --prompt")
    if labels is not None and prompts is not None:
        raise DifflabError("give --class or --prompt, not both: this model takes one kind of condition")
    if labels is not None:
        if meta.num_classes is None:
            raise DifflabError("this model is not class-conditional: drop --class, or guide it toward the class "
                               "with its classifier (--classifier-scale S, after `difflab train-classifier RUN`)")
        return {"class_labels": class_labels(labels, meta.num_classes, n, "this model's", device)}
    if prompts is not None:
        prompts = list(prompts)
        if any(not p.strip() for p in prompts):
            raise DifflabError("a prompt is empty: give some text, e.g. --prompt 'a red circle'")
        if len(prompts) == 1:
            prompts = prompts * n
        if len(prompts) != n:
            raise DifflabError(f"give one prompt or {n} prompts; got {len(prompts)}")
        context, mask = text_encoder.encode(prompts)
        return {"context": context.to(device), "context_mask": mask.to(device)}
    if text_encoder is not None:
        raise DifflabError("this model is text-conditional: give a prompt (--prompt 'a small red circle')")
    if meta.num_classes is not None:
        return {"class_labels": (torch.arange(n) % meta.num_classes).to(device)}
    return None


def negative_cond(prompt: str | None, n: int, text_encoder, device) -> dict | None:
    """A negative prompt as the unconditional branch of classifier-free guidance."""
    if prompt is None:
        return None
    if text_encoder is None:
        raise DifflabError("a negative prompt needs a text-conditional model")
    context, mask = text_encoder.encode([prompt] * n)
    return {"context": context.to(device), "context_mask": mask.to(device)}


class ClassifierLabelsOnly(Denoiser):
    """A model that is not class-conditional under classifier guidance: cond["class_labels"] is the
    classifier's target, so it is taken out of cond (nothing else is) before the network sees it."""

    def __init__(self, denoiser):
        self.denoiser = denoiser
        self.parameterization, self.process = denoiser.parameterization, denoiser.process

    def __call__(self, x: Tensor, t: Tensor, cond: Cond | None = None) -> Tensor:
        rest = None if cond is None else {k: v for k, v in cond.items() if k != "class_labels"}
        return self.denoiser(x, t, rest or None)


def guidance_chain(cfg_scale: float = 1.0, uncond: Cond | None = None, classifier=None,
                   classifier_scale: float = 0.0, labels_to_network: bool = True) -> Callable | None:
    """The `guidance` argument of difflab.sample (denoiser -> guided denoiser), or None for no guidance.

    Classifier-free guidance with weight w = cfg_scale (when w != 1; uncond: a negative condition) inside,
    classifier guidance with scale s = classifier_scale (when a classifier is given and s != 0) outside:
    eps~ = eps_u + w (eps_c - eps_u) - s sigma grad log p(y | x_t) (Dhariwal & Nichol 2021, Algorithm 1;
    Ho & Salimans 2022; seeds 001, 002). The classifier then runs once per step on the un-doubled batch.
    labels_to_network=False: the model is not class-conditional, cond["class_labels"] reaches only the
    classifier.
    """
    free = classifier_free(cfg_scale, uncond) if cfg_scale != 1.0 else None
    by_classifier = classifier is not None and classifier_scale != 0.0
    if free is None and not by_classifier:
        return None

    def guide(denoiser):
        inner = denoiser if free is None else free(denoiser)
        if not by_classifier:
            return inner
        if not labels_to_network:
            inner = ClassifierLabelsOnly(inner)
        return ClassifierGuidance(inner, classifier, classifier_scale)

    return guide


def _check_classifier(classifier, model, meta) -> int:
    """The classifier's number of classes, after checking that it fits the model; one message if not."""
    process = getattr(classifier, "process", None)
    if process is not None and repr(process) != repr(model.process):
        raise DifflabError(f"the classifier was trained on {process!r} but the model samples {model.process!r}: "
                           "train the run's own classifier with `difflab train-classifier RUN`")
    num_classes = getattr(classifier, "num_classes", None) or meta.num_classes
    if num_classes is None:
        raise DifflabError("the classifier does not say its number of classes (num_classes)")
    if meta.num_classes is not None and num_classes != meta.num_classes:
        raise DifflabError(f"the classifier has {num_classes} classes, the model {meta.num_classes}: "
                           "train the run's own classifier with `difflab train-classifier RUN`")
    return num_classes


class Generated(NamedTuple):
    """generate()'s answer. x: (n, *data_shape) in the data range; labels: (n,) the class of each sample
    (the model's condition or the classifier's target; None when there is none); nfe: denoiser calls;
    sampled: the sampler's own SampleResult (unclamped x, trajectory, times)."""

    x: Tensor
    labels: Tensor | None
    nfe: int
    sampled: SampleResult


def resolve_device(name: str | None = None) -> str:
    """A device name checked against this machine: 'cuda' when available unless one is named; a name torch
    does not know, or CUDA/MPS on a machine without it, raises one DifflabError."""
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(name).type
    except (RuntimeError, TypeError):
        raise DifflabError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise DifflabError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}); "
                           "use --device cpu, or leave --device out")
    if kind == "cuda" and torch.device(name).index is not None and torch.device(name).index >= torch.cuda.device_count():
        raise DifflabError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                           "use cuda:0 .. cuda:N-1")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise DifflabError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    if kind not in ("cpu", "cuda", "mps"):
        raise DifflabError(f"--device {name}: difflab runs on cpu, cuda or mps")
    return name


def run_sample_keywords(s, sampler: str | None, schedule, options: dict | None,
                        schedule_options: dict | None) -> tuple[dict, dict]:
    """(sampler keywords, grid keywords) of a job on a run whose sample config is `s`: the run's own
    sample.options / schedule_options, kept only while the job uses the run's sampler / grid (another sampler
    or grid starts from its own defaults: a Karras grid's sigma_max means nothing to the uniform grid),
    updated by the user's --option / --schedule-option."""
    own = s.options if sampler in (None, s.sampler) else {}
    own_grid = s.schedule_options if schedule is None or schedule == s.schedule else {}
    return {**own, **(options or {})}, {**own_grid, **(schedule_options or {})}


def check_count(n, what: str = "--n") -> int:
    """A number of samples: an integer >= 1."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DifflabError(f"{what} must be a whole number of samples >= 1; got {n!r}")
    return n


@torch.no_grad()
def generate(model, meta, n: int, *, sampler: str, steps: int, schedule: str, seed: int,
             guidance: float = 1.0, labels=None, prompts=None, negative: str | None = None,
             text_encoder=None, device="cpu", return_trajectory: bool = False,
             classifier=None, classifier_scale: float = 0.0, options: dict | None = None,
             schedule_options: dict | None = None, progress: bool = False, callback=None) -> Generated:
    """n samples (n, *data_shape) clamped to the data range (meta.value_range, see clamp_to_data), their
    labels and the sampler's NFE count (Generated).

    guidance: the classifier-free weight w (1 = none). classifier(x_t, t) -> logits with scale
    classifier_scale: classifier guidance toward `labels` (see guidance_chain); a class-conditional model
    without labels cycles through its classes, any other model needs labels, which then reach only the
    classifier. options: the sampler's own keywords (eta, order, s_churn, ...); schedule_options: the
    grid's (rho, shift, t_max, ...), both checked by name and type. A reverse-SDE sampler on a process with
    alpha(1) = 0 starts at t_max = difflab.config.sampling.SDE_T_MAX unless schedule_options says otherwise.
    progress: show the sampler's steps (difflab.utils.progress: a bar on a terminal, plain lines elsewhere).
    callback: called with each step's difflab.sampling.core.Step (its state and x0 estimate; jobs.pipeline).
    A baseline (VAE, GAN, PixelCNN) draws with its own sampler: jobs.baselines.generate_baseline.
    """
    check_count(n)
    if isinstance(model, Baseline):
        from difflab.jobs.baselines import generate_baseline  # it builds on this module

        return generate_baseline(model, meta, n, seed=seed, labels=labels, guidance=guidance, prompts=prompts,
                                 classifier=classifier, classifier_scale=classifier_scale, device=device)
    if not isinstance(classifier_scale, (int, float)) or not math.isfinite(classifier_scale):
        raise DifflabError(f"the classifier scale must be a finite number; got {classifier_scale!r}")
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance):
        raise DifflabError(f"the guidance weight must be a finite number (1 = none); got {guidance!r}")
    if negative is not None and guidance == 1.0:
        raise DifflabError("a negative prompt replaces the unconditional branch of classifier-free guidance, "
                           "which guidance weight 1 never evaluates: add --guidance W with W != 1 (e.g. 3), "
                           "or drop --negative")
    by_classifier = classifier is not None and classifier_scale != 0.0
    class_model = meta.num_classes is not None
    if by_classifier and not class_model:
        num_classes = _check_classifier(classifier, model, meta)
        if labels is None:
            raise DifflabError("classifier guidance of a model that is not class-conditional needs the target "
                               f"class: add --class K (K in 0..{num_classes - 1})")
        cond = build_cond(model, meta, n, None, prompts, text_encoder, device) or {}
        cond["class_labels"] = class_labels(labels, num_classes, n, "the classifier's", device)
    else:
        if by_classifier:
            _check_classifier(classifier, model, meta)
        cond = build_cond(model, meta, n, labels, prompts, text_encoder, device)
    if guidance != 1.0 and not class_model and text_encoder is None:
        raise DifflabError("classifier-free guidance needs a conditional model (class or text); use --guidance 1 "
                           "(none), or --classifier-scale for classifier guidance")
    uncond = negative_cond(negative, n, text_encoder, device) if guidance != 1.0 else None
    guide = guidance_chain(guidance, uncond, classifier if by_classifier else None, classifier_scale,
                           labels_to_network=class_model)
    name = resolve_sampler(sampler, model.process, steps)
    kwargs = check_options(SAMPLERS[name], options, f"sampler {name!r} (--option)")
    kwargs["schedule_options"] = grid_options(model.process, name, schedule, schedule_options, steps=steps)
    with Progress(steps, f"sample {n}", "step", enabled=progress) as bar:
        result = sample(model, (n, *meta.data_shape), sampler=name, steps=steps, schedule=schedule, seed=seed, cond=cond,
                        guidance=guide, device=device, return_trajectory=return_trajectory,
                        callback=lambda step: (bar.advance(), callback and callback(step)), **kwargs)
    y = None if cond is None or "class_labels" not in cond else cond["class_labels"]
    return Generated(clamp_to_data(result.x, meta), y, result.nfe, result)


def data_range(meta) -> tuple[float, float] | None:
    """The run's data range: meta.value_range (written from the data set's `value_range`; None: unbounded),
    or where a run does not record it (no attribute, or "auto") the data package's default for its shape
    (images [-1, 1], vectors unbounded)."""
    bounds = getattr(meta, "value_range", "auto")
    return default_value_range(meta.data_shape) if isinstance(bounds, str) and bounds == "auto" else bounds


def clamp_to_data(x: Tensor, meta=None) -> Tensor:
    """x clamped to the run's data range (data_range(meta); None: unbounded, x unchanged). Without meta:
    [-1, 1], the image range."""
    bounds = (-1.0, 1.0) if meta is None else data_range(meta)
    return x if bounds is None else x.clamp(*bounds)
