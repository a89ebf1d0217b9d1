"""FLOPs (fvcore by module + FlopCounterMode train step) and achieved FLOP/s against the measured peak.

The peak is the one of the math mode each kind of work ran in (TF32 convolutions in an fp32 cell on
a GPU), weighted by that work's share: `measure.flops.effective_peak`.
"""

from __future__ import annotations

from typing import Any


def run(ctx: Any) -> dict[str, Any]:
    from benchbench.measure.flops import count_flops, effective_peak, math_modes

    params = ctx.params
    flops = count_flops(ctx.model, params, ctx.step.loss_fn, ctx.device)
    median = ctx.step_median_s
    train = flops.get("train_step_per_image")
    if train and median:
        achieved = 2 * train * ctx.images_per_step / median  # hardware convention: 2 flops per MAC
        flops["achieved_flops_per_s"] = achieved
        modes = math_modes(params["amp"], ctx.device)
        peaks = (ctx.payload.get("env") or {}).get("peak_flops") or {}
        by_kind = flops.get("train_step_by_kind_per_image") or {"matmul": train}
        peak = effective_peak(by_kind, modes, peaks)
        flops["math_modes"] = modes
        flops["peak_flops_per_s"] = peak
        flops["peak_basis"] = ("matmul peak per math mode, weighted by the work in it: "
                               + ", ".join(f"{k} {by_kind.get(k, 0) / train:.0%} in {m}" for k, m in modes.items()))
        flops["utilization"] = achieved / peak if peak else None
    return {"flops": flops}
