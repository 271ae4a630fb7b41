"""What every `difflab` subcommand shares: the typer app, the one place errors are printed, the job runner.

Messages print literally (no rich markup: `pip install 'difflab[fid]'` and a folder named `[/x]` come out as
written) and unwrapped, so a hint can be copied whole.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train, sample, measure and understand diffusion models.")
console = Console(stderr=True)


def fail(message: str, code: int = 2):
    """Print `error: message` literally on stderr and exit with `code` (2: bad input)."""
    console.print(Text.assemble(("error: ", "bold red"), str(message)), soft_wrap=True)
    raise typer.Exit(code)


THREADS = typer.Option(None, "--threads", help="CPU threads for torch; default 1 (or OMP_NUM_THREADS when set): on a "
                       "busy machine more threads can be ten times slower (docs/benchmarks.md, Threads).")


def use_threads(threads: int | None) -> None:
    """Set torch's CPU threads for this command (difflab.utils.threads); a bad count prints one line."""
    from difflab.utils.threads import set_threads

    run_job(set_threads, threads)


def expand(path: Path | None) -> Path | None:
    """A path option with `~` expanded (the shell does not expand it in `--out=~/x` or in quotes)."""
    return None if path is None else Path(path).expanduser()


def run_job(fn, *args, **kwargs):
    """Call a job; bad input (DifflabError from the library) or a file the system refuses (OSError: permission,
    disk full, a file where a folder should be) prints one line, exit code 2."""
    from difflab.utils.errors import DifflabError

    try:
        return fn(*args, **kwargs)
    except DifflabError as e:
        fail(str(e))
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        fail(f"{e.strerror or e}{where}: check the path and its permissions")
