"""One cell inside its own process: the cell program (`runner.program`) under a memory cap and the OOM
back-off, a record whatever happens."""

from __future__ import annotations

import os
import resource
import time
from typing import Any

from benchbench.record import base_record, clean_nans
from benchbench.runner.command_cell import record_params


def execute_cell(payload: dict[str, Any]) -> dict[str, Any]:
    """Build, warm up and time one cell; never raises — failures become the record's status.

    Library warnings (FutureWarnings, the profiler's UserWarnings) are recorded in
    the record's `warnings`, not printed into the progress display.
    """
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        rec = _execute_cell(payload)
    seen = list(dict.fromkeys(f"{w.category.__name__}: {str(w.message).strip()} ({os.path.basename(w.filename)}:"
                              f"{w.lineno})" for w in caught))
    if seen:  # after the cell's own warnings (a command cell's), never in their place
        rec["warnings"] = [*(rec.get("warnings") or []), *seen][:50]
    return rec


def _execute_cell(payload: dict[str, Any]) -> dict[str, Any]:
    params = dict(payload["params"])
    rec = base_record(payload["suite"], payload["run_id"], payload["cell_id"], payload["label"],
                      record_params(payload["params"]))
    rec["env"] = payload.get("env")
    rec["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t_start = time.perf_counter()
    if params.get("memory_limit_mb"):
        limit_memory(params["memory_limit_mb"])
    if "command" in params:  # a command suite's cell: the user's own command, attached
        from benchbench.runner.command_cell import measure_command

        rec = measure_command(payload, rec)
        rec["wall_s"] = time.perf_counter() - t_start
        return clean_nans(rec)
    attempts = []
    while True:
        if params.get("world_size", 1) > 1:
            from benchbench.runner.distributed import measure_distributed

            measure_distributed(payload, params, rec)
        else:
            from benchbench.runner.program import measure

            measure(payload, params, rec)
        if rec["status"] != "oom" or params.get("on_oom") != "halve-batch" or params["batch_size"] <= 1:
            break
        attempts.append({"batch_size": params["batch_size"], "status": "oom", "error": rec["error"]})
        params["batch_size"] //= 2
        rec.update(status="error", error=None)
    if attempts:
        # The cell id keeps the requested batch; what really ran is recorded.
        # (Throughput was already computed by the last attempt from the batch it ran.)
        rec["oom_backoff"] = {"attempts": attempts, "batch_size_ran": params["batch_size"]
                              if rec["status"] == "ok" else None}
    rec["wall_s"] = time.perf_counter() - t_start
    return clean_nans(rec)


def limit_memory(extra_mb: int) -> None:
    """Cap address space at the current size plus extra_mb: a CPU stand-in for a GPU's memory."""
    try:
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration):
        return
    limit = vm + extra_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
