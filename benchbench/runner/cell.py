"""One cell inside its own process: build, warm up, time, explain; a record whatever happens."""

from __future__ import annotations

import os
import resource
import time
from typing import Any

from benchbench.measurement import base_record, clean_nans
from benchbench.runner.errors import error_message, is_oom


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
    if seen:
        rec["warnings"] = seen[:50]
    return rec


def _execute_cell(payload: dict[str, Any]) -> dict[str, Any]:
    params = dict(payload["params"])
    rec = base_record(payload["suite"], payload["run_id"], payload["cell_id"], payload["label"], payload["params"])
    rec["env"] = payload.get("env")
    rec["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t_start = time.perf_counter()
    if params.get("memory_limit_mb"):
        limit_memory(params["memory_limit_mb"])
    attempts = []
    while True:
        if params.get("world_size", 1) > 1:
            from benchbench.runner.distributed import measure_distributed

            measure_distributed(payload, params, rec)
        else:
            _measure(payload, params, rec)
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


def _measure(payload: dict[str, Any], params: dict[str, Any], rec: dict[str, Any]) -> None:
    import torch

    from benchbench.measure.timer import timed_loop
    from benchbench.workload.data import Source
    from benchbench.workload.models import build_model, count_params
    from benchbench.workload.step import TrainStep

    t_start = time.perf_counter()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    source = None
    try:
        if params.get("threads"):
            torch.set_num_threads(params["threads"])
        torch.manual_seed(params["seed"])
        device = torch.device(params["device"])
        model = build_model(params)
        rec["params_count"] = count_params(model)
        step = TrainStep(model, params, device)
        source = Source(params, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        rec["build_s"] = time.perf_counter() - t_start
        tracker = gpu_tracker(device)
        timing = timed_loop(iter(source), source.to_device, step, device, params["warmup"], params["steps"],
                            tracker=tracker)
        rec.update(timing_fields(timing, params["batch_size"]))
        if tracker is not None:
            rec["gpu_conditions"] = tracker.result(params["batch_size"] * params["steps"])
        rec["training"] = training_fields(timing.losses, step)
        rec["data_wait_s"]["steps_per_epoch"] = source.steps_per_epoch
        if source.loader is not None:
            rec["data_wait_s"]["epoch_boundary_s"] = source.epoch_boundary_s()  # after the timed block, apart
        mem: dict[str, Any] = {
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "rss_growth_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0,
        }
        if device.type == "cuda":
            mem["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
            mem["cuda_peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
        rec["memory"] = mem
        rec["status"] = "ok"
        if payload.get("explain"):
            # After the timed steps, never during them: instrumentation cannot
            # disturb the throughput it would explain.
            from benchbench.runner.passes import PassContext, run_passes

            rec.update(run_passes(PassContext(payload, params, model, step, source, device, rec, rss0)))
    except BaseException as exc:  # noqa: BLE001 - every failure is data about the cell
        if isinstance(exc, KeyboardInterrupt):
            raise
        rec["status"] = "oom" if is_oom(exc) else "error"
        rec["error"] = error_message(exc)
    finally:
        del source
        if params["device"] == "cuda":
            torch.cuda.empty_cache()  # an OOM back-off retry starts from a clean cache


def training_fields(losses: list[float], step: Any) -> dict[str, Any]:
    """What the steps did to the model, for the numerics check of `advise`: the loss of each step, how many
    were not finite, and GradScaler's skipped steps (its scale halves on each inf/NaN step; it grows only
    every 2000 clean steps, so over a short run the halvings count the skips)."""
    import math

    out: dict[str, Any] = {"losses": losses, "nonfinite": sum(1 for v in losses if not math.isfinite(v))}
    if getattr(step, "scaler", None) is not None:
        scale = float(step.scaler.get_scale())
        init = float(step.scaler._init_scale)  # noqa: SLF001 - torch keeps it private; 65536 by default
        out["grad_scaler"] = {"final_scale": scale,
                              "skipped_steps": max(0, round(math.log2(init / scale))) if scale > 0 else None}
    return out


def gpu_tracker(device: Any) -> Any:
    """NVML's view of this cell's GPU during the timed block, where NVML exists (else None)."""
    if device.type != "cuda":
        return None
    import torch

    from benchbench.measure.gpu_state import open_tracker

    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return open_tracker(index, str(uuid) if uuid is not None else None)


def timing_fields(timing: Any, images_per_step: int) -> dict[str, Any]:
    """The record's timing fields, the same for one process and for DDP ranks.

    On CUDA, throughput is images over the timed block's wall time (one sync at
    its end), as a plain training loop would see it; on a CPU it is images over
    the median step, as before.
    """
    from benchbench.measurement import summarize, throughput

    step_s, wait_s, warmup_s, steady = timing.step_s, timing.data_wait_s, timing.warmup_s, timing.steady
    stats = summarize(step_s)
    total = sum(step_s)
    clock: dict[str, Any] = {"clock": timing.clock, "block_wall_s": timing.block_wall_s}
    if timing.clock == "cuda-events":
        enq = summarize(timing.enqueue_s)
        clock["host_enqueue_s"] = {k: enq[k] for k in ("median", "p10", "p90", "samples")}
        clock["throughput_basis"] = "images / timed block wall time"
    else:
        clock["throughput_basis"] = "images / median step"
    data_wait: dict[str, Any] = {
        **{k: v for k, v in summarize(wait_s).items() if k in ("median", "p90", "max", "samples")},
        "fraction": sum(wait_s) / total if total > 0 else None,
    }
    if timing.starved_s:
        # On a GPU the host wait is not the stall: only the GPU's idle while it waited is.
        data_wait["gpu_starved_s"] = {
            **{k: v for k, v in summarize(timing.starved_s).items() if k in ("median", "p90", "max", "samples")},
            "fraction": sum(timing.starved_s) / total if total > 0 else None,
        }
    return {
        "step_time_s": stats,
        "data_wait_s": data_wait,
        "warmup": {"steps": len(warmup_s), "steady": steady, "samples": warmup_s},
        "throughput_img_s": throughput(images_per_step, step_s, timing.clock, timing.block_wall_s),
        "timing": clock,
    }


def limit_memory(extra_mb: int) -> None:
    """Cap address space at the current size plus extra_mb: a CPU stand-in for a GPU's memory."""
    try:
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration):
        return
    limit = vm + extra_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
