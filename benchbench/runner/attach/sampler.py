"""A low-overhead stack sampler for the epochs `attach --epochs` accounts: which function takes the time.

A profiling timer (`setitimer(ITIMER_PROF)`, SIGPROF every `interval_s` of the process's CPU time) trips a
handler that Python runs in the main thread at its next bytecode boundary, with the frame it is in: in Python
code that is where the time goes, and after a long C call (a tensor op, a GPU sync) the line that made it. A
sampling *thread* cannot do this: it gets the GIL when the main thread releases it — inside torch's C calls —
so it never lands in pure-Python code (measured: 0 of 2 samples in a per-pixel metric loop that took the whole
71 ms). Each sample weighs the wall time since the previous one, so a rate that varies with CPU use (several
threads in a tensor op, none in a wait) does not bias the shares.

A sample is filed under the part of the epoch the ledger is in at that instant, keyed by where the main
thread is: the innermost frame of the user's own code (`train.py:142 in update_metric`), and the innermost
frame of a library called from there (`transformers/trainer.py:4300 in evaluation_loop`), torch's own frames
and pass-through packages skipped (a forward is named by the user's line that called it, not by `conv.py`).
A part's measured seconds times a key's share of its sampled time is that key's time.

The timer is not inherited by forked DataLoader workers. A script that has its own SIGPROF handler keeps it:
nothing is sampled, and the record says so. The handler's own time is kept (`cost_s`).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections import Counter
from typing import Any

from benchbench.runner.attach.frames import PLUMBING, is_console_script, is_user_file, package_file
from benchbench.timeline.python import short_path

#: packages whose frames never name where the time goes: the interpreter's and benchbench's own
SKIPPED = (*PLUMBING, "benchbench", "numpy", "importlib", "threading", "contextlib")
DEFAULT_INTERVAL_S = 0.01


class StackSampler:
    def __init__(self, ledger: Any, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.ledger = ledger
        self.interval_s = interval_s
        self.counts: Counter[tuple[str, str, str]] = Counter()  # (part, user frame, library frame) -> seconds
        self.hits: Counter[tuple[str, str, str]] = Counter()  # ... -> samples
        self.by_part: Counter[str] = Counter()  # part -> sampled seconds
        self.samples = 0
        self.cost_s = 0.0
        self.note: str | None = None
        self.running = False
        self.t_last = 0.0
        self._kinds: dict[Any, tuple[str, str] | None] = {}  # code object -> ("user" | "lib", name) or None

    def start(self) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            self.note = "the script trains outside its main thread: the functions were not sampled"
            return
        if signal.getsignal(signal.SIGPROF) not in (signal.SIG_DFL, None):
            self.note = "the script has a SIGPROF handler of its own: the functions were not sampled"
            return
        signal.signal(signal.SIGPROF, self._on_signal)
        signal.siginterrupt(signal.SIGPROF, False)  # a system call the signal lands in is restarted, not failed
        self.t_last = time.perf_counter()
        signal.setitimer(signal.ITIMER_PROF, self.interval_s, self.interval_s)
        self.running = True

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        signal.setitimer(signal.ITIMER_PROF, 0, 0)  # disarmed first: SIGPROF's default action ends the process
        if signal.getsignal(signal.SIGPROF) == self._on_signal:
            signal.signal(signal.SIGPROF, signal.SIG_DFL)

    def _on_signal(self, signum: int, frame: Any) -> None:
        t0 = time.perf_counter()
        with contextlib.suppress(Exception):  # a sample never breaks the script
            self.sample(frame, t0 - self.t_last)
        self.t_last = time.perf_counter()
        self.cost_s += self.t_last - t0

    def sample(self, frame: Any, weight: float) -> None:
        part = self.ledger.current_part
        if part is None or frame is None:
            return
        user = lib = ""
        while frame is not None and not user:
            kind = self._kind(frame.f_code)
            if kind is not None:
                k, name = kind
                if k == "user":
                    user = f"{name}:{frame.f_lineno} in {frame.f_code.co_name}"
                elif not lib:
                    lib = f"{name}:{frame.f_lineno} in {frame.f_code.co_name}"
            frame = frame.f_back
        key = (part, user, lib)
        self.counts[key] += weight
        self.hits[key] += 1
        self.by_part[part] += weight
        self.samples += 1

    def _kind(self, code: Any) -> tuple[str, str] | None:
        got = self._kinds.get(code, False)
        if got is not False:
            return got  # type: ignore[return-value]
        path = code.co_filename
        out: tuple[str, str] | None = None
        pkg = package_file(path)
        if pkg is not None:
            if pkg.split("/", 1)[0] not in SKIPPED and "/" in pkg:
                out = ("lib", pkg)
        elif is_user_file(path) and not is_console_script(path):
            out = ("user", short_path(path))
        self._kinds[code] = out
        return out

    def functions(self, part_seconds: dict[str, float]) -> list[dict[str, Any]]:
        """Each (part, user function, library function) with its samples and its time: the part's measured
        seconds times its share of the part's sampled time. Lines are folded into the function (the most
        sampled line is kept)."""
        folded: dict[tuple[str, str, str], dict[str, Any]] = {}
        for (part, user, lib), w in self.counts.items():
            if part not in part_seconds:  # a wait's samples (a fetch): no code of the script's to name
                continue
            key = (part, _fn(user), _fn(lib))
            got = folded.setdefault(key, {"part": part, "user": user or None, "library": lib or None,
                                          "samples": 0, "weight": 0.0, "_best": 0.0})
            got["samples"] += self.hits[(part, user, lib)]
            got["weight"] += w
            if w > got["_best"]:
                got["_best"], got["user"], got["library"] = w, user or None, lib or None
        out = []
        for d in folded.values():
            d.pop("_best")
            total = self.by_part.get(d["part"], 0.0)
            d["share_of_part"] = d.pop("weight") / total if total else 0.0
            d["seconds"] = part_seconds.get(d["part"], 0.0) * d["share_of_part"]
            out.append(d)
        out.sort(key=lambda d: -d["seconds"])
        return out


def _fn(where: str) -> str:
    """`train.py:142 in update` -> `train.py in update` (a function's samples at any of its lines)."""
    if not where:
        return ""
    head, _, fn = where.partition(" in ")
    return f"{head.rsplit(':', 1)[0]} in {fn}"
