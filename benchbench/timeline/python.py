"""The Python stacks in a trace (`torch.profiler(with_stack=True)`): which line of the user's own code made a
call. Each `python_function` event is one Python call, with `args.CallFrom` = "file:line" of the line that
made it; the innermost enclosing call made from the user's code (not torch, a library, the standard library or
benchbench) names the line — `train.py:87` for a `loss.item()` printed every step."""

from __future__ import annotations

import bisect
import os
import sysconfig
from dataclasses import dataclass, field
from functools import cache

PYTHON_CAT = "python_function"
MAX_SCAN = 20000  # frames looked at backwards from a call before giving up (a sync is rare; a trace is long)


@cache
def _not_user_prefixes() -> tuple[str, ...]:
    """The standard library's folders and benchbench's own package."""
    import benchbench

    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib") if k in paths} | {os.path.dirname(benchbench.__file__)}
    return tuple(d.replace("\\", "/").rstrip("/") + "/" for d in dirs)


def is_user_file(path: str) -> bool:
    """The script's own code: not the standard library, an installed package, torch or benchbench."""
    if not path or path.startswith("<"):
        return False
    p = path.replace("\\", "/")
    if "/site-packages/" in p or "/dist-packages/" in p or p.startswith("torch/"):
        return False
    return not p.startswith(_not_user_prefixes())


def _file_of(call_from: str) -> str:
    return call_from.rsplit(":", 1)[0] if ":" in call_from else call_from


def short(call_from: str) -> str:
    """`/home/me/proj/train.py:87` as `train.py:87` when it is under the working directory or a plain name."""
    f, _, line = call_from.rpartition(":")
    if not f:
        return call_from
    try:
        rel = os.path.relpath(f)
    except ValueError:
        rel = f
    return f"{rel if not rel.startswith('..') else os.path.basename(f)}:{line}"


@dataclass
class PythonFrames:
    """Each thread's Python calls, sorted by start: (start, end, CallFrom)."""

    by_tid: dict[int, list[tuple[float, float, str]]] = field(default_factory=dict)

    def add(self, tid: int, ts: float, end: float, call_from: str) -> None:
        self.by_tid.setdefault(tid, []).append((ts, end, call_from))

    def sort(self) -> None:
        for v in self.by_tid.values():
            v.sort()
        self._starts = {t: [f[0] for f in v] for t, v in self.by_tid.items()}

    def user_line(self, tid: int, ts: float, end: float) -> str | None:
        """The user's line that (through any library calls) made the call at [ts, end] on thread tid."""
        frames = self.by_tid.get(tid)
        if not frames:
            return None
        i = bisect.bisect_right(self._starts[tid], ts) - 1
        for k in range(i, max(-1, i - MAX_SCAN), -1):
            s, e, cf = frames[k]
            if s <= ts and e >= end and is_user_file(_file_of(cf)):
                return short(cf)
        return None
