"""The one cell program: build -> trackers -> timed loop -> record -> explanation passes.

Every caller measures a cell through `measure`, so no caller can drift from another: a cell's own process
(the process, inline and SLURM executors), each DDP rank (with a rank context that agrees on warm-up and
stamps its rank), and the pytest plugin (`measure_inline`). What one caller records, all record: memory,
losses and GradScaler's skips, the trackers' fields (GPU conditions, CPU contention), build time, and the
explanation passes.

The steps, in order:

1. build the model, the training step and the data source (`build_s`);
2. enter every tracker (`measure.trackers`) around the timed block with an ExitStack — on every path;
3. warm up until steady, time the block (`measure.timer.timed_loop`: CUDA events on a GPU, one sync);
4. assemble the record: timing, input stall, training (losses read once, after the block), memory,
   the trackers' fields;
5. run the explanation passes (FLOPs, memory, profiler) after the timed block, never during it.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchbench.record import Record
from benchbench.runner.errors import error_message, is_oom


@dataclass
class Ranks:
    """What the program does differently as one of several DDP ranks; one process: nothing."""

    rank: int = 0
    world: int = 1

    def agree(self, steady: bool) -> bool:
        """One process decides for itself; DDP ranks must leave warm-up together."""
        return steady

    def wrap(self, step: Any, params: dict[str, Any], device: Any) -> None:
        """Turn the step's model into what the ranks train (DDP wraps it); one process keeps it."""

    def batches(self, it: Any) -> Any:
        """The batches the timed loop asks for (a rank times each ask: `DdpRanks`); one process: as they are."""
        return it

    def on_step(self, phase: str, i: int) -> None:
        """Each step's end (a rank keeps it on its clock); one process: nothing."""

    @property
    def main(self) -> bool:
        return self.rank == 0


def build(params: dict[str, Any], device: Any, ranks: Ranks) -> tuple[Any, Any, Any]:
    """The model, its training step (AMP, layout, compile, loss, optimizer) and the data source."""
    from benchbench.measure.stage_profile import StageTiming
    from benchbench.workload.models import build_model
    from benchbench.workload.source import Source
    from benchbench.workload.step import TrainStep

    model = build_model(params)
    step = TrainStep(model, params if ranks.world == 1 else {**params, "compile": False}, device)
    ranks.wrap(step, params, device)
    source = Source(params if ranks.world == 1 else {**params, "seed": params["seed"] + ranks.rank}, device,
                    StageTiming())
    return model, step, source


def measure(payload: dict[str, Any], params: dict[str, Any], rec: dict[str, Any], ranks: Ranks | None = None) -> Any:
    """Measure one cell into `rec`; never raises for the cell's own failures (they become its status).

    Returns the loop's raw timing (DDP's parent combines the ranks' by the slowest), or None on failure."""
    import torch

    from benchbench.measure.timer import timed_loop
    from benchbench.measure.trackers import TrackerContext, Trackers
    from benchbench.workload.models import count_params

    ranks = ranks or Ranks()
    t_start = time.perf_counter()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    source = None
    timing = None
    try:
        if params.get("threads"):
            torch.set_num_threads(params["threads"])
        torch.manual_seed(params["seed"])
        device = torch.device("cuda", ranks.rank) if params["device"] == "cuda" and ranks.world > 1 else \
            torch.device(params["device"])
        model, step, source = build(params, device, ranks)
        rec["params_count"] = count_params(model)
        if params["data"].get("cache") == "ram":
            user = params["data"]["kind"] == "dataset"
            rec["data_cache"] = {"what": "the data set's items, after its transforms" if user else "decoded images",
                                 "freezes_augmentation": user}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        rec["build_s"] = time.perf_counter() - t_start
        trackers = Trackers(TrackerContext(device, params, torch.get_num_threads(), source))
        timing = timed_loop(ranks.batches(iter(source)), source.to_device, step, device, params["warmup"],
                            params["steps"], on_step=ranks.on_step, agree=ranks.agree, tracker=trackers)
        images = params["batch_size"] * ranks.world
        rec.update(timing_fields(timing, images))
        rec.update(trackers.results(images * params["steps"]))
        rec["training"] = training_fields(timing.losses, step, len(timing.warmup_s))
        rec["data_wait_s"]["steps_per_epoch"] = source.steps_per_epoch
        if source.loader is not None:
            rec["data_wait_s"]["epoch_boundary_s"] = source.epoch_boundary_s()  # after the timed block, apart
        rec["memory"] = memory_fields(device, rss0)
        rec["status"] = "ok"
        if payload.get("explain"):
            # After the timed steps, never during them: instrumentation cannot
            # disturb the throughput it would explain. DDP ranks all run them (the profiled steps all-reduce).
            from benchbench.runner.passes import PassContext, run_passes

            pass_payload = payload if ranks.main else {**payload, "trace_dir": None}
            dw = rec["data_wait_s"]
            stall = (dw.get("gpu_starved_s") or dw).get("median")
            rec.update(run_passes(PassContext(pass_payload, params, model, step, source, device, rec["memory"], rss0,
                                              rec["step_time_s"]["median"], stall, images)))
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        rec["status"] = "oom" if is_oom(exc) else "error"
        rec["error"] = error_message(exc)
        timing = None
    finally:
        if source is not None:
            source.close()
        del source
        if params["device"] == "cuda":
            torch.cuda.empty_cache()  # an OOM back-off retry starts from a clean cache
    return timing


def memory_fields(device: Any, rss0: int) -> dict[str, Any]:
    import torch

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mem: dict[str, Any] = {"peak_rss_bytes": peak, "rss_growth_bytes": peak - rss0}
    if device.type == "cuda":
        mem["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
        mem["cuda_peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
    return mem


def training_fields(losses: list[float], step: Any, warmup_steps: int = 0) -> dict[str, Any]:
    """What the steps did to the model, for the numerics check of `advise`: the loss of each step, how many
    were not finite, non-finite parameters after the run, and the steps GradScaler skipped (read from its own
    found-inf flags, once, after the block)."""
    import torch

    out: dict[str, Any] = {"losses": losses, "nonfinite": sum(1 for v in losses if not math.isfinite(v)),
                           "warmup_steps": warmup_steps}
    model = getattr(step, "model", None)
    if model is not None:
        flags = [torch.isfinite(p.detach()).all() for p in model.parameters()]
        out["nonfinite_params"] = int(sum(1 for f in torch.stack(flags).cpu() if not bool(f))) if flags else 0
    scaler = getattr(step, "scaler", None)
    if scaler is not None:
        found = list(getattr(step, "found_inf", []))[: len(losses) or None]
        skipped_at = ([i for i, v in enumerate(torch.stack([f.reshape(()).float().cpu() for f in found]).tolist())
                       if v > 0] if found else [])
        scale = float(scaler.get_scale())
        out["grad_scaler"] = {"init_scale": float(scaler._init_scale),
                              "final_scale": scale, "skipped_steps": len(skipped_at), "skipped_at": skipped_at,
                              "steps": len(found)}
        step.found_inf.clear()
    return out


def timing_fields(timing: Any, images_per_step: int) -> dict[str, Any]:
    """The record's timing fields, the same for one process and for DDP ranks.

    On CUDA, throughput is images over the timed block's wall time (one sync at
    its end), as a plain training loop would see it; on a CPU it is images over
    the median step.
    """
    from benchbench.record import summarize, throughput

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


def measure_inline(params: dict[str, Any], explain: bool = False, suite: str = "inline",
                   on_record: Callable[[Record], None] | None = None) -> Record:
    """One cell in this process, through the same program as `benchbench run`: the pytest plugin's and the
    benchmarks' way in. `params` are a cell's resolved settings (`CellParams(...).model_dump(mode="json")`)."""
    from benchbench.record import base_record, clean_nans
    from benchbench.runner.loop import as_record
    from benchbench.suite import cell_id

    rec = base_record(suite, "inline", cell_id(params), str(params.get("arch")), params)
    rec["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t0 = time.perf_counter()
    measure({"explain": explain, "cell_id": rec["cell_id"]}, params, rec)
    rec["wall_s"] = time.perf_counter() - t0
    out = as_record(clean_nans(rec))
    if on_record:
        on_record(out)
    return out
