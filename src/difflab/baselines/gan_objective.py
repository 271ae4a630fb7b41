"""The GAN's two-optimizer objective inside the shared trainer: alternating updates (Goodfellow et al.
2014, Algorithm 1, with seed 003's non-saturating generator loss).

One trainer step = n_critic discriminator updates, each on grad_accum real micro-batches and as many
fakes G(z) (z from the trainer's generator), then one generator update on grad_accum micro-batches of
fakes:

    D <- AdamW step on mean L_D(x, G(z)) (+ gamma/2 ||grad_x D(x)||^2),   G <- AdamW step on mean L_G(G(z)).

Both optimizers use the run's lr (the discriminator's times d_lr_ratio), betas, weight decay, warm-up
and clipping. The generator is `model` (EMA and checkpoints keep it); the discriminator, both
optimizers and both schedules are this objective's state_dict (plain tensors and numbers, read with
weights_only=True), so a resumed run repeats the straight run exactly. The discriminator's
initialization comes from the run's seed, not from the global RNG's position. The first discriminator
backward runs before the trainer's commit block (interruptible, rolled back by the trainer); every
parameter update, and what follows it, runs inside it. The loss the trainer logs is the
discriminator's L_D without the penalty (2 log 2 = 1.386 where D cannot tell fakes from data).
train.compile is not applied here (R1 differentiates through D's input gradient); tested in one process.
"""

from __future__ import annotations

import contextlib

import torch
from accelerate import Accelerator
from torch import Tensor

from difflab.baselines.gan import DCGAN, discriminator_loss, generator_loss, r1_penalty
from difflab.train.data import derive_seed
from difflab.train.settings import TrainConfig
from difflab.utils.errors import DifflabError
from difflab.utils.optim import check_decay, grad_norm_of, load_optimizer, lr_factor

DISCRIMINATOR_STREAM = 0xD15C  # derive_seed stream of the discriminator's initialization


class GANObjective:
    """MakeObjective(model, loss_fn, config, accelerator) for a DCGAN generator (loss_fn unused)."""

    def __init__(self, model: DCGAN, loss_fn, config: TrainConfig, accelerator: Accelerator):
        if not isinstance(model, DCGAN):
            raise DifflabError(f"the GAN objective trains a DCGAN generator; got a {type(model).__name__}")
        self.model, self.config, self.accelerator = model, config, accelerator
        self.micro = config.batch_size // (accelerator.num_processes * config.grad_accum)  # as the trainer's
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(config.seed, DISCRIMINATOR_STREAM))
            self.discriminator = model.make_discriminator().to(accelerator.device)
        self.g_params, self.d_params = list(model.parameters()), list(self.discriminator.parameters())
        opt_g = torch.optim.AdamW(self.g_params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
        opt_d = torch.optim.AdamW(self.d_params, lr=config.lr * model.d_lr_ratio, betas=config.betas,
                                  weight_decay=config.weight_decay)
        check_decay(config)
        schedule = lambda s: lr_factor(s, config)  # noqa: E731
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, schedule)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, schedule)
        self.g, self.d, self.opt_g, self.opt_d = accelerator.prepare(model, self.discriminator, opt_g, opt_d)

    def _accumulate(self, loss_of, modules) -> None:
        """Backward of the mean of loss_of() over grad_accum micro-batches (DDP syncs on the last one)."""
        acc, accum = self.accelerator, self.config.grad_accum
        for i in range(accum):
            with contextlib.ExitStack() as stack:
                if i < accum - 1:
                    for m in modules:
                        stack.enter_context(acc.no_sync(m))
                acc.backward(loss_of().float().mean() / accum)

    def _critic_backward(self, batches, generator: torch.Generator) -> Tensor:
        """Gradients of L_D (+ R1) on grad_accum real micro-batches; returns L_D without the penalty (device)."""
        gamma, reported = self.model.r1_gamma, []

        def loss_of() -> Tensor:
            real = next(batches)[0].detach().requires_grad_(gamma > 0)
            with torch.no_grad():
                fake = self.g(self.model.draw_latent(real.shape[0], generator, real.device))
            d_real = self.d(real)
            loss = discriminator_loss(d_real, self.d(fake))
            reported.append(loss.detach().mean())
            return loss + 0.5 * gamma * r1_penalty(d_real, real) if gamma > 0 else loss

        self._accumulate(loss_of, [self.d])
        return torch.stack(reported).mean()

    def _generator_backward(self, generator: torch.Generator) -> None:
        """Gradients of L_G on grad_accum micro-batches of fakes (no real data drawn)."""
        device = self.accelerator.device
        loss_of = lambda: generator_loss(self.d(self.g(self.model.draw_latent(self.micro, generator, device))))  # noqa: E731
        self._accumulate(loss_of, [self.g, self.d])

    def _step(self, optimizer, scheduler, params, need_norm: bool) -> Tensor | None:
        clip = self.config.grad_clip
        norm = self.accelerator.clip_grad_norm_(params, clip) if clip else None
        if norm is None and need_norm:
            norm = grad_norm_of(params)
        optimizer.step()
        scheduler.step()
        return norm

    def _zero(self) -> None:
        self.opt_d.zero_grad(set_to_none=True)
        self.opt_g.zero_grad(set_to_none=True)

    def update(self, batches, generator, need_norm, commit):
        """n_critic discriminator updates, then one generator update; (L_D, G's grad norm, G's lr)."""
        try:
            d_loss = self._critic_backward(batches, generator)
        except BaseException:
            self._zero()  # an interrupted step leaves no stray gradients
            raise
        with commit():
            lr = self.sched_g.get_last_lr()[0]
            for i in range(self.model.n_critic):
                if i:
                    d_loss = self._critic_backward(batches, generator)
                self._step(self.opt_d, self.sched_d, self.d_params, False)
                self._zero()
            self._generator_backward(generator)
            g_norm = self._step(self.opt_g, self.sched_g, self.g_params, need_norm)
            self._zero()  # the generator's backward also reached D's parameters
        return d_loss, g_norm, lr

    def state_dict(self) -> dict:
        scaler = self.accelerator.scaler
        return {"discriminator": self.discriminator.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(), "sched_g": self.sched_g.state_dict(),
                "sched_d": self.sched_d.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        c = self.config
        load_optimizer(self.opt_g, self.sched_g, state["opt_g"], state["sched_g"], c.lr, c.betas, c.weight_decay)
        load_optimizer(self.opt_d, self.sched_d, state["opt_d"], state["sched_d"], c.lr * self.model.d_lr_ratio,
                       c.betas, c.weight_decay)
        if self.accelerator.scaler is not None and state["scaler"] is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
