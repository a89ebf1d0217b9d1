"""`benchbench explain-trace`: the GPU timeline of any profiler trace."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from benchbench.cli.app import (
    _records,
    app,
    console,
)


@app.command("explain-trace")
def explain_trace_cmd(
    trace: Annotated[Path, typer.Argument(metavar="TRACE", help="A torch.profiler Chrome trace (.json or .json.gz).")],
    step_time: Annotated[float | None, typer.Option("--step-time", help="The training step's real (unprofiled) "
                                                      "time in seconds: GPU idle is judged against it.")] = None,
    record: Annotated[Path | None, typer.Option("--record", help="benchbench results holding the traced cell "
                                                   "(its timed step, data wait and host enqueue time).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the analysis as JSON.")] = False,
) -> None:
    """Why is this training loop slow on the GPU? Launches, busy and idle time, syncs, from a trace."""
    from benchbench.analysis.trace import explain_trace

    doc = explain_trace(trace, step_time, _records([record]) if record else None)
    if as_json:
        from benchbench.record import clean_nans

        sys.stdout.write(json.dumps(clean_nans(doc), indent=2, allow_nan=False) + "\n")  # JSON has no NaN
        return
    from benchbench.report.trace import print_explanation

    print_explanation(doc, console)
