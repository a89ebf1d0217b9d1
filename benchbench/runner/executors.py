"""Executors: where a planned cell runs. One protocol (`runner.executor`), one registry (here); a new executor
is a module and a line in `EXECUTORS`.

`process` forks each cell from a fork server into its own process group, with a timeout (the default); `inline`
runs it in this process (debugging; no timeout, no isolation); `slurm` submits cells as SLURM jobs
(`runner.slurm`). DDP `world_size` cells run their ranks inside the cell's process, under any executor. A spec is
built when asked for, so a registry entry costs nothing (submitit is imported only for `slurm`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchbench.runner.executor import Executor, ExecutorSpec, NoOptions


def _process() -> ExecutorSpec:
    from benchbench.runner.local import ProcessExecutor

    return ExecutorSpec("process", "one process per cell, forked from a fork server (default)", NoOptions,
                        ProcessExecutor, ProcessExecutor.capabilities)


def _inline() -> ExecutorSpec:
    from benchbench.runner.local import InlineExecutor

    return ExecutorSpec("inline", "in this process (debugging: no timeout, no isolation)", NoOptions,
                        InlineExecutor, InlineExecutor.capabilities)


def _slurm() -> ExecutorSpec:
    from benchbench.runner.slurm import SPEC

    return SPEC


EXECUTORS: dict[str, Callable[[], ExecutorSpec]] = {
    "process": _process,
    "inline": _inline,
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
