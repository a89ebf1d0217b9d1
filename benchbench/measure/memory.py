"""Memory: per-phase peaks and the activations each module keeps for backward.

On CUDA the caching allocator's peaks are exact per phase. On CPU there is no
allocator peak to read, so the honest equivalents are the process RSS growth
per phase and the bytes of tensors autograd saves for backward, which are
counted the same way on any device (saved_tensors_hooks) and are what makes
activation memory grow with resolution and decoder width.
"""

from __future__ import annotations

import os
import resource
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from benchbench.measure.profile import modules_of_interest

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def activations_by_module(model: nn.Module, x: torch.Tensor, y: torch.Tensor, forward: Callable[..., Any],
                          loss_fn: Callable[..., Any]) -> dict[str, int]:
    """Bytes autograd saves for backward, per module that ran the op (innermost, then rolled up)."""
    modules = modules_of_interest(model)
    stack: list[str] = []
    handles = []

    def enter(name: str) -> Callable[..., None]:
        def hook(m: nn.Module, a: Any) -> None:
            stack.append(name)

        return hook

    def leave(m: nn.Module, a: Any, o: Any) -> None:  # must return None: a value would replace the output
        if stack:
            stack.pop()

    for name, mod in modules.items():
        handles.append(mod.register_forward_pre_hook(enter(name)))
        handles.append(mod.register_forward_hook(leave, always_call=True))
    seen: set[int] = set()
    excl: dict[str, int] = defaultdict(int)

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            ptr = t.untyped_storage().data_ptr()
            size = t.untyped_storage().nbytes()
        except (RuntimeError, NotImplementedError):
            return t
        if ptr not in seen:  # several ops may save the same storage: count it once
            seen.add(ptr)
            excl[stack[-1] if stack else "(outside modules)"] += size
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = loss_fn(forward(x), y)
        loss.backward()
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
    out: dict[str, int] = {}
    names = set(excl)
    for n in list(names):  # parents of modules that saved something (decoder for decoder.blocks.0)
        parts = n.split(".")
        names.update(".".join(parts[:i]) for i in range(1, len(parts)))
    for name in sorted(names, key=lambda n: (n.count("."), n)):
        out[name] = sum(v for k, v in excl.items() if k == name or k.startswith(name + "."))
    out["total"] = sum(excl.values())
    return out


def phase_peaks(
    step: Any, batches: Iterator[Any], to_device: Callable[[Any], Any], device: torch.device
) -> dict[str, Any]:
    """Run one step with a measurement between phases."""
    cuda = device.type == "cuda"
    marks: dict[str, dict[str, int]] = {}

    def reset() -> None:
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)

    class Phase:
        def __init__(self, name: str) -> None:
            self.name = name

        def __enter__(self) -> None:
            reset()
            self.rss0 = current_rss()

        def __exit__(self, *exc: object) -> None:
            if cuda:
                torch.cuda.synchronize(device)
                marks[self.name] = {
                    "peak_allocated_bytes": torch.cuda.max_memory_allocated(device),
                    "peak_reserved_bytes": torch.cuda.max_memory_reserved(device),
                }
            else:
                marks[self.name] = {"rss_growth_bytes": max(0, current_rss() - self.rss0)}

    x, y = to_device(next(batches))
    step(x, y, phase=Phase)
    return {k: v for k, v in marks.items() if k in ("forward", "loss", "backward", "optimizer")}


def memory_pass(
    step: Any, batches: Iterator[Any], to_device: Callable[[Any], Any], device: torch.device, baseline_rss: int
) -> dict[str, Any]:
    cuda = device.type == "cuda"
    by_phase = phase_peaks(step, batches, to_device, device)
    x, y = to_device(next(batches))
    x = step.prepare(x)
    with step.autocast():
        inner = getattr(step.model, "module", step.model)  # DDP: the wrapped model's modules
        acts = activations_by_module(inner, x, y, step.model, step.loss_fn)
    out: dict[str, Any] = {
        "by_phase": by_phase,
        "activations_by_module": acts,
        "peak_rss_bytes": peak_rss(),
        "rss_growth_bytes": max(0, peak_rss() - baseline_rss),
    }
    if cuda:
        out["peak_bytes"] = max(v["peak_allocated_bytes"] for v in by_phase.values())
        out["peak_reserved_bytes"] = max(v["peak_reserved_bytes"] for v in by_phase.values())
        out["basis"] = "CUDA caching allocator peaks per phase"
    else:
        out["peak_bytes"] = out["peak_rss_bytes"]
        out["basis"] = "process RSS (CPU has no allocator peak); activations from saved_tensors_hooks"
    return out
