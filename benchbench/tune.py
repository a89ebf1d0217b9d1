"""Batch-size search by measurement: every probe is a real, isolated cell run.

Doubling from a start batch, each probe trains warm-up + a few timed steps and
reports its peak memory *after* those steps (memory grows during the first
steps; a one-step probe under-estimates it). The answer is always a batch that
was actually probed: no extrapolation beyond the probes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchbench.policy import TUNE
from benchbench.record import Record
from benchbench.runner import RunOptions, make_payload, run_cell
from benchbench.runner.loop import as_record
from benchbench.suite import Cell, Suite, cell_id


def _tp(rec: Record) -> float:
    return float(rec.throughput or 0.0)


@dataclass
class TuneResult:
    cell: Cell
    probes: list[Record]
    largest_fit: int | None  # largest probed batch within the memory margin (None: no limit seen)
    plateau: int | None  # smallest probed batch after which throughput grew < gain
    best_throughput: int | None  # the fastest probed batch within the memory margin
    stopped_because: str


def tune_batch(suite: Suite, cell: Cell, run_id: str, env: dict[str, Any], *, start: int = TUNE.start,
               max_batch: int = TUNE.max_batch, margin: float = TUNE.margin, gain: float = TUNE.gain,
               steps: int = TUNE.steps, warmup: int = TUNE.warmup,
               on_probe: Callable[[Record], Record | None] | None = None,
               run: Callable[[dict[str, Any]], Any] | None = None,
               prior: dict[str, Record] | None = None) -> TuneResult:
    """`run`: the executor's (a session's); `prior`: probes an interrupted search already made, by cell id, replayed
    instead of measured again."""
    total = env.get("gpu_memory_bytes")
    run = run or (lambda payload: run_cell(payload, RunOptions()))
    probes: list[Record] = []
    bs = start
    stopped = f"reached --max-batch {max_batch}"
    while bs <= max_batch:
        params = {**cell.params, "batch_size": bs, "steps": steps, "warmup": warmup, "on_oom": "fail"}
        probe_cell = Cell(id=cell_id(params), label=f"{cell.label} bs={bs}", params=params)
        rec = (prior or {}).get(probe_cell.id)
        if rec is None:
            raw = run(make_payload(suite, probe_cell, run_id, env, RunOptions(explain=False)))
            rec = as_record(raw).model_copy(update={"probe_of": cell.id})
            if on_probe:
                rec = on_probe(rec) or rec
        probes.append(rec)
        if rec.status == "oom":
            stopped = f"out of memory at batch {bs}"
            break
        if rec.status != "ok":
            stopped = f"{rec.status} at batch {bs}: {rec.error}"
            break
        peak = rec.memory.cuda_peak_reserved_bytes if rec.memory else None
        if total and peak and peak > margin * total:
            stopped = f"batch {bs} uses {peak / total:.0%} of device memory (margin {margin:.0%})"
            break
        ok = [p for p in probes if p.ok]
        if len(ok) >= 3 and _tp(ok[-1]) < _tp(ok[-2]) * (1 + gain) and _tp(ok[-2]) < _tp(ok[-3]) * (1 + gain):
            stopped = "throughput stopped growing for two doublings"
            break
        bs *= 2
    ok = [p for p in probes if p.ok]
    fits = [p for p in ok if not total or ((p.memory.cuda_peak_reserved_bytes if p.memory else None) or 0)
            <= margin * total]
    largest = max((p.params["batch_size"] for p in fits), default=None) if (total or len(ok) < len(probes)) else None
    plateau = None
    for a, b in itertools.pairwise(ok):
        if _tp(b) < _tp(a) * (1 + gain):
            plateau = a.params["batch_size"]
            break
    # Never recommend a batch that broke the memory margin, however fast it ran.
    best = max(fits, key=_tp).params["batch_size"] if fits else None
    return TuneResult(cell, probes, largest, plateau, best, stopped)
