"""`benchbench tune-batch`: the batch-size search, by measurement."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from benchbench.cli.app import DeviceOpt, FilterOpt, _suite, app, console
from benchbench.errors import BenchbenchError


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
    run_id = res.new_run_id()
    store = res.ResultStore(Path(results_dir) / suite.slug / f"tune-{run_id}.jsonl")
    store.check_writable()  # before the first probe is measured
    preflight(suite.cells)
    env_info = dict(environment(suite.device))
    table = Table(title="batch-size search")
    for col in ("cell", "probes (batch: img/s)", "largest fit", "throughput plateau", "best", "stopped"):
        table.add_column(col, overflow="fold")
    for cell in suite.cells:
        with console.status(f"probing {cell.label}"):
            r = tune_batch(suite, cell, run_id, env_info, start=start, max_batch=max_batch, margin=margin,
                           gain=gain, steps=steps, on_probe=store.append)
        probes = ", ".join(f"{p.params['batch_size']}: " + (f"{p.throughput:.1f}" if p.ok else p.status)
                           for p in r.probes)
        table.add_row(cell.label, probes, str(r.largest_fit or "no limit reached"), str(r.plateau or "-"),
                      str(r.best_throughput or "-"), r.stopped_because)
    console.print(table)
    console.print(f"probes: {store.path}", highlight=False)
