"""A diffusers AutoencoderKL as a difflab autoencoder, offline: never downloads.

    from difflab.interop.autoencoder import load_diffusers_autoencoder
    ae = load_diffusers_autoencoder("path/to/vae")        # or a pipeline folder (its vae/), or a cached hub id
    z = ae.to_latent(x)                                   # (B, c, H/f, W/f), scaled to unit variance
    x_hat = ae.from_latent(z)

The object satisfies difflab's Autoencoder API (shared design; difflab.autoencoders.base) by duck typing,
since interop sits below the autoencoders layer:

    encode(x) = E(x).latent_dist.mean - shift     the posterior mean (Rombach et al. 2022, the KL-reg. AE)
    decode(z) = D(z + shift).sample
    to_latent(x) = encode(x) * latent_scale       the one place the scale is applied (seed 000: z = E(x))
    from_latent(z) = decode(z / latent_scale)
    latent_scale = config.scaling_factor (Stable Diffusion 1.x: 0.18215), shift = config.shift_factor or 0
    factor f = 2 ** (len(block_out_channels) - 1), latent_channels = config.latent_channels

so (to_latent(x) - ...) reproduces diffusers' own `(latents - shift_factor) * scaling_factor`. fingerprint:
the sha256 of config.json and the weight file's bytes, which identifies the weights (latent caches key on
it). Weights load from safetensors only (use_safetensors=True): no pickle is ever read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from difflab.interop.load import _resolve as resolve_hub_source
from difflab.utils.errors import DifflabError

CLASS_NAME = "AutoencoderKL"
WEIGHTS = "diffusion_pytorch_model.safetensors"


def _resolve(source: str | Path) -> Path:
    """A local folder, or a hub id 'owner/name' found in the standard Hugging Face cache (never downloaded:
    interop.load's lookup, shared with the diffusers denoisers)."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise DifflabError(f"{path} is a file; give the folder of a diffusers AutoencoderKL (config.json and "
                               f"{WEIGHTS}) or a pipeline folder with a vae/ inside")
        return path
    if str(source).count("/") != 1 or str(source).startswith((".", "/", "~")):
        raise DifflabError(f"no autoencoder folder at {str(source)!r}: give an autoencoder run folder, a diffusers "
                           "AutoencoderKL folder, or a hub id 'owner/name' in the Hugging Face cache")
    return resolve_hub_source(source)


def autoencoder_folder(source: str | Path) -> Path:
    """The folder holding the AutoencoderKL's config.json: `source` itself, or a pipeline folder's vae/."""
    root = _resolve(source)
    folder = root / "vae" if (root / "model_index.json").is_file() or (root / "vae" / "config.json").is_file() else root
    config = folder / "config.json"
    if not config.is_file():
        raise DifflabError(f"{root} is not a diffusers autoencoder folder (no config.json, no vae/config.json): "
                           "give the folder `AutoencoderKL.save_pretrained` wrote")
    try:
        name = json.loads(config.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError) as e:
        raise DifflabError(f"{config} is damaged ({type(e).__name__}: {e}); save the autoencoder again") from None
    if name != CLASS_NAME:
        raise DifflabError(f"{config} describes a {name!r}, not an {CLASS_NAME}: give the autoencoder's folder "
                           "(in a Stable Diffusion pipeline, its vae/ folder)")
    if not (folder / WEIGHTS).is_file():
        raise DifflabError(f"{folder} has no {WEIGHTS}: difflab reads safetensors weights only "
                           "(save with safe_serialization=True)")
    return folder


def fingerprint_files(paths) -> str:
    """sha256 over the files' names and bytes, in the order given (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).name.encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class DiffusersAutoencoder(nn.Module):
    """A diffusers AutoencoderKL behind the Autoencoder API (module docstring)."""

    def __init__(self, vae: nn.Module, fingerprint: str = ""):
        super().__init__()
        self.vae = vae
        cfg = vae.config
        self.factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.latent_channels = int(cfg.latent_channels)
        self.in_channels = int(cfg.in_channels)
        self.latent_scale = float(cfg.scaling_factor)
        self.shift = float(getattr(cfg, "shift_factor", None) or 0.0)
        self.fingerprint = fingerprint

    def encode(self, x: Tensor) -> Tensor:
        """Image (B, C, H, W) in [-1, 1] -> unscaled latent (B, c, H/f, W/f): the posterior mean, less the shift."""
        return self.vae.encode(x).latent_dist.mean - self.shift

    def decode(self, z: Tensor) -> Tensor:
        """Unscaled latent (B, c, h, w) -> image (B, C, f h, f w)."""
        return self.vae.decode(z + self.shift).sample

    def to_latent(self, x: Tensor) -> Tensor:
        return self.encode(x) * self.latent_scale

    def from_latent(self, z: Tensor) -> Tensor:
        return self.decode(z / self.latent_scale)


def load_diffusers_autoencoder(source: str | Path, device: str | torch.device = "cpu") -> DiffusersAutoencoder:
    """The AutoencoderKL at `source` (its save_pretrained folder, a pipeline folder's vae/, or a hub id in
    the standard cache), frozen, in eval mode on `device`; one DifflabError naming the fix when it is
    missing, damaged or not an AutoencoderKL."""
    try:
        import diffusers
    except ImportError as err:
        raise DifflabError("a diffusers autoencoder needs the diffusers extra: pip install 'difflab[diffusers]'") from err
    folder = autoencoder_folder(source)
    try:
        vae = diffusers.AutoencoderKL.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as err:
        reason = " ".join(str(err).split())[:300]
        raise DifflabError(f"cannot load the autoencoder in {folder} ({reason}): save it again with "
                           "AutoencoderKL.save_pretrained, or give another folder") from None
    ae = DiffusersAutoencoder(vae, fingerprint_files([folder / "config.json", folder / WEIGHTS]))
    return ae.to(device).eval().requires_grad_(False)
