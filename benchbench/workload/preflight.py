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


def user_factories(cells: list[Cell]) -> dict[str, str]:
    """Every user factory the cells name (`module:function` -> what it is), to import in a child before the
    first cell: models, data sets, collate functions, losses and optimizers."""
    from benchbench.suite.schema import is_factory
    from benchbench.workload.models import is_custom

    out: dict[str, str] = {}
    for c in cells:
        p = c.params
        if is_custom(p["arch"]):
            out[p["arch"]] = "custom model factory"
        if p["data"]["kind"] == "dataset":
            out[p["data"]["dataset"]] = "dataset factory"
            if p["data"].get("collate"):
                out[p["data"]["collate"]] = "collate function"
        if is_factory(p["loss"]):
            out[p["loss"]] = "loss factory"
        if is_factory(p["optimizer"]):
            out[p["optimizer"]] = "optimizer factory"
    return out
