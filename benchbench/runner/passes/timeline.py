"""The profiler pass: phases, modules, operators; on a GPU from the trace's own timeline."""

from __future__ import annotations

import os
from typing import Any

from benchbench.policy import PROCESS


def run(ctx: Any) -> dict[str, Any]:
    from benchbench.measure.profile import profile_pass

    trace = None
    if ctx.payload.get("trace_dir"):
        os.makedirs(ctx.payload["trace_dir"], exist_ok=True)
        trace = os.path.join(ctx.payload["trace_dir"], f"{ctx.payload['cell_id']}.json")
    bd = profile_pass(ctx.step, ctx.batches, ctx.source.to_device, ctx.device,
                      steps=max(1, min(PROCESS.profile_steps, int(ctx.params.get("steps") or 1))), trace_path=trace,
                      step_time_s=ctx.step_median_s, data_wait_s=ctx.stall_median_s)
    if trace:
        bd["trace"] = trace
    return {"breakdown": bd}
