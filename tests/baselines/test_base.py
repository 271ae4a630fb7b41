"""The level convention and the registry's checks."""

from __future__ import annotations

import pytest
import torch

from difflab.baselines import from_levels, to_levels
from difflab.baselines.registry import build_baseline
from difflab.utils.errors import DifflabError


def test_levels_round_trip_and_digits_spacing():
    j = torch.arange(17)
    x = from_levels(j, 17)
    assert x[0] == -1 and x[-1] == 1 and torch.allclose(x[1] - x[0], torch.tensor(1 / 8))
    assert torch.equal(to_levels(x, 17), j)
    assert torch.equal(to_levels(from_levels(torch.arange(256), 256), 256), torch.arange(256))


def test_off_level_data_and_unknown_family_get_one_message():
    with pytest.raises(DifflabError, match="not on the 17 declared levels"):
        to_levels(torch.tensor([0.01]), 17)
    with pytest.raises(DifflabError, match="unknown baseline 'flow'"):
        build_baseline("flow", (1, 8, 8), 17)
