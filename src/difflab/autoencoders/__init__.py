"""Autoencoders for latent diffusion (seed 002, seed 003): KL-VAE with a patch discriminator, VQ-VAE / VQ-GAN."""

from difflab.autoencoders.base import Autoencoder, measure_latent_scale
from difflab.autoencoders.kl import DiagonalGaussian, KLAutoencoder
from difflab.autoencoders.vq import VectorQuantizer, VQAutoencoder, code_statistics

__all__ = ["Autoencoder", "DiagonalGaussian", "KLAutoencoder", "VQAutoencoder", "VectorQuantizer",
           "code_statistics", "measure_latent_scale"]
