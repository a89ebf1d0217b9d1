"""Step timing: device-correct clocks, warm-up until steady, every sample kept.

Modelled on torch.utils.benchmark's Measurement: a small object that holds the
raw samples and derives its statistics, so nothing is averaged away early.

On a CPU the host clock is the device clock: each step is timed with
perf_counter. On CUDA the host only enqueues work, and a host sync after every
step would leave the GPU idle while the host launches the next step's first
kernels (measured on an H100: Unet mit_b0 83.7 ms per step with a sync per step,
73.7 ms without; 12% of throughput lost to the measurement). So the CUDA loop
records a CUDA event at every step boundary on the stream, synchronizes once at
the end of the block, and takes per-step times from the events; throughput
comes from the block's wall time, as a plain training loop experiences it.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchbench.record import summarize

__all__ = ["LoopTiming", "WarmupRule", "is_steady", "summarize", "timed_loop"]

STEADY_WINDOW = 3  # the last N warm-up steps ...
STEADY_TOLERANCE = 0.05  # ... all within +-5% of their median: steady


def synchronizer(device: torch.device) -> Callable[[], None]:
    """On CUDA the clock may only be read once queued kernels have finished."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def is_steady(samples: list[float]) -> bool:
    if len(samples) < STEADY_WINDOW:
        return False
    window = samples[-STEADY_WINDOW:]
    med = float(np.median(window))
    return all(abs(s - med) <= STEADY_TOLERANCE * med for s in window)


class WarmupRule:
    """The one warm-up rule every step clock follows — `timed_loop`'s for a suite cell, attach's hooks for a
    user's script (`runner.attach.timing`), a command cell's: warm up until the last STEADY_WINDOW steps are
    within +-5% of their median, at most `limit` steps. Step 0 (lazy initialisation, the allocator's first
    blocks) is never part of a steady window on a CPU; on CUDA the first block of STEADY_WINDOW event-timed
    steps is not, and the clock is read (one host sync) only at the end of each block of STEADY_WINDOW steps,
    never per step."""

    def __init__(self, cuda: bool, limit: int) -> None:
        self.cuda, self.limit = cuda, limit

    def read_now(self, steps_done: int) -> bool:
        """On CUDA: whether this boundary ends a block (the events are read, one sync); on a CPU: always."""
        return not self.cuda or steps_done % STEADY_WINDOW == 0 or steps_done >= self.limit

    def steady(self, samples: list[float]) -> bool:
        return len(samples) > (STEADY_WINDOW if self.cuda else 1) and is_steady(samples)

    def over(self, steps_done: int) -> bool:
        return steps_done >= self.limit


@dataclass
class LoopTiming:
    step_s: list[float] = field(default_factory=list)
    data_wait_s: list[float] = field(default_factory=list)
    warmup_s: list[float] = field(default_factory=list)
    steady: bool = False
    clock: str = "perf_counter"
    #: host time to enqueue each step (batch to device + step call returning), CUDA only. Not evidence
    #: of a host-bound step on its own: once ~1000 launches are queued, a launch blocks until the GPU
    #: frees a slot, so a GPU-bound loop also spends its whole step enqueueing. The GPU's idle says which.
    enqueue_s: list[float] = field(default_factory=list)
    block_wall_s: float | None = None  # timed block, first step start to last step done
    #: CUDA only: GPU time from finishing the previous step to the host having the next batch, per step.
    #: The host runs ahead of the GPU, so a data wait shorter than the queued work starves nothing.
    starved_s: list[float] = field(default_factory=list)
    #: the loss of every step in order (warm-up, then timed): same seed and batches give the same trajectory
    #: unless a setting changed the numerics. Read once after the timed block, never per step.
    losses: list[float] = field(default_factory=list)


Agree = Callable[[bool], bool]


def alone(steady: bool) -> bool:
    """One process decides for itself; DDP ranks pass a collective instead (all must leave warm-up together)."""
    return steady


def timed_loop(
    batches: Iterator[Any],
    to_device: Callable[[Any], Any],
    step: Callable[..., Any],
    device: torch.device,
    warmup: int,
    steps: int,
    on_step: Callable[[str, int], None] | None = None,
    agree: Agree = alone,
    tracker: Any = None,
) -> LoopTiming:
    """Warm up until steady (at most `warmup` steps), then time `steps` steps.

    `tracker`, a context manager, is entered around the timed block alone, on a CPU as on a GPU
    (`measure.trackers.Trackers`: the GPU's conditions, CPU contention).

    `agree` turns one process's "steady" into the decision every process takes: DDP ranks all-reduce
    it, so no rank enters the timed block (and its barrier) while another still runs warm-up steps.

    On a CPU a step's time runs from asking for the batch to the optimizer step
    returning, so time blocked on the DataLoader is part of it and is also
    reported on its own (data wait). On CUDA: `_timed_loop_cuda`.
    """
    if device.type == "cuda":
        return _timed_loop_cuda(batches, to_device, step, device, warmup, steps, on_step, agree, tracker)
    sync = synchronizer(device)
    clock = time.perf_counter
    rule = WarmupRule(cuda=False, limit=warmup)
    out = LoopTiming()
    kept: list[Any] = []
    sync()
    for i in range(warmup):
        t0 = clock()
        x, y = to_device(next(batches))
        kept.append(step(x, y))
        sync()
        out.warmup_s.append(clock() - t0)
        if on_step:
            on_step("warmup", i)
        if agree(rule.steady(out.warmup_s)):  # step 0 is never steady (lazy init, allocator)
            out.steady = True
            break
    with tracker if tracker is not None else contextlib.nullcontext():
        for i in range(steps):
            t0 = clock()
            batch = next(batches)
            t1 = clock()
            x, y = to_device(batch)
            kept.append(step(x, y))
            sync()
            t2 = clock()
            out.step_s.append(t2 - t0)
            out.data_wait_s.append(t1 - t0)
            if on_step:
                on_step("timed", i)
    out.block_wall_s = sum(out.step_s)
    out.losses = read_losses(kept)
    return out


def read_losses(kept: list[Any]) -> list[float]:
    """The step's returned losses as floats, read in one transfer (after the timing, never inside it)."""
    vals = [k for k in kept if isinstance(k, torch.Tensor) and k.numel() == 1]
    if len(vals) != len(kept) or not vals:
        return []
    return [float(v) for v in torch.stack([v.reshape(()).float() for v in vals]).cpu()]


def _timed_loop_cuda(
    batches: Iterator[Any],
    to_device: Callable[[Any], Any],
    step: Callable[..., Any],
    device: torch.device,
    warmup: int,
    steps: int,
    on_step: Callable[[str, int], None] | None = None,
    agree: Agree = alone,
    tracker: Any = None,
) -> LoopTiming:
    """CUDA events at step boundaries, one host sync per block, never one per step.

    Step i's time is the GPU's time from boundary i to boundary i+1, which
    includes any time the GPU waited for the host (data wait, slow launches):
    what training experiences. Warm-up runs in blocks of STEADY_WINDOW steps,
    synchronizing only between blocks, and stops when the event times are steady.

    A second event per step, recorded when the host has the batch, measures how
    long the GPU sat idle waiting for it: elapsed(boundary i, batch ready i) is
    zero while the GPU still has queued work, and the starvation otherwise.
    """
    clock = time.perf_counter
    stream = torch.cuda.current_stream(device)
    out = LoopTiming(clock="cuda-events")
    kept: list[Any] = []

    def block(n: int, phase: str, first: int) -> tuple[list[float], list[float], list[float], float, list[float]]:
        events = [torch.cuda.Event(enable_timing=True) for _ in range(n + 1)]
        ready = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        waits, enq = [], []
        torch.cuda.synchronize(device)
        t_start = clock()
        events[0].record(stream)
        for i in range(n):
            t0 = clock()
            batch = next(batches)
            t1 = clock()
            ready[i].record(stream)
            x, y = to_device(batch)
            kept.append(step(x, y))  # a device tensor: no sync
            events[i + 1].record(stream)
            enq.append(clock() - t1)
            waits.append(t1 - t0)
            if on_step:
                on_step(phase, first + i)
        events[-1].synchronize()
        wall = clock() - t_start
        times = [a.elapsed_time(b) * 1e-3 for a, b in itertools.pairwise(events)]
        starved = [a.elapsed_time(b) * 1e-3 for a, b in zip(events, ready)]
        return times, waits, enq, wall, starved

    rule = WarmupRule(cuda=True, limit=warmup)
    done = 0
    while not rule.over(done):
        n = min(STEADY_WINDOW, warmup - done)
        times = block(n, "warmup", done)[0]
        out.warmup_s.extend(times)
        done += n
        # The first block holds lazy initialisation; steadiness is judged after it.
        if agree(rule.steady(out.warmup_s)):
            out.steady = True
            break
    if steps:
        with tracker if tracker is not None else contextlib.nullcontext():
            out.step_s, out.data_wait_s, out.enqueue_s, out.block_wall_s, out.starved_s = block(steps, "timed", 0)
    out.losses = read_losses(kept)
    return out
