"""Where the GPU sat idle and why: gaps inside the profiled step, and idle against the timed step.

As Holistic Trace Analysis splits idle time: waiting for the host to launch, host syncs, data wait.
"""

from __future__ import annotations

import itertools
from typing import Any

from benchbench.timeline.reader import HostRange, Timeline


def _classify_gaps(tl: Timeline, step: HostRange, merged: list[tuple[float, float]],
                   syncs: list[tuple[float, float]]) -> dict[str, float]:
    """Where the GPU sat idle inside the profiled step, and why (as HTA splits idle time).

    A gap that starts while the host is blocked in a sync (or within 50 us of
    one returning) is the sync's; a gap inside the data-wait phase is the input
    pipeline's; any other gap is the host not launching fast enough.
    """
    out = {"launch": 0.0, "sync": 0.0, "data_wait": 0.0}
    if not merged:
        return out
    data = [h for h in tl.phases if h.name.endswith("data_wait") and step.ts <= h.ts <= step.end]
    edges = [(step.ts, merged[0][0])] + [(a[1], b[0]) for a, b in itertools.pairwise(merged)]
    for s, e in edges:
        if e <= s:
            continue
        in_data = sum(max(0.0, min(e, d.end) - max(s, d.ts)) for d in data)
        if in_data:
            out["data_wait"] += in_data * 1e-6
        rest = (e - s) - in_data
        if rest <= 0:
            continue
        if any(ts - 1 <= s <= end + 50 for ts, end in syncs):
            out["sync"] += rest * 1e-6
        else:
            out["launch"] += rest * 1e-6
    return out


def apply_step_time(s: Any, step_time_s: float, data_wait_s: float | None, source: str) -> None:
    """Idle = timed step - GPU busy, split by the causes seen in the trace.

    Data wait is a host measurement (the record's, when known; else the trace's
    data-wait gaps); the rest of the idle time is split between host syncs and
    launching in the proportions the profiled step's gaps show.
    """
    idle = max(step_time_s - s.gpu_busy_s, 0.0)
    s.step_time_s, s.step_time_source = step_time_s, source
    s.gpu_idle_s, s.gpu_idle_fraction = idle, idle / step_time_s
    g = s.profiled_gaps_s
    data = min(idle, data_wait_s if data_wait_s is not None else g.get("data_wait", 0.0))
    rest = idle - data
    other = g.get("launch", 0.0) + g.get("sync", 0.0)
    sync = rest * g.get("sync", 0.0) / other if other else 0.0
    s.idle_breakdown_s = {"launch": rest - sync, "sync": sync, "data_wait": data}
