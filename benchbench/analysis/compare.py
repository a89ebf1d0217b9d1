"""Noise-aware regression verdicts between a baseline and a candidate.

A change counts only when it is both large (|ratio - 1| >= threshold, default
5%) and statistically clear: the 95% bootstrap confidence interval of the
ratio of median step times excludes 1, and a two-sided Mann-Whitney U test
rejects "same distribution" at alpha. When each side has several runs
(`benchbench run --repeat N`), the bootstrap resamples runs first and steps
within runs second (a hierarchical bootstrap), so process-to-process variation,
which is what nightly CI sees, widens the interval instead of raising false
alarms. The false-alarm and detection rates measured on real runs are in the
README (benchmarks/gate.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

from benchbench.errors import BenchbenchError
from benchbench.measure.env import FINGERPRINT_KEYS, env_diff

VERDICTS = ("slower", "faster", "unchanged", "noisy", "new", "missing", "failed")
MIN_SAMPLES = 5
BOOTSTRAP = 2000


@dataclass
class CellVerdict:
    cell_id: str
    label: str
    verdict: str
    ratio: float | None = None  # candidate median step time / baseline median step time
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    baseline_median_s: float | None = None
    candidate_median_s: float | None = None
    n_baseline: int = 0
    n_candidate: int = 0
    runs_baseline: int = 0
    runs_candidate: int = 0
    reason: str = ""
    why: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _groups(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        out[r["cell_id"]].append(r)
    return out


def _runs(recs: list[dict[str, Any]]) -> list[np.ndarray]:
    return [np.asarray(r["step_time_s"]["samples"], dtype=float) for r in recs
            if r.get("status") == "ok" and (r.get("step_time_s") or {}).get("samples")]


def _median_of(runs: list[np.ndarray]) -> float:
    return float(np.median(np.concatenate(runs)))


def bootstrap_ratio(base: list[np.ndarray], cand: list[np.ndarray], n: int = BOOTSTRAP,
                    seed: int = 0) -> tuple[float, float]:
    """95% CI of median(cand)/median(base); hierarchical when there are several runs."""
    rng = np.random.default_rng(seed)

    def resample(runs: list[np.ndarray]) -> np.ndarray:
        out = np.empty(n)
        for i in range(n):
            pick = [runs[j] for j in rng.integers(0, len(runs), len(runs))] if len(runs) > 1 else runs
            pooled = np.concatenate([r[rng.integers(0, len(r), len(r))] for r in pick])
            out[i] = np.median(pooled)
        return out

    ratios = resample(cand) / resample(base)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def judge(base: list[np.ndarray], cand: list[np.ndarray], threshold: float = 0.05,
          alpha: float = 0.01) -> dict[str, Any]:
    nb, nc = sum(len(r) for r in base), sum(len(r) for r in cand)
    if nb < MIN_SAMPLES or nc < MIN_SAMPLES:
        return {"verdict": "noisy", "reason": f"too few samples ({nb} vs {nc}; need {MIN_SAMPLES} each)"}
    mb, mc = _median_of(base), _median_of(cand)
    ratio = mc / mb
    lo, hi = bootstrap_ratio(base, cand)
    # With several runs per side, test the run medians (the unit that varies
    # between nights); with one run, the step samples.
    if len(base) >= 3 and len(cand) >= 3:
        xb, xc = [float(np.median(r)) for r in base], [float(np.median(r)) for r in cand]
    else:
        xb, xc = np.concatenate(base), np.concatenate(cand)
    p = float(mannwhitneyu(xc, xb, alternative="two-sided").pvalue)
    out = {"ratio": ratio, "ci_low": lo, "ci_high": hi, "p_value": p, "baseline_median_s": mb,
           "candidate_median_s": mc}
    big_slow, big_fast = ratio >= 1 + threshold, ratio <= 1 / (1 + threshold)
    if big_slow and lo > 1 and p < alpha:
        return {**out, "verdict": "slower", "reason": f"{ratio - 1:+.1%} step time, CI excludes 1, p={p:.2g}"}
    if big_fast and hi < 1 and p < alpha:
        return {**out, "verdict": "faster", "reason": f"{ratio - 1:+.1%} step time, CI excludes 1, p={p:.2g}"}
    # Unchanged only when the interval rules out a change of the threshold's size.
    if lo > 1 / (1 + threshold) and hi < 1 + threshold:
        return {**out, "verdict": "unchanged", "reason": f"CI [{lo:.3f}, {hi:.3f}] within +-{threshold:.0%}"}
    if not (big_slow or big_fast) and (p >= alpha or (lo <= 1 <= hi)):
        if hi - lo < 4 * threshold:
            return {**out, "verdict": "unchanged", "reason": f"{ratio - 1:+.1%} is below the {threshold:.0%} threshold"}
    return {**out, "verdict": "noisy",
            "reason": f"CI [{lo:.3f}, {hi:.3f}] too wide to tell a {threshold:.0%} change (p={p:.2g})"}


def _why(base: dict[str, Any], cand: dict[str, Any]) -> dict[str, Any]:
    """Phase / module / operator deltas when both sides carry a breakdown, and env differences."""
    why: dict[str, Any] = {}
    bb, cb = base.get("breakdown"), cand.get("breakdown")
    if bb and cb:
        why["phase_deltas_s"] = {k: cb["phases"].get(k, 0.0) - v for k, v in bb["phases"].items()}
        why["module_deltas_s"] = {
            k: (cb["modules"].get(k, {}).get("forward", 0.0) + cb["modules"].get(k, {}).get("backward", 0.0))
            - (v["forward"] + v["backward"])
            for k, v in bb["modules"].items() if "." not in k
        }
        bo = {o["name"]: o["self_time_s"] for o in bb.get("top_ops", [])}
        co = {o["name"]: o["self_time_s"] for o in cb.get("top_ops", [])}
        deltas = sorted(((co.get(n, 0.0) - bo.get(n, 0.0), n) for n in set(bo) | set(co)), reverse=True)
        why["top_op_deltas_s"] = {n: d for d, n in deltas[:5]}
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


def compare(baseline: list[dict[str, Any]], candidate: list[dict[str, Any]], threshold: float = 0.05,
            alpha: float = 0.01, allow_env_mismatch: bool = False) -> list[CellVerdict]:
    if not 0 < threshold < 1:
        raise BenchbenchError(f"--threshold must be between 0 and 1 (0.05 = 5%), got {threshold}")
    check_env(baseline, candidate, allow_env_mismatch)
    gb, gc = _groups(baseline), _groups(candidate)
    out: list[CellVerdict] = []
    for cid in list(gb) + [c for c in gc if c not in gb]:
        b, c = gb.get(cid, []), gc.get(cid, [])
        label = (c or b)[0].get("label") or cid
        if not c:
            out.append(CellVerdict(cid, label, "missing", reason="cell not in the candidate"))
            continue
        if not [r for r in b if r.get("status") == "ok"]:
            if not b:
                out.append(CellVerdict(cid, label, "new", reason="cell not in the baseline"))
            else:
                out.append(CellVerdict(cid, label, "new", reason="no ok baseline record"))
            continue
        bad = [r for r in c if r.get("status") != "ok"]
        if bad:
            out.append(CellVerdict(cid, label, "failed", reason=f"{bad[0]['status']}: {bad[0].get('error')}",
                                   runs_baseline=len(b), runs_candidate=len(c)))
            continue
        rb, rc = _runs(b), _runs(c)
        res = judge(rb, rc, threshold, alpha)
        v = CellVerdict(cid, label, res.pop("verdict"), reason=res.pop("reason"),
                        n_baseline=sum(len(x) for x in rb), n_candidate=sum(len(x) for x in rc),
                        runs_baseline=len(rb), runs_candidate=len(rc), **res)
        if v.verdict == "slower":
            v.why = _why(b[-1], c[-1])
        out.append(v)
    return out


def regressions(verdicts: list[CellVerdict]) -> list[CellVerdict]:
    return [v for v in verdicts if v.verdict in ("slower", "failed")]


def why_text(v: CellVerdict) -> str:
    parts = []
    mods = v.why.get("module_deltas_s") or {}
    if mods:
        k, d = max(mods.items(), key=lambda kv: kv[1])
        parts.append(f"{k} {d * 1e3:+.1f} ms")
    ops = v.why.get("top_op_deltas_s") or {}
    if ops:
        parts.append("ops " + ", ".join(f"{n} {d * 1e3:+.1f} ms" for n, d in list(ops.items())[:3] if d > 0))
    env = v.why.get("env") or {}
    if env:
        parts.append("env " + ", ".join(f"{k} {x['baseline']}->{x['candidate']}" for k, x in env.items()))
    return "; ".join(p for p in parts if p)


def render_markdown(verdicts: list[CellVerdict], threshold: float, title: str = "benchbench compare") -> str:
    counts = {k: sum(v.verdict == k for v in verdicts) for k in VERDICTS}
    head = "regression found" if regressions(verdicts) else "no regression"
    lines = [f"## {title}: {head}", "",
             " · ".join(f"{k}: {n}" for k, n in counts.items() if n), "",
             f"A change counts when it is at least {threshold:.0%} and significant (95% bootstrap CI of the "
             "median ratio excludes 1, Mann-Whitney U p < alpha). Ratio = candidate / baseline step time.", "",
             "| verdict | cell | ratio | 95% CI | p | baseline ms | candidate ms | why |", "|---|---|---|---|---|---|---|---|"]
    from benchbench.report.markdown import md_escape

    order = {k: i for i, k in enumerate(("failed", "slower", "noisy", "faster", "new", "missing", "unchanged"))}
    for v in sorted(verdicts, key=lambda v: (order[v.verdict], -(v.ratio or 0))):
        lines.append(
            f"| {v.verdict} | {md_escape(v.label)} | {_f(v.ratio, '.3f')} | "
            f"{'' if v.ci_low is None else f'{v.ci_low:.3f}-{v.ci_high:.3f}'} | {_f(v.p_value, '.2g')} | "
            f"{_f(v.baseline_median_s and v.baseline_median_s * 1e3, '.1f')} | "
            f"{_f(v.candidate_median_s and v.candidate_median_s * 1e3, '.1f')} | "
            f"{md_escape(why_text(v) or v.reason)} |"
        )
    return "\n".join(lines) + "\n"


def _f(x: float | None, fmt: str) -> str:
    return "" if x is None else format(x, fmt)


__all__ = ["FINGERPRINT_KEYS", "compare", "regressions", "render_markdown", "CellVerdict", "judge"]
