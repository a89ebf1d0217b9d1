"""The scaling answer (`advise --attach --ranks 1,2 -- torchrun …`): the user's own DDP script run at each
process count, its throughput at each, and the efficiency lost from the smallest count to each larger one, in
parts that add up to it.

Each rank trains its own batch, so at N ranks a step trains N batches: throughput is N x batch / the mean step,
and the efficiency against n0 ranks is `step(n0) / step(N)`. The mean step is partitioned on each rank's own clock
(`record.ranks.Distributed.step_parts`: data wait, wait for the slowest rank, the all-reduce left exposed, host
code after backward, own compute); so the lost efficiency `1 - step(n0)/step(N)` is exactly the sum over parts of
`(part(N) - part(n0)) / step(N)` — each part's points of the loss, measured, nothing left to infer. The
per-rank batch is the same at every count (torchrun starts the same script): a batch too small for the device is
not one of the parts here, and the answer says so.
"""

from __future__ import annotations

import re
import statistics
from typing import Any

from benchbench.errors import BenchbenchError
from benchbench.record import Record
from benchbench.record.ranks import CAUSES

PARTS = {"compute": "own compute slower (forward and backward on cores the ranks share)",
         "exposed_allreduce": "the gradient all-reduce left exposed",
         "straggler_wait": "waiting for the slowest rank",
         "data": "data wait (the ranks' input pipelines share the CPU)",
         "host": "host code after backward (the optimizer step)"}
NPROC = re.compile(r"^--nproc[-_]per[-_]node(=(.*))?$")


def parse_ranks(text: str) -> list[int]:
    try:
        ns = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        ns = []
    if len(ns) < 2 or ns[0] < 1:
        raise BenchbenchError(f"--ranks takes two or more process counts, e.g. 1,2,4; got {text!r}")
    return ns


def with_nproc(command: list[str], n: int) -> list[str]:
    """The torchrun command with `--nproc-per-node n` (in place of the one given, which must be there)."""
    out, i, found = [], 0, False
    while i < len(command):
        m = NPROC.match(command[i]) if not found else None
        if m and m.group(1):
            out.append(f"{command[i].split('=', 1)[0]}={n}")
            found = True
        elif m:
            out += [command[i], str(n)]
            i += 1
            found = True
        else:
            out.append(command[i])
        i += 1
    if not found:
        raise BenchbenchError("--ranks sets torchrun's --nproc-per-node: give it in the command "
                              "(`torchrun --nproc-per-node 2 train.py …`)")
    return out


def scaling(points: dict[int, list[Record]]) -> dict[str, Any]:
    """{n: records} -> the answer: each count's throughput and step parts, and each larger count's efficiency
    and its loss in parts."""
    rows = {}
    for n, recs in sorted(points.items()):
        good = [r for r in recs if r.ok and r.distributed is not None and r.distributed.step_parts()]
        if not good:
            why = next((r.error for r in recs if r.error), "no rank kept a clock")
            raise BenchbenchError(f"{n} rank(s): not measured ({why})")
        parts = [r.distributed.step_parts() for r in good]
        mean = {k: statistics.fmean(p[k] for p in parts) for k in parts[0]}
        batch = int(good[0].params["batch_size"])
        tps = [n * batch / p["step"] for p in parts]
        s = [r.distributed.straggler() for r in good if r.distributed.world_size > 1]
        named = [x for x in s if x and x["named"]]
        threads = sorted(x.threads for r in good for x in r.distributed.ranks if x.threads)
        by_median = statistics.median(r.throughput for r in good if r.throughput)
        rows[n] = {"ranks": n, "runs": len(good), "batch_per_rank": batch, "step_s": mean["step"], "parts": mean,
                   # as a suite's DDP cell reports it: each step as long as its slowest rank, the median step
                   "throughput_median_step": by_median,
                   "threads_per_rank": threads[len(threads) // 2] if threads else None,
                   "throughput": n * batch / mean["step"], "throughput_runs": tps,
                   "straggler": (f"rank {named[0]['rank']}, {CAUSES[named[0]['cause']]}" if named else None)}
    n0 = min(rows)
    base = rows[n0]
    for n, row in rows.items():
        if n == n0:
            continue
        row["efficiency"] = base["step_s"] / row["step_s"]
        row["efficiency_median_step"] = row["throughput_median_step"] / (n / n0 * base["throughput_median_step"])
        row["lost"] = {k: (row["parts"][k] - base["parts"][k]) / row["step_s"] for k in PARTS}
        row["speedup"] = row["throughput"] / base["throughput"]
        row["ideal_speedup"] = n / n0
        if row["threads_per_rank"] != base["threads_per_rank"]:  # torchrun sets OMP_NUM_THREADS=1 past one rank
            row["threads_note"] = (f" (torch threads a rank: {base['threads_per_rank']} at {n0}, "
                                   f"{row['threads_per_rank']} at {n})")
    return {"base_ranks": n0, "rows": [rows[n] for n in sorted(rows)],
            "note": ("per-rank batch the same at every count (torchrun starts the same script): a batch too small "
                     "for the device is not a part of this loss")}


def sentence(row: dict[str, Any], n0: int) -> str:
    """`1 -> 2 ranks: 1.52x the throughput (76% efficient); the 24% lost: …` — the parts largest first."""
    lost = sorted(row["lost"].items(), key=lambda kv: -abs(kv[1]))
    parts = "; ".join(f"{PARTS[k]} {v * 100:+.1f} points" + (row.get("threads_note", "") if k == "compute" else "")
                      for k, v in lost)
    return (f"{n0} -> {row['ranks']} ranks: {row['speedup']:.2f}x the throughput of {n0} "
            f"(ideal {row['ideal_speedup']:g}x; {row['efficiency']:.0%} efficient); "
            f"the {1 - row['efficiency']:.0%} lost: {parts}"
            + (f"; straggler: {row['straggler']}" if row.get("straggler") else ""))
