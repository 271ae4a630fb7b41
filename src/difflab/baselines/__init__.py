"""The families diffusion is measured against (seed 000, 002, 003): VAE, DC-GAN, PixelCNN."""

from difflab.baselines.base import Baseline, from_levels, to_levels
from difflab.baselines.registry import BASELINES, baseline_objective, build_baseline, check_baseline_options

__all__ = ["BASELINES", "Baseline", "baseline_objective", "build_baseline", "check_baseline_options", "from_levels",
           "to_levels"]
