"""A CPU step's breakdown from the trace's host ranges: phases, modules (backward by sequence number), ops.

The profile pass used to build torch's event objects (`prof.events()`, ~0.75 s of a tiny cell's 1.3 s
profile pass) to compute what the exported trace already holds; the timeline reader parses that trace in
a few milliseconds, so the CPU breakdown reads it instead. Host wall time is the CPU device's own clock.
Backward ops are attributed to the module whose forward op has the same autograd sequence number (module
backward hooks report 0 for SMP decoders, which take lists).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from benchbench.timeline.reader import (
    BACKWARD_PREFIX,
    MODULE_PREFIX,
    PHASE_PREFIX,
    STEP_NAME,
    HostRange,
    Timeline,
)

PHASES = ("data_wait", "host_to_device", "forward", "loss", "backward", "optimizer")


def _self_times(host: list[HostRange]) -> dict[int, float]:
    """Each range's own time (its duration less its children's), per thread, by a stack walk."""
    out: dict[int, float] = {}
    by_tid: dict[int, list[HostRange]] = defaultdict(list)
    for h in host:
        by_tid[h.tid].append(h)
    for items in by_tid.values():
        items.sort(key=lambda h: (h.ts, -(h.end - h.ts)))
        stack: list[HostRange] = []
        for h in items:
            while stack and stack[-1].end <= h.ts:
                stack.pop()
            out[id(h)] = h.end - h.ts
            if stack:
                out[id(stack[-1])] -= min(h.end, stack[-1].end) - h.ts
            stack.append(h)
    return out


def host_breakdown(tl: Timeline, steps: int) -> dict[str, Any]:
    us = 1e-6 / steps  # per-step seconds from summed microseconds
    step_us = sum(h.end - h.ts for h in tl.host if h.name == STEP_NAME)
    phases: dict[str, float] = dict.fromkeys(PHASES, 0.0)
    fwd: dict[str, float] = defaultdict(float)
    bwd: dict[str, float] = defaultdict(float)
    unattributed = 0.0
    ops: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    self_t = _self_times(tl.host)
    loader_us = 0.0
    for h in tl.host:
        d = h.end - h.ts
        if h.name.startswith(PHASE_PREFIX):
            key = h.name[len(PHASE_PREFIX):]
            phases[key] = phases.get(key, 0.0) + d
        elif h.name.startswith(MODULE_PREFIX):
            fwd[h.name[len(MODULE_PREFIX):]] += d
        elif h.name.startswith(BACKWARD_PREFIX):
            mod = tl.seq_module.get(h.seq) if h.seq is not None else None
            if mod is None:
                unattributed += d
            else:
                bwd[mod] += d
        if "DataLoader" in h.name and "__next__" in h.name:
            loader_us += d
        if not h.name.startswith(("bb.", "ProfilerStep")):  # aten ops and other record_function ranges
            ops[h.name][0] += self_t.get(id(h), 0.0)
            ops[h.name][1] += 1

    def inclusive(table: dict[str, float], name: str) -> float:
        return sum(v for k, v in table.items() if k == name or k.startswith(name + "."))

    # Both inclusive: decoder includes decoder.fuse_stage; the top-level modules add up to the phases.
    names = sorted(set(fwd) | set(bwd), key=lambda n: (n.count("."), n))
    modules = {n: {"forward": fwd.get(n, 0.0) * us, "backward": inclusive(bwd, n) * us} for n in names}
    rows = sorted(((t, name, n) for name, (t, n) in ops.items()), reverse=True)
    phase_s = {k: v * us for k, v in phases.items()}
    return {
        "time_basis": "host wall time",
        "profiled_steps": steps,
        "step_s": step_us * us,
        "phases": phase_s,
        "phases_sum_s": sum(phase_s.values()),
        "modules": modules,
        "backward_unattributed_s": unattributed * us,
        "top_ops": [{"name": name, "self_time_s": t * us, "calls": int(n) // steps,
                     "share": t / step_us if step_us else 0.0} for t, name, n in rows[:15]],
        "op_self_total_s": sum(r[0] for r in rows) * us,
        "dataloader_next_s": loader_us * us,
    }
