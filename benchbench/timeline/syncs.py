"""Host syncs in a timeline: which calls block the host until the GPU has drained, which of them are the
script's (every one benchbench did not issue), what each is (a value read on the host, a pageable copy to the
device, a free), the user's line that made it, and what it costs the GPU.

`.item()` is `cudaMemcpyAsync` device-to-host into pinned memory *and then* `cudaStreamSynchronize`: the copy
returns at once, the wait is the sync. A `non_blocking=True` device-to-host copy into pinned memory is no sync
at all; an async copy into pageable memory does block (the driver stages it). One op that waits twice (or copies,
then waits) drained the GPU once: syncs are counted per causing op.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchbench.timeline.reader import ApiCall, Timeline

#: Calls that block the host until the device has drained: explicit waits, the synchronous copies, and the
#: frees (`cudaFree` waits for the device before it returns memory: the caching allocator calls it when it
#: empties its cache near OOM, `torch.cuda.empty_cache()` too; `cudaFreeHost` when pinned blocks are released).
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy",
              "cuStreamSynchronize", "cuCtxSynchronize", "cuEventSynchronize", "cuMemcpyDtoH_v2",
              "cudaFree", "cudaFreeHost", "cuMemFree", "cuMemFree_v2", "cuMemFreeHost")
#: The frees among them: their cause is memory, not a value read on the host.
FREE_CALLS = ("cudaFree", "cudaFreeHost", "cuMemFree", "cuMemFree_v2", "cuMemFreeHost")
#: Set in a trace's metadata by benchbench's own profiler windows (`run`'s profile pass, attach's window): no
#: sync of benchbench's falls inside a step there, so every sync inside one is the script's. Traces without it
#: (an older profile pass synchronised around its steps) keep the old exclusion (`HARNESS_SYNC_PHASES`).
HARNESS_SYNCS_META = "benchbench_harness_syncs"
HARNESS_SYNCS_OUTSIDE = "outside_steps"
#: syncs that benchbench's own profile pass added before it stopped doing so: `torch.cuda.synchronize()` from
#: the harness, outside any aten op, after the host-to-device copy or after the step. They are reported, not
#: charged to the model — only in traces that lack `HARNESS_SYNCS_META`.
HARNESS_SYNC_PHASES = ("host_to_device", None)
#: a sync with no aten op above it: the Python call that makes each
SYNC_CALL_NAMES = {"cudaDeviceSynchronize": "torch.cuda.synchronize()", "cuCtxSynchronize": "torch.cuda.synchronize()",
                   "cudaStreamSynchronize": "stream.synchronize()", "cuStreamSynchronize": "stream.synchronize()",
                   "cudaEventSynchronize": "event.synchronize()", "cuEventSynchronize": "event.synchronize()"}
#: a sync's identity over steps: (op, phase, call, the user's line, kind)
SyncKey = tuple[str, str, str, "str | None", "str | None"]


def is_sync_call(name: str, device_op_names: list[str]) -> bool:
    """Whether a host call blocks until the GPU's queue has drained (an async copy into pageable memory too)."""
    if name in SYNC_CALLS:
        return True
    return name.startswith(("cudaMemcpy", "cuMemcpy")) and any(
        "DtoH" in d and "Pageable" in d for d in device_op_names)


def _is_harness_sync(tl: Timeline, c: ApiCall, phase: str | None) -> bool:
    if tl.meta.get(HARNESS_SYNCS_META) == HARNESS_SYNCS_OUTSIDE:
        return False
    return tl.step_source == "bb.step" and c.op is None and phase in HARNESS_SYNC_PHASES


def _sync_kind(c: ApiCall, pageable_htod: set[Any]) -> str | None:
    """What kind of wait a sync is, where its cause is not a value read on the host:

    - `htod_pageable`: a host-to-device copy from pageable memory (`x.cuda()` / `x.to("cuda")` of an unpinned
      tensor). torch copies it with cudaMemcpyAsync and then waits for the stream (Copy.cu,
      `memcpy_and_sync`): a sync the host needs because the driver stages the pageable buffer;
    - `free`: a cudaFree / cudaFreeHost (the caching allocator giving memory back, near OOM).
    """
    if c.name in FREE_CALLS:
        return "free"
    if (c.op_key is not None and c.op_key in pageable_htod) or any(
            "HtoD" in d.name and "Pageable" in d.name for d in c.device_ops):
        return "htod_pageable"
    return None


def step_syncs(tl: Timeline, calls: list[ApiCall], phase_of: Callable[[ApiCall], str],
               excluded: Counter[str]) -> tuple[list[dict[str, Any]], list[tuple[float, float]]]:
    """The syncs among one step's calls (one per causing op) and their host spans; benchbench's own counted in
    `excluded` (older traces only). `phase_of` places a call in a trace without phase ranges."""
    syncs: list[dict[str, Any]] = []
    spans: list[tuple[float, float]] = []
    sync_of: dict[Any, dict[str, Any]] = {}
    # the op instances (`x.to("cuda")`) whose copy came from pageable memory: their wait is the copy's
    pageable_htod = {c.op_key for c in calls if c.op_key is not None and any(
        d.kind == "memcpy" and "HtoD" in d.name and "Pageable" in d.name for d in c.device_ops)}
    for c in calls:
        if not c.is_sync:
            continue
        ph = tl.phase_at(c.ts) if tl.phases else phase_of(c)
        if _is_harness_sync(tl, c, ph):
            excluded[c.name] += 1
            continue
        spans.append((c.ts, c.end))
        key = c.op_key if c.op_key is not None else ("call", c.tid, c.ts)
        s = sync_of.get(key)
        if s is None:
            s = sync_of[key] = {"call": c.name, "op": c.op or SYNC_CALL_NAMES.get(c.name, c.name),
                                "phase": ph or "other", "wait_s": 0.0, "_end": c.end,
                                "where": tl.python.user_line(c.tid, c.ts, c.end),
                                "kind": _sync_kind(c, pageable_htod)}
            syncs.append(s)
        elif s["kind"] is None:
            s["kind"] = _sync_kind(c, pageable_htod)
        s["wait_s"] += (c.end - c.ts) * 1e-6
        s["_end"] = max(s["_end"], c.end)
    for s in syncs:
        # What the sync costs the GPU: its queue is empty when the host returns, and stays so until
        # the host launches again (~0 ms of host wait in a host-bound step, yet the GPU idles).
        s["gpu_idle_after_s"] = tl.idle_gap_at(s.pop("_end")) * 1e-6
    return syncs, spans


def summarize_syncs(per_step: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each distinct sync over the profiled steps: how often a step, its wait and the GPU idle after it."""
    n = max(len(per_step), 1)
    counts: Counter[SyncKey] = Counter()
    wait: dict[SyncKey, float] = defaultdict(float)
    idle: dict[SyncKey, float] = defaultdict(float)
    for syncs in per_step:
        for s in syncs:
            key = (s["op"], s["phase"], s["call"], s.get("where"), s.get("kind"))
            counts[key] += 1
            wait[key] += s["wait_s"]
            idle[key] += s["gpu_idle_after_s"]
    return [{"op": k[0], "phase": k[1], "call": k[2], "per_step": c / n, "wait_s_per_step": wait[k] / n,
             "gpu_idle_after_s_per_step": idle[k] / n, **({"where": k[3]} if k[3] else {}),
             **({"kind": k[4]} if k[4] else {})}
            for k, c in counts.most_common()]
