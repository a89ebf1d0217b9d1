"""Whether a measurement's machine was in a state to trust: its GPU (NVML) and its CPU cores (/proc).

A number measured on a throttled or shared GPU, or on CPU cores another process was using, says more about
the machine than about the code. These read the trackers' fields (`measure.gpu_state`,
`measure.contention`) and say why, in words `compare`, the summary and the report all use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchbench.record.machine import CpuContention, GpuConditions
    from benchbench.record.model import Record


def gpu_degraded(c: GpuConditions | None) -> str | None:
    """Throttled (sustained thermal or hardware slowdown, not power capping), or shared with other processes."""
    if c is None:
        return None
    why = []
    if c.throttled:
        why.append("throttled (" + ", ".join(c.throttle_reasons) + ")")
    if c.shared:
        why.append(f"shared with {c.other_processes} other process(es)")
    return " and ".join(why) or None


def cpu_degraded(c: CpuContention | None) -> str | None:
    """Another process held the cell's cores (or the hypervisor stole them) while it was timed."""
    if c is None or not c.contended:
        return None
    return "CPU contended: " + (c.why or "other processes on the cell's cores")


def degraded(r: Record) -> str | None:
    why = [w for w in (gpu_degraded(r.gpu_conditions), cpu_degraded(r.cpu_contention)) if w]
    return "; ".join(why) or None


def gpu_state_label(c: GpuConditions | None) -> str | None:
    """A short word on a measurement's GPU for tables: degraded's reason, power-capped, unknown or ok."""
    if c is None:
        return None
    bad = gpu_degraded(c)
    if bad:
        return bad
    if c.throttled is None and c.reason_samples is not None:
        return "clock reasons unknown"
    return "power-capped (normal at full load)" if c.power_capped else "ok"
