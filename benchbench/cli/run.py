"""`benchbench run`, `list`, `env` and `tune-batch`: the commands that run cells."""

from __future__ import annotations

import os
import signal
import time
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
    FilterOpt,
    Interrupted,
    _on_sigterm,
    _suite,
    app,
    console,
    err_console,
)
from benchbench.errors import BenchbenchError
from benchbench.record import Record


@app.command()
def run(
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="Suite YAML file.")],
    device: DeviceOpt = "auto",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Results JSONL file to append to.")] = None,
    filter: FilterOpt = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Results file to continue (skip its ok cells), or 'latest' for this suite's."),
    ] = None,
    isolation: Annotated[str, typer.Option("--executor", "--isolation", help="process (default: one process per cell), "
                                           "inline (debugging) or slurm (each cell a SLURM job, via submitit).")]
    = "process",
    slurm_partition: Annotated[str | None, typer.Option(help="SLURM partition.")] = None,
    gpus_per_cell: Annotated[int | None, typer.Option(help="SLURM: GPUs per cell (x world_size) [default: 0].")]
    = None,
    max_parallel: Annotated[int | None, typer.Option(help="SLURM: jobs in flight at once [default: 8].")] = None,
    slurm_time: Annotated[int | None, typer.Option(help="SLURM: a job's time limit in minutes [default: 60].")]
    = None,
    slurm_setup: Annotated[list[str] | None, typer.Option(help="SLURM: a shell line run before each job "
                                                             "(repeatable), e.g. 'module load cuda'.")] = None,
    slurm_constraint: Annotated[str | None, typer.Option(help="SLURM: node constraint, e.g. the GPU type the "
                                                            "baseline was taken on.")] = None,
    cells_per_job: Annotated[int | None, typer.Option(help="SLURM: cells per job (amortises a job's start) "
                                                         "[default: 1].")] = None,
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
    shard: Annotated[str | None, typer.Option(help="Run shard K/N of the cells (deterministic, cost-balanced).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print library warnings as they come.")] = False,
) -> None:
    """Run every cell of a suite, append one JSON line per cell, print and write a comparison."""
    signal.signal(signal.SIGTERM, _on_sigterm)  # from the start: a SIGTERM before the first cell is said too
    if not verbose:
        # Library warnings go to the records and the run's log, not into the progress display;
        # cell processes (fork server) inherit the filter.
        import warnings

        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        warnings.simplefilter("ignore")
    from benchbench import results as res
    from benchbench.measure.env import environment
    from benchbench.runner import RunOptions, calibrate_peak, preflight
    from benchbench.runner.executors import get_executor

    slurm_given = {"--slurm-partition": slurm_partition, "--gpus-per-cell": gpus_per_cell,
                   "--max-parallel": max_parallel, "--slurm-time": slurm_time, "--slurm-setup": slurm_setup,
                   "--slurm-constraint": slurm_constraint, "--cells-per-job": cells_per_job}
    given = [k for k, v in slurm_given.items() if v is not None]
    if given and isolation != "slurm":
        raise BenchbenchError(f"{', '.join(given)} set(s) how SLURM jobs are submitted: they apply with --executor "
                              f"slurm only (this run's executor is {isolation!r})")
    slurm = {k: v for k, v in {"partition": slurm_partition, "gpus_per_cell": gpus_per_cell,
                               "max_parallel": max_parallel, "time_min": slurm_time, "setup": slurm_setup,
                               "constraint": slurm_constraint, "cells_per_job": cells_per_job}.items()
             if v is not None}
    executor = get_executor(isolation)  # an unknown executor is an input error before anything runs
    if isolation == "slurm":
        executor = get_executor("slurm", **slurm)  # its options checked before anything runs
    if repeat is not None and repeat < 1:
        raise BenchbenchError(f"--repeat must be at least 1, got {repeat}")
    prior: list[dict[str, Any]] = []
    if resume:
        from benchbench.runner.plan import continue_invocation, resume_path

        whole = _suite(suite_path, device, None)
        out_path = resume_path(resume, results_dir, whole.slug)
        res.ResultStore(out_path).repair_tail()  # a run cut mid-write (full disk) resumes on a whole file
        # interrupted before its first record: nothing to continue but the file itself
        prior = res.read_records([out_path], warn=True) if out_path.stat().st_size else []
        filter, shard, repeat, explain, note = continue_invocation(prior, whole.name, suite_path, filter, shard,
                                                                   repeat, explain)
        if note:
            err_console.print(f"warning: {note}", highlight=False)
    repeat, explain = repeat or 1, True if explain is None else explain
    from benchbench.record.parts import Invocation
    from benchbench.runner.plan import file_sha1

    invocation = Invocation(suite_sha1=file_sha1(suite_path), filters=list(filter or []), shard=shard,
                            repeat=repeat, explain=explain)
    suite = _suite(suite_path, device, filter)
    if shard:
        from benchbench.suite import shard_cells

        suite.cells = shard_cells(suite.cells, shard)
        if not suite.cells:
            console.print(f"shard {shard} has no cells (the suite has fewer cells than shards)")
            return
    with console.status(f"validating {len(suite.cells)} cells (building each model on the meta device)"):
        preflight(suite.cells, isolation)

    done_count: dict[str, int] = {}
    if resume:
        done_count = res.completed_runs(prior)
        run_id = prior[-1].run_id if prior else res.new_run_id()
    else:
        run_id = res.new_run_id()
        out_path = output or res.default_path(results_dir, suite.slug, run_id)
    if output and resume:
        out_path = output
    store = res.ResultStore(out_path)
    from benchbench.outputs import Outputs

    # Every output before the first cell is measured, not after: the results, the reports' folder, the traces'.
    Outputs().folder(Path(reports_dir) / suite.slug, "the reports (--reports-dir)").folder(
        trace, "the traces (--trace)").check()
    store.check_writable()
    if isolation == "slurm":  # its job folder lives beside the run's results, removed when every job is back
        executor = get_executor("slurm", folder=out_path.parent / ".submitit" / run_id, **slurm)
    from benchbench.runner.loop import plan, run_planned

    todo = plan(suite.cells, repeat, done_count)
    done = {c for c, n in done_count.items() if n >= repeat}
    env_info = dict(environment(suite.device))
    if explain and todo and isolation != "slurm":  # on SLURM each job measures its own node
        with console.status("calibrating the device's peak matmul rate"):
            env_info["peak_flops"] = calibrate_peak(suite, isolation)
    console.print(
        f"[bold]{suite.name}[/]: {len(suite.cells)} cells on {suite.device}"
        + (f", {len(done)} already ok (resumed)" if done else "")
        + f" -> {out_path}",
        highlight=False,
    )

    records: list[Record] = []
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    interrupted = write_failed = refused = False
    t0 = time.monotonic()
    try:
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            task = progress.add_task("starting", total=len(todo))
            options = RunOptions(isolation=isolation, explain=explain, trace_dir=str(trace) if trace else None)
            started = iter(range(1, len(todo) + 1))

            def on_start(payload: dict[str, Any]) -> None:
                progress.update(task, description=f"cell {next(started)}/{len(todo)} {payload['label']}")

            if hasattr(executor, "on_status"):  # a cluster: its jobs' states
                executor.on_status = lambda n: progress.update(task, description=(
                    f"SLURM jobs: {n['queued']} queued, {n['running']} running, {n['done']} done, "
                    f"{n['failed']} failed"))

            for rec in run_planned(suite, todo, run_id, env_info, options, executor, on_start):
                rec = rec.model_copy(update={"invocation": invocation})
                store.append(rec)
                records.append(rec)
                if rec.warnings:
                    _log_warnings(out_path, rec, progress.console if verbose else None)
                progress.advance(task)
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
    except res.ResultsWriteError as exc:
        interrupted = True
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        write_failed = True
    except BenchbenchError as exc:  # the executor refused to go on (SLURM refused a job): what ran is kept
        interrupted = True
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        refused = True
    finally:
        signal.signal(signal.SIGTERM, old_term)

    report_failed = False
    all_records = (res.read_records([out_path], warn=False) if out_path.exists() and out_path.stat().st_size
                   else [])
    # An --output file may hold earlier runs too: the table and report show this run.
    latest = res.merge_repeats([r for r in all_records if r.run_id == run_id])
    if latest:
        from benchbench.report.build import build, headline_lines, write_reports

        data = build(latest, suite.reference.id, suite.name, suite.varied)
        _print_table(data.rows)
        for line in headline_lines(data):
            console.print(escape(line), highlight=False)
        try:
            paths = write_reports(data, Path(reports_dir) / suite.slug / run_id, ["md", "html"])
        except BenchbenchError as exc:  # a full disk since the check: the results are safe, say how to report
            paths = []
            report_failed = True
            err_console.print(f"error: {escape(str(exc))}; the results are kept: make the reports later with "
                              f"`benchbench report {out_path}`", highlight=False, soft_wrap=True)
        console.print(f"results: {out_path}\nreports: " + ", ".join(map(str, paths)), highlight=False)
    console.print(f"elapsed {time.monotonic() - t0:.1f} s", highlight=False)
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
    if interrupted:
        # soft_wrap: the command is one line however narrow the log, so it can be pasted as it is
        err_console.print(
            f"interrupted: {len(records)} of {len(todo)} runs recorded in {out_path}.\n"
            f"Resume with: benchbench run {suite_path} --resume {out_path}",
            highlight=False, soft_wrap=True,
        )
        raise typer.Exit(1 if write_failed else 2 if refused else 130)
    if report_failed:
        raise typer.Exit(2)
    failed = [r for r in latest if not r.ok]
    if failed and not allow_failures:
        err_console.print(f"{len(failed)} of {len(latest)} cells did not finish ok", highlight=False)
        raise typer.Exit(1)


def _log_warnings(out_path: Path, rec: Record, echo: Any) -> None:
    """The run's log beside its results: what libraries warned about, per cell."""
    lines = [f"{rec.started_at} cell {rec.cell_id} ({rec.label}): {w}" for w in rec.warnings or []]
    with open(out_path.with_suffix(".log"), "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    if echo is not None:
        for line in lines:
            echo.print(escape(line), style="yellow", highlight=False)


def _print_table(rows: list[dict[str, str]]) -> None:
    table = Table(title="results")
    cols = [c for c in rows[0] if c != "error"] + (["error"] if any(r["error"] for r in rows) else [])
    for c in cols:
        table.add_column(c, justify="right" if c in ("img/s", "cv", "data wait", "GPU starved", "GPU busy ms", "GPU idle", "params M",
                                                  "vs ref") else "left",
                         overflow="fold")
    for r in rows:
        table.add_row(*[r[c] for c in cols], style=None if r["status"] == "ok" else "red")
    console.print(table)
