"""Statistics of raw samples, and a run's throughput: derived from the samples, never stored instead of them.

In the spirit of torch.utils.benchmark's `Measurement`: the raw samples are kept and every statistic is
computed from them, so nothing is averaged away early and no reader re-derives a figure its own way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def summarize(samples: list[float]) -> dict[str, Any]:
    """Median, p10/p90, IQR, CV, mean, min, max and the samples themselves."""
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        return {"median": None, "p10": None, "p90": None, "iqr": None, "cv": None, "mean": None,
                "min": None, "max": None, "n": 0, "samples": []}
    mean = float(a.mean())
    q10, q25, q50, q75, q90 = np.percentile(a, [10, 25, 50, 75, 90])
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return {
        "median": float(q50), "p10": float(q10), "p90": float(q90), "iqr": float(q75 - q25),
        "cv": std / mean if mean > 0 else math.nan, "mean": mean, "min": float(a.min()), "max": float(a.max()),
        "n": int(a.size), "samples": [float(s) for s in a],
    }


def throughput(images_per_step: int, step_samples: list[float], clock: str = "perf_counter",
               block_wall_s: float | None = None) -> float | None:
    """Images per second. On CUDA over the timed block's wall time (what training sees);
    on a CPU over the median step."""
    if clock == "cuda-events" and block_wall_s:
        return images_per_step * len(step_samples) / block_wall_s
    med = float(np.median(step_samples)) if step_samples else 0.0
    return images_per_step / med if med > 0 else None


def clean_nans(obj: Any) -> Any:
    """JSON has no NaN; a statistic that does not exist is null."""
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: clean_nans(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clean_nans(v) for v in obj]
    return obj
