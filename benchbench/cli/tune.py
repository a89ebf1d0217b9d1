"""`benchbench tune-batch`: the batch-size search, by measurement."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from benchbench.cli.app import (
    DeviceOpt,
    ExecutorOpt,
    FilterOpt,
    _suite,
    app,
    console,
    executor_choice,
    with_executor_options,
)
from benchbench.errors import BenchbenchError
from benchbench.policy import TUNE


@app.command("tune-batch")
@with_executor_options
def tune_batch_cmd(
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="Suite YAML file.")],
    device: DeviceOpt = "auto",
    filter: FilterOpt = None,
    start: Annotated[int | None, typer.Option(help=f"First batch size probed (then doubled) [default: {TUNE.start}]."
                                              )] = None,
    max_batch: Annotated[int | None, typer.Option(help=f"Largest batch size probed [default: {TUNE.max_batch}].")]
    = None,
    margin: Annotated[float | None, typer.Option(help="Keep peak memory below this share of the device's "
                                                 f"[default: {TUNE.margin}].")] = None,
    gain: Annotated[float | None, typer.Option(help="Throughput gain per doubling below which it has stopped "
                                               f"growing [default: {TUNE.gain}].")] = None,
    steps: Annotated[int | None, typer.Option(help=f"Timed steps per probe [default: {TUNE.steps}].")] = None,
    results_dir: Annotated[Path, typer.Option(help="Where results/<suite>/tune-<run-id>.jsonl "
                                                   "goes.")] = Path("results"),
    resume: Annotated[str | None, typer.Option(help="An interrupted search's results file (or 'latest'): its probes "
                                               "are kept, the search goes on (its options are recorded in it).")]
    = None,
    isolation: ExecutorOpt = "process",
    executor_options: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Find the largest batch that fits and the batch where throughput stops improving, by measurement."""
    from benchbench.runner import preflight
    from benchbench.session import Session
    from benchbench.tune import tune_batch

    chosen = executor_choice(isolation, executor_options or {})
    given = {"start": start, "max_batch": max_batch, "margin": margin, "gain": gain, "steps": steps}
    defaults = {"start": TUNE.start, "max_batch": TUNE.max_batch, "margin": TUNE.margin, "gain": TUNE.gain,
                "steps": TUNE.steps}
    session = Session.open("tune", lambda opts: _suite(suite_path, device, filter), suite_path, given=given,
                           defaults=defaults, executor=isolation, executor_options=chosen, results_dir=results_dir,
                           resume=resume)
    try:
        o, suite = session.options, session.suite
        if o["start"] < 1 or o["max_batch"] < o["start"]:
            raise BenchbenchError("need 1 <= --start <= --max-batch")
        if not 0 < o["margin"] <= 1:
            raise BenchbenchError(f"--margin must be in (0, 1], got {o['margin']}")
        session.check_outputs()  # before the first probe is measured
        preflight(suite.cells, session.executor_name)
        env_info = session.environment(calibrate=False)
        prior = {r.cell_id: r for r in session.prior if r.ok or r.status == "oom"}
        table = Table(title="batch-size search")
        for col in ("cell", "probes (batch: img/s)", "largest fit", "throughput plateau", "best", "stopped"):
            table.add_column(col, overflow="fold")
        with session.measuring() as outcome:
            for cell in suite.cells:
                with console.status(f"probing {cell.label}"):
                    r = tune_batch(suite, cell, session.run_id, env_info, start=o["start"], max_batch=o["max_batch"],
                                   margin=o["margin"], gain=o["gain"], steps=o["steps"], on_probe=session.record,
                                   run=session.executor.run, prior=prior)
                probes = ", ".join(f"{p.params['batch_size']}: " + (f"{p.throughput:.1f}" if p.ok else p.status)
                                   for p in r.probes)
                table.add_row(cell.label, probes, str(r.largest_fit or "no limit reached"), str(r.plateau or "-"),
                              str(r.best_throughput or "-"), r.stopped_because)
        console.print(table)
        if outcome.stopped:
            from benchbench.cli.run import stopped

            stopped(session, outcome, len(session.records), len(session.records), "tune-batch", device)
        console.print(f"probes: {session.out_path}", highlight=False)
    finally:
        session.close()
