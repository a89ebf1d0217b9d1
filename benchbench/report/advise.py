"""`advise` rendered: the ranked table, the recommended suite, Markdown, HTML (bound vs measured) and JSON."""

from __future__ import annotations

import html
import json
from typing import Any

import yaml

from benchbench.advise.experiment import AdviseResult, Outcome, _fmt
from benchbench.analysis.gate_stats import ci_label
from benchbench.report.markdown import md_escape
from benchbench.report.plots import _safe, _svg, plt

COLUMNS = ("knob", "from → to", "bound", "measured speed-up", "verdict", "memory", "numerics", "runs")


def row(o: Outcome) -> dict[str, str]:
    c = o.candidate
    meas = ""
    if o.speedup is not None and o.interval is not None:
        meas = f"{o.speedup:.2f}x [{o.interval[0]:.2f}, {o.interval[1]:.2f}]"
    num = o.numerics.get("verdict", "")
    if o.numerics.get("why") and num not in ("", "unknown") and not num.startswith("changes the model") \
            and not num.startswith("changes the optimisation"):
        num += f" ({o.numerics['why']})"
    return {"knob": c.knob, "from → to": f"{_fmt(c.frm)} → {_fmt(c.to)}" if c.knob != "combined" else str(c.to),
            "bound": (f"≤ {o.bound:.2f}x" if o.bound is not None else "—") + (
                " (exceeded: the share it came from understated what the knob removes, or the rest of the step ran "
                "faster with it)"
                if o.bound is not None and o.interval is not None and o.interval[0] > o.bound else ""),
            "measured speed-up": meas,
            "verdict": o.verdict + (" (recommended)" if o.recommended else "")
            + (f": {o.reason}" if o.verdict in ("skipped", "failed", "not measured", "diverges") else ""),
            "memory": f"{o.memory_ratio:.2f}x" if o.memory_ratio else "",
            "numerics": num,
            "runs": f"{len(o.base_runs)} + {len(o.runs)}" if o.runs else ""}


def rows(res: AdviseResult) -> list[dict[str, str]]:
    out = [row(o) for o in res.ranked()]
    if res.combined is not None:
        out.insert(0, row(res.combined))
    return out


def headline(res: AdviseResult) -> str:
    rec = res.recommended
    if not rec["knobs"]:
        return (f"No free knob made {res.base.label} measurably faster without changing its numerics "
                f"({len(res.outcomes)} measured, {sum(1 for c in res.candidates if c.skipped)} skipped).")
    lo, hi = rec["interval"]
    return (f"Recommended for {res.base.label}: {', '.join(rec['knobs'])} — {rec['speedup']:.2f}x faster per image "
            f"[{lo:.2f}, {hi:.2f}], numerics unchanged.")


def suite_yaml(res: AdviseResult, suite_name: str) -> str:
    from benchbench.suite import CellParams

    defaults = CellParams().model_dump(mode="json")
    params = {k: v for k, v in res.recommended["params"].items()
              if k != "device" and (v != defaults.get(k) or k in ("arch", "encoder"))}
    doc = {"name": f"{suite_name}-advised", "description": headline(res), **params}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def to_json(res: AdviseResult) -> dict[str, Any]:
    def out(o: Outcome) -> dict[str, Any]:
        return {**o.candidate.to_dict(), "bound": o.bound, "speedup": o.speedup,
                "interval": list(o.interval) if o.interval else None,
                "verdict": o.verdict, "reason": o.reason, "numerics": o.numerics, "memory_ratio": o.memory_ratio,
                "mde": o.mde, "runs": {"base": len(o.base_runs), "candidate": len(o.runs)},
                "recommended": o.recommended}

    rec = res.recommended
    return {
        "base": {"cell_id": res.base.id, "label": res.base.label, "params": res.base.params,
                 "throughput_img_s": res.base_record.throughput if res.base_record else None},
        "candidates": [out(o) for o in res.ranked()],
        "combined": out(res.combined) if res.combined else None,
        "recommended": {"params": rec["params"], "speedup": rec["speedup"],
                        "interval": list(rec["interval"]) if rec["interval"] else None, "knobs": rec["knobs"]},
        "budget_spent": res.budget_spent, "runs": res.runs, "seconds": res.seconds, "warnings": res.warnings,
    }


def markdown(res: AdviseResult, alpha: float) -> str:
    lines = [f"## benchbench advise: {md_escape(res.base.label)}", "", f"**{md_escape(headline(res))}**", ""]
    lines += [f"> **Warning:** {md_escape(w)}" for w in res.warnings] + ([""] if res.warnings else [])
    lines += ["Each knob changed alone from the base, measured A/B (base and candidate runs interleaved, each in "
              f"a fresh process); speed-up per image with its {ci_label(alpha)} over runs. *Bound*: the most the "
              "knob can buy, from the base's own measurement. *Numerics*: the loss trajectory against the base's at "
              "the same seed, with the base's own seed-to-seed spread as the tolerance.", "",
              "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(md_escape(r[c]) for c in COLUMNS) + " |" for r in rows(res)]
    lines += ["", "Where each bound comes from:", ""]
    rebased = {id(o.candidate): o.bound for o in res.outcomes if o.candidate.floor_s and o.bound}
    lines += [f"- {md_escape(c.knob)} → {md_escape(_fmt(c.to))}: {md_escape(c.why)}"
              + (f"; set against the A/B's own base runs: ≤ {rebased[id(c)]:.2f}x" if id(c) in rebased else "")
              for c in res.candidates]
    if res.budget_spent:
        lines += ["", "_The budget was spent before every candidate was measured._"]
    return "\n".join(lines) + "\n"


def bound_vs_measured(res: AdviseResult) -> str | None:
    outs = [o for o in res.outcomes if o.speedup is not None]
    if not outs:
        return None
    names = [_safe(f"{o.candidate.knob}={_fmt(o.candidate.to)}") for o in outs]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(outs) + 1.2))
    ys = range(len(outs))
    ax.barh([y + 0.2 for y in ys], [o.bound or 0 for o in outs], height=0.4, color="#c6dbef",
            label="bound (from the base's measurement)")
    ax.barh([y - 0.2 for y in ys], [o.speedup for o in outs], height=0.4, color="#3182bd", label="measured",
            xerr=[[o.speedup - o.interval[0] for o in outs], [o.interval[1] - o.speedup for o in outs]])
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_yticks(list(ys), names)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up per image (x), measured with its interval")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _svg(fig)


def html_section(res: AdviseResult, alpha: float) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in COLUMNS) + "</tr>" for r in rows(res))
    svg = bound_vs_measured(res) or ""
    return (f"<section id='advise'><h2>advise: {html.escape(res.base.label)}</h2>"
            f"<p><strong>{html.escape(headline(res))}</strong></p>"
            + "".join(f"<p class='warn'><strong>Warning:</strong> {html.escape(w)}</p>" for w in res.warnings) +
            f"<p class='note'>Speed-up per image with its {ci_label(alpha)} over interleaved runs; bound from the "
            f"base's own measurement; numerics against the base's seed-to-seed spread.</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<div class='plot'>{svg}</div></section>")


def html_page(res: AdviseResult, alpha: float, title: str) -> str:
    t = html.escape(title)
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>" + t + "</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:75em;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;font-size:.85rem}td,th{border:1px solid #ddd;padding:.25rem .5rem}"
            "th{background:#f4f4f4}.plot svg{max-width:100%;height:auto}.note{color:#666}</style></head><body>"
            f"<h1>{t}</h1>" + html_section(res, alpha) + "</body></html>")


def write_all(res: AdviseResult, stem: Any, suite_name: str, alpha: float) -> list[Any]:
    from benchbench.report.files import write_atomic

    return [write_atomic(stem.with_suffix(".md"), markdown(res, alpha)),
            write_atomic(stem.with_suffix(".html"), html_page(res, alpha, f"benchbench advise: {suite_name}")),
            write_atomic(stem.with_suffix(".yaml"), suite_yaml(res, suite_name)),
            write_atomic(stem.with_suffix(".json"), json.dumps(to_json(res), indent=2, default=str))]
