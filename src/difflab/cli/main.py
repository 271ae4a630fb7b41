"""The `difflab` command: thin typer commands that parse arguments and call a job."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from difflab import __version__

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


def _version(value: bool):
    if value:
        typer.echo(f"difflab {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version.")):
    """difflab: diffusion and flow models, to the formula."""


@app.command()
def demo(out: Path = typer.Option(Path("outputs/demo"), help="Folder for the pictures.")):
    """The main job on the bundled data: pictures of the forward process and score field."""
    from difflab.jobs.demo import run_demo

    run_job(run_demo, out)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
