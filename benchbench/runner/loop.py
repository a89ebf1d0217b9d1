"""The run loop: planned cells (each with its repeat index) through an executor, records streamed back.

Planning is round by round (every cell, then every cell again), so the machine's drift during a run spreads
over every cell alike; each planned run carries its repeat index, so records are right whatever order an
executor finishes them in (a cluster finishes out of order). Storing, progress and exit codes stay with
the caller (the CLI parses and chooses exit codes; the store appends).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from benchbench.record import Record
from benchbench.runner.executor import Events, Executor
from benchbench.suite import Cell, Suite


def plan(cells: list[Cell], repeat: int, done: dict[str, int]) -> list[tuple[Cell, int]]:
    """What is left: (cell, repeat index) for every round a cell has not completed ok."""
    return [(c, rep) for rep in range(repeat) for c in cells if done.get(c.id, 0) <= rep]


def as_record(raw: dict[str, Any] | Record) -> Record:
    """The typed record of what an executor sent back. One the type refuses is a benchbench bug: its fields are
    kept (in `extra`, never lost) under an error record that says so, and the run goes on."""
    from benchbench.record import Record, RecordError

    if isinstance(raw, Record):
        return raw
    try:
        return Record.of(raw)
    except RecordError as exc:
        from benchbench.record import base_record

        keep = {k: v for k, v in raw.items() if k not in ("schema",)} if isinstance(raw, dict) else {"raw": repr(raw)}
        rec = base_record(str(keep.get("suite", "?")), str(keep.get("run_id", "?")), str(keep.get("cell_id", "?")),
                          str(keep.get("label") or keep.get("cell_id", "?")),
                          keep.get("params") if isinstance(keep.get("params"), dict) else {"batch_size": 1})
        rec.update(error=f"internal error: the runner wrote a record the schema refuses ({exc}); its fields are "
                         "kept in `extra` — please report this", extra={"invalid_record": keep})
        return Record.of(rec)


def run_planned(suite: Suite, planned: list[tuple[Cell, int]], run_id: str, env: dict[str, Any], options: Any,
                executor: Executor, events: Events | None = None) -> Iterator[Record]:
    from benchbench.runner.payload import make_payload

    payloads = []
    for cell, rep in planned:
        p = make_payload(suite, cell, run_id, env, options)
        p["repeat"] = rep
        payloads.append(p)
    for payload, raw in executor.run_many(payloads, events):
        if isinstance(raw, dict):
            raw["repeat"] = payload["repeat"]
        yield as_record(raw)
