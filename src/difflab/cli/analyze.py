"""`difflab analyze creativity`: the ideal / LS / ELS machines against trained networks (Kamb & Ganguli 2025)."""

from __future__ import annotations

from pathlib import Path

import typer

from difflab.cli.common import THREADS, app, expand, fail, run_job, use_threads

analyze_app = typer.Typer(no_args_is_help=True, help="Studies that explain what a trained model does.")
app.add_typer(analyze_app, name="analyze")


@analyze_app.command("creativity")
def creativity(
    runs: list[Path] = typer.Argument(..., help="One or more image runs trained on the same data and process."),
    out: Path = typer.Option(Path("creativity"), "--out", help="Folder for creativity.json and the figures."),
    n: int = typer.Option(100, "-n", help="Evaluation seeds 0..n-1 (the same noises for every sampler)."),
    calibration_n: int = typer.Option(16, "--calibration-n", help="Calibration seeds (disjoint from the evaluation seeds)."),
    size: list[int] = typer.Option(None, "--size", help="Candidate patch sizes (odd; default 1, 3, ..., 2 max(H, W) - 1)."),
    sampler: str = typer.Option(None, help="Sampler (default: the run's)."),
    steps: int = typer.Option(None, help="Sampler steps (default: the run's)."),
    schedule: str = typer.Option(None, help="Time grid (default: the run's)."),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="Use the EMA weights."),
    boundary_broken: bool = typer.Option(True, "--boundary-broken/--equivariant",
                                         help="ELS matches border patches only at the same offset from the border "
                                              "(zero-padded networks) or everywhere."),
    table_mib: int = typer.Option(256, "--table-mib", help="Memory (MiB, float64) each patch size's table of training "
                                  "patches may hold; a larger table is streamed instead (slower, same result)."),
    machine: list[str] = typer.Option(None, "--machine", help="Local machine to calibrate and sample beside the "
                                      "ideal one: els or ls (repeatable; default both)."),
    threads: int = THREADS,
):
    """Sample the networks and the ideal, LS and ELS machines from the same noises; agreement, memorization, figures."""
    from difflab.jobs.analyze import LOCAL_MACHINES, run_creativity

    if n < 2:
        fail(f"-n must be at least 2 seeds; got {n}")
    if table_mib < 0:
        fail(f"--table-mib must be 0 (always stream) or more; got {table_mib}")
    use_threads(threads)
    run_job(run_creativity, [expand(r) for r in runs], expand(out), n=n, calibration_n=calibration_n,
            sizes=list(size or []) or None, sampler=sampler, steps=steps, schedule=schedule, ema=ema,
            boundary_broken=boundary_broken, max_table_elements=table_mib * 2**20 // 8,
            machines=tuple(machine or LOCAL_MACHINES))
