"""pytest-benchmark integration: benchbench cells as pytest-benchmark benchmarks.

    from benchbench.pytest_plugin import suite_cells

    @pytest.mark.parametrize("cell", suite_cells("suites/quickstart.yaml", device="cpu"))
    def test_train_speed(benchbench_cell, cell):
        benchbench_cell(cell)

Each round is one real training step (data, forward, loss, backward, optimizer),
synchronised on CUDA before the clock stops, so `pytest --benchmark-autosave`
and `--benchmark-compare-fail=median:5%` work on benchbench cells. The cell runs
inside the pytest process (no per-cell isolation; use `benchbench run` for that).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def suite_cells(path: str, device: str | None = "cpu", filters: list[str] | None = None) -> list[Any]:
    from benchbench.suite import load_suite

    suite = load_suite(path, device=device, filters=filters)
    return [pytest.param(c.params, id=c.label.replace(" ", "-") or c.id) for c in suite.cells]


@pytest.fixture
def benchbench_cell(benchmark: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def run(params: dict[str, Any]) -> dict[str, Any]:
        import torch

        from benchbench.measure.timer import synchronizer
        from benchbench.suite import CellParams, cell_id
        from benchbench.workload.data import Source
        from benchbench.workload.models import build_model, count_params
        from benchbench.workload.step import TrainStep

        p = CellParams.model_validate(params).model_dump(mode="json")
        if p["device"] == "auto":
            p["device"] = "cuda" if torch.cuda.is_available() else "cpu"
        torch.manual_seed(p["seed"])
        device = torch.device(p["device"])
        model = build_model(p)
        step = TrainStep(model, p, device)
        source = Source(p, device)
        batches = iter(source)
        sync = synchronizer(device)

        def one() -> None:
            x, y = source.to_device(next(batches))
            step(x, y)
            sync()

        benchmark.group = "benchbench"
        benchmark.extra_info.update({"cell_id": cell_id(p), "batch_size": p["batch_size"],
                                     "params_count": count_params(model)})
        benchmark.pedantic(one, rounds=p["steps"], warmup_rounds=p["warmup"], iterations=1)
        return p

    return run
