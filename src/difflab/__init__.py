"""difflab: train, sample, measure and understand diffusion and flow generative models, to the formula."""

__version__ = "0.1.0"

__all__ = ["__version__", "sample"]


def __getattr__(name: str):
    # `difflab.sample` without importing every sampler when only the version is wanted.
    if name == "sample":
        from difflab.sampling import sample

        return sample
    raise AttributeError(f"module 'difflab' has no attribute {name!r}")
