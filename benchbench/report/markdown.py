"""Markdown report: the table a user pastes into an issue or a CI summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from benchbench.analysis.summary import display_rows, summary_frame
from benchbench.report.files import write_atomic


def md_escape(text: Any) -> str:
    """Table cells must not break the table or inject markup."""
    s = str(text)
    for ch in ("\\", "|", "`", "*", "_", "<", ">", "[", "]"):
        s = s.replace(ch, "\\" + ch)
    return s.replace("\n", " ")


def render_markdown(records: list[dict[str, Any]], reference_id: str | None = None, title: str | None = None,
                    findings: list[Any] | None = None) -> str:
    suite = records[0].get("suite", "suite") if records else "suite"
    run_ids = sorted({str(r.get("run_id")) for r in records})
    lines = [f"# benchbench: {md_escape(title or suite)}", ""]
    lines.append(f"Run: {', '.join(md_escape(r) for r in run_ids)} · cells: {len(records)} · "
                 f"ok: {sum(r['status'] == 'ok' for r in records)}")
    lines.append("")
    rows = display_rows(summary_frame(records, reference_id))
    df = pd.DataFrame([{k: md_escape(v) for k, v in row.items()} for row in rows])
    if not df.empty and (df["error"] == "").all():
        df = df.drop(columns=["error"])
    lines += [
        "## Cells",
        "",
        "Throughput is images per second from the median step (forward, loss, backward, optimizer, "
        "and any time waiting for data). `vs ref` is throughput relative to the reference cell; "
        "`data wait` is the share of step time blocked on the input pipeline.",
        "",
        df.to_markdown(index=False) if not df.empty else "_no cells_",
        "",
    ]
    if findings is not None:
        lines += ["## Findings", ""]
        if not findings:
            lines.append("_No finding crossed its threshold._")
        for f in findings:
            lines.append(f"- **{md_escape(f.kind)}**: {md_escape(f.sentence)}"
                         + (f" — suggested: {md_escape(f.suggestion)}" if f.suggestion else ""))
        lines.append("")
    from benchbench.report.breakdown import cell_breakdowns

    bds = cell_breakdowns(records)
    if bds:
        from benchbench.measure.flops import CONVENTION

        lines += ["## Per-cell breakdown", "",
                  f"From a short torch.profiler pass after the timed steps. FLOPs: {CONVENTION}.", ""]
        for cell in bds:
            lines += [f"### {md_escape(cell['label'])}", ""]
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
    env = next((r.get("env") for r in records if r.get("env")), None)
    if env:
        lines += ["## Environment", "", "| key | value |", "|---|---|"]
        lines += [f"| {md_escape(k)} | {md_escape(v)} |" for k, v in env.items()
                  if v is not None and not isinstance(v, dict)]
        for dtype, peak in (env.get("peak_flops") or {}).items():
            if peak.get("flops_per_s"):
                lines.append(f"| measured peak {md_escape(dtype)} | {peak['flops_per_s'] / 1e9:.1f} GFLOP/s "
                             f"({peak['n']}^3 matmul, median of {len(peak.get('block_rates') or [1])} blocks) |")
        lines.append("")
    return "\n".join(lines)


def write_markdown(path: str | Path, text: str) -> Path:
    return write_atomic(path, text)
