"""A run's sampler settings from strings: the sampler and grid names, their options checked by name and type.

Used by generate() (difflab sample, eval, training previews) and when a config is loaded, so a bad
`--set sample.options.eta=abc` is refused before training starts, not at the first preview.
"""

from __future__ import annotations

import inspect
from functools import partial

import torch

from difflab.config.factory import build_process
from difflab.config.schema import RunConfig
from difflab.sampling.api import DEFAULT, SPECIAL_SCHEDULES, default_schedule, resolve_sampler
from difflab.sampling.grids import GRIDS
from difflab.sampling.registry import SAMPLERS
from difflab.utils.errors import check_choice
from difflab.utils.keywords import check_keywords

#: samplers of the reverse SDE, whose drift f = alpha'/alpha is infinite where alpha = 0
SDE_SAMPLERS = ("euler_maruyama", "pc")
#: where those start on a process with alpha(1) = 0 (rectified flow): sigma/alpha = 999 there
SDE_T_MAX = 0.999
#: schedule names a config may hold beyond the GRIDS: the API's own, and a grid saved by `difflab fit-schedule`
SCHEDULE_WORDS = (*SPECIAL_SCHEDULES, "fitted")


def check_options(fn, options: dict | None, what: str) -> dict:
    """`options` checked against the keyword options of sampler/grid `fn` (names and types; see
    difflab.utils.keywords.check_keywords); `what` names them in messages (e.g. "sampler 'unipc' (--option)")."""
    fixed = tuple(fn.keywords) if isinstance(fn, partial) else ()  # a named grid's fixed settings
    return check_keywords(fn, dict(options or {}), what, skip=("cond", "generator", "callback", *fixed),
                          keyword_only=True)


def grid_options(process, sampler: str, schedule, schedule_options: dict | None,
                 source: str = "--schedule-option", steps: int | None = None) -> dict:
    """The schedule options, checked, plus t_max = SDE_T_MAX when a reverse-SDE sampler would otherwise start
    where the process's drift is infinite (alpha(1) = 0: rectified flow) on a grid that has a t_max.
    schedule: a grid name, 'default', 'optimized', or anything sample() takes (times, a fitted grid),
    whose options are left to sample(); source names the options in messages; steps: the number of steps
    ('default' on a discrete table depends on it)."""
    options = dict(schedule_options or {})
    if not isinstance(schedule, str):
        return options
    name = default_schedule(process, sampler, steps) if schedule == DEFAULT else schedule
    if name in GRIDS:
        options = check_options(GRIDS[name], options, f"schedule {name!r} ({source})")
    singular = not bool(torch.isfinite(process.drift_coef(torch.ones(1, dtype=torch.float64))).all())
    if sampler in SDE_SAMPLERS and singular and "t_max" not in options:
        takes_t_max = name == "optimized" or (name in GRIDS and "t_max" in inspect.signature(GRIDS[name]).parameters)
        if takes_t_max:
            options["t_max"] = SDE_T_MAX
    return options


def check_sample_config(cfg: RunConfig) -> RunConfig:
    """cfg with its `sample` section checked against the sampler and grid it names (one DifflabError if not)."""
    s = cfg.sample
    process = build_process(cfg.process)
    name = resolve_sampler(s.sampler, process, s.steps)
    check_options(SAMPLERS[name], s.options, f"sampler {name!r} (sample.options)")
    check_choice("schedule", s.schedule, (*GRIDS, *SCHEDULE_WORDS))
    grid_options(process, name, s.schedule, s.schedule_options, "sample.schedule_options", s.steps)
    return cfg
