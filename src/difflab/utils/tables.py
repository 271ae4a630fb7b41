"""Result tables for people: one two-column rich table of names and numbers, shared by every job.

Cells are built as plain Text, never parsed as markup, so a metric or path with brackets prints as written.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.table import Table
from rich.text import Text


def format_value(value) -> str:
    """Integers as they are, other numbers to 4 significant digits, anything else as str()."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def value_table(rows: Mapping, key: str = "metric", value: str = "value") -> Table:
    """A table with one row per (name, number) of `rows`, the numbers right-aligned."""
    table = Table()
    table.add_column(key, justify="right" if key == "t" else "left")
    table.add_column(value, justify="right")
    for name, number in rows.items():
        table.add_row(Text(str(name)), Text(format_value(number)))
    return table
