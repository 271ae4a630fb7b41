"""The families diffusion is measured against (seed 000, 002, 003): VAE, DC-GAN, PixelCNN."""
