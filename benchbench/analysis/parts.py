"""A step split into parts that add up to the timed step, and two steps' difference split the same way.

The parts are what a pairwise difference is explained by: data wait, host-to-device, forward, loss, backward,
optimizer (and on a GPU its busy time by phase plus its idle by cause). On a CPU the profiled phases are
host time of a profiled step, which the profiler stretches; they are scaled to the timed step minus its
measured data wait, so the parts always add up to the timed step, and their difference to the difference.
"""

from __future__ import annotations

import math
from typing import Any

from benchbench.record import Record

IDLE = ("launch", "sync", "data_wait")


def step_parts(r: Record) -> dict[str, float]:
    """{part: seconds} adding up to the timed median step."""
    step = r.median
    bd = r.breakdown
    gpu = r.gpu
    if gpu is not None and gpu.idle_breakdown_s is not None and gpu.gpu_busy_s:
        busy = min(gpu.gpu_busy_s, step)
        ph = {k: max(v, 0.0) for k, v in gpu.gpu_phases_s.items()}
        total = sum(ph.values()) or 1.0
        parts = {f"GPU {k}": busy * v / total for k, v in ph.items() if v}
        idle = gpu.idle_breakdown_s
        rest = step - busy
        isum = sum(idle.values()) or 1.0
        parts.update({f"GPU idle ({k.replace('_', ' ')})": rest * idle.get(k, 0.0) / isum for k in IDLE
                      if idle.get(k)})
        if not any(k.startswith("GPU idle") for k in parts) and rest > 0:
            parts["GPU idle"] = rest
        return parts
    wait = min(float(r.input_stall.median or 0.0), step)  # the one definition of the input stall
    phases = {k: max(float(v or 0.0), 0.0) for k, v in (bd.phases if bd else {}).items() if k != "data_wait"}
    total = sum(phases.values())
    parts = {"data wait": wait}
    if total > 0:
        parts.update({k.replace("_", " "): (step - wait) * v / total for k, v in phases.items() if v})
    else:
        parts["compute (no breakdown)"] = step - wait
    return parts


def module_times(r: Record, parts: dict[str, float]) -> dict[str, float]:
    """Top-level modules' forward + backward time, scaled like the phases (`parts`: the record's step_parts)."""
    bd, gpu = r.breakdown, r.gpu
    if bd is None:
        return {}
    mods = gpu.gpu_modules_s if gpu else bd.modules
    raw = {k: v.total for k, v in mods.items() if "." not in k}
    if gpu:
        return raw
    base = bd.phases_sum_s or bd.step_s or 0.0
    compute = sum(v for k, v in parts.items() if k != "data wait")
    scale = compute / base if base else 0.0
    return {k: v * scale for k, v in raw.items()}


def split_difference(slow: Record, fast: Record) -> dict[str, Any]:
    """The difference of two cells' timed steps, by part (adding up to it) and by top-level module."""
    ps, pf = step_parts(slow), step_parts(fast)
    delta = slow.median - fast.median
    parts = {k: ps.get(k, 0.0) - pf.get(k, 0.0) for k in set(ps) | set(pf)}
    ms, mf = module_times(slow, ps), module_times(fast, pf)
    mods = {k: ms.get(k, 0.0) - mf.get(k, 0.0) for k in set(ms) | set(mf)}
    return {"delta_s": delta, "parts_s": parts, "modules_s": mods}


def parts_text(split: dict[str, Any], limit: int = 3) -> str:
    """The largest parts of a difference by size, each with its share; never a part of 0%."""
    delta = split["delta_s"]
    ranked = sorted(split["parts_s"].items(), key=lambda kv: -abs(kv[1]))
    shown = []
    for k, v in ranked[:limit]:
        share = v / delta if delta else math.nan
        if abs(share) < 0.005:
            continue
        shown.append(f"{k} {v * 1e3:+.1f} ms ({share:.0%})")
    mods = sorted(split["modules_s"].items(), key=lambda kv: -abs(kv[1]))
    txt = ", ".join(shown)
    if mods and delta and abs(mods[0][1] / delta) >= 0.05:
        txt += f"; by module: {mods[0][0]} {mods[0][1] * 1e3:+.1f} ms"
    return txt
