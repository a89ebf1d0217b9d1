"""`benchbench run`: every cell of a suite, through a session (`benchbench.session`), rendered and exit-coded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from benchbench.cli.app import (
    DeviceOpt,
    ExecutorOpt,
    FilterOpt,
    Parts,
    _suite,
    app,
    console,
    err_console,
    executor_choice,
    with_executor_options,
)
from benchbench.errors import BenchbenchError
from benchbench.record import Record


def progress_bar() -> Progress:
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def progress_events(progress: Progress, task: Any, total: int) -> Any:
    """An executor's progress events shown on one bar: each cell started, a cluster's job counts."""
    from benchbench.runner.executor import Started, Status

    started = iter(range(1, total + 1))

    def on(event: Any) -> None:
        if isinstance(event, Started):
            progress.update(task, description=f"cell {next(started, total)}/{total} {event.payload['label']}")
        elif isinstance(event, Status):
            progress.update(task, description=f"{event.what}: " + ", ".join(f"{n} {k}" for k, n in
                                                                              event.counts.items()))

    return on


def stopped(session: Any, outcome: Any, done: int, total: int, command: str, device: str,
            outputs: tuple[str, ...] = ()) -> None:
    """Say how a session stopped and how to continue it (one line, pasteable from any log), and exit."""
    if outcome.write_failed or outcome.refused:
        err_console.print(f"[bold red]error:[/] {escape(outcome.write_failed or outcome.refused)}", highlight=False,
                          soft_wrap=True)
    err_console.print(f"interrupted: {done} of {total} runs recorded in {session.out_path}.\n"
                      f"Resume with: {session.resume_command(command, device, outputs)}", highlight=False,
                      soft_wrap=True)
    raise typer.Exit(outcome.exit_code)


@app.command()
@with_executor_options
def run(
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="Suite YAML file.")],
    device: DeviceOpt = "auto",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Results JSONL file to append to.")] = None,
    filter: FilterOpt = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Results file to continue (skip its ok cells), or 'latest' for this suite's."),
    ] = None,
    isolation: ExecutorOpt = "process",
    results_dir: Annotated[Path, typer.Option(help="Where results/<suite>/<run-id>.jsonl goes.")] = Path("results"),
    reports_dir: Annotated[Path, typer.Option(help="Where reports/<suite>/<run-id>.md goes.")] = Path("reports"),
    allow_failures: Annotated[bool, typer.Option(help="Exit 0 even when some cells failed.")] = False,
    explain: Annotated[
        bool | None, typer.Option(help="FLOPs, memory and profiler passes after each cell's timed steps "
                                       "(default on; a resumed run keeps its own).")
    ] = None,
    trace: Annotated[Path | None, typer.Option(help="Write each cell's profiler trace (Chrome JSON) here.")] = None,
    repeat: Annotated[int | None, typer.Option(help="Run every cell N times, each in a fresh process (noise "
                                                    "calibration; default 1; a resumed run keeps its own).")] = None,
    shard: Annotated[str | None, typer.Option(help="Run shard K/N of the cells (deterministic, "
                                                   "cost-balanced).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print library warnings as they come, and "
                                                                    "where the run's time went.")] = False,
    recalibrate: Annotated[bool, typer.Option(help="Measure the device's peak matmul rate again.")] = False,
    retry_contended: Annotated[int, typer.Option(help="Re-measure a cell timed on CPU cores another process held "
                                                      "(or a throttled or shared GPU) up to N times, each once the "
                                                      "machine is quiet again.")] = 0,
    retry_wait: Annotated[float, typer.Option(help="--retry-contended: the longest wait for a quiet machine, in "
                                                   "seconds, before each retry.")] = 600.0,
    executor_options: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Run every cell of a suite, append one JSON line per cell, print and write a comparison."""
    if not verbose:
        # Library warnings go to the records and the run's log, not into the progress display;
        # cell processes (fork server) inherit the filter.
        import warnings

        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        warnings.simplefilter("ignore")
    from benchbench.session import Session

    if repeat is not None and repeat < 1:
        raise BenchbenchError(f"--repeat must be at least 1, got {repeat}")
    if retry_contended < 0 or retry_wait < 0:
        raise BenchbenchError("--retry-contended and --retry-wait must be 0 or more")
    chosen = executor_choice(isolation, executor_options or {})

    def load(opts: dict[str, Any]) -> Any:
        suite = _suite(suite_path, device, opts.get("filters") or None)
        if opts.get("shard"):
            from benchbench.suite import shard_cells

            suite.cells = shard_cells(suite.cells, opts["shard"])
        return suite

    session = Session.open("run", load, suite_path, given={"filters": list(filter) if filter else None,
                                                           "shard": shard, "repeat": repeat, "explain": explain},
                           defaults={"repeat": 1, "explain": True}, executor=isolation, executor_options=chosen,
                           output=output, results_dir=results_dir, resume=resume)
    try:
        _run(session, device, reports_dir, trace, allow_failures, verbose, (retry_contended, retry_wait),
             recalibrate)
    finally:
        session.close()


def _run(session: Any, device: str, reports_dir: Path, trace: Path | None, allow_failures: bool,
         verbose: bool, retry: tuple[int, float] = (0, 0.0), recalibrate: bool = False) -> None:
    from benchbench import results as res
    from benchbench.measure.peak_cache import all_kept
    from benchbench.outputs import Outputs
    from benchbench.runner import RunOptions, preflight
    from benchbench.runner.loop import plan, run_planned
    from benchbench.runner.server import server_early

    suite, opts = session.suite, session.options
    if session.note:
        err_console.print(f"warning: {session.note}", highlight=False)
    if opts.get("shard") and not suite.cells:
        console.print(f"shard {opts['shard']} has no cells (the suite has fewer cells than shards)")
        return
    parts = Parts()
    # the cells' fork server imports torch and SMP beside the preflight and the calibration (ended if they fail)
    with server_early(session.executor_name == "process"):
        with console.status(f"validating {len(suite.cells)} cells (building each model on the meta device)"):
            preflight(suite.cells, session.executor_name)
        parts.mark("preflight")
        # Every output before the first cell is measured, not after: the results, the reports' and traces' folders.
        session.check_outputs(Outputs().folder(Path(reports_dir) / suite.slug, "the reports (--reports-dir)")
                              .folder(trace, "the traces (--trace)"))
        done_count = res.completed_runs(session.prior)
        todo = plan(suite.cells, opts["repeat"], done_count)
        done = {c for c, n in done_count.items() if n >= opts["repeat"]}
        with console.status("calibrating the device's peak matmul rate"):
            env_info = session.environment(calibrate=bool(opts["explain"] and todo), recalibrate=recalibrate)
        parts.mark("calibration" + (" (kept)" if all_kept(env_info.get("peak_flops")) else ""))
    options = RunOptions(isolation=session.executor_name, explain=opts["explain"],
                         trace_dir=str(trace) if trace else None)
    # The first line says measuring begins: a stop from here on is told as one, with the command that resumes.
    with session.measuring() as outcome:
        console.print(f"[bold]{suite.name}[/]: {len(suite.cells)} cells on {suite.device}"
                      + (f", {len(done)} already ok (resumed)" if done else "") + f" -> {session.out_path}",
                      highlight=False)
        with progress_bar() as progress:
            task = progress.add_task("starting", total=len(todo))
            for rec in run_planned(suite, todo, session.run_id, env_info, options, session.executor,
                                   progress_events(progress, task, len(todo))):
                rec = session.record(rec)
                if rec.warnings:
                    _log_warnings(session.out_path, rec, progress.console if verbose else None)
                progress.advance(task)
            _retry_contended(session, env_info, options, retry, progress.console)
    parts.mark("cells")
    report_failed = _report(session, reports_dir)
    parts.mark("reports")
    console.print(parts.line(verbose), highlight=False)
    _warn_unexplained(session.records, session.out_path, verbose)
    if outcome.stopped:
        stopped(session, outcome, len(session.records), len(todo), "run", device,
                () if Path(reports_dir) == Path("reports") else ("--reports-dir", str(reports_dir)))
    if report_failed:
        raise typer.Exit(2)
    latest = res.pool_repeats(list(_this_run(session)))
    failed = [r for r in latest if not r.ok]
    if failed and not allow_failures:
        err_console.print(f"{len(failed)} of {len(latest)} cells did not finish ok", highlight=False)
        raise typer.Exit(1)


def _retry_contended(session: Any, env_info: dict[str, Any], options: Any, retry: tuple[int, float],
                     out: Any) -> None:
    """`--retry-contended N`: each cell whose latest run was timed on an unfit machine is measured again once the
    machine is quiet (`measure.contention.wait_quiet`), up to N times; every record stays in the results file,
    the report pools the fit ones (`results.pool_repeats`), and the terminal says how long it waited."""
    from benchbench.measure.contention import wait_quiet
    from benchbench.runner.loop import run_planned

    tries, max_wait = retry
    cells = {c.id: c for c in session.suite.cells}
    for attempt in range(1, tries + 1):
        latest: dict[tuple[str, int], Record] = {}
        for r in session.records:
            latest[(r.cell_id, r.repeat or 0)] = r
        bad = [r for r in latest.values() if r.ok and r.degraded() and r.cell_id in cells]
        if not bad:
            return
        quiet, waited, why = wait_quiet(max_wait)
        if not quiet:
            out.print(f"[yellow]warning:[/] {len(bad)} cell(s) measured on an unfit machine and still no quiet "
                      f"machine after {waited:.0f} s ({escape(str(why))}): kept as measured, flagged in the "
                      "report", highlight=False)
            return
        out.print(f"retry {attempt}/{tries}: {len(bad)} contended cell(s) measured again after waiting "
                  f"{waited:.0f} s for a quiet machine", highlight=False)
        planned = [(cells[r.cell_id], r.repeat or 0) for r in bad]
        first = {r.cell_id: r.degraded() for r in bad}
        for rec in run_planned(session.suite, planned, session.run_id, env_info, options, session.executor):
            rec = rec.model_copy(update={"remeasured": {"attempt": attempt, "waited_s": round(waited, 1),
                                                        "unfit_before": first.get(rec.cell_id)}})
            session.record(rec)


def _this_run(session: Any) -> list[Record]:
    """This run's records in its file (an --output file may hold earlier runs too)."""
    from benchbench import results as res

    p = session.out_path
    recs = res.read_records([p], warn=False) if p.exists() and p.stat().st_size else []
    return [r for r in recs if r.run_id == session.run_id]


def _report(session: Any, reports_dir: Path) -> bool:
    """Print the table and headline, write the reports; True when they could not be written (a full disk)."""
    from benchbench import results as res
    from benchbench.report.build import build, headline_lines, write_reports

    latest = res.pool_repeats(_this_run(session))
    if not latest:
        return False
    suite = session.suite
    data = build(latest, suite.reference.id, suite.name, suite.varied)
    _print_table(data.rows)
    for line in headline_lines(data):
        console.print(escape(line), highlight=False)
    try:
        paths = write_reports(data, Path(reports_dir) / suite.slug / session.run_id, ["md", "html"])
    except BenchbenchError as exc:  # a full disk since the check: the results are safe, say how to report
        err_console.print(f"error: {escape(str(exc))}; the results are kept: make the reports later with "
                          f"`benchbench report {session.out_path}`", highlight=False, soft_wrap=True)
        return True
    console.print(f"results: {session.out_path}\nreports: " + ", ".join(map(str, paths)), highlight=False)
    return False


def _warn_unexplained(records: list[Record], out_path: Path, verbose: bool) -> None:
    unexplained = [r for r in records if r.explain_errors]
    if unexplained:  # measured, but part of the why is missing: said, never silent
        first = unexplained[0]
        name, why = next(iter((first.explain_errors or {}).items()))
        err_console.print(f"warning: {len(unexplained)} cell(s) were measured but an explanation pass failed "
                          f"(record field explain_errors), e.g. {escape(first.label)}: {name}: "
                          f"{escape(str(why))[:300]}", style="yellow", highlight=False, soft_wrap=True)
    n_warn = sum(len(r.warnings or []) for r in records)
    if n_warn and not verbose:
        console.print(f"{n_warn} library warning(s) recorded in {out_path.with_suffix('.log')} (--verbose prints "
                      "them)", style="dim", highlight=False)


def _log_warnings(out_path: Path, rec: Record, echo: Any) -> None:
    """The run's log beside its results: what libraries warned about, per cell."""
    lines = [f"{rec.started_at} cell {rec.cell_id} ({rec.label}): {w}" for w in rec.warnings or []]
    with open(out_path.with_suffix(".log"), "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    if echo is not None:
        for line in lines:
            echo.print(escape(line), style="yellow", highlight=False)


def _print_table(rows: list[dict[str, str]]) -> None:
    from benchbench.analysis.summary import RIGHT

    table = Table(title="results")
    cols = [c for c in rows[0] if c != "error"] + (["error"] if any(r["error"] for r in rows) else [])
    for c in cols:
        table.add_column(c, justify="right" if c in RIGHT else "left", overflow="fold")
    for r in rows:
        table.add_row(*[r[c] for c in cols], style=None if r["status"] == "ok" else "red")
    console.print(table)
