"""Distributed cells: world_size DistributedDataParallel ranks on this machine, gathered into one record.

A step takes as long as its slowest rank; throughput is for the global batch.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Any

from benchbench.runner.errors import error_message, is_oom

KILL_GRACE_S = 5.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, world: int, port: int, params: dict[str, Any], queue: Any) -> None:
    """One DistributedDataParallel rank: the same step, gradients all-reduced every step."""
    out: dict[str, Any] = {"rank": rank, "status": "error"}
    try:
        import torch
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        from benchbench.measure.timer import timed_loop
        from benchbench.workload.data import Source
        from benchbench.workload.models import build_model, count_params
        from benchbench.workload.step import TrainStep, compiled

        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        cuda = params["device"] == "cuda"
        if cuda:
            torch.cuda.set_device(rank)
        # Ranks share the machine's cores on CPU: split the threads between them.
        torch.set_num_threads(params.get("threads") or max(1, (os.cpu_count() or 1) // world))
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
        device = torch.device("cuda", rank) if cuda else torch.device("cpu")
        torch.manual_seed(params["seed"])
        model = build_model(params)
        out["params_count"] = count_params(model)
        step = TrainStep(model, {**params, "compile": False}, device)
        step.model = DistributedDataParallel(step.model, device_ids=[rank] if cuda else None)
        # Compiled around DDP, as a user would (TorchDynamo's DDPOptimizer splits graphs at bucket bounds).
        step.forward_fn = compiled(step.model, params["compile"]) if params.get("compile") else step.model
        source = Source({**params, "seed": params["seed"] + rank}, device)

        def agree(steady: bool) -> bool:
            flag = torch.tensor([1 if steady else 0], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)  # steady only when every rank is
            return bool(flag.item())

        timing = timed_loop(iter(source), source.to_device, step, device, params["warmup"], params["steps"],
                            agree=agree)
        dist.barrier()
        out.update(status="ok", timing=timing)
        dist.destroy_process_group()
    except BaseException as exc:  # noqa: BLE001
        out["error"] = error_message(exc)
        out["status"] = "oom" if is_oom(exc) else "error"
    queue.put(out)


def measure_distributed(payload: dict[str, Any], params: dict[str, Any], rec: dict[str, Any]) -> None:
    """world_size ranks on this machine; a step takes as long as its slowest rank."""
    from benchbench.measurement import summarize

    world = params["world_size"]
    if params["device"] == "cuda":
        import torch

        if torch.cuda.device_count() < world:
            rec.update(status="error", error=f"world_size={world} needs {world} GPUs; "
                                               f"this machine has {torch.cuda.device_count()}")
            return
    from benchbench.runner.cell import timing_fields

    ctx = mp.get_context("spawn" if params["device"] == "cuda" else "fork")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, world, port, params, queue)) for r in range(world)]
    for p in procs:
        p.start()
    results = []
    try:
        for _ in range(world):
            results.append(queue.get(timeout=float(params["timeout_s"])))
    except Exception:  # noqa: BLE001 - a rank died without reporting
        pass
    for p in procs:
        p.join(KILL_GRACE_S)
        if p.is_alive():
            p.kill()
    results.sort(key=lambda r: r["rank"])
    bad = [r for r in results if r["status"] != "ok"]
    if len(results) < world or bad:
        first = bad[0] if bad else {"status": "error", "error": f"{world - len(results)} rank(s) died without a result"}
        rec.update(status=first["status"], error=f"rank {first.get('rank', '?')}: {first.get('error')}")
        return
    from benchbench.measure.timer import LoopTiming

    timings = [r["timing"] for r in results]
    slowest = LoopTiming(
        step_s=[max(vals) for vals in zip(*(t.step_s for t in timings))],
        data_wait_s=[max(vals) for vals in zip(*(t.data_wait_s for t in timings))],
        warmup_s=timings[0].warmup_s, steady=all(t.steady for t in timings), clock=timings[0].clock,
        enqueue_s=[max(vals) for vals in zip(*(t.enqueue_s for t in timings))],
        starved_s=[max(vals) for vals in zip(*(t.starved_s for t in timings))],
        block_wall_s=max((t.block_wall_s or 0.0) for t in timings) or None,
    )
    # Global batch: every rank trains batch_size images per step.
    rec.update(timing_fields(slowest, params["batch_size"] * world))
    rec["params_count"] = results[0]["params_count"]
    medians = [float(summarize(t.step_s)["median"]) for t in timings]
    rec["ranks"] = {"world_size": world, "backend": "nccl" if params["device"] == "cuda" else "gloo",
                    "median_step_s": medians, "slowest_rank": int(max(range(world), key=lambda i: medians[i])),
                    "step_s": [t.step_s for t in timings], "warmup_steps": [len(t.warmup_s) for t in timings]}
    rec["status"] = "ok"
