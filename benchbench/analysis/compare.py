"""Regression verdicts between a baseline and a candidate, run by run.

The unit is the run (one process: `benchbench run --repeat N` makes N of them).
Steps inside one process are not independent samples of "this code on this
machine": allocation, clocks and neighbours move them together, so identical
runs differ by far more than their steps' spread suggests (here 8-12% on a
shared CPU, ~0.1% on an H100). Each run is summarised by its median step
time, and the decision is a confidence interval for the ratio of the sides'
(geometric) mean run medians:

    log ratio = mean(log m_cand) - mean(log m_base)
    se        = s_pooled * sqrt(1/n_base + 1/n_cand)       (s: sd of log run medians)
    interval  = exp(log ratio +- t(1 - alpha/2, n_base + n_cand - 2) * se)     (alpha 0.01: 99%)

A t interval has power at 3 runs a side (df = 4), where an exact rank test on
run medians cannot reach p < 0.10. With one run a side the spread between runs
is unknown: the gate says `noisy` (insufficient runs) unless told the machine's
run-to-run CV (`known_run_cv`), which then gives a z interval.

Verdicts follow the interval, never the point estimate alone:
- slower / faster: the whole interval lies beyond +-threshold;
- unchanged: the whole interval lies within +-threshold;
- noisy: neither, with the bound that is in the way and why (too few runs,
  spread too large, or an effect right at the threshold).

The minimum detectable effect (MDE) of each comparison is the slowdown that
this rule flags with 80% probability at this spread and these numbers of runs:
exp(log(1 + threshold) + ncp * se) - 1, ncp from the noncentral t (Interval.mde).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, stats

from benchbench.analysis.records import images_per_step
from benchbench.errors import BenchbenchError
from benchbench.measure.env import FINGERPRINT_KEYS, env_diff

VERDICTS = ("slower", "faster", "unchanged", "noisy", "new", "missing", "failed", "incomparable")
ALPHA = 0.01  # two-sided: a 99% interval (false alarms measured in benchmarks/gate.py)
POWER = 0.80  # for the minimum detectable effect
DEFAULT_THRESHOLD = 0.05


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Interval:
    ratio: float
    low: float
    high: float
    se: float  # of the log ratio
    df: float  # inf for a z interval
    run_cv: float | None
    method: str

    def mde(self, threshold: float, alpha: float = ALPHA, power: float = POWER) -> float:
        """The slowdown whose interval clears +threshold with probability `power`.

        With an estimated spread (t interval) the power comes from the noncentral t
        distribution, which carries the uncertainty of the spread estimate itself;
        the normal approximation (t_crit + t_power) overstates power at df = 4.
        """
        if math.isinf(self.df):
            q = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
            se = self.se
        else:
            crit = float(stats.t.ppf(1 - alpha / 2, self.df))
            q = float(optimize.brentq(lambda ncp: stats.nct.sf(crit, self.df, ncp) - power, 0.0, 200.0))
            # A sample sd from few runs is usually below the true one (its median is 0.92 sigma at
            # df 4): scale it so the MDE is right for the typical comparison, not optimistic.
            se = self.se / math.sqrt(stats.chi2.ppf(0.5, self.df) / self.df)
        return math.exp(math.log1p(threshold) + q * se) - 1


def run_medians(recs: list[dict[str, Any]]) -> list[float]:
    return [float(np.median(r["step_time_s"]["samples"])) for r in recs
            if r.get("status") == "ok" and (r.get("step_time_s") or {}).get("samples")]


def interval(base: list[float], cand: list[float], alpha: float = ALPHA,
             known_run_cv: float | None = None) -> Interval | None:
    """CI of the ratio of geometric mean run medians; None when the spread cannot be known."""
    lb, lc = np.log(base), np.log(cand)
    nb, nc = len(lb), len(lc)
    if nb == 0 or nc == 0:
        return None
    d = float(lc.mean() - lb.mean())
    df = nb + nc - 2
    if df >= 2 or (df == 1 and known_run_cv is None):
        ss = float(((lb - lb.mean()) ** 2).sum() + ((lc - lc.mean()) ** 2).sum())
        sp = math.sqrt(ss / df)
        se = sp * math.sqrt(1 / nb + 1 / nc)
        q = float(stats.t.ppf(1 - alpha / 2, df))
        method = f"t interval on log run medians, {nb} vs {nc} runs (df {df})"
        cv = math.expm1(sp)
    elif known_run_cv is not None:
        sp = math.log1p(known_run_cv)
        se = sp * math.sqrt(1 / nb + 1 / nc)
        q = float(stats.norm.ppf(1 - alpha / 2))
        df = math.inf
        method = f"z interval from the known run-to-run CV {known_run_cv:.2%}, {nb} vs {nc} runs"
        cv = known_run_cv
    else:
        return None
    return Interval(math.exp(d), math.exp(d - q * se), math.exp(d + q * se), se, df, cv, method)


def decide(iv: Interval | None, threshold: float, nb: int, nc: int, alpha: float = ALPHA) -> tuple[str, str]:
    """The verdict and a reason that is true of the interval."""
    up, down = 1 + threshold, 1 / (1 + threshold)
    if iv is None:
        return "noisy", (f"insufficient runs ({nb} vs {nc}): one run a side cannot tell a change from "
                         "process-to-process variation; run with --repeat 3 (or give --run-cv for this machine)")
    ci = f"{iv.ratio - 1:+.1%} [{iv.low - 1:+.1%}, {iv.high - 1:+.1%}]"
    if iv.low > up:
        return "slower", f"{ci}: the whole interval is above +{threshold:.0%}"
    if iv.high < down:
        return "faster", f"{ci}: the whole interval is below -{threshold:.0%}"
    if iv.low >= down and iv.high <= up:
        return "unchanged", f"{ci}: the whole interval is within +-{threshold:.0%}"
    mde = iv.mde(threshold, alpha)
    bound = (f"its upper bound is above +{threshold:.0%}" if iv.high > up else "")
    if iv.low < down:
        bound = (bound + " and " if bound else "") + f"its lower bound is below -{threshold:.0%}"
    if iv.high - iv.low < threshold and (iv.low <= up <= iv.high or iv.low <= down <= iv.high):
        cause = (f"the change is about the threshold itself, at this precision (interval {iv.high - iv.low:.1%} "
                 "wide): more runs narrow it")
    elif min(nb, nc) < 3:
        cause = f"too few runs ({nb} vs {nc}): at this spread the gate sees only changes above {mde:.1%}"
    else:
        cause = (f"run-to-run spread too large (CV {iv.run_cv:.1%}): at {nb} vs {nc} runs the gate sees only "
                 f"changes above {mde:.1%}")
    return "noisy", f"{ci}: {bound}; {cause}"


def judge(base: list[float], cand: list[float], threshold: float = DEFAULT_THRESHOLD, alpha: float = ALPHA,
          known_run_cv: float | None = None) -> dict[str, Any]:
    """Verdict fields for one cell from its run medians on each side."""
    iv = interval(base, cand, alpha, known_run_cv)
    verdict, reason = decide(iv, threshold, len(base), len(cand), alpha)
    out: dict[str, Any] = {"verdict": verdict, "reason": reason, "threshold": threshold,
                           "baseline_median_s": float(np.median(base)) if base else None,
                           "candidate_median_s": float(np.median(cand)) if cand else None}
    if iv is not None:
        out.update(ratio=iv.ratio, ci_low=iv.low, ci_high=iv.high, mde=iv.mde(threshold, alpha), run_cv=iv.run_cv,
                   method=iv.method)
    return out


def _why(base: dict[str, Any], cand: dict[str, Any]) -> dict[str, Any]:
    """Phase / module / operator deltas when both sides carry a breakdown, and env differences."""
    from benchbench.analysis.gpu_findings import timeline_delta
    from benchbench.timeline.names import short_op

    why: dict[str, Any] = {}
    bb, cb = base.get("breakdown"), cand.get("breakdown")
    if bb and cb:
        why["phase_deltas_s"] = {k: cb["phases"].get(k, 0.0) - v for k, v in bb["phases"].items()}
        why["module_deltas_s"] = {
            k: (cb["modules"].get(k, {}).get("forward", 0.0) + cb["modules"].get(k, {}).get("backward", 0.0))
            - (v["forward"] + v["backward"])
            for k, v in bb["modules"].items() if "." not in k
        }
        bo = {short_op(o["name"]): o["self_time_s"] for o in bb.get("top_ops", [])}
        co = {short_op(o["name"]): o["self_time_s"] for o in cb.get("top_ops", [])}
        deltas = sorted(((co.get(n, 0.0) - bo.get(n, 0.0), n) for n in set(bo) | set(co)), reverse=True)
        why["top_op_deltas_s"] = {n: d for d, n in deltas[:5]}
        if cand.get("step_time_s") and base.get("step_time_s"):
            gpu = timeline_delta(cand, base)
            if gpu:
                why["gpu"] = gpu[1]
    diff = env_diff(base.get("env") or {}, cand.get("env") or {})
    if diff:
        why["env"] = {k: {"baseline": a, "candidate": b} for k, (a, b) in diff.items()}
    return why


def check_env(baseline: list[dict[str, Any]], candidate: list[dict[str, Any]], allow: bool) -> None:
    envs_b = {(r.get("env") or {}).get("fingerprint") for r in baseline}
    envs_c = {(r.get("env") or {}).get("fingerprint") for r in candidate}
    if envs_b == envs_c or allow:
        return
    eb = next((r.get("env") for r in baseline if r.get("env")), {}) or {}
    ec = next((r.get("env") for r in candidate if r.get("env")), {}) or {}
    diff = env_diff(eb, ec) or {"fingerprint": (sorted(map(str, envs_b)), sorted(map(str, envs_c)))}
    lines = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
    raise BenchbenchError(
        "baseline and candidate were measured on different hardware or software "
        f"({lines}); timings are not comparable. Pass --allow-env-mismatch to compare anyway."
    )


def _work(recs: list[dict[str, Any]]) -> set[int]:
    return {images_per_step(r) for r in recs if r.get("status") == "ok"}


def _work_note(recs: list[dict[str, Any]]) -> str:
    r = next((r for r in recs if r.get("oom_backoff")), None)
    if r is None:
        return f"ran {images_per_step(recs[0])} images per step"
    return (f"ran batch {r['oom_backoff'].get('batch_size_ran')} after an OOM at batch {r['params']['batch_size']}"
            + (f" x {r['params'].get('world_size')} ranks" if (r["params"].get("world_size") or 1) > 1 else ""))


def cell_threshold(recs: list[dict[str, Any]], threshold: float | None) -> float:
    """An explicit --threshold wins; else the cell's own gate_threshold (suite or cell); else 5%."""
    if threshold is not None:
        return threshold
    own = next(((r.get("params") or {}).get("gate_threshold") for r in reversed(recs)
                if (r.get("params") or {}).get("gate_threshold")), None)
    return float(own) if own else DEFAULT_THRESHOLD


def compare(baseline: list[dict[str, Any]], candidate: list[dict[str, Any]], threshold: float | None = None,
            alpha: float = ALPHA, allow_env_mismatch: bool = False,
            known_run_cv: float | None = None) -> list[CellVerdict]:
    if threshold is not None and not 0 < threshold < 1:
        raise BenchbenchError(f"--threshold must be between 0 and 1 (0.05 = 5%), got {threshold}")
    if not 0 < alpha < 1:
        raise BenchbenchError(f"--alpha must be between 0 and 1, got {alpha}")
    if known_run_cv is not None and not 0 < known_run_cv < 1:
        raise BenchbenchError(f"--run-cv must be between 0 and 1 (0.01 = 1%), got {known_run_cv}")
    check_env(baseline, candidate, allow_env_mismatch)
    gb: dict[str, list[dict[str, Any]]] = defaultdict(list)
    gc: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in baseline:
        gb[r["cell_id"]].append(r)
    for r in candidate:
        gc[r["cell_id"]].append(r)
    out: list[CellVerdict] = []
    for cid in list(gb) + [c for c in gc if c not in gb]:
        b, c = gb.get(cid, []), gc.get(cid, [])
        label = (c or b)[0].get("label") or cid
        thr = cell_threshold(c or b, threshold)
        if not c:
            out.append(CellVerdict(cid, label, "missing", threshold=thr, reason="cell not in the candidate"))
            continue
        ok_b = [r for r in b if r.get("status") == "ok"]
        if not ok_b:
            out.append(CellVerdict(cid, label, "new", threshold=thr,
                                   reason="cell not in the baseline" if not b else "no ok baseline record"))
            continue
        bad = [r for r in c if r.get("status") != "ok"]
        if bad:
            out.append(CellVerdict(cid, label, "failed", threshold=thr,
                                   reason=f"{bad[0]['status']}: {bad[0].get('error')}",
                                   runs_baseline=len(b), runs_candidate=len(c)))
            continue
        wb, wc = _work(ok_b), _work(c)
        if wb != wc or len(wb) > 1:
            # Step times at different work per step are not comparable; a candidate that had to
            # back off where the baseline did not no longer fits: a (memory) regression.
            lost = len(wc) == 1 and len(wb) == 1 and next(iter(wc)) < next(iter(wb)) and any(
                r.get("oom_backoff") for r in c)
            out.append(CellVerdict(cid, label, "failed" if lost else "incomparable", threshold=thr,
                                   runs_baseline=len(ok_b), runs_candidate=len(c),
                                   reason=f"not the same work: baseline {_work_note(ok_b)}, candidate "
                                          f"{_work_note(c)}"))
            continue
        mb, mc = run_medians(ok_b), run_medians(c)
        res = judge(mb, mc, thr, alpha, known_run_cv)
        v = CellVerdict(cid, label, res.pop("verdict"), reason=res.pop("reason"), runs_baseline=len(mb),
                        runs_candidate=len(mc), **res)
        if v.verdict in ("slower", "faster", "noisy"):
            v.why = _why(ok_b[-1], c[-1])
        out.append(v)
    return out


def regressions(verdicts: list[CellVerdict]) -> list[CellVerdict]:
    return [v for v in verdicts if v.verdict in ("slower", "failed")]


__all__ = ["FINGERPRINT_KEYS", "compare", "regressions", "CellVerdict", "judge", "interval", "decide"]
