"""difflab: train, sample, measure and understand diffusion and flow generative models, to the formula."""

__version__ = "0.1.0"
