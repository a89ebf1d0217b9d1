"""`benchbench history add / show / check`: nights, trends and change points."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from benchbench.cli.app import (
    _records,
    app,
    console,
    err_console,
)
from benchbench.errors import BenchbenchError
from benchbench.history.store import load_series
from benchbench.policy import GATE, HISTORY

history_app = typer.Typer(help="Every night in one store; trends and change points per cell.", no_args_is_help=True)
app.add_typer(history_app, name="history")
DbOpt = Annotated[Path, typer.Option("--db", help="The history store (SQLite).")]


@history_app.command("add")
def history_add(
    results: Annotated[list[Path], typer.Argument(metavar="RESULTS...", help="Results files or directories.")],
    db: DbOpt = Path("results/history.db"),
) -> None:
    """Add results to the store (adding the same file twice adds nothing)."""
    from benchbench.history.store import HistoryStore

    store = HistoryStore(db)
    total_added = total_seen = 0
    for path in results:
        added, seen = store.add(_records([path]), source=str(path))
        total_added += added
        total_seen += seen
    console.print(f"{total_added} records added, {total_seen} already there -> {db} ({store.count()} in all)",
                  highlight=False)
    store.close()


@history_app.command("show")
def history_show(
    db: DbOpt = Path("results/history.db"),
    suite: Annotated[str | None, typer.Option("--suite", help="Only this suite.")] = None,
    cell: Annotated[str | None, typer.Option("--cell", help="Only this cell (id prefix or label).")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write a trend plot: .png or .html.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Minimum change marked on the plot [default: each cell's "
                                                    f"gate_threshold, else {GATE.threshold}].")] = None,
) -> None:
    """Each cell's nights (median step time, p10-p90 band), change points marked."""
    from benchbench.history.check import check
    from benchbench.outputs import check_file

    if output and output.suffix.lower() not in (".png", ".html"):
        raise BenchbenchError(f"-o must end in .png or .html, got {output.name}")
    if output:
        check_file(output, "the trend plot (-o)")
    all_series = load_series(db, suite, cell)
    found = check(all_series, threshold, last=10**9)
    table = Table(title=f"history: {db}")
    for col in ("suite", "cell", "env", "nights", "first", "last", "step ms (last)", "epoch s (last)", "changes"):
        table.add_column(col)
    for s in all_series:
        n = sum(1 for c in found if (c.cell_id, c.fingerprint) == (s.cell_id, s.fingerprint))
        table.add_row(escape(s.suite), escape(s.label), (s.fingerprint or "?")[:8], str(len(s.nights)),
                      s.nights[0].started_at, s.nights[-1].started_at, f"{s.nights[-1].median_s * 1e3:.2f}",
                      f"{s.nights[-1].epoch_s:.2f}" if s.nights[-1].epoch_s else "-", str(n))
    console.print(table)
    if output:
        from benchbench.report.history import write_trend

        write_trend(output, all_series, found)
        console.print(f"trend plot -> {output}", highlight=False)


@history_app.command("check")
def history_check(
    db: DbOpt = Path("results/history.db"),
    last: Annotated[int, typer.Option("--last", help="Fail on a slowdown that starts within the last K nights.")] = (
        HISTORY.last),
    threshold: Annotated[float | None, typer.Option(help="Minimum change (0.05 = 5%) for every cell [default: each "
                                                    f"cell's gate_threshold, else {GATE.threshold}].")] = None,
    suite: Annotated[str | None, typer.Option("--suite", help="Only this suite.")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write a Markdown summary here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the change points as JSON here.")] = None,
) -> None:
    """Change points (E-divisive means) in every cell's series; exit 1 on a recent slowdown."""
    from benchbench.history.check import check, failing
    from benchbench.outputs import Outputs, write_text
    from benchbench.report.history import change_text

    if threshold is not None and not 0 < threshold < 1:
        raise BenchbenchError(f"--threshold must be between 0 and 1, got {threshold}")
    if last < 1:
        raise BenchbenchError(f"--last must be at least 1, got {last}")
    Outputs().file(markdown, "the Markdown summary (--markdown)").file(json_out, "the JSON (--json)").check()
    all_series = load_series(db, suite, None)
    found = check(all_series, threshold, last)
    for c in found:
        style = "red" if c.recent and c.direction == "slower" else ("yellow" if c.recent else None)
        console.print(escape(("RECENT " if c.recent else "") + change_text(c)), style=style, highlight=False)
    if not found:
        console.print(f"no change of {_thr(threshold)} or more in {len(all_series)} series", highlight=False)
    if markdown:
        from benchbench.report.markdown import md_escape

        lines = [f"## benchbench history check: {'regression' if failing(found) else 'no recent regression'}", "",
                 f"{len(all_series)} series, threshold {_thr(threshold)}, last {last} night(s).", ""]
        lines += [f"- {'**recent** ' if c.recent else ''}{md_escape(change_text(c))}" for c in found] or [
            "_No change._"
        ]
        write_text(markdown, "\n".join(lines) + "\n", "the Markdown summary (--markdown)")
    if json_out:
        write_text(
            json_out,
            json.dumps({"threshold": threshold, "last": last, "changes": [c.to_dict() for c in found]}, indent=2),
            "the JSON (--json)",
        )
    if failing(found):
        err_console.print(f"regression: {len(failing(found))} slowdown(s) in the last {last} night(s)", highlight=False)
        raise typer.Exit(1)


def _thr(threshold: float | None) -> str:
    return f"{threshold:.0%}" if threshold is not None else f"each cell's gate_threshold (else {GATE.threshold:.0%})"
