"""`benchbench advise`: one knob at a time, measured against the base with an interval."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchbench.cli.app import DeviceOpt, FilterOpt, Interrupted, _on_sigterm, _suite, app, console, err_console
from benchbench.errors import BenchbenchError


@app.command()
def advise(
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="Suite YAML file.")],
    cell: Annotated[Optional[str], typer.Option("--cell", help="The base cell (id prefix or label); default: the "
                                                "suite's only cell.")] = None,
    device: DeviceOpt = "auto",
    filter: FilterOpt = None,
    knobs: Annotated[Optional[str], typer.Option(help="Only these knobs, comma-separated (always measured): "
                                                 "num_workers, pin_memory, persistent_workers, prefetch_factor, "
                                                 "cache, amp, channels_last, compile, optimizer, batch_size, "
                                                 "decoder_channels, resolution.")] = None,
    budget_min: Annotated[Optional[float], typer.Option("--budget-min", help="Stop starting runs after M "
                                                        "minutes (what was measured is kept).")] = None,
    repeat_max: Annotated[int, typer.Option(help="Most runs a side per knob.")] = 5,
    min_runs: Annotated[int, typer.Option(help="Runs a side before the interval is read.")] = 3,
    min_effect: Annotated[float, typer.Option(help="Smallest speed-up decided on (0.05 = 5%); knobs bounded "
                                              "below it are skipped unless named.")] = 0.05,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Folder for the advise report (md, "
                                                   "html, yaml, json).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the JSON here.")] = None,
    results_dir: Annotated[Path, typer.Option(help="Where results/<suite>/advise-<run>.jsonl goes.")] = Path("results"),
    resume: Annotated[Optional[Path], typer.Option(help="An interrupted advise's results file: replay its runs, "
                                                   "measure the rest.")] = None,
    isolation: Annotated[str, typer.Option(help="Executor: process (default) or inline.")] = "process",
) -> None:
    """Which knob makes this cell faster, by how much (with an interval), and does it still train the same?"""
    from benchbench import results as res
    from benchbench.advise.experiment import Experiment, Ledger, Options, base_cell
    from benchbench.analysis.gate_stats import ALPHA
    from benchbench.measure.env import environment
    from benchbench.report import advise as render
    from benchbench.runner import calibrate_peak, preflight
    from benchbench.runner.executors import get_executor

    if repeat_max < 2 or min_runs < 2 or min_runs > repeat_max:
        raise BenchbenchError("need 2 <= --min-runs <= --repeat-max (one run a side cannot be judged)")
    if not 0 < min_effect < 1:
        raise BenchbenchError(f"--min-effect must be between 0 and 1, got {min_effect}")
    if budget_min is not None and budget_min <= 0:
        raise BenchbenchError(f"--budget-min must be positive, got {budget_min}")
    executor = get_executor(isolation)
    suite = _suite(suite_path, device, filter)
    base = base_cell(suite, cell)
    preflight([base], isolation)
    prior: list[dict[str, Any]] = []
    if resume:
        if not resume.is_file():
            raise BenchbenchError(f"--resume: results file not found: {resume}")
        res.ResultStore(resume).repair_tail()
        prior = res.read_records([resume]) if resume.stat().st_size else []
        if any(r.get("suite") != suite.name for r in prior):
            raise BenchbenchError(f"--resume {resume} holds records of another suite, not {suite.name}")
        run_id, out_path = (prior[-1]["run_id"] if prior else "advise-" + res.new_run_id()), resume
    else:
        run_id = "advise-" + res.new_run_id()
        out_path = res.default_path(results_dir, suite.slug, run_id)
    store = res.ResultStore(out_path)
    store.check_writable()  # before the first run is measured, not after
    env = dict(environment(suite.device))
    with console.status("calibrating the device's peak matmul rate"):
        # every dtype a candidate can switch to: the AMP bound is the ratio of measured peaks
        env["peak_flops"] = calibrate_peak(suite, isolation, ("fp32", "bf16") + (("fp16",) if suite.device == "cuda"
                                                                                 else ()))
    names = [k.strip() for k in knobs.split(",") if k.strip()] if knobs else None
    opts = Options(knobs=names, repeat_max=repeat_max, min_runs=min_runs, threshold=min_effect,
                   budget_s=budget_min * 60 if budget_min else None)
    console.print(f"[bold]advise[/] {escape(base.label)} ({base.id}) on {suite.device} -> {out_path}", highlight=False)
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
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
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            interrupted = write_failed = True
        finally:
            signal.signal(signal.SIGTERM, old_term)
    if interrupted:
        # The replay decides as the first pass did only with the same options: the command repeats them.
        err_console.print(f"interrupted: {exp.done} runs recorded in {out_path}.\nResume with: benchbench advise "
                          f"{suite_path}" + (f" --cell {cell}" if cell else "") + (f" --knobs {knobs}" if knobs else "")
                          + f" --repeat-max {repeat_max} --min-runs {min_runs} --min-effect {min_effect}"
                          + (f" --device {device}" if device != "auto" else "") + f" --resume {out_path}",
                          highlight=False)
        raise typer.Exit(1 if write_failed else 130)
    table = Table(title=f"advise: {base.label} ({result.runs} runs, {result.seconds / 60:.1f} min)")
    for c in render.COLUMNS:
        table.add_column(c, overflow="fold")
    for r in render.rows(result):
        table.add_row(*(escape(r[c]) for c in render.COLUMNS),
                      style="green" if "(recommended)" in r["verdict"] else None)
    console.print(table)
    console.print(escape(render.headline(result)), style="bold", highlight=False)
    stem = (output or Path("reports") / suite.slug) / run_id
    paths = render.write_all(result, stem, suite.name, ALPHA)
    if json_out:
        import json

        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(render.to_json(result), indent=2, default=str), encoding="utf-8")
    console.print(f"results: {out_path}\nreport: " + ", ".join(map(str, paths)), highlight=False)
