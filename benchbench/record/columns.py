"""How each part of a record shows: the summary table's columns, the history store's and the export's, declared
once beside the type, so every view is generated from the same declarations and none picks a field by hand.

A `Column` names what it reads (a function of the record), how it is formatted, whether it is dropped when no
row has it (GPU columns on a CPU report), and where else it goes: the history store (`history`: its SQL
column) and pytest-benchmark's `extra_info` (`export`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchbench.record.model import Record
from benchbench.record.state import cpu_degraded, gpu_state_label


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    get: Callable[[Record], Any]
    fmt: str = ""  # a format spec ("" = str); None shows as ""
    optional: bool = False  # left out of a table where every row is empty
    numeric: bool = True  # right-aligned
    history: str | None = None  # the history store's column of the same figure
    export: str | None = None  # pytest-benchmark's extra_info key

    def text(self, r: Record) -> str:
        v = self.get(r)
        if v is None or (isinstance(v, float) and v != v):
            return ""
        return format(v, self.fmt) if self.fmt else str(v)


def _ms(v: float | None) -> float | None:
    return v * 1e3 if v is not None else None


def _stat(r: Record, key: str) -> float | None:
    return r.stats.get(key) if r.ok else None


def _step_band(r: Record) -> str | None:
    if not r.ok:
        return None
    s = r.stats
    return f"{s['median'] * 1e3:.1f} [{s['p10'] * 1e3:.1f}-{s['p90'] * 1e3:.1f}]"


def _run_cv(r: Record) -> str | None:
    cv = r.between_run_cv
    if cv is None:
        return None
    return f"{cv:.1%}" + (f" ({len(r.runs)} runs)" if len(r.runs) > 1 else "")


def _contention(r: Record) -> str | None:
    return cpu_degraded(r.cpu_contention)


#: The summary table's measured columns, in order (the cell, its id, status and `vs ref` are the table's own).
SUMMARY: tuple[Column, ...] = (
    Column("img_s", "img/s", lambda r: r.throughput, ".2f", history="throughput_img_s", export="throughput_img_s"),
    Column("step_ms", "step ms median [p10-p90]", _step_band, numeric=False),
    Column("cv", "cv", lambda r: r.cv, ".1%", history="cv"),
    Column("run_cv", "run CV", _run_cv, optional=True),
    Column("data_wait", "data wait", lambda r: r.data_wait_s.fraction if r.data_wait_s else None, ".1%",
           history="data_wait_fraction", export="data_wait_fraction"),
    Column("gpu_starved", "GPU starved", lambda r: r.data_wait_s.gpu_starved_s.fraction
           if r.data_wait_s and r.data_wait_s.gpu_starved_s else None, ".1%", optional=True),
    Column("gpu_busy_ms", "GPU busy ms", lambda r: _ms(r.gpu.gpu_busy_s) if r.gpu else None, ".1f", optional=True),
    Column("gpu_idle", "GPU idle", lambda r: r.gpu.gpu_idle_fraction if r.gpu else None, ".0%", optional=True,
           history="gpu_idle_fraction"),
    Column("params_m", "params M", lambda r: r.params_count / 1e6 if r.params_count else None, ".2f"),
    Column("j_per_img", "J/img", lambda r: r.gpu_conditions.energy_j_per_image if r.gpu_conditions else None,
           ".3g", optional=True, history="energy_j_per_image"),
    Column("gpu_state", "GPU state", lambda r: gpu_state_label(r.gpu_conditions), optional=True, numeric=False),
    Column("cpu_state", "CPU state", _contention, optional=True, numeric=False),
)

#: What the history store keeps of each record beside its identity (SQL column -> the figure).
HISTORY: dict[str, Callable[[Record], Any]] = {
    "median_s": lambda r: _stat(r, "median"), "p10_s": lambda r: _stat(r, "p10"), "p90_s": lambda r: _stat(r, "p90"),
    "iqr_s": lambda r: _stat(r, "iqr"), "cv": lambda r: r.cv if r.ok else None, "mean_s": lambda r: _stat(r, "mean"),
    "min_s": lambda r: _stat(r, "min"), "max_s": lambda r: _stat(r, "max"), "n": lambda r: _stat(r, "n"),
    "throughput_img_s": lambda r: r.throughput,
    "data_wait_fraction": lambda r: r.data_wait_s.fraction if r.data_wait_s else None,
    "gpu_busy_s": lambda r: r.gpu.gpu_busy_s if r.gpu else None,
    "gpu_idle_fraction": lambda r: r.gpu.gpu_idle_fraction if r.gpu else None,
    "gpu_throttled": lambda r: None if r.gpu_conditions is None or r.gpu_conditions.throttled is None
    else int(r.gpu_conditions.throttled),
    "gpu_shared": lambda r: None if r.gpu_conditions is None or r.gpu_conditions.shared is None
    else int(r.gpu_conditions.shared),
    "energy_j_per_image": lambda r: r.gpu_conditions.energy_j_per_image if r.gpu_conditions else None,
}


def export_info(r: Record) -> dict[str, Any]:
    """pytest-benchmark's `extra_info` for a record: the columns that declare an export key."""
    return {c.export: c.get(r) for c in SUMMARY if c.export} | {
        "batch_size": r.batch_ran, "images_per_step": r.images_per_step, "params": r.params}
