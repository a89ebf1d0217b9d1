"""Run cells: one isolated process per cell, a timeout, and a record whatever happens.

`payload` is what a cell's executor gets, `executor` the protocol every executor follows and `executors` their
registry (`local`: process and inline; `slurm`), `isolation` starts and kills processes, `program` measures a
cell inside one (`cell` its entry point, `distributed` its DDP ranks), `passes/` are the explanation passes after
the timed steps, `loop` turns a plan into records and `prepare` is what runs before the first cell (preflight,
calibration). Submodules import each other, never this package; it re-exports what the front ends use.
"""

from __future__ import annotations

from typing import Any

from benchbench.runner.executors import get_executor
from benchbench.runner.payload import RunOptions, make_payload
from benchbench.runner.prepare import calibrate_in_child, calibrate_peak, preflight

__all__ = ["RunOptions", "calibrate_in_child", "calibrate_peak", "make_payload", "preflight", "run_cell"]


def run_cell(payload: dict[str, Any], options: RunOptions) -> dict[str, Any]:
    return get_executor(options.isolation).run(payload)
