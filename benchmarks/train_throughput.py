"""Training throughput: the difflab Trainer against the bare PyTorch loop a user would write (issue 4).

    python benchmarks/train_throughput.py                     # both configurations, ~4 min on 2 idle cores
    python benchmarks/train_throughput.py --configs digits --blocks 6 --markdown out.md --json out.json
    python benchmarks/train_throughput.py --threads 1         # on a CPU shared with other jobs

Configurations, both built by difflab.config.factory from the `digits` preset, so that the model, the
loss, AdamW, warm-up, clipping and EMA are exactly those of `difflab train digits`:
  digits   the preset as it is: 1.7M-parameter U-Net, rectified flow, velocity loss with logit-normal t,
           batch 128 of the real 8x8 digits;
  unet10m  the preset with model.network=UNet-10M (the registry's ~10M U-Net) on 3x32x32 and batch 32,
           random images in [-1, 1].

Two loops train two copies of the same initial model:
  trainer  difflab.train.Trainer with the preset's TrainConfig (as jobs.train.run_train builds it):
           logs every log_every steps (log.jsonl, log.csv, loss.png), previews every sample_every
           steps, checkpoints every ckpt_every steps;
  bare     `bare_loop` below, the minimal honest loop: the data set held on the device and indexed by a
           shuffled permutation, the same DiffusionLoss, loss.backward(), clip_grad_norm_, AdamW with the
           same LR warm-up, the same EMA update; no logging, no host syncs.

Timing. One process, one run, interleaved blocks A B A B ...: `Interleaver` wraps the trainer's loss
function, stamps the time at the start of every trainer step and, every `steps` trainer steps, closes
the trainer's block and runs one block of `steps` bare steps before the trainer goes on. Both loops see
the same drift of machine load, the trainer runs one uninterrupted train() call, and a trainer block
spans exactly `steps` whole iterations of its loop (data, loss, backward, clipping, AdamW, EMA, logging
and its bookkeeping). On CUDA the device is synchronized at block edges only.
Reported: images/s = batch * steps / median block time per loop, overhead = 1 - trainer / bare, and the
range of the overhead over block pairs. Previews and periodic checkpoints fall outside the timed blocks
(which stay far below sample_every and ckpt_every): the preview drawn at the end of train() and one
extra checkpoint of the final state are timed and shown amortized at the preset's intervals.

Peak memory: every (configuration, loop) runs again, alone, for MEMORY_STEPS steps in a fresh child
process (`--child`): on CUDA torch.cuda.max_memory_allocated, on CPU the child's peak resident set
(VmHWM; it includes the ~0.3 GB of Python, torch and difflab). The trainer's child writes its final
checkpoint but draws no preview, like the bare loop.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from difflab.config.factory import build_data, build_denoiser, build_loss, build_process
from difflab.config.loader import config_to_dict, load_config
from difflab.data.datasets import ArrayData
from difflab.jobs.runs import RunMeta
from difflab.jobs.train import preview_fn
from difflab.nets.registry import count_parameters
from difflab.train import TrainConfig, Trainer, ema_beta, warmup_factor
from difflab.utils.seeding import seed_everything


@dataclass(frozen=True)
class Case:
    """One configuration: overrides of the digits preset, its data, and its default block sizes."""

    name: str
    overrides: tuple[str, ...]
    random_shape: tuple[int, ...] | None  # None: the preset's data set (digits); else random images
    steps: int  # timed steps per block
    blocks: int  # A/B block pairs
    warmup: int  # untimed steps per loop before the first block


CASES = {
    # Blocks of log_every = 50 steps: every trainer block holds exactly one logging step.
    "digits": Case("digits", (), None, steps=50, blocks=4, warmup=5),
    "unet10m": Case("unet10m", ("model.network=UNet-10M", "model.options={}", "train.batch_size=32"),
                    (3, 32, 32), steps=2, blocks=3, warmup=1),
}
RANDOM_ITEMS = 1024  # random images of the unet10m case: 32 batches of 32
MEMORY_STEPS = 3  # AdamW allocates its state at the first step: the peak is reached within a few


def device() -> torch.device:
    """The device both loops use: the one accelerate picks for the Trainer."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ---- the two loops ---------------------------------------------------------------------------------
def bare_loop(model, loss_fn, images: torch.Tensor, cfg: TrainConfig, seed: int = 0) -> Iterator[None]:
    """The loop a user writes by hand, one optimizer step per next(): the Trainer's AdamW, warm-up,
    clipping and EMA (half-life in images, difflab.train.ema_beta); no logging."""
    dev, batch = device(), cfg.batch_size
    images = images.to(dev)
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_factor(s, cfg.warmup_steps))
    ema_params = list(copy.deepcopy(model).requires_grad_(False).parameters())
    shuffle = torch.Generator().manual_seed(seed)
    noise = torch.Generator(device=dev).manual_seed(seed)
    step = 0
    while True:
        perm = torch.randperm(len(images), generator=shuffle).to(dev)
        for i in range(0, len(images) - batch + 1, batch):
            # index_select, not images[idx]: advanced indexing runs a parallel kernel that takes ms, not
            # us, when other processes hold the cores.
            x0 = images.index_select(0, perm[i : i + batch])
            loss = loss_fn(model, x0, None, generator=noise).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                beta = ema_beta(cfg.ema, step * batch, batch, step, cfg.ema_rampup)
                torch._foreach_lerp_(ema_params, params, 1.0 - beta)
            step += 1
            yield


class Interleaver:
    """The trainer's loss function, wrapped to alternate timed blocks of the trainer and the bare loop.

    Call i of the loss is the start of trainer step i (one call per step: grad_accum = 1). At call
    `warmup` the bare loop warms up and the first trainer block starts; every `steps` calls later the
    trainer block ends and one bare block of `steps` steps runs (A B A B ...). The trainer needs
    `trainer_steps` = warmup + blocks * steps + 1 steps.
    """

    def __init__(self, loss_fn, bare: Iterator[None], steps: int, blocks: int, warmup: int):
        self.loss_fn, self.bare = loss_fn, bare
        self.steps, self.blocks, self.warmup = steps, blocks, warmup
        self.calls, self.start = 0, 0.0
        self.trainer_times: list[float] = []
        self.bare_times: list[float] = []

    @property
    def trainer_steps(self) -> int:
        return self.warmup + self.blocks * self.steps + 1

    def _run_bare(self, n: int) -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            next(self.bare)
        sync()
        return time.perf_counter() - t0

    def __call__(self, model, x0, cond=None, generator=None):
        i, self.calls = self.calls, self.calls + 1
        if i >= self.warmup and (i - self.warmup) % self.steps == 0 and len(self.bare_times) < self.blocks:
            if i == self.warmup:
                self._run_bare(self.warmup)
            else:
                sync()
                self.trainer_times.append(time.perf_counter() - self.start)
                self.bare_times.append(self._run_bare(self.steps))
            self.start = time.perf_counter()
        return self.loss_fn(model, x0, cond, generator=generator)


class Timed:
    """A function wrapped to record the duration of each call (the trainer's preview function)."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, []

    def __call__(self, *args):
        t0 = time.perf_counter()
        out = self.fn(*args)
        sync()
        self.seconds.append(time.perf_counter() - t0)
        return out


# ---- building a configuration ----------------------------------------------------------------------
def build_case(case: Case):
    """(RunConfig whose train section is the TrainConfig a user gets, denoiser, loss, data set for the
    Trainer, its images for the bare loop, RunMeta)."""
    cfg = load_config("digits", list(case.overrides))
    cfg = replace(cfg, train=replace(cfg.train, condition=cfg.model.conditioning))  # as jobs.train does
    seed_everything(cfg.train.seed)
    if case.random_shape is None:
        dataset = build_data(cfg.data)
    else:
        g = torch.Generator().manual_seed(cfg.train.seed)
        dataset = ArrayData(torch.rand(RANDOM_ITEMS, *case.random_shape, generator=g) * 2 - 1)
    meta = RunMeta(tuple(dataset.data_shape), None, None)
    model = build_denoiser(cfg, build_process(cfg.process), meta.data_shape)
    return cfg, model, build_loss(cfg.loss), dataset, dataset.x, meta


def make_trainer(cfg, model, loss_fn, dataset, meta, out_dir: Path, max_steps: int, previews: bool = True):
    """The Trainer as jobs.train.run_train builds it, for max_steps steps, its previews timed."""
    train_cfg = replace(cfg.train, max_steps=max_steps)
    sample_fn = Timed(preview_fn(meta, cfg, None, None)) if previews else None
    return Trainer(model, loss_fn, dataset, train_cfg, out_dir, sample_fn=sample_fn,
                   run_config=config_to_dict(cfg))


# ---- measurements ----------------------------------------------------------------------------------
def measure(case: Case, tmp: Path) -> dict:
    """Interleaved trainer / bare blocks of one configuration, plus the cost of a preview and a checkpoint."""
    cfg, model, loss_fn, dataset, images, meta = build_case(case)
    if cfg.train.grad_accum != 1:
        raise ValueError("the interleaved timing counts one loss call per step: use train.grad_accum=1")
    bare_model = copy.deepcopy(model).to(device())
    clock = Interleaver(loss_fn, bare_loop(bare_model, loss_fn, images, cfg.train), case.steps, case.blocks,
                        case.warmup)
    trainer = make_trainer(cfg, model, clock, dataset, meta, tmp / case.name, clock.trainer_steps)
    trainer.train()

    # train() ended with a preview (timed by Timed); time one more checkpoint of the final state, in a
    # fresh folder since the final one exists.
    preview_s = trainer.sample_fn.seconds[-1]
    trainer.out_dir = tmp / f"{case.name}-ckpt"
    t0 = time.perf_counter()
    trainer.save()
    ckpt_s = time.perf_counter() - t0

    tc = cfg.train
    step_trainer = statistics.median(clock.trainer_times) / case.steps
    step_bare = statistics.median(clock.bare_times) / case.steps
    events = (preview_s / tc.sample_every if tc.sample_every else 0.0) + (
        ckpt_s / tc.ckpt_every if tc.ckpt_every else 0.0)  # seconds per step
    return {
        "config": case.name,
        "network": cfg.model.network,
        "params": count_parameters(model),
        "batch": tc.batch_size,
        "data_shape": list(meta.data_shape),
        "device": str(device()),
        "threads": torch.get_num_threads(),
        "steps_per_block": case.steps,
        "blocks": case.blocks,
        "warmup": case.warmup,
        "trainer_block_s": clock.trainer_times,
        "bare_block_s": clock.bare_times,
        "images_per_s_trainer": tc.batch_size / step_trainer,
        "images_per_s_bare": tc.batch_size / step_bare,
        "overhead": 1 - step_bare / step_trainer,
        "overhead_pairs": [1 - b / t for t, b in zip(clock.trainer_times, clock.bare_times, strict=True)],
        "log_every": tc.log_every,
        "sample_every": tc.sample_every,
        "ckpt_every": tc.ckpt_every,
        "preview_s": preview_s,
        "checkpoint_s": ckpt_s,
        "events_share": events / (step_trainer + events),
    }


def peak_rss() -> int:
    """Peak resident memory of this process in bytes: VmHWM on Linux, else ru_maxrss.

    Not ru_maxrss on Linux: the kernel carries the forking parent's peak over into the child's
    ru_maxrss (and the parent's RUSAGE_CHILDREN), so every child would report at least the size of
    the benchmark process itself.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def child(case: Case, loop: str) -> dict:
    """Run one loop alone for MEMORY_STEPS steps in this fresh process; {"peak_bytes", "kind"}."""
    cfg, model, loss_fn, dataset, images, meta = build_case(case)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    if loop == "trainer":
        with tempfile.TemporaryDirectory() as tmp:
            make_trainer(cfg, model, loss_fn, dataset, meta, Path(tmp), MEMORY_STEPS, previews=False).train()
    else:
        steps = bare_loop(model.to(device()), loss_fn, images, cfg.train)
        for _ in range(MEMORY_STEPS):
            next(steps)
    if torch.cuda.is_available():
        return {"peak_bytes": torch.cuda.max_memory_allocated(), "kind": "torch.cuda.max_memory_allocated"}
    return {"peak_bytes": peak_rss(), "kind": "peak RSS (VmHWM)"}


def peak_memory(case: Case, loop: str) -> dict:
    """`child(case, loop)` in a fresh interpreter with this process's thread count."""
    spec = json.dumps({"case": case.__dict__, "loop": loop})
    # The Trainer's seeding leaves a 63-bit PYTHONHASHSEED in os.environ, which a new interpreter refuses.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    cmd = [sys.executable, __file__, "--child", spec, "--threads", str(torch.get_num_threads())]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"memory child {case.name}/{loop} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- report ----------------------------------------------------------------------------------------
def markdown(rows: list[dict]) -> str:
    """The table of docs/benchmarks.md and a paragraph saying how it was measured."""
    mib = 2**20
    lines = [
        "| config | params | batch | images/s trainer | images/s bare | overhead % (pair range) "
        "| previews + ckpts % | peak memory trainer / bare |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lo, hi = min(r["overhead_pairs"]), max(r["overhead_pairs"])
        name = f"{r['config']} ({r['network']}, {'x'.join(map(str, r['data_shape']))})"
        memory = "not measured" if r["peak_trainer"] is None else (
            f"{r['peak_trainer'] / mib:.0f} / {r['peak_bare'] / mib:.0f} MiB")
        lines.append(
            f"| {name} | {r['params'] / 1e6:.2f}M | {r['batch']} | {r['images_per_s_trainer']:.1f} "
            f"| {r['images_per_s_bare']:.1f} | {100 * r['overhead']:.1f} ({100 * lo:.1f} .. {100 * hi:.1f}) "
            f"| {100 * r['events_share']:.1f} | {memory} |"
        )
    r0 = rows[0]
    blocks = ", ".join(f"{r['blocks']} blocks of {r['steps_per_block']} steps ({r['config']})" for r in rows)
    previews = ", ".join(f"{r['preview_s']:.2f} s" for r in rows)
    ckpts = ", ".join(f"{r['checkpoint_s']:.2f} s" for r in rows)
    lines += [
        "",
        f"Device {r0['device']}, {r0['threads']} torch thread(s), torch {torch.__version__}. Median of "
        f"{blocks} per loop, interleaved A B A B after an untimed warm-up; overhead = 1 - trainer/bare, "
        "in brackets its range over the block pairs. Trainer blocks include logging at the preset's "
        "log_every; previews and checkpoints fall outside them and are shown amortized at sample_every / "
        f"ckpt_every as a share of training time (one preview: {previews}; one checkpoint: {ckpts}). "
        f"Peak memory: {r0['memory_kind']} of a fresh process per configuration and loop, "
        f"{MEMORY_STEPS} steps.",
    ]
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--steps", type=int, help="timed steps per block (default: 50 digits, 2 unet10m)")
    parser.add_argument("--blocks", type=int, help="block pairs A B (default: 4 digits, 3 unet10m)")
    parser.add_argument("--warmup", type=int,
                        help="untimed steps per loop before the blocks (default: 5 digits, 1 unet10m)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice); on a "
                        "shared CPU, 1 avoids OpenMP threads waiting on descheduled siblings")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--markdown", type=Path, help="write the table as markdown")
    parser.add_argument("--json", type=Path, help="write every measurement as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    a = parser.parse_args(argv)
    for name, value in (("--steps", a.steps), ("--blocks", a.blocks), ("--warmup", a.warmup),
                        ("--threads", a.threads)):
        if value is not None and value < 1:
            parser.error(f"{name} must be >= 1")
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    if a.child:
        spec = json.loads(a.child)["case"]
        shape = spec["random_shape"] and tuple(spec["random_shape"])
        case = Case(**{**spec, "overrides": tuple(spec["overrides"]), "random_shape": shape})
        print(json.dumps(child(case, json.loads(a.child)["loop"])))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="difflab-throughput-") as tmp:
        for name in a.configs:
            base = CASES[name]
            case = replace(base, steps=a.steps or base.steps, blocks=a.blocks or base.blocks,
                           warmup=a.warmup or base.warmup)
            t0 = time.perf_counter()
            row = measure(case, Path(tmp))
            row["peak_trainer"] = row["peak_bare"] = None
            row["memory_kind"] = "not measured"
            if not a.no_memory:
                for loop in ("trainer", "bare"):
                    mem = peak_memory(case, loop)
                    row[f"peak_{loop}"], row["memory_kind"] = mem["peak_bytes"], mem["kind"]
            row["wall_s"] = time.perf_counter() - t0
            print(f"{name}: trainer {row['images_per_s_trainer']:.1f} img/s, bare "
                  f"{row['images_per_s_bare']:.1f} img/s, overhead {100 * row['overhead']:.1f}% "
                  f"({row['wall_s']:.0f} s)", file=sys.stderr)
            rows.append(row)
    table = markdown(rows)
    print(table)
    if a.markdown:
        write_atomic(a.markdown, table)
    if a.json:
        write_atomic(a.json, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
