"""The run loop: planned cells (each with its repeat index) through an executor, records streamed back.

Planning is round by round (every cell, then every cell again), so the machine's drift during a run spreads
over every cell alike; each planned run carries its repeat index, so records are right whatever order an
executor finishes them in (a cluster finishes out of order). Storing, progress and exit codes stay with
the caller (the CLI parses and chooses exit codes; the store appends).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from benchbench.runner.executors import Executor
from benchbench.suite import Cell, Suite


def plan(cells: list[Cell], repeat: int, done: dict[str, int]) -> list[tuple[Cell, int]]:
    """What is left: (cell, repeat index) for every round a cell has not completed ok."""
    return [(c, rep) for rep in range(repeat) for c in cells if done.get(c.id, 0) <= rep]


def run_planned(suite: Suite, planned: list[tuple[Cell, int]], run_id: str, env: dict[str, Any], options: Any,
                executor: Executor, on_start: Callable[[dict[str, Any]], None] | None = None
                ) -> Iterator[dict[str, Any]]:
    from benchbench.runner import make_payload

    payloads = []
    for cell, rep in planned:
        p = make_payload(suite, cell, run_id, env, options)
        p["repeat"] = rep
        payloads.append(p)
    for payload, rec in executor.run_many(payloads, on_start):
        rec["repeat"] = payload["repeat"]
        yield rec
