"""`benchbench advise`: one knob at a time, measured against the base with an interval."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchbench.cli.app import (
    DeviceOpt,
    ExecutorOpt,
    FilterOpt,
    _suite,
    app,
    console,
    err_console,
    executor_choice,
    with_executor_options,
)
from benchbench.errors import BenchbenchError, short_repr
from benchbench.policy import ADVISE, ATTACH

DEFAULTS = {"repeat_max": ADVISE.repeat_max, "min_runs": ADVISE.min_runs, "min_effect": ADVISE.min_effect}


def parse_knobs(knobs: str | None) -> list[str] | None:
    """`--knobs a,b` as names; an empty list, or a name that is no knob, is refused before anything runs."""
    from benchbench.advise.candidates import KINDS

    if knobs is None:
        return None
    names = [k.strip() for k in knobs.split(",") if k.strip()]
    if not names:
        raise BenchbenchError(f"--knobs {short_repr(knobs, 40)} names no knob: give some of {', '.join(KINDS)}")
    unknown = [k for k in names if k not in KINDS]
    if unknown:
        from benchbench.errors import did_you_mean

        raise BenchbenchError(f"--knobs: {short_repr(unknown[0], 40)} is not a knob"
                              f"{did_you_mean(unknown[0], KINDS)}; knobs: {', '.join(KINDS)}")
    return list(dict.fromkeys(names))


@app.command()
@with_executor_options
def advise(
    suite_path: Annotated[list[str] | None, typer.Argument(
        metavar="SUITE | -- COMMAND...", help="Suite YAML file; with --attach, the training command after --.")] = None,
    attach: Annotated[bool, typer.Option("--attach", help="Advise on a training script as it is: the knobs set from "
                                         "outside it measured A/B, the code changes listed with bounds.")] = False,
    steps: Annotated[int, typer.Option(help="--attach: timed steps a run.")] = ATTACH.steps,
    timeout: Annotated[float, typer.Option(help="--attach: stop a run of the script after this many seconds."
                                           )] = ATTACH.timeout_s,
    cell: Annotated[str | None, typer.Option("--cell", help="The base cell (id prefix or label); default: the "
                                             "suite's only cell.")] = None,
    device: DeviceOpt = "auto",
    filter: FilterOpt = None,
    knobs: Annotated[str | None, typer.Option(help="Only these knobs, comma-separated (always measured): "
                                              "num_workers, pin_memory, persistent_workers, prefetch_factor, "
                                              "cache, amp, channels_last, compile, optimizer, batch_size, "
                                              "decoder_channels, resolution.")] = None,
    vary: Annotated[list[str] | None, typer.Option("--vary", help="--attach: one of the command's own arguments or "
                                                   "environment variables, each value A/B against the command as "
                                                   "given: 'batch=8,16', '--workers=2,8', 'env:OMP_NUM_THREADS=1,2' "
                                                   "(repeatable).")] = None,
    epochs: Annotated[int | None, typer.Option(help="--attach: judge each knob on the script's whole epoch "
                                                    "(N epochs a run, accounted): the validation loader's knobs "
                                                    "too, and the epoch's code changes with their bounds.")] = None,
    ranks: Annotated[str | None, typer.Option("--ranks", help="--attach with a torchrun command: run it at each of "
                                              "these process counts (--nproc-per-node), e.g. 1,2,4, and state the "
                                              "scaling efficiency with the loss in measured parts (--min-runs "
                                              "runs a count).")] = None,
    budget_min: Annotated[float | None, typer.Option("--budget-min", help="Stop starting runs after M "
                                                     "minutes (what was measured is kept).")] = None,
    repeat_max: Annotated[int | None, typer.Option(help=f"Most runs a side per knob [default: {ADVISE.repeat_max}]."
                                                   )] = None,
    min_runs: Annotated[int | None, typer.Option(help="Runs a side before the interval is read [default: "
                                                 f"{ADVISE.min_runs}].")] = None,
    min_effect: Annotated[float | None, typer.Option(help="Smallest speed-up decided on (0.05 = 5%); knobs "
                                                     "bounded below it are skipped unless named [default: "
                                                     f"{ADVISE.min_effect}].")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Folder for the advise report (md, "
                                                "html, yaml, json); default reports/<suite>.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the JSON here.")] = None,
    results_dir: Annotated[Path, typer.Option(help="Where results/<suite>/advise-<run>.jsonl goes.")] = Path("results"),
    resume: Annotated[str | None, typer.Option(help="An interrupted advise's results file (or 'latest'): replay its "
                                               "runs, measure the rest (its options are recorded in it).")] = None,
    isolation: ExecutorOpt = "process",
    executor_options: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Which knob makes this cell faster, by how much (with an interval), and does it still train the same?"""
    if attach:
        from benchbench.cli.advise_attach import advise_attached

        away = [name for name, given in (("--cell", cell), ("--filter", filter), ("--resume", resume),
                                         ("--device", device != "auto"), ("--isolation", isolation != "process"))
                if given]
        if away:
            raise BenchbenchError(f"{', '.join(away)}: a suite's option{'s' if len(away) > 1 else ''}, not "
                                  "--attach's (the script is the one cell, run as it is)")
        if ranks is not None:
            if knobs or vary or epochs:
                raise BenchbenchError("--ranks measures the process counts alone: --knobs, --vary and --epochs "
                                      "are their own advise runs")
            from benchbench.cli.advise_ranks import advise_ranks

            raise typer.Exit(advise_ranks(list(suite_path or []), ranks, min_runs or DEFAULTS["min_runs"], output,
                                          json_out, results_dir, steps, timeout))
        raise typer.Exit(advise_attached(list(suite_path or []), knobs, repeat_max or DEFAULTS["repeat_max"],
                                         min_runs or DEFAULTS["min_runs"], min_effect or DEFAULTS["min_effect"],
                                         output, json_out, results_dir, steps, timeout, budget_min, vary or [],
                                         epochs))
    if ranks is not None:
        raise BenchbenchError("--ranks runs a torchrun command at each process count: use it with --attach -- "
                              "torchrun …")
    if epochs is not None:
        raise BenchbenchError("--epochs accounts a script's whole epochs: use it with --attach -- COMMAND...")
    if vary:
        raise BenchbenchError("--vary varies a command's own arguments: use it with --attach -- COMMAND... (a suite's "
                              "cells vary their settings with --knobs)")
    if not suite_path or len(suite_path) != 1:
        raise BenchbenchError("give one SUITE file (or --attach -- COMMAND... for a training script)")
    suite_file = Path(suite_path[0])
    from benchbench.advise.candidates import applicable_knobs
    from benchbench.advise.experiment import base_cell
    from benchbench.outputs import Outputs
    from benchbench.runner import preflight
    from benchbench.session import Session

    given = {"cell": cell, "knobs": parse_knobs(knobs), "repeat_max": repeat_max, "min_runs": min_runs,
             "min_effect": min_effect}
    if budget_min is not None and not (math.isfinite(budget_min) and budget_min > 0):
        raise BenchbenchError(f"--budget-min must be a positive number of minutes, got {budget_min}")
    chosen = executor_choice(isolation, executor_options or {})
    session = Session.open("advise", lambda opts: _suite(suite_file, device, filter), suite_file, given=given,
                           defaults=dict(DEFAULTS), executor=isolation, executor_options=chosen, output=None,
                           results_dir=results_dir, resume=resume)
    try:
        o = session.options
        if o["repeat_max"] < 2 or o["min_runs"] < 2 or o["min_runs"] > o["repeat_max"]:
            raise BenchbenchError("need 2 <= --min-runs <= --repeat-max (one run a side cannot be judged)")
        if not 0 < o["min_effect"] < 1:
            raise BenchbenchError(f"--min-effect must be between 0 and 1, got {o['min_effect']}")
        base = base_cell(session.suite, o["cell"])
        if o["knobs"]:
            fits = applicable_knobs(base.params)
            away = [k for k in o["knobs"] if k not in fits]
            if away:
                raise BenchbenchError(f"--knobs {', '.join(away)}: not a knob that applies to this cell (it has "
                                      f"{', '.join(sorted(fits)) or 'none'})")
        report_dir = output or Path("reports") / session.suite.slug
        # Every output before the first run is measured, not after an 8-minute experiment.
        session.check_outputs(Outputs().folder(report_dir, "the advise report (--output)")
                              .file(json_out, "the JSON (--json)"))
        from benchbench.runner.server import server_early

        with server_early(session.executor_name == "process"):  # the runs' fork server imports torch meanwhile
            preflight([base], session.executor_name)
        _experiment(session, base, budget_min, report_dir, json_out, device)
    finally:
        session.close()


def _experiment(session: Any, base: Any, budget_min: float | None, report_dir: Path, json_out: Path | None,
                device: str) -> None:
    from benchbench.advise.experiment import Experiment, Ledger, Options
    from benchbench.analysis.gate_stats import ALPHA
    from benchbench.report import advise as render

    suite, o = session.suite, session.options
    with console.status("calibrating the device's peak matmul rate"):
        # every dtype a candidate can switch to: the AMP bound is the ratio of measured peaks
        env = session.environment(True, ("fp32", "bf16") + (("fp16",) if suite.device == "cuda" else ()))
    opts = Options(knobs=o["knobs"], repeat_max=o["repeat_max"], min_runs=o["min_runs"], threshold=o["min_effect"],
                   budget_s=budget_min * 60 if budget_min else None)
    console.print(f"[bold]advise[/] {escape(base.label)} ({base.id}) on {suite.device} -> {session.out_path}",
                  highlight=False)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} runs"),
                  TimeElapsedColumn(), TextColumn("ETA ~{task.fields[eta]}"), console=console) as progress:
        task = progress.add_task("base", total=None, eta="?")

        def on_run(desc: str, done: int, eta: float) -> None:
            progress.update(task, description=desc, completed=done, eta=f"{eta / 60:.1f} min" if eta else "?")

        exp = Experiment(suite, base, session.run_id, env, session.executor.run, session.record, opts,
                         Ledger(session.prior), on_run)
        with session.measuring() as outcome:
            result = exp.run()
    if outcome.stopped:
        from benchbench.cli.run import stopped

        stopped(session, outcome, exp.done, exp.planned or exp.done, "advise", device, ("-o", str(report_dir)))
    table = Table(title=f"advise: {base.label} ({result.runs} runs, {result.seconds / 60:.1f} min)")
    for c in render.COLUMNS:
        table.add_column(c, overflow="fold")
    for r in render.rows(result):
        table.add_row(*(escape(r[c]) for c in render.COLUMNS),
                      style="green" if "(recommended)" in r["verdict"] else None)
    console.print(table)
    console.print(escape(render.headline(result)), style="bold", highlight=False)
    for w in result.warnings:
        err_console.print(f"[bold yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    try:
        paths = render.write_all(result, report_dir / session.run_id, suite.name, ALPHA)
        if json_out:
            import json

            from benchbench.outputs import write_text

            write_text(json_out, json.dumps(render.to_json(result), indent=2, default=str), "the JSON (--json)")
    except BenchbenchError as exc:  # the disk filled since the check: every run is kept, the report is a replay
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}\nEvery run is kept in {session.out_path}; write "
                          "the report again without measuring: "
                          f"{session.resume_command('advise', device, ('-o', str(report_dir)))}",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(f"results: {session.out_path}\nreport: " + ", ".join(map(str, paths)), highlight=False)
