"""The cells' fork server started early: its preload (torch and SMP, seconds on a CPU) runs beside what precedes
the first cell in the caller (the preflight, the fingerprint, the calibration) instead of after it, and it is
ended if that work fails, so an exit 2 leaves nothing running."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

from benchbench.runner.isolation import _context, _main_hidden


def start_server() -> bool:
    """Start the fork server now, not at the first cell: its preload (torch, SMP: seconds) then runs beside the
    caller's own work (the preflight, the fingerprint, the calibration) rather than after it. The first
    `Process.start()` waits for the preload to finish, as it would have. Whether a server was started (not one
    already running; never where cells are spawned)."""
    ctx = _context()
    if ctx.get_start_method() != "forkserver":
        return False
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    running = getattr(server, "_forkserver_pid", None) is not None
    with _main_hidden():  # what the server preloads is decided here: never the caller's __main__
        forkserver.ensure_running()
    return not running


def _stop_server() -> None:
    """End the fork server now (it holds no cell: started early, nothing ran in it). Without this it would
    finish importing torch before it saw its parent gone: a process left running seconds after an exit 2."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    pid = getattr(server, "_forkserver_pid", None)
    if server is None or pid is None:
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
