"""Sampler benchmark: every sampler x grid on the exact Gaussian-mixture denoiser (docs/benchmarks.md).

    python benchmarks/samplers.py --json outputs/samplers.json --markdown outputs/samplers.md \
        --plot outputs/samplers.png            # full: vp + flow, ring + 64-D, NFE 5..100 (~4 min, 2 cores)
    python benchmarks/samplers.py --quick      # vp only, NFE 5/10/20, a subset (~1 min)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import torch

from difflab.analysis.sampler_benchmark import (
    CONFIGS,
    NFES,
    SCHEDULES,
    default_cases,
    goal_summary,
    markdown_tables,
    per_step_overhead,
    run_case,
)
from difflab.metrics.lowdim import sliced_wasserstein2

QUICK = {
    "nfes": (5, 10, 20),
    "configs": ("ddim", "dpmpp_2m", "dpmpp_3m", "dpmpp_3m_published", "unipc", "ddpm", "dpmpp_2m_sde"),
    "schedules": ("uniform", "logsnr", "karras", "optimized"),
    "n": 256,
    "pilot": 128,
}


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _run(job):
    case, kwargs, verbose = job
    torch.set_num_threads(1)
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if verbose else None
    return run_case(case, sliced_wasserstein2, log=log, **kwargs)


def plot(rows: list[dict], path: Path) -> None:
    """Log-log RMSE vs NFE per case: each sampler on its best fixed grid (dashed) and optimized grid (solid)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from difflab.viz.io import save_figure

    cases = sorted({r["case"] for r in rows})
    fig, axes = plt.subplots(1, len(cases), figsize=(5 * len(cases), 4.2), squeeze=False)
    for ax, case in zip(axes[0], cases, strict=True):
        sub = [r for r in rows if r["case"] == case and r["rmse"] is not None]
        for i, label in enumerate(dict.fromkeys(r["sampler"] for r in sub)):
            color = f"C{i % 10}"
            for optimized in (False, True):
                pts = {}
                for r in sub:
                    if r["sampler"] == label and (r["schedule"] == "optimized") == optimized:
                        pts[r["nfe"]] = min(pts.get(r["nfe"], float("inf")), r["rmse"])  # counted NFE
                if pts:
                    k = sorted(pts)
                    ax.loglog(k, [pts[n] for n in k], "-" if optimized else "--", color=color, marker=".",
                              label=f"{label}{' (optimized grid)' if optimized else ''}")
        ax.set_title(case)
        ax.set_xlabel("NFE")
        ax.set_ylabel("RMSE to exact ODE endpoint")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower left")
    save_figure(fig, path)


def pictures(out_dir: Path) -> None:
    """Trajectories of a few samplers on the ring (rectified flow), a denoising strip and a GIF."""
    from difflab.analysis import ring_mixture
    from difflab.process import RectifiedFlow
    from difflab.sampling import sample
    from difflab.viz.trajectories import plot_denoising_strip, plot_trajectories, save_trajectory_gif

    mixture = ring_mixture()
    D = mixture.denoiser(RectifiedFlow(), "velocity")
    data = mixture.sample(2000, torch.Generator().manual_seed(0))[0]
    runs = {name: sample(D, (64, 2), sampler=name, steps=steps, seed=0, return_trajectory=True)
            for name, steps in (("euler", 10), ("heun", 5), ("unipc", 10), ("ddpm", 40))}
    plot_trajectories({k: r.trajectory for k, r in runs.items()}, out_dir / "trajectories.png", data=data, max_paths=32)
    strip = sample(D, (2000, 2), sampler="ddpm", steps=40, seed=1, return_trajectory=True)
    plot_denoising_strip(strip.trajectory, strip.times, out_dir / "denoising_strip.png", frames=8, data=data)
    save_trajectory_gif(strip.trajectory, strip.times, out_dir / "denoising.gif", data=data)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="vp only, NFE 5/10/20, a subset of samplers")
    parser.add_argument("--processes", nargs="+", default=None, help="processes (default: vp flow; quick: vp)")
    parser.add_argument("--nfes", nargs="+", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write rows (case, sampler, schedule, nfe, rmse, sw2_ratio)")
    parser.add_argument("--markdown", type=Path, help="write the tables as markdown")
    parser.add_argument("--plot", type=Path, help="write the log-log error-vs-NFE figure (PNG)")
    parser.add_argument("--no-overhead", action="store_true", help="skip the per-step overhead timing")
    parser.add_argument("--pictures", type=Path, help="also write trajectory pictures (PNG, GIF) to this folder")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    kwargs = dict(QUICK) if args.quick else {"nfes": NFES, "configs": tuple(CONFIGS), "schedules": SCHEDULES}
    if args.nfes:
        kwargs["nfes"] = tuple(args.nfes)
    kwargs["seed"] = args.seed
    processes = args.processes or (["vp"] if args.quick else ["vp", "flow"])
    cases = sorted(default_cases(processes), key=lambda c: c.mixture.dim, reverse=True)  # slow cases first
    start = time.perf_counter()
    jobs = [(c, kwargs, args.verbose) for c in cases]
    if args.workers > 1:
        with get_context("spawn").Pool(min(args.workers, len(jobs))) as pool:
            results = pool.map(_run, jobs, chunksize=1)
    else:
        results = [_run(j) for j in jobs]
    rows = [r for res in results for r in res]
    overhead = None if args.no_overhead else per_step_overhead(
        [c for c in kwargs["configs"] if c in CONFIGS])
    goal = goal_summary(rows)
    text = markdown_tables(rows, goal, overhead)
    header = (f"Sampler benchmark: `python benchmarks/samplers.py{' --quick' if args.quick else ''}` "
              f"({platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"{time.perf_counter() - start:.0f} s, {args.workers} workers)\n\n")
    print(header + text)
    if args.markdown:
        _write_text(args.markdown, header + text)
    if args.json:
        _write_text(args.json, json.dumps(rows, indent=1))
    if args.plot:
        plot(rows, args.plot)
    if args.pictures:
        pictures(args.pictures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
