"""`difflab bench samplers`: the sampler benchmark run end to end (tables, JSON, plot, pictures).

The measurements live in difflab.analysis.sampler_benchmark; this job runs the cases in worker processes,
writes the files and renders the figures. benchmarks/samplers.py is the same job as a script.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import torch

from difflab.analysis.sampler_benchmark import (
    CONFIGS,
    MIXTURES,
    NFES,
    PARAMETERIZATIONS,
    SCHEDULES,
    default_cases,
    goal_summary,
    markdown_tables,
    per_step_overhead,
    run_case,
)
from difflab.metrics.lowdim import sliced_wasserstein2
from difflab.utils.errors import check_choice
from difflab.utils.files import atomic_write_text
from difflab.utils.progress import Progress

QUICK = {
    "nfes": (5, 10, 20),
    "configs": ("ddim", "dpmpp_2m", "dpmpp_3m", "dpmpp_3m_published", "unipc", "ddpm", "dpmpp_2m_sde"),
    "schedules": ("uniform", "logsnr", "karras", "optimized"),
    "n": 256,
    "pilot": 128,
}


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
                        pts[r["nfe"]] = min(pts.get(r["nfe"], float("inf")), r["rmse"])  # counted sampling NFE
                if pts:
                    k = sorted(pts)
                    ax.loglog(k, [pts[n] for n in k], "-" if optimized else "--", color=color, marker=".",
                              label=f"{label}{' (fitted grid, + its one-time fit)' if optimized else ''}")
        ax.set_title(case)
        ax.set_xlabel("sampling NFE")
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


def run_sampler_benchmark(
    *,
    quick: bool = False,
    processes: list[str] | None = None,
    nfes: list[int] | None = None,
    configs: list[str] | None = None,
    schedules: list[str] | None = None,
    mixtures: list[str] | None = None,
    n: int | None = None,
    pilot: int | None = None,
    max_evals: int | None = None,
    workers: int = 2,
    seed: int = 0,
    json_path: Path | None = None,
    markdown_path: Path | None = None,
    plot_path: Path | None = None,
    pictures_dir: Path | None = None,
    overhead: bool = True,
    verbose: bool = False,
) -> str:
    """Run the benchmark and write what was asked for; returns the markdown report. configs / schedules /
    mixtures / nfes / n / pilot / max_evals narrow it (e.g. one tiny cell for a test)."""
    kwargs = dict(QUICK) if quick else {"nfes": NFES, "configs": tuple(CONFIGS), "schedules": SCHEDULES}
    for key, kind, value, choices in (("configs", "sampler", configs, CONFIGS),
                                      ("schedules", "schedule", schedules, SCHEDULES)):
        if value:
            for v in value:
                check_choice(kind, v, choices)
            kwargs[key] = tuple(value)
    for key, value in (("nfes", nfes and tuple(nfes)), ("n", n), ("pilot", pilot), ("max_evals", max_evals)):
        if value:
            kwargs[key] = value
    kwargs["seed"] = seed
    processes = processes or (["vp"] if quick else ["vp", "flow"])
    for p in processes:
        check_choice("process", p, PARAMETERIZATIONS)
    for m in mixtures or ():
        check_choice("mixture", m, MIXTURES)
    cases = [c for c in default_cases(processes) if not mixtures or c.name.split("-")[0] in mixtures]
    cases = sorted(cases, key=lambda c: c.mixture.dim, reverse=True)  # slow cases first
    start = time.perf_counter()
    jobs = [(c, kwargs, verbose) for c in cases]
    results = []
    with Progress(len(jobs), "bench samplers", unit="case", stream=sys.stderr) as bar:
        if workers > 1:
            with get_context("spawn").Pool(min(workers, len(jobs))) as pool:
                for res in pool.imap(_run, jobs, chunksize=1):  # in order, reported as each case ends
                    results.append(res)
                    bar.advance(1)
        else:
            for j in jobs:
                results.append(_run(j))
                bar.advance(1)
    rows = [r for res in results for r in res]
    timing = per_step_overhead([c for c in kwargs["configs"] if c in CONFIGS]) if overhead else None
    text = markdown_tables(rows, goal_summary(rows), timing)
    header = (f"Sampler benchmark: `difflab bench samplers{' --quick' if quick else ''}` "
              f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
              f"{time.strftime('%Y-%m-%d')}, {time.perf_counter() - start:.0f} s, {workers} workers)\n\n")
    report = header + text
    if markdown_path:
        atomic_write_text(Path(markdown_path), report)
    if json_path:
        atomic_write_text(Path(json_path), json.dumps(rows, indent=1))
    if plot_path:
        plot(rows, Path(plot_path))
    if pictures_dir:
        pictures(Path(pictures_dir))
    return report
