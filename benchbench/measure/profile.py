"""The profiler pass: where a step's time goes, by phase, by module and by operator.

It runs after the timed steps, on the same model and data, so the profiler's
own overhead never touches the throughput numbers. Backward time is attributed
to the module whose forward created it through the autograd sequence number
that the profiler records for both the forward op and its backward function:
module backward hooks cannot do this for SMP decoders (list inputs) or for an
encoder whose input needs no grad.
"""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile, schedule

from benchbench.timeline.host import PHASES  # noqa: F401 - the one list of phases (plots read it here)
from benchbench.timeline.reader import (  # noqa: F401 - the range names, defined once (the reader's)
    BACKWARD_PREFIX,
    MODULE_PREFIX,
    PHASE_PREFIX,
    STEP_NAME,
)
from benchbench.timeline.syncs import HARNESS_SYNCS_META, HARNESS_SYNCS_OUTSIDE
from benchbench.workload.anatomy import decoder_name


def modules_of_interest(model: nn.Module) -> dict[str, nn.Module]:
    """Top-level children (encoder, decoder, heads) and the decoder's children (`decoder` in SMP, `decode_head`
    in Transformers), each module once: a module reachable under two names (nnU-Net's decoder keeps a second
    reference to the encoder, `decoder.encoder`) keeps the name its parent calls it by — the top-level one —
    so its time is never filed under the other parent."""
    out: dict[str, nn.Module] = {}
    seen: set[int] = set()

    def add(name: str, mod: nn.Module) -> None:
        if id(mod) not in seen:
            seen.add(id(mod))
            out[name] = mod

    children = dict(model.named_children())
    for name, child in children.items():
        add(name, child)
    dname = decoder_name(children)
    decoder = children.get(dname) if dname else None
    if isinstance(decoder, nn.Module):
        for name, child in decoder.named_children():
            if isinstance(child, nn.ModuleList):
                for i, sub in enumerate(child):
                    add(f"{dname}.{name}.{i}", sub)
            elif any(True for _ in child.parameters()) or list(child.children()):
                add(f"{dname}.{name}", child)
    return out


class ModuleRanges:
    """Forward pre/post hooks that open and close a profiler range per module."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.handles: list[Any] = []
        self.stack: dict[int, list[Any]] = defaultdict(list)
        for name, mod in modules.items():
            self.handles.append(mod.register_forward_pre_hook(self._pre(name)))
            self.handles.append(mod.register_forward_hook(self._post(name), always_call=True))

    def _pre(self, name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any) -> None:
            rf = record_function(MODULE_PREFIX + name)
            rf.__enter__()
            self.stack[id(mod)].append(rf)

        return hook

    def _post(self, name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any, output: Any) -> None:
            if self.stack[id(mod)]:
                self.stack[id(mod)].pop().__exit__(None, None, None)

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def profile_pass(
    step: Any,
    batches: Iterator[Any],
    to_device: Callable[[Any], Any],
    device: torch.device,
    steps: int = 3,
    trace_path: str | None = None,
    step_time_s: float | None = None,
    data_wait_s: float | None = None,
) -> dict[str, Any]:
    """Profile `steps` steps (after one warm-up step under the profiler) and break each down.

    No host sync inside a profiled step: the steps run back to back as in the
    timed loop, with `prof.step()` between them so the trace carries the
    `ProfilerStep#N` markers that TensorBoard, HTA and Perfetto expect. On CUDA
    the breakdown is read from the GPU's own timeline (the exported trace):
    device work counted once, by the phase and module that launched it, and
    idle time judged against the timed step (`step_time_s`), not the profiled one.
    """
    cuda = device.type == "cuda"
    model = getattr(step.model, "module", step.model)  # DDP's wrapped module: its parts, not `module`
    ranges = None if getattr(step, "compiled", False) else ModuleRanges(modules_of_interest(model))

    def phase(name: str) -> Any:
        return record_function(PHASE_PREFIX + name)

    def one() -> None:
        with record_function(STEP_NAME):
            with phase("data_wait"):
                batch = next(batches)
            with phase("host_to_device"):
                x, y = to_device(batch)
            step(x, y, phase=phase)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if trace_path is None:  # both breakdowns read the exported trace (parsed once, in milliseconds)
        import tempfile

        tmpdir = tempfile.TemporaryDirectory(prefix="bb-trace-")
        export = os.path.join(tmpdir.name, "trace.json")
    else:
        tmpdir = None
        export = trace_path
    # One warm-up step under the profiler (lazy initialisation after the timed loop, the
    # profiler's own start-up), then `steps` recorded ones; the schedule is what makes
    # `prof.step()` write the ProfilerStep#N ranges other tools read.
    sched = schedule(wait=0, warmup=1, active=steps, repeat=1)
    try:
        with _quiet_kineto(), profile(activities=activities, schedule=sched, record_shapes=False,
                                      with_stack=False) as prof:
            # its one sync (below) falls after the last step's range: every sync inside a step is the cell's own
            prof.add_metadata(HARNESS_SYNCS_META, HARNESS_SYNCS_OUTSIDE)
            for i in range(steps + 1):
                one()
                if cuda and i == steps:
                    # after the last step's range, before the trace is collected: its kernels belong in it
                    torch.cuda.synchronize(device)
                prof.step()
        if export:
            prof.export_chrome_trace(export)
        if cuda:
            return gpu_breakdown(export, steps, step_time_s, data_wait_s)
        from benchbench.timeline.host import host_breakdown
        from benchbench.timeline.reader import read_timeline

        return host_breakdown(read_timeline(export), steps)
    finally:
        if ranges:
            ranges.remove()
        if tmpdir is not None:
            tmpdir.cleanup()


def gpu_breakdown(trace: str | None, steps: int, step_time_s: float | None,
                  data_wait_s: float | None) -> dict[str, Any]:
    """The record's breakdown on CUDA, from the GPU timeline of the exported trace."""
    from benchbench.timeline.gpu import as_breakdown, summarize_gpu
    from benchbench.timeline.reader import read_timeline

    assert trace is not None
    g = summarize_gpu(read_timeline(trace), step_time_s, data_wait_s, "timed loop median")
    return as_breakdown(g.to_dict(), steps)


KINETO_NOISE = ("USDT:", "SyncActivityProfilerHandler", "gpuGetDeviceCount", "Completed Stage:")


@contextlib.contextmanager
def _quiet_kineto() -> Iterator[None]:
    """Kineto logs every profiler start/stop (and, without a GPU, a device-count error) from C++
    straight to fd 2; keep everything else it writes there."""
    import sys
    import tempfile

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode(errors="replace").splitlines()
                    if line.strip() and not any(n in line for n in KINETO_NOISE)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
