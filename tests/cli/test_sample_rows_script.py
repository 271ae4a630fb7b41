"""benchmarks/sample_rows.py: labelled rows of samples from runs and checkpoints, the same noises in each row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.sample_rows import main, parse_row
from difflab.utils.errors import DifflabError


def test_rows_from_the_same_noises(digits_run, tmp_path):
    figure = tmp_path / "rows.png"
    assert main([str(figure), "--row", f"a={digits_run}:2", "--row", f"b={digits_run}@2:2", "--sampler", "euler",
                 "--schedule", "uniform", "--n", "3"]) == 0
    img = np.asarray(Image.open(figure).convert("L"), dtype=np.float64)
    assert img.shape[0] > 2 * 8 * 8  # two rows of 8x8 images at scale 8, with labels and a caption
    assert parse_row("ct avg=runs/x@4000:4") == ("ct avg", Path("runs/x"), 4000, 4)
    with pytest.raises(DifflabError, match="expected LABEL=RUN"):
        parse_row("runs/x")
