"""The SLURM executor, through submitit: cells become jobs, records stream back as jobs finish.

Each job runs a group of cells (`cells_per_job`, to amortise a job's start) on its node, each cell still in a
process of its own with its timeout (the process executor, inside the job), and takes the environment
fingerprint and the device's peak *on that node*: a record says what it was measured on. A `world_size: K`
cell asks for K GPUs. At most `max_parallel` jobs are in flight. A job that SLURM ends (time limit,
preemption, node failure, cancellation) becomes its cells' `timeout` / `error` records with SLURM's reason,
never a lost cell; Ctrl-C cancels every job this run submitted (`scancel`). submitit's folder lives under the
run's results folder and is removed when every job came back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchbench.runner.executor import (
    Capabilities,
    Events,
    ExecutorSpec,
    Sequential,
    Started,
    Status,
    option,
)


def job_main(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs on the node: measure where the cells run, then each cell in its own process."""
    import os
    import socket

    from benchbench.measure.calibrate import dtypes_of
    from benchbench.measure.env import environment
    from benchbench.runner.isolation import run_isolated
    from benchbench.runner.prepare import calibrate_in_child

    device = payloads[0]["params"]["device"]
    env = dict(environment(device))
    env["node"] = socket.gethostname()
    if any(p.get("explain") for p in payloads):
        # In a child: the job's own process holds no CUDA context while its cells run (NVML would list it).
        env["peak_flops"] = calibrate_in_child(device, dtypes_of([p["params"] for p in payloads]))
    out = []
    for p in payloads:
        rec = run_isolated({**p, "env": env, "cwd": os.getcwd()}, float(p["params"]["timeout_s"]))
        rec["executor"] = {"name": "slurm", "job_id": os.environ.get("SLURM_JOB_ID"), "node": env["node"]}
        out.append(rec)
    return out


#: What SLURM accepts as a partition list (`a,b`) or a constraint expression (`a100&nvlink`, `[a|b]*2`):
#: never white space, quotes, `;`, `$` or a newline, which would be shell text in the job script.
SLURM_NAME = re.compile(r"^[A-Za-z0-9_.\-,&|*:\[\]()!]{1,200}$")


def check_slurm_name(option: str, value: str | None) -> str | None:
    from benchbench.errors import BenchbenchError, short_repr

    if value is None:
        return None
    if not SLURM_NAME.match(value):
        raise BenchbenchError(f"{option} {short_repr(value, 60)}: not a SLURM name (letters, digits and _ . - , & | * "
                              ": [ ] ( ) ! only; no spaces, quotes, ';' or newlines, which would reach the job "
                              "script as shell text)")
    return value


def submitit_module() -> Any:
    """submitit, or a message saying how to install it (it is in the `slurm` extra only)."""
    try:
        import submitit
    except ImportError:
        from benchbench.errors import BenchbenchError

        raise BenchbenchError("--executor slurm needs submitit: pip install 'benchbench[slurm]' (or pip install "
                              "submitit)") from None
    return submitit


@dataclass(frozen=True)
class SlurmConfig:
    """How SLURM jobs are submitted; each field is also a command-line option of every command that runs cells."""

    partition: str | None = option("--slurm-partition", "SLURM partition.")
    gpus_per_cell: int = option("--gpus-per-cell", "SLURM: GPUs per cell (x world_size).", 0)
    max_parallel: int = option("--max-parallel", "SLURM: jobs in flight at once.", 8)
    time_min: int = option("--slurm-time", "SLURM: a job's time limit in minutes.", 60)
    setup: tuple[str, ...] = option("--slurm-setup", "SLURM: a shell line run before each job (repeatable), e.g. "
                                    "'module load cuda'.", ())
    constraint: str | None = option("--slurm-constraint", "SLURM: node constraint, e.g. the GPU type the baseline "
                                    "was taken on.")
    cells_per_job: int = option("--cells-per-job", "SLURM: cells per job (amortises a job's start).", 1)
    poll_s: float = dataclasses.field(default=1.0, metadata={"cli": False})

    def __post_init__(self) -> None:
        from benchbench.errors import BenchbenchError

        check_slurm_name("--slurm-partition", self.partition)
        check_slurm_name("--slurm-constraint", self.constraint)
        for line in self.setup:
            if "\n" in line or "\r" in line:
                raise BenchbenchError("--slurm-setup takes one shell line per option (repeat the option for more): "
                                      "a line holds no newline")
        for flag, value, low in (("--gpus-per-cell", self.gpus_per_cell, 0), ("--max-parallel", self.max_parallel, 1),
                                 ("--slurm-time", self.time_min, 1), ("--cells-per-job", self.cells_per_job, 1)):
            if value < low:
                raise BenchbenchError(f"{flag} must be at least {low}, got {value}")


class SlurmExecutor(Sequential):
    name = "slurm"
    capabilities = Capabilities(measures_env_on_node=True, parallel=True, work_folder=True)

    def __init__(self, config: SlurmConfig | None = None, work_folder: str | Path | None = None) -> None:
        submitit_module()
        c = config or SlurmConfig()
        self.config = c
        self.folder = Path(work_folder or "results/.submitit")
        self.partition, self.gpus_per_cell, self.max_parallel = c.partition, c.gpus_per_cell, max(1, c.max_parallel)
        self.time_min, self.setup, self.constraint = c.time_min, list(c.setup), c.constraint
        self.cells_per_job, self.poll_s = max(1, c.cells_per_job), c.poll_s
        self.events: Events | None = None

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        return next(iter(self.run_many([payload])))[1]

    def _executor(self, world: int, cpus: int) -> Any:
        submitit = submitit_module()
        ex = submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster="slurm")
        # submitit asks SLURM for its time-out signal 90 s before the limit: for a job of under 90 s SLURM sends it
        # at once, and one that arrived before the job's Python had installed submitit's handler killed it
        # silently (an `error` record, not a `timeout`; 1 in 4 CI runs of a 1-minute job). A quarter of the
        # limit before the end, at most those 90 s, leaves the job time to start.
        params: dict[str, Any] = {"timeout_min": self.time_min, "cpus_per_task": cpus, "nodes": 1,
                                  "slurm_job_name": "benchbench",
                                  "slurm_signal_delay_s": min(90, max(5, self.time_min * 60 // 4))}
        if self.gpus_per_cell:
            params["gpus_per_node"] = self.gpus_per_cell * world
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.setup:
            params["slurm_setup"] = list(self.setup)
        if self.constraint:
            params["slurm_constraint"] = self.constraint
        ex.update_parameters(**params)
        return ex

    def run_many(self, payloads: list[dict[str, Any]], events: Events | None = None
                 ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        self.events = events
        groups = [payloads[i:i + self.cells_per_job] for i in range(0, len(payloads), self.cells_per_job)]
        pending = list(groups)
        running: list[tuple[Any, list[dict[str, Any]]]] = []
        finished_all = False
        self.failed = 0
        try:
            while pending or running:
                while pending and len(running) < self.max_parallel:
                    group = pending.pop(0)
                    world = max(int(p["params"].get("world_size") or 1) for p in group)
                    threads = max(int(p["params"].get("threads") or 1) for p in group)
                    job = self._submit(group, world, max(threads, world))
                    for p in group:
                        if events:
                            events(Started(p))
                    running.append((job, group))
                done = [(j, g) for j, g in running if j.done()]
                self._status(pending, running, done)
                if not done:
                    time.sleep(self.poll_s)
                    continue
                for job, group in done:
                    running.remove((job, group))
                    self.done_jobs = getattr(self, "done_jobs", 0) + 1
                    yield from zip(group, self._records(job, group))
            finished_all = True
        finally:
            for job, _ in running:  # Ctrl-C, SIGTERM, an error: no job of ours is left queued or running
                with contextlib.suppress(Exception):
                    job.cancel(check=False)
            if finished_all and not self.failed:  # a failed job's logs stay for the user to read
                shutil.rmtree(self.folder, ignore_errors=True)
                with contextlib.suppress(OSError):
                    self.folder.parent.rmdir()  # `.submitit/` itself, once no other run uses it

    def _submit(self, group: list[dict[str, Any]], world: int, cpus: int) -> Any:
        """Submit one job; sbatch's refusal (no controller, a bad partition) is SLURM's own message, exit 2."""
        from benchbench.errors import BenchbenchError

        try:
            return self._executor(world, cpus).submit(job_main, group)
        except Exception as exc:
            text = str(exc).strip()
            said = [ln.strip() for ln in text.splitlines() if "sbatch:" in ln or "error" in ln.lower()]
            raise BenchbenchError("SLURM refused the job: " + ("; ".join(dict.fromkeys(said))[:600] if said else
                                                               text[:600] or type(exc).__name__)) from None

    def _status(self, pending: list[Any], running: list[Any], done: list[Any]) -> None:
        if self.events is None:
            return
        states = [str(getattr(j, "state", "")) for j, _ in running]
        n_run = sum(st == "RUNNING" for st in states)
        self.done_jobs = getattr(self, "done_jobs", 0)
        counts = {"queued": len(pending) + len(running) - n_run, "running": n_run,
                  "done": self.done_jobs + len(done), "failed": self.failed}
        self.events(Status(counts, "SLURM jobs"))

    def _records(self, job: Any, group: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from benchbench.runner.isolation import failure

        try:
            recs = job.result()
            if isinstance(recs, list) and len(recs) == len(group):
                return recs
            why = f"SLURM job {job.job_id} returned {type(recs).__name__}, not the group's records"
        except Exception as exc:
            self.failed += 1
            state = str(getattr(job, "state", "UNKNOWN"))
            msg = str(exc)
            found = re.findall(r"(\w+Error: [^\n]+|[^\n]*because[^\n]*)", msg)
            reason = found[-1].strip() if found else (msg.strip().splitlines() or [type(exc).__name__])[0]
            timed_out = "TIMEOUT" in state or "timed-out" in msg or "time limit" in msg.lower()
            why = (f"SLURM job {job.job_id} ({state}): " + ("the job's time limit was reached (--slurm-time); "
                                                            if timed_out else "") + reason[:300]
                   + f"; logs in {self.folder}")
            status = "timeout" if timed_out else "error"
            return [failure(p, status, why, 0.0) | {"executor": {"name": "slurm", "job_id": job.job_id}}
                    for p in group]
        return [failure(p, "error", why, 0.0) for p in group]


SPEC = ExecutorSpec("slurm", "each cell (or --cells-per-job cells) a SLURM job, via submitit, measured on its node",
                    SlurmConfig, SlurmExecutor, SlurmExecutor.capabilities)
