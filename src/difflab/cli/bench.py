"""`difflab bench samplers`: the sampler benchmark of docs/benchmarks.md from the command line."""

from __future__ import annotations

from pathlib import Path

import typer

from difflab.cli.common import app, run_job

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks whose figures go into docs/benchmarks.md.")
app.add_typer(bench_app, name="bench")


@bench_app.command("samplers")
def samplers(
    quick: bool = typer.Option(False, help="VP only, NFE 5/10/20, a subset of samplers (about a minute)."),
    process: list[str] = typer.Option(None, "--process", help="Processes to run (default: vp and flow)."),
    nfe: list[int] = typer.Option(None, "--nfe", help="NFE budgets (default: 5 8 10 15 20 30 50 100)."),
    sampler: list[str] = typer.Option(None, "--sampler", help="Sampler configurations (default: all)."),
    schedule: list[str] = typer.Option(None, "--schedule", help="Grids, 'optimized' = fitted (default: all)."),
    mixture: list[str] = typer.Option(None, "--mixture", help="Mixtures: ring, image64 (default: both)."),
    n: int = typer.Option(None, "-n", help="Samples per setting (default 512; quick 256)."),
    pilot: int = typer.Option(None, help="Pilot batch of a fitted grid (default 256; quick 128)."),
    max_evals: int = typer.Option(None, "--max-evals", help="Solver runs of a grid fit's search (default 100)."),
    workers: int = typer.Option(2, help="Worker processes (one case each)."),
    seed: int = typer.Option(0, help="Seed of x_T, the data sets and the pilot batches."),
    json_path: Path = typer.Option(None, "--json", help="Write the rows as JSON (case, sampler, schedule, nfe, rmse, sw2_ratio)."),
    markdown: Path = typer.Option(None, help="Write the tables as markdown."),
    plot: Path = typer.Option(None, help="Write the log-log error-vs-NFE figure (PNG)."),
    pictures: Path = typer.Option(None, help="Also write trajectory pictures (PNG, GIF) into this folder."),
    overhead: bool = typer.Option(True, "--overhead/--no-overhead", help="Time the per-step overhead."),
):
    """Every sampler x schedule x NFE against the exact Gaussian-mixture denoiser: RMSE, SW2/floor, overhead."""
    from difflab.jobs.bench_samplers import run_sampler_benchmark

    report = run_job(run_sampler_benchmark, quick=quick, processes=process or None, nfes=nfe or None,
                     configs=sampler or None, schedules=schedule or None, mixtures=mixture or None, n=n,
                     pilot=pilot, max_evals=max_evals,
                     workers=workers, seed=seed, json_path=json_path, markdown_path=markdown, plot_path=plot,
                     pictures_dir=pictures, overhead=overhead)
    typer.echo(report)
