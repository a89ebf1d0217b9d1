"""Step timing: device-correct clocks, warm-up until steady, every sample kept.

Modelled on torch.utils.benchmark's Measurement: a small object that holds the
raw samples and derives its statistics, so nothing is averaged away early.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

STEADY_WINDOW = 3  # the last N warm-up steps ...
STEADY_TOLERANCE = 0.05  # ... all within +-5% of their median: steady


def synchronizer(device: torch.device) -> Callable[[], None]:
    """On CUDA the clock may only be read once queued kernels have finished."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def summarize(samples: list[float]) -> dict[str, Any]:
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        return {"median": None, "p10": None, "p90": None, "iqr": None, "cv": None, "mean": None,
                "min": None, "max": None, "n": 0, "samples": []}
    mean = float(a.mean())
    q10, q25, q50, q75, q90 = np.percentile(a, [10, 25, 50, 75, 90])
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return {
        "median": float(q50),
        "p10": float(q10),
        "p90": float(q90),
        "iqr": float(q75 - q25),
        "cv": std / mean if mean > 0 else math.nan,
        "mean": mean,
        "min": float(a.min()),
        "max": float(a.max()),
        "n": int(a.size),
        "samples": [float(s) for s in a],
    }


def is_steady(samples: list[float]) -> bool:
    if len(samples) < STEADY_WINDOW:
        return False
    window = samples[-STEADY_WINDOW:]
    med = float(np.median(window))
    return all(abs(s - med) <= STEADY_TOLERANCE * med for s in window)


@dataclass
class LoopTiming:
    step_s: list[float] = field(default_factory=list)
    data_wait_s: list[float] = field(default_factory=list)
    warmup_s: list[float] = field(default_factory=list)
    steady: bool = False


def timed_loop(
    batches: Iterator[Any],
    to_device: Callable[[Any], Any],
    step: Callable[..., Any],
    device: torch.device,
    warmup: int,
    steps: int,
    on_step: Callable[[str, int], None] | None = None,
) -> LoopTiming:
    """Warm up until steady (at most `warmup` steps), then time `steps` steps.

    A step's time runs from asking for the batch to the device being idle after
    the optimizer step, so time blocked on the DataLoader is part of it and is
    also reported on its own (data wait).
    """
    sync = synchronizer(device)
    clock = time.perf_counter
    out = LoopTiming()
    sync()
    for i in range(warmup):
        t0 = clock()
        x, y = to_device(next(batches))
        step(x, y)
        sync()
        out.warmup_s.append(clock() - t0)
        if on_step:
            on_step("warmup", i)
        if i >= 1 and is_steady(out.warmup_s):  # step 0 is never steady (lazy init, allocator)
            out.steady = True
            break
    for i in range(steps):
        t0 = clock()
        batch = next(batches)
        t1 = clock()
        x, y = to_device(batch)
        step(x, y)
        sync()
        t2 = clock()
        out.step_s.append(t2 - t0)
        out.data_wait_s.append(t1 - t0)
        if on_step:
            on_step("timed", i)
    return out
