"""The training loop: an objective's updates, EMA, logs, previews, checkpoints, resume, Ctrl-C.

EDM's training_loop shape: a loop of optimizer steps, and a once-per-tick maintenance step (log,
preview, checkpoint, stop agreement) after each of them. What one update does belongs to the
objective (difflab.train.objective: the denoising loss by default, the seam for GANs and
distillation); what the loss sees of a data batch to one injected prepare(batch, generator)
(difflab.train.prepare), so the loop knows nothing of labels or captions.

The same code runs in one process, under `accelerate launch` or `torchrun` (DDP over gloo or NCCL),
on one node or many: `accelerate.Accelerator` wraps the model and picks the device and the autocast.
Every random draw of the loss and of condition dropout comes from one per-rank generator; its state,
the global RNG states and the data position are saved with the weights, so a resumed run repeats the
uninterrupted run exactly. Per-step work has no host syncs: losses are summed on the device and read
at logging steps only.

Stopping: max_steps, max_minutes (elapsed time is saved with a checkpoint and counts on after a
resume), or Ctrl-C / SIGTERM. A signal sets one flag, read at the end of the step: the run then
saves and stops. A second Ctrl-C raises KeyboardInterrupt at once, except inside a parameter update
or a checkpoint save, which finish first; a KeyboardInterrupt inside a step returns the data stream
and the RNGs to the step's start. Whatever is interrupted after step 1, a checkpoint is written
before the end-of-training preview, so no interrupt loses the run. One process trains into a run
folder at a time (difflab.train.lock).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import Tensor, nn

from difflab.train.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    newest_intact_checkpoint,
    save_checkpoint,
    set_aside,
)
from difflab.train.data import GLOBAL_STREAM, LOSS_STREAM, BatchStream, derive_seed
from difflab.train.ema import EMA
from difflab.train.lock import RunLock
from difflab.train.monitor import ProgressBar, RunLog
from difflab.train.objective import DenoisingObjective, LossFn, Objective
from difflab.train.prepare import Unconditional
from difflab.train.rng import capture_rng, decode_rng, encode_rng, restore_rng
from difflab.train.settings import TrainConfig, TrainResult
from difflab.utils.errors import DifflabError
from difflab.utils.seeding import seed_everything

SampleFn = Callable[[nn.Module, int, Path], object]
Prepare = Callable[[dict, torch.Generator], tuple[Tensor, dict | None]]
MakeObjective = Callable[[nn.Module, LossFn, TrainConfig, Accelerator], Objective]
SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _handling(handler):
    """SIGINT and SIGTERM go to `handler` inside the block (in the main thread; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _Tick:
    """What the maintenance step carries between steps: the loss sum since the last log, the clock."""

    def __init__(self, trainer: Trainer):
        self.t0, self.elapsed0 = time.perf_counter(), trainer.elapsed
        self.last_time, self.last_images = self.t0, trainer.images_seen
        self.loss_sum, self.n_loss = torch.zeros((), device=trainer.accelerator.device), 0
        self.sampled_at: int | None = None


class Trainer:
    """Train `model` (a denoiser, difflab.param contract) on `loss_fn` over `data`; see TrainConfig.

    loss_fn(model, x0, cond=None, generator=None) -> per-sample losses (B,) (e.g.
    difflab.objectives.DiffusionLoss); the objective takes their mean. data: a map-style Dataset (or a
    DataLoader over one), whose order the trainer owns, or any re-iterable of batch dicts {"x",
    "label", "caption"} (see difflab.train.data.BatchStream). prepare(batch, generator) -> (x0, cond)
    turns a batch into the loss's input (difflab.train.prepare; built from model.conditioning by
    difflab.config.factory.build_prepare; default unconditional). sample_fn(ema_model, step, out_dir)
    draws preview samples on the main process under torch.no_grad, with the RNG states restored
    afterwards so previews never change training. objective(model, loss_fn, config, accelerator)
    builds the update (default DenoisingObjective). run_config is the full config written to every
    checkpoint (default: config).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data,
        config: TrainConfig,
        out_dir: str | Path,
        sample_fn: SampleFn | None = None,
        prepare: Prepare | None = None,
        run_config: dict | None = None,
        objective: MakeObjective = DenoisingObjective,
    ):
        self.config, self.out_dir, self.sample_fn = config, Path(out_dir), sample_fn
        self.prepare = prepare if prepare is not None else Unconditional()
        self.run_config = config.to_dict() if run_config is None else run_config
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
        self.ema = EMA(model, config.ema, config.ema_rampup)  # before the objective wraps the model
        self.objective = objective(model, loss_fn, config, acc)
        if hasattr(self.objective, "bind_ema"):  # an objective that restarts its model from the EMA
            self.objective.bind_ema(self.ema)
        self._ema_clock = getattr(self.objective, "ema_images", None)  # an objective's own EMA ramp-up clock
        self.stream = BatchStream(data, self.micro_batch, config.seed, self.rank, self.world, config.num_workers)
        self.generator = torch.Generator(device=acc.device)
        self.step, self.images_seen, self.elapsed = 0, 0, 0.0
        self._stop: int | None = None  # the one signal flag: the signal that asked the run to stop
        self._pid = os.getpid()

    # ---- one optimizer step ----------------------------------------------------------------------
    def _batches(self) -> Iterator[tuple[Tensor, dict | None]]:
        while True:
            yield self.prepare(next(self.stream), self.generator)

    def _uninterrupted(self) -> contextlib.AbstractContextManager:
        """A block that a second Ctrl-C does not cut short: signals only set the flag inside it."""
        return _handling(self._note_signal)

    @contextlib.contextmanager
    def _commit(self):
        """The parameter update (inside the objective), then the EMA and the counters, as one unit."""
        with self._uninterrupted():
            yield
            images = self.images_seen if self._ema_clock is None else self._ema_clock()
            self.ema.update(self.model, images, self.config.batch_size)
            self.step += 1
            self.images_seen += self.config.batch_size

    def _train_step(self, need_norm: bool) -> tuple[Tensor, Tensor | None, float]:
        """One optimizer step; returns (loss, grad norm or None, lr used) as device tensors / floats."""
        return self.objective.update(self._batches(), self.generator, need_norm, self._commit)

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
        with self._uninterrupted():
            if acc.is_main_process:
                state = {**snap, "rng": rng, "world_size": self.world}
                path = save_checkpoint(
                    self.out_dir, self.step, self.model, self.ema.module, self.objective.state_dict(), state,
                    self.run_config, self.config.keep_last, getattr(self.objective, "milestones", ()),
                )
            acc.wait_for_everyone()
        return path

    def _resume(self, path: Path) -> None:
        trainer_state, state = load_checkpoint(path, self.model, self.ema.module)
        self.objective.load_state_dict(trainer_state)
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

    def _newest_intact(self) -> Path | None:
        """The newest checkpoint whose files are all sound; damaged newer ones are set aside, said so."""
        path, skipped = newest_intact_checkpoint(self.out_dir)
        if path is None and skipped:
            raise DifflabError(
                f"every checkpoint of {self.out_dir} is damaged ({'; '.join(map(str, skipped))}): nothing can "
                "be resumed; start a new run in another output folder"
            )
        self.accelerator.wait_for_everyone()  # every rank has chosen before the main one renames
        for damage in skipped:
            if self.accelerator.is_main_process:
                aside = set_aside(damage.file.parent)
                self.accelerator.print(f"skipped {damage.file.parent.name}: {damage}; kept as {aside.name}")
        if skipped:
            self.accelerator.print(f"resuming from the newest intact checkpoint, {path.name}")
        return path

    def _start(self, resume: bool | str | Path) -> bool:
        """Resume or seed a fresh run; True when resumed."""
        path = Path(resume) if isinstance(resume, (str, Path)) else None
        if resume is True:
            path = self._newest_intact()
            if path is None:
                self.accelerator.print(f"no checkpoint in {self.out_dir}: starting a new run")
        elif path is None and list_checkpoints(self.out_dir):
            raise DifflabError(
                f"{self.out_dir} already holds checkpoints (latest {list_checkpoints(self.out_dir)[-1].name}): "
                "pass resume=True to continue that run, or choose another output folder"
            )
        if path is not None and not path.is_dir():
            raise DifflabError(f"cannot resume: {path} is not a checkpoint folder")
        if path is None:
            self._seed()
            return False
        self._resume(path)
        return True

    # ---- previews, signals, stopping -------------------------------------------------------------
    def _sample(self) -> None:
        if self.sample_fn is None or not self.accelerator.is_main_process:
            return
        snap = capture_rng({"loss": self.generator})
        try:
            with torch.no_grad():
                self.sample_fn(self.ema.module, self.step, self.out_dir)
        finally:
            restore_rng(snap, {"loss": self.generator})

    def _note_signal(self, signum, frame) -> None:
        if os.getpid() == self._pid:  # a forked DataLoader worker inherited the handler: not its business
            self._stop = signum

    def _on_signal(self, signum, frame) -> None:
        if os.getpid() != self._pid:
            return
        again = self._stop is not None
        self._stop = signum
        if again and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.accelerator.print("stopping after this step and saving a checkpoint; Ctrl-C again to stop at once")

    def _signals(self) -> contextlib.AbstractContextManager:
        """Ctrl-C and SIGTERM set the stop flag while the run lasts (main thread only)."""
        return _handling(self._on_signal)

    def _stop_reason(self, agree: bool = True) -> str | None:
        """'interrupted', 'max_steps', 'max_minutes' or None; agreed over all ranks (a collective when
        world > 1, so only at logging steps: agree=False skips the signal and clock there)."""
        cfg = self.config
        if cfg.max_steps is not None and self.step >= cfg.max_steps:
            return "max_steps"
        if not agree and self.world > 1:
            return None
        interrupted = self._stop is not None
        out_of_time = cfg.max_minutes is not None and self.elapsed >= 60 * cfg.max_minutes
        if self.world > 1:
            flags = torch.tensor([interrupted, out_of_time], dtype=torch.float32, device=self.accelerator.device)
            interrupted, out_of_time = (bool(v > 0) for v in self.accelerator.reduce(flags, "sum").tolist())
        return "interrupted" if interrupted else "max_minutes" if out_of_time else None

    # ---- the loop ----------------------------------------------------------------------------------
    def _open_log(self, resumed: bool) -> RunLog | None:
        """The run's log (main process), continued on resume; a damaged log is kept aside, not lost."""
        if not self.accelerator.is_main_process:
            return None
        resume_step = self.step if resumed else None
        try:
            return RunLog(self.out_dir, resume_step)
        except (ValueError, KeyError, TypeError) as e:
            damaged = self.out_dir / "log.jsonl"
            aside = damaged.with_name("log.jsonl.damaged")
            os.replace(damaged, aside)
            self.accelerator.print(f"{damaged} is damaged ({type(e).__name__}: {e}); kept as {aside.name}, "
                                   "the log starts again here")
            return RunLog(self.out_dir, resume_step)

    def _maintain(self, tick: _Tick, log: RunLog | None, bar: ProgressBar,
                  loss: Tensor, grad_norm: Tensor | None, lr: float, is_log: bool) -> str | None:
        """The once-per-tick work after a step: clock, log, preview, checkpoint; returns a stop reason."""
        cfg, acc = self.config, self.accelerator
        tick.loss_sum, tick.n_loss = tick.loss_sum + loss, tick.n_loss + 1
        now = time.perf_counter()
        self.elapsed = tick.elapsed0 + now - tick.t0
        if is_log:
            mean_loss = acc.reduce(tick.loss_sum / tick.n_loss, "mean").item()
            ips = (self.images_seen - tick.last_images) / max(now - tick.last_time, 1e-9)
            # an objective's own scalars since the last log (e.g. a GAN's d_loss): log_stats() -> {name: float}
            extra = self.objective.log_stats() if hasattr(self.objective, "log_stats") else {}
            if log is not None:
                log.log({
                    "step": self.step, "loss": mean_loss, "lr": lr,
                    "grad_norm": None if grad_norm is None else grad_norm.item(),
                    "images_per_s": ips, "images_seen": self.images_seen, "elapsed": self.elapsed, **extra,
                })
            bar.update(self.step, mean_loss, ips)
            tick.loss_sum, tick.n_loss, tick.last_images = torch.zeros_like(tick.loss_sum), 0, self.images_seen
            tick.last_time = time.perf_counter()  # images/s measures training, not the logging itself
        else:
            bar.update(self.step)
        if cfg.sample_every and self.step % cfg.sample_every == 0:
            self._sample()
            tick.sampled_at = self.step
        if (cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or self.step in getattr(self.objective, "milestones", ()):
            self.save()
        return self._stop_reason(agree=is_log)

    def _loop(self, resumed: bool, tick: _Tick) -> str:
        """Steps and their maintenance until a stop reason; a KeyboardInterrupt inside a step rolls it back."""
        cfg, main = self.config, self.accelerator.is_main_process
        log = self._open_log(resumed)
        budget_left = None if cfg.max_minutes is None else 60 * cfg.max_minutes - self.elapsed
        bar = ProgressBar(cfg.max_steps, self.step, enabled=main, deadline_s=budget_left)
        snap = None
        try:
            reason = self._stop_reason()  # a spent budget trains nothing more
            while reason is None:
                snap = self._snapshot()
                is_log = (self.step + 1) % cfg.log_every == 0 or self.step + 1 == cfg.max_steps
                loss, grad_norm, lr = self._train_step(need_norm=is_log)
                reason = self._maintain(tick, log, bar, loss, grad_norm, lr, is_log)
            return reason
        except KeyboardInterrupt:
            if self.world > 1:  # the other ranks cannot join a save
                self.accelerator.print("interrupted in a multi-process run: keeping the last checkpoint")
                raise
            if snap is not None and snap["step"] == self.step:  # inside a step: back to its start
                self._rollback(snap)
            return "interrupted"
        finally:
            bar.close()
            if log is not None:
                log.close()

    def _finish(self, reason: str, tick: _Tick) -> tuple[Path | None, str]:
        """Save first, then the end-of-training preview: a Ctrl-C during the preview keeps the checkpoint."""
        path = self.save()
        if reason != "interrupted" and self.config.sample_every and tick.sampled_at != self.step:
            try:
                self._sample()
            except KeyboardInterrupt:
                reason = "interrupted"
                self.accelerator.print(f"preview interrupted; the checkpoint {path} is saved")
        self.accelerator.print(f"stopped ({reason}) at step {self.step}; checkpoint {path}")
        return path, reason

    def _report_size(self) -> None:
        cfg = self.config
        n_params = sum(p.numel() for p in self.model.parameters())
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.accelerator.print(
            f"parameters: {n_params:,} ({n_train:,} trainable); {self.world} process(es) x {cfg.grad_accum} "
            f"micro-batches of {self.micro_batch} = {cfg.batch_size} images per step"
        )

    def train(self, resume: bool | str | Path = False) -> TrainResult:
        """Train until max_steps, max_minutes or Ctrl-C / SIGTERM, checkpointing on the way and at the end.

        resume: False starts a new run (refused if out_dir holds checkpoints); True continues from the
        newest intact checkpoint in out_dir (a new run if there is none; damaged newer ones are set
        aside as ckpt-<step>.damaged, said so); a path continues from that folder. The run folder is
        locked against other processes for the whole call.
        """
        main, self._stop = self.accelerator.is_main_process, None
        with RunLock(self.out_dir) if main else contextlib.nullcontext() as lock:
            if lock is not None and lock.note:
                self.accelerator.print(lock.note)
            resumed = self._start(resume)
            self._report_size()
            self.model.train()
            with self._signals():
                tick = _Tick(self)
                reason = self._loop(resumed, tick)
                path, reason = self._finish(reason, tick)
        return TrainResult(self.step, self.images_seen, self.elapsed, reason, path)

