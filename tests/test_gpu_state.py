"""The GPU's conditions during a timed block, from NVML: the logic on NVML's documented answers (pynvml's
types: clocks in MHz, power in mW, energy in mJ, reasons a bitmask, processes with a pid), the real thing
where a GPU exists."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest
import torch

from benchbench.measure.gpu_state import degraded, open_tracker


class NotSupported(Exception):
    """pynvml.NVMLError_NotSupported stands for any NVMLError."""


class FakeNvml:
    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    def __init__(self, reasons: int = 0x0, procs: int = 1, energy_mj_per_call: int = 50_000, mig=NotSupported):
        self.reasons, self.procs, self.energy_step, self.mig = reasons, procs, energy_mj_per_call, mig
        self.energy = 1_000_000

    def nvmlInit(self) -> None: ...
    def nvmlDeviceGetHandleByIndex(self, i: int) -> str: return f"h{i}"
    def nvmlDeviceGetHandleByUUID(self, u: str) -> str: return "h-uuid"
    def nvmlDeviceGetClockInfo(self, h: str, kind: int) -> int: return 1755 if kind == 1 else 2619
    def nvmlDeviceGetMaxClockInfo(self, h: str, kind: int) -> int: return 1980 if kind == 1 else 2619
    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int: return 61
    def nvmlDeviceGetPowerUsage(self, h: str) -> int: return 402_500
    def nvmlDeviceGetEnforcedPowerLimit(self, h: str) -> int: return 700_000
    def nvmlDeviceGetCurrentClocksEventReasons(self, h: str) -> int: return self.reasons
    def nvmlDeviceGetPersistenceMode(self, h: str) -> int: return 1

    def nvmlDeviceGetComputeRunningProcesses(self, h: str) -> list:
        return [SimpleNamespace(pid=os.getpid() if i == 0 else 90_000 + i, usedGpuMemory=2**30)
                for i in range(self.procs)]

    def nvmlDeviceGetMigMode(self, h: str) -> list:
        if self.mig is NotSupported:
            raise NotSupported("MIG")
        return self.mig

    def nvmlDeviceGetTotalEnergyConsumption(self, h: str) -> int:
        self.energy += self.energy_step
        return self.energy


def run_block(nvml: FakeNvml, images: int = 80) -> dict:
    tracker = open_tracker(0, "GPU-1234", nvml=nvml, interval_s=0.01)
    with tracker:
        time.sleep(0.05)
    return tracker.result(images)


def test_a_healthy_gpu() -> None:
    r = run_block(FakeNvml())
    assert r["source"] == "nvml" and r["samples"] >= 2
    assert r["sm_clock_mhz"]["median"] == 1755 and r["sm_clock_ratio"] == pytest.approx(1755 / 1980)
    assert r["power_w"]["max"] == pytest.approx(402.5) and r["power_limit_w"] == pytest.approx(700.0)
    assert r["temperature_c"]["max"] == 61 and r["persistence_mode"] is True and r["mig"] is None
    assert not r["throttled"] and not r["shared"] and degraded(r) is None
    assert r["energy_j"] == pytest.approx(50.0) and r["energy_j_per_image"] == pytest.approx(50.0 / 80)


def test_a_throttled_and_shared_gpu_says_so() -> None:
    r = run_block(FakeNvml(reasons=0x4 | 0x1, procs=3))  # SW power cap (+ idle, which is benign)
    assert r["throttled"] and r["throttle_reasons"] == ["sw_power_cap"]
    assert "gpu_idle" in r["clock_event_reasons"]
    assert r["other_processes"] == 2 and r["shared"]
    assert degraded(r) == "throttled (sw_power_cap) and shared with 2 other process(es)"
    assert run_block(FakeNvml(mig=[1, 1]))["mig"] is True


def test_no_nvml_records_nothing() -> None:
    class Missing:
        def nvmlInit(self) -> None:
            raise OSError("NVML Shared Library Not Found")

    assert open_tracker(0, None, nvml=Missing()) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_reads_the_real_gpu() -> None:
    from benchbench.runner.cell import gpu_tracker

    tracker = gpu_tracker(torch.device("cuda"))
    assert tracker is not None, "NVML not found on a CUDA machine"
    a = torch.randn(4096, 4096, device="cuda")
    with tracker:
        for _ in range(50):
            a @ a
        torch.cuda.synchronize()
    r = tracker.result(50)
    assert r["sm_clock_mhz"]["max"] > 0 and r["sm_clock_max_mhz"] >= r["sm_clock_mhz"]["max"]
    assert r["power_limit_w"] > 0


def test_compare_warns_about_and_can_refuse_a_degraded_gpu(tmp_path, cli) -> None:
    import json
    from pathlib import Path

    gate = Path(__file__).parent / "fixtures" / "h100" / "gate-aa-5pct-9pct.jsonl"
    recs = [json.loads(x) for x in gate.read_text().splitlines()]
    runs = sorted({r["run_id"] for r in recs})
    throttled = run_block(FakeNvml(reasons=0x20))
    base = [r for r in recs if r["run_id"] == runs[0]]
    cand = [{**r, "gpu_conditions": throttled} for r in recs if r["run_id"] == runs[1]]
    b, c = tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    b.write_text("".join(json.dumps(r) + "\n" for r in base))
    c.write_text("".join(json.dumps(r) + "\n" for r in cand))
    code, out, err = cli("compare", b, c, "--json", tmp_path / "v.json")
    assert code == 0 and "throttled (sw_thermal_slowdown)" in err
    [v] = json.loads((tmp_path / "v.json").read_text())["verdicts"]
    assert v["verdict"] == "unchanged" and v["warnings"] == ["candidate measured on a GPU throttled (sw_thermal_slowdown)"]
    code, out, err = cli("compare", b, c, "--refuse-degraded-gpu")
    assert code == 1 and "incomparable" in out and "no verdict" in err
    from benchbench.analysis.summary import display_rows, summary_frame

    rows = display_rows(summary_frame(cand[:1] + base[:1]))
    assert rows[0]["GPU state"] == "throttled (sw_thermal_slowdown)" and rows[1]["GPU state"] == ""
    assert rows[0]["J/img"] != ""
