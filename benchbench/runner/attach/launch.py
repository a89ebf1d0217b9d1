"""The parent side of `benchbench attach`: run the script with the hooks, wait, and make its record.

The script runs as the user would run it (same interpreter, arguments, working directory, its output on the
terminal), in its own process group so that what it started (DataLoader workers) ends with it. The hooks
write one JSON document; whatever the script did — finished, raised, exited early, never stepped, hung — the
record says it, and keeps every step that was measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchbench.errors import BenchbenchError
from benchbench.policy import ATTACH
from benchbench.runner.attach.command import Script, parse_command
from benchbench.runner.attach.probe import CONFIG_ENV, PROGRESS_SUFFIX
from benchbench.runner.attach.ranks import RANKS_ENV
from benchbench.runner.attach.record import attached_cell_id, to_record
from benchbench.runner.attach.stopping import Stopped, end_group, end_groups, exit_code, raise_stopped, stop_signals_to

BOOT = Path(__file__).resolve().parent / "boot"


@dataclass
class AttachOptions:
    steps: int = ATTACH.steps
    warmup: str | int = "auto"
    max_warmup: int = ATTACH.max_warmup
    profile_steps: int = ATTACH.profile_steps
    device: str = "auto"  # auto: as the script chooses; cpu: no GPU visible to it; cuda: it must have one
    trace_dir: str | None = None
    keep_running: bool = False
    timeout_s: float = ATTACH.timeout_s
    loader: dict[str, Any] = field(default_factory=dict)  # advise's outside knobs for every DataLoader
    torch: dict[str, Any] = field(default_factory=dict)  # advise's outside knobs that are torch settings
    stages: bool = True
    env: dict[str, str] = field(default_factory=dict)  # the command's own environment variables (a command suite's)
    command: list[str] | None = None  # a variant of the command (advise --vary): run in place of the given one
    #: copy the script's stderr through and keep its last lines for the record (a command suite's cell, whose
    #: error record should say what the script said: `error: argument --size: invalid int value`)
    keep_stderr: bool = False
    #: `--epochs N`: after the window, N whole epochs accounted (`epoch_phase`); `--seconds S` for a script
    #: with no DataLoader epochs; `--run-epochs K`: the whole run's epochs, for the time to train
    epochs: int | None = None
    seconds: float | None = None
    run_epochs: int | None = None
    val_loader: dict[str, Any] = field(default_factory=dict)  # advise's knobs for the validation DataLoader


@dataclass
class Outcome:
    doc: dict[str, Any] | None
    returncode: int | None
    timed_out: bool
    wall_s: float
    progress: dict[str, Any] | None
    boot_error: str | None
    signal: int | None = None  # the signal benchbench received while the script ran (SIGTERM, SIGHUP, SIGINT)
    stderr_tail: list[str] = field(default_factory=list)  # its last stderr lines (AttachOptions.keep_stderr)
    ranks: dict[int, dict[str, Any]] = field(default_factory=dict)  # under torchrun: each rank's document


def run_script(script: Script, opts: AttachOptions, cell_id: str) -> Outcome:
    """Run the command with the hooks; wait for it (or for the timeout); end its process group.

    A stop signal benchbench receives meanwhile (SIGTERM from a CI cancel or a job's time limit, SIGHUP from a
    closed terminal, Ctrl-C) ends the script's group — SIGTERM first, so its hooks write what was measured —
    and the outcome says which: nothing is left running, nothing measured is lost."""
    tmp = Path(tempfile.mkdtemp(prefix="bb-attach-"))
    out = tmp / "result.json"
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps({"out": str(out), "steps": opts.steps, "warmup": opts.warmup,
                               "max_warmup": opts.max_warmup, "profile_steps": opts.profile_steps,
                               "trace_dir": opts.trace_dir, "keep_running": opts.keep_running,
                               "loader": opts.loader, "torch": opts.torch, "stages": opts.stages, "cell_id": cell_id,
                               "epochs": opts.epochs, "seconds": opts.seconds, "run_epochs": opts.run_epochs,
                               "val_loader": opts.val_loader}))
    env = {**os.environ, **opts.env}
    env[CONFIG_ENV] = str(cfg)
    env["PYTHONPATH"] = os.pathsep.join([str(BOOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    if opts.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    if script.launcher:
        env[RANKS_ENV] = script.launcher  # torchrun's agent installs nothing; each rank is attached (`ranks`)
    t0 = time.monotonic()
    proc: subprocess.Popen[Any] | None = None
    tee = None
    timed_out, stopped = False, None
    try:
        with stop_signals_to(raise_stopped):
            try:
                proc = subprocess.Popen(script.command, env=env, start_new_session=True,
                                        stderr=subprocess.PIPE if opts.keep_stderr else None,
                                        preexec_fn=_death_signal())  # noqa: PLW1509 - one libc call, found before
                tee = _Tee(proc.stderr) if proc.stderr is not None else None
            except OSError as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise BenchbenchError(f"cannot start {script.command[0]!r}: {exc.strerror or exc}") from None
            while proc.poll() is None:
                if time.monotonic() - t0 > opts.timeout_s:
                    timed_out = True
                    break
                time.sleep(0.1)
    except Stopped as exc:
        stopped = exc.signum
    except KeyboardInterrupt:
        stopped = int(signal.SIGINT)
    finally:
        with stop_signals_to(signal.SIG_IGN):  # a second Ctrl-C does not cut the cleanup short
            if proc is not None:
                end_group(proc)
            # torchrun's ranks are sessions of their own: any the agent left (it was killed) ended here
            end_ranks(tmp)
    assert proc is not None
    wall = time.monotonic() - t0
    ranks = _rank_docs(tmp) if script.launcher else {}
    if ranks:  # the record is told from the rank that failed first, else rank 0; every rank is folded in it
        out = tmp / f"result.json.rank{_lead_rank(ranks)}"
    doc = _read_json(out)
    progress = _read_json(Path(str(out) + PROGRESS_SUFFIX))
    if doc is None and progress and progress.get("partial") and "snapshot_error" not in progress:
        doc = progress  # the script ended without writing its result (killed, os._exit, hung): what it streamed
    boot = None
    with contextlib.suppress(OSError):
        boot = Path(str(cfg) + ".boot-error").read_text()
    shutil.rmtree(tmp, ignore_errors=True)
    tail = tee.close(proc.stderr) if tee is not None else []
    return Outcome(doc, proc.returncode, timed_out, wall, progress, boot, stopped, tail, ranks)


def end_ranks(tmp: Path) -> None:
    """Ranks still alive after the launcher ended: a torchrun rank leads its own group (it and its DataLoader
    workers are ended together); an srun task is ended alone (its group is slurmstepd's)."""
    groups, pids = [], []
    for p in tmp.glob("result.json.rank*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid, pgid = map(int, p.read_text().split())
            (groups if pgid == pid else pids).append(pid)
    end_groups(groups)
    for sig in (signal.SIGTERM, signal.SIGKILL):  # TERM first: its hooks write what it measured
        alive = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
                alive.append(pid)
        if not alive or sig == signal.SIGKILL:
            return
        deadline = time.monotonic() + 3.0
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [p for p in alive if Path(f"/proc/{p}").exists()]
        pids = alive


def _rank_docs(tmp: Path) -> dict[int, dict[str, Any]]:
    """Each rank's document: its result, or what it streamed before it ended without one."""
    docs = {}
    for p in tmp.glob("result.json.rank*"):
        if p.suffix in (".pid", PROGRESS_SUFFIX) or not p.name.rsplit("rank", 1)[1].isdigit():
            continue
        r = int(p.name.rsplit("rank", 1)[1])
        d = _read_json(p) or _read_json(Path(str(p) + PROGRESS_SUFFIX))
        if d is not None:
            docs[r] = d
    for p in tmp.glob(f"result.json.rank*{PROGRESS_SUFFIX}"):  # a rank that wrote no result at all
        r_s = p.name.removesuffix(PROGRESS_SUFFIX).rsplit("rank", 1)[1]
        if r_s.isdigit() and int(r_s) not in docs and (d := _read_json(p)) is not None:
            docs[int(r_s)] = d
    return dict(sorted(docs.items()))


def _lead_rank(docs: dict[int, dict[str, Any]]) -> int:
    """The rank whose own error the record carries (the script raised there), else rank 0 (the lowest)."""
    failed = [r for r, d in docs.items() if d.get("error") and d.get("phase") != "done"]
    if not failed:
        return min(docs)
    return min(failed, key=lambda r: ((docs[r].get("rank") or {}).get("error_t") or float("inf"), r))


class _Tee:
    """The script's stderr copied through as it comes, its last lines kept (a thread: the script never blocks on
    a full pipe)."""

    def __init__(self, stream: Any, keep: int = 12) -> None:
        import collections
        import threading

        self.tail: collections.deque[str] = collections.deque(maxlen=keep)
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: Any) -> None:
        out = getattr(sys.stderr, "buffer", None)
        for raw in iter(stream.readline, b""):
            with contextlib.suppress(Exception):
                if out is not None:
                    out.write(raw)
                    out.flush()
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.tail.append(line)

    def close(self, stream: Any) -> list[str]:
        """The last lines, once the script's stderr has ended (the pipe closed after)."""
        self.thread.join(timeout=2.0)
        with contextlib.suppress(OSError):
            stream.close()
        return list(self.tail)


def _death_signal() -> Any:
    """A `preexec_fn` for the script's process (Linux): SIGTERM when benchbench's process dies, however it dies —
    a cell process killed past its timeout, benchbench itself killed — so the script, in a session of its own,
    never trains on as an orphan; SIGTERM lets its hooks write what was measured first. libc's `prctl` is found
    here, before the fork: the child only calls it (nothing imported or allocated between fork and exec)."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    term = int(signal.SIGTERM)

    def set_death_signal() -> None:
        prctl(1, term)  # PR_SET_PDEATHSIG

    return set_death_signal


def _read_json(p: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def attach(command: list[str], opts: AttachOptions, run_id: str, env: dict[str, Any] | None = None) -> tuple[Any,
                                                                                                            int]:
    script = parse_command(command)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    outcome = run_script(script, opts, attached_cell_id(script, opts))
    sys.stdout.flush()
    rec, code = to_record(script, opts, outcome, run_id, env, started)
    return rec, (exit_code(outcome.signal) if outcome.signal else code)
