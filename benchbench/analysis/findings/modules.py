"""Which module takes the step, with FLOPs beside time and the architecture's reason."""

from __future__ import annotations

from typing import Any

from benchbench.analysis.records import (
    Finding,
    Thresholds,
    label,
    ok,
    verifier,
)
from benchbench.workload.knowledge import why_module


def _modules_share(r: dict[str, Any]) -> dict[str, float]:
    bd = r.get("breakdown") or {}
    step = bd.get("step_s") or 0
    mods = bd.get("modules") or {}
    return {k: (v["forward"] + v["backward"]) / step for k, v in mods.items() if "." not in k and step}


def _largest_child(r: dict[str, Any], module: str) -> tuple[str, float] | None:
    bd = r.get("breakdown") or {}
    step = bd.get("step_s") or 0
    kids = {k: v["forward"] + v["backward"] for k, v in (bd.get("modules") or {}).items()
            if k.startswith(module + ".") and k.count(".") == 1}
    if not kids or not step:
        return None
    name, t = max(kids.items(), key=lambda kv: kv[1])
    return name, t / step


def _flop_share(r: dict[str, Any], module: str) -> float | None:
    fl = r.get("flops") or {}
    total = fl.get("forward_per_image")
    part = (fl.get("by_module") or {}).get(module)
    return part / total if total and part is not None else None


def dominant_module(records: list[dict[str, Any]], t: Thresholds) -> list[Finding]:
    out = []
    for r in ok(records):
        shares = _modules_share(r)
        if not shares:
            continue
        mod, share = max(shares.items(), key=lambda kv: kv[1])
        if share < t.dominant_module_share:
            continue
        fshare = _flop_share(r, mod)
        flop_txt = f" and {fshare:.0%} of forward FLOPs" if fshare is not None else ""
        part_txt, part = "", _largest_child(r, mod)
        if part:
            part_txt = f" (largest part: {part[0]}, {part[1]:.0%})"
        basis = "GPU busy time" if (r.get("breakdown") or {}).get("gpu") else "step time"
        sentence = f"{label(r)}: {mod} takes {share:.0%} of {basis}{flop_txt}{part_txt}{why_module(r, mod)}"
        suggestion = None
        verified = None
        if mod == "decoder" and r["params"].get("decoder_channels"):
            verified = verifier(records, r, "decoder_channels", "lower")
            suggestion = "reduce decoder_channels"
            if verified:
                suggestion += (f" (decoder_channels {verified['from']} -> {verified['to']} measured: "
                               f"{verified['speedup']:.1f}x faster per image)")
        out.append(Finding("dominant_module", [r["cell_id"]], sentence,
                           {"module": mod, "time_share": share, "flop_share": fshare}, suggestion, verified))
    return out
