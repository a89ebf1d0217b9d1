"""In each rank of a script started by torchrun: where it writes, and its step's clock on the node's one clock.

torchrun's agent is a Python process too: its `sitecustomize` installs nothing (no `RANK` in its environment) and
leaves `BENCHBENCH_ATTACH` to the ranks it starts, each of which writes `<result>.rank<R>` and a pid file (the
launcher ends any rank still alive after the agent: torchrun starts each in a session of its own, out of reach of
the agent's process group).

Every rank stops at the same step: the warm-up is a fixed number of steps (an auto warm-up decided by each
rank's own times would stop one rank while another waits in the next all-reduce for it).

Each rank's step is kept on the node's one clock by `measure.rank_clock.StepClock`, driven here by the probe's
step boundary.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from benchbench.measure.rank_clock import StepClock

RANKS_ENV = "BENCHBENCH_ATTACH_RANKS"  # the launcher: torchrun or srun
#: the warm-up every rank takes when none is given (an auto warm-up is each rank's own decision)
RANK_WARMUP = 5


#: the variable that names a rank, by launcher: torchrun's RANK, srun's SLURM_PROCID (its tasks are the ranks)
RANK_VARS = {"torchrun": "RANK", "srun": "SLURM_PROCID"}


def rank_var() -> str:
    return RANK_VARS.get(os.environ.get(RANKS_ENV, ""), "RANK")


def rank_of_env() -> int | None:
    r = os.environ.get(rank_var())
    return int(r) if r is not None and r.isdigit() else None


def prepare(cfg: dict[str, Any]) -> None:
    """Before the probe is made: this rank's own output and pid file, a warm-up every rank shares."""
    rank = rank_of_env()
    slurm = rank_var() == "SLURM_PROCID"
    cfg["rank"] = {"rank": rank, "local_rank": _int_env("SLURM_LOCALID" if slurm else "LOCAL_RANK"),
                   "world_size": _int_env("SLURM_NTASKS" if slurm else "WORLD_SIZE"),
                   "pid": os.getpid(), "host": socket.gethostname()}
    cfg["out"] = f"{cfg['out']}.rank{rank}"
    if cfg.get("warmup", "auto") in (None, "auto"):
        cfg["warmup"] = RANK_WARMUP
    with contextlib.suppress(OSError):
        # its process group where it leads one (torchrun's ranks: a session each), else itself (an srun task)
        Path(cfg["out"] + ".pid").write_text(f"{os.getpid()} {os.getpgid(0)}")


def _int_env(name: str) -> int | None:
    v = os.environ.get(name)
    return int(v) if v is not None and v.isdigit() else None


def sibling_groups(out: str) -> list[int]:
    """The process groups of this job's other ranks (each is a session leader: its group is its pid), from
    their pid files: their CPU time is the job's own, not contention."""
    base = out.rsplit(".rank", 1)[0]
    pids = []
    for p in Path(base).parent.glob(Path(base).name + ".rank*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid, pgid = map(int, p.read_text().split())
            if pid != os.getpid() and pgid == pid:
                pids.append(pgid)
    return pids


class RankClock:
    """Installed on the probe of a rank: `measure.rank_clock.StepClock` driven by the probe's step boundary
    (wrapped), torch's backward wrapped outside the probe's own, the model hooked once it is known."""

    def __init__(self, probe: Any) -> None:
        self.probe = probe
        self.clock = StepClock()
        self.t_start: float | None = None
        self.error_t: float | None = None

    def install(self) -> None:
        import torch

        probe, clock = self.probe, self.clock
        orig_boundary = probe.boundary

        def boundary() -> None:
            now = time.perf_counter()
            timed_before = len(probe.wait_s)
            orig_boundary()
            timed = len(probe.wait_s) > timed_before
            clock.step(self.t_start or now, probe.wait_s[-1] if timed else 0.0, now,
                       keep=timed and self.t_start is not None and not probe.cuda)
            clock.counting = probe.phase in ("warmup", "timed")
            self.t_start = now
            if not clock.hooked and probe.model is not None:
                clock.hook(probe.model, probe.cuda)

        probe.boundary = boundary
        torch.autograd.backward = clock.wrap_backward(torch.autograd.backward)
        prev_hook = sys.excepthook

        def excepthook(*a: Any) -> None:
            # when: a rank that dies takes the others' collectives down with it (gloo: "Connection closed by
            # peer"); the one that raised first is the cause
            self.error_t = time.perf_counter()
            prev_hook(*a)

        sys.excepthook = excepthook

    def doc(self) -> dict[str, Any]:
        return {**(self.probe.cfg.get("rank") or {}), **self.clock.doc(), "error_t": self.error_t}
