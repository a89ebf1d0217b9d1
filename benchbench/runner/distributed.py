"""Distributed cells: world_size DistributedDataParallel ranks on this machine, gathered into one record.

Each rank runs the one cell program (`runner.program.measure`) with a rank context: warm-up steadiness
all-reduced (no rank enters the timed block while another still warms up), the model wrapped in DDP
(compiled around it, as a user would), its own data seed. So a DDP record carries what any record
carries — memory, losses, GradScaler's skips, GPU conditions, CPU contention, build time, explanations —
per rank where it differs, the slowest rank deciding the step: a step takes as long as its slowest rank,
and throughput is for the global batch.

A rank that fails (an OOM, an NCCL error, a crash) would leave the others blocked in a collective until
the timeout: the parent watches every rank, and at the first failure ends the others and records *that*
rank's error, never "timeout".
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import socket
import time
from typing import Any

from benchbench.policy import PROCESS
from benchbench.runner.errors import error_message, is_oom
from benchbench.runner.program import Ranks, measure, timing_fields

KILL_GRACE_S = PROCESS.kill_grace_s


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DdpRanks(Ranks):
    """A rank of a process group: steadiness agreed by all-reduce, the model trained through DDP, each step kept
    on the node's clock (`measure.rank_clock`) as an attached rank's is, for the same per-rank analysis."""

    def __init__(self, rank: int, world: int) -> None:
        from benchbench.measure.rank_clock import StepClock

        super().__init__(rank, world)
        self.clock = StepClock()
        self.asked = self.got = 0.0
        self.cpu = True

    def batches(self, it: Any) -> Any:
        def timed() -> Any:
            while True:
                self.asked = time.perf_counter()
                batch = next(it)
                self.got = time.perf_counter()
                yield batch

        return timed()

    def on_step(self, phase: str, i: int) -> None:
        self.clock.step(self.asked, self.got - self.asked, time.perf_counter(), keep=phase == "timed" and self.cpu)

    def agree(self, steady: bool) -> bool:
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1 if steady else 0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)  # steady only when every rank is
        return bool(flag.item())

    def wrap(self, step: Any, params: dict[str, Any], device: Any) -> None:
        from torch.nn.parallel import DistributedDataParallel

        from benchbench.workload.step import compiled

        self.device = device
        step.model = DistributedDataParallel(step.model, device_ids=[self.rank] if device.type == "cuda" else None)
        import torch

        self.cpu = device.type != "cuda"
        self.clock.counting = True
        self.clock.hook(step.model, not self.cpu)
        torch.autograd.backward = self.clock.wrap_backward(torch.autograd.backward)
        # Compiled around DDP, as a user would (TorchDynamo's DDPOptimizer splits graphs at bucket bounds).
        step.forward_fn = compiled(step.model, params["compile"]) if params.get("compile") else step.model
        step.compiled = bool(params.get("compile"))


def _rank_main(rank: int, world: int, port: int, payload: dict[str, Any], params: dict[str, Any],
               queue: Any) -> None:
    out: dict[str, Any] = {"rank": rank, "record": {"status": "error", "error": None}, "timing": None}
    try:
        import torch
        import torch.distributed as dist

        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        cuda = params["device"] == "cuda"
        if cuda:
            torch.cuda.set_device(rank)
        # Ranks share the machine's cores on CPU: split the threads between them.
        torch.set_num_threads(params.get("threads") or max(1, (os.cpu_count() or 1) // world))
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
        rec: dict[str, Any] = {}
        ranks = DdpRanks(rank, world)
        timing = measure(payload, {**params, "threads": None}, rec, ranks)
        out["clock"] = {**ranks.clock.doc(), "pid": os.getpid(), "host": socket.gethostname()}
        if rec.get("status") == "ok":
            dist.barrier()
        out.update(record=rec, timing=timing)
        dist.destroy_process_group()
    except BaseException as exc:
        out["record"] = {"status": "oom" if is_oom(exc) else "error", "error": error_message(exc)}
    queue.put(out)


def _end(procs: list[Any]) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + KILL_GRACE_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(1.0)


def _describe_exit(code: int | None) -> str:
    import signal

    if code is not None and code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def collect(procs: list[Any], queue: Any, world: int, budget_s: float) -> tuple[dict[int, dict[str, Any]], str | None,
                                                                                   str]:
    """Each rank's result as it comes; at the first failed or dead rank stop waiting for the rest.

    Returns (results by rank, why it stopped early or None, the status for the record)."""
    results: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + budget_s
    while len(results) < world:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            missing = sorted(set(range(world)) - set(results))
            why = f"rank(s) {', '.join(map(str, missing))} did not finish within {budget_s:.0f} s"
            return results, why, "timeout"
        try:
            r = queue.get(timeout=min(0.5, remaining))
        except queue_mod.Empty:
            dead = [i for i, p in enumerate(procs) if i not in results and not p.is_alive()]
            if dead:
                try:  # a rank that exited right after reporting: its message may still be in the pipe
                    r = queue.get(timeout=1.0)
                except queue_mod.Empty:
                    i = dead[0]
                    return results, f"rank {i} {_describe_exit(procs[i].exitcode)} without a result", "error"
            else:
                continue
        results[int(r["rank"])] = r
        rec = r.get("record") or {}
        if rec.get("status") != "ok":
            return results, f"rank {r['rank']}: {rec.get('error')}", str(rec.get("status") or "error")
    return results, None, "ok"


def measure_distributed(payload: dict[str, Any], params: dict[str, Any], rec: dict[str, Any]) -> None:
    """world_size ranks on this machine; a step takes as long as its slowest rank."""
    world = params["world_size"]
    if params["device"] == "cuda":
        import torch

        if torch.cuda.device_count() < world:
            rec.update(status="error", error=f"world_size={world} needs {world} GPUs; "
                                               f"this machine has {torch.cuda.device_count()}")
            return
    ctx = mp.get_context("spawn" if params["device"] == "cuda" else "fork")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, world, port, payload, params, queue)) for r in range(world)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    # Inside the cell's own timeout (its process group is killed there): leave time to record why.
    timeout = float(params["timeout_s"])
    budget = max(timeout * 0.8, timeout - 4 * KILL_GRACE_S)
    try:
        results, why, status = collect(procs, queue, world, budget)
    finally:
        _end(procs)
    if why is not None:
        rec.update(status=status, error=f"{why} (benchbench ended the other rank(s) after "
                                        f"{time.perf_counter() - t0:.1f} s)")
        if results.get(0, {}).get("record", {}).get("params_count"):
            rec["params_count"] = results[0]["record"]["params_count"]
        return
    gather_ranks(rec, [results[i] for i in range(world)], params, world)


def gather_ranks(rec: dict[str, Any], results: list[dict[str, Any]], params: dict[str, Any], world: int) -> None:
    """One record from the ranks': the slowest rank per step, rank 0's explanation, every rank's state."""
    from benchbench.measure.timer import LoopTiming
    from benchbench.record import summarize

    timings: list[LoopTiming] = [r["timing"] for r in results]
    recs: list[dict[str, Any]] = [r["record"] for r in results]
    slowest = LoopTiming(
        step_s=[max(vals) for vals in zip(*(t.step_s for t in timings))],
        data_wait_s=[max(vals) for vals in zip(*(t.data_wait_s for t in timings))],
        warmup_s=timings[0].warmup_s, steady=all(t.steady for t in timings), clock=timings[0].clock,
        enqueue_s=[max(vals) for vals in zip(*(t.enqueue_s for t in timings))],
        starved_s=[max(vals) for vals in zip(*(t.starved_s for t in timings))],
        block_wall_s=max((t.block_wall_s or 0.0) for t in timings) or None,
    )
    main = recs[0]
    # Rank 0's explanations, training and data-wait extras; the slowest rank's timing (global batch).
    for key, value in main.items():
        if key not in ("status", "error", "step_time_s", "data_wait_s", "warmup", "throughput_img_s", "timing"):
            rec[key] = value
    rec.update(timing_fields(slowest, params["batch_size"] * world))
    for k in ("steps_per_epoch", "epoch_boundary_s"):
        if k in (main.get("data_wait_s") or {}):
            rec["data_wait_s"][k] = main["data_wait_s"][k]
    rec["build_s"] = max(r.get("build_s") or 0.0 for r in recs)
    mems = [r.get("memory") or {} for r in recs]
    rec["memory"] = {**{k: max(m.get(k) or 0 for m in mems) for k in mems[0] if isinstance(mems[0][k], (int, float))},
                     "per_rank": mems, "basis": "the largest rank's peak; every rank's in per_rank"}
    for tracker in ("gpu_conditions", "cpu_contention"):
        states = [r.get(tracker) for r in recs]
        if any(states):
            # A degraded rank degrades the step (the slowest rank sets it): its state leads, all are kept.
            worst = next((s for s in states if s and (s.get("throttled") or s.get("shared") or s.get("contended"))),
                         states[0] or next(s for s in states if s))
            rec[tracker] = {**worst, "per_rank": states}
    medians = [float(summarize(t.step_s)["median"]) for t in timings]
    rec["ranks"] = {"world_size": world, "backend": "nccl" if params["device"] == "cuda" else "gloo",
                    "median_step_s": medians, "slowest_rank": int(max(range(world), key=lambda i: medians[i])),
                    "step_s": [t.step_s for t in timings], "warmup_steps": [len(t.warmup_s) for t in timings],
                    "losses": [(r.get("training") or {}).get("losses") for r in recs]}
    rec["distributed"] = distributed_part(results, timings, params, world)
    rec["status"] = "ok"


def distributed_part(results: list[dict[str, Any]], timings: list[Any], params: dict[str, Any],
                     world: int) -> dict[str, Any]:
    """Every rank as an attached DDP run has it (`record.ranks.Distributed`): its steps, data wait and clock,
    DDP's settings as built, a GPU rank's NCCL collectives from its trace — the same per-rank analysis."""
    ranks = []
    for i, (res, t) in enumerate(zip(results, timings, strict=True)):
        c = res.get("clock") or {}
        gpu = ((res.get("record") or {}).get("breakdown") or {}).get("gpu") or {}
        ranks.append({"rank": i, "local_rank": i, "pid": c.get("pid"), "host": c.get("host"), "status": "ok",
                      "step_s": list(t.step_s), "data_wait_s": list(t.data_wait_s), "clock": c.get("clock"),
                      "clock_note": c.get("clock_note"), "threads": c.get("threads"), "cores": c.get("cores"),
                      "workers": int(params.get("num_workers") or 0), "backend": c.get("backend"),
                      "steps_seen": len(t.warmup_s) + len(t.step_s),
                      **{f"gpu_{k}": gpu.get(k) for k in ("comm_s", "comm_exposed_s", "collectives_s")}})
    ddp = next((r["clock"]["ddp"] for r in results if (r.get("clock") or {}).get("ddp")), None)
    return {"launcher": "suite", "world_size": world, "nproc_per_node": world, "ranks": ranks, "ddp": ddp}
