"""Dataclass configs from plain dicts, with one clear message for every unknown key or wrong type."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from difflab.utils.errors import DifflabError
from difflab.utils.keywords import coerce


def _dataclass(tp, value, where: str):
    """coerce's hook for nested config sections: (handled, value)."""
    where = where.removeprefix("config key ")
    if not dataclasses.is_dataclass(tp):
        return False, None
    if dataclasses.is_dataclass(value):
        return True, value
    if not isinstance(value, dict):
        raise DifflabError(f"config key {where}: expected a mapping of {tp.__name__} fields; got {value!r}")
    return True, from_dict(tp, value, where)


def _coerce(value: Any, tp, where: str):
    """Check `value` against the annotation `tp` (difflab.utils.keywords.coerce, nested dataclasses here)."""
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, where)[1]
    out = coerce(value, tp, f"config key {where}", nested=_dataclass)
    if isinstance(out, float) and not math.isfinite(out):  # no config number means "infinite": null does
        raise DifflabError(f"config key {where}: expected a finite number; got {out} (null where the key allows none)")
    return out


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass `cls` from `data`, rejecting unknown keys (the message lists the valid ones). Keys a
    class names in its RETIRED set (written by older versions, e.g. TrainConfig's condition) are dropped
    silently, so old run folders load."""
    if not isinstance(data, dict):
        raise DifflabError(f"config section {where or cls.__name__}: expected a mapping; got {data!r}")
    retired = getattr(cls, "RETIRED", frozenset())
    data = {k: v for k, v in data.items() if k not in retired}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        prefix = f"{where}." if where else ""
        raise DifflabError(
            f"unknown config key {prefix}{unknown[0]}; valid keys{' in ' + where if where else ''} are: "
            f"{', '.join(sorted(fields))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise DifflabError(f"config section {where or cls.__name__}: {e}") from None


def to_dict(obj) -> dict:
    """A dataclass config as plain data (tuples become lists) for YAML."""

    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(obj))
