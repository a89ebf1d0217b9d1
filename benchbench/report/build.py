"""What a report says, computed once: rows, findings, the ranked headline, findings by cell, breakdowns.

The terminal, Markdown and HTML only render a `ReportData` (as pytest-benchmark's table.py renders what its
Stats derived): the summary table is computed once per report, findings once, the history check once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchbench.analysis.findings import Finding, find_all
from benchbench.analysis.headline import Story, cell_findings, stories
from benchbench.analysis.records import run_cv
from benchbench.analysis.summary import display_rows, summary_frame
from benchbench.analysis.trust import warnings
from benchbench.record import Record
from benchbench.report.breakdown import cell_breakdowns


@dataclass
class ReportData:
    records: list[Record]
    title: str
    reference_id: str | None
    varied: list[str] | None
    rows: list[dict[str, str]]
    findings: list[Finding]
    stories: list[Story]
    own: dict[str, list[int]]  # cell id -> indexes of its own findings
    cross: list[int]  # cross-cell findings
    breakdowns: list[dict[str, Any]]
    run_cv: tuple[float, str]
    history_html: str | None = None
    warnings: list[str] = field(default_factory=list)  # the machine or a cell's noise: said before anything
    anchors: dict[int, str] = field(default_factory=dict)  # finding index -> where it is shown


def build(records: list[Record], reference_id: str | None, title: str, varied: list[str] | None = None,
          pairs: list[tuple[str, str]] | None = None, history_db: Path | None = None) -> ReportData:
    findings = find_all(records, pairs=pairs)
    own, cross = cell_findings(findings)
    data = ReportData(records, title, reference_id, varied, display_rows(summary_frame(records, reference_id)),
                      findings, stories(records, findings, reference_id), own, cross, cell_breakdowns(records),
                      run_cv(records))
    data.anchors = {i: f"finding-{i}" for i in range(len(findings))}
    data.warnings = warnings(records)
    if history_db:
        from benchbench.history.check import check
        from benchbench.history.store import load_series
        from benchbench.report.history import history_section

        cells = {r.cell_id for r in records}
        found = [s for s in load_series(history_db, records[0].suite, None) if s.cell_id in cells]
        if found:
            data.history_html = history_section(found, check(found, None, last=10**9))  # each cell's threshold
    return data


def headline_lines(data: ReportData, limit: int = 5) -> list[str]:
    """The headline as plain sentences, strongest first (terminal and summaries)."""
    out = [f"warning: {w}" for w in data.warnings]
    for i, s in enumerate(data.stories[:limit], 1):
        out.append(f"{i}. [{s.theme}, {s.tag()}] {s.sentence}")
    return out


def write_reports(data: ReportData, stem: Path, formats: list[str]) -> list[Path]:
    from benchbench.report.markdown import render_markdown, write_markdown

    paths = []
    if "md" in formats:
        paths.append(write_markdown(stem.with_suffix(".md"), render_markdown(data)))
    if "html" in formats:
        from benchbench.report.html import render_html, write_html

        paths.append(write_html(stem.with_suffix(".html"), render_html(data)))
    return paths
