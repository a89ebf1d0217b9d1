"""In each rank of a script started by torchrun: where it writes, and its step's clock on the node's one clock.

torchrun's agent is a Python process too: its `sitecustomize` installs nothing (no `RANK` in its environment) and
leaves `BENCHBENCH_ATTACH` to the ranks it starts, each of which writes `<result>.rank<R>` and a pid file (the
launcher ends any rank still alive after the agent: torchrun starts each in a session of its own, out of reach of
the agent's process group).

Every rank stops at the same step: the warm-up is a fixed number of steps (an auto warm-up decided by each
rank's own times would stop one rank while another waits in the next all-reduce for it).

Per timed step a rank keeps, on `time.perf_counter` (CLOCK_MONOTONIC: one clock for every process of a node),
`[start, data wait, backward start, last gradient, backward end, end, buffer broadcast entered, left]`. The last
gradient is the last `post_accumulate_grad` hook of the model's parameters in the step's last backward: after
it, a DDP rank only waits — for the other ranks' gradients (the slowest arrives last) and for the all-reduce not
yet done. DDP's broadcast of rank 0's buffers at the forward's start is timed too (entered, left). On a GPU these
are the times the host queued the work, not when it ran: no clock is kept there (`clock_note`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

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
    """Installed on the probe of a rank: wraps the probe's step boundary and torch's backward (outside the
    probe's own wrapper), and hooks the model's parameters once the model is known."""

    def __init__(self, probe: Any) -> None:
        self.probe = probe
        self.rows: list[list[float]] = []
        self.t_start: float | None = None
        self.b0: float | None = None
        self.b1: float | None = None
        self.g: float | None = None
        self.hooked = False
        self.params = 0
        self.grad_seen: set[int] = set()
        self.ddp: dict[str, Any] | None = None
        self.backend: str | None = None
        self.note: str | None = None
        self.error_t: float | None = None
        self.s0: float | None = None  # DDP's buffer broadcast in the step's forward: entered, left
        self.s1: float | None = None

    def install(self) -> None:
        import torch

        probe = self.probe
        orig_boundary, orig_backward = probe.boundary, torch.autograd.backward

        def boundary() -> None:
            now = time.perf_counter()
            timed_before = len(probe.wait_s)
            orig_boundary()
            if len(probe.wait_s) > timed_before and not probe.cuda and self.t_start is not None:
                self.rows.append([self.t_start, probe.wait_s[-1], self.b0 or now, self.g or self.b1 or now,
                                  self.b1 or now, now, self.s0, self.s1])
            self.t_start = now
            self.b0 = self.b1 = self.g = self.s0 = self.s1 = None
            if not self.hooked and probe.model is not None:
                self.hook_model(probe.model)

        def backward(*a: Any, **k: Any) -> Any:
            self.b0 = time.perf_counter() if self.b0 is None else self.b0
            self.g = None  # the step's last backward is the one DDP all-reduces (no_sync before it)
            try:
                return orig_backward(*a, **k)
            finally:
                self.b1 = time.perf_counter()

        probe.boundary = boundary
        torch.autograd.backward = backward
        prev_hook = sys.excepthook

        def excepthook(*a: Any) -> None:
            # when: a rank that dies takes the others' collectives down with it (gloo: "Connection closed by
            # peer"); the one that raised first is the cause
            self.error_t = time.perf_counter()
            prev_hook(*a)

        sys.excepthook = excepthook

    def hook_model(self, model: Any) -> None:
        """Once, at the first step: the DDP wrapper and its settings, every parameter's gradient hook."""
        self.hooked = True
        try:
            self.ddp, inner, ddp = _ddp_settings(model)
            if ddp is not None:
                self._time_buffer_sync(ddp)
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                self.backend = str(dist.get_backend())
            if self.probe.cuda:
                self.note = ("on a GPU the host's backward returns before its all-reduce has run: the step's "
                             "arrivals and waits are not measured by the host's clock here")
                return
            params = [p for p in inner.parameters() if p.requires_grad]
            self.params = len(params)
            for p in params:
                p.register_post_accumulate_grad_hook(self._on_grad)
        except Exception as exc:  # never into the script
            self.note = f"{type(exc).__name__}: {exc}"[:300]

    def _time_buffer_sync(self, ddp: Any) -> None:
        """DDP broadcasts rank 0's buffers (BatchNorm's running statistics) at each forward's start: a collective
        too, where a rank waits for the slowest before its forward."""
        orig = ddp._sync_buffers

        def _sync_buffers(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                if self.s0 is None:
                    self.s0, self.s1 = t0, time.perf_counter()

        ddp._sync_buffers = _sync_buffers

    def _on_grad(self, p: Any) -> None:
        self.g = time.perf_counter()
        if self.probe.phase in ("warmup", "timed"):
            self.grad_seen.add(id(p))

    def doc(self) -> dict[str, Any]:
        info = dict(self.probe.cfg.get("rank") or {})
        ddp = dict(self.ddp) if self.ddp else None
        if ddp is not None and self.params and self.grad_seen:
            ddp["params"] = self.params
            ddp["unused_params"] = self.params - len(self.grad_seen)  # no gradient in any warm-up or timed step
        with contextlib.suppress(Exception):
            import torch

            info["threads"] = torch.get_num_threads()
        with contextlib.suppress(Exception):
            info["cores"] = len(os.sched_getaffinity(0))
        return {**info, "clock": self.rows or None, "clock_note": self.note, "ddp": ddp, "backend": self.backend,
                "error_t": self.error_t}


def _ddp_settings(model: Any) -> tuple[dict[str, Any] | None, Any, Any]:
    """The DistributedDataParallel that wraps the model (the model itself, or found among the live objects: a
    trainer may hand the optimizer the inner module's parameters), as it was built."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    ddp = model if isinstance(model, DDP) else None
    if ddp is None:
        ddp = next((o for o in gc.get_objects() if isinstance(o, DDP) and o.module is model), None)
    if ddp is None:
        return None, model, None
    from torch.nn import SyncBatchNorm

    return {"bucket_cap_mb": round(ddp.bucket_bytes_cap / 2 ** 20, 3),
            "find_unused_parameters": bool(ddp.find_unused_parameters),
            "static_graph": bool(getattr(ddp, "static_graph", False)),
            "gradient_as_bucket_view": bool(ddp.gradient_as_bucket_view),
            "broadcast_buffers": bool(ddp.broadcast_buffers),
            "sync_batchnorm": sum(isinstance(m, SyncBatchNorm) for m in ddp.module.modules())}, ddp.module, ddp
