"""Which module takes the step, with FLOPs beside time and the architecture's reason."""

from __future__ import annotations

from benchbench.analysis.records import (
    Finding,
    Thresholds,
    effect_text,
    label,
    ok,
    verifier,
)
from benchbench.record import Record
from benchbench.workload.anatomy import fuse_name, is_decoder
from benchbench.workload.knowledge import why_module


def decoder_width_estimate(r: Record, width: int, new: int) -> tuple[float, float, float, float] | None:
    """(decoder share, fuse-stage share, bound, estimated speed-up) of narrowing the decoder from `width` to `new`
    channels, from the measured breakdown: SegFormer's fuse stage (a 1x1 conv over n*C channels, C out) scales as
    C^2, the rest of the decoder as C; the bound is the decoder taking no time (Amdahl over its whole share).
    None without a breakdown that has the decoder."""
    bd = r.breakdown
    dec = next((k for k in bd.modules if "." not in k and is_decoder(k)), None) if bd and bd.step_s else None
    if dec is None:
        return None
    d = bd.module_total(dec) / bd.step_s
    fname = fuse_name(bd.modules)
    f = bd.module_total(fname) / bd.step_s if fname else 0.0
    ratio = new / width
    saved = f * (1 - ratio * ratio) + max(d - f, 0.0) * (1 - ratio)
    return d, f, 1 / (1 - min(d, 0.999)), 1 / (1 - min(saved, 0.999))


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
        why = why_module(r.params, mod, r.flops.by_module if r.flops else None,
                         r.breakdown.modules if r.breakdown else ())
        sentence = f"{label(r)}: {mod} takes {share:.0%} of {basis}{flop_txt}{part_txt}{why}"
        suggestion = None
        verified = None
        width = r.params.get("decoder_channels")
        if is_decoder(mod) and width:
            verified = verifier(records, r, "decoder_channels", "lower")
            suggestion = "reduce decoder_channels" if mod == "decoder" else "reduce config.decoder_hidden_size"
            est = decoder_width_estimate(r, width, width // 2) if width >= 32 else None
            if verified:
                suggestion += (
                    f" (decoder_channels {verified['from']} -> {verified['to']} measured: "
                    f"{effect_text(verified, 1)})"
                )
            elif est:  # one cell (an attached script): the bound and the estimate from its own breakdown
                suggestion += (f" ({width} -> {width // 2}: at most {est[2]:.2f}x, the decoder taking no time; its "
                               f"fuse stage ({est[1]:.0%} of the step) scaling as C^2 and the rest as C estimate "
                               f"{est[3]:.2f}x)")
        out.append(
            Finding(
                "dominant_module",
                [r.cell_id],
                sentence,
                {"module": mod, "time_share": share, "flop_share": fshare,
                 **({"decoder_channels": width} if is_decoder(mod) and width else {})},
                suggestion,
                verified,
            )
        )
    return out
