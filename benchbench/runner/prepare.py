"""What runs before the first cell: preflight (models on the meta device, data sets, the user's factories
imported in a child) and the device's calibration, each in a process of its own."""

from __future__ import annotations

import os
from typing import Any

from benchbench.policy import PROCESS
from benchbench.runner.isolation import run_child
from benchbench.suite import Cell, Suite


def preflight(cells: list[Cell], isolation: str = "process") -> None:
    """Everything knowable before the first cell: models on the meta device, data sets, and custom factories
    imported in a child process (their import-time code is the user's, never run in this process)."""
    from benchbench.runner.isolation import check_factories, check_items
    from benchbench.workload.preflight import preflight_cells, user_factories

    commands = [c for c in cells if "command" in c.params]
    if commands:
        check_commands(commands)
        cells = [c for c in cells if "command" not in c.params]
        if not cells:
            return
    preflight_cells(cells)
    specs = user_factories(cells)
    if isolation == "inline":
        from benchbench.workload.factories import load
        from benchbench.workload.userdata import check_item

        for spec, what in specs.items():
            load(spec, what)
        done = set()
        for c in cells:
            if c.params["data"]["kind"] == "dataset" and repr(c.params["data"]) not in done:
                done.add(repr(c.params["data"]))
                check_item(c.params)
        return
    if specs:
        check_factories(specs)
    check_items(cells)


def check_commands(cells: list[Cell]) -> None:
    """A command suite whose command can run in no cell (no such program, no such script in any cell) is refused
    before anything runs; a command that fails only in some cells (a placeholder's value names a missing file) is
    those cells' error records."""
    from benchbench.errors import BenchbenchError
    from benchbench.runner.attach.command import parse_command

    first = None
    for c in cells:
        try:
            parse_command(list(c.params["command"]))
            return
        except BenchbenchError as exc:
            first = first or exc
    raise BenchbenchError(f"the command cannot run in any cell: {first}")


def calibrate_peak(suite: Suite, isolation: str = "process", extra: tuple[str, ...] = (),
                   fingerprint: str | None = None, recalibrate: bool = False) -> dict[str, Any]:
    """The device's measured matmul peak per dtype the suite uses (and `extra`): kept from an earlier run on
    this machine (`measure.peak_cache`, by its environment `fingerprint`) unless `recalibrate`, else measured
    in a process of its own and kept for the next."""
    from benchbench.measure import peak_cache
    from benchbench.measure.calibrate import dtypes_of, modes

    dtypes = sorted(set(dtypes_of([c.params for c in suite.cells])) | set(extra))
    if fingerprint and not recalibrate:
        kept = peak_cache.load(fingerprint, modes(suite.device, dtypes))
        if kept is not None:
            return kept
    if isolation == "inline":
        from benchbench.measure.calibrate import calibrate

        peaks = calibrate(suite.device, dtypes)
    else:
        peaks = calibrate_in_child(suite.device, dtypes)
    if fingerprint:
        peak_cache.save(fingerprint, peaks)
    return peaks


def calibrate_in_child(device: str, dtypes: list[str], timeout_s: float = PROCESS.calibrate_timeout_s
                       ) -> dict[str, Any]:
    """Calibrate in a child process that exits afterwards: a process that calibrated keeps a CUDA context and
    the allocator's cached 8192^2 blocks, so calibrating in the process that then waits for the cells
    makes NVML list it beside every cell ("shared") and leaves each cell ~1 GB less memory."""
    payload = {"kind": "calibrate", "device": device, "dtypes": list(dtypes), "cwd": os.getcwd()}
    result = run_child(payload, timeout_s).result
    return result if isinstance(result, dict) else {}
