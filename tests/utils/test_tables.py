"""value_table: one row per name, numbers formatted once, brackets printed as written."""

import io

from rich.console import Console

from difflab.utils.tables import format_value, value_table


def test_numbers_are_formatted_once_and_names_print_literally():
    assert format_value(3) == "3" and format_value(0.123456) == "0.1235" and format_value("n/a") == "n/a"
    assert format_value(True) == "True"
    out = io.StringIO()
    Console(file=out, width=60).print(value_table({"fdd [bold]": 2.5, "n": 100}, "metric", "value"))
    text = out.getvalue()
    assert "fdd [bold]" in text and "2.5" in text and "100" in text
    assert text.index("fdd [bold]") < text.index("n ")
