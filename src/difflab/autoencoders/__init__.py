"""Autoencoders for latent diffusion (seed 002, seed 003): KL-VAE with a patch discriminator, VQ-VAE / VQ-GAN."""
