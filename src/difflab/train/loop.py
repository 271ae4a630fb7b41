"""The training loop: AdamW with warm-up, gradient accumulation and clipping, EMA, checkpoints, resume.

One optimizer step (seed 001, Algorithm 1, generalized by the loss callable):

    for each of grad_accum micro-batches:  x0, cond ~ data;  L = mean_i loss_fn(D, x0, cond)_i / grad_accum;
                                           backward(L)    (DDP all-reduces on the last micro-batch)
    clip ||g|| to grad_clip;  AdamW step with lr * warmup_factor(step);  EMA update.

The same code runs in one process, under `accelerate launch` or `torchrun` (DDP over gloo or NCCL),
on one node or many: `accelerate.Accelerator` wraps the model and picks the device and the autocast.
Every random draw of the loss and of condition dropout comes from one per-rank generator; its state,
the global RNG states and the data position are saved with the weights, so a resumed run repeats the
uninterrupted run exactly. Per-step work has no host syncs: losses are summed on the device and read
at logging steps only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import Tensor, nn

from difflab.param.denoiser import Denoiser
from difflab.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from difflab.train.data import GLOBAL_STREAM, LOSS_STREAM, BatchStream, derive_seed
from difflab.train.ema import EMA
from difflab.train.monitor import ProgressBar, RunLog
from difflab.train.rng import capture_rng, decode_rng, encode_rng, restore_rng
from difflab.train.settings import TrainConfig, TrainResult, warmup_factor
from difflab.utils.errors import DifflabError
from difflab.utils.seeding import seed_everything

LossFn = Callable[..., Tensor]
SampleFn = Callable[[nn.Module, int, Path], object]
EncodeCaptions = Callable[[list[str]], tuple[Tensor, Tensor]]


class _TrainedDenoiser(Denoiser):
    """The prepared model (DDP-wrapped and/or compiled) seen through the denoiser contract.

    DDP hides the wrapped module's attributes, and a forward that bypassed DDP would skip its gradient
    all-reduce; this view calls the wrapper and carries the raw model's process and parameterization.
    """

    def __init__(self, forward: nn.Module, raw: nn.Module):
        self.forward = forward
        self.process = getattr(raw, "process", None)
        self.parameterization = getattr(raw, "parameterization", None)

    def __call__(self, x: Tensor, t: Tensor, cond=None) -> Tensor:
        return self.forward(x, t, cond)


class Trainer:
    """Train `model` (a denoiser, difflab.param contract) on `loss_fn` over `data`; see TrainConfig.

    loss_fn(model, x0, cond=None, generator=None) -> per-sample losses (B,) (e.g.
    difflab.objectives.DiffusionLoss); the trainer takes their mean. data: a map-style Dataset (or a
    DataLoader over one), whose order the trainer owns, or any re-iterable of batch dicts {"x",
    "label", "caption"} (see difflab.train.data.BatchStream). sample_fn(ema_model, step, out_dir) draws
    preview samples on the main process under torch.no_grad, with the RNG states restored afterwards so
    previews never change training. encode_captions(list[str]) -> (context, mask) is needed for
    condition="text". run_config is the full config written to every checkpoint (default: config).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data,
        config: TrainConfig,
        out_dir: str | Path,
        sample_fn: SampleFn | None = None,
        encode_captions: EncodeCaptions | None = None,
        run_config: dict | None = None,
    ):
        self.config, self.loss_fn, self.out_dir = config, loss_fn, Path(out_dir)
        self.sample_fn, self.encode_captions = sample_fn, encode_captions
        self.run_config = config.to_dict() if run_config is None else run_config
        if config.condition == "text" and encode_captions is None:
            raise DifflabError("condition='text' needs encode_captions (list[str] -> (context, mask))")
        self.accelerator = acc = Accelerator(mixed_precision=config.mixed_precision)
        self.world, self.rank = acc.num_processes, acc.process_index
        per_process = self.world * config.grad_accum
        if config.batch_size % per_process:
            raise DifflabError(
                f"batch_size {config.batch_size} does not split into {self.world} processes x "
                f"{config.grad_accum} accumulation steps: use a multiple of {per_process}"
            )
        self.micro_batch = config.batch_size // per_process

        self.model = model.to(acc.device)
        self.params = list(model.parameters())  # gathered once: a module walk per step costs ~0.3 ms
        self.ema = EMA(model, config.ema, config.ema_rampup)  # before prepare: a copy of the plain module
        optimizer = torch.optim.AdamW(
            self.params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_factor(s, config.warmup_steps)
        )
        self.ddp_model, self.optimizer = acc.prepare(model, optimizer)
        forward = torch.compile(self.ddp_model) if config.compile else self.ddp_model
        self.trained = _TrainedDenoiser(forward, model)
        self.stream = BatchStream(data, self.micro_batch, config.seed, self.rank, self.world, config.num_workers)
        self.generator = torch.Generator(device=acc.device)
        self.step, self.images_seen, self.elapsed = 0, 0, 0.0
        self._stop_signal: int | None = None
        self._updating = False
        self._pid = os.getpid()

    # ---- one optimizer step ----------------------------------------------------------------------
    def _micro_batch(self, batch: dict) -> tuple[Tensor, dict | None]:
        """x0 and cond on the device, with condition dropout drawn from the loss generator."""
        device, cfg = self.accelerator.device, self.config
        x0 = batch["x"].to(device, non_blocking=True)
        cond = None
        if cfg.condition == "class":
            if "label" not in batch:
                raise DifflabError("condition='class' needs batches with a 'label' entry; the data has none")
            cond = {"class_labels": batch["label"].to(device, non_blocking=True)}
        elif cfg.condition == "text":
            if "caption" not in batch:
                raise DifflabError("condition='text' needs batches with a 'caption' entry; the data has none")
            with torch.no_grad():
                context, mask = self.encode_captions(list(batch["caption"]))
            cond = {"context": context.to(device), "context_mask": mask.to(device)}
        if cond is not None and cfg.p_uncond > 0:
            cond["drop"] = torch.rand(x0.shape[0], generator=self.generator, device=device) < cfg.p_uncond
        return x0, cond

    def _grad_norm(self) -> Tensor:
        grads = [p.grad for p in self.params if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))

    def _train_step(self, need_norm: bool) -> tuple[Tensor, Tensor | None, float]:
        """One optimizer step; returns (loss, grad norm or None, lr used) as device tensors / floats."""
        cfg, acc = self.config, self.accelerator
        total = None
        for i in range(cfg.grad_accum):
            x0, cond = self._micro_batch(next(self.stream))
            last = i == cfg.grad_accum - 1
            with contextlib.nullcontext() if last else acc.no_sync(self.ddp_model):
                per_sample = self.loss_fn(self.trained, x0, cond, generator=self.generator)
                if per_sample.shape != x0.shape[:1]:
                    raise DifflabError(
                        f"loss_fn must return unreduced per-sample losses of shape ({x0.shape[0]},); "
                        f"got {tuple(per_sample.shape)}"
                    )
                loss = per_sample.float().mean() / cfg.grad_accum
                acc.backward(loss)
            total = loss.detach() if total is None else total + loss.detach()
        self._updating = True
        grad_norm = acc.clip_grad_norm_(self.params, cfg.grad_clip) if cfg.grad_clip else None
        if grad_norm is None and need_norm:
            grad_norm = self._grad_norm()
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model, self.images_seen, cfg.batch_size)
        self.step += 1
        self.images_seen += cfg.batch_size
        self._updating = False
        return total, grad_norm, lr

    # ---- state: snapshot, checkpoint, resume -----------------------------------------------------
    def _snapshot(self) -> dict:
        """Host-side training state (no weights): what a checkpoint needs besides the modules."""
        return {
            "step": self.step,
            "images_seen": self.images_seen,
            "elapsed": self.elapsed,
            "ema_updates": self.ema.num_updates,
            "data": self.stream.state_dict(),
            "rng": capture_rng({"loss": self.generator}),
        }

    def _rollback(self, snap: dict) -> None:
        """Return the data stream and the RNGs to a snapshot taken at the start of the current step."""
        self.stream.load_state_dict(snap["data"])
        restore_rng(snap["rng"], {"loss": self.generator})

    def save(self) -> Path | None:
        """Write ckpt-<step> (a collective call: every rank must reach it); the path on the main process."""
        acc, snap = self.accelerator, self._snapshot()
        rng = gather_object([encode_rng(snap["rng"])])
        path = None
        if acc.is_main_process:
            scaler = acc.scaler.state_dict() if acc.scaler is not None else None
            trainer_state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": scaler,
            }
            state = {**snap, "rng": rng, "world_size": self.world}
            path = save_checkpoint(
                self.out_dir, self.step, self.model, self.ema.module, trainer_state, state,
                self.run_config, self.config.keep_last,
            )
        acc.wait_for_everyone()
        return path

    def _resume(self, path: Path) -> None:
        trainer_state, state = load_checkpoint(path, self.model, self.ema.module)
        self.optimizer.load_state_dict(trainer_state["optimizer"])
        self.scheduler.load_state_dict(trainer_state["scheduler"])
        if self.accelerator.scaler is not None and trainer_state["scaler"] is not None:
            self.accelerator.scaler.load_state_dict(trainer_state["scaler"])
        self.step, self.images_seen, self.elapsed = state["step"], state["images_seen"], state["elapsed"]
        self.ema.num_updates = state["ema_updates"]
        self.stream.load_state_dict(state["data"])
        if state["world_size"] == self.world:
            restore_rng(decode_rng(state["rng"][self.rank]), {"loss": self.generator})
        else:  # another process count: the data order continues, the random streams restart
            self.accelerator.print(
                f"resuming a {state['world_size']}-process run on {self.world}: RNG streams are reseeded"
            )
            self._seed(self.step)
        self.accelerator.print(f"resumed from {path} at step {self.step}")

    def _seed(self, step: int = 0) -> None:
        seed_everything(derive_seed(self.config.seed, GLOBAL_STREAM, self.rank, step))
        self.generator.manual_seed(derive_seed(self.config.seed, LOSS_STREAM, self.rank, step))

    def _start(self, resume: bool | str | Path) -> bool:
        """Resume or seed a fresh run; True when resumed."""
        path = Path(resume) if isinstance(resume, (str, Path)) else None
        if resume is True:
            path = latest_checkpoint(self.out_dir)
            if path is None:
                self.accelerator.print(f"no checkpoint in {self.out_dir}: starting a new run")
        elif path is None and list_checkpoints(self.out_dir):
            raise DifflabError(
                f"{self.out_dir} already holds checkpoints (latest {latest_checkpoint(self.out_dir).name}): "
                "pass resume=True to continue that run, or choose another output folder"
            )
        if path is not None and not path.is_dir():
            raise DifflabError(f"cannot resume: {path} is not a checkpoint folder")
        if path is None:
            self._seed()
            return False
        self._resume(path)
        return True

    # ---- previews, stopping ----------------------------------------------------------------------
    def _sample(self) -> None:
        if self.sample_fn is None or not self.accelerator.is_main_process:
            return
        snap = capture_rng({"loss": self.generator})
        try:
            with torch.no_grad():
                self.sample_fn(self.ema.module, self.step, self.out_dir)
        finally:
            restore_rng(snap, {"loss": self.generator})

    def _on_signal(self, signum, frame) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker inherited the handler: not its business
            return
        if self._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self._stop_signal = signum
        self.accelerator.print("stopping after this step and saving a checkpoint; Ctrl-C again to stop at once")

    def _stop_reason(self) -> str | None:
        """'interrupted', 'max_minutes' or None; agreed over all ranks (a collective when world > 1)."""
        interrupted = self._stop_signal is not None
        out_of_time = self.config.max_minutes is not None and self.elapsed >= 60 * self.config.max_minutes
        if self.world > 1:
            flags = torch.tensor([interrupted, out_of_time], dtype=torch.float32, device=self.accelerator.device)
            interrupted, out_of_time = (bool(v > 0) for v in self.accelerator.reduce(flags, "sum").tolist())
        return "interrupted" if interrupted else "max_minutes" if out_of_time else None

    # ---- the loop ----------------------------------------------------------------------------------
    def train(self, resume: bool | str | Path = False) -> TrainResult:
        """Train until max_steps, max_minutes or Ctrl-C / SIGTERM, checkpointing on the way and at the end.

        resume: False starts a new run (refused if out_dir holds checkpoints); True continues from the
        newest checkpoint in out_dir (a new run if there is none); a path continues from that folder.
        """
        cfg, acc = self.config, self.accelerator
        main = acc.is_main_process
        resumed = self._start(resume)
        log = RunLog(self.out_dir, self.step if resumed else None) if main else None
        n_params = sum(p.numel() for p in self.model.parameters())
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        acc.print(
            f"parameters: {n_params:,} ({n_train:,} trainable); {self.world} process(es) x {cfg.grad_accum} "
            f"micro-batches of {self.micro_batch} = {cfg.batch_size} images per step"
        )
        self.model.train()
        budget_left = None if cfg.max_minutes is None else 60 * cfg.max_minutes - self.elapsed
        bar = ProgressBar(cfg.max_steps, self.step, enabled=main, deadline_s=budget_left)
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        t0, elapsed0 = time.perf_counter(), self.elapsed
        last_time, last_images = t0, self.images_seen
        loss_sum, n_loss = torch.zeros((), device=acc.device), 0
        stop_reason, sampled_at = None, None
        snap = self._snapshot()
        try:
            while stop_reason is None:
                if self.step >= cfg.max_steps:
                    stop_reason = "max_steps"
                    break
                snap = self._snapshot()
                is_log = (self.step + 1) % cfg.log_every == 0 or self.step + 1 == cfg.max_steps
                loss, grad_norm, lr = self._train_step(need_norm=is_log)
                loss_sum, n_loss = loss_sum + loss, n_loss + 1
                now = time.perf_counter()
                self.elapsed = elapsed0 + now - t0
                if is_log:
                    mean_loss = acc.reduce(loss_sum / n_loss, "mean").item()
                    ips = (self.images_seen - last_images) / max(now - last_time, 1e-9)
                    if main:
                        log.log({
                            "step": self.step, "loss": mean_loss, "lr": lr,
                            "grad_norm": None if grad_norm is None else grad_norm.item(),
                            "images_per_s": ips, "images_seen": self.images_seen, "elapsed": self.elapsed,
                        })
                    bar.update(self.step, mean_loss, ips)
                    loss_sum, n_loss, last_images = torch.zeros_like(loss_sum), 0, self.images_seen
                    last_time = time.perf_counter()  # images/s measures training, not the logging itself
                else:
                    bar.update(self.step)
                if cfg.sample_every and self.step % cfg.sample_every == 0:
                    self._sample()
                    sampled_at = self.step
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                    self.save()
                # With several processes the stop decision needs a collective: only at logging steps.
                if self.world == 1 or is_log:
                    stop_reason = self._stop_reason()
        except KeyboardInterrupt:
            # Raised as an exception (not through the signal handler): save, unless the weights were
            # mid-update or other ranks cannot join the save. Inside a step, roll back to its start.
            if self._updating or self.world > 1:
                acc.print("interrupted inside a weight update or a multi-process run: keeping the last checkpoint")
                raise
            if snap["step"] == self.step:
                self.optimizer.zero_grad(set_to_none=True)
                self._rollback(snap)
            stop_reason = "interrupted"
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
            bar.close()
            if log is not None:
                log.close()
        if stop_reason != "interrupted" and cfg.sample_every and sampled_at != self.step:
            self._sample()
        path = self.save()
        acc.print(f"stopped ({stop_reason}) at step {self.step}; checkpoint {path}")
        return TrainResult(self.step, self.images_seen, self.elapsed, stop_reason, path)
