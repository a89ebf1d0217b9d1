"""Process isolation: each cell in its own process group, forked from a server that imported torch once.

A fresh process per cell keeps one cell's OOM, crash, hang or allocator state
from touching the next. Starting Python and importing torch + SMP costs ~5 s,
so cells are forked from a fork server that imported them once (~0.2 s per
cell after the first). CUDA is never initialised in the server itself. Past
its timeout, or on Ctrl-C / SIGTERM, a cell's whole group is killed.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from benchbench.policy import PROCESS
from benchbench.record import base_record
from benchbench.runner.server import _context, _main_hidden

# Kineto (the profiler's backend) logs every start/stop and, without a GPU, a
# device-count error; cells inherit this from the fork server.
os.environ.setdefault("KINETO_LOG_LEVEL", "5")

KILL_GRACE_S = PROCESS.kill_grace_s
STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _child_entry(conn: Any, payload: dict[str, Any]) -> None:
    # Own process group: a timeout kills the cell *and* its DataLoader workers,
    # and a Ctrl-C in the terminal reaches only the parent, which decides.
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    if payload.get("cwd"):
        os.chdir(payload["cwd"])
    # A forkserver child inherits the forkserver start method; DataLoader workers
    # must start the way they would in the user's own script (the platform default).
    mp.set_start_method(None, force=True)
    try:
        if payload.get("kind") == "calibrate":
            from benchbench.measure.calibrate import calibrate

            rec = calibrate(payload["device"], payload["dtypes"])
        elif payload.get("kind") == "factory":
            from benchbench.workload.factories import load

            load(payload["spec"], payload.get("what", "factory"))
            rec = {"ok": True}
        elif payload.get("kind") == "data-item":
            from benchbench.workload.userdata import check_item

            rec = {"ok": True, **check_item(payload["params"])}
        else:
            from benchbench.runner.cell import execute_cell

            rec = execute_cell(payload)
    except BaseException as exc:
        from benchbench.runner.errors import error_message

        if payload.get("kind") == "cell":
            rec = failure(payload, "error", error_message(exc), 0.0)
        else:
            rec = {"ok": False, "error": error_message(exc)}
    try:
        conn.send(rec)
        conn.close()
    except (BrokenPipeError, OSError):
        os._exit(1)  # the parent is gone (killed): nobody to report to
    os._exit(0)  # skip atexit/finalizers of a possibly-wedged runtime: the record is sent


def _kill_group(proc: Any) -> None:
    for target in ("group", "proc"):
        try:
            if target == "group":
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except (ProcessLookupError, PermissionError, OSError):
            pass


@contextlib.contextmanager
def _stops_held() -> Iterator[None]:
    """Ctrl-C, SIGTERM or SIGHUP while a cell's process is being started is held until its start returns.

    With the fork server, `Process.start()` sends the request, the server forks, and only then is the pid read
    back: a stop raised in between leaves a forked cell nobody knows the pid of, which trains to its end holding
    the terminal's pipes (a CI job waiting on them hung). Held here, the stop is raised once the pid is known,
    inside the caller's `try` that kills the cell's group.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = {s: signal.signal(s, lambda n, _f: got.append(n)) for s in STOPS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if got:
            signal.raise_signal(got[0])  # the handler the caller had: KeyboardInterrupt, session.Interrupted


@dataclass
class ChildOutcome:
    result: Any  # what the child sent, or None
    timed_out: bool
    exitcode: int | None
    elapsed_s: float


def run_child(payload: dict[str, Any], timeout_s: float) -> ChildOutcome:
    """Start `_child_entry(payload)` in its own process group and wait for its one message.

    Past the timeout, and on Ctrl-C / SIGTERM, the whole group (the child and
    any DataLoader workers or DDP ranks) is killed: nothing is left orphaned.
    """
    ctx = _context()
    recv_conn, send_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_entry, args=(send_conn, payload), daemon=False)
    t0 = time.perf_counter()
    result: Any = None
    timed_out = False
    try:
        with _main_hidden(), _stops_held():
            proc.start()
        send_conn.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if recv_conn.poll(0.1):
                try:
                    result = recv_conn.recv()
                except (EOFError, OSError):
                    result = None
                break
            if not proc.is_alive():
                if recv_conn.poll(0.1):
                    continue
                break
            if time.monotonic() > deadline:
                timed_out = True
                _kill_group(proc)
                break
        proc.join(KILL_GRACE_S)
        if proc.is_alive():
            _kill_group(proc)
            proc.join(KILL_GRACE_S)
    except BaseException:
        if proc.pid is not None:  # started: Ctrl-C / SIGTERM never leaves an orphan cell behind
            _kill_group(proc)
            proc.join(KILL_GRACE_S)
        raise
    finally:
        recv_conn.close()
        send_conn.close()
        # DataLoader workers of a cell that died can outlive it; reap the group.
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            if proc.pid is not None:
                os.killpg(proc.pid, signal.SIGKILL)
    return ChildOutcome(result, timed_out, proc.exitcode, time.perf_counter() - t0)


def run_isolated(payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run a cell in its own process; a hang becomes `timeout`, a death becomes `error`."""
    out = run_child(payload, timeout_s)
    if out.timed_out:
        return failure(payload, "timeout", f"cell exceeded timeout_s={timeout_s:g} s and was killed", out.elapsed_s)
    if out.result is not None:
        # Start-up and tear-down of the cell's process, on top of the cell's own wall time.
        out.result["process_wall_s"] = out.elapsed_s
        return out.result
    code = out.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        why = f"cell process was killed by signal {name}" + (" (likely out of memory)" if name == "SIGKILL" else "")
    else:
        why = f"cell process exited with code {code} before reporting a result"
    return failure(payload, "error", why, out.elapsed_s)


def _child_check(payload: dict[str, Any], timeout_s: float, doing: str) -> dict[str, Any]:
    """Run a check in a child; its answer, or why it gave none, as a message."""
    from benchbench.errors import BenchbenchError

    out = run_child({**payload, "cwd": os.getcwd()}, timeout_s)
    res = out.result if isinstance(out.result, dict) else None
    if res and res.get("ok"):
        return res
    if res:
        why = res.get("error")
    elif out.timed_out:
        why = f"{doing} did not finish in {timeout_s:g} s"
    elif out.exitcode is not None and out.exitcode < 0:
        why = f"{doing} killed the process (signal {signal.Signals(-out.exitcode).name})"
    else:
        why = f"{doing} ended the process (exit code {out.exitcode}) before it could report"
    raise BenchbenchError(str(why))


def check_factories(specs: dict[str, str], timeout_s: float = PROCESS.factory_import_timeout_s) -> None:
    """Import each user factory (`module:function` -> what it is: "custom model factory", "loss factory", ...)
    in a child process, as the cells will: its import-time code (an exit, a crash, a hang) never runs in the
    main process, where it could end a run with exit 0 and nothing measured."""
    from benchbench.errors import BenchbenchError

    for spec, what in sorted(specs.items()):
        try:
            _child_check({"kind": "factory", "spec": spec, "what": what}, timeout_s, "importing it")
        except BenchbenchError as exc:
            raise BenchbenchError(f"{what} {spec!r}: {exc}") from None


def check_items(cells: list[Any], timeout_s: float = PROCESS.factory_import_timeout_s) -> None:
    """Each user data set built and one item drawn and checked, in a child (the factory is the user's code),
    once per distinct data setting."""
    from benchbench.errors import BenchbenchError

    keys = ("data", "resolution", "classes", "in_channels", "seed", "batch_size")
    seen: set[str] = set()
    for c in cells:
        p = c.params
        if p["data"]["kind"] != "dataset":
            continue
        ident = repr([p.get(k) for k in keys])
        if ident in seen:
            continue
        seen.add(ident)
        try:
            _child_check({"kind": "data-item", "params": p}, timeout_s, "building the data set and reading an item")
        except BenchbenchError as exc:
            msg = str(exc)
            if not msg.startswith("dataset factory"):
                msg = f"dataset factory {p['data']['dataset']!r}: {msg}"
            raise BenchbenchError(f"cell {c.label}: {msg}") from None


def failure(payload: dict[str, Any], status: str, message: str, wall_s: float) -> dict[str, Any]:
    from benchbench.runner.command_cell import record_params

    rec = base_record(payload["suite"], payload["run_id"], payload["cell_id"], payload["label"],
                      record_params(payload["params"]))
    rec.update(status=status, error=message, env=payload.get("env"), wall_s=wall_s,
               started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return rec
