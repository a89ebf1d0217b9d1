"""A DDP rank's step on the node's one clock: what `record.ranks.Distributed` reads to find the rank the others
wait for, why, and the all-reduce left exposed. Kept alike by an attached script's ranks (`runner.attach.ranks`)
and a suite's DDP cells (`runner.distributed`).

Per step, on `time.perf_counter` (CLOCK_MONOTONIC: one clock for every process of a node):
`[start, data wait, backward start, last gradient, backward end, end, buffer broadcast entered, left]`. The last
gradient is the last `post_accumulate_grad` hook of the model's parameters in the step's last backward: after
it, a DDP rank only waits — for the other ranks' gradients and for the all-reduce not yet done. DDP's broadcast
of rank 0's buffers at the forward's start is timed too. On a GPU these would be the times the host queued the
work, not when it ran: no row is kept there (`note`), and the ranks' traces answer instead (`timeline.comm`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from typing import Any

NO_CLOCK_ON_GPU = ("on a GPU the host's backward returns before its all-reduce has run: the step's arrivals and "
                   "waits are read from the ranks' traces, not the host's clock")
#: A CUDA rank whose collectives are not NCCL's (gloo over CUDA tensors, ranks sharing one GPU): no clock either,
#: and its traces hold no collective kernel to read (seen on the lent H200: `gloo:all_reduce` on the host only).
NO_CLOCK_GLOO_ON_GPU = ("on a GPU the host's backward returns before its gradients are computed, and the {backend} "
                        "backend's collectives run on the host (no collective kernel in the traces): no per-rank "
                        "arrival or wait is measured")


class StepClock:
    """One rank's clock: `backward` wraps torch's (a step's first backward's start, its last one's end), the
    model's parameters are hooked once it is known (`hook`), and the caller marks each step's start, data wait
    and end."""

    def __init__(self) -> None:
        self.rows: list[list[float | None]] = []
        self.b0: float | None = None
        self.b1: float | None = None
        self.g: float | None = None
        self.s0: float | None = None  # DDP's buffer broadcast in the step's forward: entered, left
        self.s1: float | None = None
        self.hooked = False
        self.counting = False  # gradients are counted (warm-up and timed steps)
        self.params = 0
        self.grad_seen: set[int] = set()
        self.ddp: dict[str, Any] | None = None
        self.backend: str | None = None
        self.note: str | None = None

    def wrap_backward(self, orig: Any) -> Any:
        def backward(*a: Any, **k: Any) -> Any:
            self.b0 = time.perf_counter() if self.b0 is None else self.b0
            self.g = None  # the step's last backward is the one DDP all-reduces (no_sync before it)
            try:
                return orig(*a, **k)
            finally:
                self.b1 = time.perf_counter()

        return backward

    def step(self, start: float, wait: float, end: float, keep: bool) -> None:
        """A step has ended: its row kept (`keep`: a timed step on a CPU), the next one's marks cleared."""
        if keep and self.note is None:
            self.rows.append([start, wait, self.b0 or end, self.g or self.b1 or end, self.b1 or end, end,
                              self.s0, self.s1])
        self.b0 = self.b1 = self.g = self.s0 = self.s1 = None

    def hook(self, model: Any, cuda: bool) -> None:
        """Once, at the first step: the DDP wrapper and its settings, the buffer broadcast, every parameter's
        gradient hook (never into the training: a failure is a note)."""
        self.hooked = True
        try:
            self.ddp, inner, ddp = ddp_settings(model)
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                self.backend = str(dist.get_backend())
            if cuda:
                self.note = (NO_CLOCK_ON_GPU if self.backend is None or "nccl" in self.backend
                             else NO_CLOCK_GLOO_ON_GPU.format(backend=self.backend))
                return
            if ddp is not None:
                self._time_buffer_sync(ddp)
            params = [p for p in inner.parameters() if p.requires_grad]
            self.params = len(params)
            for p in params:
                p.register_post_accumulate_grad_hook(self._on_grad)
        except Exception as exc:
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
        if self.counting:
            self.grad_seen.add(id(p))

    def doc(self) -> dict[str, Any]:
        """The clock's figures, as `record.ranks.RankRun` keeps them (and DDP's settings as built)."""
        ddp = dict(self.ddp) if self.ddp else None
        if ddp is not None and self.params and self.grad_seen:
            ddp["params"] = self.params
            ddp["unused_params"] = self.params - len(self.grad_seen)  # no gradient in any warm-up or timed step
        out: dict[str, Any] = {"clock": self.rows or None, "clock_note": self.note, "ddp": ddp,
                               "backend": self.backend}
        with contextlib.suppress(Exception):
            import torch

            out["threads"] = torch.get_num_threads()
        with contextlib.suppress(AttributeError, OSError):  # no affinity call off Linux
            out["cores"] = len(os.sched_getaffinity(0))
        return out


def ddp_settings(model: Any) -> tuple[dict[str, Any] | None, Any, Any]:
    """The DistributedDataParallel that wraps the model (the model itself, or found among the live objects: a
    trainer may hand the optimizer the inner module's parameters) as it was built, the module it wraps, and it."""
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
