"""Dataclass configs from plain dicts, with one clear message for every unknown key or wrong type."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Union, get_args, get_origin

from difflab.utils.errors import DifflabError


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp, where: str):
    """Check `value` against the annotation `tp` (int, float, str, bool, Optional, Literal-free unions,
    list/tuple/dict of those, nested dataclasses) and return it, converted where lossless."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except DifflabError as e:
                errors.append(str(e))
        raise DifflabError(errors[0] if len(errors) == 1 else f"config key {where}: {value!r} fits none of "
                           f"{' | '.join(_type_name(o) for o in options)}")
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, dict):
            raise DifflabError(f"config key {where}: expected a mapping of {tp.__name__} fields; got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise DifflabError(f"config key {where}: expected a list; got {value!r}")
        args = get_args(tp)
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise DifflabError(f"config key {where}: expected a mapping; got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise DifflabError(f"config key {where}: expected true or false; got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise DifflabError(f"config key {where}: expected an integer; got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise DifflabError(f"config key {where}: expected a number; got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise DifflabError(f"config key {where}: expected a string; got {value!r}")
    return value


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass `cls` from `data`, rejecting unknown keys (the message lists the valid ones)."""
    if not isinstance(data, dict):
        raise DifflabError(f"config section {where or cls.__name__}: expected a mapping; got {data!r}")
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
