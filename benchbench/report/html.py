"""Self-contained HTML report: inline CSS and SVG, every string escaped by jinja2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from benchbench.analysis.findings import Finding
from benchbench.analysis.summary import display_rows, reference_record, summary_frame
from benchbench.measure.env import describe
from benchbench.measure.flops import CONVENTION
from benchbench.measurement import Measurement
from benchbench.report import plots
from benchbench.report.breakdown import cell_breakdowns
from benchbench.report.files import write_atomic

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("benchbench.report", "templates"),
    autoescape=True,  # suite names, labels, errors: never markup
    undefined=jinja2.StrictUndefined,
)


def render_html(records: list[dict[str, Any]], findings: list[Finding], reference_id: str | None = None,
                title: str | None = None, varied: list[str] | None = None, history: str | None = None) -> str:
    """`history`: an HTML fragment from report.history.history_section (trusted: built and escaped there)."""
    rows = display_rows(summary_frame(records, reference_id))
    columns = [c for c in rows[0] if c != "error" or any(r["error"] for r in rows)] if rows else []
    ref = reference_record(records, reference_id)
    varied = varied or _varied(records)
    plot_list: list[tuple[str, str]] = []
    svg = plots.relative_throughput(records, Measurement(ref).throughput if ref else None)
    if svg:
        plot_list.append(("Throughput relative to the reference", svg))
    for axis, svg in plots.along_axes(records, varied):
        plot_list.append((f"Throughput along {axis}", svg))
    for what, name in (("phase", "Time by phase"), ("module", "Time by module")):
        svg = plots.stacked(records, what)
        if svg:
            plot_list.append((name, svg))
    for name, fn in (("FLOPs vs time", plots.flops_vs_time), ("Memory", plots.memory_by_phase)):
        svg = fn(records)
        if svg:
            plot_list.append((name, svg))
    env = next((r.get("env") for r in records if r.get("env")), None) or {}
    return _ENV.get_template("report.html.j2").render(
        title=title or (records[0].get("suite") if records else "report"),
        run_ids=sorted({str(r.get("run_id")) for r in records}),
        n_cells=len(records),
        n_ok=sum(Measurement(r).ok for r in records),
        env_line=describe(env) if env else "",
        convention=CONVENTION,
        columns=columns,
        rows=rows,
        findings=findings,
        plots=plot_list,
        breakdowns=cell_breakdowns(records),
        env={k: v for k, v in env.items() if v is not None and not isinstance(v, dict)},
        history=history,
    )


def _varied(records: list[dict[str, Any]]) -> list[str]:
    import json

    keys = sorted({k for r in records for k in r.get("params", {})})
    return [k for k in keys if len({json.dumps(r["params"].get(k), sort_keys=True) for r in records}) > 1]


def write_html(path: str | Path, text: str) -> Path:
    return write_atomic(path, text)
