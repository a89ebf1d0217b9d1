"""`benchbench list` and `env`: what a suite expands to, and what this machine is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from benchbench.cli.app import DeviceOpt, FilterOpt, _suite, app, console
from benchbench.errors import BenchbenchError


@app.command("list")
def list_cmd(
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="Suite YAML file.")],
    device: DeviceOpt = "auto",
    filter: FilterOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every cell's resolved settings as JSON.")] = False,
) -> None:
    """Show the expanded cells, their stable ids and the settings they resolve to.

    Also for a device this machine lacks: `--device cuda` lists what a GPU runner would run."""
    suite = _suite(suite_path, device, filter, available=False)
    from benchbench.workload.models import check_names

    for c in suite.cells:  # the names `run` would refuse, refused here too (no model is built)
        try:
            check_names(c.params)
        except BenchbenchError as exc:
            raise BenchbenchError(f"cell {c.id} ({c.label}): {exc}") from None
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
