"""Values checked against type annotations, and keyword options checked against a function's signature.

One checker for config files (difflab.config.validate), sampler and grid options (`--option`,
`--schedule-option`) and network options (`--set model.options.*`): a wrong name gets the list of valid
ones, a wrong type or a non-finite number one message naming the key, before anything is built.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Union, get_args, get_origin

from difflab.utils.errors import DifflabError


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def coerce(value: Any, tp, where: str, nested: Callable | None = None):
    """`value` checked against the annotation `tp` (int, float, str, bool, unions with None, list/tuple/dict
    of those) and returned, converted where lossless (1 -> 1.0, 2.0 -> 2, a YAML '3e-4' string -> 3e-4).
    nested(tp, value, where) handles annotations this function does not know (the config's dataclasses)."""
    origin = get_origin(tp)
    if tp is Any or tp is inspect.Parameter.empty:
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
                return coerce(value, option, where, nested)
            except DifflabError as e:
                errors.append(str(e))
        raise DifflabError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of "
                           f"{' | '.join(_type_name(o) for o in options)}")
    if nested is not None:
        handled, out = nested(tp, value, where)
        if handled:
            return out
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise DifflabError(f"{where}: expected a list; got {value!r}")
        args = [a for a in get_args(tp) if a is not Ellipsis]
        item = args[0] if args else Any
        out = [coerce(v, item, f"{where}[{i}]", nested) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise DifflabError(f"{where}: expected a mapping; got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise DifflabError(f"{where}: expected true or false; got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise DifflabError(f"{where}: expected an integer; got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise DifflabError(f"{where}: expected a number; got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise DifflabError(f"{where}: expected a string; got {value!r}")
    return value


def _finite(value, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise DifflabError(f"{where}: expected a finite number; got {value!r}")
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _finite(v, f"{where}[{i}]")


def _annotations(fn) -> dict:
    target = fn.func if isinstance(fn, partial) else fn
    target = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(target)
    except (NameError, TypeError):
        return {}


def keyword_parameters(fn, skip: Iterable[str] = (), keyword_only: bool = False) -> dict[str, inspect.Parameter]:
    """fn's named parameters (a class: its constructor's), less `skip` (and positional ones if keyword_only)."""
    skip = set(skip)
    kinds = (inspect.Parameter.KEYWORD_ONLY,) if keyword_only else (
        inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {name: p for name, p in inspect.signature(fn).parameters.items() if p.kind in kinds and name not in skip}


def check_keywords(fn, values: dict, what: str, *, skip: Iterable[str] = (), keyword_only: bool = False) -> dict:
    """`values` checked against fn's parameters and returned coerced: an unknown name raises one DifflabError
    listing the valid ones; each value must fit the parameter's annotation (or its default's type where it
    has none) and numbers must be finite unless the default is not (s_tmax = inf). `what` names the owner in
    messages, e.g. "sampler 'unipc' (--option)"."""
    params = keyword_parameters(fn, skip, keyword_only)
    if not isinstance(values, dict):
        raise DifflabError(f"{what}: expected a mapping of option names to values; got {values!r}")
    unknown = sorted(set(values) - set(params), key=str)
    if unknown:
        raise DifflabError(f"{what} has no option {unknown[0]!r}; its options are: {', '.join(sorted(params)) or 'none'}")
    hints = _annotations(fn)
    out = {}
    for name, value in values.items():
        default = params[name].default
        tp = hints.get(name, inspect.Parameter.empty)
        if tp is inspect.Parameter.empty and default is not inspect.Parameter.empty and default is not None:
            tp = type(default)
        where = f"{what} option {name}"
        out[name] = coerce(value, tp, where)
        if not (isinstance(default, float) and not math.isfinite(default)):
            _finite(out[name], where)
    return out
