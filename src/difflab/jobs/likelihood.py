"""`difflab eval RUN --metrics nll`: bits/dim of real data under a run's model (issue 12).

The data are the run's held-out split by default (config.factory.held_out_config: digits split=train ->
test), or its training data with split="train". Methods (difflab.likelihood):

    ode   -log p by the probability-flow ODE (Song et al. 2021): the exact divergence (autograd) for data
          of at most EXACT_MAX_DIM dimensions, else, or with --probes K, Hutchinson's estimator with K
          Rademacher probes (default HUTCHINSON_PROBES); adaptive RK45 at rtol = atol = ODE_TOL
    elbo  the continuous-time ELBO (Kingma et al. 2021), --probes draws of (t, eps) per image (default 16)
    vlb   the discrete DDPM bound (Ho et al. 2020; process ddpm only), --probes passes (default 1)

A baseline has its own likelihood (difflab.baselines): a PixelCNN's is exact, a VAE's is the IWAE bound
with k = --probes importance samples (default IWAE_K; Burda et al. 2016) or its ELBO with --method elbo;
a GAN has none.

Dequantization (difflab.likelihood.result): data with L levels (config.factory.data_levels: digits at 8x8
have 17) are dequantized uniformly and -D log Delta is added, so a diffusion model's bits/dim is that of
the discrete data on the integer grid, the quantity a PixelCNN's or a VAE's discrete likelihood gives:
the families' numbers compare directly. Continuous data (vectors, resized images) give bits/dim of the
density.

Reported: the mean bits/dim over the N images, its standard error std_i / sqrt(N) (it holds both the
spread of the images and each image's Monte-Carlo noise), the Monte-Carlo part alone sqrt(sum se_i^2) / N
(diffusion methods), the mean NLL in nats per image and the network evaluations.
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace

import torch
from torch import Tensor

from difflab.baselines.base import Baseline
from difflab.config.factory import build_data, build_prepare, data_levels, held_out_config
from difflab.data.datasets import collate
from difflab.likelihood import check_levels, continuous_elbo, discrete_vlb, ode_log_likelihood
from difflab.process.discrete import DiscreteVP
from difflab.utils.errors import DifflabError, check_choice
from difflab.utils.progress import Progress

METHODS = ("ode", "elbo", "vlb")
SPLITS = ("heldout", "train")
EXACT_MAX_DIM = 16  # above it the D vector-Jacobian products of the exact divergence cost too much on a CPU
HUTCHINSON_PROBES = 4
ELBO_DRAWS = 16
IWAE_K = 100
ODE_TOL = 1e-5
ELBO_EDGE = 1e-3  # the ELBO of a process with sigma(0) = 0 or alpha(1) = 0 (rectified flow) runs on [1e-3, 1 - 1e-3]


def nll_data(cfg, split: str = "heldout", n: int | None = None) -> tuple[dict, str]:
    """The first n items (all by default) of the run's held-out split (or training data) as one batch dict,
    and its description. One DifflabError when the data set has no held-out split."""
    check_choice("--split", split, SPLITS)
    data = cfg.data
    if split == "heldout":
        held = held_out_config(data)
        if held is None:
            raise DifflabError(f"data set {data.name!r} with options {data.options} has no held-out split to measure "
                               "the likelihood on: pass --split train to measure it on the training data")
        data = held
    if "hflip" in data.options:
        data = replace(data, options={**data.options, "hflip": False})
    dataset = build_data(data)
    count = len(dataset) if n is None else min(n, len(dataset))
    return collate([dataset[i] for i in range(count)]), f"{data.name} {data.options} ({count} of {len(dataset)})"


# ---------------------------------------------------------------- one batch under each family


def baseline_k(model: Baseline, method: str | None, probes: int | None) -> int | None:
    """The importance samples k of a baseline's log_likelihood (None: exact or ELBO); one DifflabError for a
    GAN (no likelihood) and for options the family does not take."""
    if not model.has_likelihood:
        raise DifflabError(f"a {model.family.upper()} defines no likelihood (an implicit model: samples, no density): "
                           "drop nll from --metrics")
    if model.family == "pixelcnn":
        if method is not None or probes is not None:
            raise DifflabError("a PixelCNN's likelihood is exact (one pass): drop --method and --probes")
        return None
    if method not in (None, "elbo"):
        raise DifflabError(f"--method {method} is a diffusion likelihood; a {model.family.upper()}'s nll is its IWAE "
                           f"bound (k = --probes, default {IWAE_K}) or, with --method elbo, its ELBO")
    if method == "elbo":
        if probes is not None:
            raise DifflabError("the ELBO of a VAE takes one draw: drop --probes (or drop --method elbo for IWAE_k)")
        return None
    return IWAE_K if probes is None else probes


def _baseline_nll(model: Baseline, x: Tensor, labels, k: int | None, generator):
    """(nats per image, None, network evaluations) of a baseline's own likelihood."""
    ll = model.log_likelihood(x, generator=generator, k=k, labels=labels)
    return -ll.double().cpu(), None, 1 if k is None else k


def _diffusion_nll(model, x: Tensor, cond, method: str, probes: int | None, levels, generator):
    """(nats per image, Monte-Carlo se per image, network evaluations) by the ODE or a bound."""
    if method == "ode":
        exact = probes is None and x[0].numel() <= EXACT_MAX_DIM
        r = ode_log_likelihood(model, x, cond=cond, divergence="exact" if exact else "hutchinson",
                               probes=HUTCHINSON_PROBES if probes is None else probes, levels=levels,
                               rtol=ODE_TOL, atol=ODE_TOL, generator=generator)
    elif method == "elbo":
        r = continuous_elbo(model, x, cond=cond, samples=ELBO_DRAWS if probes is None else probes, levels=levels,
                            generator=generator, **elbo_span(model.process))
    else:
        r = discrete_vlb(model, x, cond=cond, samples=1 if probes is None else probes, levels=levels,
                         generator=generator)
    return r.nll, r.nll_stderr, r.nfe


def elbo_span(process) -> dict:
    """t_start / t_end of the continuous ELBO: the process's own span, pulled in by ELBO_EDGE at an end where
    the decoder's sigma(t0) or the prior's log-SNR(1) degenerates."""
    span = {"t_start": ELBO_EDGE} if process.t_min == 0 else {}
    if float(process.alpha(torch.tensor(1.0, dtype=torch.float64))) == 0:
        span["t_end"] = 1 - ELBO_EDGE
    return span


def check_method(model, method: str | None, levels: int | None) -> str | None:
    """The method a diffusion model's nll uses (default ode), checked against its process and data."""
    if isinstance(model, Baseline):
        return None if method is None else check_choice("--method", method, METHODS)
    method = check_choice("--method", "ode" if method is None else method, METHODS)
    if method == "vlb" and not isinstance(model.process, DiscreteVP):
        raise DifflabError(f"--method vlb is the discrete DDPM bound, and this run's process "
                           f"({type(model.process).__name__}) is continuous: use --method elbo or ode")
    if method == "vlb" and levels is None:
        raise DifflabError("--method vlb ends in a discretized decoder, which needs data on discrete levels; "
                           "these data are continuous: use --method elbo or ode")
    return method


# ---------------------------------------------------------------- the job


def evaluate_nll(loaded, *, method: str | None = None, probes: int | None = None, n: int | None = None,
                 split: str = "heldout", levels: int | None | str = "auto", seed: int = 0, batch_size: int = 500,
                 device: str = "cpu", progress: bool = False) -> tuple[dict[str, float], dict]:
    """(results, settings) of the nll of `loaded`'s model on its data (module docstring).

    levels: the data's number of levels ("auto": config.factory.data_levels; None: continuous data); data
    off the declared levels are refused with one message. Draws (dequantization, probes, t, importance
    samples) come from one generator seeded `seed`, so a result is reproducible for the same batch_size.
    """
    if probes is not None and (isinstance(probes, bool) or not isinstance(probes, int) or probes < 1):
        raise DifflabError(f"--probes must be a whole number >= 1; got {probes!r}")
    cfg, model = loaded.config, loaded.model
    if getattr(loaded, "autoencoder", None) is not None:
        raise DifflabError("a latent diffusion run models its autoencoder's latents, not the images: their nll is "
                           "not the data's bits/dim; measure nll on a pixel-space run")
    levels = data_levels(cfg.data) if levels == "auto" else levels
    method = check_method(model, method, levels)
    k = baseline_k(model, method, probes) if isinstance(model, Baseline) else None  # before any data are read
    batch, describe = nll_data(cfg, split, n)
    x = batch["x"]
    if levels is not None:
        check_levels(x, levels)
    prepare = build_prepare(cfg, loaded.text_encoder) if not isinstance(model, Baseline) else None
    generator = torch.Generator().manual_seed(seed)
    nats, mc_se, nfe = [], [], 0
    with Progress(len(x), "likelihood", unit="img", enabled=progress, stream=sys.stderr) as bar:
        for start in range(0, len(x), batch_size):
            part = {k: v[start:start + batch_size] for k, v in batch.items()}
            xb = part["x"].to(device)
            if isinstance(model, Baseline):
                labels = part["label"].to(device) if model.num_classes is not None else None
                nll, se, calls = _baseline_nll(model, xb, labels, k, generator)
            else:
                cond = prepare.condition(part, torch.device(device))
                nll, se, calls = _diffusion_nll(model, xb, cond, method, probes, levels, generator)
            nats.append(nll.double().cpu())
            mc_se.append(None if se is None else se.double().cpu())
            nfe += calls
            bar.advance(len(xb))
    nll = torch.cat(nats)
    D, N = x[0].numel(), len(nll)
    bpd = nll / (D * math.log(2))
    results = {"bits_per_dim": float(bpd.mean()),
               "bits_per_dim_se": float(bpd.std() / math.sqrt(N)) if N > 1 else math.nan}
    if all(s is not None for s in mc_se):
        results["bits_per_dim_mc_se"] = float(torch.cat(mc_se).pow(2).sum().sqrt() / (N * D * math.log(2)))
    results["nll_nats_per_image"] = float(nll.mean())
    settings = {"method": _describe_method(model, method, probes, D), "data": describe, "n": N,
                "levels": levels, "dequantization": _dequantization(model, method, levels),
                "network_evaluations": nfe, "seed": seed, "batch_size": batch_size}
    return results, settings


def _describe_method(model, method: str | None, probes: int | None, dim: int) -> str:
    if isinstance(model, Baseline):
        k = baseline_k(model, method, probes)
        return f"exact ({model.family})" if model.family == "pixelcnn" else (
            "ELBO (vae)" if k is None else f"IWAE, k={k} ({model.family})")
    if method == "ode":
        if probes is None and dim <= EXACT_MAX_DIM:
            return f"ode, exact divergence, rtol=atol={ODE_TOL:g}"
        return f"ode, Hutchinson with {HUTCHINSON_PROBES if probes is None else probes} Rademacher probes, " \
               f"rtol=atol={ODE_TOL:g}"
    if method == "elbo":
        span = elbo_span(model.process)
        return (f"continuous ELBO, {ELBO_DRAWS if probes is None else probes} stratified draws per image, t in "
                f"[{span.get('t_start', model.process.t_min):g}, {span.get('t_end', 1):g}]")
    return f"discrete DDPM bound, {1 if probes is None else probes} pass(es)"


def _dequantization(model, method: str | None, levels: int | None) -> str:
    if levels is None:
        return "none: continuous data, bits/dim of the density"
    if isinstance(model, Baseline) or method == "vlb":
        return f"none: the model's probability of the {levels} discrete levels"
    return f"uniform on {levels} levels, -D log(2/{levels - 1}) added: bits/dim of the discrete data"
