"""Every rank of an attached DDP run (`attach -- torchrun --nproc-per-node N …`): each rank's own steps, and what
the ranks did to each other. A part of the record (`Record.distributed`; a suite's DDP cell keeps its ranks'
step times in `Record.ranks`), versioned on its own.

What each rank observed is kept as it was: its timed steps, its data wait, and per timed step its clock on the
node's one monotonic clock — `[start, data wait, backward start, last gradient, backward end, end]`. Everything
a reader wants is derived here, once, from those clocks:

- a step has one or two collectives: DDP's broadcast of rank 0's buffers as the forward starts (with
  `broadcast_buffers` and a model with buffers: BatchNorm's statistics), and the gradient all-reduce, which a
  rank **arrives** at when its last gradient is accumulated. Every rank leaves a collective together, so a later
  arrival is a longer way there. The **straggler** of a step is the rank that arrived last, by `lag` (against
  the median of the others'), at the collective where that lag is largest; its **cause** is the part of its way
  there that was longest against theirs — its data (the wait for its batch), its compute (forward, backward) or
  its host (the previous step's optimizer step, after its backward);
- each rank's **wait for the slowest** is the last arrival less its own; the **exposed all-reduce** is what is
  left of the backward after the last rank arrived (the communication backward's compute did not hide).

A rank named the straggler must be so in more steps than chance gives one of N ranks (a one-sided binomial test
at `STRAGGLER_P`) and by a lag worth stating (`STRAGGLER_SHARE` of the median step): two balanced ranks take
turns being last, and neither is named.
"""

from __future__ import annotations

import statistics
from typing import Any, Literal

from pydantic import Field

from benchbench.record.parts import Part

#: a straggler is named when it is last more often than chance (one-sided binomial test) at this level ...
STRAGGLER_P = 0.01
#: ... and its median lag is at least this share of the median step
STRAGGLER_SHARE = 0.05
CAUSES = {"data": "its data (the wait for its batch)", "compute": "its compute (forward and backward)",
          "host": "its host code after backward (optimizer step, logging)",
          "compute_or_host": "its compute or host code (a GPU trace's kernels do not tell which)"}
#: indexes into a clock row
START, WAIT, B0, GRAD, B1, END, S0, S1 = range(8)


class DDPSettings(Part):
    """DistributedDataParallel as the script built it (read from the object, never assumed)."""

    bucket_cap_mb: float | None = None
    find_unused_parameters: bool | None = None
    static_graph: bool | None = None
    gradient_as_bucket_view: bool | None = None
    broadcast_buffers: bool | None = None
    sync_batchnorm: int | None = None  # SyncBatchNorm layers in the model
    params: int | None = None  # parameters that require a gradient
    unused_params: int | None = None  # of them, those that got no gradient in any warm-up or timed step


class RankRun(Part):
    rank: int
    local_rank: int | None = None
    pid: int | None = None
    host: str | None = None
    #: ok; error: the script raised here first (the run's cause); broken: raised after another rank failed (its
    #: collective lost the peer); stopped: ended by torchrun or benchbench without a word of its own
    status: str
    error: str | None = None
    step_s: list[float] = Field(default_factory=list)  # its timed steps
    data_wait_s: list[float] = Field(default_factory=list)
    clock: list[list[float | None]] | None = None  # per timed step, on the node's clock (see the module's docstring)
    clock_note: str | None = None  # why there is no clock (a GPU rank)
    threads: int | None = None  # torch's intra-op threads in this rank
    cores: int | None = None  # the cores it may run on (its affinity)
    workers: int | None = None  # its training DataLoader's workers
    backend: str | None = None
    steps_seen: int = 0
    #: a GPU rank's NCCL collectives from its profiler window (`timeline.comm`): a step's, the part no compute
    #: kernel hid, and every collective kernel's duration in order
    gpu_comm_s: float | None = None
    gpu_comm_exposed_s: float | None = None
    gpu_collectives_s: list[float] | None = None

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.step_s) if self.step_s else None


class Straggle(Part):
    """One timed step: which rank arrived last at the all-reduce, by how much, and why."""

    step: int
    rank: int
    lag_s: float
    cause: str
    parts_s: dict[str, float]  # its data/compute/host against the median of the others' (seconds more)
    at: str  # the collective it was latest at: DDP's buffer broadcast (forward) or the gradient all-reduce


class Distributed(Part):
    version: Literal[1] = 1
    launcher: str  # torchrun
    world_size: int
    nproc_per_node: int | None = None
    ranks: list[RankRun]
    ddp: DDPSettings | None = None
    failed_first: int | None = None  # the rank that raised first: the run's error is its own

    # ------------------------------------------------------------------ derived from the clocks
    def clocks(self, least: int = 2) -> dict[int, list[list[Any]]] | None:
        """Each rank's clock rows, aligned step by step (every rank stops at the same step), where every rank of
        one host kept one (and there are at least `least` ranks to compare)."""
        rows = {r.rank: r.clock for r in self.ranks if r.clock}
        if len(rows) < least or len(rows) != len(self.ranks) or len({r.host for r in self.ranks}) > 1:
            return None
        n = min(len(v) for v in rows.values())
        return {k: v[:n] for k, v in rows.items()} if n else None

    def syncs(self, i: int) -> list[tuple[str, dict[int, float], dict[int, float], dict[str, dict[int, float]]]]:
        """Step i's collectives, in order, each as (name, each rank's arrival, each rank's leaving, each rank's way
        there by part): DDP's buffer broadcast at the forward's start (where the script's DDP has one), then the
        gradient all-reduce (arrival: the last gradient). Every rank leaves a collective together, so the way to
        the next one starts at one instant for all, and a later arrival is a longer way."""
        rows = self.clocks(1) or {}
        cur = {r: v[i] for r, v in rows.items()}
        prev = {r: v[i - 1] for r, v in rows.items()}
        host = {r: prev[r][END] - prev[r][B1] for r in rows}  # the previous step's optimizer, after its backward
        out = []
        if all(len(c) > S1 and c[S0] is not None for c in cur.values()):
            arrive = {r: c[S0] for r, c in cur.items()}
            out.append(("buffer broadcast", arrive, {r: c[S1] for r, c in cur.items()},
                        {"data": {r: c[WAIT] for r, c in cur.items()}, "host": host,
                         "compute": {r: c[S0] - c[START] - c[WAIT] for r, c in cur.items()}}))
            out.append(("gradient all-reduce", {r: c[GRAD] for r, c in cur.items()},
                        {r: c[B1] for r, c in cur.items()},
                        {"data": dict.fromkeys(cur, 0.0), "host": dict.fromkeys(cur, 0.0),
                         "compute": {r: c[GRAD] - c[S1] for r, c in cur.items()}}))
        else:
            out.append(("gradient all-reduce", {r: c[GRAD] for r, c in cur.items()},
                        {r: c[B1] for r, c in cur.items()},
                        {"data": {r: c[WAIT] for r, c in cur.items()}, "host": host,
                         "compute": {r: c[GRAD] - c[START] - c[WAIT] for r, c in cur.items()}}))
        return out

    def gpu_collectives(self) -> dict[int, list[float]] | None:
        """GPU ranks: each rank's NCCL collective kernels, aligned by order (every rank runs the same ones)."""
        got = {r.rank: r.gpu_collectives_s for r in self.ranks if r.gpu_collectives_s}
        if len(got) < 2 or len(got) != len(self.ranks):
            return None
        n = min(len(v) for v in got.values())
        return {k: v[:n] for k, v in got.items()} if n else None

    def _gpu_steps(self) -> list[Straggle]:
        """From the GPU ranks' collectives: a collective kernel lasts from its rank's launch until every rank
        has launched it, so the rank whose kernel is shortest arrived last, behind the others by their median
        duration less its own. Its cause is its data where its data wait exceeds the others' by half that lag;
        else its compute or host (the kernels alone do not tell which)."""
        cols = self.gpu_collectives()
        if cols is None:
            return []
        dw = {r.rank: statistics.median(r.data_wait_s) if r.data_wait_s else 0.0 for r in self.ranks}
        out = []
        for i in range(len(next(iter(cols.values())))):
            dur = {r: v[i] for r, v in cols.items()}
            last = min(dur, key=lambda r: dur[r])
            others = [r for r in dur if r != last]
            lag = statistics.median(dur[o] for o in others) - dur[last]
            data = dw[last] - statistics.median(dw[o] for o in others)
            parts = {"data": data, "compute": 0.0, "host": 0.0}
            out.append(Straggle(step=i, rank=last, lag_s=lag, cause="data" if data >= 0.5 * lag else
                                "compute_or_host", parts_s=parts, at="NCCL collective"))
        return out

    def steps(self) -> list[Straggle]:
        """Per timed step (from the second: the first has no previous step's host part), the rank the others
        waited for longest, at the collective where it was latest, and the part of its way there that was
        longest against the others' median. GPU ranks (no host clock): per collective kernel, from the
        profiler window's trace."""
        rows = self.clocks()
        if rows is None:
            return self._gpu_steps()
        out = []
        for i in range(1, len(next(iter(rows.values())))):
            best: Straggle | None = None
            for name, arrive, _, parts in self.syncs(i):
                last = max(arrive, key=lambda r: arrive[r])
                others = [r for r in arrive if r != last]
                lag = arrive[last] - statistics.median(arrive[o] for o in others)
                diff = {k: v[last] - statistics.median(v[o] for o in others) for k, v in parts.items()}
                if best is None or lag > best.lag_s:
                    best = Straggle(step=i, rank=last, lag_s=lag, cause=max(diff, key=lambda k: diff[k]),
                                    parts_s=diff, at=name)
            if best is not None:
                out.append(best)
        return out

    def straggler(self) -> dict[str, Any] | None:
        """The rank that is last more often than chance, by a lag worth stating, and its cause — or None."""
        steps = self.steps()
        if len(steps) < 5:
            return None
        from scipy.stats import binomtest

        counts: dict[int, int] = {}
        for s in steps:
            counts[s.rank] = counts.get(s.rank, 0) + 1
        rank = max(counts, key=lambda r: counts[r])
        mine = [s for s in steps if s.rank == rank]
        p = float(binomtest(counts[rank], len(steps), 1 / self.world_size, alternative="greater").pvalue)
        lag = statistics.median(s.lag_s for s in mine)
        step = self.median_step_s() or 0.0
        causes = {c: sum(1 for s in mine if s.cause == c) for c in CAUSES if any(s.cause == c for s in mine)}
        cause = max(causes, key=lambda c: causes[c])
        return {"rank": rank, "last_in": counts[rank], "steps": len(steps), "p_value": p, "lag_s": lag,
                "unit": "steps" if self.clocks() is not None else "collectives",
                "lag_share": lag / step if step else None, "cause": cause, "cause_steps": causes[cause],
                "at": statistics.mode(s.at for s in mine),
                "parts_s": {c: statistics.median(s.parts_s.get(c, 0.0) for s in mine) for c in ("data", "compute",
                                                                                                   "host")},
                "named": bool(p < STRAGGLER_P and step > 0 and lag >= STRAGGLER_SHARE * step)}

    def waits(self) -> dict[int, dict[str, float]]:
        """Per rank, medians over the timed steps: its wait for the last rank to arrive (at every collective of
        the step), and the all-reduce left exposed once the last rank's gradients were there. GPU ranks: per
        collective kernel, its duration less the shortest rank's (the wait inside it), and the rank's exposed
        collective time a step from its trace."""
        rows = self.clocks()
        if rows is None:
            cols = self.gpu_collectives()
            if cols is None:
                return {}
            n = len(next(iter(cols.values())))
            exposed = {r.rank: r.gpu_comm_exposed_s or 0.0 for r in self.ranks}
            return {r: {"wait_for_slowest_s": statistics.median(v[i] - min(c[i] for c in cols.values())
                                                                for i in range(n)),
                        "exposed_allreduce_s": exposed[r]} for r, v in cols.items()}
        n = len(next(iter(rows.values())))
        per: dict[int, dict[str, list[float]]] = {r: {"wait_for_slowest_s": [], "exposed_allreduce_s": []}
                                                   for r in rows}
        for i in range(1, n):
            waited = dict.fromkeys(rows, 0.0)
            for name, arrive, leave, _ in self.syncs(i):
                last = max(arrive.values())
                for r in rows:
                    waited[r] += last - arrive[r]
                    if name == "gradient all-reduce":
                        per[r]["exposed_allreduce_s"].append(max(0.0, leave[r] - last))
            for r in rows:
                per[r]["wait_for_slowest_s"].append(waited[r])
        return {r: {k: statistics.median(v) for k, v in d.items()} for r, d in per.items() if d["exposed_allreduce_s"]}

    def step_parts(self) -> dict[str, float] | None:
        """The mean step of a rank (over ranks and timed steps from the second), partitioned: its data wait, its
        wait for the slowest rank at the step's collectives, the all-reduce exposed after the last arrival, its
        host code after backward (the optimizer step), and the rest — its own compute (forward, backward,
        the code between). Means, so the parts add up to the mean step exactly. One rank's too (`--ranks 1`)."""
        rows = self.clocks(1)
        if rows is None:
            return None
        n = len(next(iter(rows.values())))
        acc = dict.fromkeys(("step", "data", "straggler_wait", "exposed_allreduce", "host", "compute"), 0.0)
        count = 0
        for i in range(1, n):
            syncs = self.syncs(i)
            for r, v in rows.items():
                c = v[i]
                waited = sum(max(a.values()) - a[r] for _, a, _, _ in syncs)
                last = max(syncs[-1][1].values())
                part = {"step": c[END] - c[START], "data": c[WAIT], "straggler_wait": waited,
                        "exposed_allreduce": max(0.0, c[B1] - last), "host": c[END] - c[B1]}
                part["compute"] = part["step"] - sum(part[k] for k in part if k != "step")
                for k, x in part.items():
                    acc[k] += x
                count += 1
        return {k: x / count for k, x in acc.items()} if count else None

    def exposed_allreduce_s(self) -> float | None:
        """The all-reduce backward did not hide: the median over ranks of each one's median exposed part (GPU
        ranks: the collective time no compute kernel overlapped, from each rank's trace)."""
        w = self.waits()
        if w:
            return statistics.median(x["exposed_allreduce_s"] for x in w.values())
        gpu = [r.gpu_comm_exposed_s for r in self.ranks if r.gpu_comm_exposed_s is not None]
        return statistics.median(gpu) if gpu else None

    def median_step_s(self) -> float | None:
        meds = [m for m in (r.median_s for r in self.ranks) if m is not None]
        return statistics.median(meds) if meds else None

    def oversubscribed(self) -> dict[str, Any] | None:
        """The node's ranks' threads and DataLoader workers against the cores they may use."""
        rs = [r for r in self.ranks if r.cores]
        if not rs:
            return None
        cores = max(r.cores or 0 for r in rs)
        want = sum((r.threads or 1) + (r.workers or 0) for r in rs)
        return {"cores": cores, "wanted": want, "ranks": len(rs), "oversubscribed": want > cores}

