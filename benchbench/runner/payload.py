"""A cell's payload: everything its executor needs to run it, as plain data (it travels to a child process or a
SLURM node as a pickle)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from benchbench.suite import Cell, Suite


@dataclass
class RunOptions:
    isolation: str = "process"  # process | inline (inline: for debugging; no timeout)
    explain: bool = True  # FLOPs, memory and profiler passes after the timed steps
    trace_dir: str | None = None


def make_payload(suite: Suite, cell: Cell, run_id: str, env: dict[str, Any],
                 options: RunOptions | None = None) -> dict[str, Any]:
    options = options or RunOptions()
    return {
        "kind": "cell",
        "explain": options.explain,
        "trace_dir": str(options.trace_dir) if options.trace_dir else None,
        "suite": suite.name,
        "run_id": run_id,
        "cell_id": cell.id,
        "label": cell.label,
        "params": cell.params,
        "env": env,
        "cwd": os.getcwd(),
    }
