"""Pre-flight: everything that can be known about a suite's cells without running them."""

from __future__ import annotations

from benchbench.errors import BenchbenchError
from benchbench.suite import Cell
from benchbench.workload.data import check_data
from benchbench.workload.models import preflight as model_preflight


def preflight_cells(cells: list[Cell]) -> None:
    """Validate every cell before the first one runs: models on the meta device, data sets on disk.

    Distinct models are checked once each; the first failure names its cell."""
    checked: dict[str, BenchbenchError | None] = {}
    for cell in cells:
        p = cell.params
        key = repr((p["arch"], p["encoder"], p["decoder_channels"], p["resolution"], p["batch_size"],
                    p["classes"], p["in_channels"]))
        if key not in checked:
            try:
                model_preflight(p)
                checked[key] = None
            except BenchbenchError as exc:
                checked[key] = exc
        err = checked[key]
        if err is not None:
            raise BenchbenchError(f"cell {cell.id} ({cell.label}): {err}")
        check_data(p)
