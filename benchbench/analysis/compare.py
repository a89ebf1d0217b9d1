"""Regression verdicts between a baseline and a candidate: cells matched, work checked, runs judged.

The statistics (interval over runs, verdict rule, minimum detectable effect) are
in `gate_stats`; rendering is in `report.compare`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from benchbench.analysis.gate_stats import (  # noqa: F401 - the gate's statistics, re-exported
    ALPHA,
    DEFAULT_THRESHOLD,
    POWER,
    Interval,
    decide,
    interval,
    judge,
    run_medians,
)
from benchbench.analysis.host import host_change
from benchbench.analysis.records import breakdown_deltas, images_per_step
from benchbench.errors import BenchbenchError
from benchbench.measure.env import FINGERPRINT_KEYS, env_diff
from benchbench.policy import cell_threshold as policy_threshold
from benchbench.record import Record
from benchbench.record.state import cpu_degraded, gpu_degraded

METRICS = ("step", "epoch")
VERDICTS = ("slower", "faster", "unchanged", "noisy", "new", "missing", "failed", "incomparable")


@dataclass
class CellVerdict:
    cell_id: str
    label: str
    verdict: str
    ratio: float | None = None  # candidate / baseline, geometric mean of run medians
    ci_low: float | None = None
    ci_high: float | None = None
    threshold: float | None = None
    mde: float | None = None  # minimum detectable slowdown (0.07 = 7%) at this spread and these runs
    run_cv: float | None = None  # pooled run-to-run CV of the median step time
    method: str | None = None
    baseline_median_s: float | None = None
    candidate_median_s: float | None = None
    runs_baseline: int = 0
    runs_candidate: int = 0
    reason: str = ""
    why: dict[str, Any] = field(default_factory=dict)
    alpha: float = ALPHA  # the interval is 1 - alpha
    metric: str = "step"  # what was judged: each run's median step, or its median whole epoch
    warnings: list[str] = field(default_factory=list)  # e.g. a side measured on a throttled or shared GPU

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _env(r: Record) -> dict[str, Any]:
    return r.env.model_dump() if r.env else {}


def _why(base: Record, cand: Record) -> dict[str, Any]:
    """Phase / module / operator / GPU deltas when both sides carry a breakdown, and env differences."""
    why = breakdown_deltas(base.breakdown, cand.breakdown)
    diff = env_diff(_env(base), _env(cand))
    if diff:
        why["env"] = {k: {"baseline": a, "candidate": b} for k, (a, b) in diff.items()}
    return why


def check_env(baseline: list[Record], candidate: list[Record], allow: bool) -> None:
    envs_b = {r.env.fingerprint if r.env else None for r in baseline}
    envs_c = {r.env.fingerprint if r.env else None for r in candidate}
    if envs_b == envs_c or allow:
        return
    eb = next((_env(r) for r in baseline if r.env), {})
    ec = next((_env(r) for r in candidate if r.env), {})
    diff = env_diff(eb, ec) or {"fingerprint": (sorted(map(str, envs_b)), sorted(map(str, envs_c)))}
    lines = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
    raise BenchbenchError(
        "baseline and candidate were measured on different hardware or software "
        f"({lines}); timings are not comparable. Pass --allow-env-mismatch to compare anyway."
    )


def _work(recs: list[Record]) -> set[int]:
    return {images_per_step(r) for r in recs if r.ok}


def _work_note(recs: list[Record]) -> str:
    r = next((r for r in recs if r.oom_backoff), None)
    if r is None or r.oom_backoff is None:
        return f"ran {images_per_step(recs[0])} images per step"
    return (f"ran batch {r.oom_backoff.batch_size_ran} after an OOM at batch {r.params['batch_size']}"
            + (f" x {r.world_size} ranks" if r.world_size > 1 else ""))


def cell_threshold(recs: list[Record], threshold: float | None) -> float:
    """An explicit --threshold wins; else the cell's own gate_threshold (suite or cell); else the gate's."""
    own = next((r.params.get("gate_threshold") for r in reversed(recs) if r.params.get("gate_threshold")), None)
    return policy_threshold(own, threshold)


def degraded_warnings(side: str, recs: list[Record]) -> list[str]:
    """Why a side's runs cannot be trusted: a throttled or shared GPU, contended CPU cores."""
    gpu = [f"{side} measured on a GPU {w}" for w in dict.fromkeys(filter(None, (gpu_degraded(r.gpu_conditions)
                                                                                 for r in recs)))]
    cpu = [f"{side} measured on contended CPU cores: {w.split(': ', 1)[-1]}" for w in dict.fromkeys(
        filter(None, (cpu_degraded(r.cpu_contention) for r in recs)))]
    return gpu + cpu


def compare(baseline: list[Record], candidate: list[Record], threshold: float | None = None,
            alpha: float = ALPHA, allow_env_mismatch: bool = False,
            known_run_cv: float | None = None,
            nights_cv: dict[str, float] | None = None, refuse_degraded: bool = False,
            metric: str = "step") -> list[CellVerdict]:
    """`nights_cv`: per cell id, its night-to-night CV from the history store (gate_stats.night_cv).
    `refuse_degraded`: a cell with a run measured on a throttled or shared GPU, or on contended CPU cores,
    gets no verdict on speed. `metric`: `step` judges each run's median step; `epoch` each run's median whole
    epoch (`attach --epochs`): validation, checkpoints and the code between steps are then in the verdict."""
    if metric not in METRICS:
        raise BenchbenchError(f"--metric takes {' or '.join(METRICS)}, got {metric!r}")
    if threshold is not None and not 0 < threshold < 1:
        raise BenchbenchError(f"--threshold must be between 0 and 1 (0.05 = 5%), got {threshold}")
    if not 0 < alpha < 1:
        raise BenchbenchError(f"--alpha must be between 0 and 1, got {alpha}")
    if known_run_cv is not None and not 0 < known_run_cv < 1:
        raise BenchbenchError(f"--run-cv must be between 0 and 1 (0.01 = 1%), got {known_run_cv}")
    check_env(baseline, candidate, allow_env_mismatch)
    gb: dict[str, list[Record]] = defaultdict(list)
    gc: dict[str, list[Record]] = defaultdict(list)
    for r in baseline:
        gb[r.cell_id].append(r)
    for r in candidate:
        gc[r.cell_id].append(r)
    out: list[CellVerdict] = []
    for cid in list(gb) + [c for c in gc if c not in gb]:
        b, c = gb.get(cid, []), gc.get(cid, [])
        label = (c or b)[0].label or cid
        thr = cell_threshold(c or b, threshold)
        if not c:
            out.append(CellVerdict(cid, label, "missing", threshold=thr, reason="cell not in the candidate"))
            continue
        ok_b = [r for r in b if r.ok]
        if not ok_b:
            out.append(CellVerdict(cid, label, "new", threshold=thr,
                                   reason="cell not in the baseline" if not b else "no ok baseline record"))
            continue
        bad = [r for r in c if not r.ok]
        if bad:
            out.append(CellVerdict(cid, label, "failed", threshold=thr,
                                   reason=f"{bad[0].status}: {bad[0].error}",
                                   runs_baseline=len(b), runs_candidate=len(c)))
            continue
        wb, wc = _work(ok_b), _work(c)
        if wb != wc or len(wb) > 1:
            # Step times at different work per step are not comparable; a candidate that had to
            # back off where the baseline did not no longer fits: a (memory) regression.
            lost = len(wc) == 1 and len(wb) == 1 and next(iter(wc)) < next(iter(wb)) and any(
                r.oom_backoff for r in c)
            out.append(CellVerdict(cid, label, "failed" if lost else "incomparable", threshold=thr,
                                   runs_baseline=len(ok_b), runs_candidate=len(c),
                                   reason=f"not the same work: baseline {_work_note(ok_b)}, candidate "
                                          f"{_work_note(c)}"))
            continue
        warn = degraded_warnings("baseline", ok_b) + degraded_warnings("candidate", c)
        if warn and refuse_degraded:
            out.append(CellVerdict(cid, label, "incomparable", threshold=thr, runs_baseline=len(ok_b),
                                   runs_candidate=len(c), reason="refused: " + "; ".join(warn), warnings=warn))
            continue
        if metric == "epoch":
            why_not = _epoch_comparable(ok_b, c)
            if why_not:
                out.append(CellVerdict(cid, label, "incomparable", threshold=thr, runs_baseline=len(ok_b),
                                       runs_candidate=len(c), reason=why_not))
                continue
        mb, mc = (run_medians(ok_b), run_medians(c)) if metric == "step" else (_epoch_medians(ok_b),
                                                                               _epoch_medians(c))
        res = judge(mb, mc, thr, alpha, known_run_cv, (nights_cv or {}).get(cid))
        v = CellVerdict(cid, label, res.pop("verdict"), reason=res.pop("reason"), runs_baseline=len(mb),
                        runs_candidate=len(mc), **res)
        host = host_change(ok_b, c)
        v.warnings = warn + ([host["text"]] if host else [])
        if v.verdict in ("slower", "faster", "noisy"):
            v.why = _why(ok_b[-1], c[-1])
        if host:
            v.why["host"] = {k: host[k] for k in ("dispatch_ratio", "python_ratio", "baseline", "candidate")}
        out.append(v)
    for v in out:
        v.alpha = alpha
        v.metric = metric
    return out


def _epoch_medians(recs: list[Record]) -> list[float]:
    return [m for r in recs if r.epochs for m in r.epochs.run_medians()]


def _epoch_comparable(base: list[Record], cand: list[Record]) -> str | None:
    """Why two sides' epochs cannot be judged: one has no account, or their epochs are not the same work."""
    for side, recs in (("baseline", base), ("candidate", cand)):
        if not _epoch_medians(recs):
            return f"the {side} has no whole epoch accounted (`attach --epochs N`)"
    steps = [set().union(*(r.epochs.steps_per_epoch() for r in recs if r.epochs)) for recs in (base, cand)]
    if steps[0] != steps[1]:
        return (f"not the same work: baseline epochs of {sorted(steps[0])} training steps, candidate "
                f"{sorted(steps[1])}")
    return None


def regressions(verdicts: list[CellVerdict]) -> list[CellVerdict]:
    return [v for v in verdicts if v.verdict in ("slower", "failed")]


__all__ = ["FINGERPRINT_KEYS", "CellVerdict", "compare", "decide", "interval", "judge", "regressions"]
