"""The typed, versioned record: raw samples and work per step own every derived number; every file benchbench
ever wrote loads through the type (older schemas upgraded); what it refuses is refused with file and line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import record

from benchbench.record import Record, RecordError, throughput
from benchbench.results import read_records

ROOT = Path(__file__).resolve().parents[1]
RESULT_FILES = sorted((ROOT / "tests" / "fixtures").rglob("*.jsonl")) + sorted((ROOT / "results").rglob("*.jsonl"))


@pytest.mark.parametrize("path", RESULT_FILES, ids=[p.name for p in RESULT_FILES])
def test_every_result_file_in_the_repository_loads_through_the_type(path: Path) -> None:
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    recs = read_records([path])
    assert len(recs) == len(lines)
    for raw, r in zip(lines, recs):
        assert r.schema_ == "benchbench.result/2" and not r.extra  # every /1 field has its place in /2
        if not r.ok:
            continue
        assert r.median == pytest.approx(raw["step_time_s"]["median"])
        assert r.images_per_step == raw["params"]["batch_size"] * (raw["params"].get("world_size") or 1)
        if raw.get("repeats") is None:
            assert r.throughput == pytest.approx(raw["throughput_img_s"], rel=1e-9)
        assert Record.of(r.to_json()).to_json() == r.to_json()  # written and read back: the same


def test_the_repository_examples_are_upgraded_to_the_current_schema() -> None:
    for path in sorted((ROOT / "results").rglob("*.jsonl")):
        assert all(json.loads(x)["schema"] == "benchbench.result/2" for x in path.read_text().splitlines())


def test_cuda_records_use_the_block_wall_time() -> None:
    samples = [0.010] * 9 + [0.100]  # one slow step: the median hides it, the wall time does not
    r = record(cell_id="c", status="ok", params={"batch_size": 8}, step_time_s={"samples": samples},
               timing={"clock": "cuda-events", "block_wall_s": sum(samples)})
    assert r.throughput == pytest.approx(8 * 10 / sum(samples))
    assert throughput(8, samples) == pytest.approx(800.0)  # CPU basis: the median step
    assert r.stats["p90"] == pytest.approx(np.percentile(samples, 90))


def _cuda_run(rep: int, step: float = 0.05, n: int = 20, batch: int = 16) -> Record:
    samples = [step * (1 + 0.01 * ((i + rep) % 3)) for i in range(n)]
    return record(cell_id="c", label="cell", run_id="night", repeat=rep, status="ok", params={"batch_size": batch},
                  step_time_s={"samples": samples},
                  timing={"clock": "cuda-events", "block_wall_s": sum(samples) * 1.02})


def test_repeats_of_a_cuda_cell_report_the_per_run_throughput_everywhere() -> None:
    """`--repeat 3` on CUDA: pooled samples over one run's wall time was 3x the throughput."""
    from benchbench.analysis.gate_stats import run_medians
    from benchbench.analysis.summary import summary_frame
    from benchbench.results import pool_repeats, to_pytest_benchmark

    runs = [_cuda_run(i) for i in range(3)]
    per_run = [r.throughput for r in runs]
    [merged] = pool_repeats(runs)
    assert len(merged.runs) == 3 and merged.run_medians == pytest.approx([r.median for r in runs])
    assert merged.throughput == pytest.approx(float(np.median(per_run)))
    assert merged.to_json()["throughput_img_s"] == pytest.approx(merged.throughput)
    assert summary_frame([merged])["img/s"][0] == pytest.approx(merged.throughput)
    assert to_pytest_benchmark(runs)["benchmarks"][0]["extra_info"]["throughput_img_s"] == pytest.approx(
        merged.throughput)
    assert run_medians([merged]) == run_medians(runs)  # the gate sees every run of a merged record
    assert merged.between_run_cv is not None and merged.between_run_cv < 0.02
    again = Record.pool([merged, _cuda_run(3)])  # a merged record merged again keeps all four runs
    assert len(again.runs) == 4 and again.throughput == pytest.approx(float(np.median(
        per_run + [_cuda_run(3).throughput])))


def test_what_the_type_refuses_and_why() -> None:
    with pytest.raises(RecordError, match=r"an ok record needs step_time_s\.samples"):
        record(cell_id="c", status="ok", step_time_s={"median": 0.1})  # older files' summary alone is not enough
    with pytest.raises(RecordError, match="written by another benchbench version"):
        Record.of({"schema": "benchbench.result/99", "suite": "s", "run_id": "r", "cell_id": "c",
                   "params": {"batch_size": 1}, "status": "ok"})
    with pytest.raises(RecordError, match="cell_id"):
        Record.of({"schema": "benchbench.result/2", "suite": "s", "run_id": "r", "params": {"batch_size": 1},
                   "status": "error"})
    with pytest.raises(RecordError, match=r"step_time_s\.samples"):
        record(cell_id="c", status="ok", step_time_s={"samples": ["fast"]})
    with pytest.raises(RecordError, match="batch_size"):
        record(cell_id="c", status="error", params={"batch_size": True})
    assert not record(cell_id="c", status="error", step_time_s={"samples": [0.1]}).ok
    assert record(cell_id="c", status="oom").throughput is None


def test_read_records_names_the_file_and_line(tmp_path: Path, capsys) -> None:
    good = record(cell_id="c", status="ok", step_time_s={"samples": [0.1, 0.2]}).to_json()
    p = tmp_path / "r.jsonl"
    p.write_text(json.dumps(good) + "\n" + json.dumps({**good, "status": "fine"}) + "\n")
    assert len(read_records([p])) == 1
    assert f"{p}:2 is not a usable benchbench record: status" in capsys.readouterr().err


def test_a_v1_record_upgrades_with_every_field_kept() -> None:
    """Fields /2 does not know are kept under `extra` (never dropped); a /1 GPU state that OR-ed the reasons
    over the block is judged again: SW power cap is no throttling."""
    r = record(cell_id="c", status="ok", step_time_s={"samples": [0.1]}, mystery={"a": 1},
               memory={"peak_rss_bytes": 10, "novel": 3},
               gpu_conditions={"throttled": True, "throttle_reasons": ["sw_power_cap"], "shared": False})
    assert r.extra == {"mystery": {"a": 1}, "memory.novel": 3}
    assert r.gpu_conditions.throttled is False and r.gpu_conditions.power_capped is True
    assert "OR-ed" in r.gpu_conditions.reasons_basis and r.degraded() is None
    assert Record.of(r.to_json()).extra == r.extra
