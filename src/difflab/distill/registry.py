"""The distillation methods by name (the method contract: difflab.distill.base.DistillMethod).

    DISTILL_METHODS: dict[str, DistillMethod]    one line per method; its module lives in difflab/distill/
"""

from __future__ import annotations

from difflab.distill.base import DistillMethod
from difflab.distill.consistency import CONSISTENCY, CONSISTENCY_TUNING
from difflab.distill.meanflow import MEANFLOW
from difflab.distill.progressive import PROGRESSIVE
from difflab.distill.reflow import REFLOW
from difflab.utils.errors import check_choice

DISTILL_METHODS: dict[str, DistillMethod] = {
    "progressive": PROGRESSIVE,
    "reflow": REFLOW,
    "consistency": CONSISTENCY,
    "consistency_tuning": CONSISTENCY_TUNING,
    "meanflow": MEANFLOW,
}


def get_method(name: str) -> DistillMethod:
    """The method registered as `name`; one DifflabError listing the names otherwise."""
    return DISTILL_METHODS[check_choice("distill method", name, DISTILL_METHODS)]
