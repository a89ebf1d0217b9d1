"""Whether two sets of runs had the same host under them: the fixed host work every cell times as its block ends
(`measure.host_speed`), set side against side.

A fingerprint names the machine's parts, not its speed. On the lent H200 (`results/gpu/h200-20261204b`) a CPU
thread ran in one of two states about 2x apart (torch op dispatch 1.1 or 2.0-2.5 µs, a Python loop 38 or 70-80
ns an iteration), for whole leases or switching within 10 ms; a launch-bound step followed it (40.4 and 43.6 ms in
one lease, 48.3 and 58.3 ms across two) while the GPU's busy time stayed at 32.2-32.4 ms. This 2-core VM does the
same: 1.0 or 1.8 µs a dispatch, the slow state in 1 of 12 bare processes and 7 of 24 probes taken after a burst
of matmuls (whatever the wait after it: 0 to 0.3 s). So one probe is a moment of a host that switches: a side
needs several runs, and the sides' ranges must be apart, before a change is said. A GPU-bound step does not
move with the host. This module says when the host moved between the sides, by how much, and what the cell's own
figures say (the GPU's busy time flat while its wait on the host grew is the host's signature). It never changes
a verdict: a code change and a host change can come together, and only runs on one host can separate them.
"""

from __future__ import annotations

import statistics
from typing import Any

from benchbench.record import Record

#: the sides' median dispatch times this far apart, and no run of one side inside the other's range, is a host
#: that moved: within one state the probe's spread is ~3-5% (this VM's fast state: 0.98-1.07 µs), between the two
#: states ~2x
HOST_CHANGE = 0.10
#: probes a side needs: with the slow state in ~30% of this VM's probes, an A/A pair of one run a side reads the
#: two states ~40% of the time; three a side, all of one side in one state and all the other's in the other, ~2%
MIN_RUNS = 3
#: a probe whose blocks spread wider than this (max / min, either workload) caught the host changing speed
#: while it was timed (seen on the H200: a Python loop at 38 ns an iteration for 4 blocks, then 64-79)
UNSTEADY = 1.25


def probes(recs: list[Record]) -> list[dict[str, Any]]:
    """Each run's host figures, where it timed them (`trackers.host_speed`)."""
    return [p for r in recs if (p := (r.trackers or {}).get("host_speed")) and p.get("dispatch_us")]


def unsteady(p: dict[str, Any]) -> bool:
    """Whether one probe's blocks say the host changed speed while it was being timed."""
    return any(len(bl) > 1 and min(bl) > 0 and max(bl) / min(bl) > UNSTEADY
               for bl in (p.get("dispatch_blocks_us") or [], p.get("python_blocks_ns") or []))


def stored(p: dict[str, Any]) -> dict[str, Any]:
    """What a store keeps of a probe: its two figures and whether it saw the host change speed."""
    return {"dispatch_us": p["dispatch_us"], "python_ns": p["python_ns"], "unsteady": unsteady(p)}


def side_speed(ps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A side's host from its runs' probes: the median of each run's dispatch (µs an op) and Python (ns an
    iteration), the range of the dispatch figures, and how many probes caught the host changing speed."""
    if not ps:
        return None
    d = [p["dispatch_us"] for p in ps]
    return {"dispatch_us": statistics.median(d), "python_ns": statistics.median(p["python_ns"] for p in ps),
            "dispatch_range_us": [min(d), max(d)], "runs": len(ps),
            "unsteady": sum(bool(p["unsteady"]) if "unsteady" in p else unsteady(p) for p in ps)}


def moved(before: list[dict[str, Any]], after: list[dict[str, Any]], where: str = "in the candidate's runs"
          ) -> dict[str, Any] | None:
    """The host's change from one set of probes to another, when both sides have MIN_RUNS and it moved
    (HOST_CHANGE, ranges apart): the ratios (after / before) and a sentence."""
    b, c = side_speed(before), side_speed(after)
    if b is None or c is None or min(b["runs"], c["runs"]) < MIN_RUNS:
        return None
    d = c["dispatch_us"] / b["dispatch_us"]
    py = c["python_ns"] / b["python_ns"]
    (b_lo, b_hi), (c_lo, c_hi) = b["dispatch_range_us"], c["dispatch_range_us"]
    if abs(d - 1) < HOST_CHANGE or (c_lo <= b_hi and b_lo <= c_hi):
        return None
    way = "slower" if d > 1 else "faster"
    text = (f"the host ran benchbench's fixed host work {max(d, 1 / d):.2f}x {way} {where} "
            f"(torch op dispatch {b['dispatch_us']:.2f} -> {c['dispatch_us']:.2f} µs, Python loop "
            f"{b['python_ns']:.0f} -> {c['python_ns']:.0f} ns; {b['runs']} and {c['runs']} run(s)")
    shaky = b["unsteady"] + c["unsteady"]
    text += f"; {shaky} probe(s) saw the host change speed while timed)" if shaky else ")"
    return {"dispatch_ratio": d, "python_ratio": py, "baseline": b, "candidate": c, "text": text}


#: what a host change means for a comparison, said after the figures
MEANING = (": the machine's speed changed under the same fingerprint, so a host-bound step's difference may be the "
           "host's, not the code's — compare runs made on one host")


def host_change(base: list[Record], cand: list[Record]) -> dict[str, Any] | None:
    """The host's change from baseline to candidate (`moved`), with the cell's own GPU figures beside it."""
    out = moved(probes(base), probes(cand))
    if out is None:
        return None
    gpu = _gpu_split(base, cand)
    out["text"] += ("; " + gpu if gpu else "") + MEANING
    return out


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
