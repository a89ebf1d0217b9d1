"""`explain-trace`: the GPU timeline and its findings for any torch.profiler trace.

A benchbench trace (`run --trace`) or a user's own (`prof.step()` markers give
the steps) answers "why is my training loop slow?" without writing a suite.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchbench.analysis.findings.gpu import host_sync_finding, launch_bound_finding
from benchbench.analysis.records import THRESHOLDS, Finding, Thresholds
from benchbench.errors import BenchbenchError
from benchbench.record import Record
from benchbench.record.explain import Breakdown, GpuTimeline
from benchbench.timeline.gpu import as_breakdown, summarize_gpu
from benchbench.timeline.reader import read_timeline


def pick_record(records: list[Record], trace: Path) -> Record:
    """The record a trace belongs to: benchbench names traces by cell id."""
    ok = [r for r in records if r.ok]
    hits = [r for r in ok if r.cell_id in trace.name]
    if len(hits) >= 1:
        return hits[-1]
    if len(ok) == 1:
        return ok[0]
    raise BenchbenchError(f"cannot tell which of {len(ok)} records {trace.name} belongs to: its name holds no "
                          "cell id; give a results file with that one cell, or --step-time")


def with_trace(record: Record, trace: Path) -> Record:
    """The record with its breakdown rebuilt from its trace's GPU timeline (for records made before
    benchbench read the timeline itself, or traces taken apart from the run). A trace without
    device work (a CPU cell's) leaves the record as it is."""
    tl = read_timeline(trace)
    if not tl.has_gpu:
        return record
    g = summarize_gpu(tl, record.median, record.input_stall.median, "timed loop median")
    return record.model_copy(update={"breakdown": Breakdown.model_validate(as_breakdown(g.to_dict(), g.steps))})


def attach_traces(records: list[Record], folder: Path) -> list[Record]:
    """Records with a trace in `folder` (its name holds the cell id) get their breakdown from it."""
    if not folder.is_dir():
        raise BenchbenchError(f"--traces: no such folder: {folder}")
    files = sorted(folder.glob("*.json")) + sorted(folder.glob("*.json.gz"))
    out = []
    for r in records:
        hit = next((f for f in files if r.cell_id in f.name), None)
        out.append(with_trace(r, hit) if hit and r.ok else r)  # each trace parsed once
    return out


def trace_findings(g: GpuTimeline, name: str, enqueue_s: float | None = None,
                   t: Thresholds = THRESHOLDS) -> list[Finding]:
    out = [f for f in (launch_bound_finding(g, name, name, enqueue_s, t), host_sync_finding(g, name, name))
           if f is not None]
    busy = g.gpu_busy_s
    mods = {k: v.total for k, v in g.gpu_modules_s.items() if "." not in k}
    if mods and busy:
        k, v = max(mods.items(), key=lambda kv: kv[1])
        if v / busy >= t.dominant_module_share:
            out.append(Finding("dominant_module", [name], f"{name}: {k} takes {v / busy:.0%} of GPU busy time "
                               f"({v * 1e3:.1f} of {busy * 1e3:.1f} ms per step)", {"module": k, "share": v / busy}))
    if g.top_kernels and busy:
        top = g.top_kernels[:3]
        out.append(Finding("top_kernels", [name], f"{name}: the largest GPU time per step goes to "
                           + ", ".join(f"{x.name} {x.gpu_s * 1e3:.1f} ms ({(x.share or 0):.0%})" for x in top),
                           {"top_kernels": [x.model_dump() for x in top]}))
    return out


def explain_trace(path: Path, step_time_s: float | None = None,
                  records: list[Record] | None = None) -> dict[str, Any]:
    if step_time_s is not None and not (math.isfinite(step_time_s) and step_time_s > 0):
        raise BenchbenchError(f"--step-time must be a positive number of seconds, got {step_time_s}")
    tl = read_timeline(path)
    if not tl.has_gpu:
        raise BenchbenchError(f"{path} holds no device work (kernels, memcpy, memset): profile with "
                              "activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA] on a GPU")
    record = pick_record(records, path) if records else None
    source = "--step-time" if step_time_s else None
    data_wait = enqueue = None
    if record is not None:
        if step_time_s is None:
            step_time_s, source = record.median, f"record {record.cell_id} (timed median)"
        data_wait = record.input_stall.median
        enqueue = record.timing.host_enqueue_s.median if record.timing and record.timing.host_enqueue_s else None
    g = summarize_gpu(tl, step_time_s, data_wait, source).to_dict()
    name = record.label if record is not None else path.name
    notes = []
    if not step_time_s:
        notes.append("no step time given: GPU idle is unknown (the profiled step is stretched by the profiler); "
                     "pass --step-time SECONDS or --record RESULTS.jsonl")
    if g["harness_syncs_excluded"]:
        notes.append("excluded benchbench's own torch.cuda.synchronize() calls around the step (older profile pass): "
                     + ", ".join(f"{k} x{v}" for k, v in g["harness_syncs_excluded"].items()))
    for why, n in (tl.meta.get("dropped_events") or {}).items():
        notes.append(f"dropped {n} event(s) with {why}: they cannot be placed on the timeline")
    if tl.step_source == "whole trace":
        notes.append("no bb.step or ProfilerStep#N ranges: the whole trace is treated as one step "
                     "(call prof.step() once per training step)")
    findings = trace_findings(GpuTimeline.model_validate(g), name, enqueue)
    if record is not None:
        from benchbench.analysis.findings.inputs import data_wait

        findings += data_wait([record], THRESHOLDS)
    return {
        "trace": str(path), **g,
        "findings": [f.to_dict() for f in findings],
        "notes": notes,
        "device": ((tl.meta.get("deviceProperties") or [{}])[0]).get("name"),
    }
