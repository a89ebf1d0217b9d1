"""`benchbench run`, `list`, `env` and `tune-batch`: the commands that run cells."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Annotated, Any, Optional

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
from benchbench.measurement import is_ok


@app.command("list")
def list_cmd(
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="Suite YAML file.")],
    device: DeviceOpt = "auto",
    filter: FilterOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every cell's resolved settings as JSON.")] = False,
) -> None:
    """Show the expanded cells, their stable ids and the settings they resolve to (also for a device this
    machine lacks: `--device cuda` lists what a GPU runner would run)."""
    suite = _suite(suite_path, device, filter, available=False)
    if as_json:
        print(json.dumps([{"id": c.id, "label": c.label, "params": c.params} for c in suite.cells], indent=2))
        return
    table = Table(title=f"{suite.name}: {len(suite.cells)} cells on {suite.device}")
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("cell")
    for key in suite.varied:
        table.add_column(key)
    for i, c in enumerate(suite.cells, 1):
        ref = " (ref)" if c.id == suite.reference.id else ""
        table.add_row(str(i), c.id, c.label + ref, *[_fmt(c.params[k]) for k in suite.varied])
    console.print(table)
    fixed = {k: v for k, v in suite.cells[0].params.items() if k not in suite.varied}
    console.print("fixed settings: " + ", ".join(f"{k}={_fmt(v)}" for k, v in fixed.items()), highlight=False)


def _fmt(v: Any) -> str:
    if isinstance(v, dict):
        return ",".join(f"{k}={x}" for k, x in v.items())
    if isinstance(v, list):
        return "x".join(map(str, v))
    return str(v)


@app.command()
def env(
    device: DeviceOpt = "auto",
) -> None:
    """Print the environment fingerprint (what results are keyed and compared on)."""
    from benchbench.measure.env import environment
    from benchbench.suite import resolve_device

    print(json.dumps(environment(resolve_device(None if device == "auto" else device)), indent=2))


@app.command()
def run(
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="Suite YAML file.")],
    device: DeviceOpt = "auto",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Results JSONL file to append to.")] = None,
    filter: FilterOpt = None,
    resume: Annotated[
        Optional[str],
        typer.Option("--resume", help="Results file to continue (skip its ok cells), or 'latest' for this suite's."),
    ] = None,
    isolation: Annotated[str, typer.Option("--executor", "--isolation", help="process (default: one process per cell), "
                                           "inline (debugging) or slurm (each cell a SLURM job, via submitit).")]
    = "process",
    slurm_partition: Annotated[Optional[str], typer.Option(help="SLURM partition.")] = None,
    gpus_per_cell: Annotated[int, typer.Option(help="SLURM: GPUs per cell (x world_size).")] = 0,
    max_parallel: Annotated[int, typer.Option(help="SLURM: jobs in flight at once.")] = 8,
    slurm_time: Annotated[int, typer.Option(help="SLURM: a job's time limit in minutes.")] = 60,
    slurm_setup: Annotated[Optional[list[str]], typer.Option(help="SLURM: a shell line run before each job "
                                                             "(repeatable), e.g. 'module load cuda'.")] = None,
    slurm_constraint: Annotated[Optional[str], typer.Option(help="SLURM: node constraint, e.g. the GPU type the "
                                                            "baseline was taken on.")] = None,
    cells_per_job: Annotated[int, typer.Option(help="SLURM: cells per job (amortises a job's start).")] = 1,
    results_dir: Annotated[Path, typer.Option(help="Where results/<suite>/<run-id>.jsonl goes.")] = Path("results"),
    reports_dir: Annotated[Path, typer.Option(help="Where reports/<suite>/<run-id>.md goes.")] = Path("reports"),
    allow_failures: Annotated[bool, typer.Option(help="Exit 0 even when some cells failed.")] = False,
    explain: Annotated[
        Optional[bool], typer.Option(help="FLOPs, memory and profiler passes after each cell's timed steps "
                                          "(default on; a resumed run keeps its own).")
    ] = None,
    trace: Annotated[Optional[Path], typer.Option(help="Write each cell's profiler trace (Chrome JSON) here.")] = None,
    repeat: Annotated[Optional[int], typer.Option(help="Run every cell N times, each in a fresh process (noise "
                                                     "calibration; default 1; a resumed run keeps its own).")] = None,
    shard: Annotated[Optional[str], typer.Option(help="Run shard K/N of the cells (deterministic, cost-balanced).")] = None,
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

    slurm = {"partition": slurm_partition, "gpus_per_cell": gpus_per_cell, "max_parallel": max_parallel,
             "time_min": slurm_time, "setup": slurm_setup, "constraint": slurm_constraint,
             "cells_per_job": cells_per_job}
    executor = get_executor(isolation)  # an unknown executor is an input error before anything runs
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
    from benchbench.runner.plan import file_sha1

    invocation = {"suite_sha1": file_sha1(suite_path), "filters": list(filter or []), "shard": shard,
                  "repeat": repeat, "explain": explain}
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
        run_id = prior[-1]["run_id"] if prior else res.new_run_id()
    else:
        run_id = res.new_run_id()
        out_path = output or res.default_path(results_dir, suite.slug, run_id)
    if output and resume:
        out_path = output
    store = res.ResultStore(out_path)
    store.check_writable()  # before the first cell is measured, not after
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

    records: list[dict[str, Any]] = []
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    interrupted = write_failed = False
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
                rec["invocation"] = invocation
                store.append(rec)
                records.append(rec)
                if rec.get("warnings"):
                    _log_warnings(out_path, rec, progress.console if verbose else None)
                progress.advance(task)
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
    except res.ResultsWriteError as exc:
        interrupted = True
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        write_failed = True
    finally:
        signal.signal(signal.SIGTERM, old_term)

    all_records = (res.read_records([out_path], warn=False) if out_path.exists() and out_path.stat().st_size
                   else [])
    # An --output file may hold earlier runs too: the table and report show this run.
    latest = res.merge_repeats([r for r in all_records if r.get("run_id") == run_id])
    if latest:
        from benchbench.report.build import build, headline_lines, write_reports

        data = build(latest, suite.reference.id, suite.name, suite.varied)
        _print_table(data.rows)
        for line in headline_lines(data):
            console.print(escape(line), highlight=False)
        try:
            paths = write_reports(data, Path(reports_dir) / suite.slug / run_id, ["md", "html"])
        except OSError as exc:  # a full disk: the results are safe, the report can be made later
            paths = []
            err_console.print(f"warning: could not write the reports ({exc.strerror or exc}); make them later with "
                              f"`benchbench report {out_path}`", highlight=False)
        console.print(f"results: {out_path}\nreports: " + ", ".join(map(str, paths)), highlight=False)
    console.print(f"elapsed {time.monotonic() - t0:.1f} s", highlight=False)
    n_warn = sum(len(r.get("warnings") or []) for r in records)
    if n_warn and not verbose:
        console.print(f"{n_warn} library warning(s) recorded in {out_path.with_suffix('.log')} (--verbose prints "
                      "them)", style="dim", highlight=False)
    if interrupted:
        err_console.print(
            f"interrupted: {len(records)} of {len(todo)} runs recorded in {out_path}.\n"
            f"Resume with: benchbench run {suite_path} --resume {out_path}",
            highlight=False,
        )
        raise typer.Exit(1 if write_failed else 130)
    failed = [r for r in latest if not is_ok(r)]
    if failed and not allow_failures:
        err_console.print(f"{len(failed)} of {len(latest)} cells did not finish ok", highlight=False)
        raise typer.Exit(1)


def _log_warnings(out_path: Path, rec: dict[str, Any], echo: Any) -> None:
    """The run's log beside its results: what libraries warned about, per cell."""
    lines = [f"{rec.get('started_at')} cell {rec['cell_id']} ({rec.get('label')}): {w}" for w in rec["warnings"]]
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
