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
