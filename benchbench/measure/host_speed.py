"""The host's own speed, from a fixed piece of work timed beside every cell: what the fingerprint cannot say.

Two leases of the same lent H200 (same fingerprint: CPU model string, core count, GPU, driver, torch) ran the
same launch-bound cell 48.3 and 58.3 ms a step, the GPU's busy time 32.2 and 32.3 ms: the whole difference was
the host, which spent 21% more CPU time on the same steps (`results/gpu/h200-20261204b`), and a gate comparing
the two said +20.6% slower. Nothing in either record could tell the machine from the code. Measured with this
probe on a third lease, the host's thread ran in two states about 2x apart, sometimes switching mid-probe.

So each cell times a fixed host workload after its timed block (never inside it): tiny torch CPU ops, one at a
time (the per-op dispatch cost that sets a launch-bound step's pace), and a pure-Python loop (the interpreter
speed behind a data pipeline or a training script's own code), each in blocks, every block kept (a probe whose
blocks disagree saw the host change speed). `analysis.host.host_change` sets the two sides of a comparison
against each other. ~13 ms on this 2-core VM, after the block: the cell's figures do not include it.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

#: blocks of each workload; the median block is the figure, the spread its noise
BLOCKS = 7
DISPATCH_OPS = 1000  # torch.add on 1-element CPU tensors: ~1-5 µs each, a block 1-5 ms
PYTHON_ITERS = 20000  # a plain loop: ~20-60 ns an iteration, a block ~1 ms


def _python_block(n: int) -> float:
    t = time.perf_counter()
    acc = 0
    for i in range(n):
        acc += i & 7
    return (time.perf_counter() - t) / n


def _dispatch_block(torch: Any, a: Any, b: Any, out: Any, n: int) -> float:
    add = torch.add
    t = time.perf_counter()
    for _ in range(n):
        add(a, b, out=out)
    return (time.perf_counter() - t) / n


def probe(blocks: int = BLOCKS) -> dict[str, Any]:
    """Per-op dispatch time (µs) and per-iteration Python time (ns), each the median of `blocks` blocks after a
    warm-up block, with every block kept. ~10-30 ms in all."""
    import torch

    a, b, out = torch.ones(1), torch.ones(1), torch.empty(1)
    _dispatch_block(torch, a, b, out, DISPATCH_OPS // 4)  # warm: the op's dispatch path, the loop's bytecode
    _python_block(PYTHON_ITERS // 4)
    d = [_dispatch_block(torch, a, b, out, DISPATCH_OPS) * 1e6 for _ in range(blocks)]
    p = [_python_block(PYTHON_ITERS) * 1e9 for _ in range(blocks)]
    return {"dispatch_us": statistics.median(d), "python_ns": statistics.median(p),
            "dispatch_blocks_us": [round(x, 4) for x in d], "python_blocks_ns": [round(x, 3) for x in p]}


class HostSpeed:
    """A tracker that measures nothing during the timed block: it times the fixed host work as the block ends
    (on `__exit__`), so the block itself is never slowed by it."""

    def __init__(self) -> None:
        self.value: dict[str, Any] | None = None

    def __enter__(self) -> HostSpeed:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc and exc[0] is not None:
            return  # a failed block: no cell figure to set it beside
        self.value = probe()

    def result(self, images: int) -> dict[str, Any] | None:
        return self.value


def for_cell(ctx: Any) -> HostSpeed | None:
    return HostSpeed()
