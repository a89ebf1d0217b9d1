"""Memory per phase (CUDA allocator / CPU RSS) and activations saved for backward, by module."""

from __future__ import annotations

from typing import Any


def run(ctx: Any) -> dict[str, Any]:
    from benchbench.measure.memory import memory_pass

    return {"memory": {**ctx.memory, **memory_pass(ctx.step, ctx.batches, ctx.source.to_device, ctx.device, ctx.rss0)}}
