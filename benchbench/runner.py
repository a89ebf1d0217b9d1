"""Run cells: one process per cell, a timeout, and a record whatever happens.

A fresh process per cell keeps one cell's OOM, crash, hang or allocator state
from touching the next. Starting Python and importing torch + SMP costs ~5 s,
so cells are forked from a fork server that imported them once (~0.2 s per
cell after the first). CUDA is never initialised in the server itself.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import resource
import signal
import sys
import time
import traceback
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from benchbench.errors import BenchbenchError
from benchbench.results import base_record, clean_nans
from benchbench.suite import Cell, Suite

# Kineto (the profiler's backend) logs every start/stop and, without a GPU, a
# device-count error; cells inherit this from the fork server.
os.environ.setdefault("KINETO_LOG_LEVEL", "5")

PRELOAD = ["torch", "segmentation_models_pytorch", "benchbench.runner"]
KILL_GRACE_S = 5.0


@dataclass
class RunOptions:
    isolation: str = "process"  # process | inline (inline: for debugging; no timeout)
    explain: bool = True  # FLOPs, memory and profiler passes after the timed steps
    trace_dir: str | None = None


# ---------------------------------------------------------------- in the cell's process


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    msg = str(exc)
    return "out of memory" in msg.lower() or "DefaultCPUAllocator: can't allocate memory" in msg


def _error_message(exc: BaseException) -> str:
    if isinstance(exc, BenchbenchError):
        return str(exc)
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno} in {tb[-1].name})" if tb else ""
    return f"{type(exc).__name__}: {first}{where}"[:2000]


def execute_cell(payload: dict[str, Any]) -> dict[str, Any]:
    """Build, warm up and time one cell; never raises — failures become the record's status."""
    params = dict(payload["params"])
    rec = base_record(payload["suite"], payload["run_id"], payload["cell_id"], payload["label"], payload["params"])
    rec["env"] = payload.get("env")
    rec["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t_start = time.perf_counter()
    if params.get("memory_limit_mb"):
        _limit_memory(params["memory_limit_mb"])
    attempts = []
    while True:
        if params.get("world_size", 1) > 1:
            _measure_distributed(payload, params, rec)
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
        timing = timed_loop(iter(source), source.to_device, step, device, params["warmup"], params["steps"])
        rec.update(_timing_fields(timing, params["batch_size"]))
        rec["data_wait_s"]["steps_per_epoch"] = source.steps_per_epoch
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
            rec.update(_explain(payload, params, model, step, source, device, rec, rss0))
    except BaseException as exc:  # noqa: BLE001 - every failure is data about the cell
        if isinstance(exc, KeyboardInterrupt):
            raise
        rec["status"] = "oom" if _is_oom(exc) else "error"
        rec["error"] = _error_message(exc)
    finally:
        del source
        if params["device"] == "cuda":
            torch.cuda.empty_cache()  # an OOM back-off retry starts from a clean cache


def _timing_fields(timing: Any, images_per_step: int) -> dict[str, Any]:
    """The record's timing fields, the same for one process and for DDP ranks.

    On CUDA, throughput is images over the timed block's wall time (one sync at
    its end), as a plain training loop would see it; on a CPU it is images over
    the median step, as before.
    """
    from benchbench.measure.timer import summarize

    step_s, wait_s, warmup_s, steady = timing.step_s, timing.data_wait_s, timing.warmup_s, timing.steady
    stats = summarize(step_s)
    total = sum(step_s)
    throughput = images_per_step / stats["median"] if stats["median"] else None
    clock: dict[str, Any] = {"clock": timing.clock, "block_wall_s": timing.block_wall_s}
    if timing.clock == "cuda-events":
        if timing.block_wall_s:
            throughput = images_per_step * len(step_s) / timing.block_wall_s
        enq = summarize(timing.enqueue_s)
        clock["host_enqueue_s"] = {k: enq[k] for k in ("median", "p10", "p90", "samples")}
        clock["throughput_basis"] = "images / timed block wall time"
    else:
        clock["throughput_basis"] = "images / median step"
    return {
        "step_time_s": stats,
        "data_wait_s": {
            **{k: v for k, v in summarize(wait_s).items() if k in ("median", "p90", "max", "samples")},
            "fraction": sum(wait_s) / total if total > 0 else None,
        },
        "warmup": {"steps": len(warmup_s), "steady": steady, "samples": warmup_s},
        "throughput_img_s": throughput,
        "timing": clock,
    }


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
        from benchbench.workload.step import TrainStep

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
        step.forward_fn = step.model
        source = Source({**params, "seed": params["seed"] + rank}, device)
        timing = timed_loop(iter(source), source.to_device, step, device, params["warmup"], params["steps"])
        dist.barrier()
        out.update(status="ok", timing=timing)
        dist.destroy_process_group()
    except BaseException as exc:  # noqa: BLE001
        out["error"] = _error_message(exc)
        out["status"] = "oom" if _is_oom(exc) else "error"
    queue.put(out)


def _measure_distributed(payload: dict[str, Any], params: dict[str, Any], rec: dict[str, Any]) -> None:
    """world_size ranks on this machine; a step takes as long as its slowest rank."""
    from benchbench.measure.timer import summarize

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
        block_wall_s=max((t.block_wall_s or 0.0) for t in timings) or None,
    )
    # Global batch: every rank trains batch_size images per step.
    rec.update(_timing_fields(slowest, params["batch_size"] * world))
    rec["params_count"] = results[0]["params_count"]
    medians = [float(summarize(t.step_s)["median"]) for t in timings]
    rec["ranks"] = {"world_size": world, "backend": "nccl" if params["device"] == "cuda" else "gloo",
                    "median_step_s": medians, "slowest_rank": int(max(range(world), key=lambda i: medians[i])),
                    "step_s": [t.step_s for t in timings]}
    rec["status"] = "ok"


def _limit_memory(extra_mb: int) -> None:
    """Cap address space at the current size plus extra_mb: a CPU stand-in for a GPU's memory."""
    try:
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration):
        return
    limit = vm + extra_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _explain(payload: dict[str, Any], params: dict[str, Any], model: Any, step: Any, source: Any,
             device: Any, rec: dict[str, Any], rss0: int) -> dict[str, Any]:
    """FLOPs, memory and profiler passes; each failure is recorded, not fatal."""
    from benchbench.measure.flops import count_flops
    from benchbench.measure.memory import memory_pass
    from benchbench.measure.profile import profile_pass

    out: dict[str, Any] = {"explain_errors": {}}
    batches = iter(source)
    try:
        flops = count_flops(model, params, step.loss_fn, device)
        median = rec["step_time_s"]["median"]
        train = flops.get("train_step_per_image")
        if train and median:
            achieved = 2 * train * params["batch_size"] / median  # hardware convention: 2 flops per MAC
            flops["achieved_flops_per_s"] = achieved
            peak = ((payload.get("env") or {}).get("peak_flops") or {}).get(
                {"none": "fp32"}.get(params["amp"], params["amp"]), {}
            ).get("flops_per_s")
            flops["peak_flops_per_s"] = peak
            flops["utilization"] = achieved / peak if peak else None
        out["flops"] = flops
    except Exception as exc:  # noqa: BLE001
        out["explain_errors"]["flops"] = _error_message(exc)
    try:
        out["memory"] = {**rec["memory"], **memory_pass(step, batches, source.to_device, device, rss0)}
    except Exception as exc:  # noqa: BLE001
        out["explain_errors"]["memory"] = _error_message(exc)
    try:
        trace = None
        if payload.get("trace_dir"):
            os.makedirs(payload["trace_dir"], exist_ok=True)
            trace = os.path.join(payload["trace_dir"], f"{payload['cell_id']}.json")
        out["breakdown"] = profile_pass(step, batches, source.to_device, device, steps=payload.get("profile_steps", 3),
                                        trace_path=trace, step_time_s=rec["step_time_s"]["median"],
                                        data_wait_s=(rec.get("data_wait_s") or {}).get("median"))
        if trace:
            out["breakdown"]["trace"] = trace
    except Exception as exc:  # noqa: BLE001
        out["explain_errors"]["breakdown"] = _error_message(exc)
    if not out["explain_errors"]:
        del out["explain_errors"]
    return out


def _child_entry(conn: Any, payload: dict[str, Any]) -> None:
    # Own process group: a timeout kills the cell *and* its DataLoader workers,
    # and a Ctrl-C in the terminal reaches only the parent, which decides.
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    if payload.get("cwd"):
        os.chdir(payload["cwd"])
    # A forkserver child inherits the forkserver start method; DataLoader workers
    # must start the way they would in the user's own script (the platform default).
    mp.set_start_method(None, force=True)
    if payload.get("kind") == "calibrate":
        from benchbench.measure.calibrate import calibrate

        rec = calibrate(payload["device"], payload["dtypes"])
    else:
        rec = execute_cell(payload)
    try:
        conn.send(rec)
        conn.close()
    except (BrokenPipeError, OSError):
        os._exit(1)  # the parent is gone (killed): nobody to report to
    os._exit(0)  # skip atexit/finalizers of a possibly-wedged runtime: the record is sent


# ---------------------------------------------------------------- in the parent


_CTX: Any = None


def _context() -> Any:
    global _CTX
    if _CTX is None:
        method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        _CTX = mp.get_context(method)
        if method == "forkserver":
            _CTX.set_forkserver_preload(PRELOAD)
    return _CTX


def _kill_group(proc: Any) -> None:
    for target in ("group", "proc"):
        try:
            if target == "group":
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except (ProcessLookupError, PermissionError, OSError):
            pass


@contextlib.contextmanager
def _main_hidden() -> Iterator[None]:
    """Start children without re-running the caller's __main__ (a script, pytest, the CLI).

    multiprocessing re-imports the parent's main module in every child; the
    cell's code lives in importable modules, so the child needs none of it,
    and a script without an `if __name__ == "__main__"` guard would recurse.
    """
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


@dataclass
class ChildOutcome:
    result: Any  # what the child sent, or None
    timed_out: bool
    exitcode: int | None
    elapsed_s: float


def _run_child(payload: dict[str, Any], timeout_s: float) -> ChildOutcome:
    """Start `_child_entry(payload)` in its own process group and wait for its one message.

    Past the timeout, and on Ctrl-C / SIGTERM, the whole group (the child and
    any DataLoader workers or DDP ranks) is killed: nothing is left orphaned.
    """
    ctx = _context()
    recv_conn, send_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_entry, args=(send_conn, payload), daemon=False)
    t0 = time.perf_counter()
    with _main_hidden():
        proc.start()
    send_conn.close()
    result: Any = None
    timed_out = False
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if recv_conn.poll(0.1):
                try:
                    result = recv_conn.recv()
                except (EOFError, OSError):
                    result = None
                break
            if not proc.is_alive():
                if recv_conn.poll(0.1):
                    continue
                break
            if time.monotonic() > deadline:
                timed_out = True
                _kill_group(proc)
                break
        proc.join(KILL_GRACE_S)
        if proc.is_alive():
            _kill_group(proc)
            proc.join(KILL_GRACE_S)
    except BaseException:
        _kill_group(proc)  # Ctrl-C / SIGTERM: never leave an orphan cell behind
        proc.join(KILL_GRACE_S)
        raise
    finally:
        recv_conn.close()
        # DataLoader workers of a cell that died can outlive it; reap the group.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
    return ChildOutcome(result, timed_out, proc.exitcode, time.perf_counter() - t0)


def run_isolated(payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run a cell in its own process; a hang becomes `timeout`, a death becomes `error`."""
    out = _run_child(payload, timeout_s)
    if out.timed_out:
        return _failure(payload, "timeout", f"cell exceeded timeout_s={timeout_s:g} s and was killed", out.elapsed_s)
    if out.result is not None:
        # Start-up and tear-down of the cell's process, on top of the cell's own wall time.
        out.result["process_wall_s"] = out.elapsed_s
        return out.result
    code = out.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        why = f"cell process was killed by signal {name}" + (" (likely out of memory)" if name == "SIGKILL" else "")
    else:
        why = f"cell process exited with code {code} before reporting a result"
    return _failure(payload, "error", why, out.elapsed_s)


def _failure(payload: dict[str, Any], status: str, message: str, wall_s: float) -> dict[str, Any]:
    rec = base_record(payload["suite"], payload["run_id"], payload["cell_id"], payload["label"], payload["params"])
    rec.update(status=status, error=message, env=payload.get("env"), wall_s=wall_s,
               started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return rec


def make_payload(suite: Suite, cell: Cell, run_id: str, env: dict[str, Any],
                 options: RunOptions | None = None) -> dict[str, Any]:
    options = options or RunOptions()
    return {
        "kind": "cell",
        "explain": options.explain,
        "trace_dir": str(options.trace_dir) if options.trace_dir else None,
        "suite": suite.name,
        "run_id": run_id,
        "cell_id": cell.id,
        "label": cell.label,
        "params": cell.params,
        "env": env,
        "cwd": os.getcwd(),
    }


def run_cell(payload: dict[str, Any], options: RunOptions) -> dict[str, Any]:
    if options.isolation == "inline":
        return execute_cell(payload)
    return run_isolated(payload, float(payload["params"]["timeout_s"]))


def calibrate_peak(suite: Suite, isolation: str = "process") -> dict[str, Any]:
    """The device's measured matmul peak per dtype the suite uses, in a process of its own."""
    dtypes = sorted({{"none": "fp32"}.get(c.params["amp"], c.params["amp"]) for c in suite.cells})
    payload = {"kind": "calibrate", "device": suite.device, "dtypes": dtypes, "cwd": os.getcwd()}
    if isolation == "inline":
        from benchbench.measure.calibrate import calibrate

        return calibrate(suite.device, dtypes)
    result = _run_child(payload, 300.0).result
    return result if isinstance(result, dict) else {}


def preflight(suite: Suite) -> None:
    """Validate every cell before the first one runs (see workload.models.preflight)."""
    from benchbench.workload.data import check_data
    from benchbench.workload.models import preflight as model_preflight

    checked: dict[str, BenchbenchError | None] = {}
    for cell in suite.cells:
        p = cell.params
        key = repr((p["arch"], p["encoder"], p["decoder_channels"], p["resolution"], p["batch_size"],
                    p["classes"], p["in_channels"]))
        if key not in checked:
            try:
                model_preflight(p)
                checked[key] = None
            except BenchbenchError as exc:
                checked[key] = exc
        err = checked[key]
        if err is not None:
            raise BenchbenchError(f"cell {cell.id} ({cell.label}): {err}")
        check_data(p)


def iter_run(
    suite: Suite, run_id: str, env: dict[str, Any], options: RunOptions | None = None,
    cells: list[Cell] | None = None,
) -> Iterator[tuple[Cell, dict[str, Any]]]:
    options = options or RunOptions()
    for cell in cells if cells is not None else suite.cells:
        yield cell, run_cell(make_payload(suite, cell, run_id, env, options), options)
