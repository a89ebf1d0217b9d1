"""Rendering of regression verdicts: Markdown for CI summaries, rows for the terminal."""

from __future__ import annotations

from typing import Any

from benchbench.analysis.compare import VERDICTS, CellVerdict, regressions
from benchbench.analysis.gate_stats import ALPHA, ci_label
from benchbench.report.markdown import md_escape

ORDER = {k: i for i, k in enumerate(("failed", "slower", "incomparable", "noisy", "faster", "new", "missing",
                                     "unchanged"))}


def deltas_text(why: dict[str, Any]) -> list[str]:
    """The evidence behind a change, from analysis.records.breakdown_deltas: GPU busy/idle, the
    largest module delta, the operators that grew."""
    parts = []
    if "gpu_busy_delta_s" in why:
        parts.append(f"GPU busy {why['gpu_busy_delta_s'] * 1e3:+.2f} ms, idle {why['gpu_idle_delta_s'] * 1e3:+.2f} ms")
    mods = why.get("module_deltas_s") or {}
    if mods:
        k, d = max(mods.items(), key=lambda kv: abs(kv[1]))
        parts.append(f"largest module delta {k} {d * 1e3:+.2f} ms")
    ops = [f"{n} {d * 1e3:+.2f} ms" for n, d in (why.get("top_op_deltas_s") or {}).items() if d > 0][:3]
    if ops:
        parts.append("ops " + ", ".join(ops))
    return parts


def why_text(v: CellVerdict) -> str:
    parts = deltas_text(v.why)
    env = v.why.get("env") or {}
    if env:
        parts.append("env " + ", ".join(f"{k} {x['baseline']}->{x['candidate']}" for k, x in env.items()))
    return "; ".join(parts)


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x - 1:+.1%}"


def rows(verdicts: list[CellVerdict]) -> list[dict[str, Any]]:
    out = []
    for v in sorted(verdicts, key=lambda v: (ORDER.get(v.verdict, 9), -(v.ratio or 0))):
        out.append({
            "verdict": v.verdict, "cell": v.label, "change": _pct(v.ratio),
            "interval": "" if v.ci_low is None else f"{_pct(v.ci_low)} .. {_pct(v.ci_high)}",
            "threshold": "" if v.threshold is None else f"{v.threshold:.0%}",
            "MDE": "" if v.mde is None else f"{v.mde:.1%}",
            "runs": f"{v.runs_baseline} vs {v.runs_candidate}" if v.runs_baseline or v.runs_candidate else "",
            "reason": v.reason + (f" — {why_text(v)}" if why_text(v) else "")
            + "".join(f" — warning: {w}" for w in v.warnings if w not in v.reason),
        })
    return out


def render_markdown(verdicts: list[CellVerdict], title: str = "benchbench compare") -> str:
    counts = {k: sum(v.verdict == k for v in verdicts) for k in VERDICTS}
    head = "regression found" if regressions(verdicts) else "no regression"
    alpha = verdicts[0].alpha if verdicts else ALPHA
    what = "whole-epoch" if verdicts and verdicts[0].metric == "epoch" else "step"
    ci = ci_label(alpha)
    lines = [
        f"## {title}: {head}",
        "",
        " · ".join(f"{k}: {n}" for k, n in counts.items() if n),
        "",
        f"Change = candidate / baseline {what} time (geometric mean of run medians), with its {1 - alpha:.0%} interval "
        "over runs. A cell is `slower`/`faster` only when the whole interval is beyond its threshold, "
        "`unchanged` only when it is within. MDE = the smallest slowdown this comparison detects with 80% "
        "probability at its spread and number of runs.",
        "",
        f"| verdict | cell | change | {ci} | threshold | MDE | runs | reason |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows(verdicts):
        lines.append(
            "| "
            + " | ".join(
                md_escape(r[k]) for k in ("verdict", "cell", "change", "interval", "threshold", "MDE", "runs", "reason")
            )
            + " |"
        )
    return "\n".join(lines) + "\n"
