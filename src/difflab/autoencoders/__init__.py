"""Autoencoders for latent diffusion (seed 002, seed 003): KL-VAE with a patch discriminator, VQ-VAE / VQ-GAN."""

from difflab.autoencoders.base import Autoencoder, measure_latent_scale
from difflab.autoencoders.discriminator import PatchDiscriminator
from difflab.autoencoders.kl import DiagonalGaussian, KLAutoencoder
from difflab.autoencoders.objective import (
           AutoencoderLossConfig,
           AutoencoderObjective,
           make_autoencoder_objective,
)
from difflab.autoencoders.vq import VectorQuantizer, VQAutoencoder, code_statistics

__all__ = ["Autoencoder", "AutoencoderLossConfig", "AutoencoderObjective", "DiagonalGaussian", "KLAutoencoder",
           "PatchDiscriminator", "VQAutoencoder", "VectorQuantizer", "code_statistics", "make_autoencoder_objective",
           "measure_latent_scale"]
