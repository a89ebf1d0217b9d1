"""Collective communication on the GPU, from a rank's trace: NCCL's kernels, their time, and how much of it no
compute kernel overlapped (Holistic Trace Analysis's communication/computation overlap, read from the same
timeline every GPU figure comes from).

An NCCL collective kernel runs from the moment its rank launched it until every rank has: a rank that arrives
early spends the wait inside the kernel. So across ranks, the same collective's shortest kernel is the rank that
arrived last (`record.ranks.Distributed` reads them side by side); within a rank, the collective time no compute
kernel ran beside is the communication its compute did not hide (the exposed part)."""

from __future__ import annotations

from typing import Any

from benchbench.timeline.reader import DeviceOp


def is_collective(d: DeviceOp) -> bool:
    return d.kind == "kernel" and "nccl" in d.name.lower()


def merge(intervals: list[tuple[float, float]]) -> tuple[float, list[tuple[float, float]]]:
    """The union of intervals: its length and its disjoint pieces, in order."""
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return sum(b - a for a, b in out), [(a, b) for a, b in out]


def _overlap(x: list[tuple[float, float]], y: list[tuple[float, float]]) -> float:
    i = j = 0
    total = 0.0
    while i < len(x) and j < len(y):
        lo, hi = max(x[i][0], y[j][0]), min(x[i][1], y[j][1])
        total += max(0.0, hi - lo)
        if x[i][1] < y[j][1]:
            i += 1
        else:
            j += 1
    return total


def comm_figures(work: list[DeviceOp]) -> dict[str, Any]:
    """One step's device work -> its collectives' time (their union), the part of it no compute kernel
    overlapped, and each collective kernel's duration in launch order (seconds)."""
    comm = sorted((d for d in work if is_collective(d)), key=lambda d: d.ts)
    if not comm:
        return {"comm_s": 0.0, "exposed_s": 0.0, "collectives_s": []}
    busy, pieces = merge([(d.ts, d.end) for d in comm])
    _, compute = merge([(d.ts, d.end) for d in work if d.kind == "kernel" and not is_collective(d)])
    return {"comm_s": busy * 1e-6, "exposed_s": (busy - _overlap(pieces, compute)) * 1e-6,
            "collectives_s": [d.dur * 1e-6 for d in comm]}
