"""A command suite's cell (`suite.command`): the user's filled command, run and recorded as `benchbench attach`
runs it, inside the cell's own process — so it has everything a cell has: the executor (a fork-server process, a
SLURM job), the timeout, an error record whatever happens, `--repeat`, resume, shards.

The record is the cell's (its suite, run id, cell id and label) and holds what was observed in the script
(`runner.attach.record._params`: the batch the model received, its resolution, AMP, the loader's workers), with the
cell's axis values beside it (`params.axes`, and each axis under its own name where the script did not show it):
the report compares cells by what really changed, per image. A command that fails — a bad argument, a missing
program — is that cell's error record; the suite goes on."""

from __future__ import annotations

import time
from typing import Any

from benchbench.errors import BenchbenchError
from benchbench.policy import ATTACH
from benchbench.suite.command import render


def record_params(params: dict[str, Any]) -> dict[str, Any]:
    """The params a cell's record starts from: a command cell's axis values and command (what it observed is
    added once its script has run; a cell that fails before has the axis values only), a built cell's settings."""
    if "command" not in params:
        return params
    return {**params["axes"], "axes": params["axes"], "command": " ".join(params["command"]),
            **({"env": params["env"]} if params.get("env") else {})}


def measure_command(payload: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
    """Run the cell's command attached; its record (a failure is the record's status, never an exception)."""
    from benchbench.runner.attach.command import parse_command
    from benchbench.runner.attach.launch import AttachOptions, run_script
    from benchbench.runner.attach.record import to_record

    p = payload["params"]
    timeout = float(p["timeout_s"])
    opts = AttachOptions(steps=int(p["steps"]), warmup=p["warmup"], profile_steps=int(p["profile_steps"]),
                         device=p["device"], timeout_s=max(timeout * ATTACH.command_share, timeout - 30.0),
                         env=dict(p.get("env") or {}), keep_stderr=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        script = parse_command(list(p["command"]))
    except BenchbenchError as exc:  # no such program, no such script: this cell's error, the others go on
        rec.update(status="error", error=f"the command cannot run: {exc}")
        return rec
    outcome = run_script(script, opts, payload["cell_id"])
    attached, _code = to_record(script, opts, outcome, payload["run_id"], payload.get("env"), started)
    doc = attached.to_json()
    if doc["status"] != "ok" and outcome.stderr_tail:  # what the script said last: a bad argument names itself
        doc["error"] = f"{doc['error']}; its stderr ended: " + " | ".join(outcome.stderr_tail[-3:])[-600:]
    observed, axes = doc["params"], p["axes"]
    params = {**record_params(p), **observed}  # the axis values, under what the script was seen to run
    per_step = (doc.get("attached") or {}).get("batches_per_step") or 1
    unseen = _not_as_set(axes, {**observed, "batch_size": observed.get("batch_size", 0) // per_step or None})
    if unseen:
        doc["warnings"] = [*(doc.get("warnings") or []), unseen]
    if p.get("gate_threshold") is not None:
        params["gate_threshold"] = p["gate_threshold"]
    doc.update(suite=payload["suite"], run_id=payload["run_id"], cell_id=payload["cell_id"], label=payload["label"],
               params=params)
    return doc


#: an axis under a built-in name, and how the value set reads against what the script was seen to do
_SEEN_AS = {"batch_size": lambda v: int(v) if str(v).isdigit() else None,
            "resolution": lambda v: [int(v), int(v)] if str(v).isdigit() else None,
            "num_workers": lambda v: int(v) if str(v).isdigit() else None,
            "amp": lambda v: None if v in (None, "") else ("none" if str(v).lower() in ("false", "none", "0", "no")
                                                           else "any")}


def _not_as_set(axes: dict[str, Any], observed: dict[str, Any]) -> str | None:
    """Axes under built-in names whose value the script did not train with, as observed (Ultralytics turns AMP
    off on a CPU; a loader clamps its workers): said in the record, the observed value kept as the cell's. A batch
    is a batch fetched (a step accumulating 16 of them trains on 16x its images, as Ultralytics' nbs does)."""
    out = []
    for k, v in axes.items():
        read = _SEEN_AS.get(k)
        want = read(v) if read else None
        seen = observed.get(k)
        if want is None or seen is None:
            continue
        if (k == "amp" and ((want == "none") != (seen == "none"))) or (k != "amp" and want != seen):
            out.append(f"{k}={render(v)} was set, but the script ran with {k} {seen}")
    return ("as observed: " + "; ".join(out) + " (the record holds what ran)") if out else None
