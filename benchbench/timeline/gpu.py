"""Per-step GPU figures from a timeline: work, busy time, phases, modules, syncs, idle.

Definitions (the same as the ground truth in the H100 fixtures' README, plus the
driver-API launches it left out):

- a step's device work is every kernel / memcpy / memset whose launching call
  (matched by correlation id) happened inside the step's host range, on any host
  thread: backward kernels are launched from autograd's engine thread;
- GPU busy is the union of those device intervals, so overlapping streams are
  never counted twice; phase and module times are sums of durations of the
  work launched from that phase / module (on one stream they add up to busy);
- a phase is the `bb.phase:*` range in which the launch happened. A user's trace
  without phases is split by what the profiler does record: work launched from
  autograd's thread is backward, inside `Optimizer.step` / `zero_grad` is
  optimizer, launched on the step's thread before the first backward launch is
  forward (loss included), the rest is other;
- idle is judged against the *timed* step (from the record, or `--step-time`),
  never against the profiled step, which the profiler's host overhead stretches
  1.5-1.8x on a launch-bound model.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any

from benchbench.timeline.comm import comm_figures, merge
from benchbench.timeline.idle import _classify_gaps, apply_step_time
from benchbench.timeline.names import short_name
from benchbench.timeline.reader import ApiCall, DeviceOp, HostRange, Timeline
from benchbench.timeline.syncs import step_syncs, summarize_syncs

GPU_PHASES = ("host_to_device", "forward", "loss", "backward", "optimizer", "other")
#: a kernel that starts within this of its launch call returning found the GPU's queue empty
QUEUE_EMPTY_S = 20e-6


@dataclass
class StepGPU:
    index: int
    host_s: float  # the profiled step's host range (profiler overhead included)
    launches: int
    kernels: int
    memcpy: int
    memset: int
    busy_s: float
    span_s: float  # first device start to last device end of the step's work
    phases_s: dict[str, float]
    modules_s: dict[str, dict[str, float]]
    syncs: list[dict[str, Any]]
    gaps_s: dict[str, float]  # idle gaps inside the profiled step, by cause
    kernels_by_name_s: dict[str, float] = field(default_factory=dict)
    ops_s: dict[str, float] = field(default_factory=dict)
    launch_api_s: float = 0.0  # host time spent inside launch calls
    launch_delays_s: list[float] = field(default_factory=list)  # kernel start - its launch call's return
    comm: dict[str, Any] = field(default_factory=dict)  # NCCL collectives (`timeline.comm.comm_figures`)


def _phase_of(tl: Timeline, c: ApiCall, first_backward: float | None) -> str:
    if tl.phases:
        p = tl.phase_at(c.ts)
        if p is None:
            return "other"
        return p if p in GPU_PHASES else "other"
    if c.optimizer:
        return "optimizer"
    if c.backward_seq is not None or c.on_autograd_thread:
        return "backward"
    if first_backward is None or c.ts < first_backward:
        return "forward"
    return "other"


def analyze_step(tl: Timeline, index: int, step: HostRange, excluded: Counter[str]) -> StepGPU:
    calls = tl.calls_between(step.ts, step.end)
    launches = [c for c in calls if c.device_ops]
    first_bwd = min((c.ts for c in launches if c.backward_seq is not None or c.on_autograd_thread), default=None)
    work: list[tuple[DeviceOp, ApiCall, str]] = []
    for c in launches:
        ph = _phase_of(tl, c, first_bwd)
        for d in c.device_ops:
            work.append((d, c, ph))
    busy, merged = merge([(d.ts, d.end) for d, _, _ in work])
    phases: dict[str, float] = dict.fromkeys(GPU_PHASES, 0.0)
    modules: dict[str, dict[str, float]] = defaultdict(lambda: {"forward": 0.0, "backward": 0.0})
    by_kernel: dict[str, float] = defaultdict(float)
    by_op: dict[str, float] = defaultdict(float)
    for d, c, ph in work:
        phases[ph] += d.dur
        if c.backward_seq is not None:
            mod = tl.seq_module.get(c.backward_seq)
            if mod:
                modules[mod]["backward"] += d.dur
        elif c.module and ph == "forward":
            modules[c.module]["forward"] += d.dur
        by_kernel[short_name(d.name) if d.kind == "kernel" else d.name] += d.dur
        by_op[c.op or "(no aten op)"] += d.dur
    syncs, sync_spans = step_syncs(tl, calls, lambda c: _phase_of(tl, c, first_bwd), excluded)
    gaps = _classify_gaps(tl, step, merged, sync_spans)
    span = (max(d.end for d, _, _ in work) - min(d.ts for d, _, _ in work)) if work else 0.0
    return StepGPU(
        index=index, host_s=(step.end - step.ts) * 1e-6, launches=len(launches),
        kernels=sum(1 for d, _, _ in work if d.kind == "kernel"),
        memcpy=sum(1 for d, _, _ in work if d.kind == "memcpy"),
        memset=sum(1 for d, _, _ in work if d.kind == "memset"),
        busy_s=busy * 1e-6, span_s=span * 1e-6, phases_s={k: v * 1e-6 for k, v in phases.items()},
        modules_s={k: {x: y * 1e-6 for x, y in v.items()} for k, v in modules.items()}, syncs=syncs,
        gaps_s=gaps, kernels_by_name_s={k: v * 1e-6 for k, v in by_kernel.items()},
        ops_s={k: v * 1e-6 for k, v in by_op.items()},
        launch_api_s=sum(c.end - c.ts for c in launches) * 1e-6,
        launch_delays_s=[(d.ts - c.end) * 1e-6 for c in launches for d in c.device_ops if d.kind == "kernel"],
        comm=comm_figures([d for d, _, _ in work]),
    )


@dataclass
class GpuSummary:
    """Medians over the profiled steps; what records and `explain-trace --json` carry."""

    steps: int
    step_source: str
    launches_per_step: float
    kernels_per_step: float
    gpu_busy_s: float
    gpu_span_s: float
    gpu_phases_s: dict[str, float]
    gpu_modules_s: dict[str, dict[str, float]]
    host_syncs: list[dict[str, Any]]
    profiled_step_s: float
    launch_api_s: float
    top_kernels: list[dict[str, Any]]
    top_ops: list[dict[str, Any]]
    profiled_gaps_s: dict[str, float]
    harness_syncs_excluded: dict[str, int]
    unmatched_device_ops: int
    #: kernel start - return of its launch call, median; and the share of kernels that started within
    #: QUEUE_EMPTY_S of their launch: the GPU had nothing queued and waited for the host (HTA's launch delay)
    launch_delay_median_s: float | None = None
    launch_queue_empty_share: float | None = None
    step_time_s: float | None = None
    step_time_source: str | None = None
    gpu_idle_s: float | None = None
    gpu_idle_fraction: float | None = None
    idle_breakdown_s: dict[str, float] | None = None
    #: NCCL collectives a step (medians; a rank of a DDP job): their time, the part no compute kernel hid, and
    #: every collective kernel's duration in order (the ranks' are compared side by side)
    comm_s: float | None = None
    comm_exposed_s: float | None = None
    collectives_s: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_gpu(tl: Timeline, step_time_s: float | None = None, data_wait_s: float | None = None,
                  step_time_source: str | None = None, top: int = 10) -> GpuSummary:
    """Per-step figures (median over steps), idle against the timed step when one is known."""
    excluded: Counter[str] = Counter()
    per = [analyze_step(tl, i, s, excluded) for i, s in enumerate(tl.steps)]
    n = max(len(per), 1)

    def med(get: Any) -> float:
        vals = [get(p) for p in per]
        return float(median(vals)) if vals else 0.0

    def mean_dict(get: Any) -> dict[str, float]:
        acc: dict[str, float] = defaultdict(float)
        for p in per:
            for k, v in get(p).items():
                acc[k] += v / n
        return dict(acc)

    # Inclusive: `decoder` holds `decoder.fuse_stage`; top-level modules add up to forward + backward.
    mods: dict[str, dict[str, float]] = defaultdict(lambda: {"forward": 0.0, "backward": 0.0})
    for p in per:
        for k, v in p.modules_s.items():
            parts = k.split(".")
            for i in range(1, len(parts) + 1):
                for x in ("forward", "backward"):
                    mods[".".join(parts[:i])][x] += v[x] / n
    syncs = summarize_syncs([p.syncs for p in per])
    delays = [d for p in per for d in p.launch_delays_s]
    kern = mean_dict(lambda p: p.kernels_by_name_s)
    ops = mean_dict(lambda p: p.ops_s)
    busy = med(lambda p: p.busy_s)
    out = GpuSummary(
        steps=len(per), step_source=tl.step_source,
        launches_per_step=med(lambda p: p.launches), kernels_per_step=med(lambda p: p.kernels),
        gpu_busy_s=busy, gpu_span_s=med(lambda p: p.span_s), gpu_phases_s=mean_dict(lambda p: p.phases_s),
        gpu_modules_s={k: dict(v) for k, v in sorted(mods.items())}, host_syncs=syncs,
        profiled_step_s=med(lambda p: p.host_s), launch_api_s=med(lambda p: p.launch_api_s),
        top_kernels=[{"name": k, "gpu_s": v, "share": v / busy if busy else None}
                     for k, v in sorted(kern.items(), key=lambda kv: -kv[1])[:top]],
        top_ops=[{"name": k, "gpu_s": v, "share": v / busy if busy else None}
                 for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:top]],
        profiled_gaps_s=mean_dict(lambda p: p.gaps_s), harness_syncs_excluded=dict(excluded),
        unmatched_device_ops=tl.unmatched_device_ops,
        launch_delay_median_s=float(median(delays)) if delays else None,
        launch_queue_empty_share=sum(d <= QUEUE_EMPTY_S for d in delays) / len(delays) if delays else None,
    )
    if any(p.comm.get("collectives_s") for p in per):
        out.comm_s = med(lambda p: p.comm["comm_s"])
        out.comm_exposed_s = med(lambda p: p.comm["exposed_s"])
        out.collectives_s = [x for p in per for x in p.comm["collectives_s"]]
    if step_time_s:
        apply_step_time(out, step_time_s, data_wait_s, step_time_source or "given")
    return out


def as_breakdown(gpu: dict[str, Any], steps: int) -> dict[str, Any]:
    """The breakdown fields that every consumer reads, in GPU time (each kernel once)."""
    phases = {p: gpu["gpu_phases_s"].get(p, 0.0) for p in GPU_PHASES}
    gaps = gpu["profiled_gaps_s"].get("data_wait", 0.0)
    phases["data_wait"] = (gpu.get("idle_breakdown_s") or {}).get("data_wait", gaps)
    busy = gpu["gpu_busy_s"]
    return {
        "time_basis": "GPU busy time (device work by the phase / module that launched it, each kernel once)",
        "profiled_steps": steps,
        "step_s": busy,
        "phases": phases,
        "phases_sum_s": sum(v for k, v in phases.items() if k != "data_wait"),
        "modules": gpu["gpu_modules_s"],
        "backward_unattributed_s": max(
            0.0,
            phases.get("backward", 0.0) - sum(v["backward"] for k, v in gpu["gpu_modules_s"].items() if "." not in k),
        ),
        "top_ops": [
            {"name": o["name"], "self_time_s": o["gpu_s"], "calls": None, "share": o["share"]} for o in gpu["top_ops"]
        ],
        "op_self_total_s": busy,
        "dataloader_next_s": None,
        "gpu": gpu,
    }
