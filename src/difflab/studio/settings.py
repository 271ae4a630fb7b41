"""What the page sends, checked: one setting of the Sample/Compare tabs -> generate()'s keywords, and the
`difflab sample` command line that reproduces it. Values the library checks (sampler and grid names,
options, counts) are left to it, so its messages reach the page unchanged."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from difflab.config.loader import parse_options
from difflab.utils.errors import DifflabError

#: the page's fields and their types; anything else is refused by name
FIELDS = {"sampler": str, "steps": int, "schedule": str, "seed": int, "n": int, "guidance": float,
          "classes": list, "prompt": str, "negative": str, "options": list}
MAX_N = 64  # images per request: the page is for looking, `difflab sample` is for bulk


@dataclass
class Setting:
    sampler: str
    steps: int
    schedule: str
    seed: int
    n: int
    guidance: float = 1.0
    classes: list[int] | None = None
    prompt: str | None = None
    negative: str | None = None
    options: list[str] = field(default_factory=list)

    def generate_kwargs(self) -> dict:
        return dict(sampler=self.sampler, steps=self.steps, schedule=self.schedule, seed=self.seed,
                    guidance=self.guidance, labels=self.classes, negative=self.negative,
                    prompts=None if self.prompt is None else [self.prompt],
                    options=parse_options(self.options, "option"))

    def label(self) -> str:
        g = "" if self.guidance == 1.0 else f", w={self.guidance:g}"
        opts = "".join(f", {o}" for o in self.options)
        return f"{self.sampler}, {self.steps} steps, {self.schedule}{g}{opts}"

    def command(self, run: Path, out: str = "grid.png") -> str:
        """The `difflab sample` line that draws the same grid (EMA weights, the same seed)."""
        words = ["difflab", "sample", str(run), "--sampler", self.sampler, "--steps", str(self.steps),
                 "--schedule", self.schedule, "--seed", str(self.seed), "--n", str(self.n)]
        if self.guidance != 1.0:
            words += ["--guidance", f"{self.guidance:g}"]
        for c in self.classes or []:
            words += ["--class", str(c)]
        if self.prompt is not None:
            words += ["--prompt", self.prompt]
        if self.negative is not None:
            words += ["--negative", self.negative]
        for o in self.options:
            words += ["--option", o]
        return shlex.join([*words, "--out", out])


def _typed(name: str, value, kind):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DifflabError(f"{name} must be a {kind.__name__}; got {value!r}")
    return value


def parse_setting(data, defaults: dict) -> Setting:
    """A Setting from the page's JSON object; missing fields take the run's defaults, blank text is None."""
    if not isinstance(data, dict):
        raise DifflabError("a setting must be a JSON object of sampler, steps, schedule, seed, n, ...")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise DifflabError(f"unknown setting(s) {unknown}; the page sends: {', '.join(FIELDS)}")
    values = {}
    for name, kind in FIELDS.items():
        value = data.get(name)
        if isinstance(value, str) and not value.strip():
            value = None
        values[name] = None if value is None else _typed(name, value, kind)
    for name in ("sampler", "steps", "schedule", "seed", "n", "guidance"):
        if values[name] is None:
            values[name] = defaults[name]
    if values["n"] > MAX_N:
        raise DifflabError(f"n = {values['n']} images is more than the page shows ({MAX_N}); use "
                           "`difflab sample RUN --n N` for more")
    values["classes"] = [_typed("class", c, int) for c in values["classes"]] if values["classes"] else None
    values["options"] = [_typed("option", o, str).strip() for o in values["options"] or [] if str(o).strip()]
    parse_options(values["options"], "option")  # KEY=VALUE shape checked now; names and types by the sampler
    return Setting(**values)
