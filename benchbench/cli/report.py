"""`benchbench report`: Markdown and HTML reports from results files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from benchbench.cli.app import (
    app,
    console,
)
from benchbench.errors import BenchbenchError


@app.command()
def report(
    results: Annotated[list[Path], typer.Argument(metavar="RESULTS...", help="Results JSONL files or directories.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for the reports.")] = Path("reports"),
    format: Annotated[str, typer.Option("--format", help="Comma-separated: md, html.")] = "md,html",
    reference: Annotated[str | None, typer.Option(help="Cell id (prefix) or label of the reference.")] = None,
    pair: Annotated[
        list[str] | None, typer.Option("--pair", help="Explain the difference of two cells: A,B (ids or labels).")
    ] = None,
    history: Annotated[Path | None, typer.Option("--history", help="A history store: adds each cell's trend "
                                                    "over nights to the HTML report.")] = None,
    traces: Annotated[Path | None, typer.Option("--traces", help="A folder of profiler traces named by cell id "
                                                   "(run --trace): each cell's breakdown is rebuilt from its "
                                                   "GPU timeline.")] = None,
) -> None:
    """Write Markdown and HTML reports (tables, findings, plots) from results files."""
    from benchbench import results as res
    from benchbench.outputs import check_folder
    from benchbench.suite import slugify

    formats = [f.strip().lower() for f in format.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("md", "html")]
    if bad or not formats:
        raise BenchbenchError(f"--format takes md and/or html, got {format!r}")
    check_folder(output, "the reports (--output)")
    pairs = []
    for p in pair or []:
        a, sep, b = p.partition(",")
        if not sep or not a or not b:
            raise BenchbenchError(f"--pair expects A,B (two cell ids or labels), got {p!r}")
        pairs.append((a.strip(), b.strip()))
    records = res.pool_repeats(res.read_records(results))
    if traces:
        from benchbench.analysis.trace import attach_traces

        records = attach_traces(records, traces)
    ref_id = None
    if reference:
        match = [r for r in records if r.cell_id.startswith(reference) or r.label == reference]
        if not match:
            raise BenchbenchError(f"--reference {reference!r} matches no cell in the results")
        ref_id = match[0].cell_id
    suite = records[0].suite or "results"
    run_ids = sorted({r.run_id for r in records})
    stem = output / slugify(suite) / slugify(run_ids[-1] if len(run_ids) == 1 else f"{run_ids[0]}-merged")
    from benchbench.report.build import build, headline_lines, write_reports

    data = build(records, ref_id, suite, None, pairs or None, history)
    paths = write_reports(data, stem, formats)
    for line in headline_lines(data):
        console.print(escape(line), highlight=False)
    console.print("reports: " + ", ".join(map(str, paths)), highlight=False)
