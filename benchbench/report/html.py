"""Self-contained HTML report: inline CSS and SVG, every string escaped by jinja2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from benchbench.analysis.summary import reference_record
from benchbench.measure.env import describe
from benchbench.measure.flops import CONVENTION
from benchbench.record import Record
from benchbench.report import plots
from benchbench.report.epochs import epoch_cells
from benchbench.report.files import write_atomic
from benchbench.report.ranks import rank_cells

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("benchbench.report", "templates"),
    autoescape=True,  # suite names, labels, errors: never markup
    undefined=jinja2.StrictUndefined,
)


PLOT_THEMES = {"decoder_channels": "decoder width", "num_workers": "input pipeline", "data": "input pipeline",
               "batch_size": "scaling", "resolution": "scaling", "world_size": "scaling",
               "amp": "precision and compilation", "compile": "precision and compilation"}


def _plots(data: Any) -> list[tuple[str, str, list[str]]]:
    """(title, svg, themes it supports, in order of preference) for every plot this report has."""
    records = data.records
    ref = reference_record(records, data.reference_id)
    out: list[tuple[str, str, list[str]]] = []
    svg = plots.relative_throughput(records, ref.throughput if ref else None)
    if svg:
        out.append(("Throughput relative to the reference", svg, ["reference"]))
    for axis, svg in plots.along_axes(records, data.varied or _varied(records)):
        out.append((f"Throughput along {axis}", svg, [PLOT_THEMES.get(axis, "scaling"), "reference"]))
    for what, name, themes in (("phase", "Time by phase", ["input pipeline", "where the step goes", "launch overhead"]),
                               ("module", "Time by module", ["decoder width", "where the step goes"])):
        svg = plots.stacked(records, what)
        if svg:
            out.append((name, svg, themes))
    from benchbench.report.inputs import input_cells

    for cell in input_cells(records):
        for name, fn in (("Input stages", plots.stage_waterfall), ("Throughput by workers", plots.workers_plot)):
            svg = fn(cell)
            if svg:
                out.append((f"{name}: {cell['label']}", svg, ["input pipeline"]))
    for name, fn in (("FLOPs vs time", plots.flops_vs_time), ("Memory", plots.memory_by_phase)):
        svg = fn(records)
        if svg:
            out.append((name, svg, ["efficiency", "where the step goes"]))
    return out


def render_html(data: Any) -> str:
    """`data`: a report.build.ReportData. Its history fragment is trusted HTML (built and escaped there)."""
    rows = data.rows
    columns = [c for c in rows[0] if c != "error" or any(r["error"] for r in rows)] if rows else []
    records = data.records
    story_themes = [st.theme for st in data.stories]
    placed: dict[str, list[tuple[str, str]]] = {}
    more = []
    for title, svg, themes in _plots(data):
        home = next((t for t in themes if t in story_themes), None)
        (placed.setdefault(home, []) if home else more).append((title, svg))
    in_story = {i for st in data.stories for i in st.findings}
    env = next((r.env.model_dump() for r in records if r.env), None) or {}
    bds = {c["id"]: c for c in data.breakdowns}
    cells = [{"id": r.cell_id, "label": r.label, "status": r.status,
              "findings": [(i, data.findings[i]) for i in data.own.get(r.cell_id, [])],
              "bd": bds.get(r.cell_id)} for r in records]
    cv, basis = data.run_cv
    return _ENV.get_template("report.html.j2").render(
        title=data.title,
        run_ids=sorted({r.run_id for r in records}),
        n_cells=len(records),
        n_ok=sum(r.ok for r in records),
        env_line=describe(env) if env else "",
        convention=CONVENTION,
        columns=columns,
        rows=rows,
        stories=[(st, [(i, data.findings[i]) for i in st.findings], placed.get(st.theme, [])) for st in data.stories],
        others=[(i, data.findings[i]) for i in data.cross if i not in in_story],
        more_plots=more,
        cells=cells,
        noise=f"Differences within this machine's run-to-run variation (run CV {cv:.1%}, {basis}) are marked "
              "unresolved, not explained.",
        env={k: v for k, v in env.items() if v is not None and not isinstance(v, dict)},
        history=data.history_html,
        warnings=data.warnings,
        epochs=epoch_cells(records),
        ranks=rank_cells(records),
    )


def _varied(records: list[Record]) -> list[str]:
    import json

    keys = sorted({k for r in records for k in r.params})
    return [k for k in keys if len({json.dumps(r.params.get(k), sort_keys=True) for r in records}) > 1]


def write_html(path: str | Path, text: str) -> Path:
    return write_atomic(path, text)
