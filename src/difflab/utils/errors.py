"""One error type for bad input, and the helper that names the valid choices."""

from __future__ import annotations

from collections.abc import Iterable


class DifflabError(ValueError):
    """Bad input from a user: the message names the problem and the fix.

    A subclass of ValueError so library callers can catch it as one; the CLI prints its message
    alone, without a traceback.
    """


def check_choice(kind: str, value: str, valid: Iterable[str]) -> str:
    """Return `value` if it is one of `valid`, else raise a DifflabError that lists them."""
    valid = sorted(valid)
    if value not in valid:
        raise DifflabError(f"unknown {kind} {value!r}; valid {kind}s are: {', '.join(valid)}")
    return value
