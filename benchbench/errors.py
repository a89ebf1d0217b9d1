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


def clip(message: str, word: int = 160, total: int = 2000) -> str:
    """A message as it is printed: no single value in it longer than `word` characters (a 5,000-character
    suite name, a megabyte of YAML), and the whole at most `total`."""
    import re

    def cut(m: re.Match[str]) -> str:
        s = m.group(0)
        return f"{s[:100]}…({len(s):,} characters)…{s[-20:]}"

    out = re.sub(rf"\S{{{word + 1},}}", cut, message)
    return out if len(out) <= total else out[: total - 40] + f" …({len(out) - total + 40:,} more characters)"


def short_repr(value: object, limit: int = 120) -> str:
    """A value as a message shows it: never the whole of a huge (or maliciously expanded) one."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
