"""FLOPs (fvcore by module + FlopCounterMode train step) and achieved FLOP/s against the measured peak.

The peak is the one of the math mode each kind of work ran in (TF32 convolutions in an fp32 cell on
a GPU), weighted by that work's share: `measure.flops.effective_peak`.

A model's FLOPs are a property of its shape (architecture, encoder, widths, resolution, classes, loss) and of the
code that builds it, not of the run: counting them costs a built-in model's cell a few tenths of a second to
seconds (two traced passes), paid again by every seed, repeat and `advise` run of the same shape. They are kept
per shape (`measure.kept`, kind "flops", keyed by every setting that can change the model or its step and by the
versions of torch, SMP, timm, fvcore and benchbench) and read back with `kept_from` naming the cell and time they
were counted at; the achieved rate is always this cell's own. A user's own model, loss or optimizer factory is
counted every time: its code can change under the same name.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

#: settings that change neither the model nor its training step's FLOPs per image (counted at batch 2)
NOT_SHAPE = frozenset({"seed", "warmup", "steps", "profile_steps", "timeout_s", "num_workers", "pin_memory",
                       "persistent_workers", "prefetch_factor", "data", "lr", "threads", "memory_limit_mb",
                       "on_oom", "gate_threshold", "batch_size", "label"})


def shape_key(params: dict[str, Any], env: dict[str, Any]) -> str | None:
    """The key a model shape's FLOPs are kept under; None where they must be counted (a user's factory)."""
    from importlib import metadata

    from benchbench.suite.schema import is_factory

    if any(is_factory(params.get(k)) for k in ("arch", "loss", "optimizer")):
        return None
    try:
        fvcore = metadata.version("fvcore")
    except metadata.PackageNotFoundError:
        fvcore = None
    ident = {"params": {k: v for k, v in params.items() if k not in NOT_SHAPE},
             "versions": {k: env.get(k) for k in ("torch", "smp", "timm", "benchbench", "git_commit")},
             "fvcore": fvcore}
    return hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _counted(ctx: Any) -> dict[str, Any]:
    from benchbench.measure import kept
    from benchbench.measure.flops import count_flops

    key = shape_key(ctx.params, ctx.payload.get("env") or {})
    if key is not None:
        was = kept.read("flops", key)
        if was and isinstance(was.get("flops"), dict):
            return {**was["flops"], "kept_from": f"cell {was.get('cell_id')} at {was.get('counted_at')}"}
    flops = count_flops(ctx.model, ctx.params, ctx.step.loss_fn, ctx.device)
    if key is not None and not flops.get("fvcore_error") and flops.get("train_step_per_image"):
        kept.write("flops", key, {"flops": flops, "cell_id": ctx.payload.get("cell_id"),
                                  "counted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return flops


def run(ctx: Any) -> dict[str, Any]:
    from benchbench.measure.flops import effective_peak, math_modes

    params = ctx.params
    flops = _counted(ctx)
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
