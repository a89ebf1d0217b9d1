"""E-divisive means change-point detection (Matteson & James 2014), as MongoDB and Apache Otava use it.

Written here rather than imported: `signal-processing-algorithms` (MongoDB's)
pins Python 3.11 only, numpy < 2, gevent and setuptools < 71; `apache-otava`
pins numpy 2.2.0 and pulls BigQuery, Postgres and Slack clients. The algorithm
is forty lines:

- for every split tau of a series X (each side at least `min_size` points) the
  energy statistic  q(tau) = 2/(m k) sum|x_i - y_j| - 1/C(m,2) sum|x_i - x_i'|
  - 1/C(k,2) sum|y_j - y_j'|, weighted by m k / (m + k), measures how far the
  distributions before and after differ (means, and spread);
- the best split is kept if a permutation test (the series shuffled `permutations`
  times, the maximum q recomputed) gives p < `alpha`;
- then each side is searched again (binary segmentation) until no split is
  significant.

A significant split is reported as a change only when the means of the
segments on either side differ by at least `threshold` (Otava's minimum
magnitude): a real but tiny shift is not a regression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from benchbench.policy import GATE, HISTORY

MIN_SIZE = HISTORY.min_size
PERMUTATIONS = HISTORY.permutations  # smallest p-value: 1/400 = 0.0025
ALPHA = GATE.alpha  # the one alpha of every statistical decision (compare's 99% interval too)


def _q(d: np.ndarray, tau: int, lo: int, hi: int) -> float:
    """Weighted energy statistic of splitting x[lo:hi] before index tau (d: pairwise |x_i - x_j|)."""
    a, b = slice(lo, tau), slice(tau, hi)
    m, k = tau - lo, hi - tau
    between = d[a, b].sum() * 2 / (m * k)
    within_a = d[a, a].sum() / (m * (m - 1)) if m > 1 else 0.0  # sum counts each pair twice
    within_b = d[b, b].sum() / (k * (k - 1)) if k > 1 else 0.0
    return (m * k / (m + k)) * (between - within_a - within_b)


def best_split(x: np.ndarray, lo: int, hi: int, min_size: int) -> tuple[int | None, float]:
    d = np.abs(x[:, None] - x[None, :])
    best, best_q = None, -math.inf
    for tau in range(lo + min_size, hi - min_size + 1):
        q = _q(d, tau, lo, hi)
        if q > best_q:
            best, best_q = tau, q
    return best, best_q


@dataclass
class ChangePoint:
    index: int  # first point of the new regime
    p_value: float
    before_mean: float
    after_mean: float

    @property
    def ratio(self) -> float:
        return self.after_mean / self.before_mean


def e_divisive(values: list[float], min_size: int = MIN_SIZE, permutations: int = PERMUTATIONS,
               alpha: float = ALPHA, seed: int = 0) -> list[tuple[int, float]]:
    """(index where a new regime starts, permutation p-value), in order. Log space: ratios matter."""
    x = np.log(np.asarray(values, dtype=float))
    rng = np.random.default_rng(seed)
    found: list[tuple[int, float]] = []
    segments = [(0, len(x))]
    while segments:
        lo, hi = segments.pop()
        if hi - lo < 2 * min_size:
            continue
        tau, q = best_split(x, lo, hi, min_size)
        if tau is None:
            continue
        seg = x[lo:hi].copy()
        exceed = 0
        for _ in range(permutations):
            rng.shuffle(seg)
            if best_split(seg, 0, len(seg), min_size)[1] >= q:
                exceed += 1
        p = (exceed + 1) / (permutations + 1)
        if p < alpha:
            found.append((tau, p))
            segments += [(lo, tau), (tau, hi)]
    return sorted(found)


def changes(values: list[float], threshold: float, min_size: int = MIN_SIZE, permutations: int = PERMUTATIONS,
            alpha: float = ALPHA, seed: int = 0) -> list[ChangePoint]:
    """Significant splits whose neighbouring segments' geometric means differ by >= threshold."""
    found = e_divisive(values, min_size, permutations, alpha, seed)
    idx = [i for i, _ in found]
    bounds = [0, *idx, len(values)]
    out = []
    logs = np.log(np.asarray(values, dtype=float))
    for i, tau in enumerate(idx):
        before = float(np.exp(logs[bounds[i]:tau].mean()))
        after = float(np.exp(logs[tau:bounds[i + 2]].mean()))
        if abs(after / before - 1) >= threshold:
            out.append(ChangePoint(tau, found[i][1], before, after))
    return out
