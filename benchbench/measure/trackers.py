"""Trackers: what runs beside a cell's timed block and says what the machine was doing meanwhile.

Like optimum-benchmark's trackers: each is a context manager entered around the timed block (with an
ExitStack, so every one is closed on every path, an exception's too), and gives the record fields it
measured. A new tracker is one module with a factory `for_cell(ctx) -> tracker | None` (None: it has
nothing to measure here, e.g. NVML on a CPU machine) plus one line in `TRACKERS`. Its result lands in the
record's `trackers[name]`; the trackers whose fields the record types (`TYPED`) land in their own part.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class TrackerContext:
    """What a tracker may know of the cell it watches."""

    device: Any  # torch.device
    params: dict[str, Any]
    threads: int  # torch's intra-op threads in the cell's process
    source: Any = None  # workload.source.Source: its stage profile, when the cell has a real input pipeline


class Tracker(Protocol):
    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> Any: ...

    def result(self, images: int) -> dict[str, Any]:
        """The record field's value, once the block is over (`images`: trained in the block)."""


def _gpu_conditions(ctx: TrackerContext) -> Tracker | None:
    from benchbench.measure.gpu_state import for_cell

    return for_cell(ctx)


def _cpu_contention(ctx: TrackerContext) -> Tracker | None:
    from benchbench.measure.contention import for_cell

    return for_cell(ctx)


def _host_speed(ctx: TrackerContext) -> Tracker | None:
    from benchbench.measure.host_speed import for_cell

    return for_cell(ctx)


class InputStages:
    """The input pipeline's stages as the workers timed them during the timed block (`measure.stages`).

    Workers run ahead by their prefetch (2 batches each by default): a short block may train on samples made
    before it began. When the block saw fewer than two batches made, the profile is every sample made since the
    loader started (warm-up included), and says so."""

    def __init__(self, profile: Any, batch: int) -> None:
        self.profile, self.batch = profile, batch
        self.value: dict[str, Any] | None = None
        self.before: list[float] | None = None

    def __enter__(self) -> InputStages:
        self.before = self.profile.snapshot()
        return self

    def __exit__(self, *exc: object) -> None:
        block = self.profile.read(since=self.before)
        if block is None or block["samples"] < 2 * self.batch:
            block = self.profile.read()
            if block is not None:
                block["span"] = "since the loader started (the timed block made too few samples)"
        self.value = block

    def result(self, images: int) -> dict[str, Any] | None:
        return self.value


def _input_stages(ctx: TrackerContext) -> Tracker | None:
    profile = getattr(ctx.source, "stages", None)
    return InputStages(profile, int(ctx.params["batch_size"])) if profile is not None else None


#: record field -> factory. Order is entry order (the last entered is the first closed).
TRACKERS: dict[str, Callable[[TrackerContext], Tracker | None]] = {
    # first in, so last out: its fixed host work runs after every other tracker's window has closed
    "host_speed": _host_speed,  # the host's own speed, timed on a fixed workload once the block is over
    "gpu_conditions": _gpu_conditions,  # NVML: clocks, throttling, power, other processes, energy
    "cpu_contention": _cpu_contention,  # /proc: other processes' CPU time on the cell's cores, load, steal
    "input_stages": _input_stages,  # the input pipeline's stages, timed inside the DataLoader's workers
}


#: trackers whose results are typed parts of the record, under the tracker's name
TYPED = frozenset({"gpu_conditions", "cpu_contention", "input_stages"})


class Trackers:
    """Every tracker that applies to a cell, entered together around its timed block."""

    def __init__(self, ctx: TrackerContext, registry: dict[str, Callable[[TrackerContext], Tracker | None]]
                 | None = None) -> None:
        self.active: dict[str, Tracker] = {}
        self.errors: dict[str, str] = {}
        for name, factory in (registry or TRACKERS).items():
            try:
                t = factory(ctx)
            except Exception as exc:
                self.errors[name] = f"{type(exc).__name__}: {exc}"[:300]
                continue
            if t is not None:
                self.active[name] = t
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> Trackers:
        self._stack = contextlib.ExitStack()
        for t in self.active.values():
            self._stack.enter_context(t)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stack is not None:
            self._stack.__exit__(*exc)
            self._stack = None

    def results(self, images: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, t in self.active.items():
            try:
                value = t.result(images)
            except Exception as exc:
                self.errors[name] = f"{type(exc).__name__}: {exc}"[:300]
                continue
            if name in TYPED:
                out[name] = value
            else:
                out.setdefault("trackers", {})[name] = value
        if self.errors:
            out["tracker_errors"] = dict(self.errors)
        return out
