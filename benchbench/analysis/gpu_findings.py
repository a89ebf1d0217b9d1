"""Findings read from the GPU's own timeline (a record's `breakdown.gpu`, or a trace).

Each says what was measured on the timeline (idle share, launches, syncs, busy
time by phase and module) and, when the suite has the cell, the measured effect
of the fix. Rules take the GPU summary dict, so `explain-trace` on a user's trace
and the report on a suite's records say the same things the same way.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from benchbench.analysis.datawait import characterize, steps_per_epoch
from benchbench.analysis.records import Finding, Thresholds, diff_axes, label, ok, per_image, step_s, verifier

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


def gpu_of(r: dict[str, Any]) -> dict[str, Any] | None:
    return ((r.get("breakdown") or {}).get("gpu")) or None


def _ms(x: float | None) -> str:
    return "?" if x is None else f"{x * 1e3:.1f} ms"


def enqueue_s(r: dict[str, Any]) -> float | None:
    return (((r.get("timing") or {}).get("host_enqueue_s")) or {}).get("median")


def launch_bound_text(g: dict[str, Any], enqueue: float | None = None) -> str | None:
    """The evidence sentence of a launch-bound step, or None if the GPU is not idle waiting for launches."""
    step, idle = g.get("step_time_s"), (g.get("idle_breakdown_s") or {}).get("launch")
    if not step or idle is None:
        return None
    txt = (f"the GPU is idle {idle / step:.0%} of a {_ms(step)} step ({_ms(idle)}) waiting for the host to launch "
           f"work: {g['launches_per_step']:.0f} launches per step ({g['kernels_per_step']:.0f} kernels) keep it busy "
           f"only {_ms(g['gpu_busy_s'])}")
    if enqueue:
        txt += f"; the host needs {_ms(enqueue)} to enqueue a step ({enqueue / step:.0%} of the step time)"
    return txt


def launch_bound(records: list[dict[str, Any]], t: Thresholds) -> list[Finding]:
    out = []
    for r in ok(records):
        g = gpu_of(r)
        if not g or not g.get("step_time_s"):
            continue
        idle = (g.get("idle_breakdown_s") or {}).get("launch", 0.0)
        if idle / g["step_time_s"] < t.launch_idle_share:
            continue
        enq = enqueue_s(r)
        verified = None
        for axis, better in (("compile", "any"), ("batch_size", "any")):
            v = verifier(records, r, axis, better)
            if v and (verified is None or v["speedup"] > verified["speedup"]):
                verified = v
        suggestion = "torch.compile (fewer, fused kernels), CUDA graphs, or a larger batch (more work per launch)"
        if verified:
            other = next(o for o in ok(records) if o["cell_id"] == verified["cell_id"])
            og = gpu_of(other)
            extra = ""
            if og and og.get("gpu_idle_fraction") is not None:
                extra = f", GPU idle {g['gpu_idle_fraction']:.0%} -> {og['gpu_idle_fraction']:.0%}"
            suggestion = (f"{verified['axis']} {verified['from']} -> {verified['to']} measured: "
                          f"{verified['speedup']:.2f}x faster per image{extra}")
        out.append(Finding("launch_bound", [r["cell_id"]], f"{label(r)}: {launch_bound_text(g, enq)}",
                           {"gpu_idle_launch_s": idle, "step_s": g["step_time_s"], "gpu_busy_s": g["gpu_busy_s"],
                            "launches_per_step": g["launches_per_step"], "host_enqueue_s": enq},
                           suggestion, verified))
    return out


def sync_text(g: dict[str, Any]) -> str | None:
    syncs = g.get("host_syncs") or []
    if not syncs:
        return None
    parts = []
    for s in syncs[:3]:
        cause = SYNC_CAUSES.get(s["op"], "")
        parts.append(f"{s['per_step']:.0f}x {s['call']} from {s['op']} in {s['phase']}"
                     + (f" ({cause})" if cause else "")
                     + f", host blocked {_ms(s.get('wait_s_per_step'))} per step")
    total = sum(s["per_step"] for s in syncs)
    return f"{total:.0f} host sync(s) per step inside the training step: " + "; ".join(parts)


def host_sync(records: list[dict[str, Any]], t: Thresholds) -> list[Finding]:
    out = []
    for r in ok(records):
        g = gpu_of(r)
        txt = sync_text(g) if g else None
        if not txt:
            continue
        assert g is not None
        p = r["params"]
        scaler = p.get("amp") == "fp16" and not str(p.get("optimizer", "")).endswith("-fused")
        if scaler and any(s["phase"] == "optimizer" for s in g["host_syncs"]):
            txt += ("; with amp=fp16 this is GradScaler.step checking for inf/NaN gradients, which it must read "
                    "on the host unless the optimizer is fused")
        verified = verifier(records, r, "optimizer", "any")
        suggestion = ("a fused optimizer (optimizer: adamw-fused) keeps GradScaler's check on the device" if scaler
                      else "keep the value on the device, or read it once every N steps")
        if verified:
            suggestion = (f"optimizer {verified['from']} -> {verified['to']} measured: {verified['speedup']:.2f}x "
                          f"faster per image")
        out.append(Finding("host_sync", [r["cell_id"]], f"{label(r)}: {txt}",
                           {"host_syncs": g["host_syncs"]}, suggestion, verified))
    return out


def data_wait(records: list[dict[str, Any]], t: Thresholds) -> list[Finding]:
    """Input-bound cells, with the shape of the wait deciding the advice."""
    out = []
    for r in ok(records):
        dw = r.get("data_wait_s") or {}
        frac = dw.get("fraction") or 0.0
        if frac < t.input_bound_share:
            continue
        # Older records kept only the median wait: one value, no shape to read.
        samples = dw.get("samples") or ([dw["median"]] if dw.get("median") is not None else [])
        shape = characterize(samples, steps_per_epoch(r))
        step = step_s(r)
        if shape.kind in ("epoch_boundary", "periodic") and shape.spike_median_s is not None:
            n_steps = len(samples)
            per_epoch = shape.period or shape.steps_per_epoch or 1
            extra = shape.spike_median_s - shape.median_s
            what = (f"every {per_epoch}th step, the first of each epoch "
                    f"({(r['params'].get('data') or {}).get('count', '?')} images / batch {r['params']['batch_size']})"
                    if shape.kind == "epoch_boundary" else f"every {per_epoch}th step")
            sentence = (f"{label(r)}: the data wait is {shape.median_s * 1e3:.1f} ms on {n_steps - shape.spikes} of "
                        f"{n_steps} steps and {shape.spike_median_s * 1e3:.0f} ms (up to {shape.spike_max_s * 1e3:.0f} ms) "
                        f"on {what}: {shape.spike_share_of_wait:.0%} of all waiting. The DataLoader's prefetch queue "
                        f"drains at each epoch boundary (persistent workers keep their processes, not the queue): "
                        f"{extra * 1e3:.0f} ms per epoch, {extra / (per_epoch * step + extra):.0%} of an epoch's "
                        f"time at {per_epoch} steps per epoch; between boundaries the pipeline keeps up")
            at_1000 = extra / (1000 * step + extra)
            suggestion = (f"not more workers: the steady-state wait is {shape.median_s * 1e3:.1f} ms. A data set with "
                          f"1000 steps per epoch amortises the boundary to {at_1000:.1%} of the time; for a small "
                          "one, iterate across epochs without a drain (a sampler that spans epochs) or generate "
                          "more images (data.count)")
            out.append(Finding("input_epoch_boundary", [r["cell_id"]], sentence,
                               {"data_wait_fraction": frac, **shape.to_dict(), "boundary_cost_s": extra},
                               suggestion))
            continue
        # The first fix that verifies, in the order a user would try them; synthetic data is the
        # ceiling (the model alone), cited apart rather than as a fix.
        verified = next((v for axis in ("num_workers", "pin_memory", "prefetch_factor", "resolution")
                         if (v := verifier(records, r, axis, "any"))), None)
        ceiling = verifier(records, r, "data", "any")
        kinds = {"steady": "every step waits about the same: the workers cannot keep up",
                 "startup": "only the first steps wait: worker start-up",
                 "irregular": f"{shape.spikes} irregular spikes (median {_ms(shape.spike_median_s)})"}
        suggestion = ("more DataLoader workers, cached/pre-decoded data or smaller source images"
                      if shape.kind == "steady" else
                      "persistent_workers and a longer warm-up" if shape.kind == "startup" else
                      "look for contention (other processes, I/O) around the spikes")
        if verified:
            suggestion = (f"{verified['axis']} {verified['from']} -> {verified['to']} measured: "
                          f"{verified['speedup']:.2f}x faster per image")
        if ceiling and ceiling["to"].get("kind") == "synthetic":
            suggestion += f" (the model alone, on synthetic data: {ceiling['speedup']:.2f}x)"
        out.append(Finding("input_bound", [r["cell_id"]],
                           f"{label(r)}: {frac:.0%} of each step waits for the input pipeline "
                           f"(median {shape.median_s * 1e3:.1f} ms, mean {shape.mean_s * 1e3:.1f} ms): "
                           f"{kinds.get(shape.kind, shape.kind)}",
                           {"data_wait_fraction": frac, **shape.to_dict()}, suggestion, verified))
    return out


def _busy_parts(g: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    mods = {k: v["forward"] + v["backward"] for k, v in (g.get("gpu_modules_s") or {}).items() if "." not in k}
    return dict(g.get("gpu_phases_s") or {}), mods


def timeline_delta(slow: dict[str, Any], fast: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """A step-time difference split into GPU busy (by phase and module), idle and data wait."""
    gs, gf = gpu_of(slow), gpu_of(fast)
    if not gs or not gf or gs.get("gpu_idle_s") is None or gf.get("gpu_idle_s") is None:
        return None
    d_step = step_s(slow) - step_s(fast)
    d_busy = gs["gpu_busy_s"] - gf["gpu_busy_s"]
    d_idle = gs["gpu_idle_s"] - gf["gpu_idle_s"]
    ps, ms = _busy_parts(gs)
    pf, mf = _busy_parts(gf)
    d_mod = {k: ms.get(k, 0.0) - mf.get(k, 0.0) for k in set(ms) | set(mf)}
    d_ph = {k: ps.get(k, 0.0) - pf.get(k, 0.0) for k in set(ps) | set(pf)}
    top_mod = sorted(d_mod.items(), key=lambda kv: -abs(kv[1]))[:2]
    top_ph = sorted(d_ph.items(), key=lambda kv: -abs(kv[1]))[:2]
    txt = (f"{d_step * 1e3:+.1f} ms/step = GPU busy {d_busy * 1e3:+.1f} ms ("
           + ", ".join(f"{k} {v * 1e3:+.1f}" for k, v in top_mod) + "; "
           + ", ".join(f"{k} {v * 1e3:+.1f}" for k, v in top_ph) + f") and GPU idle {d_idle * 1e3:+.1f} ms "
           f"({gf['gpu_idle_s'] * 1e3:.1f} -> {gs['gpu_idle_s'] * 1e3:.1f} ms)")
    if d_busy > 0 and d_idle < 0:
        txt += (f": {-d_idle / d_busy:.0%} of the extra GPU work filled time the faster cell's GPU spent idle, "
                "waiting for the host")
    return txt, {"delta_step_s": d_step, "delta_busy_s": d_busy, "delta_idle_s": d_idle,
                 "delta_modules_s": d_mod, "delta_phases_s": d_ph}


def amp_compile_gpu(records: list[dict[str, Any]], t: Thresholds) -> list[Finding]:
    """AMP / compile effects on a GPU, explained by the timeline when both cells have one."""
    out = []
    for a, b in combinations(ok(records), 2):
        d = diff_axes(a, b)
        if len(d) != 1 or d[0] not in ("amp", "compile") or a["params"].get("device") != "cuda":
            continue
        axis = d[0]
        base, var = (a, b) if a["params"][axis] in ("none", False) else (b, a)
        if base["params"][axis] not in ("none", False):
            continue
        speed = per_image(base) / per_image(var)
        gb, gv = gpu_of(base), gpu_of(var)
        if gb and gv:
            why = (f"GPU busy {_ms(gb['gpu_busy_s'])} -> {_ms(gv['gpu_busy_s'])}, kernels per step "
                   f"{gb['kernels_per_step']:.0f} -> {gv['kernels_per_step']:.0f}, GPU idle "
                   f"{(gb.get('gpu_idle_fraction') or 0):.0%} -> {(gv.get('gpu_idle_fraction') or 0):.0%}")
            syncs_b = sum(s["per_step"] for s in gb.get("host_syncs") or [])
            syncs_v = sum(s["per_step"] for s in gv.get("host_syncs") or [])
            if syncs_b != syncs_v:
                why += f", host syncs per step {syncs_b:.0f} -> {syncs_v:.0f}"
        else:
            cv_b, cv_v = (base["step_time_s"].get("cv") or 0), (var["step_time_s"].get("cv") or 0)
            why = (f"step {step_s(base) * 1e3:.1f} -> {step_s(var) * 1e3:.1f} ms, step-to-step CV "
                   f"{cv_b:.0%} -> {cv_v:.0%}; these records carry no GPU timeline to say why "
                   "(rerun with a current benchbench, or --trace and explain-trace)")
            if var["params"].get("amp") == "fp16" and speed < 1:
                why += ("; fp16 adds GradScaler, whose step reads found_inf on the host (one sync per step) "
                        "unless the optimizer is fused")
        out.append(Finding(f"{axis}_effect", [var["cell_id"], base["cell_id"]],
                           f"{axis}={var['params'][axis]} vs {base['params'][axis]} on {label(base)}: {speed:.2f}x; "
                           f"{why}", {"speedup": speed, "axis": axis}))
    return out
