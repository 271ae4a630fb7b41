"""Each family learns in the right direction (a sign error in a loss would train away from the data):
tiny models, tiny budgets, data whose answer is known."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from accelerate import Accelerator

from difflab.baselines.base import from_levels
from difflab.baselines.gan import DCGAN
from difflab.baselines.gan_objective import GANObjective
from difflab.baselines.pixelcnn import PixelCNN
from difflab.baselines.vae import VAE
from difflab.train import TrainConfig


def _two_images(n: int = 32) -> torch.Tensor:
    """n copies of two fixed 1 x 4 x 4 images on 5 levels: log P can approach -log 2 per image."""
    g = torch.Generator().manual_seed(0)
    pair = from_levels(torch.randint(0, 5, (2, 1, 4, 4), generator=g), 5)
    return pair.repeat(n // 2, 1, 1, 1)


def _fit(model, x, steps: int, lr: float = 1e-2) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        model(x, generator=g).mean().backward()
        opt.step()
        opt.zero_grad()


def test_pixelcnn_and_vae_fit_two_images():
    """From about log 5 = 1.61 nats per dimension at initialization to under half of it after 30 AdamW
    steps on the model's own loss: exact -log P / D (PixelCNN) and -ELBO / D (VAE)."""
    x = _two_images()
    for build, lr in ((lambda: PixelCNN((1, 4, 4), 5, hidden=8, n_layers=2, kernel_size=3), 3e-2),
                      (lambda: VAE((1, 4, 4), 5, latent_dim=2, width=8), 1e-2)):
        torch.manual_seed(0)
        model, g = build(), torch.Generator().manual_seed(1)
        before = -model.log_likelihood(x[:2], generator=g).mean().item() / 16
        _fit(model, x, 30, lr)
        after = -model.log_likelihood(x[:2], generator=g).mean().item() / 16
        assert before > 0.8 * math.log(5) and after < 0.5 * before, (type(model).__name__, before, after)


def test_the_gan_moves_its_samples_onto_the_data():
    """2-D data N((2, -1), 0.1^2 I): 100 alternating updates bring the generator's sample mean from
    near 0 to within 0.2 of (2, -1) (the non-saturating game pulls G toward the data)."""
    torch.manual_seed(0)
    gan = DCGAN((2,), None, latent_dim=2, width=16, d_width=16)
    cfg = TrainConfig(batch_size=64, lr=5e-3, betas=(0.5, 0.999), grad_clip=None, seed=0)
    objective = GANObjective(gan, None, cfg, Accelerator(cpu=True))
    g, target = torch.Generator().manual_seed(0), torch.tensor([2.0, -1.0])

    def batches():
        while True:
            yield 0.1 * torch.randn(64, 2, generator=g) + target, None

    stream = batches()
    mean = lambda: gan.sample(2000, generator=torch.Generator().manual_seed(9)).mean(0)  # noqa: E731
    assert (mean() - target).norm() > 1.5
    for _ in range(100):
        objective.update(stream, g, False, contextlib.nullcontext)
    assert (mean() - target).norm() < 0.2


def test_the_gan_and_autoencoder_optimizers_follow_the_configs_decay():
    """Both GAN optimizers and the autoencoder's use the run's warm-up-stable-decay schedule (utils.optim.lr_factor):
    a linear decay over updates 2..5 of 6 at lr 0.1, and the refusal of a decay with no step limit past its start."""
    from difflab.autoencoders.objective import _adamw
    from difflab.utils.errors import DifflabError

    cfg = TrainConfig(lr=0.1, max_steps=6, lr_decay="linear", lr_decay_from=2, grad_clip=None)
    gan = GANObjective(DCGAN((2,), None, latent_dim=2, width=8, d_width=8, d_lr_ratio=0.5), None, cfg,
                       Accelerator(cpu=True))
    optimizer, scheduler = _adamw([torch.nn.Parameter(torch.zeros(2))], 0.1, cfg)
    rates = {"g": [], "d": [], "autoencoder": []}
    for _ in range(6):
        for key, sched in (("g", gan.sched_g), ("d", gan.sched_d), ("autoencoder", scheduler)):
            rates[key].append(sched.get_last_lr()[0])
            sched.optimizer.step()
            sched.step()
    want = [0.1, 0.1, 0.1, 0.075, 0.05, 0.025]
    assert rates["g"] == pytest.approx(want, rel=1e-12) and rates["autoencoder"] == pytest.approx(want, rel=1e-12)
    assert rates["d"] == pytest.approx([0.5 * w for w in want], rel=1e-12)  # the discriminator at d_lr_ratio
    with pytest.raises(DifflabError, match="give a step limit past lr_decay_from"):
        _adamw([torch.nn.Parameter(torch.zeros(2))], 0.1, TrainConfig(lr=0.1, max_steps=2, lr_decay="cosine",
                                                                      lr_decay_from=2))
