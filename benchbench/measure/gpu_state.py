"""The GPU's conditions while a timed block ran, through NVML: a number is only as good as its GPU's state.

A throttled or shared GPU is the most common reason a nightly gate cries wolf, and no peer tool checks it
(flashinfer lost 15% to throttling; nvbench added throttle detection). For each timed block this tracker
records, from NVML (`nvidia-ml-py`): SM and memory clocks against their maxima, temperature, power against
its limit, the clock-event (throttle) reasons seen, other compute processes on the device, persistence
mode, MIG, and the energy counter's difference (joules per image beside images per second).

It samples at the block's start, its end and every `interval_s` between, from a thread: NVML calls go
through ctypes, which releases the GIL, and none of them synchronises the GPU. On a machine without NVML
(or without a GPU) `open_tracker` returns None and no field is written: absent, never faked.
"""

from __future__ import annotations

import os
import threading
from typing import Any

# Clock-event reasons (nvmlClocksEventReason*): those that mean the GPU ran slower than it could.
THROTTLES = {0x4: "sw_power_cap", 0x8: "hw_slowdown", 0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown",
             0x80: "hw_power_brake_slowdown", 0x200: "board_limit", 0x400: "reliability"}
#: reasons that are not a slowdown of the measured work (idle between blocks, clocks the admin set, ...)
BENIGN = {0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x10: "sync_boost", 0x100: "display_clock_setting"}


def _call(fn: Any, *args: Any) -> Any:
    """An NVML query, or None where the device does not support it (NVMLError_NotSupported and kin)."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - pynvml raises one NVMLError subclass per return code
        return None


class GpuConditions:
    """Context manager around a timed block; `result(images)` gives the record's `gpu_conditions`."""

    def __init__(self, nvml: Any, handle: Any, interval_s: float = 0.2) -> None:
        self.nvml, self.handle, self.interval_s = nvml, handle, interval_s
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._energy0: int | None = None
        self._energy1: int | None = None

    def _sample(self) -> None:
        n, h = self.nvml, self.handle
        reasons = _call(getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None)
                        or n.nvmlDeviceGetCurrentClocksThrottleReasons, h)
        power = _call(n.nvmlDeviceGetPowerUsage, h)
        self.samples.append({
            "sm_mhz": _call(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_SM),
            "mem_mhz": _call(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_MEM),
            "temp_c": _call(n.nvmlDeviceGetTemperature, h, n.NVML_TEMPERATURE_GPU),
            "power_w": power / 1000 if power is not None else None,
            "reasons": int(reasons) if reasons is not None else None,
        })

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> GpuConditions:
        self._energy0 = _call(self.nvml.nvmlDeviceGetTotalEnergyConsumption, self.handle)
        self._sample()
        self._thread = threading.Thread(target=self._run, name="bb-nvml", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self._energy1 = _call(self.nvml.nvmlDeviceGetTotalEnergyConsumption, self.handle)

    def result(self, images: int) -> dict[str, Any]:
        n, h = self.nvml, self.handle
        ss = self.samples

        def span(key: str) -> dict[str, float] | None:
            vals = sorted(s[key] for s in ss if s[key] is not None)
            return {"min": vals[0], "median": vals[len(vals) // 2], "max": vals[-1]} if vals else None

        seen = 0
        for s in ss:
            seen |= s["reasons"] or 0
        throttles = [name for bit, name in THROTTLES.items() if seen & bit]
        procs = _call(n.nvmlDeviceGetComputeRunningProcesses, h)
        mine = os.getpid()
        # In a container NVML reports host pids, so our own pid may not be listed: one process is us.
        others = None
        if procs is not None:
            pids = {int(getattr(p, "pid", -1)) for p in procs}
            others = len(pids - {mine}) if mine in pids else max(0, len(pids) - 1)
        mig = _call(n.nvmlDeviceGetMigMode, h)
        limit = _call(n.nvmlDeviceGetEnforcedPowerLimit, h)
        energy = (self._energy1 - self._energy0) / 1000 if self._energy0 is not None and self._energy1 is not None \
            else None
        sm, sm_max = span("sm_mhz"), _call(n.nvmlDeviceGetMaxClockInfo, h, n.NVML_CLOCK_SM)
        return {
            "source": "nvml",
            "samples": len(ss),
            "sm_clock_mhz": sm,
            "sm_clock_max_mhz": sm_max,
            "sm_clock_ratio": (sm["median"] / sm_max) if sm and sm_max else None,
            "mem_clock_mhz": span("mem_mhz"),
            "mem_clock_max_mhz": _call(n.nvmlDeviceGetMaxClockInfo, h, n.NVML_CLOCK_MEM),
            "temperature_c": span("temp_c"),
            "power_w": span("power_w"),
            "power_limit_w": limit / 1000 if limit is not None else None,
            "clock_event_reasons": [name for bit, name in {**THROTTLES, **BENIGN}.items() if seen & bit],
            "throttle_reasons": throttles,
            "throttled": bool(throttles),
            "other_processes": others,
            "shared": bool(others),
            "persistence_mode": (bool(pm) if (pm := _call(n.nvmlDeviceGetPersistenceMode, h)) is not None else None),
            "mig": bool(mig[0]) if isinstance(mig, (list, tuple)) and mig else None,
            "energy_j": energy,
            "energy_j_per_image": energy / images if energy is not None and images else None,
        }


def open_tracker(device_index: int, uuid: str | None = None, nvml: Any = None,
                 interval_s: float = 0.2) -> GpuConditions | None:
    """A tracker for the GPU torch calls `device_index` (found by UUID, so CUDA_VISIBLE_DEVICES does not
    mislead), or None where NVML is missing: fields are then absent, never made up."""
    try:
        if nvml is None:
            import pynvml as nvml
        nvml.nvmlInit()
        handle = None
        if uuid:
            u = uuid if str(uuid).startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
            handle = _call(nvml.nvmlDeviceGetHandleByUUID, u)
        if handle is None:
            handle = nvml.nvmlDeviceGetHandleByIndex(device_index)
    except Exception:  # noqa: BLE001 - no library, no driver, no device: nothing to record
        return None
    return GpuConditions(nvml, handle, interval_s)


def degraded(conditions: dict[str, Any] | None) -> str | None:
    """Why a measurement's GPU was not in a state to trust, or None: throttled, or shared with others."""
    if not conditions:
        return None
    why = []
    if conditions.get("throttled"):
        why.append("throttled (" + ", ".join(conditions.get("throttle_reasons") or []) + ")")
    if conditions.get("shared"):
        why.append(f"shared with {conditions.get('other_processes')} other process(es)")
    return " and ".join(why) or None
