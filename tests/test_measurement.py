"""The typed measurement: raw samples and work per step own every derived number; old files load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchbench.measurement import Measurement, throughput
from benchbench.results import read_records

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", [ROOT / "results" / "examples" / "segformer_channels-cpu.jsonl",
                                  ROOT / "tests" / "fixtures" / "h100" / "segformer_channels.jsonl",
                                  ROOT / "tests" / "fixtures" / "h100" / "oom.jsonl"])
def test_old_result_files_load_and_agree(path: Path) -> None:
    for r in read_records([path]):
        m = Measurement(r)
        if not m.ok:
            assert r["status"] != "ok" or not r.get("step_time_s")
            continue
        assert m.median == pytest.approx(r["step_time_s"]["median"])
        assert m.images_per_step == r["params"]["batch_size"] * (r["params"].get("world_size") or 1)
        # records written before the CUDA clock: throughput = images / median step, as stored
        assert m.throughput == pytest.approx(r["throughput_img_s"], rel=1e-9)
        assert m.to_record()["step_time_s"]["samples"] == r["step_time_s"]["samples"]


def test_cuda_records_use_the_block_wall_time() -> None:
    samples = [0.010] * 9 + [0.100]  # one slow step: the median hides it, the wall time does not
    r = {"cell_id": "c", "status": "ok", "params": {"batch_size": 8},
         "step_time_s": {"samples": samples, "median": 0.010},
         "timing": {"clock": "cuda-events", "block_wall_s": sum(samples)}}
    assert Measurement(r).throughput == pytest.approx(8 * 10 / sum(samples))
    assert throughput(8, samples) == pytest.approx(800.0)  # CPU basis: the median step
    assert Measurement(r).stats["p90"] == pytest.approx(np.percentile(samples, 90))


def _cuda_run(rep: int, step: float = 0.05, n: int = 20, batch: int = 16) -> dict:
    samples = [step * (1 + 0.01 * ((i + rep) % 3)) for i in range(n)]
    return {"cell_id": "c", "label": "cell", "run_id": "night", "repeat": rep, "status": "ok",
            "params": {"batch_size": batch}, "step_time_s": {"samples": samples, "median": float(np.median(samples))},
            "timing": {"clock": "cuda-events", "block_wall_s": sum(samples) * 1.02},
            "throughput_img_s": batch * n / (sum(samples) * 1.02)}


def test_repeats_of_a_cuda_cell_report_the_per_run_throughput_everywhere() -> None:
    """`--repeat 3` on CUDA: pooled samples over one run's wall time was 3x the throughput."""
    from benchbench.analysis.gate_stats import run_medians
    from benchbench.analysis.summary import summary_frame
    from benchbench.results import merge_repeats, to_pytest_benchmark

    runs = [_cuda_run(i) for i in range(3)]
    per_run = [Measurement(r).throughput for r in runs]
    [merged] = merge_repeats(runs)
    m = Measurement(merged)
    assert len(m.runs) == 3 and m.run_medians == pytest.approx([Measurement(r).median for r in runs])
    assert m.throughput == pytest.approx(float(np.median(per_run)))
    assert merged["throughput_img_s"] == pytest.approx(m.throughput)
    assert summary_frame([merged])["img/s"][0] == pytest.approx(m.throughput)
    assert to_pytest_benchmark(runs)["benchmarks"][0]["extra_info"]["throughput_img_s"] == pytest.approx(m.throughput)
    assert run_medians([merged]) == run_medians(runs)  # the gate sees every run of a merged record
    assert m.between_run_cv is not None and m.between_run_cv < 0.02
    # Merging a merged record with a further run keeps all four runs.
    again = Measurement.merge([m, Measurement(_cuda_run(3))])
    assert len(again.runs) == 4 and again.throughput == pytest.approx(float(np.median(
        per_run + [Measurement(_cuda_run(3)).throughput])))


def test_ok_is_one_definition() -> None:
    from benchbench.measurement import is_ok

    assert not is_ok({"cell_id": "c", "status": "ok", "step_time_s": None})
    assert not is_ok({"cell_id": "c", "status": "error", "step_time_s": {"samples": [0.1]}})
    assert is_ok({"cell_id": "c", "status": "ok", "step_time_s": {"median": 0.1}})  # older files: a summary
    assert Measurement({"cell_id": "c", "status": "oom"}).throughput is None
