"""Executors: where a planned cell runs. One protocol, one registry; a new executor is a module and a line.

Like optimum-benchmark's launchers behind one `launch(worker)`: an executor takes a cell's payload (suite, cell,
run id, environment, options) and returns its record, whatever happens to the cell. `process` forks each cell
from a fork server into its own process group, with a timeout (the default); `inline` runs it in this process
(debugging; no timeout, no isolation); `slurm` submits cells as SLURM jobs (`runner.slurm`).

An executor is described by an `ExecutorSpec`: its config (a dataclass whose fields declare their command-line
flags: every command that runs cells gets them, generated), what it can do (`Capabilities`: whether it measures
the environment on the node, runs cells in parallel, needs a work folder), and how to build one. It reports
progress as events (`Started`, `Status`) through one callback. DDP `world_size` cells run their ranks inside the
cell's process, under any executor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Capabilities:
    measures_env_on_node: bool = False  # takes the environment and the device's peak where the cells run
    parallel: bool = False  # runs several cells at once; records arrive in completion order
    work_folder: bool = False  # needs a folder of its own beside the results (kept only when something failed)


@dataclass(frozen=True)
class Started:
    """A cell's run has started (or been submitted)."""

    payload: dict[str, Any]


@dataclass(frozen=True)
class Status:
    """How an executor's batch stands: counts by state, e.g. jobs queued / running / done / failed."""

    counts: dict[str, int]
    what: str = "jobs"


Event = Started | Status
Events = Callable[[Event], None]


class Executor(Protocol):
    name: str
    capabilities: Capabilities

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The cell's record; never raises for the cell's own failures (they are its status)."""

    def run_many(self, payloads: list[dict[str, Any]], events: Events | None = None
                 ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(payload, record) as each finishes — in order here, in completion order on a cluster."""


class Sequential:
    """One cell after another on this machine: `run_many` is `run` in a loop."""

    name = "sequential"
    capabilities = Capabilities()

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def run_many(self, payloads: list[dict[str, Any]], events: Events | None = None
                 ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        for p in payloads:
            if events:
                events(Started(p))
            yield p, self.run(p)


@dataclass(frozen=True)
class NoOptions:
    """An executor that takes no options."""


class ProcessExecutor(Sequential):
    name = "process"

    def __init__(self, config: NoOptions | None = None, work_folder: Path | None = None) -> None: ...

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        from benchbench.runner.isolation import run_isolated

        return run_isolated(payload, float(payload["params"]["timeout_s"]))


class InlineExecutor(Sequential):
    name = "inline"

    def __init__(self, config: NoOptions | None = None, work_folder: Path | None = None) -> None: ...

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        from benchbench.runner.cell import execute_cell

        return execute_cell(payload)


def option(flag: str, help: str, default: Any = None, **field_kw: Any) -> Any:
    """A config field that is also a command-line option of every command that runs cells."""
    return dataclasses.field(default=default, metadata={"flag": flag, "help": help}, **field_kw)


@dataclass(frozen=True)
class ExecutorSpec:
    name: str
    help: str
    config: type
    build: Callable[[Any, Path | None], Executor]
    capabilities: Capabilities


def _slurm() -> ExecutorSpec:
    from benchbench.runner import slurm

    return slurm.SPEC


EXECUTORS: dict[str, Callable[[], ExecutorSpec]] = {
    "process": lambda: ExecutorSpec("process", "one process per cell, forked from a fork server (default)",
                                    NoOptions, ProcessExecutor, ProcessExecutor.capabilities),
    "inline": lambda: ExecutorSpec("inline", "in this process (debugging: no timeout, no isolation)", NoOptions,
                                   InlineExecutor, InlineExecutor.capabilities),
    "slurm": _slurm,  # cells as SLURM jobs (submitit), measured on their nodes
}


def spec(name: str) -> ExecutorSpec:
    from benchbench.errors import BenchbenchError, did_you_mean

    if name not in EXECUTORS:
        raise BenchbenchError(f"unknown executor {name!r}{did_you_mean(name, EXECUTORS)}: "
                              f"choose {', '.join(EXECUTORS)}")
    return EXECUTORS[name]()


def config_of(name: str, options: dict[str, Any] | None = None) -> Any:
    """The executor's config from the options given (those left at None take the config's defaults)."""
    s = spec(name)
    return s.config(**{k: v for k, v in (options or {}).items() if v is not None})


def get_executor(name: str, options: dict[str, Any] | None = None, work_folder: Path | None = None) -> Executor:
    s = spec(name)
    return s.build(config_of(name, options), work_folder)


def help_line() -> str:
    return "; ".join(f"{n}: {EXECUTORS[n]().help}" for n in EXECUTORS)
