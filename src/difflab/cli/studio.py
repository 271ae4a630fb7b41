"""`difflab studio RUN ...`: serve the local web page (difflab.studio) for the given runs."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from difflab.cli.common import THREADS, app, expand, fail, run_job, use_threads


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def studio(
    runs: list[Path] = typer.Argument(None, help="Run folders, or a folder holding runs (default: runs/)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; anything but loopback lets other machines in."),
    port: int = typer.Option(7860, help="Port to listen on."),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    threads: int = THREADS,
):
    """A local web page to sample, compare and look inside trained runs (needs `pip install 'difflab\\[studio]'`)."""
    try:
        import uvicorn

        from difflab.studio.app import create_app
        from difflab.studio.runs import RunTable
    except ImportError as e:
        fail(f"difflab studio needs the studio extra ({e.name} is missing): pip install 'difflab[studio]'")
    from difflab.jobs.generate import resolve_device

    if not 0 < port < 65536:
        fail(f"--port must be in 1..65535; got {port}")
    if not is_loopback(host):
        typer.echo(f"warning: --host {host} serves the studio to other machines too; it has no login. "
                   "Keep the default 127.0.0.1 unless you trust the network.", err=True)
    use_threads(threads)
    table = run_job(lambda: RunTable([expand(p) for p in runs or [Path("runs")]], device=resolve_device(device)))
    typer.echo(f"difflab studio: {len(table.paths)} run(s) on http://{host}:{port}/  (Ctrl-C stops it)")
    uvicorn.run(create_app(table), host=host, port=port, log_level="warning")
