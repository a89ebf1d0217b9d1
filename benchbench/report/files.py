"""Report files are replaced atomically: a reader never sees half a report."""

from __future__ import annotations

from pathlib import Path


def write_atomic(path: str | Path, text: str, what: str = "the report") -> Path:
    from benchbench.outputs import write_text

    return write_text(path, text, what)
