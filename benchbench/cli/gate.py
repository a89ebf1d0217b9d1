"""`benchbench compare`, `baseline`, `export`, `merge`: the regression gate and result files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from benchbench.cli.app import (
    _records,
    app,
    console,
    err_console,
)
from benchbench.errors import BenchbenchError
from benchbench.policy import GATE


@app.command()
def compare(
    paths: Annotated[list[Path], typer.Argument(metavar="[BASELINE] CANDIDATE",
                                                help="Baseline and candidate results (files or directories).")],
    baseline: Annotated[str | None, typer.Option("--baseline", help="Use the stored baseline NAME.")] = None,
    threshold: Annotated[float | None, typer.Option(
        help="Minimum effect that counts (0.05 = 5%); overrides the cells' gate_threshold. Default: each cell's "
             "gate_threshold, else 5%.")] = None,
    alpha: Annotated[float, typer.Option(help=f"1 - the interval's confidence (default {GATE.alpha}: a "
                                              f"{1 - GATE.alpha:.0%} interval, the setting the false-alarm rate was "
                                              "measured at).")] = GATE.alpha,
    run_cv: Annotated[float | None, typer.Option(
        "--run-cv", help="This machine's known run-to-run CV of a cell's median (0.01 = 1%): lets one run a side "
                         "be judged.")] = None,
    history: Annotated[Path | None, typer.Option(
        "--history", help="The history store: each cell's night-to-night spread widens its interval "
                          "(runs of one night share that night's machine state).")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write a Markdown summary here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the verdicts as JSON here.")] = None,
    allow_env_mismatch: Annotated[bool, typer.Option(help="Compare results from different environments.")] = False,
    baselines_dir: Annotated[Path, typer.Option(help="Where stored baselines live.")] = Path("results/baselines"),
    refuse_degraded_gpu: Annotated[bool, typer.Option(
        "--refuse-degraded", "--refuse-degraded-gpu", help="Give no speed verdict on a cell measured while its GPU "
        "was throttled or shared (NVML) or its CPU cores were contended (/proc), and exit 1: rerun the night.")
    ] = False,
    metric: Annotated[str, typer.Option(help="What is judged, run by run: step (the median training step) or "
                                             "epoch (the median whole epoch of `attach --epochs`).")] = "step",
) -> None:
    """Judge a candidate against a baseline, run by run: slower / faster / unchanged / noisy / ...

    Exit 1 when a cell is slower or failed. Give each side several runs (`run --repeat 3`).
    """
    from benchbench import baselines as bl
    from benchbench.analysis import compare as cmp
    from benchbench.outputs import Outputs, write_text
    from benchbench.report.compare import render_markdown, rows
    from benchbench.results import read_records

    Outputs().file(markdown, "the Markdown summary (--markdown)").file(json_out, "the JSON (--json)").check()
    if baseline:
        if len(paths) != 1:
            raise BenchbenchError("with --baseline NAME give exactly one CANDIDATE results path")
        cand = read_records(paths)
        base = read_records([bl.find(baseline, cand, baselines_dir)])
    else:
        if len(paths) != 2:
            raise BenchbenchError("give BASELINE and CANDIDATE results paths (or --baseline NAME and CANDIDATE)")
        base, cand = read_records([paths[0]]), read_records([paths[1]])
    nights = None
    if history:
        from benchbench.history.store import nights_cv

        nights = nights_cv(history, {r.env.fingerprint if r.env else None for r in cand})
    verdicts = cmp.compare(base, cand, threshold, alpha, allow_env_mismatch, run_cv, nights, refuse_degraded_gpu,
                           metric)
    table = Table(title=f"compare ({1 - alpha:.0%} intervals over runs)")
    cols = ("verdict", "cell", "change", "interval", "threshold", "MDE", "runs", "reason")
    for col in cols:
        table.add_column(_ci_label(alpha) if col == "interval" else col, overflow="fold")
    colors = {"slower": "red", "failed": "red", "faster": "green", "noisy": "yellow", "incomparable": "yellow"}
    for r in rows(verdicts):
        table.add_row(*(escape(str(r[c])) for c in cols), style=colors.get(r["verdict"]))
    console.print(table)
    if markdown:
        write_text(markdown, render_markdown(verdicts), "the Markdown summary (--markdown)")
    if json_out:
        write_text(json_out, json.dumps({"threshold": threshold, "alpha": alpha, "run_cv": run_cv,
                                         "verdicts": [v.to_dict() for v in verdicts]}, indent=2), "the JSON (--json)")
    for v in verdicts:
        for w in v.warnings:
            err_console.print(f"warning: {v.label}: {w}", style="yellow", highlight=False)
    refused = [v for v in verdicts if refuse_degraded_gpu and v.warnings]
    if refused:
        err_console.print(
            f"{len(refused)} cell(s) measured on a degraded machine (a throttled or shared GPU, contended "
            "CPU cores): no verdict",
            highlight=False,
        )
        raise typer.Exit(1)
    regs = cmp.regressions(verdicts)
    if regs:
        err_console.print(f"regression: {len(regs)} cell(s) slower or failed", highlight=False)
        raise typer.Exit(1)


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
    from benchbench.outputs import check_folder

    bl.check_name(name)
    check_folder(baselines_dir, "the baseline (--baselines-dir)")
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


@app.command()
def export(
    results: Annotated[list[Path], typer.Argument(metavar="RESULTS...", help="Results files or directories.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    format: Annotated[str, typer.Option("--format", help="pytest-benchmark")] = "pytest-benchmark",
) -> None:
    """Convert results to another tool's format (pytest-benchmark JSON)."""
    from benchbench.outputs import check_file, write_text
    from benchbench.results import to_pytest_benchmark

    if format != "pytest-benchmark":
        raise BenchbenchError(f"unknown export format {format!r}: supported: pytest-benchmark")
    check_file(output, "the export (--output)")
    doc = to_pytest_benchmark(_records(results))
    write_text(output, json.dumps(doc, indent=2), "the export (--output)")
    console.print(f"{len(doc['benchmarks'])} benchmarks -> {output}", highlight=False)


@app.command()
def merge(
    results: Annotated[list[Path], typer.Argument(metavar="RESULTS...", help="Shard results files or directories.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Merged JSONL file.")],
    allow_env_mismatch: Annotated[bool, typer.Option(help="Merge results from different environments.")] = False,
) -> None:
    """Combine shard results into one file (refusing mixed environments unless told)."""
    from benchbench.outputs import check_file, write_text
    from benchbench.results import dedupe, record_line

    if output.exists():
        raise BenchbenchError(f"{output} exists; merge never overwrites results (choose another --output)")
    check_file(output, "the merged results (--output)")
    records = _records(results)
    fps = {r.env.fingerprint if r.env else None for r in records}
    if len(fps) > 1 and not allow_env_mismatch:
        raise BenchbenchError(
            f"these results come from {len(fps)} different environments ({', '.join(sorted(map(str, fps)))}); "
            "their timings are not comparable. Pass --allow-env-mismatch to merge anyway."
        )
    unique = dedupe(records)
    # All or nothing: written beside the target and renamed, so a full disk leaves no partial file to block a rerun.
    write_text(output, "".join(record_line(r) for r in unique), "the merged results (--output)")
    n = len(unique)
    console.print(f"{n} records from {len(results)} inputs -> {output}", highlight=False)


@app.command()
def upgrade(
    results: Annotated[list[Path], typer.Argument(metavar="RESULTS...", help="Results JSONL files.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the upgraded records here (one input file).")
    ] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="Rewrite each file in the current schema.")] = False,
) -> None:
    """Rewrite results files in the current record schema (older ones are read through their upgrade anyway)."""
    from benchbench.outputs import check_file, write_text
    from benchbench.record import SCHEMA
    from benchbench.results import read_records, record_line

    if bool(output) == in_place:
        raise BenchbenchError("give either --output FILE (one input) or --in-place")
    if output and len(results) != 1:
        raise BenchbenchError("--output takes one input file; use --in-place for several")
    for path in results:
        if not path.is_file():
            raise BenchbenchError(f"results file not found: {path}")
        target = output or path
        check_file(target, "the upgraded results")
        recs = read_records([path])
        write_text(target, "".join(record_line(r) for r in recs), "the upgraded results")
        console.print(f"{len(recs)} records -> {target} ({SCHEMA})", highlight=False)


def _ci_label(alpha: float) -> str:
    from benchbench.analysis.gate_stats import ci_label  # scipy: imported by the commands that judge, not by all

    return ci_label(alpha)
