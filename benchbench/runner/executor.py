"""The executor protocol: what every executor is and says, with no executor in it.

Like optimum-benchmark's launchers behind one `launch(worker)`: an executor takes a cell's payload (suite, cell,
run id, environment, options) and returns its record, whatever happens to the cell. It is described by an
`ExecutorSpec`: its config (a dataclass whose fields declare their command-line flags with `option`: every
command that runs cells gets them, generated), what it can do (`Capabilities`), and how to build one. It reports
progress as events (`Started`, `Status`) through one callback. The registry of executors is `runner.executors`;
this module imports none of them, so an executor's own module can import it.
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
