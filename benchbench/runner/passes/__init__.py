"""Explanation passes: run after a cell's timed steps, in its process, one signature each.

Like optimum-benchmark's trackers: a pass takes the cell's context and returns the
record fields it adds. A new pass is a new module here plus one line in PASSES;
a pass that fails is recorded in `explain_errors`, never fatal to the cell.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from benchbench.runner.errors import error_message


@dataclass
class PassContext:
    payload: dict[str, Any]
    params: dict[str, Any]
    model: Any
    step: Any  # workload.step.TrainStep
    source: Any  # workload.source.Source
    device: Any
    memory: dict[str, Any]  # the timed block's memory figures (the memory pass adds to them)
    rss0: int
    step_median_s: float  # the timed block's median step (the profiled step is stretched; idle is judged on this)
    stall_median_s: float | None  # the input stall per step as the device felt it (GPU starvation on CUDA)
    images_per_step: int  # the work per step that really ran (batch x ranks)
    batches: Iterator[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.batches = iter(self.source)


Pass = Callable[[PassContext], dict[str, Any]]


def passes() -> list[tuple[str, Pass]]:
    from benchbench.runner.passes import flops, inputs, memory, timeline

    return [("flops", flops.run), ("memory", memory.run), ("breakdown", timeline.run), ("inputs", inputs.run)]


def run_passes(ctx: PassContext) -> dict[str, Any]:
    import time

    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for name, fn in passes():
        t0 = time.perf_counter()
        try:
            out.update(fn(ctx))
        except Exception as exc:
            errors[name] = error_message(exc)
        seconds[name] = time.perf_counter() - t0
    if errors:
        out["explain_errors"] = errors
    out["explain_s"] = seconds  # what each pass cost (a cell's fixed cost; `--no-explain` skips them)
    return out
