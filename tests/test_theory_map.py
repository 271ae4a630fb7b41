"""docs/theory.md maps every formula to a test: each table row names tests that exist."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rows():
    for line in (ROOT / "docs" / "theory.md").read_text().splitlines():
        if line.startswith("| ") and not line.startswith("| formula") and not line.startswith("| ---"):
            yield line


def named_tests(cell: str):
    """'a/test_x.py::test_one, test_two; b/test_y.py::test_three' -> [(a/test_x.py, test_one), ...]:
    a name without a file belongs to the last file named."""
    path = None
    for item in re.split(r"[,;]", cell):
        item = item.strip()
        if "::" in item:
            path, item = item.split("::")
        yield path, item


def test_every_row_names_tests_that_exist():
    checked = 0
    for line in rows():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 4, f"row without a test column: {line}"
        for path, name in named_tests(cells[3]):
            source = ROOT / "tests" / path
            assert source.is_file(), f"{path} (named in docs/theory.md) does not exist"
            assert re.search(rf"^def {name}\(", source.read_text(), re.M), f"{path}::{name} does not exist"
            checked += 1
    assert checked >= 60
