"""The input-capacity pass: supply against demand, and the step predicted per worker count (`measure.capacity`).
A cell on in-memory data has no pipeline to measure: the pass adds nothing."""

from __future__ import annotations

from typing import Any


def run(ctx: Any) -> dict[str, Any]:
    from benchbench.measure.capacity import capacity

    out = capacity(ctx.params, ctx.step, ctx.source, ctx.batches, ctx.device)
    return {"input_capacity": out} if out else {}
