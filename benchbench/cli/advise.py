"""`benchbench advise`: one knob at a time, measured against the base with an interval."""

from __future__ import annotations

import math
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
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
from benchbench.errors import BenchbenchError, short_repr
from benchbench.record import Record
from benchbench.runner.executors import EXECUTORS

#: what an advise run was asked, recorded in every record it writes: `--resume` continues *that* experiment
RESUMED_OPTIONS = ("cell", "knobs", "repeat_max", "min_runs", "min_effect")
DEFAULTS = {"repeat_max": 5, "min_runs": 3, "min_effect": 0.05}


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


def continue_advise(prior: list[Record], given: dict[str, Any], resume: Path) -> dict[str, Any]:
    """The options the resumed experiment was asked; a command line that contradicts them is refused."""
    if prior and not all(r.advise is not None for r in prior):
        raise BenchbenchError(f"--resume {resume}: that is a `benchbench run` results file, not an advise "
                              "experiment's; a results file belongs to one kind of run (resume it with `run --resume`)")
    asked = next((r.advise.invocation for r in reversed(prior) if r.advise and r.advise.invocation), None)
    if asked is None:  # written before advise recorded what it was asked: the command line decides
        return {k: given[k] if given[k] is not None else DEFAULTS.get(k) for k in RESUMED_OPTIONS}
    clash = [f"--{k.replace('_', '-')} {given[k]!r} (the experiment had {asked.get(k)!r})"
             for k in RESUMED_OPTIONS if given[k] is not None and given[k] != asked.get(k)]
    if clash:
        raise BenchbenchError("--resume continues the experiment as it was started; this command line contradicts "
                              "it: " + "; ".join(clash) + ". Leave these options out to continue it, or start anew.")
    return {k: asked.get(k) for k in RESUMED_OPTIONS}


@app.command()
def advise(
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="Suite YAML file.")],
    cell: Annotated[str | None, typer.Option("--cell", help="The base cell (id prefix or label); default: the "
                                                "suite's only cell.")] = None,
    device: DeviceOpt = "auto",
    filter: FilterOpt = None,
    knobs: Annotated[str | None, typer.Option(help="Only these knobs, comma-separated (always measured): "
                                                 "num_workers, pin_memory, persistent_workers, prefetch_factor, "
                                                 "cache, amp, channels_last, compile, optimizer, batch_size, "
                                                 "decoder_channels, resolution.")] = None,
    budget_min: Annotated[float | None, typer.Option("--budget-min", help="Stop starting runs after M "
                                                        "minutes (what was measured is kept).")] = None,
    repeat_max: Annotated[int | None, typer.Option(help="Most runs a side per knob [default: 5].")] = None,
    min_runs: Annotated[int | None, typer.Option(help="Runs a side before the interval is read [default: 3].")]
    = None,
    min_effect: Annotated[float | None, typer.Option(help="Smallest speed-up decided on (0.05 = 5%); knobs "
                                                        "bounded below it are skipped unless named [default: 0.05]."
                                                        )] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Folder for the advise report (md, "
                                                   "html, yaml, json); default reports/<suite>.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the JSON here.")] = None,
    results_dir: Annotated[Path, typer.Option(help="Where results/<suite>/advise-<run>.jsonl goes.")] = Path("results"),
    resume: Annotated[Path | None, typer.Option(help="An interrupted advise's results file: replay its runs, "
                                                   "measure the rest (its options are recorded in it).")] = None,
    isolation: Annotated[str, typer.Option("--executor", "--isolation", help="Where each run goes: "
                                           + ", ".join(EXECUTORS) + " (default process: a fresh process per run).")]
    = "process",
) -> None:
    """Which knob makes this cell faster, by how much (with an interval), and does it still train the same?"""
    signal.signal(signal.SIGTERM, _on_sigterm)  # from the start: a SIGTERM during preflight is an interruption too
    from benchbench import results as res
    from benchbench.advise.candidates import applicable_knobs
    from benchbench.advise.experiment import Experiment, Ledger, Options, base_cell
    from benchbench.analysis.gate_stats import ALPHA
    from benchbench.measure.env import environment
    from benchbench.outputs import Outputs
    from benchbench.report import advise as render
    from benchbench.runner import calibrate_peak, preflight
    from benchbench.runner.executors import get_executor

    given = {"cell": cell, "knobs": parse_knobs(knobs), "repeat_max": repeat_max, "min_runs": min_runs,
             "min_effect": min_effect}
    if budget_min is not None and not (math.isfinite(budget_min) and budget_min > 0):
        raise BenchbenchError(f"--budget-min must be a positive number of minutes, got {budget_min}")
    executor = get_executor(isolation)
    suite = _suite(suite_path, device, filter)
    prior: list[Record] = []
    if resume:
        if not resume.is_file():
            raise BenchbenchError(f"--resume: results file not found: {resume}")
        res.ResultStore(resume).repair_tail()
        prior = res.read_records([resume]) if resume.stat().st_size else []
        if any(r.suite != suite.name for r in prior):
            raise BenchbenchError(f"--resume {resume} holds records of another suite, not {short_repr(suite.name)}")
        opts_in = continue_advise(prior, given, resume)
        run_id, out_path = (prior[-1].run_id if prior else "advise-" + res.new_run_id()), resume
    else:
        opts_in = {k: given[k] if given[k] is not None else DEFAULTS.get(k) for k in RESUMED_OPTIONS}
        run_id = "advise-" + res.new_run_id()
        out_path = res.default_path(results_dir, suite.slug, run_id)
    rmax, rmin, effect = opts_in["repeat_max"], opts_in["min_runs"], opts_in["min_effect"]
    if rmax < 2 or rmin < 2 or rmin > rmax:
        raise BenchbenchError("need 2 <= --min-runs <= --repeat-max (one run a side cannot be judged)")
    if not 0 < effect < 1:
        raise BenchbenchError(f"--min-effect must be between 0 and 1, got {effect}")
    base = base_cell(suite, opts_in["cell"])
    if opts_in["knobs"]:
        fits = applicable_knobs(base.params)
        away = [k for k in opts_in["knobs"] if k not in fits]
        if away:
            raise BenchbenchError(f"--knobs {', '.join(away)}: not a knob that applies to this cell (it has "
                                  f"{', '.join(sorted(fits)) or 'none'})")
    report_dir = output or Path("reports") / suite.slug
    store = res.ResultStore(out_path)
    # Every output before the first run is measured, not after an 8-minute experiment.
    Outputs().folder(report_dir, "the advise report (--output)").file(json_out, "the JSON (--json)").check()
    store.check_writable()
    preflight([base], isolation)
    env = dict(environment(suite.device))
    with console.status("calibrating the device's peak matmul rate"):
        # every dtype a candidate can switch to: the AMP bound is the ratio of measured peaks
        env["peak_flops"] = calibrate_peak(suite, isolation, ("fp32", "bf16") + (("fp16",) if suite.device == "cuda"
                                                                                 else ()))
    opts = Options(knobs=opts_in["knobs"], repeat_max=rmax, min_runs=rmin, threshold=effect,
                   budget_s=budget_min * 60 if budget_min else None, invocation=dict(opts_in))
    console.print(f"[bold]advise[/] {escape(base.label)} ({base.id}) on {suite.device} -> {out_path}", highlight=False)
    interrupted = write_failed = False
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} runs"),
                  TimeElapsedColumn(), TextColumn("ETA ~{task.fields[eta]}"), console=console) as progress:
        task = progress.add_task("base", total=None, eta="?")

        def on_run(desc: str, done: int, eta: float) -> None:
            progress.update(task, description=desc, completed=done, eta=f"{eta / 60:.1f} min" if eta else "?")

        exp = Experiment(suite, base, run_id, env, executor.run, store.append, opts, Ledger(prior), on_run)
        try:
            result = exp.run()
        except (KeyboardInterrupt, Interrupted):
            interrupted = True
        except res.ResultsWriteError as exc:  # a full disk: stop like any interruption, the file stays whole
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            interrupted = write_failed = True
    resume_cmd = f"benchbench advise {suite_path} --resume {out_path}" + (
        f" --device {device}" if device != "auto" else "")
    if interrupted:
        # The options are recorded in the file: the resume command needs none of them (soft_wrap: one line).
        err_console.print(f"interrupted: {exp.done} runs recorded in {out_path}.\nResume with: {resume_cmd}",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(1 if write_failed else 130)
    table = Table(title=f"advise: {base.label} ({result.runs} runs, {result.seconds / 60:.1f} min)")
    for c in render.COLUMNS:
        table.add_column(c, overflow="fold")
    for r in render.rows(result):
        table.add_row(*(escape(r[c]) for c in render.COLUMNS),
                      style="green" if "(recommended)" in r["verdict"] else None)
    console.print(table)
    console.print(escape(render.headline(result)), style="bold", highlight=False)
    try:
        paths = render.write_all(result, report_dir / run_id, suite.name, ALPHA)
        if json_out:
            import json

            from benchbench.outputs import write_text

            write_text(json_out, json.dumps(render.to_json(result), indent=2, default=str), "the JSON (--json)")
    except BenchbenchError as exc:  # the disk filled since the check: every run is kept, the report is a replay
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}\nEvery run is kept in {out_path}; write the report "
                          f"again without measuring: {resume_cmd}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(f"results: {out_path}\nreport: " + ", ".join(map(str, paths)), highlight=False)
