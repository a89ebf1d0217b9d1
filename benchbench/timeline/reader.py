"""Read a kineto / Chrome-trace JSON file (what `torch.profiler` exports) into a timeline.

The trace is parsed once; every analysis reads the `Timeline`. What the file holds
(see torch's kineto output, and Holistic Trace Analysis which reads the same files):

- `cpu_op` / `user_annotation`: host ranges (aten ops, `record_function` ranges such
  as benchbench's `bb.step` / `bb.phase:*` / `bb.module:*`, or `ProfilerStep#N`);
- `cuda_runtime` / `cuda_driver`: host API calls. A call that enqueues device work
  shares `args.correlation` with that work. Kernels launched through the driver API
  (`cuLaunchKernelEx`: cuBLASLt's nvjet GEMMs, cuDNN's engines, Triton) are real
  work too: they are matched the same way;
- `kernel` / `gpu_memcpy` / `gpu_memset`: device work on a stream;
- `python_function` (with_stack): Python calls, each with the line that made it (`timeline.python`).

Device time is counted from the device events alone, each once: an aten op's
"device time" in the profiler's tables already contains its kernels.
"""

from __future__ import annotations

import bisect
import gzip
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchbench.errors import BenchbenchError
from benchbench.timeline.python import PYTHON_CAT, PythonFrames
from benchbench.timeline.syncs import is_sync_call

PHASE_PREFIX = "bb.phase:"
MODULE_PREFIX = "bb.module:"
STEP_NAME = "bb.step"
PROFILER_STEP = "ProfilerStep#"
BACKWARD_PREFIX = "autograd::engine::evaluate_function: "
OPTIMIZER_PREFIXES = ("Optimizer.step#", "Optimizer.zero_grad#")
# Category names, lower-cased: current kineto, and older torch versions' ("Kernel", "Memcpy", "Runtime").
DEVICE_CATS = {"kernel": "kernel", "gpu_memcpy": "memcpy", "gpu_memset": "memset", "memcpy": "memcpy",
               "memset": "memset"}
HOST_API_CATS = ("cuda_runtime", "cuda_driver", "runtime", "driver")
HOST_RANGE_CATS = ("cpu_op", "user_annotation", "operator")


@dataclass
class HostRange:
    name: str
    tid: int
    ts: float  # microseconds
    end: float
    seq: int | None = None  # autograd sequence number (forward op, or the backward node it created)
    annotation: bool = False  # a record_function range rather than an aten op


@dataclass
class DeviceOp:
    kind: str  # kernel | memcpy | memset
    name: str
    ts: float
    end: float
    stream: int
    correlation: int

    @property
    def dur(self) -> float:
        return self.end - self.ts


@dataclass
class ApiCall:
    """A host call into the CUDA runtime or driver, with what was open on its thread when it ran."""

    name: str
    tid: int
    ts: float
    end: float
    correlation: int | None
    op: str | None = None  # innermost aten op (the one that caused the launch or the sync)
    op_key: tuple[int, float] | None = None  # that op's instance (thread, start): one `.item()` = one op
    module: str | None = None  # innermost bb.module range (forward)
    backward_seq: int | None = None  # sequence number of the autograd node running it (backward)
    optimizer: bool = False  # inside Optimizer.step / zero_grad
    on_autograd_thread: bool = False
    device_ops: list[DeviceOp] = field(default_factory=list)

    @property
    def is_sync(self) -> bool:
        """Whether this call blocks the host until the GPU's queue has drained (`timeline.syncs`)."""
        return is_sync_call(self.name, [d.name for d in self.device_ops])


@dataclass
class Timeline:
    """Everything the GPU analyses need, each event once."""

    host: list[HostRange]
    calls: list[ApiCall]  # runtime/driver calls that enqueue device work or synchronise
    device: list[DeviceOp]
    steps: list[HostRange]
    step_source: str  # "bb.step" | "ProfilerStep" | "whole trace"
    phases: list[HostRange]
    seq_module: dict[int, str]
    meta: dict[str, Any]
    main_tid: int | None = None
    unmatched_device_ops: int = 0
    python: PythonFrames = field(default_factory=PythonFrames)  # Python stacks, when the trace has them

    @property
    def has_gpu(self) -> bool:
        return bool(self.device)

    def phase_at(self, ts: float) -> str | None:
        """The bb.phase range (any thread) that contains host time ts."""
        i = bisect.bisect_right(self._phase_starts, ts) - 1
        if i >= 0 and self.phases[i].ts <= ts <= self.phases[i].end:
            return self.phases[i].name[len(PHASE_PREFIX):]
        return None

    def calls_between(self, start: float, end: float) -> list[ApiCall]:
        """Calls made in [start, end] (calls are sorted by time: a slice, not a scan per step)."""
        return self.calls[bisect.bisect_left(self._call_starts, start):bisect.bisect_right(self._call_starts, end)]

    def idle_gap_at(self, ts: float) -> float:
        """Length (us) of the GPU's idle gap that contains host time ts (0 when the GPU is busy then):
        after a sync returns, how long the drained GPU waits for its next work."""
        i = bisect.bisect_right(self._busy_starts, ts) - 1
        if i >= 0 and ts <= self._busy[i][1]:
            return 0.0
        prev_end = self._busy[i][1] if i >= 0 else ts
        nxt = self._busy[i + 1][0] if i + 1 < len(self._busy) else None
        return (nxt - prev_end) if nxt is not None else 0.0

    def __post_init__(self) -> None:
        busy: list[list[float]] = []
        for d in sorted(self.device, key=lambda d: d.ts):
            if busy and d.ts <= busy[-1][1]:
                busy[-1][1] = max(busy[-1][1], d.end)
            else:
                busy.append([d.ts, d.end])
        self._busy = busy
        self._busy_starts = [b[0] for b in busy]
        self.phases.sort(key=lambda r: r.ts)
        self._phase_starts = [p.ts for p in self.phases]
        self.calls.sort(key=lambda c: c.ts)
        self._call_starts = [c.ts for c in self.calls]


def load_trace(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise BenchbenchError(f"trace file not found: {p}")
    try:
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rt", encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, EOFError) as exc:
        raise BenchbenchError(f"{p} is not a readable JSON trace (torch.profiler's export_chrome_trace): "
                              f"{exc}") from None
    except RecursionError:  # torch.profiler's traces are a flat list of events
        raise BenchbenchError(f"{p} is nested too deeply to be a trace (a trace is a flat list of events)") from None
    if isinstance(doc, list):
        doc = {"traceEvents": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        raise BenchbenchError(f"{p} has no traceEvents: not a Chrome / kineto trace")
    return doc


def read_timeline(path: str | Path, apis: tuple[str, ...] = HOST_API_CATS) -> Timeline:
    return build_timeline(load_trace(path), apis)


def _num(x: Any, default: float = 0.0) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return default


def build_timeline(doc: dict[str, Any], apis: tuple[str, ...] = HOST_API_CATS) -> Timeline:
    """`apis=("cuda_runtime",)` ignores driver-API launches (to reproduce tools that do)."""
    apis = tuple(a.lower() for a in apis) + (("runtime",) if "cuda_runtime" in apis else ()) + (
        ("driver",) if "cuda_driver" in apis else ())
    host: list[HostRange] = []
    api: list[ApiCall] = []
    device: list[DeviceOp] = []
    dropped: dict[str, int] = {}
    python = PythonFrames()
    for e in doc["traceEvents"]:
        if not isinstance(e, dict) or e.get("ph") != "X":
            continue
        cat = str(e.get("cat") or "").lower()
        args = e.get("args") or {}
        if not isinstance(args, dict):
            args = {}
        ts, dur = _num(e.get("ts"), math.nan), _num(e.get("dur"), math.nan)
        why = ("no or non-numeric ts/dur" if math.isnan(ts) or math.isnan(dur) else
               "infinite ts/dur" if math.isinf(ts) or math.isinf(dur) else "negative dur" if dur < 0 else None)
        if why:  # a duration event that cannot be placed on the timeline: said, never believed
            dropped[why] = dropped.get(why, 0) + 1
            continue
        end = ts + dur
        name = str(e.get("name", ""))
        if cat in HOST_RANGE_CATS:
            seq = args.get("Sequence number")
            host.append(HostRange(name, int(_num(e.get("tid"))), ts, end,
                                  int(seq) if isinstance(seq, (int, float)) else None, cat == "user_annotation"))
        elif cat in apis:
            corr = args.get("correlation")
            api.append(ApiCall(name, int(_num(e.get("tid"))), ts, end, int(corr) if corr is not None else None))
        elif cat == PYTHON_CAT and isinstance(args.get("CallFrom"), str):  # with_stack: the line that called
            python.add(int(_num(e.get("tid"))), ts, end, args["CallFrom"])
        elif cat == PYTHON_CAT:  # an older torch: no CallFrom, the called function by its name
            python.add_named(int(_num(e.get("tid"))), ts, end, name)
        elif cat in DEVICE_CATS:
            corr = args.get("correlation")
            device.append(DeviceOp(DEVICE_CATS[cat], name, ts, end, int(_num(args.get("stream"), -1)),
                                   int(corr) if corr is not None else -1))
    by_corr = {c.correlation: c for c in api if c.correlation is not None}
    unmatched = 0
    for d in device:
        c = by_corr.get(d.correlation)
        if c is None:
            unmatched += 1
        else:
            c.device_ops.append(d)
    calls = [c for c in api if c.device_ops or c.is_sync]

    steps = [h for h in host if h.name == STEP_NAME]
    source = "bb.step"
    if not steps:
        steps = [h for h in host if h.name.startswith(PROFILER_STEP)]
        source = "ProfilerStep"
    steps.sort(key=lambda h: h.ts)
    main_tid = steps[0].tid if steps else None
    if not steps and (host or device):
        lo = min([h.ts for h in host] + [c.ts for c in calls] or [0.0])
        hi = max([h.end for h in host] + [c.end for c in calls] or [0.0])
        steps = [HostRange("whole trace", -1, lo, hi)]
        source = "whole trace"
    phases = [h for h in host if h.name.startswith(PHASE_PREFIX)]
    seq_module = _annotate_calls(host, calls, main_tid)
    meta = {k: v for k, v in doc.items() if k != "traceEvents"}
    meta["dropped_events"] = dropped
    python.sort()
    return Timeline(host, calls, sorted(device, key=lambda d: d.ts), steps, source,
                    phases, seq_module, meta, main_tid, unmatched, python)


def _annotate_calls(host: list[HostRange], calls: list[ApiCall], main_tid: int | None) -> dict[int, str]:
    """One walk per thread over its nested ranges: each call learns its op, module, backward node.

    Also maps each forward op's sequence number to the module range it ran in, so that the backward work of that
    op can be charged to the same module. Each stack entry carries the innermost op, module and backward node at
    or above it (and whether an optimizer range encloses it): a lookup is one read, not a walk up the stack."""
    threads: dict[int, list[tuple[float, int, Any]]] = defaultdict(list)
    for h in host:
        threads[h.tid].append((h.ts, 0, h))
    for c in calls:
        threads[c.tid].append((c.ts, 1, c))
    seq_module: dict[int, str] = {}
    for tid, items in threads.items():
        # Ranges before calls at the same time; outer (longer) ranges before inner ones.
        items.sort(key=lambda it: (it[0], it[1], -(it[2].end - it[2].ts)))
        # (range, innermost op, innermost module, innermost backward node, inside an optimizer range)
        stack: list[tuple[HostRange, HostRange | None, HostRange | None, HostRange | None, bool]] = []
        for _ts, kind, obj in items:
            while stack and stack[-1][0].end < obj.ts:
                stack.pop()
            op, mod, node, opt = stack[-1][1:] if stack else (None, None, None, False)
            if kind == 0:
                h: HostRange = obj
                if h.seq is not None and not h.annotation and not h.name.startswith(BACKWARD_PREFIX) \
                        and mod is not None:
                    seq_module.setdefault(h.seq, mod.name[len(MODULE_PREFIX):])
                backward = h.name.startswith(BACKWARD_PREFIX)
                stack.append((h, h if not h.annotation and not backward else op,
                              h if h.name.startswith(MODULE_PREFIX) else mod, h if backward else node,
                              opt or h.name.startswith(OPTIMIZER_PREFIXES)))
                continue
            c: ApiCall = obj
            c.op = op.name if op else None
            c.op_key = (op.tid, op.ts) if op else None
            c.module = mod.name[len(MODULE_PREFIX):] if mod else None
            c.backward_seq = node.seq if node else None
            c.on_autograd_thread = node is not None or (main_tid is not None and tid != main_tid)
            c.optimizer = opt
    return seq_module
