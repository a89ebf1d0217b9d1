"""The GPU's conditions while a timed block ran, through NVML: a number is only as good as its GPU's state.

A throttled or shared GPU is the most common reason a nightly gate cries wolf, and no peer tool checks it
(flashinfer lost 15% to throttling; nvbench added throttle detection). For each timed block this tracker
records, from NVML (`nvidia-ml-py`): SM and memory clocks against their maxima, temperature, power against
its limit, the clock-event reasons of every sample (raw bits), other compute processes on the device,
persistence mode, MIG, and the energy counter's difference (joules per image beside images per second).

What the reasons mean decides what is "degraded" (NVML's `nvmlClocksEventReasons` documentation):

- `SwPowerCap` is the GPU holding its clocks under the power limit: the normal state of a GPU-bound
  H100/H200 at full load, not a fault. Recorded as `power_capped`, never as throttled;
- `HwSlowdown` is also reported "during P-state or clock change", and two of the samples are taken exactly
  at the block's idle->busy and busy->idle transitions; thermal slowdowns, hardware slowdown and the power
  brake mark a block degraded only when *sustained*: in at least `SUSTAINED_SHARE` of the samples taken
  inside the block (the first and last are the transitions), or in every sample of a block too short to
  have any inside;
- no sample with reasons (an old driver, a device that does not report them): `throttled` is None,
  "unknown", never a reassuring False.

Drivers before R535 lack `nvmlDeviceGetCurrentClocksEventReasons`; the older
`nvmlDeviceGetCurrentClocksThrottleReasons` (same bits) is used there.

A MIG instance is its own NVML device (`MIG-<uuid>`, the UUID torch reports): its processes are read from the
instance, its clocks, power, temperature and energy from the parent GPU (NVML answers those only there).

It samples at the block's start, its end and every `interval_s` between, from a thread: NVML calls go
through ctypes, which releases the GIL, and none of them synchronises the GPU. On a machine without NVML
(or without a GPU) `open_tracker` returns None and no field is written: absent, never faked.
"""

from __future__ import annotations

import os
import threading
from typing import Any

#: Clock-event reasons that slow the measured work when they persist (thermal, hardware, power brake).
DEGRADING = {0x8: "hw_slowdown", 0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown",
             0x80: "hw_power_brake_slowdown"}
#: The GPU at its power limit: how a healthy GPU-bound H100 runs. Recorded, not called degradation.
POWER_CAP = {0x4: "sw_power_cap"}
#: Reasons that say nothing about the measured work (idle between blocks, clocks the admin set, ...).
BENIGN = {0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x10: "sync_boost", 0x100: "display_clock_setting"}
KNOWN = {**DEGRADING, **POWER_CAP, **BENIGN}
#: A degrading reason must be present in at least this share of the samples inside the block.
SUSTAINED_SHARE = 0.2


def _call(fn: Any, *args: Any) -> Any:
    """An NVML query, or None where the device does not support it (NVMLError_NotSupported and kin)."""
    if fn is None:
        return None
    try:
        return fn(*args)
    except Exception:
        return None


def reason_names(bits: int) -> list[str]:
    names = [name for bit, name in KNOWN.items() if bits & bit]
    other = bits & ~sum(KNOWN)
    return names + ([f"other_0x{other:x}"] if other else [])


def judge_reasons(samples: list[int | None]) -> dict[str, Any]:
    """From the raw reason bits of every sample: throttled (sustained degradation), power capping, unknown."""
    known = [s for s in samples if s is not None]
    if not known:
        return {"throttled": None, "throttle_reasons": [], "power_capped": None, "power_cap_share": None,
                "degrading_share": None, "reasons_basis": "no sample had clock-event reasons: unknown"}
    inside = known[1:-1] if len(known) >= 3 else known
    share_of = {name: sum(1 for s in inside if s & bit) / len(inside) for bit, name in DEGRADING.items()}
    if len(known) >= 3:
        sustained = [n for n, sh in share_of.items() if sh >= SUSTAINED_SHARE]
        basis = f"degrading reasons in >= {SUSTAINED_SHARE:.0%} of the {len(inside)} samples inside the block"
    else:
        sustained = [n for n, sh in share_of.items() if sh == 1.0]
        basis = f"a block too short for samples inside it: degrading reasons in all {len(inside)} samples"
    cap = sum(1 for s in inside if s & 0x4) / len(inside)
    return {"throttled": bool(sustained), "throttle_reasons": sustained, "power_capped": cap >= SUSTAINED_SHARE,
            "power_cap_share": cap, "degrading_share": max(share_of.values()), "reasons_basis": basis}


class GpuConditions:
    """Context manager around a timed block; `result(images)` gives the record's `gpu_conditions`."""

    def __init__(self, nvml: Any, handle: Any, interval_s: float = 0.2, parent: Any = None,
                 uuid: str | None = None) -> None:
        self.nvml, self.handle, self.interval_s = nvml, handle, interval_s
        #: the physical GPU: the MIG instance's parent, or the handle itself
        self.gpu = parent if parent is not None else handle
        self.mig_uuid = uuid if parent is not None else None
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._energy0: int | None = None
        self._energy1: int | None = None
        self._reasons_api: str | None = None
        #: this job's other processes (a DDP job's sibling ranks sharing the GPU): the job's own, not others
        self.own_pids: set[int] = set()

    def _reasons(self) -> int | None:
        """The clock-event reasons, from the R535+ call, or the older one where the driver lacks it."""
        n, h = self.nvml, self.gpu
        for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
            if self._reasons_api not in (None, name):
                continue
            value = _call(getattr(n, name, None), h)
            if value is not None:
                self._reasons_api = name
                return int(value)
        return None

    def _sample(self) -> None:
        n, h = self.nvml, self.gpu
        power = _call(n.nvmlDeviceGetPowerUsage, h)
        self.samples.append({
            "sm_mhz": _call(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_SM),
            "mem_mhz": _call(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_MEM),
            "temp_c": _call(n.nvmlDeviceGetTemperature, h, n.NVML_TEMPERATURE_GPU),
            "power_w": power / 1000 if power is not None else None,
            "reasons": self._reasons(),
        })

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> GpuConditions:
        self._energy0 = _call(self.nvml.nvmlDeviceGetTotalEnergyConsumption, self.gpu)
        self._sample()
        self._thread = threading.Thread(target=self._run, name="bb-nvml", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self._energy1 = _call(self.nvml.nvmlDeviceGetTotalEnergyConsumption, self.gpu)

    def result(self, images: int) -> dict[str, Any]:
        n, h, gpu = self.nvml, self.handle, self.gpu
        ss = self.samples

        def span(key: str) -> dict[str, float] | None:
            vals = sorted(s[key] for s in ss if s[key] is not None)
            return {"min": vals[0], "median": vals[len(vals) // 2], "max": vals[-1]} if vals else None

        bits = [s["reasons"] for s in ss]
        seen = 0
        for b in bits:
            seen |= b or 0
        procs = _call(n.nvmlDeviceGetComputeRunningProcesses, h)  # the MIG instance's own, on MIG
        mine = os.getpid()
        # In a container NVML reports host pids, so our own pid may not be listed: one process is us.
        others = None
        if procs is not None:
            pids = {int(getattr(p, "pid", -1)) for p in procs}
            # (in a container NVML's host pids match none of ours: a sibling rank then counts as another)
            others = len(pids - {mine} - self.own_pids) if mine in pids else max(0, len(pids) - 1)
        mig = _call(n.nvmlDeviceGetMigMode, gpu)
        limit = _call(n.nvmlDeviceGetEnforcedPowerLimit, gpu)
        energy = (self._energy1 - self._energy0) / 1000 if self._energy0 is not None and self._energy1 is not None \
            else None
        sm, sm_max = span("sm_mhz"), _call(n.nvmlDeviceGetMaxClockInfo, gpu, n.NVML_CLOCK_SM)
        return {
            "source": "nvml",
            "samples": len(ss),
            "sm_clock_mhz": sm,
            "sm_clock_max_mhz": sm_max,
            "sm_clock_ratio": (sm["median"] / sm_max) if sm and sm_max else None,
            "mem_clock_mhz": span("mem_mhz"),
            "mem_clock_max_mhz": _call(n.nvmlDeviceGetMaxClockInfo, gpu, n.NVML_CLOCK_MEM),
            "temperature_c": span("temp_c"),
            "power_w": span("power_w"),
            "power_limit_w": limit / 1000 if limit is not None else None,
            "clock_event_reasons": reason_names(seen),
            "reason_samples": bits,  # raw bits of every sample, in order: start, inside..., end
            "reasons_api": self._reasons_api,
            **judge_reasons(bits),
            "other_processes": others,
            "shared": bool(others),
            "persistence_mode": (bool(pm) if (pm := _call(n.nvmlDeviceGetPersistenceMode, gpu)) is not None
                                 else None),
            "mig": (True if self.mig_uuid else bool(mig[0]) if isinstance(mig, (list, tuple)) and mig else None),
            "mig_uuid": self.mig_uuid,
            "energy_j": energy,
            "energy_j_per_image": energy / images if energy is not None and images else None,
        }


def _by_uuid(nvml: Any, uuid: str) -> tuple[Any, Any, str | None]:
    """(handle, parent, the UUID that matched). torch reports a UUID without NVML's prefix: a full GPU is
    `GPU-<uuid>` to NVML, a MIG instance `MIG-<uuid>`; both are tried, the prefix given is used as is."""
    u = str(uuid)
    tries = [u] if u.startswith(("GPU-", "MIG-")) else [f"GPU-{u}", f"MIG-{u}"]
    for cand in tries:
        handle = _call(nvml.nvmlDeviceGetHandleByUUID, cand)
        if handle is None:
            continue
        is_mig = _call(getattr(nvml, "nvmlDeviceIsMigDeviceHandle", None), handle)
        if cand.startswith("MIG-") or is_mig:
            parent = _call(getattr(nvml, "nvmlDeviceGetDeviceHandleFromMigDeviceHandle", None), handle)
            return handle, parent if parent is not None else handle, cand
        return handle, None, cand
    return None, None, None


def open_tracker(device_index: int, uuid: str | None = None, nvml: Any = None,
                 interval_s: float = 0.2) -> GpuConditions | None:
    """A tracker for the GPU torch calls `device_index`, found by its UUID (so CUDA_VISIBLE_DEVICES, device
    order and MIG do not mislead), or None where NVML is missing or the UUID is not NVML's: fields are then
    absent, never read from another GPU. Without a UUID, the ordinal is trusted only where NVML sees one GPU."""
    try:
        if nvml is None:
            import pynvml as nvml
        nvml.nvmlInit()
        if uuid:
            handle, parent, matched = _by_uuid(nvml, uuid)
            if handle is None:
                return None
            return GpuConditions(nvml, handle, interval_s, parent, matched)
        if _call(getattr(nvml, "nvmlDeviceGetCount", None)) not in (None, 1):
            return None  # which NVML device torch's ordinal is depends on CUDA_VISIBLE_DEVICES and the order
        return GpuConditions(nvml, nvml.nvmlDeviceGetHandleByIndex(device_index), interval_s)
    except Exception:
        return None


def for_cell(ctx: Any) -> GpuConditions | None:
    """NVML's view of a CUDA cell's GPU during the timed block, where NVML exists (else None)."""
    if ctx.device.type != "cuda":
        return None
    import torch

    index = ctx.device.index if ctx.device.index is not None else torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    tracker = open_tracker(index, str(uuid) if uuid is not None else None)
    if tracker is not None:  # a DDP rank's siblings (each leads its process group: the group is its pid)
        tracker.own_pids = {int(g) for g in (ctx.params or {}).get("own_groups") or ()}
    return tracker
