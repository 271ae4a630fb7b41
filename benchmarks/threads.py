"""Training speed at 1 and 2 torch threads, measured in one run, interleaved (issue 19).

    OMP_NUM_THREADS=2 python benchmarks/threads.py                      # digits and toy2d, ~3 min
    python benchmarks/threads.py --configs digits --threads 1 2 4 --steps 10 --pairs 6 --json out.json

On a CPU shared with other jobs the OpenMP threads of one op wait for siblings that the kernel has
descheduled, so more threads can be much slower than one. The machine's load changes from minute to
minute, so the thread counts are measured in rounds: every round runs one block of `steps` training
steps at each thread count (torch.set_num_threads between blocks, order rotated every round), and each
round gives a ratio under nearly the same load. Reported: images/s per thread count (median over
rounds), the per-round ratios to 1 thread, and the 1-minute load average before and after.

A step is the bare loop of benchmarks/train_throughput.py (the preset's network, loss, AdamW, warm-up,
clipping and EMA, the data held in memory), so the figures are those of `difflab train PRESET` less
its ~1-3 % logging overhead (docs/benchmarks.md, "Trainer overhead").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import Case, bare_loop, build_case  # noqa: E402

CASES = {
    "digits": Case("digits", (), None, steps=4, blocks=4, warmup=1),
    "toy2d": Case("toy2d", (), None, steps=10, blocks=4, warmup=2),
}


def build(name: str, case: Case):
    """(batch size, an iterator doing one training step per next()) for a preset."""
    if name == "digits":
        cfg, model, loss_fn, _, images, _ = build_case(case)
    else:  # toy2d: the same construction from its own preset
        from difflab.config.factory import build_data, build_denoiser, build_loss, build_process
        from difflab.config.loader import load_config

        cfg = load_config(name, [])
        data = build_data(cfg.data)
        model = build_denoiser(cfg, build_process(cfg.process), tuple(data.data_shape))
        loss_fn, images = build_loss(cfg.loss), data.x
    return cfg.train.batch_size, bare_loop(model, loss_fn, images, cfg.train)


def block(steps_iter, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        next(steps_iter)
    return time.perf_counter() - t0


def measure(name: str, case: Case, threads: list[int]) -> dict:
    batch, it = build(name, case)
    for k in threads:  # warm-up at every thread count (allocator, OpenMP pools)
        torch.set_num_threads(k)
        block(it, case.warmup)
    load0 = os.getloadavg()[0]
    seconds = {k: [] for k in threads}
    for r in range(case.blocks):
        order = threads[r % len(threads):] + threads[: r % len(threads)]
        for k in order:
            torch.set_num_threads(k)
            seconds[k].append(block(it, case.steps))
    load1 = os.getloadavg()[0]
    ips = {k: [batch * case.steps / s for s in v] for k, v in seconds.items()}
    base = threads[0]
    return {
        "config": name, "batch": batch, "steps_per_block": case.steps, "rounds": case.blocks,
        "threads": threads, "block_s": seconds,
        "images_per_s": {k: statistics.median(v) for k, v in ips.items()},
        "ratio_to_first": {k: [a / b for a, b in zip(v, ips[base], strict=True)] for k, v in ips.items()},
        "load_before": load0, "load_after": load1,
    }


def markdown(rows: list[dict]) -> str:
    threads = rows[0]["threads"]
    head = " | ".join(f"images/s at {k}" for k in threads)
    ratios = " | ".join(f"{k} / {threads[0]} threads (range)" for k in threads[1:])
    lines = [f"| config | batch | steps per block x rounds | {head} | {ratios} | load avg before / after |",
             "| --- | ---: | ---: |" + " ---: |" * (len(threads) + len(threads) - 1) + " ---: |"]
    for r in rows:
        cells = " | ".join(f"{r['images_per_s'][k]:.0f}" for k in threads)
        rat = " | ".join(
            f"{statistics.median(r['ratio_to_first'][k]):.2f} ({min(r['ratio_to_first'][k]):.2f} .. "
            f"{max(r['ratio_to_first'][k]):.2f})" for k in threads[1:])
        lines.append(f"| {r['config']} | {r['batch']} | {r['steps_per_block']} x {r['rounds']} | {cells} | {rat} "
                     f"| {r['load_before']:.1f} / {r['load_after']:.1f} |")
    lines += ["", f"{os.cpu_count()} logical CPUs ({platform.machine()}), torch {torch.__version__}; images/s: "
              "median over rounds; ratio: per round, same load."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", choices=sorted(CASES), default=list(CASES))
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--steps", type=int, help="training steps per block (default: 4 digits, 10 toy2d)")
    p.add_argument("--pairs", type=int, help="rounds, each a block at every thread count (default 4)")
    p.add_argument("--json", type=Path)
    p.add_argument("--markdown", type=Path)
    a = p.parse_args(argv)
    if min(a.threads) < 1 or (a.steps is not None and a.steps < 1) or (a.pairs is not None and a.pairs < 1):
        p.error("--threads, --steps and --pairs must be >= 1")
    rows = []
    for name in a.configs:
        case = replace(CASES[name], steps=a.steps or CASES[name].steps, blocks=a.pairs or CASES[name].blocks)
        t0 = time.perf_counter()
        row = measure(name, case, a.threads)
        row["wall_s"] = time.perf_counter() - t0
        print(f"{name}: " + ", ".join(f"{k} thread(s) {v:.0f} img/s" for k, v in row["images_per_s"].items())
              + f" ({row['wall_s']:.0f} s, load {row['load_before']:.1f} -> {row['load_after']:.1f})",
              file=sys.stderr, flush=True)
        rows.append(row)
    table = markdown(rows)
    print(table)
    if a.markdown:
        a.markdown.write_text(table)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
