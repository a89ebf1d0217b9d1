"""AMP and torch.compile: on a CPU by speed-up, on a GPU explained by the timeline."""

from __future__ import annotations

from itertools import combinations

from benchbench.analysis.findings.gpu import _ms, gpu_of
from benchbench.analysis.records import (
    Finding,
    Thresholds,
    diff_axes,
    label,
    ok,
    per_image,
    step_s,
)
from benchbench.record import Record


def _one_axis_pairs(records: list[Record], gpu: bool) -> list[tuple[str, Record, Record, float]]:
    """(axis, base, variant, speed-up) for cells that differ only in amp or compile, base = none / False."""
    out = []
    for a, b in combinations(ok(records), 2):
        d = diff_axes(a, b)
        if len(d) != 1 or d[0] not in ("amp", "compile") or (a.device == "cuda") != gpu:
            continue
        if a.params.get(d[0]) == b.params.get(d[0]):
            continue  # set differently (a command's axis) but run the same: no precision effect to speak of
        axis = d[0]
        base, var = (a, b) if a.params[axis] in ("none", False) else (b, a)
        if base.params[axis] in ("none", False):
            out.append((axis, base, var, per_image(base) / per_image(var)))
    return out


def _finding(axis: str, base: Record, var: Record, speed: float, why: str) -> Finding:
    return Finding(f"{axis}_effect", [var.cell_id, base.cell_id],
                   f"{axis}={var.params[axis]} vs {base.params[axis]} on {label(base)}: {speed:.2f}x{why}",
                   {"speedup": speed, "axis": axis})


def amp_compile(records: list[Record], t: Thresholds) -> list[Finding]:
    """On a CPU; a GPU's AMP / compile effects are explained from its timeline (amp_compile_gpu)."""
    out = []
    for axis, base, var, speed in _one_axis_pairs(records, gpu=False):
        why = ""
        if speed < t.small_speedup:
            why = "; on a CPU, reduced precision and compilation gain little unless the CPU has bf16 matrix units"
        out.append(_finding(axis, base, var, speed, why))
    return out


def amp_compile_gpu(records: list[Record], t: Thresholds) -> list[Finding]:
    """AMP / compile effects on a GPU, explained by the timeline when both cells have one."""
    out = []
    for axis, base, var, speed in _one_axis_pairs(records, gpu=True):
        gb, gv = gpu_of(base), gpu_of(var)
        if gb and gv:
            why = (f"GPU busy {_ms(gb.gpu_busy_s)} -> {_ms(gv.gpu_busy_s)}, kernels per step "
                   f"{gb.kernels_per_step:.0f} -> {gv.kernels_per_step:.0f}, GPU idle "
                   f"{(gb.gpu_idle_fraction or 0):.0%} -> {(gv.gpu_idle_fraction or 0):.0%}")
            syncs_b = sum(s.per_step for s in gb.host_syncs)
            syncs_v = sum(s.per_step for s in gv.host_syncs)
            if syncs_b != syncs_v:
                why += f", host syncs per step {syncs_b:.0f} -> {syncs_v:.0f}"
        else:
            cv_b, cv_v = (base.cv or 0), (var.cv or 0)
            why = (f"step {step_s(base) * 1e3:.1f} -> {step_s(var) * 1e3:.1f} ms, step-to-step CV "
                   f"{cv_b:.0%} -> {cv_v:.0%}; these records carry no GPU timeline to say why "
                   "(rerun with a current benchbench, or --trace and explain-trace)")
            if var.params.get("amp") == "fp16" and speed < 1:
                why += ("; fp16 adds GradScaler, whose step reads found_inf on the host (one sync per step) "
                        "unless the optimizer is fused")
        out.append(_finding(axis, base, var, speed, "; " + why))
    return out
