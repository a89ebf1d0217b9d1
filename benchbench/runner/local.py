"""The executors that run a cell on this machine: `process` (each cell forked from a fork server into its own
process group, with a timeout: the default) and `inline` (in this process: debugging, no timeout, no isolation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchbench.runner.executor import NoOptions, Sequential


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
