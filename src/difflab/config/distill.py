"""The `distill` section of a distilled run's config: which method made it, from which teacher, with which options.

    distill:
      method: progressive          # a name in difflab.distill.registry.DISTILL_METHODS
      teacher: /abs/path/to/RUN    # the teacher run folder (resolved when the run starts; resume re-loads it)
      options: {start_steps: 64}   # the method's options (the keyword-only parameters of its build)
      init: teacher                # the student's start: the teacher's weights (the papers' choice) or scratch

The rest of a distilled run's config is the teacher's, changed by the method (its sampler and steps in
`sample`, the flow process for reflow) and by the user's --set overrides, so `difflab sample RUN2` rebuilds
the student like any model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INITS = ("teacher", "scratch")


@dataclass
class DistillConfig:
    """A distilled run's method, teacher path, method options and the student's initialization."""

    method: str = "progressive"
    teacher: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    init: str = "teacher"

    def __post_init__(self):
        if self.init not in INITS:
            raise ValueError(f"distill.init must be one of {', '.join(INITS)}; got {self.init!r}")


def student_checkpoint(cfg: DistillConfig | None, steps: int) -> int | None:
    """The training step whose checkpoint holds the `steps`-step student of a run with several students (a
    progressive run: the end of that student's phase); None for other runs or step counts."""
    if cfg is None:
        return None
    method, options = build_distill_method(cfg)
    return method.students(**options).get(int(steps))


def build_distill_method(cfg: DistillConfig):
    """(the DistillMethod named by cfg.method, its checked options): the one place the name becomes the object."""
    from difflab.distill.registry import get_method

    method = get_method(cfg.method)
    return method, method.check_options(dict(cfg.options))
