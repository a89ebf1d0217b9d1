"""Utilisation against the measured peak, and copies / layout conversions."""

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

MATMUL_EXACT = {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "mmbackward0", "addmmbackward0",
                "bmmbackward0", "mm_backward", "addmm_backward"}
MATMUL_PREFIXES = ("convolution", "_convolution", "cudnn_convolution", "mkldnn_convolution", "slow_conv",
                   "thnn_conv", "conv1d", "conv2d", "conv3d", "conv_transpose", "nvjet", "cutlass")
MATMUL_SUBSTRINGS = ("scaled_dot_product", "gemm", "convolutionbackward", "attention_forward", "attention_backward",
                     "flash_fwd", "flash_bwd", "fmha", "flash_attention", "efficient_attention")
CONV_PREFIXES = ("convolution", "_convolution", "cudnn_convolution", "mkldnn_convolution", "slow_conv", "thnn_conv",
                 "conv1d", "conv2d", "conv3d", "conv_transpose", "convolutionbackward")
LAYOUT_OPS = ("copy_", "contiguous", "_to_copy", "clone", "to_dense", "permute", "transpose", "reorder", "as_strided")


def _is_matmul(name: str) -> bool:
    """Matrix-multiply / convolution work, by op name (aten ops, autograd nodes, GEMM kernels).

    Exact names and prefixes, not substrings: `upsample_bilinear2d` contains "linear" and is not a matmul.
    """
    n = name.lower().split("::")[-1].strip()
    return n in MATMUL_EXACT or n.startswith(MATMUL_PREFIXES) or any(k in n for k in MATMUL_SUBSTRINGS)


def is_conv(name: str) -> bool:
    """Convolution work (forward and backward), which cuDNN runs in TF32 in an fp32 cell by default."""
    n = name.lower().split("::")[-1].strip()
    return n.startswith(CONV_PREFIXES) or "convolutionbackward" in n or (n.startswith("cudnn") and "conv" in n)


def utilization(records: list[Record], t: Thresholds) -> list[Finding]:
    out = []
    for r in ok(records):
        fl = r.flops
        util = fl.utilization if fl else None
        if fl is None or util is None or util >= t.low_utilization:
            continue
        ops = r.breakdown.top_ops if r.breakdown else []
        total = (r.breakdown.op_self_total_s if r.breakdown else None) or sum(o.self_time_s for o in ops) or 1.0
        nonmm = sum(o.self_time_s for o in ops if not _is_matmul(o.name))
        share = nonmm / total
        idle = r.gpu.gpu_idle_fraction if r.gpu else None
        idle_txt = (f"; and the GPU is idle {idle:.0%} of the timed step, so part of the gap is the host, "
                    "not the kernels" if idle is not None and idle >= t.launch_idle_share else "")
        if share >= 0.5:
            why = (f"at least {share:.0%} of operator time is in non-matmul operators (upsampling, concatenation, "
                   "normalization, elementwise, copies): memory-bound work")
        else:
            why = (f"matmul / convolution operators take {1 - share:.0%} of operator time, so they themselves run "
                   f"far below the peak (amp={r.params.get('amp')}: a dtype or shape without fast kernels on "
                   "this device?)")
        out.append(Finding("low_utilization", [r.cell_id],
                           f"{label(r)} runs at {(fl.achieved_flops_per_s or 0) / 1e9:.1f} GFLOP/s, {util:.0%} of the "
                           f"measured peak; {why}{idle_txt}",
                           {"utilization": util, "non_matmul_share": share, "gpu_idle_fraction": idle}))
    return out


def layout(records: list[Record], t: Thresholds) -> list[Finding]:
    out = _layout_per_cell(records, t)
    if len(out) <= 3:
        return out
    shares = [f.evidence["layout_share"] for f in out]
    verified = next((f.verified_by for f in out if f.verified_by), None)
    return [Finding("layout_conversions", [c for f in out for c in f.cells],
                    f"copies and layout conversions take {min(shares):.0%}-{max(shares):.0%} of operator time "
                    f"in {len(out)} cells", {"layout_share_min": min(shares), "layout_share_max": max(shares)},
                    out[0].suggestion if verified else "try channels_last", verified)]


def _layout_per_cell(records: list[Record], t: Thresholds) -> list[Finding]:
    out = []
    for r in ok(records):
        bd = r.breakdown
        if bd is None:
            continue
        total = bd.op_self_total_s or 0
        lay = sum(o.self_time_s for o in bd.top_ops if any(k in o.name for k in LAYOUT_OPS))
        if not total or lay / total < t.layout_share:
            continue
        verified = verifier(records, r, "channels_last", "any")
        out.append(Finding("layout_conversions", [r.cell_id],
                           f"{label(r)}: {lay / total:.0%} of operator time is copies and layout conversions",
                           {"layout_share": lay / total}, (
                               f"channels_last {verified['from']} -> {verified['to']} measured: "
                               f"{effect_text(verified)}" if verified else "try channels_last"), verified))
    return out
