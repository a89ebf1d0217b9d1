"""What every analysis reads from a result record, written once (through the typed `Record`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from benchbench.record import Record
from benchbench.record.explain import Breakdown


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
    optimizer_share: float = 0.25  # the optimizer step >= a quarter of a CPU step
    epoch_start_ratio: float = 1.5  # an attached script's epoch-starting steps >= 1.5x its other steps
    epoch_start_share: float = 0.05  # ... and their excess >= 5% of an epoch's time
    epoch_validation_share: float = 0.10  # validation >= 10% of an accounted epoch (`attach --epochs`)
    epoch_checkpoint_share: float = 0.03  # checkpointing >= 3% of it
    epoch_code_share: float = 0.05  # code between steps, or the epoch's start, >= 5% of it
    epoch_code_named: float = 0.10  # a function named in a finding: >= 10% of its part's time
    rank_exposed_share: float = 0.05  # the all-reduce left exposed after the last rank's gradients >= 5% of a step


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


def ok(records: list[Record]) -> list[Record]:
    return [r for r in records if r.ok]


def throughput(r: Record) -> float:
    """Images per second of an ok record (per run, median over runs: `Record.throughput`)."""
    return float(r.throughput or 0.0)


def label(r: Record) -> str:
    return r.label or r.cell_id


def run_cv(records: list[Record]) -> tuple[float, str]:
    """This run's run-to-run CV: measured between repeats when the records have them, else the one assumed
    for the device (gate_stats.ASSUMED_RUN_CV)."""
    import statistics

    from benchbench.analysis.gate_stats import ASSUMED_RUN_CV

    cvs = [cv for r in records if (cv := r.between_run_cv) is not None]
    if cvs:
        return float(statistics.median(cvs)), f"measured between {len(cvs)} cells' repeats"
    device = next((r.device for r in records), "cpu")
    return ASSUMED_RUN_CV.get(device, ASSUMED_RUN_CV["cpu"]), "assumed: one run a cell"


def median_se(r: Record) -> float:
    """The relative standard error of a cell's median step from its own spread: ~1.2533 CV / sqrt(n) steps.
    A cell whose steps vary 100% over 10 steps has a median uncertain by ~40%, whatever the run-to-run CV."""
    cv, n = r.cv, len(r.samples)
    return 1.2533 * cv / math.sqrt(n) if cv and n else 0.0


def noise(records: list[Record], *cells: Record) -> tuple[float, str]:
    """The noise a difference between `cells` must clear: the run-to-run CV (measured, or assumed for the
    device) and the cells' own step spread, together."""
    cv, basis = run_cv(records)
    se = max((median_se(r) for r in cells), default=0.0)
    if se > cv:
        return math.hypot(cv, se), f"{basis}; and the steps' own spread (median uncertain by {se:.0%})"
    return math.hypot(cv, se), basis


def resolved(records: list[Record], a: Record, b: Record) -> tuple[bool, int, float, str]:
    """Whether a and b differ per image beyond the noise of both: (resolved, runs a side that would resolve
    it, the CV used, its basis)."""
    from benchbench.analysis.gate_stats import resolution

    cv, basis = noise(records, a, b)
    ok_, needed = resolution(per_image(a) / per_image(b), cv, len(a.runs) or 1, len(b.runs) or 1)
    return ok_, needed, cv, basis


def model_name(r: Record) -> str:
    """`Unet/resnet18` for a cell; an attached model's class alone where no encoder name was seen."""
    enc = r.params.get("encoder")
    return f"{r.params.get('arch', 'model')}" + (f"/{enc}" if enc else "")


def axes_of(*records: Record) -> tuple[str, ...]:
    """The settings cells can differ in: the built-in ones, and a command suite's own axes (any name its command
    uses: `cache`, `threads`), each under its own name in the record's params."""
    own = [k for r in records for k in (r.params.get("axes") or {}) if k not in AXES]
    return AXES + tuple(dict.fromkeys(own))


def diff_axes(a: Record, b: Record) -> list[str]:
    """The settings two cells differ in: as observed, and a command suite's axes as set (a knob the script did
    not visibly take — `amp=true` where Ultralytics turns AMP off on a CPU — is still the one thing changed)."""
    xa, xb = a.params.get("axes") or {}, b.params.get("axes") or {}
    return [k for k in axes_of(a, b) if a.params.get(k) != b.params.get(k) or
            (k in xa and k in xb and xa[k] != xb[k])]


def step_s(r: Record) -> float:
    return r.median


def images_per_step(r: Record) -> int:
    return r.images_per_step


def per_image(r: Record) -> float:
    return r.per_image_s


def _lt(a: Any, b: Any) -> bool:
    try:
        return a is not None and b is not None and a < b
    except TypeError:
        return False


def verifier(records: list[Record], r: Record, axis: str, better: str) -> dict[str, Any] | None:
    """A cell that differs from r only in `axis` and is faster: the measured effect of the advice."""
    best: Record | None = None
    for o in ok(records):
        if o is r or diff_axes(r, o) != [axis]:
            continue
        if better == "lower" and not _lt(o.params[axis], r.params[axis]):
            continue
        if per_image(r) > per_image(o) and (best is None or per_image(o) < per_image(best)):
            best = o
    if best is None:
        return None
    # faster, but beyond the noise? (the H200's 1.02x fused AdamW was not, at run CV 2.6%)
    ok_, needed, cv, basis = resolved(records, r, best)
    return {"cell_id": best.cell_id, "label": label(best), "axis": axis, "from": r.params[axis],
            "to": best.params[axis], "speedup": per_image(r) / per_image(best), "resolved": ok_,
            "runs_needed": needed, "cv": cv, "cv_basis": basis}


def effect_text(v: dict[str, Any], digits: int = 2) -> str:
    """A verifier's measured effect as a finding says it, with its verdict where it is within the noise."""
    text = f"{v['speedup']:.{digits}f}x faster per image"
    if v.get("resolved") is False:
        text += (f", within this machine's run-to-run variation (run CV {v['cv']:.1%}, {v['cv_basis']}): "
                 f"unresolved, {v['runs_needed']} runs a side would resolve it")
    return text


def groups_along(records: list[Record], axis: str) -> list[list[Record]]:
    groups: dict[str, list[Record]] = {}
    keys = axes_of(*records)
    for r in ok(records):
        if r.params.get(axis) is None:
            continue  # not seen (an attached script without a DataLoader has no worker count): on no axis
        # the other settings as observed and, for a command's cells, as set: cells that set another knob
        # differently are not points on this axis even where the script ran them alike
        key = repr([(k, r.params.get(k), (r.params.get("axes") or {}).get(k)) for k in keys if k != axis])
        groups.setdefault(key, []).append(r)
    return [g for g in groups.values() if len({repr(r.params.get(axis)) for r in g}) >= 2]


def breakdown_deltas(before: Breakdown | None, after: Breakdown | None) -> dict[str, Any]:
    """Where a step-time difference went: phase, top-level module, operator and (on a GPU) busy/idle
    deltas between two breakdowns. Used by compare (baseline -> candidate) and history (night before
    a change -> first night after)."""
    if not before or not after:
        return {}
    from benchbench.timeline.names import short_op

    out: dict[str, Any] = {}
    pb, pa = before.phases, after.phases
    out["phase_deltas_s"] = {k: pa.get(k, 0.0) - pb.get(k, 0.0) for k in set(pa) | set(pb)}
    mods = {k for k in set(before.modules) | set(after.modules) if "." not in k}
    out["module_deltas_s"] = {k: after.module_total(k) - before.module_total(k) for k in mods}
    ob = {short_op(o.name): o.self_time_s for o in before.top_ops}
    oa = {short_op(o.name): o.self_time_s for o in after.top_ops}
    ops = sorted(((oa.get(n, 0.0) - ob.get(n, 0.0), n) for n in set(oa) | set(ob)), reverse=True)
    out["top_op_deltas_s"] = {n: d for d, n in ops[:5]}
    gb, ga = before.gpu, after.gpu
    if gb and ga:
        out["gpu_busy_delta_s"] = ga.gpu_busy_s - gb.gpu_busy_s
        out["gpu_idle_delta_s"] = (ga.gpu_idle_s or 0.0) - (gb.gpu_idle_s or 0.0)
    return out
