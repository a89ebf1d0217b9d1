"""Whether two sets of runs had the same host under them: the fixed host work every cell times as its block ends
(`measure.host_speed`), set side against side.

A fingerprint names the machine's parts, not its speed: a lent machine's host (a VM's share of a CPU) can run the
same code a fifth slower from one lease to the next. A launch-bound or input-bound step moves with it, a GPU-bound
one does not. This module says when the host moved, by how much, and what the cell's own figures say about it
(the GPU's busy time unchanged while its idle grew is the host's signature); it never changes a verdict: a code
change and a host change can come together, and only the code's own runs on one host can separate them.
"""

from __future__ import annotations

import statistics
from typing import Any

from benchbench.record import Record

#: a side's median dispatch time beyond this ratio of the other's is a different host: the probe's own spread
#: across fresh processes on this 2-core VM is ~3% (median of 7 blocks; 12 processes), its rare outliers are
#: contended runs (`measure.contention` flags those), and the lease-to-lease change that prompted it was ~20%
HOST_CHANGE = 0.10


def _probes(recs: list[Record]) -> list[dict[str, Any]]:
    return [p for r in recs if (p := (r.trackers or {}).get("host_speed")) and p.get("dispatch_us")]


def side_speed(recs: list[Record]) -> dict[str, float] | None:
    """A side's host: the median over its runs of each run's dispatch (µs an op) and Python (ns an iteration)."""
    ps = _probes(recs)
    if not ps:
        return None
    return {"dispatch_us": statistics.median(p["dispatch_us"] for p in ps),
            "python_ns": statistics.median(p["python_ns"] for p in ps), "runs": len(ps)}


def host_change(base: list[Record], cand: list[Record]) -> dict[str, Any] | None:
    """The host's change from baseline to candidate, when both sides timed it and it moved beyond HOST_CHANGE:
    the ratios (candidate / baseline) and a sentence that sets the cell's own GPU figures beside them."""
    b, c = side_speed(base), side_speed(cand)
    if b is None or c is None:
        return None
    d = c["dispatch_us"] / b["dispatch_us"]
    py = c["python_ns"] / b["python_ns"]
    if abs(d - 1) < HOST_CHANGE:
        return None
    way = "slower" if d > 1 else "faster"
    text = (f"the host ran benchbench's fixed host work {max(d, 1 / d):.2f}x {way} in the candidate's runs "
            f"(torch op dispatch {b['dispatch_us']:.2f} -> {c['dispatch_us']:.2f} µs, Python loop "
            f"{b['python_ns']:.0f} -> {c['python_ns']:.0f} ns; {b['runs']} and {c['runs']} run(s))")
    gpu = _gpu_split(base, cand)
    if gpu:
        text += "; " + gpu
    text += (": the machine changed under the same fingerprint, so a host-bound step's difference may be the "
             "host's, not the code's — compare runs made on one host")
    return {"dispatch_ratio": d, "python_ratio": py, "baseline": b, "candidate": c, "text": text}


def _gpu_split(base: list[Record], cand: list[Record]) -> str | None:
    """The step's change split into the GPU's busy time and its idle, where both sides timed them."""
    def busy_idle(recs: list[Record]) -> tuple[float, float] | None:
        vals = [(g.gpu_busy_s, r.median - g.gpu_busy_s) for r in recs if r.ok and (g := r.gpu) is not None
                and g.gpu_busy_s and r.median]
        if not vals:
            return None
        return statistics.median(v[0] for v in vals), statistics.median(v[1] for v in vals)

    b, c = busy_idle(base), busy_idle(cand)
    if b is None or c is None:
        return None
    return (f"the GPU's busy time per step {b[0] * 1e3:.1f} -> {c[0] * 1e3:.1f} ms, the time it waited on the host "
            f"{b[1] * 1e3:.1f} -> {c[1] * 1e3:.1f} ms")
