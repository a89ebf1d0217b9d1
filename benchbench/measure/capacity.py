"""The input pipeline's capacity against the model's demand, measured after the timed block.

Demand: the model trains on one batch already on the device, `k` steps (a sync after each: this is an
explanation, not the timed block) — the samples/s it could consume if input were free; its process's CPU time
per step says how much of the cores its threads use. Supply: the same data set, transforms and collate
through a fresh DataLoader with 0, 1, ... up to the cell's cores workers, the model idle — the samples/s the
pipeline makes alone (after its workers have started and made their first batch). One worker alone is also
the uncontended stage profile. On CUDA, pinning a batch and copying it are timed too. `record.inputs.predict`
turns them into the step time for each worker count.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Iterator
from typing import Any

import torch

from benchbench.record.inputs import predict

BUDGET_S = 2.5  # per worker count, after its start: enough batches for a stable rate on a slow pipeline
MIN_BATCHES = 4
SPAN_SAMPLES = 1_000_000  # one epoch longer than the measurement: no epoch boundary inside it


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def demand(step: Any, source: Any, batches: Iterator[Any], device: torch.device, steps: int) -> dict[str, Any]:
    x, y = source.to_device(next(batches))
    cuda = device.type == "cuda"
    times, cpu0 = [], _cpu_s()
    for _ in range(steps):
        t0 = time.perf_counter()
        step(x, y)
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    cpu = (_cpu_s() - cpu0) / steps
    return {"compute_step_s": statistics.median(times), "model_cpu_s": cpu}


def _endless(ld: Any) -> Iterator[Any]:
    while True:
        yield from ld


def supply(params: dict[str, Any], source: Any, workers: int, device: torch.device) -> tuple[float, int, float,
                                                                                              dict[str, Any] | None]:
    """(samples/s, batches, seconds, stage profile) of the pipeline alone with `workers` workers."""
    from benchbench.measure.stage_profile import StageProfile, Timed, TimedCollate, TimedIterable, WorkerInit
    from benchbench.workload.source import loader

    profile = StageProfile(source.dataset)
    iterable = isinstance(source.dataset, torch.utils.data.IterableDataset)
    ds = TimedIterable(source.dataset) if iterable else Timed(source.dataset)
    ld = loader(params, device, ds, TimedCollate(source.collate), workers,
                WorkerInit(profile) if workers else None, pin=False, persistent=False, samples=SPAN_SAMPLES)
    bs = params["batch_size"]
    ctx = profile.in_main(ds) if workers == 0 else _null()
    with ctx:
        it = _endless(ld)
        for _ in range(max(1, workers)):  # the workers have started and each made a batch
            next(it)
        before = profile.snapshot()
        n, t0 = 0, time.perf_counter()
        while True:  # at least MIN_BATCHES and half a second, at most BUDGET_S (and two batches)
            next(it)
            n += 1
            dt = time.perf_counter() - t0
            if (n >= MIN_BATCHES and dt >= 0.5) or (dt > BUDGET_S and n >= 2):
                break
        stages = profile.read(since=before)
    del it, ld
    return n * bs / dt, n, dt, stages


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def transfer(source: Any, batches: Iterator[Any], device: torch.device) -> tuple[float | None, float | None]:
    """CUDA: (pinning one batch, copying it) in seconds; None elsewhere."""
    if device.type != "cuda":
        return None, None
    from torch.utils.data._utils.pin_memory import pin_memory

    x, y = next(batches)
    x, y = x.cpu(), y.cpu()
    t0 = time.perf_counter()
    px, py = pin_memory((x, y))
    pin = time.perf_counter() - t0
    torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    px.to(device, non_blocking=True), py.to(device, non_blocking=True)
    torch.cuda.synchronize(device)
    return pin, time.perf_counter() - t0


def capacity(params: dict[str, Any], step: Any, source: Any, batches: Iterator[Any], device: torch.device
             ) -> dict[str, Any] | None:
    if source.loader is None:
        return None
    t_start = time.perf_counter()
    cores = usable_cores()
    d = demand(step, source, batches, device, max(3, min(8, params["steps"])))
    rows, alone = [], None
    for w in range(cores + 1):
        img_s, n, dt, stages = supply(params, source, w, device)
        rows.append({"workers": w, "img_s": img_s, "batches": n, "seconds": dt})
        if w == 1:
            alone = stages
    pin, h2d = transfer(source, batches, device)
    bs = params["batch_size"]
    preds = predict(device.type, cores, bs, d["compute_step_s"], d["model_cpu_s"] if device.type == "cpu" else None,
                    {r["workers"]: r["img_s"] for r in rows}, h2d or 0.0)
    return {"device": device.type, "cores": cores, "batch_size": bs, **d,
            "demand_img_s": bs / d["compute_step_s"] if d["compute_step_s"] > 0 else 0.0,
            "supply": rows, "stages_alone": alone, "pin_s": pin, "host_to_device_s": h2d,
            "predicted": [p.model_dump() for p in preds], "cost_s": time.perf_counter() - t_start}
