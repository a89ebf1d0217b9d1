"""Command line: thin wrappers that parse, call the library, and choose an exit code.

Exit codes: 0 all cells ok (or no regression), 1 some cells failed (or a
regression), 2 invalid input. Invalid input never shows a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchbench.errors import BenchbenchError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Training-speed profiling and benchmarking for segmentation models (SMP + timm).",
    pretty_exceptions_enable=False,
)
# Logs and CI captures are not terminals; rich would wrap tables at 80 columns there.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu or cuda.")]
FilterOpt = Annotated[
    Optional[list[str]],
    typer.Option("--filter", "-f", help="Run only cells with KEY=VALUE (repeatable; same key twice = either)."),
]


class Interrupted(Exception):
    """SIGTERM is handled like Ctrl-C: stop after recording what finished."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted()


def _suite(path: Path, device: str, filters: list[str] | None) -> Any:
    from benchbench.suite import load_suite

    return load_suite(path, device=None if device == "auto" else device, filters=filters)


@app.command("list")
def list_cmd(
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="Suite YAML file.")],
    device: DeviceOpt = "auto",
    filter: FilterOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every cell's resolved settings as JSON.")] = False,
) -> None:
    """Show the expanded cells, their stable ids and the settings they resolve to."""
    suite = _suite(suite_path, device, filter)
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
    isolation: Annotated[str, typer.Option(help="process (default: one process per cell) or inline.")] = "process",
    results_dir: Annotated[Path, typer.Option(help="Where results/<suite>/<run-id>.jsonl goes.")] = Path("results"),
    reports_dir: Annotated[Path, typer.Option(help="Where reports/<suite>/<run-id>.md goes.")] = Path("reports"),
    allow_failures: Annotated[bool, typer.Option(help="Exit 0 even when some cells failed.")] = False,
    explain: Annotated[
        bool, typer.Option(help="FLOPs, memory and profiler passes after each cell's timed steps.")
    ] = True,
    trace: Annotated[Optional[Path], typer.Option(help="Write each cell's profiler trace (Chrome JSON) here.")] = None,
    repeat: Annotated[int, typer.Option(help="Run every cell N times, each in a fresh process (noise calibration).")] = 1,
    shard: Annotated[Optional[str], typer.Option(help="Run shard K/N of the cells (deterministic, cost-balanced).")] = None,
) -> None:
    """Run every cell of a suite, append one JSON line per cell, print and write a comparison."""
    from benchbench import results as res
    from benchbench.measure.env import environment
    from benchbench.runner import RunOptions, calibrate_peak, iter_run, preflight

    if isolation not in ("process", "inline"):
        raise BenchbenchError(f"--isolation must be process or inline, got {isolation!r}")
    if repeat < 1:
        raise BenchbenchError(f"--repeat must be at least 1, got {repeat}")
    suite = _suite(suite_path, device, filter)
    if shard:
        from benchbench.suite import shard_cells

        suite.cells = shard_cells(suite.cells, shard)
        if not suite.cells:
            console.print(f"shard {shard} has no cells (the suite has fewer cells than shards)")
            return
    with console.status(f"validating {len(suite.cells)} cells (building each model on the meta device)"):
        preflight(suite)

    done_count: dict[str, int] = {}
    if resume:
        out_path = _resume_path(resume, results_dir, suite.slug)
        prior = res.read_records([out_path], warn=True)
        for r in prior:
            if r["status"] == "ok":
                done_count[r["cell_id"]] = done_count.get(r["cell_id"], 0) + 1
        run_id = prior[-1]["run_id"]
    else:
        run_id = res.new_run_id()
        out_path = output or res.default_path(results_dir, suite.slug, run_id)
    if output and resume:
        out_path = output
    store = res.ResultStore(out_path)
    # Repeats go round by round (all cells, then all cells again) so that drift
    # of the machine during the run spreads over every cell alike.
    todo = [c for rep in range(repeat) for c in suite.cells if done_count.get(c.id, 0) <= rep]
    done = {c for c, n in done_count.items() if n >= repeat}
    env_info = dict(environment(suite.device))
    if explain and todo:
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
    interrupted = False
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
            runner = iter_run(suite, run_id, env_info, RunOptions(isolation=isolation, explain=explain,
                                                                 trace_dir=str(trace) if trace else None), cells=todo)
            for i, cell in enumerate(todo):
                progress.update(task, description=f"cell {i + 1}/{len(todo)} {cell.label}")
                _, rec = next(runner)
                rec["repeat"] = done_count.get(cell.id, 0)
                if rec["status"] == "ok":
                    done_count[cell.id] = rec["repeat"] + 1
                store.append(rec)
                records.append(rec)
                progress.advance(task)
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, old_term)

    all_records = res.read_records([out_path], warn=False) if out_path.exists() else []
    # An --output file may hold earlier runs too: the table and report show this run.
    latest = res.merge_repeats([r for r in all_records if r.get("run_id") == run_id])
    if latest:
        _print_table(latest, suite.reference.id)
        paths = write_reports(latest, Path(reports_dir) / suite.slug / run_id, ["md", "html"],
                              suite.reference.id, suite.name, suite.varied)
        console.print(f"results: {out_path}\nreports: " + ", ".join(map(str, paths)), highlight=False)
    console.print(f"elapsed {time.monotonic() - t0:.1f} s", highlight=False)
    if interrupted:
        err_console.print(
            f"interrupted: {len(records)} of {len(todo)} cells recorded in {out_path}.\n"
            f"Resume with: benchbench run {suite_path} --resume {out_path}",
            highlight=False,
        )
        raise typer.Exit(130)
    failed = [r for r in latest if r["status"] != "ok"]
    if failed and not allow_failures:
        err_console.print(f"{len(failed)} of {len(latest)} cells did not finish ok", highlight=False)
        raise typer.Exit(1)


def write_reports(records: list[dict[str, Any]], stem: Path, formats: list[str], reference_id: str | None,
                  title: str, varied: list[str] | None = None,
                  pairs: list[tuple[str, str]] | None = None, history_db: Path | None = None) -> list[Path]:
    from benchbench.analysis.findings import find_all
    from benchbench.report.markdown import render_markdown, write_markdown

    findings = find_all(records, pairs=pairs)
    paths = []
    if "md" in formats:
        paths.append(write_markdown(stem.with_suffix(".md"), render_markdown(records, reference_id, title, findings)))
    if "html" in formats:
        from benchbench.report.html import render_html, write_html

        section = None
        if history_db:
            from benchbench.history.check import check
            from benchbench.report.history import history_section

            cells = {r["cell_id"] for r in records}
            found = [s for s in _history(history_db, str(records[0].get("suite")), None) if s.cell_id in cells]
            if found:
                section = history_section(found, check(found, 0.05, last=10**9))
        paths.append(write_html(stem.with_suffix(".html"), render_html(records, findings, reference_id, title, varied,
                                                                        section)))
    return paths


@app.command()
def report(
    results: Annotated[list[Path], typer.Argument(metavar="RESULTS...", help="Results JSONL files or directories.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for the reports.")] = Path("reports"),
    format: Annotated[str, typer.Option("--format", help="Comma-separated: md, html.")] = "md,html",
    reference: Annotated[Optional[str], typer.Option(help="Cell id (prefix) or label of the reference.")] = None,
    pair: Annotated[
        Optional[list[str]], typer.Option("--pair", help="Explain the difference of two cells: A,B (ids or labels).")
    ] = None,
    history: Annotated[Optional[Path], typer.Option("--history", help="A history store: adds each cell's trend "
                                                    "over nights to the HTML report.")] = None,
) -> None:
    """Write Markdown and HTML reports (tables, findings, plots) from results files."""
    from benchbench import results as res
    from benchbench.suite import slugify

    formats = [f.strip().lower() for f in format.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("md", "html")]
    if bad or not formats:
        raise BenchbenchError(f"--format takes md and/or html, got {format!r}")
    pairs = []
    for p in pair or []:
        a, sep, b = p.partition(",")
        if not sep or not a or not b:
            raise BenchbenchError(f"--pair expects A,B (two cell ids or labels), got {p!r}")
        pairs.append((a.strip(), b.strip()))
    records = res.merge_repeats(res.read_records(results))
    ref_id = None
    if reference:
        match = [r for r in records if r["cell_id"].startswith(reference) or r.get("label") == reference]
        if not match:
            raise BenchbenchError(f"--reference {reference!r} matches no cell in the results")
        ref_id = match[0]["cell_id"]
    suite = str(records[0].get("suite") or "results")
    run_ids = sorted({str(r.get("run_id")) for r in records})
    stem = output / slugify(suite) / slugify(run_ids[-1] if len(run_ids) == 1 else f"{run_ids[0]}-merged")
    paths = write_reports(records, stem, formats, ref_id, suite, None, pairs or None, history)
    console.print("reports: " + ", ".join(map(str, paths)), highlight=False)


def _resume_path(resume: str, results_dir: Path, slug: str) -> Path:
    if resume != "latest":
        p = Path(resume)
        if not p.is_file():
            raise BenchbenchError(f"--resume: results file not found: {p}")
        return p
    runs = sorted((Path(results_dir) / slug).glob("*.jsonl"))
    if not runs:
        raise BenchbenchError(f"--resume latest: no earlier run of this suite in {Path(results_dir) / slug}")
    return runs[-1]


def _print_table(records: list[dict[str, Any]], reference_id: str | None) -> None:
    from benchbench.analysis.summary import display_rows, summary_frame

    rows = display_rows(summary_frame(records, reference_id))
    table = Table(title="results")
    cols = [c for c in rows[0] if c != "error"] + (["error"] if any(r["error"] for r in rows) else [])
    for c in cols:
        table.add_column(c, justify="right" if c in ("img/s", "cv", "data wait", "GPU busy ms", "GPU idle", "params M", "vs ref") else "left",
                         overflow="fold")
    for r in rows:
        table.add_row(*[r[c] for c in cols], style=None if r["status"] == "ok" else "red")
    console.print(table)


@app.command("tune-batch")
def tune_batch_cmd(
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="Suite YAML file.")],
    device: DeviceOpt = "auto",
    filter: FilterOpt = None,
    start: Annotated[int, typer.Option(help="First batch size probed (then doubled).")] = 1,
    max_batch: Annotated[int, typer.Option(help="Largest batch size probed.")] = 256,
    margin: Annotated[float, typer.Option(help="Keep peak memory below this share of the device's.")] = 0.9,
    gain: Annotated[float, typer.Option(help="Throughput gain per doubling below which it has stopped growing.")] = 0.05,
    steps: Annotated[int, typer.Option(help="Timed steps per probe.")] = 5,
    results_dir: Annotated[Path, typer.Option(help="Where results/<suite>/tune-<run-id>.jsonl goes.")] = Path("results"),
) -> None:
    """Find the largest batch that fits and the batch where throughput stops improving, by measurement."""
    from benchbench import results as res
    from benchbench.measure.env import environment
    from benchbench.runner import preflight
    from benchbench.tune import tune_batch

    if start < 1 or max_batch < start:
        raise BenchbenchError("need 1 <= --start <= --max-batch")
    if not 0 < margin <= 1:
        raise BenchbenchError(f"--margin must be in (0, 1], got {margin}")
    suite = _suite(suite_path, device, filter)
    preflight(suite)
    run_id = res.new_run_id()
    store = res.ResultStore(Path(results_dir) / suite.slug / f"tune-{run_id}.jsonl")
    env_info = dict(environment(suite.device))
    table = Table(title="batch-size search")
    for col in ("cell", "probes (batch: img/s)", "largest fit", "throughput plateau", "best", "stopped"):
        table.add_column(col, overflow="fold")
    for cell in suite.cells:
        with console.status(f"probing {cell.label}"):
            r = tune_batch(suite, cell, run_id, env_info, start=start, max_batch=max_batch, margin=margin,
                           gain=gain, steps=steps, on_probe=store.append)
        probes = ", ".join(f"{p['params']['batch_size']}: " + (f"{p['throughput_img_s']:.1f}" if p["status"] == "ok"
                                                                else p["status"]) for p in r.probes)
        table.add_row(cell.label, probes, str(r.largest_fit or "no limit reached"), str(r.plateau or "-"),
                      str(r.best_throughput or "-"), r.stopped_because)
    console.print(table)
    console.print(f"probes: {store.path}", highlight=False)


def _records(paths: list[Path]) -> list[dict[str, Any]]:
    from benchbench import results as res

    return res.read_records(paths)


@app.command()
def compare(
    paths: Annotated[list[Path], typer.Argument(metavar="[BASELINE] CANDIDATE",
                                                help="Baseline and candidate results (files or directories).")],
    baseline: Annotated[Optional[str], typer.Option("--baseline", help="Use the stored baseline NAME.")] = None,
    threshold: Annotated[Optional[float], typer.Option(
        help="Minimum effect that counts (0.05 = 5%); overrides the cells' gate_threshold. Default: each cell's "
             "gate_threshold, else 5%.")] = None,
    alpha: Annotated[float, typer.Option(help="1 - the interval's confidence (0.05: a 95% interval).")] = 0.05,
    run_cv: Annotated[Optional[float], typer.Option(
        "--run-cv", help="This machine's known run-to-run CV of a cell's median (0.01 = 1%): lets one run a side "
                         "be judged.")] = None,
    markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Write a Markdown summary here.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the verdicts as JSON here.")] = None,
    allow_env_mismatch: Annotated[bool, typer.Option(help="Compare results from different environments.")] = False,
    baselines_dir: Annotated[Path, typer.Option(help="Where stored baselines live.")] = Path("results/baselines"),
) -> None:
    """Judge a candidate against a baseline, run by run: slower / faster / unchanged / noisy / ...

    Exit 1 when a cell is slower or failed. Give each side several runs (`run --repeat 3`).
    """
    from benchbench import baselines as bl
    from benchbench.analysis import compare as cmp
    from benchbench.report.compare import render_markdown, rows
    from benchbench.results import read_records

    if baseline:
        if len(paths) != 1:
            raise BenchbenchError("with --baseline NAME give exactly one CANDIDATE results path")
        cand = read_records(paths)
        base = read_records([bl.find(baseline, cand, baselines_dir)])
    else:
        if len(paths) != 2:
            raise BenchbenchError("give BASELINE and CANDIDATE results paths (or --baseline NAME and CANDIDATE)")
        base, cand = read_records([paths[0]]), read_records([paths[1]])
    verdicts = cmp.compare(base, cand, threshold, alpha, allow_env_mismatch, run_cv)
    table = Table(title=f"compare ({1 - alpha:.0%} intervals over runs)")
    cols = ("verdict", "cell", "change", "95% CI", "threshold", "MDE", "runs", "reason")
    for col in cols:
        table.add_column(col, overflow="fold")
    colors = {"slower": "red", "failed": "red", "faster": "green", "noisy": "yellow", "incomparable": "yellow"}
    for r in rows(verdicts):
        table.add_row(*(escape(str(r[c])) for c in cols), style=colors.get(r["verdict"]))
    console.print(table)
    if markdown:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(render_markdown(verdicts), encoding="utf-8")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"threshold": threshold, "alpha": alpha, "run_cv": run_cv,
                                        "verdicts": [v.to_dict() for v in verdicts]}, indent=2), encoding="utf-8")
    regs = cmp.regressions(verdicts)
    if regs:
        err_console.print(f"regression: {len(regs)} cell(s) slower or failed", highlight=False)
        raise typer.Exit(1)


@app.command("explain-trace")
def explain_trace_cmd(
    trace: Annotated[Path, typer.Argument(metavar="TRACE", help="A torch.profiler Chrome trace (.json or .json.gz).")],
    step_time: Annotated[Optional[float], typer.Option("--step-time", help="The training step's real (unprofiled) "
                                                      "time in seconds: GPU idle is judged against it.")] = None,
    record: Annotated[Optional[Path], typer.Option("--record", help="benchbench results holding the traced cell "
                                                   "(its timed step, data wait and host enqueue time).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the analysis as JSON.")] = False,
) -> None:
    """Why is this training loop slow on the GPU? Launches, busy and idle time, syncs, from a trace."""
    from benchbench.analysis.trace import explain_trace

    doc = explain_trace(trace, step_time, _records([record]) if record else None)
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    from benchbench.report.trace import print_explanation

    print_explanation(doc, console)


baseline_app = typer.Typer(help="Store and list baselines (keyed by environment fingerprint).", no_args_is_help=True)
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("save")
def baseline_save(
    results: Annotated[list[Path], typer.Argument(metavar="RESULTS...", help="Results files or directories.")],
    name: Annotated[str, typer.Option("--name", help="Baseline name, e.g. main or segformer-nightly.")],
    baselines_dir: Annotated[Path, typer.Option(help="Where stored baselines live.")] = Path("results/baselines"),
) -> None:
    """Store results as baseline NAME for their environment."""
    from benchbench import baselines as bl

    path = bl.save(_records(results), name, baselines_dir)
    console.print(f"baseline saved: {path}", highlight=False)


@baseline_app.command("list")
def baseline_list(
    baselines_dir: Annotated[Path, typer.Option(help="Where stored baselines live.")] = Path("results/baselines"),
) -> None:
    """Show stored baselines and the environments they cover."""
    for folder in sorted(p for p in Path(baselines_dir).glob("*") if p.is_dir()):
        envs = sorted(f.name.split(".")[0] for f in folder.glob("*.jsonl"))
        console.print(f"{folder.name}: {', '.join(envs)}", highlight=False)


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


def _history(db: Path, suite: Optional[str], cell: Optional[str]) -> list[Any]:
    from benchbench.history.store import HistoryStore, series

    store = HistoryStore(db, create=False)
    found = series(store.rows(suite, cell))
    store.close()
    if not found:
        raise BenchbenchError(f"no ok records in {db}" + (f" for suite {suite!r}" if suite else "")
                              + (f" and cell {cell!r}" if cell else ""))
    return found


@history_app.command("show")
def history_show(
    db: DbOpt = Path("results/history.db"),
    suite: Annotated[Optional[str], typer.Option("--suite", help="Only this suite.")] = None,
    cell: Annotated[Optional[str], typer.Option("--cell", help="Only this cell (id prefix or label).")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write a trend plot: .png or .html.")] = None,
    threshold: Annotated[float, typer.Option(help="Minimum change marked on the plot.")] = 0.05,
) -> None:
    """Each cell's nights (median step time, p10-p90 band), change points marked."""
    from benchbench.history.check import check

    all_series = _history(db, suite, cell)
    found = check(all_series, threshold, last=10**9)
    table = Table(title=f"history: {db}")
    for col in ("suite", "cell", "env", "nights", "first", "last", "step ms (last)", "changes"):
        table.add_column(col)
    for s in all_series:
        n = sum(1 for c in found if (c.cell_id, c.fingerprint) == (s.cell_id, s.fingerprint))
        table.add_row(escape(s.suite), escape(s.label), (s.fingerprint or "?")[:8], str(len(s.nights)),
                      s.nights[0].started_at, s.nights[-1].started_at, f"{s.nights[-1].median_s * 1e3:.2f}", str(n))
    console.print(table)
    if output:
        if output.suffix.lower() not in (".png", ".html"):
            raise BenchbenchError(f"-o must end in .png or .html, got {output.name}")
        from benchbench.report.history import write_trend

        write_trend(output, all_series, found)
        console.print(f"trend plot -> {output}", highlight=False)


@history_app.command("check")
def history_check(
    db: DbOpt = Path("results/history.db"),
    last: Annotated[int, typer.Option("--last", help="Fail on a slowdown that starts within the last K nights.")] = 1,
    threshold: Annotated[float, typer.Option(help="Minimum change (0.05 = 5%).")] = 0.05,
    suite: Annotated[Optional[str], typer.Option("--suite", help="Only this suite.")] = None,
    markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Write a Markdown summary here.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the change points as JSON here.")] = None,
) -> None:
    """Change points (E-divisive means) in every cell's series; exit 1 on a recent slowdown."""
    from benchbench.history.check import change_text, check, failing

    if not 0 < threshold < 1:
        raise BenchbenchError(f"--threshold must be between 0 and 1, got {threshold}")
    if last < 1:
        raise BenchbenchError(f"--last must be at least 1, got {last}")
    all_series = _history(db, suite, None)
    found = check(all_series, threshold, last)
    for c in found:
        style = "red" if c.recent and c.direction == "slower" else ("yellow" if c.recent else None)
        console.print(escape(("RECENT " if c.recent else "") + change_text(c)), style=style, highlight=False)
    if not found:
        console.print(f"no change of {threshold:.0%} or more in {len(all_series)} series", highlight=False)
    if markdown:
        from benchbench.report.markdown import md_escape

        lines = [f"## benchbench history check: {'regression' if failing(found) else 'no recent regression'}", "",
                 f"{len(all_series)} series, threshold {threshold:.0%}, last {last} night(s).", ""]
        lines += [f"- {'**recent** ' if c.recent else ''}{md_escape(change_text(c))}" for c in found] or ["_No change._"]
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"threshold": threshold, "last": last,
                                        "changes": [c.to_dict() for c in found]}, indent=2), encoding="utf-8")
    if failing(found):
        err_console.print(f"regression: {len(failing(found))} slowdown(s) in the last {last} night(s)",
                          highlight=False)
        raise typer.Exit(1)


@app.command()
def export(
    results: Annotated[list[Path], typer.Argument(metavar="RESULTS...", help="Results files or directories.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    format: Annotated[str, typer.Option("--format", help="pytest-benchmark")] = "pytest-benchmark",
) -> None:
    """Convert results to another tool's format (pytest-benchmark JSON)."""
    from benchbench.results import to_pytest_benchmark

    if format != "pytest-benchmark":
        raise BenchbenchError(f"unknown export format {format!r}: supported: pytest-benchmark")
    doc = to_pytest_benchmark(_records(results))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    console.print(f"{len(doc['benchmarks'])} benchmarks -> {output}", highlight=False)


@app.command()
def merge(
    results: Annotated[list[Path], typer.Argument(metavar="RESULTS...", help="Shard results files or directories.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Merged JSONL file.")],
    allow_env_mismatch: Annotated[bool, typer.Option(help="Merge results from different environments.")] = False,
) -> None:
    """Combine shard results into one file (refusing mixed environments unless told)."""
    from benchbench.results import ResultStore

    records = _records(results)
    fps = {(r.get("env") or {}).get("fingerprint") for r in records}
    if len(fps) > 1 and not allow_env_mismatch:
        raise BenchbenchError(
            f"these results come from {len(fps)} different environments ({', '.join(sorted(map(str, fps)))}); "
            "their timings are not comparable. Pass --allow-env-mismatch to merge anyway."
        )
    if output.exists():
        raise BenchbenchError(f"{output} exists; merge never overwrites results (choose another --output)")
    seen: set[str] = set()
    store = ResultStore(output)
    n = 0
    for r in records:
        key = json.dumps([r.get("run_id"), r["cell_id"], r.get("started_at"), r.get("repeat")])
        if key in seen:
            continue
        seen.add(key)
        store.append(r)
        n += 1
    console.print(f"{n} records from {len(results)} inputs -> {output}", highlight=False)


def main() -> None:
    """Entry point: turn invalid input into a message and exit code 2, never a traceback.

    Typer (standalone mode) already turns usage errors into exit code 2 and
    `typer.Exit` into its code; what reaches here is ours to format.
    """
    try:
        app()
    except BenchbenchError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - a bug in benchbench: say so briefly
        if os.environ.get("BENCHBENCH_DEBUG"):
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc}\n"
            "This is a bug in benchbench; rerun with BENCHBENCH_DEBUG=1 for the traceback.",
            highlight=False,
        )
        sys.exit(3)


if __name__ == "__main__":  # pragma: no cover
    main()
