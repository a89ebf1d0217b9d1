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
) -> None:
    """Run every cell of a suite, append one JSON line per cell, print and write a comparison."""
    from benchbench import results as res
    from benchbench.measure.env import environment
    from benchbench.runner import RunOptions, calibrate_peak, iter_run, preflight

    if isolation not in ("process", "inline"):
        raise BenchbenchError(f"--isolation must be process or inline, got {isolation!r}")
    suite = _suite(suite_path, device, filter)
    with console.status(f"validating {len(suite.cells)} cells (building each model on the meta device)"):
        preflight(suite)

    done: set[str] = set()
    if resume:
        out_path = _resume_path(resume, results_dir, suite.slug)
        prior = res.read_records([out_path], warn=True)
        done = {r["cell_id"] for r in prior if r["status"] == "ok"}
        run_id = prior[-1]["run_id"]
    else:
        run_id = res.new_run_id()
        out_path = output or res.default_path(results_dir, suite.slug, run_id)
    if output and resume:
        out_path = output
    store = res.ResultStore(out_path)
    todo = [c for c in suite.cells if c.id not in done]
    env_info = dict(environment(suite.device))
    if explain and todo:
        with console.status("calibrating the device's peak matmul rate"):
            env_info["peak_flops"] = calibrate_peak(suite, isolation)
    console.print(
        f"[bold]{suite.name}[/]: {len(suite.cells)} cells on {suite.device}"
        + (f", {len(suite.cells) - len(todo)} already ok (resumed)" if done else "")
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
                store.append(rec)
                records.append(rec)
                progress.advance(task)
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, old_term)

    all_records = res.read_records([out_path], warn=False) if out_path.exists() else []
    latest = _latest_per_cell(all_records)
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
                  pairs: list[tuple[str, str]] | None = None) -> list[Path]:
    from benchbench.analysis.findings import find_all
    from benchbench.report.markdown import render_markdown, write_markdown

    findings = find_all(records, pairs=pairs)
    paths = []
    if "md" in formats:
        paths.append(write_markdown(stem.with_suffix(".md"), render_markdown(records, reference_id, title, findings)))
    if "html" in formats:
        from benchbench.report.html import render_html, write_html

        paths.append(write_html(stem.with_suffix(".html"), render_html(records, findings, reference_id, title, varied)))
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
    records = _latest_per_cell(res.read_records(results))
    ref_id = None
    if reference:
        match = [r for r in records if r["cell_id"].startswith(reference) or r.get("label") == reference]
        if not match:
            raise BenchbenchError(f"--reference {reference!r} matches no cell in the results")
        ref_id = match[0]["cell_id"]
    suite = str(records[0].get("suite") or "results")
    run_ids = sorted({str(r.get("run_id")) for r in records})
    stem = output / slugify(suite) / slugify(run_ids[-1] if len(run_ids) == 1 else f"{run_ids[0]}-merged")
    paths = write_reports(records, stem, formats, ref_id, suite, None, pairs or None)
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


def _latest_per_cell(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A resumed file can hold a failed and a later ok record of one cell: keep the last."""
    by_id: dict[str, dict[str, Any]] = {}
    for r in records:
        by_id.pop(r["cell_id"], None)
        by_id[r["cell_id"]] = r
    return list(by_id.values())


def _print_table(records: list[dict[str, Any]], reference_id: str | None) -> None:
    from benchbench.analysis.summary import display_rows, summary_frame

    rows = display_rows(summary_frame(records, reference_id))
    table = Table(title="results")
    cols = [c for c in rows[0] if c != "error"] + (["error"] if any(r["error"] for r in rows) else [])
    for c in cols:
        table.add_column(c, justify="right" if c in ("img/s", "cv", "data wait", "params M", "vs ref") else "left",
                         overflow="fold")
    for r in rows:
        table.add_row(*[r[c] for c in cols], style=None if r["status"] == "ok" else "red")
    console.print(table)


def main() -> None:
    """Entry point: turn invalid input into a message and exit code 2, never a traceback."""
    try:
        rc = app(standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except BenchbenchError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except click_exceptions() as exc:  # usage errors: unknown option, missing argument
        exc.show()
        sys.exit(2)
    except typer.Abort:
        sys.exit(130)
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


def click_exceptions() -> tuple[type[BaseException], ...]:
    import click

    return (click.ClickException,)


if __name__ == "__main__":  # pragma: no cover
    main()
