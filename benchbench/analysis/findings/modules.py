"""Which module takes the step, with FLOPs beside time and the architecture's reason."""

from __future__ import annotations

from benchbench.analysis.records import (
    Finding,
    Thresholds,
    label,
    ok,
    verifier,
)
from benchbench.record import Record
from benchbench.workload.knowledge import why_module


def _modules_share(r: Record) -> dict[str, float]:
    bd = r.breakdown
    if bd is None or not bd.step_s:
        return {}
    return {k: v.total / bd.step_s for k, v in bd.modules.items() if "." not in k}


def _largest_child(r: Record, module: str) -> tuple[str, float] | None:
    bd = r.breakdown
    if bd is None or not bd.step_s:
        return None
    kids = {k: v.total for k, v in bd.modules.items() if k.startswith(module + ".") and k.count(".") == 1}
    if not kids:
        return None
    name, t = max(kids.items(), key=lambda kv: kv[1])
    return name, t / bd.step_s


def _flop_share(r: Record, module: str) -> float | None:
    fl = r.flops
    if fl is None:
        return None
    part = fl.by_module.get(module)
    return part / fl.forward_per_image if fl.forward_per_image and part is not None else None


def dominant_module(records: list[Record], t: Thresholds) -> list[Finding]:
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
        basis = "GPU busy time" if r.gpu else "step time"
        why = why_module(r.params, mod, r.flops.by_module if r.flops else None)
        sentence = f"{label(r)}: {mod} takes {share:.0%} of {basis}{flop_txt}{part_txt}{why}"
        suggestion = None
        verified = None
        if mod == "decoder" and r.params.get("decoder_channels"):
            verified = verifier(records, r, "decoder_channels", "lower")
            suggestion = "reduce decoder_channels"
            if verified:
                suggestion += (
                    f" (decoder_channels {verified['from']} -> {verified['to']} measured: "
                    f"{verified['speedup']:.1f}x faster per image)"
                )
        out.append(
            Finding(
                "dominant_module",
                [r.cell_id],
                sentence,
                {"module": mod, "time_share": share, "flop_share": fshare},
                suggestion,
                verified,
            )
        )
    return out
