"""pytest-benchmark integration: benchbench cells as pytest-benchmark benchmarks.

    from benchbench.pytest_plugin import suite_cells

    @pytest.mark.parametrize("cell", suite_cells("suites/quickstart.yaml", device="cpu"))
    def test_train_speed(benchbench_cell, cell):
        benchbench_cell(cell)

Each cell is measured by the same program as `benchbench run` (`runner.program`: warm-up until steady,
the timed block, CUDA events and one sync per block on a GPU — never a sync per step, which cost 12% of
throughput on an H100), and its per-step samples become the benchmark's rounds, so
`pytest --benchmark-autosave` and `--benchmark-compare-fail=median:5%` work on benchbench cells with the
numbers `run` reports. The cell runs inside the pytest process (no per-cell isolation; use `benchbench run`
for that); the typed record is returned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def suite_cells(path: str, device: str | None = "cpu", filters: list[str] | None = None) -> list[Any]:
    from benchbench.suite import load_suite

    suite = load_suite(path, device=device, filters=filters)
    return [pytest.param(c.params, id=c.label.replace(" ", "-") or c.id) for c in suite.cells]


def feed(benchmark: Any, samples: list[float]) -> None:
    """Give pytest-benchmark our timed steps as its rounds (one iteration each): its statistics, tables,
    autosave and compare then read what the cell program measured, not a timer of its own."""
    stats = benchmark._make_stats(1)
    for s in samples:
        stats.update(s)


@pytest.fixture
def benchbench_cell(benchmark: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def run(params: dict[str, Any]) -> Any:
        import torch

        from benchbench.errors import BenchbenchError
        from benchbench.runner.program import measure_inline
        from benchbench.suite import CellParams

        p = CellParams.model_validate(params).model_dump(mode="json")
        if p["device"] == "auto":
            p["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        rec = measure_inline(p, explain=False, suite="pytest")
        if not rec.ok:
            raise BenchbenchError(f"cell {rec.cell_id} did not run: {rec.status}: {rec.error}")
        from benchbench.record.columns import export_info

        benchmark.group = "benchbench"
        benchmark.extra_info.update({"cell_id": rec.cell_id, "params_count": rec.params_count, "clock": rec.clock,
                                     **export_info(rec)})
        feed(benchmark, rec.samples)
        return rec

    return run
