"""The Python stacks in a trace (`torch.profiler(with_stack=True)`): which line of the user's own code made a
call. Each `python_function` event is one Python call, with `args.CallFrom` = "file:line" of the line that
made it; the innermost enclosing call made from the user's code (not torch, a library, the standard library or
benchbench) names the line — `train.py:87` for a `loss.item()` printed every step.

`CallFrom` is recent: older torch releases write only the event's name, `file(line): function` — the called
function's own file, and a line that is its first (or, for a frame already running when the profiler started,
the line it was on then), never the calling line. There the innermost enclosing call *of* a user's function
names it: `train.py:main()`, the function that made the call, without a line rather than with a wrong one."""

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


def short_path(path: str) -> str:
    """`/home/me/proj/train.py` as `train.py` when it is under the working directory, else its base name."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        rel = path
    return rel if not rel.startswith("..") else os.path.basename(path)


def short(call_from: str) -> str:
    """`/home/me/proj/train.py:87` as `train.py:87` when it is under the working directory or a plain name."""
    f, _, line = call_from.rpartition(":")
    if not f:
        return call_from
    return f"{short_path(f)}:{line}"


def parse_name(name: str) -> tuple[str, str] | None:
    """(file, function) of a `python_function` event's name, `path/train.py(87): main`; None for a built-in
    (`<built-in method item ...>`) or anything else."""
    head, sep, func = name.partition("): ")
    if not sep or "(" not in head or name.startswith("<"):
        return None
    path = head.rsplit("(", 1)[0]
    return (path, func.strip()) if path else None


@dataclass
class PythonFrames:
    """Each thread's Python calls, sorted by start: (start, end, where). `where` is the CallFrom ("file:line",
    the calling line) or, for a trace without it, "file\0function" (the called function itself)."""

    by_tid: dict[int, list[tuple[float, float, str]]] = field(default_factory=dict)

    def add(self, tid: int, ts: float, end: float, call_from: str) -> None:
        self.by_tid.setdefault(tid, []).append((ts, end, call_from))

    def add_named(self, tid: int, ts: float, end: float, name: str) -> None:
        """A frame of a trace without CallFrom, by its name."""
        got = parse_name(name)
        if got is not None:
            self.by_tid.setdefault(tid, []).append((ts, end, f"{got[0]}\0{got[1]}"))

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
            if s > ts or e < end:
                continue
            if "\0" in cf:  # no CallFrom: the innermost user's function enclosing the call
                path, func = cf.split("\0", 1)
                if is_user_file(path):
                    return f"{short_path(path)}:{func}()"
            elif is_user_file(_file_of(cf)):
                return short(cf)
        return None
