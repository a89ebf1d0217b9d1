"""The cells' fork server: one process that imported torch and SMP once, from which every cell is forked
(`runner.isolation`). Started early (`server_early`), its preload (seconds on a CPU) runs beside what precedes the
first cell in the caller — the preflight, the fingerprint, the calibration — instead of after it; ended if that
fails, and at the caller's exit, killed: it holds no cell by then, and left to itself it would spend a second or
more unloading torch while holding the caller's stdout and stderr (a pipeline, a CI log, waits for them)."""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing as mp
import os
import signal
import sys
import types
from collections.abc import Iterator
from typing import Any

PRELOAD = ["torch", "segmentation_models_pytorch", "benchbench.runner.cell"]


_CTX: Any = None


def _context() -> Any:
    global _CTX
    if _CTX is None:
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        _CTX = mp.get_context(method)
        if method == "forkserver":
            _CTX.set_forkserver_preload(PRELOAD)
            atexit.register(_stop_server)
    return _CTX


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """Start children without re-running the caller's __main__ (a script, pytest, the CLI).

    multiprocessing re-imports the parent's main module in every child; the
    cell's code lives in importable modules, so the child needs none of it,
    and a script without an `if __name__ == "__main__"` guard would recurse.
    """
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


def start_server() -> bool:
    """Start the fork server now, not at the first cell: its preload (torch, SMP: seconds) then runs beside the
    caller's own work (the preflight, the fingerprint, the calibration) rather than after it. The first
    `Process.start()` waits for the preload to finish, as it would have. Whether a server was started (not one
    already running; never where cells are spawned)."""
    ctx = _context()
    if ctx.get_start_method() != "forkserver":
        return False
    from multiprocessing import forkserver

    running = _server()[1] is not None
    with _main_hidden():  # what the server preloads is decided here: never the caller's __main__
        forkserver.ensure_running()
    return not running


def _server() -> tuple[Any, int | None]:
    """multiprocessing's fork server object and its process's pid (None while none runs)."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    return server, getattr(server, "_forkserver_pid", None)


def _stop_server() -> None:
    """End the fork server now: it holds no cell (every cell's group is killed and reaped by `run_child`).
    Left to itself it would first finish its preload (an exit 2 from the preflight: a process left running for
    seconds) or unload torch (at exit: the caller's output pipes held open for a second or more)."""
    server, pid = _server()
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        server._stop()  # reaps it and forgets its address: a later cell would start a fresh one


@contextlib.contextmanager
def server_early(enabled: bool) -> Iterator[None]:
    """The fork server started before what precedes the first cell (`start_server`), and ended if that fails."""
    started = start_server() if enabled else False
    try:
        yield
    except BaseException:
        if started:
            _stop_server()
        raise
