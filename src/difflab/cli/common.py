"""What every `difflab` subcommand shares: the typer app, the error console and the job runner."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train, sample, measure and understand diffusion models.")
console = Console(stderr=True)


def run_job(fn, *args, **kwargs):
    """Call a job; bad input (DifflabError / ValueError from the library) prints one line, exit code 2."""
    from difflab.utils.errors import DifflabError

    try:
        return fn(*args, **kwargs)
    except DifflabError as e:
        console.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from None
