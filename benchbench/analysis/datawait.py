"""What kind of data wait a cell has, before any advice is given.

A share of the step spent waiting says nothing about the cure. Four shapes need
four different answers:

- steady: every step waits about the same (too few workers, or slow decode);
- epoch boundary: most steps wait ~nothing and every Nth step waits long, N
  being the steps in an epoch: the DataLoader's prefetch queue drains when an
  epoch ends (persistent workers keep the processes, not the queue);
- start-up: only the first timed steps wait (workers still starting);
- irregular spikes: neither of the above (contention, I/O hiccups).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from benchbench.record import Record

SPIKE_FACTOR = 5.0  # a spike waits >= 5x the median wait ...
SPIKE_MIN_S = 2e-3  # ... and at least 2 ms more than it


@dataclass
class DataWaitShape:
    kind: str  # none | steady | epoch_boundary | startup | irregular
    steps: int
    median_s: float
    mean_s: float
    spikes: int
    spike_steps: list[int]
    spike_median_s: float | None
    spike_max_s: float | None
    period: int | None
    steps_per_epoch: int | None
    spike_share_of_wait: float  # of all waiting, how much is in spikes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def steps_per_epoch(record: Record) -> int | None:
    """From the record (the runner stores it), or from a generated data set's size."""
    n = record.data_wait_s.steps_per_epoch if record.data_wait_s else None
    if n:
        return int(n)
    p = record.params
    data = p.get("data") or {}
    if data.get("kind") == "synthetic-disk" and p.get("batch_size"):
        count = int(data.get("count", 64))
        bs = int(p["batch_size"]) * int(p.get("world_size") or 1)
        return max(1, count // bs) if count >= bs else 1
    return None


def characterize(samples: list[float], per_epoch: int | None = None) -> DataWaitShape:
    a = np.asarray(samples, dtype=float)
    if a.size == 0:
        return DataWaitShape("none", 0, 0.0, 0.0, 0, [], None, None, None, per_epoch, 0.0)
    med, mean = float(np.median(a)), float(a.mean())
    spike = (a >= SPIKE_FACTOR * med) & (a >= med + SPIKE_MIN_S)
    idx = [int(i) for i in np.flatnonzero(spike)]
    total = float(a.sum())
    share = float(a[spike].sum() / total) if total > 0 else 0.0
    sp_med = float(np.median(a[spike])) if idx else None
    sp_max = float(a[spike].max()) if idx else None
    period = None
    if len(idx) >= 2:
        gaps = np.diff(idx)
        vals, counts = np.unique(gaps, return_counts=True)
        common = int(vals[np.argmax(counts)])
        if np.all(gaps % common == 0):
            period = common
    if not idx:
        kind = "steady" if med > 0 else "none"
    elif period is not None and (per_epoch is None or period == per_epoch):
        kind = "epoch_boundary" if per_epoch == period else "periodic"
    elif len(idx) == 1 and per_epoch and a.size <= per_epoch + 1 and idx[0] in (0, per_epoch):
        kind = "epoch_boundary"
    elif all(i < 3 for i in idx):
        kind = "startup"
    else:
        kind = "irregular"
    return DataWaitShape(kind, int(a.size), med, mean, len(idx), idx, sp_med, sp_max, period, per_epoch, share)
