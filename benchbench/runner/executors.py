"""Executors: where a planned cell runs. One interface, a registry; a new executor is a module and a line.

Like optimum-benchmark's launchers behind one `launch(worker)`: an executor takes a cell's payload (suite,
cell, run id, environment, options) and returns its record, whatever happens to the cell. `process` forks
each cell from a fork server into its own process group, with a timeout (the default); `inline` runs it in
this process (debugging; no timeout, no isolation). DDP `world_size` cells run their ranks inside the cell's
process, under either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol


class Executor(Protocol):
    name: str

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The cell's record; never raises for the cell's own failures (they are its status)."""

    def run_many(self, payloads: list[dict[str, Any]],
                 on_start: Callable[[dict[str, Any]], None] | None = None) -> Iterator[tuple[dict[str, Any], dict]]:
        """(payload, record) as each finishes — in order here, in completion order on a cluster."""


class Sequential:
    """One cell after another on this machine: `run_many` is `run` in a loop."""

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def run_many(self, payloads: list[dict[str, Any]],
                 on_start: Callable[[dict[str, Any]], None] | None = None) -> Iterator[tuple[dict[str, Any], dict]]:
        for p in payloads:
            if on_start:
                on_start(p)
            yield p, self.run(p)


class ProcessExecutor(Sequential):
    name = "process"

    def __init__(self, **_: Any) -> None: ...

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        from benchbench.runner.isolation import run_isolated

        return run_isolated(payload, float(payload["params"]["timeout_s"]))


class InlineExecutor(Sequential):
    name = "inline"

    def __init__(self, **_: Any) -> None: ...

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        from benchbench.runner.cell import execute_cell

        return execute_cell(payload)


def _slurm(**options: Any) -> Executor:
    from benchbench.runner.slurm import SlurmExecutor

    return SlurmExecutor(**options)


EXECUTORS: dict[str, Callable[..., Executor]] = {
    "process": ProcessExecutor,
    "inline": InlineExecutor,
    "slurm": _slurm,  # submitit; cells as SLURM jobs, measured on their nodes
}


def get_executor(name: str, **options: Any) -> Executor:
    from benchbench.errors import BenchbenchError, did_you_mean

    if name not in EXECUTORS:
        raise BenchbenchError(f"unknown executor {name!r}{did_you_mean(name, EXECUTORS)}: "
                              f"choose {', '.join(EXECUTORS)}")
    return EXECUTORS[name](**options)
