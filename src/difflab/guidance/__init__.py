"""Guidance as denoiser wrappers: classifier-free (one batched pass) and classifier gradients."""

from difflab.guidance.cfg import ClassifierFreeGuidance, classifier_free
from difflab.guidance.classifier import ClassifierGuidance, classifier_guided

__all__ = ["ClassifierFreeGuidance", "ClassifierGuidance", "classifier_free", "classifier_guided"]
