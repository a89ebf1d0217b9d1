"""Two ways of running the same thing, alternated in rounds: the ratio of their figures, paired by round, with a
95% interval (Student's t on the log ratios: each round's drift falls on both sides of its pair)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any


def ratio_interval(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """(geometric-mean ratio a/b, 95% low, 95% high) over paired rounds."""
    from scipy import stats

    logs = [math.log(x / y) for x, y in zip(a, b, strict=True)]
    n = len(logs)
    mean = statistics.fmean(logs)
    half = float(stats.t.ppf(0.975, n - 1)) * statistics.stdev(logs) / math.sqrt(n) if n > 1 else math.nan
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def report(doc: dict[str, Any], out: str | None) -> None:
    print(json.dumps(doc, indent=1))
    if out:
        Path(out).write_text(json.dumps(doc, indent=1) + "\n")
