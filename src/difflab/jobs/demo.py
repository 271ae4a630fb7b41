"""`difflab demo`: the main job on bundled data, writing pictures into one folder."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from difflab.jobs.forward_pictures import write_forward_pictures


def run_demo(out: str | Path) -> list[Path]:
    """Forward-process pictures from the exact mixture (marginals p_t, score fields)."""
    console = Console()
    out = Path(out)
    paths = write_forward_pictures(out)
    for p in paths:
        console.print(f"wrote {p}")
    return paths
