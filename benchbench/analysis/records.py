"""What every analysis reads from a result record, written once (through `Measurement`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from benchbench.measurement import Measurement


@dataclass(frozen=True)
class Thresholds:
    dominant_module_share: float = 0.5  # a module taking >= half the step
    pair_min_ratio: float = 1.3  # pairwise deltas reported when one cell is >= 1.3x slower
    input_bound_share: float = 0.10  # data wait >= 10% of the step
    low_utilization: float = 0.30  # achieved / calibrated peak below 30%
    layout_share: float = 0.05  # copy / layout ops >= 5% of op time
    small_speedup: float = 1.10  # AMP / compile speedups below 1.1x get a reason
    batch_plateau_gain: float = 0.10  # < 10% more throughput for the next batch size
    launch_idle_share: float = 0.10  # GPU idle >= 10% of the timed step waiting for launches
    max_pairs: int = 12  # cap on pairwise findings per report


THRESHOLDS = Thresholds()

AXES = ("arch", "encoder", "decoder_channels", "resolution", "batch_size", "amp", "num_workers", "pin_memory",
        "channels_last", "compile", "optimizer", "loss", "data", "prefetch_factor", "persistent_workers", "world_size",
        "seed")


@dataclass
class Finding:
    kind: str
    cells: list[str]
    sentence: str
    evidence: dict[str, Any]
    suggestion: str | None = None
    verified_by: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ok(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if Measurement(r).ok]


def throughput(r: dict[str, Any]) -> float:
    """Images per second of an ok record (per run, median over runs: `Measurement.throughput`)."""
    return float(Measurement(r).throughput or 0.0)


def label(r: dict[str, Any]) -> str:
    return r.get("label") or r["cell_id"]


def run_cv(records: list[dict[str, Any]]) -> tuple[float, str]:
    """This run's run-to-run CV: measured between repeats when the records have them, else the one assumed
    for the device (gate_stats.ASSUMED_RUN_CV)."""
    import statistics

    from benchbench.analysis.gate_stats import ASSUMED_RUN_CV

    cvs = [cv for r in records if (cv := Measurement(r).between_run_cv) is not None]
    if cvs:
        return float(statistics.median(cvs)), f"measured between {len(cvs)} cells' repeats"
    device = next((str(r.get("params", {}).get("device")) for r in records), "cpu")
    return ASSUMED_RUN_CV.get(device, ASSUMED_RUN_CV["cpu"]), "assumed: one run a cell"


def diff_axes(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [k for k in AXES if a["params"].get(k) != b["params"].get(k)]


def step_s(r: dict[str, Any]) -> float:
    return Measurement(r).median


def images_per_step(r: dict[str, Any]) -> int:
    return Measurement(r).images_per_step


def per_image(r: dict[str, Any]) -> float:
    return Measurement(r).per_image_s


def _lt(a: Any, b: Any) -> bool:
    try:
        return a is not None and b is not None and a < b
    except TypeError:
        return False


def verifier(records: list[dict[str, Any]], r: dict[str, Any], axis: str, better: str) -> dict[str, Any] | None:
    """A cell that differs from r only in `axis` and is faster: the measured effect of the advice."""
    best = None
    for o in ok(records):
        if o is r or diff_axes(r, o) != [axis]:
            continue
        if better == "lower" and not _lt(o["params"][axis], r["params"][axis]):
            continue
        speed = per_image(r) / per_image(o)
        if speed > 1 and (best is None or speed > best["speedup"]):
            best = {"cell_id": o["cell_id"], "label": label(o), "axis": axis,
                    "from": r["params"][axis], "to": o["params"][axis], "speedup": speed}
    return best


def groups_along(records: list[dict[str, Any]], axis: str) -> list[list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in ok(records):
        key = repr([(k, r["params"].get(k)) for k in AXES if k != axis])
        groups.setdefault(key, []).append(r)
    return [g for g in groups.values() if len({repr(r["params"].get(axis)) for r in g}) >= 2]


def breakdown_deltas(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """Where a step-time difference went: phase, top-level module, operator and (on a GPU) busy/idle
    deltas between two breakdowns. Used by compare (baseline -> candidate) and history (night before
    a change -> first night after)."""
    if not before or not after:
        return {}
    from benchbench.timeline.names import short_op

    out: dict[str, Any] = {}
    pb, pa = before.get("phases") or {}, after.get("phases") or {}
    out["phase_deltas_s"] = {k: pa.get(k, 0.0) - pb.get(k, 0.0) for k in set(pa) | set(pb)}
    mb, ma = before.get("modules") or {}, after.get("modules") or {}

    def total(m: dict[str, Any], k: str) -> float:
        return sum((m.get(k) or {}).get(x, 0.0) for x in ("forward", "backward"))

    out["module_deltas_s"] = {k: total(ma, k) - total(mb, k) for k in set(ma) | set(mb) if "." not in k}
    ob = {short_op(o["name"]): o["self_time_s"] for o in before.get("top_ops") or []}
    oa = {short_op(o["name"]): o["self_time_s"] for o in after.get("top_ops") or []}
    ops = sorted(((oa.get(n, 0.0) - ob.get(n, 0.0), n) for n in set(oa) | set(ob)), reverse=True)
    out["top_op_deltas_s"] = {n: d for d, n in ops[:5]}
    gb, ga = before.get("gpu") or {}, after.get("gpu") or {}
    if gb and ga:
        out["gpu_busy_delta_s"] = (ga.get("gpu_busy_s") or 0.0) - (gb.get("gpu_busy_s") or 0.0)
        out["gpu_idle_delta_s"] = (ga.get("gpu_idle_s") or 0.0) - (gb.get("gpu_idle_s") or 0.0)
    return out
