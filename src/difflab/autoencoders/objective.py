"""The autoencoder's training objective: the trainer's Objective for KL-VAE, VQ-VAE and their GANs.

One update, from the next grad_accum micro-batches x (Esser et al. 2021 §3.1, eq. 7; Rombach et al.
2022 App. G; seed 003 "latent VAE with discriminator"):

  autoencoder (AdamW, lr, warm-up, clipping as DenoisingObjective):
      x_hat, reg = AE(x)                      (KL: a posterior sample; VQ: straight-through codes)
      L_rec = mean_i rec(x_i, x_hat_i) [+ perceptual_weight * perceptual(x_i, x_hat_i)]
      L_reg = kl_weight * mean_i KL_i / D     (KL-VAE; D = C H W, so kl_weight = LDM's 1e-6, whose
                                               loss is ours times D)
            | mean_i (codebook_i + commitment_i)                       (VQ-VAE)
      L = L_rec + L_reg + disc_weight * lambda * L_G       L_G = mean_i generator_loss(D(x_hat_i))
          lambda = ||grad_w L_rec|| / (||grad_w L_G|| + 1e-4) at the decoder's last weight w
          (adaptive=True; else 1); the adversarial term only once step >= disc_start
  discriminator (AdamW, disc_lr), on the same batch, once step >= disc_start:
      L_D = mean_i discriminator_loss(D(x_i), D(sg[x_hat_i]))   (hinge or non-saturating)

disc_weight = 0 trains a plain VAE / VQ-VAE (no discriminator is built). The discriminator, both
optimizers, both schedulers and the update count live in state_dict (checkpointed by the trainer);
the autoencoder is `model` (EMA, weights). `log_stats()` returns the means of the scalars since the
last call (rec, kl, codebook, commitment, g_loss, lambda, d_loss, code_usage, perplexity): the
trainer adds them to its log records.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from difflab.autoencoders.discriminator import NORMS, PatchDiscriminator
from difflab.autoencoders.losses import (
    GAN_LOSSES,
    RECONSTRUCTIONS,
    FeatureNet,
    adaptive_weight,
    discriminator_loss,
    generator_loss,
    perceptual_loss,
    reconstruction_loss,
)
from difflab.utils.errors import DifflabError, check_choice
from difflab.utils.optim import check_decay, grad_norm_of, load_optimizer, lr_factor

if TYPE_CHECKING:
    from accelerate import Accelerator

# The trainer's types, by duck typing: autoencoders sit below difflab.train in the layers (train may
# import autoencoders, not the reverse). `config` is a difflab.train.TrainConfig (lr, betas,
# weight_decay, warmup_steps, grad_clip, grad_accum, seed); `batches` yields prepared (x, cond).
TrainConfig = Any
Batches = Iterator[tuple[Tensor, Any]]


@dataclass(frozen=True)
class AutoencoderLossConfig:
    """The options of the autoencoder objective (see the module docstring for the formulas)."""

    reconstruction: str = "l1"  # l1 | l2
    kl_weight: float = 1e-6  # beta on the KL per image element (KL-VAE only)
    disc_weight: float = 0.5  # 0: no discriminator
    disc_start: int = 0  # optimizer steps before the adversarial terms begin
    disc_loss: str = "hinge"  # hinge | non_saturating
    disc_lr: float | None = None  # None: the training lr
    disc_layers: int = 3
    disc_channels: int = 64
    disc_norm: str = "batch"  # batch | group | none (see discriminator.py)
    adaptive: bool = True  # lambda of eq. 7; False: lambda = 1
    perceptual_weight: float = 0.0  # > 0 needs a feature network passed to make_autoencoder_objective

    def __post_init__(self):
        check_choice("reconstruction loss", self.reconstruction, RECONSTRUCTIONS)
        check_choice("GAN loss", self.disc_loss, GAN_LOSSES)
        check_choice("discriminator norm", self.disc_norm, NORMS)
        rules = [(self.kl_weight >= 0, "kl_weight must be >= 0 (LDM uses 1e-6)", self.kl_weight),
                 (self.disc_weight >= 0, "disc_weight must be >= 0 (0 trains without a discriminator)",
                  self.disc_weight),
                 (isinstance(self.disc_start, int) and self.disc_start >= 0,
                  "disc_start must be an integer >= 0 (optimizer steps)", self.disc_start),
                 (self.disc_lr is None or self.disc_lr > 0, "disc_lr must be positive, or null for the training lr",
                  self.disc_lr),
                 (self.perceptual_weight >= 0, "perceptual_weight must be >= 0 (0 turns the term off)",
                  self.perceptual_weight)]
        for ok, message, value in rules:
            if not ok:
                raise DifflabError(f"autoencoder loss option {message}; got {value!r}")

    @classmethod
    def from_options(cls, options: Mapping | AutoencoderLossConfig | None) -> AutoencoderLossConfig:
        if options is None or isinstance(options, cls):
            return options or cls()
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - valid)
        if unknown:
            raise DifflabError(f"unknown autoencoder loss option(s) {', '.join(unknown)}; valid options are: "
                               f"{', '.join(sorted(valid))}")
        return cls(**options)

    def to_dict(self) -> dict:
        return asdict(self)


def _adamw(params, lr: float, config: TrainConfig):
    optimizer = torch.optim.AdamW(params, lr=lr, betas=config.betas, weight_decay=config.weight_decay)
    check_decay(config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    return optimizer, scheduler


class AutoencoderObjective:
    """The Objective (difflab.train.objective) of an autoencoder with `reconstruct` and `last_layer`
    (KLAutoencoder, VQAutoencoder) and, when disc_weight > 0, a PatchDiscriminator of its own."""

    def __init__(self, model: nn.Module, config: TrainConfig, accelerator: Accelerator,
                 losses: AutoencoderLossConfig | None = None, perceptual: FeatureNet | None = None):
        if not (hasattr(model, "reconstruct") and hasattr(model, "last_layer")):
            raise DifflabError(f"the autoencoder objective trains a KLAutoencoder or VQAutoencoder; got "
                               f"{type(model).__name__}, which has no reconstruct/last_layer")
        self.losses = losses = losses or AutoencoderLossConfig()
        if losses.perceptual_weight > 0 and perceptual is None:
            raise DifflabError("perceptual_weight > 0 needs a feature network: pass perceptual=... to "
                               "make_autoencoder_objective, or set perceptual_weight to 0")
        quantizer = getattr(model, "quantizer", None)
        if accelerator.num_processes > 1 and quantizer is not None and (quantizer.ema or quantizer.restart_after):
            raise DifflabError("the EMA codebook and dead-code restart update per process and would drift apart "
                               "across processes: train a VQ autoencoder with ema/restart_after in one process, "
                               "or set ema=false and restart_after=0")
        self.model, self.config, self.accelerator, self.perceptual = model, config, accelerator, perceptual
        self.params = list(model.parameters())
        optimizer, self.scheduler = _adamw([p for p in self.params if p.requires_grad], config.lr, config)
        self.ddp_model, self.optimizer = accelerator.prepare(model, optimizer)
        self.disc = self.ddp_disc = None
        if losses.disc_weight > 0:
            with torch.random.fork_rng(devices=[]):  # the discriminator's init leaves the global RNG alone
                torch.manual_seed(config.seed)
                disc = PatchDiscriminator(model.in_channels, losses.disc_channels, losses.disc_layers,
                                          losses.disc_norm)
            self.disc = disc.to(accelerator.device)
            self.disc_params = list(self.disc.parameters())
            d_opt, self.disc_scheduler = _adamw(self.disc_params, losses.disc_lr or config.lr, config)
            self.ddp_disc, self.disc_optimizer = accelerator.prepare(self.disc, d_opt)
        self.steps = 0
        self._sums: dict[str, Tensor] = {}
        self._count = 0

    # ----- the two passes -----------------------------------------------------------------------
    def _sync(self, module, last: bool) -> contextlib.AbstractContextManager:
        """DDP all-reduces on the last micro-batch only."""
        return contextlib.nullcontext() if last else self.accelerator.no_sync(module)

    def _note(self, values: dict[str, Tensor], accum: int) -> None:
        for k, v in values.items():
            v = v.detach().float() / accum
            self._sums[k] = self._sums[k] + v if k in self._sums else v

    def _autoencoder_pass(self, batches: Batches, generator: torch.Generator, adversarial: bool):
        """Backward of L over the micro-batches; returns (summed L, [(x, sg[x_hat])] for the discriminator)."""
        losses, accum = self.losses, self.config.grad_accum
        total, pairs = None, []
        if self.disc is not None:
            self.disc.requires_grad_(False)  # L_G's gradient reaches the decoder, not the discriminator
        for i in range(accum):
            x, _ = next(batches)
            with self._sync(self.ddp_model, i == accum - 1):
                x_hat, reg, stats = self.ddp_model(x, generator)
                rec = reconstruction_loss(x, x_hat, losses.reconstruction)  # (B,)
                if losses.perceptual_weight > 0:
                    rec = rec + losses.perceptual_weight * perceptual_loss(self.perceptual, x, x_hat)
                l_rec = rec.float().mean()
                logs = {"rec": l_rec, **stats}
                if "kl" in reg:
                    l_reg = losses.kl_weight * reg["kl"].float().mean() / x[0].numel()
                    logs["kl"] = reg["kl"].mean()
                else:
                    l_reg = (reg["codebook"] + reg["commitment"]).float().mean()
                    logs.update(codebook=reg["codebook"].mean(), commitment=reg["commitment"].mean())
                loss = l_rec + l_reg
                if adversarial:
                    # judged as the discriminator is trained: real and fake in one batch (BatchNorm sees
                    # both); the unwrapped module, which has no gradient of its own here (nothing for DDP)
                    logits_fake = self.disc(torch.cat([x, x_hat]))[x.shape[0]:]
                    l_g = generator_loss(logits_fake, losses.disc_loss).float().mean()
                    lam = (adaptive_weight(l_rec, l_g, self.model.last_layer) if losses.adaptive
                           else torch.ones((), device=l_g.device))
                    loss = loss + losses.disc_weight * lam * l_g
                    logs.update(g_loss=l_g, **{"lambda": lam})
                self.accelerator.backward(loss / accum)
            self._note(logs, accum)
            pairs.append((x, x_hat.detach()))
            total = loss.detach() / accum if total is None else total + loss.detach() / accum
        if self.disc is not None:
            self.disc.requires_grad_(True)
        return total, pairs

    def _discriminator_pass(self, pairs: list[tuple[Tensor, Tensor]]) -> None:
        accum = len(pairs)
        for i, (x, x_hat) in enumerate(pairs):
            with self._sync(self.ddp_disc, i == accum - 1):
                # real and fake in one forward: one DDP reduction per backward, BatchNorm statistics
                # over both (as in the generator's pass)
                logits_real, logits_fake = self.ddp_disc(torch.cat([x, x_hat])).chunk(2)
                l_d = discriminator_loss(logits_real, logits_fake, self.losses.disc_loss).float().mean()
                self.accelerator.backward(l_d / accum)
            self._note({"d_loss": l_d}, accum)

    def _step(self, params, optimizer, scheduler, need_norm: bool):
        clip = self.config.grad_clip
        grad_norm = self.accelerator.clip_grad_norm_(params, clip) if clip else None
        if grad_norm is None and need_norm:
            grad_norm = grad_norm_of(params)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return grad_norm, lr

    # ----- the Objective protocol ---------------------------------------------------------------
    def update(self, batches, generator, need_norm, commit):
        adversarial = self.disc is not None and self.steps >= self.losses.disc_start
        try:
            total, pairs = self._autoencoder_pass(batches, generator, adversarial)
            if adversarial:
                self._discriminator_pass(pairs)
            elif self.disc is not None:
                zero = torch.zeros((), device=total.device)
                self._note({"d_loss": zero, "g_loss": zero, "lambda": zero}, 1)
        except BaseException:  # an interrupted step leaves no stray gradients
            self.optimizer.zero_grad(set_to_none=True)
            if self.disc is not None:
                self.disc.requires_grad_(True)
                self.disc_optimizer.zero_grad(set_to_none=True)
            raise
        self._count += 1
        with commit():
            grad_norm, lr = self._step(self.params, self.optimizer, self.scheduler, need_norm)
            if adversarial:
                self._step(self.disc_params, self.disc_optimizer, self.disc_scheduler, False)
            self.steps += 1
        return total, grad_norm, lr

    def log_stats(self) -> dict[str, float]:
        """The means of the logged scalars over the updates since the last call (one host sync)."""
        if not self._count:
            return {}
        names = sorted(self._sums)
        values = torch.stack([self._sums[k].to(self.accelerator.device) for k in names]).cpu().tolist()
        out = {k: v / self._count for k, v in zip(names, values, strict=True)}
        self._sums, self._count = {}, 0
        return out

    def state_dict(self) -> dict:
        """Both optimizers and schedulers, the discriminator's weights, the update count and the mixed-precision
        grad scaler (None without fp16), as DenoisingObjective saves it: a resumed fp16 run scales as the
        straight one."""
        scaler = self.accelerator.scaler
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "steps": self.steps, "scaler": scaler.state_dict() if scaler is not None else None}
        if self.disc is not None:
            state.update(disc=self.disc.state_dict(), disc_optimizer=self.disc_optimizer.state_dict(),
                         disc_scheduler=self.disc_scheduler.state_dict())
        return state

    def load_state_dict(self, state: dict) -> None:
        if (self.disc is not None) != ("disc" in state):
            have = "has a discriminator" if "disc" in state else "has none"
            raise DifflabError(f"the checkpoint {have} but this run's disc_weight says otherwise: resume with "
                               "the loss options the run was started with")
        c = self.config
        load_optimizer(self.optimizer, self.scheduler, state["optimizer"], state["scheduler"], c.lr, c.betas,
                       c.weight_decay)
        self.steps = int(state["steps"])
        if self.accelerator.scaler is not None and state.get("scaler") is not None:  # absent before it was saved
            self.accelerator.scaler.load_state_dict(state["scaler"])
        if self.disc is not None:
            try:
                self.disc.load_state_dict(state["disc"])
            except RuntimeError:  # another critic architecture (e.g. a disc_norm default that changed)
                raise DifflabError("the checkpoint's discriminator does not fit this run's critic options "
                                   "(disc_layers, disc_channels, disc_norm): resume with the loss options the "
                                   "run was started with, e.g. --set objective.disc_norm=group") from None
            load_optimizer(self.disc_optimizer, self.disc_scheduler, state["disc_optimizer"], state["disc_scheduler"],
                           self.losses.disc_lr or c.lr, c.betas, c.weight_decay)


MakeObjective = Callable[[nn.Module, object, TrainConfig, "Accelerator"], AutoencoderObjective]


def make_autoencoder_objective(options: Mapping | AutoencoderLossConfig | None = None,
                               perceptual: FeatureNet | None = None) -> MakeObjective:
    """The Trainer's `objective=` for an autoencoder run: options are AutoencoderLossConfig's fields
    (a dict from a config file, checked here: one message for an unknown key); perceptual an optional
    feature network for the perceptual term. The trainer's loss_fn is unused (pass None)."""
    losses = AutoencoderLossConfig.from_options(options)

    def make(model: nn.Module, loss_fn, config: TrainConfig, accelerator: Accelerator) -> AutoencoderObjective:
        return AutoencoderObjective(model, config, accelerator, losses, perceptual)

    return make
