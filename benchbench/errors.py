"""Errors that reach the user as a message and an exit code, never as a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchbenchError(Exception):
    """Invalid input: the CLI prints the message and exits with code 2."""

    exit_code = 2


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """A ' (did you mean ...?)' suffix, or '' when nothing is close.

    Matching is case-insensitive because users type `segformer` for `Segformer`.
    """
    pool = list(choices)
    lowered = {c.lower(): c for c in pool}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(lowered[c]) for c in close) + "?)"


def short_repr(value: object, limit: int = 120) -> str:
    """A value as a message shows it: never the whole of a huge (or maliciously expanded) one."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
