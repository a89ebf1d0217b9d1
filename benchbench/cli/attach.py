"""`benchbench attach [options] -- python train.py ...`: a user's unmodified training script, measured and
explained; its record is read by report, compare and history like any other."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from benchbench.cli.app import app, console, err_console
from benchbench.errors import BenchbenchError
from benchbench.policy import ATTACH

CommandArg = Annotated[list[str] | None, typer.Argument(
    metavar="-- COMMAND...", help="The training command, after --: python train.py ARGS, python -m pkg.train, "
                                  "or an installed script such as yolo.")]


def warmup_value(warmup: str) -> str | int:
    if warmup == "auto":
        return "auto"
    try:
        n = int(warmup)
    except ValueError:
        raise BenchbenchError(f"--warmup takes auto or a number of steps, got {warmup!r}") from None
    if n < 0:
        raise BenchbenchError(f"--warmup must be 0 or more, got {n}")
    return n


def options(steps: int, warmup: str, device: str, trace: Path | None, keep_running: bool, timeout: float,
            profile_steps: int, loader: dict[str, Any] | None = None, epochs: int | None = None,
            seconds: float | None = None, run_epochs: int | None = None) -> Any:
    from benchbench.runner.attach.launch import AttachOptions

    if steps < 1:
        raise BenchbenchError(f"--steps must be at least 1, got {steps}")
    if device not in ("auto", "cpu", "cuda"):
        raise BenchbenchError(f"--device takes auto, cpu or cuda, got {device!r}")
    if timeout <= 0:
        raise BenchbenchError(f"--timeout must be positive, got {timeout:g}")
    if profile_steps < 0:
        raise BenchbenchError(f"--profile-steps must be 0 or more, got {profile_steps}")
    if epochs is not None and epochs < 1:
        raise BenchbenchError(f"--epochs must be at least 1, got {epochs}")
    if seconds is not None and not seconds > 0:
        raise BenchbenchError(f"--seconds must be positive, got {seconds:g}")
    if epochs is not None and seconds is not None:
        raise BenchbenchError("--epochs and --seconds are two ways to choose what is accounted: give one")
    if run_epochs is not None and run_epochs < 1:
        raise BenchbenchError(f"--run-epochs must be at least 1, got {run_epochs}")
    if keep_running and (epochs or seconds):
        raise BenchbenchError("--keep-running lets the script run on unmeasured; --epochs/--seconds measure it on: "
                              "give one")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise BenchbenchError("--device cuda: this machine has no CUDA device")
    return AttachOptions(steps=steps, warmup=warmup_value(warmup), device=device,
                         trace_dir=str(Path(trace).resolve()) if trace else None, keep_running=keep_running,
                         timeout_s=timeout,
                         profile_steps=profile_steps, loader=loader or {}, epochs=epochs, seconds=seconds,
                         run_epochs=run_epochs)


@app.command(context_settings={"allow_interspersed_args": False})
def attach(
    command: CommandArg = None,
    steps: Annotated[int, typer.Option(help="Timed steps after warm-up.")] = ATTACH.steps,
    warmup: Annotated[str, typer.Option(help="auto (until steady, at most 30 steps) or a number of steps.")] = "auto",
    device: Annotated[str, typer.Option(help="auto: as the script chooses; cpu: hide the GPUs from it; cuda: "
                                             "require one.")] = "auto",
    trace: Annotated[Path | None, typer.Option(help="Keep the profiler window's trace (Chrome JSON) here.")] = None,
    reports_dir: Annotated[Path, typer.Option("--reports-dir", "-o", help="Where the report goes.")] = Path("reports"),
    output: Annotated[Path | None, typer.Option("--output", help="Results JSONL file to append the record to "
                                                "(default results/attach-<script>/<run-id>.jsonl).")] = None,
    results_dir: Annotated[Path, typer.Option(help="Where results/attach-<script>/ goes.")] = Path("results"),
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the record here as JSON.")] = None,
    keep_running: Annotated[bool, typer.Option(help="Let the script run on after the measurement (default: stop "
                                                    "it after the profiler window).")] = False,
    timeout: Annotated[float, typer.Option(help="Stop the script after this many seconds.")] = ATTACH.timeout_s,
    profile_steps: Annotated[int, typer.Option(help="Profiled steps after the timed ones (0: no explanation).")] = \
        ATTACH.profile_steps,
    repeat: Annotated[int | None, typer.Option(help="Run the script N times, each a fresh process (a nightly "
                                                    "check's runs: compare judges run medians) [default: 1; a "
                                                    "resumed one keeps its own].")] = None,
    resume: Annotated[str | None, typer.Option(help="An interrupted `attach --repeat`'s results file (or 'latest'): "
                                               "run the repeats it lacks.")] = None,
    epochs: Annotated[int | None, typer.Option(help="After the profiler window, let the script run N whole epochs "
                                                    "and account each one's wall time: training, validation, "
                                                    "checkpoints, the code between steps.")] = None,
    seconds: Annotated[float | None, typer.Option(help="As --epochs, for a script with no DataLoader epochs: "
                                                       "account S seconds of wall time.")] = None,
    run_epochs: Annotated[int | None, typer.Option(help="The whole run's epochs, for the time to train (default: "
                                                        "the trainer's own setting where it has one).")] = None,
) -> None:
    """Run a training script unmodified, time its steps, explain them, and record it like a suite cell."""
    from benchbench import results as res
    from benchbench.measure.env import environment
    from benchbench.outputs import Outputs
    from benchbench.runner.attach.launch import attach as run_attached
    from benchbench.runner.attach.launch import parse_command
    from benchbench.runner.attach.stopping import stopped_code

    opts = options(steps, warmup, device, trace, keep_running, timeout, profile_steps, epochs=epochs,
                   seconds=seconds, run_epochs=run_epochs)
    if repeat is not None and repeat < 1:
        raise BenchbenchError(f"--repeat must be at least 1, got {repeat}")
    script = parse_command(list(command or []))
    session = open_session("run", script, opts, output, results_dir, resume, {"repeat": repeat},
                           {"repeat": 1})
    try:
        slug, out_path = session.suite.slug, session.out_path
        session.check_outputs(Outputs().folder(Path(reports_dir) / slug, "the reports (--reports-dir)")
                              .folder(trace, "the trace (--trace)").file(json_out, "the record (--json)"))
        repeat = int(session.options["repeat"])
        done = res.completed_runs(session.prior).get(session.suite.cells[0].id, 0)
        console.print(f"[bold]attach[/]: {escape(' '.join(script.command))} -> {out_path}"
                      + (f" ({done} of {repeat} runs already recorded: resumed)" if done else ""), highlight=False)
        recs, code = [r for r in session.prior if r.cell_id == session.suite.cells[0].id and r.ok], 0
        with session.measuring() as outcome:
            for i in range(done, repeat):
                rec, c = run_attached(script.command, opts, session.run_id, None)
                rec = rec.model_copy(update={"env": _env(environment, rec), "repeat": i if repeat > 1 else None})
                rec = record_or_show(session, rec)  # each run kept as it ends: nothing measured is lost
                recs.append(rec)
                if stopped_code(c):  # stopped by a signal while the script ran: its group is ended
                    code = c
                    break
                code = max(code, c)
                if c == 2:  # refused: the next run would be refused the same way
                    break
        outcome.raise_failure()  # a full disk, a command that cannot start: said as before
        if outcome.interrupted and not stopped_code(code):  # a signal between two runs
            code = 130
    finally:
        session.close()
    if not recs:
        say_stopped(0, out_path, "nothing measured")
        raise typer.Exit(code or 130)
    rec = res.pool_repeats(recs)[0]
    failed = [f"run {i + 1}: {r.status}: {r.error}" for i, r in enumerate(recs) if r.status != "ok"]
    if failed and len(recs) > 1:  # the pooled record pools the runs that measured; it says which did not
        rec = rec.model_copy(update={"warnings": [*(rec.warnings or []), f"{len(failed)} of {len(recs)} runs "
                                                  "failed and are not pooled: " + "; ".join(failed)]})
    if json_out:
        from benchbench.outputs import write_text

        write_text(json_out, json.dumps(rec.to_json(), indent=1), "the record (--json)")
    if stopped_code(code):
        say_stopped(len(recs), out_path, str(rec.error or rec.status))
        if repeat > 1:
            err_console.print(f"Resume with: benchbench attach --resume {escape(str(out_path))} -- "
                              f"{escape(' '.join(script.command))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code)
    _report(rec, Path(reports_dir) / slug / session.run_id, out_path)
    for r in recs:
        if r.status != "ok":
            err_console.print(f"[bold red]error:[/] {escape(str(r.error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def open_session(kind: str, script: Any, opts: Any, output: Path | None, results_dir: Path, resume: str | None,
                 given: dict[str, Any], defaults: dict[str, Any]) -> Any:
    """The session an attached script runs in (`benchbench.session`), as a suite of one cell: its run id and
    results file (results/attach-<script>/<run-id>.jsonl), every output checked before the script runs, SIGTERM
    and SIGHUP handled from the start, what it was asked recorded in every record, `--resume`."""
    from benchbench.runner.attach.record import attached_cell_id
    from benchbench.session import Session, script_suite

    suite = script_suite(f"attach-{Path(script.name).stem}", attached_cell_id(script, opts), script.name,
                         {"command": script.command, "device": opts.device})
    return Session.open(kind, lambda _opts: suite, None, given=given, defaults=defaults, executor="inline",
                        output=output, results_dir=results_dir, resume=resume)


def record_or_show(session: Any, rec: Any) -> Any:
    """`session.record` (the record stamped and appended); where the results file cannot take it (a full disk, a
    read-only file), the record is not lost: it is printed whole on stderr (one JSON line, `report` reads it saved
    as .jsonl) before the error ends the command."""
    from benchbench.results import ResultsWriteError

    try:
        return session.record(rec)
    except ResultsWriteError:
        err_console.print("the record could not be written to the results file; here it is whole (save the next "
                          "line as a .jsonl file):", highlight=False)
        sys.stderr.write(json.dumps(rec.to_json()) + "\n")
        sys.stderr.flush()
        raise


def say_stopped(runs: int, out_path: Path, what: str) -> None:
    """benchbench was stopped by a signal while a script ran (`attach`, `advise --attach`): what was kept."""
    err_console.print(f"interrupted: the script was stopped and nothing of it left running; {runs} run(s) recorded "
                      f"in {escape(str(out_path))} ({escape(what)})", highlight=False, soft_wrap=True)


def _env(environment: Any, rec: Any) -> Any:
    from benchbench.record.machine import Environment

    return Environment.model_validate(environment(device=str(rec.params.get("device") or "cpu")))


def _report(rec: Any, stem: Path, out_path: Path) -> None:
    from benchbench.report.build import build, headline_lines, write_reports

    a = rec.attached
    if rec.ok:
        bs = rec.params["batch_size"]
        dw = rec.input_stall.fraction
        console.print(f"{a.model or 'model'} ({(rec.params_count or 0) / 1e6:.2f} M parameters), batch {bs}: "
                      f"step {rec.median * 1e3:.1f} ms median over {len(rec.step_time_s.samples)} steps, "
                      f"{rec.throughput:.1f} img/s" + (f", data wait {dw:.0%} of the step" if dw is not None else ""),
                      highlight=False)
        if a.stage_note:
            console.print(escape(f"note: the input stages were not timed: {a.stage_note}"), highlight=False)
    data = build([rec], rec.cell_id, rec.suite, [])
    for line in headline_lines(data):
        console.print(escape(line), highlight=False)
    paths = write_reports(data, stem, ["md", "html"])
    console.print(f"results: {out_path}\nreports: " + ", ".join(map(str, paths)), highlight=False)
