"""FLOPs (fvcore by module + FlopCounterMode train step) and achieved FLOP/s against the measured peak."""

from __future__ import annotations

from typing import Any

from benchbench.measurement import Measurement


def run(ctx: Any) -> dict[str, Any]:
    from benchbench.measure.flops import count_flops

    params = ctx.params
    flops = count_flops(ctx.model, params, ctx.step.loss_fn, ctx.device)
    median = ctx.record["step_time_s"]["median"]
    train = flops.get("train_step_per_image")
    if train and median:
        images = Measurement({**ctx.record, "params": params}).images_per_step
        achieved = 2 * train * images / median  # hardware convention: 2 flops per MAC
        flops["achieved_flops_per_s"] = achieved
        dtype = {"none": "fp32"}.get(params["amp"], params["amp"])
        peak = (((ctx.payload.get("env") or {}).get("peak_flops") or {}).get(dtype) or {}).get("flops_per_s")
        flops["peak_flops_per_s"] = peak
        flops["utilization"] = achieved / peak if peak else None
    return {"flops": flops}
