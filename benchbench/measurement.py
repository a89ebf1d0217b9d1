"""A cell's measurement: its raw samples and its work per step, statistics derived from them.

In the spirit of torch.utils.benchmark's `Measurement`: the object owns the raw
step samples and derives every statistic, so no consumer re-derives images per
step or throughput its own way. It wraps the JSONL record (benchbench.result/1)
rather than replacing it, so every result file ever written still loads, and
`to_record()` gives back a record with the derived fields filled in.

Work per step = the batch that really ran (after an OOM back-off, not the one
asked for) x world size (every rank trains a batch).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

SCHEMA = "benchbench.result/1"
STATUSES = ("ok", "oom", "error", "timeout", "skipped")
REQUIRED = ("schema", "suite", "run_id", "cell_id", "params", "status")


def base_record(suite: str, run_id: str, cell_id: str, label: str, params: dict[str, Any]) -> dict[str, Any]:
    """Every field consumers rely on, present (possibly null) whatever the status."""
    return {
        "schema": SCHEMA,
        "suite": suite,
        "run_id": run_id,
        "cell_id": cell_id,
        "label": label,
        "params": params,
        "status": "error",
        "error": None,
        "throughput_img_s": None,
        "step_time_s": None,
        "data_wait_s": None,
        "warmup": None,
        "params_count": None,
        "memory": None,
        "env": None,
        "started_at": None,
        "wall_s": None,
    }


def clean_nans(obj: Any) -> Any:
    """JSON has no NaN; a statistic that does not exist is null."""
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: clean_nans(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clean_nans(v) for v in obj]
    return obj


def record_key(r: dict[str, Any]) -> str:
    """A record's identity (run, cell, repeat, start): the same record read twice has the same key."""
    blob = json.dumps([r.get("run_id"), r["cell_id"], r.get("repeat"), r.get("started_at")], sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()


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


@dataclass(frozen=True)
class Run:
    """One process's timed block: the unit of throughput and of the gate.

    A run owns its samples, its work per step and its clock; its throughput is
    derived from those alone (on CUDA from its own block wall time). Pooling the
    samples of several runs and dividing by one run's wall time would count N runs
    of steps against one run's time: N times the throughput.
    """

    samples: tuple[float, ...]
    images_per_step: int
    clock: str = "perf_counter"
    block_wall_s: float | None = None
    run_id: str | None = None
    repeat: int | None = None

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def throughput(self) -> float | None:
        return throughput(self.images_per_step, list(self.samples), self.clock, self.block_wall_s)

    def to_dict(self) -> dict[str, Any]:
        return {"samples": list(self.samples), "images_per_step": self.images_per_step, "clock": self.clock,
                "block_wall_s": self.block_wall_s, "run_id": self.run_id, "repeat": self.repeat,
                "median_s": self.median, "throughput_img_s": self.throughput}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Run:
        return cls(tuple(float(x) for x in d["samples"]), int(d["images_per_step"]), str(d.get("clock") or
                   "perf_counter"), d.get("block_wall_s"), d.get("run_id"), d.get("repeat"))


@dataclass(frozen=True)
class Measurement:
    """A cell's record read through one type: ok, runs, statistics and throughput derive here.

    A single run's record is one `Run`; a merged record (`Measurement.merge`) keeps
    every run in `repeats.runs`, so its throughput is the median of the runs' own
    throughputs and its spread between runs is known.
    """

    record: dict[str, Any]

    @property
    def cell_id(self) -> str:
        return str(self.record["cell_id"])

    @property
    def label(self) -> str:
        return str(self.record.get("label") or self.record["cell_id"])

    @property
    def params(self) -> dict[str, Any]:
        return self.record.get("params") or {}

    @property
    def status(self) -> str:
        return str(self.record.get("status"))

    @property
    def ok(self) -> bool:
        """The one definition: status ok and a step time to show for it."""
        st = self.record.get("step_time_s")
        return self.status == "ok" and isinstance(st, dict) and (bool(st.get("samples")) or st.get("median") is not None)

    @property
    def samples(self) -> list[float]:
        return list((self.record.get("step_time_s") or {}).get("samples") or [])

    @property
    def batch_ran(self) -> int:
        ran = (self.record.get("oom_backoff") or {}).get("batch_size_ran")
        return int(ran or self.params.get("batch_size") or 1)

    @property
    def world_size(self) -> int:
        return int(self.params.get("world_size") or 1)

    @property
    def images_per_step(self) -> int:
        return self.batch_ran * self.world_size

    @cached_property
    def stats(self) -> dict[str, Any]:
        """From the samples when the record kept them; else the record's own summary (older files)."""
        if self.samples:
            return summarize(self.samples)
        return dict(self.record.get("step_time_s") or {})

    @property
    def median(self) -> float:
        return float(self.stats["median"])

    @property
    def per_image_s(self) -> float:
        return self.median / self.images_per_step

    @property
    def clock(self) -> str:
        return str((self.record.get("timing") or {}).get("clock") or "perf_counter")

    @cached_property
    def runs(self) -> tuple[Run, ...]:
        """Every run (process) behind this record: one, or those a merge kept."""
        kept = (self.record.get("repeats") or {}).get("runs")
        if kept:
            return tuple(Run.from_dict(d) for d in kept)
        if not self.ok or not self.samples:
            return ()
        t = self.record.get("timing") or {}
        return (Run(tuple(self.samples), self.images_per_step, self.clock, t.get("block_wall_s"),
                    self.record.get("run_id"), self.record.get("repeat")),)

    @property
    def run_medians(self) -> list[float]:
        return [r.median for r in self.runs]

    @property
    def between_run_cv(self) -> float | None:
        meds = self.run_medians
        if len(meds) < 2:
            return None
        return float(np.std(meds, ddof=1) / np.mean(meds))

    @property
    def throughput(self) -> float | None:
        """Images per second: each run's own (never pooled steps over one run's wall time), median over runs.
        Records without samples (older files) keep what they stored."""
        if not self.ok:
            return None
        tps = [t for r in self.runs if (t := r.throughput)]
        if tps:
            return float(np.median(tps))
        return self.record.get("throughput_img_s")

    @property
    def input_stall(self) -> dict[str, Any]:
        """What the input pipeline costs the device per step: on a GPU the time it sat idle waiting for
        a batch (the host runs ahead, so a wait shorter than the queued work stalls nothing); on a CPU
        the host's wait itself. Older CUDA records kept only the host wait: an upper bound, said so."""
        dw = self.record.get("data_wait_s") or {}
        starved = dw.get("gpu_starved_s")
        if starved:
            return {**starved, "basis": "GPU idle waiting for the batch", "host_wait": dw}
        basis = ("host wait (an upper bound: this CUDA record predates GPU-starvation timing)"
                 if self.clock == "cuda-events" or self.params.get("device") == "cuda" else "host wait")
        return {**dw, "basis": basis, "host_wait": dw}

    def to_record(self) -> dict[str, Any]:
        return {**self.record, "step_time_s": self.stats, "throughput_img_s": self.throughput}

    @classmethod
    def merge(cls, ms: list[Measurement]) -> Measurement:
        """One measurement from several of one cell (`--repeat`, `--resume`): every run kept in
        `repeats.runs`, samples pooled for the step-time summary, throughput per run."""
        runs = [run for m in ms for run in m.runs]
        merged = dict(ms[-1].record)
        pooled = [s for run in runs for s in run.samples]
        merged["step_time_s"] = summarize(pooled)
        # The last run's wall time describes one run, not the merge: the runs carry their own.
        merged["timing"] = {**(merged.get("timing") or {}), "block_wall_s": None}
        merged["repeats"] = {"n": len(runs), "runs": [r.to_dict() for r in runs],
                             "run_medians_s": [r.median for r in runs]}
        waits = [m.record["data_wait_s"] for m in ms if m.record.get("data_wait_s")]
        if waits:
            merged["data_wait_s"] = dict(waits[-1], fraction=sum(w.get("fraction") or 0 for w in waits) / len(waits))
        out = cls(merged)
        merged["repeats"]["between_run_cv"] = out.between_run_cv
        merged["throughput_img_s"] = out.throughput
        return out


def is_ok(record: dict[str, Any]) -> bool:
    return Measurement(record).ok


def merge(records: list[dict[str, Any]]) -> dict[str, Any]:
    """`Measurement.merge` for raw records (the results store's merge of repeats)."""
    return Measurement.merge([Measurement(r) for r in records]).record
