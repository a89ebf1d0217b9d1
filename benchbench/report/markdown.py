"""Markdown report: the table a user pastes into an issue or a CI summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from benchbench.report.files import write_atomic


def md_escape(text: Any) -> str:
    """Table cells must not break the table or inject markup."""
    s = str(text)
    for ch in ("\\", "|", "`", "*", "_", "<", ">", "[", "]"):
        s = s.replace(ch, "\\" + ch)
    return s.replace("\n", " ")


def _finding_line(data: Any, i: int) -> str:
    f = data.findings[i]
    return (f'- <a id="{data.anchors[i]}"></a>**{md_escape(f.kind)}**: {md_escape(f.sentence)}'
            + (f" — suggested: {md_escape(f.suggestion)}" if f.suggestion else ""))


def render_markdown(data: Any) -> str:
    """`data`: a report.build.ReportData (computed once, rendered here)."""
    records = data.records
    run_ids = sorted({r.run_id for r in records})
    lines = [f"# benchbench: {md_escape(data.title)}", ""]
    lines.append(f"Run: {', '.join(md_escape(r) for r in run_ids)} · cells: {len(records)} · "
                 f"ok: {sum(r.ok for r in records)}")
    if data.warnings:
        lines += ["", "> **Before you read on:**"] + [f"> - {md_escape(w)}" for w in data.warnings]
    lines += ["", "## Headline", ""]
    if not data.stories:
        lines.append("_No finding crossed its threshold._")
    for n, st in enumerate(data.stories, 1):
        tag = st.tag(", measured")
        lines.append(f"{n}. **{md_escape(st.theme)}** ({tag}): {md_escape(st.sentence)} [evidence](#{st.anchor})")
    from benchbench.report.inputs import input_cells
    from benchbench.report.inputs import markdown as input_markdown

    bound = any(c["input_bound"] for c in input_cells(records))
    cv, basis = data.run_cv
    lines += ["", f"_Differences within this machine's run-to-run variation (run CV {cv:.1%}, {basis}) are "
              "marked unresolved, not explained._", ""]
    df = pd.DataFrame([{k: md_escape(v) for k, v in row.items()} for row in data.rows])
    if not df.empty and (df["error"] == "").all():
        df = df.drop(columns=["error"])
    inputs = input_markdown(records, md_escape)
    if bound:  # an input-bound cell: its pipeline's stages come first, right after the headline
        lines += inputs
    lines += [
        '<a id="cells"></a>', "## Cells",
        "",
        "Throughput is images per second from the median step (forward, loss, backward, optimizer, "
        "and any time waiting for data). `vs ref` is throughput relative to the reference cell; "
        "`data wait` is the share of step time blocked on the input pipeline; `run CV` the spread between "
        "repeated runs (`run --repeat`).",
        "",
        df.to_markdown(index=False) if not df.empty else "_no cells_",
        "",
    ]
    lines += ["## Across cells", ""]
    lines += [_finding_line(data, i) for i in data.cross] or ["_No cross-cell finding._"]
    lines.append("")
    from benchbench.measure.flops import CONVENTION

    bds = {c["id"]: c for c in data.breakdowns}
    cells = [r for r in records if r.cell_id in bds or r.cell_id in data.own]
    if cells:
        lines += ["## Per cell", "", f"Breakdowns from a short torch.profiler pass after the timed steps. "
                  f"FLOPs: {CONVENTION}.", ""]
    for r in cells:
        lines += [f"### {md_escape(r.label)}", ""]
        lines += [_finding_line(data, i) for i in data.own.get(r.cell_id, [])]
        if data.own.get(r.cell_id):
            lines.append("")
        cell = bds.get(r.cell_id)
        if not cell:
            continue
        for key, cols in (("phases", ("name", "s", "share")), ("modules", ("name", "fwd", "bwd", "gmac", "act")),
                          ("ops", ("name", "s", "calls", "share"))):
            heads = {"name": key[:-1] if key != "ops" else "operator", "s": "s/step", "share": "share",
                     "fwd": "forward s", "bwd": "backward s", "gmac": "fwd GMAC/img", "act": "activations MiB",
                     "calls": "calls/step"}
            lines.append("| " + " | ".join(heads[c] for c in cols) + " |")
            lines.append("|" + "---|" * len(cols))
            lines += ["| " + " | ".join(md_escape(row[c]) for c in cols) + " |" for row in cell[key]]
            lines.append("")
        if cell["gpu"]:
            lines += ["| GPU timeline (per step) | |", "|---|---|"]
            lines += [f"| {md_escape(row['name'])} | {md_escape(row['value'])} |" for row in cell["gpu"]]
            lines.append("")
    if not bound:
        lines += inputs
    from benchbench.report.epochs import markdown as epoch_markdown

    lines += epoch_markdown(records, md_escape)
    from benchbench.report.ranks import markdown as rank_markdown

    lines += rank_markdown(records, md_escape)
    env = next((r.env.model_dump() for r in records if r.env), None)
    if env:
        lines += ["## Environment", "", "| key | value |", "|---|---|"]
        lines += [f"| {md_escape(k)} | {md_escape(v)} |" for k, v in env.items()
                  if v is not None and not isinstance(v, dict)]
        for dtype, peak in (env.get("peak_flops") or {}).items():
            if peak.get("flops_per_s"):
                lines.append(f"| measured peak {md_escape(dtype)} | {peak['flops_per_s'] / 1e9:.1f} GFLOP/s "
                             f"({peak['n']}^3 matmul, median of {len(peak.get('block_rates') or [1])} blocks"
                             + (f"; kept from {peak.get('calibrated_at') or 'an earlier run'} on this machine"
                                if peak.get("cached") else "") + ") |")
        lines.append("")
    return "\n".join(lines)


def write_markdown(path: str | Path, text: str) -> Path:
    return write_atomic(path, text)
