"""The GPU's conditions during a timed block, from NVML: the logic on NVML's documented answers (pynvml's
types: clocks in MHz, power in mW, energy in mJ, reasons a bitmask, processes with a pid), the real thing
where a GPU exists."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest
import torch

from benchbench.measure.gpu_state import judge_reasons, open_tracker
from benchbench.record.machine import GpuConditions
from benchbench.record.state import gpu_degraded, gpu_state_label


def degraded(r: dict) -> str | None:
    return gpu_degraded(GpuConditions.model_validate(r))


def state_label(r: dict) -> str | None:
    return gpu_state_label(GpuConditions.model_validate(r))


class NotSupported(Exception):
    """pynvml.NVMLError_NotSupported stands for any NVMLError."""


class FunctionNotFound(Exception):
    """pynvml.NVMLError_FunctionNotFound: the driver (before R535) lacks the symbol."""


class FakeNvml:
    """NVML's documented answers. `reasons` is the clock-event bitmask, or a list: one per sample in turn
    (the last repeats). `old_driver`: no nvmlDeviceGetCurrentClocksEventReasons in the driver."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    def __init__(self, reasons=0x0, procs: int = 1, energy_mj_per_call: int = 50_000, mig=NotSupported,
                 old_driver: bool = False, no_reasons: bool = False, uuids=("GPU-1234",)):
        self.reasons, self.procs, self.energy_step, self.mig = reasons, procs, energy_mj_per_call, mig
        self.old_driver, self.no_reasons, self.uuids = old_driver, no_reasons, uuids
        self.energy = 1_000_000
        self.calls: list[tuple[str, str]] = []
        self.n = 0

    def nvmlInit(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int: return 2
    def nvmlDeviceGetHandleByIndex(self, i: int) -> str: return f"h{i}"

    def nvmlDeviceGetHandleByUUID(self, u: str) -> str:
        if u not in self.uuids:
            raise NotSupported("NVML_ERROR_NOT_FOUND")
        return "mig-h" if u.startswith("MIG-") else "h-uuid"

    def nvmlDeviceIsMigDeviceHandle(self, h: str) -> int: return int(h == "mig-h")
    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, h: str) -> str: return "parent-h"

    def _gpu(self, name: str, h: str) -> None:
        self.calls.append((name, h))
        if h == "mig-h":
            raise NotSupported(f"{name} on a MIG instance")  # NVML answers these on the parent only

    def nvmlDeviceGetClockInfo(self, h: str, kind: int) -> int:
        self._gpu("clock", h)
        return 1755 if kind == 1 else 2619

    def nvmlDeviceGetMaxClockInfo(self, h: str, kind: int) -> int:
        self._gpu("max_clock", h)
        return 1980 if kind == 1 else 2619

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int: return 61
    def nvmlDeviceGetPowerUsage(self, h: str) -> int: return 402_500
    def nvmlDeviceGetEnforcedPowerLimit(self, h: str) -> int: return 700_000

    def _next_reasons(self) -> int:
        if isinstance(self.reasons, list):
            self.n += 1
            return self.reasons[min(self.n - 1, len(self.reasons) - 1)]
        return self.reasons

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: str) -> int:
        if self.old_driver:
            raise FunctionNotFound("nvmlDeviceGetCurrentClocksEventReasons")
        if self.no_reasons:
            raise NotSupported("reasons")
        return self._next_reasons()

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: str) -> int:
        if self.no_reasons:
            raise NotSupported("reasons")
        return self._next_reasons()

    def nvmlDeviceGetPersistenceMode(self, h: str) -> int: return 1

    def nvmlDeviceGetComputeRunningProcesses(self, h: str) -> list:
        self.calls.append(("procs", h))
        return [SimpleNamespace(pid=os.getpid() if i == 0 else 90_000 + i, usedGpuMemory=2**30)
                for i in range(self.procs)]

    def nvmlDeviceGetMigMode(self, h: str) -> list:
        if self.mig is NotSupported:
            raise NotSupported("MIG")
        return self.mig

    def nvmlDeviceGetTotalEnergyConsumption(self, h: str) -> int:
        self._gpu("energy", h)
        self.energy += self.energy_step
        return self.energy


def run_block(nvml: FakeNvml, images: int = 80, uuid: str = "GPU-1234", seconds: float = 0.05) -> dict:
    tracker = open_tracker(0, uuid, nvml=nvml, interval_s=0.01)
    with tracker:
        time.sleep(seconds)
    return tracker.result(images)


def test_a_healthy_gpu() -> None:
    r = run_block(FakeNvml())
    assert r["source"] == "nvml" and r["samples"] >= 2
    assert r["sm_clock_mhz"]["median"] == 1755 and r["sm_clock_ratio"] == pytest.approx(1755 / 1980)
    assert r["power_w"]["max"] == pytest.approx(402.5) and r["power_limit_w"] == pytest.approx(700.0)
    assert r["temperature_c"]["max"] == 61 and r["persistence_mode"] is True and r["mig"] is None
    assert r["throttled"] is False and not r["shared"] and degraded(r) is None and state_label(r) == "ok"
    assert r["energy_j"] == pytest.approx(50.0) and r["energy_j_per_image"] == pytest.approx(50.0 / 80)
    assert r["reason_samples"] == [0] * r["samples"]


def test_power_capping_at_full_load_is_not_throttling() -> None:
    """SW power cap is a GPU-bound H100 at its power limit (NVML: clocks held under the limit): normal."""
    r = run_block(FakeNvml(reasons=0x4 | 0x1))
    assert r["throttled"] is False and r["throttle_reasons"] == [] and r["power_capped"] is True
    assert set(r["clock_event_reasons"]) == {"sw_power_cap", "gpu_idle"}
    assert degraded(r) is None and state_label(r).startswith("power-capped")


def test_a_slowdown_only_at_the_transitions_is_not_throttling() -> None:
    """HwSlowdown is also reported during P-state / clock changes: the first and last samples are taken at
    the idle->busy and busy->idle transitions, so one bit there marks nothing."""
    edges = judge_reasons([0x8, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x8])
    assert edges["throttled"] is False and edges["degrading_share"] == 0
    assert judge_reasons([0x20, 0x0])["throttled"] is False  # too short for samples inside: all must say so
    assert judge_reasons([0x20, 0x20])["throttled"] is True
    r = run_block(FakeNvml(reasons=[0x8, 0x0]), seconds=0.0)
    assert r["throttled"] is False and "hw_slowdown" in r["clock_event_reasons"]
    many = [0x0] + [0x8 if i % 3 == 0 else 0x0 for i in range(30)]
    sustained = run_block(FakeNvml(reasons=many), seconds=0.12)
    assert sustained["throttled"] is True and sustained["throttle_reasons"] == ["hw_slowdown"]
    assert degraded(sustained) == "throttled (hw_slowdown)"


def test_a_shared_gpu_and_mig_mode() -> None:
    r = run_block(FakeNvml(procs=3))
    assert r["other_processes"] == 2 and r["shared"] and degraded(r) == "shared with 2 other process(es)"
    assert run_block(FakeNvml(mig=[1, 1]))["mig"] is True


def test_a_ddp_jobs_sibling_ranks_on_the_gpu_are_its_own() -> None:
    """Two torchrun ranks sharing the one GPU (gloo, on the lent H200): NVML lists both, and the other rank
    was counted as another process — the record said "shared", the run unfit. Its pid is the job's own."""
    tracker = open_tracker(0, "GPU-1234", nvml=FakeNvml(procs=3), interval_s=0.01)
    tracker.own_pids = {90_001}  # the sibling rank; 90_002 is someone else's
    with tracker:
        time.sleep(0.02)
    assert tracker.result(8)["other_processes"] == 1


def test_an_old_driver_falls_back_and_no_reasons_is_unknown() -> None:
    old = run_block(FakeNvml(reasons=0x20, old_driver=True))
    assert old["reasons_api"] == "nvmlDeviceGetCurrentClocksThrottleReasons" and old["throttled"] is True
    none = run_block(FakeNvml(no_reasons=True))
    assert none["throttled"] is None and none["reasons_basis"].endswith("unknown")
    assert degraded(none) is None and state_label(none) == "clock reasons unknown"


def test_a_mig_instance_is_found_by_its_mig_uuid_and_read_on_its_parent() -> None:
    """torch reports a MIG instance's UUID bare; NVML knows it as MIG-<uuid>. Clocks and power come from the
    parent GPU, processes from the instance; never the CUDA ordinal (which names another device)."""
    nvml = FakeNvml(uuids=("MIG-abcd",))
    r = run_block(nvml, uuid="abcd")
    assert r["mig"] is True and r["mig_uuid"] == "MIG-abcd"
    assert r["sm_clock_mhz"]["median"] == 1755 and r["energy_j"] == pytest.approx(50.0)
    assert ("procs", "mig-h") in nvml.calls and all(h == "parent-h" for name, h in nvml.calls if name != "procs")
    assert open_tracker(0, "ffff", nvml=FakeNvml()) is None  # a UUID NVML does not know: absent, not h0
    assert open_tracker(0, None, nvml=FakeNvml()) is None  # two GPUs, no UUID: the ordinal is ambiguous


def test_no_nvml_records_nothing() -> None:
    class Missing:
        def nvmlInit(self) -> None:
            raise OSError("NVML Shared Library Not Found")

    assert open_tracker(0, None, nvml=Missing()) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_reads_the_real_gpu() -> None:
    from benchbench.measure.gpu_state import for_cell
    from benchbench.measure.trackers import TrackerContext

    tracker = for_cell(TrackerContext(torch.device("cuda"), {}, torch.get_num_threads()))
    assert tracker is not None, "NVML not found on a CUDA machine"
    a = torch.randn(4096, 4096, device="cuda")
    with tracker:
        for _ in range(50):
            a @ a
        torch.cuda.synchronize()
    r = tracker.result(50)
    assert r["sm_clock_mhz"]["max"] > 0 and r["sm_clock_max_mhz"] >= r["sm_clock_mhz"]["max"]
    assert r["power_limit_w"] > 0
    # a driver from R535 on answers the clock-event reasons: the judgement is a yes or no, never unknown
    assert r["reasons_api"] is not None and r["throttled"] in (True, False)
    assert len(r["reason_samples"]) == r["samples"] and r["other_processes"] == 0


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
    assert v["verdict"] == "unchanged"
    assert v["warnings"] == ["candidate measured on a GPU throttled (sw_thermal_slowdown)"]
    code, out, err = cli("compare", b, c, "--refuse-degraded-gpu")
    assert code == 1 and "incomparable" in out and "no verdict" in err
    from conftest import as_records

    from benchbench.analysis.summary import display_rows, summary_frame

    rows = display_rows(summary_frame(as_records(cand[0], base[0])))
    assert rows[0]["GPU state"] == "throttled (sw_thermal_slowdown)" and rows[1]["GPU state"] == ""
    assert rows[0]["J/img"] != ""
