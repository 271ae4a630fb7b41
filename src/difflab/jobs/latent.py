"""Latent diffusion in the jobs: what `train`, `sample`, `eval` and `pipeline` do differently when a run's
config names an autoencoder (model.autoencoder).

Rombach et al. 2022 (seed 000 "latent diffusion", seed 004 steps 1 and 5): the denoiser is trained on
z = s E(x), the data's latents, cached once under RUN/latents/ (difflab.autoencoders.latent_cache), and its
samples are images x = D(z / s). Everything between (samplers, grids, CFG, negative prompts, class and text
conditions) is unchanged: the denoiser only sees tensors of the latent shape. run.json records that shape
as data_shape, and under "latent" the image shape, the autoencoder's source, fingerprint and scale.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console
from torch import Tensor

from difflab.autoencoders.base import Autoencoder
from difflab.autoencoders.latent_cache import LatentDataset, build_latent_cache, open_latent_cache
from difflab.config.factory import build_data
from difflab.config.schema import AUTOENCODER_REQUIRED, RunConfig
from difflab.utils.errors import DifflabError

CACHE_FOLDER = "latents"
DECODE_BATCH = 64


def open_autoencoder(source: str, device: str = "cpu"):
    """The autoencoder named by model.autoencoder: an autoencoder run or a diffusers AutoencoderKL (one
    DifflabError naming the fix when it is missing, damaged or of another kind)."""
    # imported here: autoencoder_runs imports jobs.runs, which imports this module
    from difflab.jobs.autoencoder_runs import load_autoencoder

    return load_autoencoder(str(source), device=device)


def data_key(cfg: RunConfig) -> dict:
    """What the latent cache of a run is checked against: the data set's name and options."""
    return {"name": cfg.data.name, "options": dict(cfg.data.options)}


def training_data(cfg: RunConfig, out: Path, device: str = "cpu", *, progress: bool = True):
    """(data set, autoencoder) a run trains on: the config's data and None in pixel space; with
    model.autoencoder, the data's latents (latent_data) and the autoencoder, which previews decode with."""
    if cfg.model.autoencoder is None:
        return build_data(cfg.data), None
    if cfg.model.autoencoder == AUTOENCODER_REQUIRED:  # a latent preset's placeholder, not yet replaced
        raise DifflabError("this config trains on an autoencoder's latents: name the autoencoder with --set "
                           "model.autoencoder=AE (a `difflab train-autoencoder shapes-kl` run folder, or a "
                           "diffusers AutoencoderKL folder or hub id)")
    autoencoder = open_autoencoder(cfg.model.autoencoder, device=device)
    data = latent_data(cfg, out, autoencoder, progress=progress)
    Console().print(f"latent diffusion: images {data.image_shape} -> latents {data.data_shape} of "
                    f"{cfg.model.autoencoder} (f={autoencoder.factor}, latent scale {autoencoder.latent_scale:.5g}), "
                    f"cached in {out / CACHE_FOLDER}", markup=False, highlight=False, soft_wrap=True)
    return data, autoencoder


def latent_data(cfg: RunConfig, out: Path, autoencoder, *, progress: bool = True) -> LatentDataset:
    """The run's training data as latents: RUN/latents/ when it was built with this autoencoder from this
    data, else the data set encoded now, after checking that the autoencoder takes its images and that
    the denoiser's options fit the latents. Data that flips at random (data.options.hflip) is encoded
    without the flip, both ways (latent_cache)."""
    folder = out / CACHE_FOLDER
    key = data_key(cfg)
    cached = open_latent_cache(folder, autoencoder.fingerprint, key)
    if cached is not None:
        check_denoiser_fits(cfg, cached.data_shape)
        return cached
    flips = bool(cfg.data.options.get("hflip", False))
    data_cfg = replace(cfg.data, options={**cfg.data.options, "hflip": False}) if flips else cfg.data
    images = build_data(data_cfg)
    shape = tuple(images.data_shape)
    if len(shape) != 3:
        raise DifflabError(f"model.autoencoder is for image data; data set {cfg.data.name!r} has items of shape "
                           f"{shape}: drop model.autoencoder")
    channels = getattr(autoencoder, "in_channels", None)
    if channels is not None and channels != shape[0]:
        raise DifflabError(f"the autoencoder takes {channels}-channel images but the data has {shape[0]} channels: "
                           "use an autoencoder trained on this data (or set data.options.mode to match)")
    Autoencoder.check_image_size(autoencoder, torch.empty(0, *shape))  # H, W multiples of f
    f = autoencoder.factor
    check_denoiser_fits(cfg, (autoencoder.latent_channels, shape[1] // f, shape[2] // f))
    build_latent_cache(autoencoder, images, folder, key=key, flips=flips, progress=progress,
                       source=cfg.model.autoencoder)
    return LatentDataset(folder)


def check_denoiser_fits(cfg: RunConfig, latent_shape: tuple[int, ...]) -> None:
    """A denoiser whose options name another channel count or size than the latents is refused with the fix."""
    options = cfg.model.options
    c, h = latent_shape[0], latent_shape[1]
    for key, want in (("in_channels", c), ("out_channels", c), ("image_size", h), ("input_size", h)):
        if options.get(key) is not None and options[key] != want:
            raise DifflabError(f"model.options.{key}={options[key]} does not fit the autoencoder's latents of shape "
                               f"{tuple(latent_shape)} ({want} is needed): drop model.options.{key}, which the "
                               "latents set, or use an autoencoder with latents of that shape")


def latent_record(autoencoder, source: str, data: LatentDataset) -> dict:
    """run.json's "latent": what a sampled latent decodes with."""
    return {"image_shape": list(data.image_shape), "autoencoder": str(source), "fingerprint": autoencoder.fingerprint,
            "latent_scale": float(autoencoder.latent_scale), "factor": int(autoencoder.factor)}


def run_autoencoder(latent: dict, run_dir: Path, device: str = "cpu"):
    """The autoencoder a latent run decodes with, checked to be the one it was trained on."""
    autoencoder = open_autoencoder(latent["autoencoder"], device=device)
    if autoencoder.fingerprint != latent["fingerprint"]:
        raise DifflabError(f"the autoencoder {latent['autoencoder']} changed since {run_dir} was trained on its latents "
                           f"(fingerprint {latent['fingerprint'][:12]}, now {autoencoder.fingerprint[:12]}): put the "
                           "original weights back, or train the run again on the new autoencoder")
    return autoencoder


@torch.no_grad()
def decode_latents(autoencoder, z: Tensor, batch_size: int = DECODE_BATCH) -> Tensor:
    """Images x = D(z / s) of latents z (B, c, h, w), in batches on the autoencoder's device, clamped to
    [-1, 1] (the image range), returned on z's device."""
    device = next(iter(autoencoder.parameters())).device
    parts = [autoencoder.from_latent(z[i : i + batch_size].to(device=device, dtype=torch.float32)).clamp(-1, 1)
             for i in range(0, len(z), batch_size)]
    return torch.cat(parts).to(z.device)


@torch.no_grad()
def encode_images(autoencoder, x: Tensor, batch_size: int = DECODE_BATCH) -> Tensor:
    """Latents z = s E(x) of images x (B, C, H, W) in [-1, 1], in batches on the autoencoder's device
    (H, W multiples of f), returned on x's device: what SDEdit of a latent run starts from."""
    Autoencoder.check_image_size(autoencoder, x)
    device = next(iter(autoencoder.parameters())).device
    parts = [autoencoder.to_latent(x[i : i + batch_size].to(device=device, dtype=torch.float32))
             for i in range(0, len(x), batch_size)]
    return torch.cat(parts).to(x.device)
