"""Autoencoders for latent diffusion (seed 002, seed 003): KL-VAE with a patch discriminator, VQ-VAE / VQ-GAN."""

from difflab.autoencoders.base import Autoencoder, measure_latent_scale

__all__ = ["Autoencoder", "measure_latent_scale"]
