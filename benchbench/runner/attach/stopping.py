"""Stopping an attached script: its whole process group (the script, its DataLoader workers), and the signals
benchbench itself receives while the script runs — each ends that group first, so nothing is left running, and
the run's record says which signal it was."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any

#: what stops benchbench itself: each ends the script's process group first, and its record is kept
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class Stopped(Exception):
    """A stop signal, raised where benchbench is waiting."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_signals_to(handler: Any) -> Any:
    """STOP_SIGNALS handled by `handler` (a function, or signal.SIG_IGN) inside the block, restored after."""
    old = {}
    for sig in STOP_SIGNALS:
        with contextlib.suppress(ValueError, OSError):  # ValueError: not the main thread (nothing to restore)
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def raise_stopped(signum: int, frame: Any) -> None:
    raise Stopped(signum)


def exit_code(sig: int) -> int:
    """A shell's code for a process a signal ended: 128 + its number (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + int(sig)


def end_group(proc: subprocess.Popen[Any]) -> None:
    """The script and everything it started: TERM, a grace period, KILL."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = proc.pid
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
        if proc.poll() is not None and not group_alive(pgid):
            return


def end_groups(pgids: list[int], grace_s: float = 3.0) -> None:
    """Process groups that are not our children (torchrun's ranks, each a session of its own): TERM, a grace
    period, KILL — whichever are still alive."""
    import time

    alive = [g for g in pgids if group_alive(g)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for g in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(g, sig)
        deadline = time.monotonic() + grace_s
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [g for g in alive if group_alive(g)]
        if not alive:
            return


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stopped_code(code: int) -> bool:
    """Whether an attached run's exit code says benchbench itself was stopped by a signal (128 + its number)."""
    return code > 128
