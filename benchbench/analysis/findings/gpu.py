"""Findings read from the GPU's own timeline: launch-bound steps, host syncs, busy/idle deltas.

Rules take a GPU timeline (a record's `breakdown.gpu`, or a trace's), so `explain-trace`
on a user's trace and the report on a suite's records say the same things the same way.
"""

from __future__ import annotations

from typing import Any

from benchbench.analysis.records import (
    Finding,
    Thresholds,
    effect_text,
    label,
    ok,
    step_s,
    verifier,
)
from benchbench.record import Record
from benchbench.record.explain import GpuTimeline

SYNC_CAUSES = {
    "aten::_local_scalar_dense": "a tensor read on the host (`.item()`, `float(t)`, `if t:`)",
    "aten::item": "a tensor read on the host (`.item()`)",
    "aten::nonzero": "`nonzero` / boolean-mask indexing, whose output size the host must know",
    "aten::masked_select": "boolean-mask indexing, whose output size the host must know",
    "aten::unique": "`unique`, whose output size the host must know",
    "aten::to": "a copy to the host (`.cpu()` / `.to('cpu')`)",
    "aten::_to_copy": "a copy to the host (`.cpu()` / `.to('cpu')`)",
    "aten::copy_": "a device-to-host copy",
}
#: causes known from the wait itself (`Sync.kind`), ahead of the op's: a pageable copy *to* the device is an
#: aten::copy_ too, and a free has no op
KIND_CAUSES = {
    "htod_pageable": "a host-to-device copy from pageable memory (`.to('cuda')` / `.cuda()` of an unpinned tensor: "
                     "torch copies it, then waits for the stream)",
    "free": "cudaFree, the caching allocator returning memory to the driver (near OOM, or torch.cuda.empty_cache())",
}
KIND_ADVICE = {
    "htod_pageable": "pin_memory=True in the DataLoader and .to(device, non_blocking=True) for the copy (advise "
                     "measures pin_memory from outside)",
    "free": "leave memory headroom (a smaller batch, PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True) and no "
            "torch.cuda.empty_cache() inside the loop",
}


def sync_cause(s: Any) -> str:
    """Why a sync waits: its kind's cause when known, else its op's."""
    return KIND_CAUSES.get(s.kind or "", "") or SYNC_CAUSES.get(s.op, "")


def sync_advice(g: GpuTimeline, default: str) -> str:
    """The advice for the sync that idles the GPU longest, where its kind has one of its own."""
    if not g.host_syncs:
        return default
    top = max(g.host_syncs, key=lambda s: s.gpu_idle_after_s_per_step + s.wait_s_per_step)
    return KIND_ADVICE.get(top.kind or "", default)


def gpu_of(r: Record) -> GpuTimeline | None:
    return r.gpu


def _ms(x: float | None) -> str:
    return "?" if x is None else f"{x * 1e3:.1f} ms"


def enqueue_s(r: Record) -> float | None:
    return r.timing.host_enqueue_s.median if r.timing and r.timing.host_enqueue_s else None


def launch_bound_text(g: GpuTimeline, enqueue: float | None = None) -> str | None:
    """The evidence sentence of a launch-bound step, or None if the GPU is not idle waiting for launches.

    The evidence is the GPU's: its idle gaps against the timed step, and how soon kernels start after
    their launch (a kernel that starts microseconds after its launch returns found an empty queue).
    Host enqueue time is not evidence either way: once ~1000 launches are queued, a launch blocks
    until the GPU frees a slot, so a GPU-bound loop also spends its whole step enqueueing.
    """
    step, idle = g.step_time_s, (g.idle_breakdown_s or {}).get("launch")
    if not step or idle is None:
        return None
    txt = (f"the GPU is idle {idle / step:.0%} of a {_ms(step)} step ({_ms(idle)}) waiting for the host to launch "
           f"work: {g.launches_per_step:.0f} launches per step ({g.kernels_per_step:.0f} kernels) keep it busy "
           f"only {_ms(g.gpu_busy_s)}")
    share, delay = g.launch_queue_empty_share, g.launch_delay_median_s
    if share is not None and delay is not None:
        txt += (f"; {share:.0%} of kernels started within 20 us of their launch returning (median launch-to-start "
                f"{delay * 1e6:.0f} us in the profiled steps): the queue runs empty and the host sets the pace")
    if enqueue:
        txt += (f" (host enqueue {_ms(enqueue)} per step is no evidence on its own: a full launch queue blocks "
                "the host in a GPU-bound loop too)")
    return txt


LAUNCH_ADVICE = "torch.compile (fewer, fused kernels), CUDA graphs, or a larger batch (more work per launch)"


def launch_bound_finding(g: GpuTimeline, cell: str, name: str, enqueue: float | None,
                         t: Thresholds) -> Finding | None:
    """A launch-bound finding from a GPU timeline, or None below the threshold (records and traces alike)."""
    step, idle = g.step_time_s, (g.idle_breakdown_s or {}).get("launch")
    if not step or idle is None or idle / step < t.launch_idle_share:
        return None
    return Finding("launch_bound", [cell], f"{name}: {launch_bound_text(g, enqueue)}",
                   {"gpu_idle_launch_s": idle, "step_s": step, "gpu_busy_s": g.gpu_busy_s,
                    "launches_per_step": g.launches_per_step, "host_enqueue_s": enqueue}, LAUNCH_ADVICE)


def launch_bound(records: list[Record], t: Thresholds) -> list[Finding]:
    out = []
    for r in ok(records):
        g = gpu_of(r)
        f = launch_bound_finding(g, r.cell_id, label(r), enqueue_s(r), t) if g else None
        if f is None or g is None:
            continue
        if r.clock != "cuda-events":
            f.sentence += ("; this record's steps were timed with a host sync after each one (before benchbench "
                           "timed with CUDA events), which adds idle time of its own: re-run for the exact share")
        for axis in ("compile", "batch_size"):
            v = verifier(records, r, axis, "any")
            if v and (f.verified_by is None or v["speedup"] > f.verified_by["speedup"]):
                f.verified_by = v
        v = f.verified_by
        if v:
            og = gpu_of(next(o for o in ok(records) if o.cell_id == v["cell_id"]))
            extra = ""
            if og and og.gpu_idle_fraction is not None and g.gpu_idle_fraction is not None:
                extra = f", GPU idle {g.gpu_idle_fraction:.0%} -> {og.gpu_idle_fraction:.0%}"
            f.suggestion = f"{v['axis']} {v['from']} -> {v['to']} measured: {effect_text(v)}{extra}"
        out.append(f)
    return out


def sync_text(g: GpuTimeline) -> str | None:
    syncs = g.host_syncs
    if not syncs:
        return None
    parts = []
    for s in syncs[:3]:
        cause = sync_cause(s)
        step = g.step_time_s or g.profiled_step_s
        share = f" ({s.gpu_idle_after_s_per_step / step:.0%} of the step)" if step else ""
        if s.where:  # the user's own line, from the trace's Python stacks
            parts.append(f"{s.where} waits for the GPU {s.per_step:.0f}x per step ({s.op} -> {s.call}"
                         + (f": {cause}" if cause else "") + f"): host blocked {_ms(s.wait_s_per_step)}, then the "
                         f"drained GPU idle {_ms(s.gpu_idle_after_s_per_step)}{share}")
            continue
        parts.append(f"{s.per_step:.0f}x {s.call} from {s.op} in {s.phase}"
                     + (f" ({cause})" if cause else "")
                     + f", host blocked {_ms(s.wait_s_per_step)} per step"
                     + f", then the drained GPU sat idle {_ms(s.gpu_idle_after_s_per_step)} until the host launched "
                       "again")
    total = sum(s.per_step for s in syncs)
    return f"{total:.0f} host sync(s) per step inside the training step: " + "; ".join(parts)


SYNC_ADVICE = "keep values on the device (a fused optimizer for GradScaler; log losses every N steps)"


def host_sync_finding(g: GpuTimeline, cell: str, name: str, suggestion: str = SYNC_ADVICE) -> Finding | None:
    """The host syncs inside a step, named, from a GPU timeline (records and traces alike)."""
    txt = sync_text(g)
    if not txt:
        return None
    return Finding("host_sync", [cell], f"{name}: {txt}", {"host_syncs": [s.model_dump() for s in g.host_syncs]},
                   sync_advice(g, suggestion))


def host_sync(records: list[Record], t: Thresholds) -> list[Finding]:
    out = []
    for r in ok(records):
        g = gpu_of(r)
        if not g:
            continue
        p = r.params
        scaler = p.get("amp") == "fp16" and not str(p.get("optimizer", "")).endswith("-fused")
        advice = ("a fused optimizer (optimizer: adamw-fused) keeps GradScaler's check on the device" if scaler
                  else "keep the value on the device, or read it once every N steps")
        f = host_sync_finding(g, r.cell_id, label(r), advice)
        if f is None:
            continue
        if scaler and any(s.phase == "optimizer" for s in g.host_syncs):
            f.sentence += ("; with amp=fp16 this is GradScaler.step checking for inf/NaN gradients, which it must "
                           "read on the host unless the optimizer is fused")
        f.verified_by = verifier(records, r, "optimizer", "any")
        v = f.verified_by
        if v:
            f.suggestion = f"optimizer {v['from']} -> {v['to']} measured: {effect_text(v)}"
        out.append(f)
    return out


def _busy_parts(g: GpuTimeline) -> tuple[dict[str, float], dict[str, float]]:
    mods = {k: v.total for k, v in g.gpu_modules_s.items() if "." not in k}
    return dict(g.gpu_phases_s), mods


def timeline_delta(slow: Record, fast: Record) -> tuple[str, dict[str, Any]] | None:
    """A step-time difference split into GPU busy (by phase and module), idle and data wait."""
    gs, gf = gpu_of(slow), gpu_of(fast)
    if not gs or not gf or gs.gpu_idle_s is None or gf.gpu_idle_s is None:
        return None
    d_step = step_s(slow) - step_s(fast)
    d_busy = gs.gpu_busy_s - gf.gpu_busy_s
    d_idle = gs.gpu_idle_s - gf.gpu_idle_s
    ps, ms = _busy_parts(gs)
    pf, mf = _busy_parts(gf)
    d_mod = {k: ms.get(k, 0.0) - mf.get(k, 0.0) for k in set(ms) | set(mf)}
    d_ph = {k: ps.get(k, 0.0) - pf.get(k, 0.0) for k in set(ps) | set(pf)}
    top_mod = sorted(d_mod.items(), key=lambda kv: -abs(kv[1]))[:2]
    top_ph = sorted(d_ph.items(), key=lambda kv: -abs(kv[1]))[:2]
    txt = (f"{d_step * 1e3:+.1f} ms/step = GPU busy {d_busy * 1e3:+.1f} ms ("
           + ", ".join(f"{k} {v * 1e3:+.1f}" for k, v in top_mod) + "; "
           + ", ".join(f"{k} {v * 1e3:+.1f}" for k, v in top_ph) + f") and GPU idle {d_idle * 1e3:+.1f} ms "
           f"({gf.gpu_idle_s * 1e3:.1f} -> {gs.gpu_idle_s * 1e3:.1f} ms)")
    if d_busy > 0 and d_idle < 0:
        txt += (f": {-d_idle / d_busy:.0%} of the extra GPU work filled time the faster cell's GPU spent idle, "
                "waiting for the host")
    return txt, {"delta_step_s": d_step, "delta_busy_s": d_busy, "delta_idle_s": d_idle,
                 "delta_modules_s": d_mod, "delta_phases_s": d_ph}
