"""Findings: sentences that say why a cell is slow, each with the numbers behind it.

No finding is made without evidence above its threshold, and every threshold is
in THRESHOLDS below. Advice names the suite's own cell that measures the change
when there is one, so a suggestion is a measurement, not an opinion.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import numpy as np

from benchbench.analysis import gpu_findings as gpu
from benchbench.analysis.gpu_findings import data_wait, timeline_delta
from benchbench.analysis.records import (
    AXES,
    THRESHOLDS,
    Finding,
    Thresholds,
    diff_axes,
    label,
    ok,
    per_image,
    step_s,
    verifier,
)
from benchbench.timeline.names import short_op


MATMUL_OPS = ("conv", "mm", "addmm", "bmm", "linear", "matmul", "scaled_dot_product", "_convolution", "mkldnn")
LAYOUT_OPS = ("copy_", "contiguous", "_to_copy", "clone", "to_dense", "permute", "transpose", "reorder", "as_strided")


def _is_matmul(name: str) -> bool:
    n = name.lower()
    return any(k in n for k in MATMUL_OPS) and "backward" not in n or any(
        k in n for k in ("convolutionbackward", "convolution_backward", "mm_backward", "addmmbackward")
    )


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


def _why_module(r: dict[str, Any], module: str) -> str:
    """Architecture knowledge: what makes this module expensive."""
    p = r["params"]
    arch = str(p["arch"]).lower()
    h, w = p["resolution"]
    if module != "decoder":
        return ""
    if arch == "segformer":
        c = p.get("decoder_channels") or 256
        stages = _segformer_stages(r)
        extra = ""
        if stages == 5:
            extra = (" With this encoder SMP also builds a fifth branch at 1/2 resolution and downsamples it, "
                     "a cost the original SegFormer never had.")
        return (f"; its fuse conv runs at 1/4 input resolution ({h // 4}x{w // 4}) on {stages}x{c} concatenated "
                f"channels, so its cost grows with the square of decoder_channels.{extra}")
    if arch in ("unet", "unetplusplus", "manet"):
        return f"; its last blocks run 3x3 convolutions at 1/2 and full resolution ({h}x{w})"
    if arch == "fpn":
        return "; its segmentation blocks run at 1/4 resolution on every pyramid level"
    return ""


def _segformer_stages(r: dict[str, Any]) -> int:
    mods = (r.get("flops") or {}).get("by_module") or {}
    n = len([k for k in mods if k.startswith("decoder.mlp_stage.")])
    if n:
        return n
    return 4 if str(r["params"].get("encoder", "")).startswith("mit_") else 5


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
        sentence = f"{label(r)}: {mod} takes {share:.0%} of {basis}{flop_txt}{part_txt}{_why_module(r, mod)}"
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


def _op_times(r: dict[str, Any]) -> dict[str, float]:
    return {o["name"]: o["self_time_s"] for o in ((r.get("breakdown") or {}).get("top_ops") or [])}


def pairwise(records: list[dict[str, Any]], t: Thresholds, pairs: list[tuple[str, str]] | None = None) -> list[Finding]:
    by_id = {r["cell_id"]: r for r in ok(records)}
    candidates: list[tuple[dict[str, Any], dict[str, Any]]] = []
    if pairs:
        for a, b in pairs:
            ra = next((r for k, r in by_id.items() if k.startswith(a) or label(r) == a), None)
            rb = next((r for k, r in by_id.items() if k.startswith(b) or label(r) == b), None)
            if ra and rb:
                candidates.append((ra, rb))
    else:
        for a, b in combinations(by_id.values(), 2):
            d = diff_axes(a, b)
            # decoder_channels means something different per architecture: an arch
            # comparison at each one's own decoder width is still a one-axis change.
            if "arch" in d:
                d = [k for k in d if k != "decoder_channels"]
            if len(d) == 1 and d[0] != "batch_size":
                candidates.append((a, b))
    out = []
    for a, b in candidates:
        slow, fast = (a, b) if per_image(a) >= per_image(b) else (b, a)
        ratio = per_image(slow) / per_image(fast)
        if ratio < t.pair_min_ratio and not pairs:
            continue
        delta = step_s(slow) - step_s(fast)
        parts = []
        ms, mf = (slow.get("breakdown") or {}).get("modules") or {}, (fast.get("breakdown") or {}).get("modules") or {}
        mod_deltas = {}
        for k in ms:
            if "." in k:
                continue
            d = (ms[k]["forward"] + ms[k]["backward"]) - sum(mf.get(k, {}).get(x, 0.0) for x in ("forward", "backward"))
            mod_deltas[k] = d
        gpu = timeline_delta(slow, fast)
        if gpu:
            parts.append(gpu[0])
        elif mod_deltas and delta > 0:
            k, d = max(mod_deltas.items(), key=lambda kv: kv[1])
            txt = f"of which {k} +{d:.3f} s ({d / delta:.0%})"
            if d > delta:  # a share above 100%: something else got faster; say what
                k2, d2 = min(mod_deltas.items(), key=lambda kv: kv[1])
                txt += f", while {k2} {d2:+.3f} s" if d2 < 0 else ", the rest from time outside the modules"
            parts.append(txt)
        os_, of = _op_times(slow), _op_times(fast)
        op_deltas = sorted(((os_.get(n, 0.0) - of.get(n, 0.0), n) for n in set(os_) | set(of)), reverse=True)[:3]
        op_txt = ", ".join(f"{short_op(n)} +{d * 1e3:.1f} ms" for d, n in op_deltas if d > 0)
        pc = ""
        if slow.get("params_count") and fast.get("params_count"):
            pc = f" (at {slow['params_count'] / 1e6:.1f} M vs {fast['params_count'] / 1e6:.1f} M parameters)"
        sentence = (f"{label(slow)} is {ratio:.1f}x slower per image than {label(fast)}{pc}: "
                    + (parts[0] if gpu else f"{delta:+.3f} s/step" + (f", {parts[0]}" if parts else ""))
                    + (f"; top op deltas: {op_txt}" if op_txt else ""))
        out.append(Finding("pairwise_delta", [slow["cell_id"], fast["cell_id"]], sentence,
                           {"ratio": ratio, "delta_s": delta, "differs_in": diff_axes(slow, fast),
                            "module_deltas_s": mod_deltas, "op_deltas_s": {short_op(n): d for d, n in op_deltas},
                            **({"gpu": gpu[1]} if gpu else {})}))
    out.sort(key=lambda f: -f.evidence["ratio"])
    return out if pairs else out[: t.max_pairs]


def _groups(records: list[dict[str, Any]], axis: str) -> list[list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in ok(records):
        key = repr([(k, r["params"].get(k)) for k in AXES if k != axis])
        groups.setdefault(key, []).append(r)
    return [g for g in groups.values() if len({repr(r["params"].get(axis)) for r in g}) >= 2]


def scaling(records: list[dict[str, Any]], t: Thresholds) -> list[Finding]:
    out = []
    for g in _groups(records, "resolution"):
        px = np.array([r["params"]["resolution"][0] * r["params"]["resolution"][1] for r in g], dtype=float)
        st = np.array([step_s(r) for r in g])
        k, _ = np.polyfit(np.log(px), np.log(st), 1)
        arch = g[0]["params"]["arch"]
        kind = "super-linear (attention or memory traffic dominates)" if k > 1.15 else (
            "sub-linear (fixed per-step costs dominate at small sizes)" if k < 0.85 else "about linear")
        out.append(Finding("scaling", [r["cell_id"] for r in g],
                           f"{arch}/{g[0]['params']['encoder']}: step time grows as pixels^{k:.2f} ({kind}) "
                           f"over {len(g)} resolutions", {"axis": "resolution", "exponent": float(k),
                                                          "pixels": px.tolist(), "step_s": st.tolist()}))
    for g in _groups(records, "batch_size"):
        g = sorted(g, key=lambda r: r["params"]["batch_size"])
        tps = [r["throughput_img_s"] for r in g]
        plateau = None
        for prev, cur, r in zip(tps, tps[1:], g[1:]):
            if cur < prev * (1 + t.batch_plateau_gain):
                plateau = r["params"]["batch_size"]
                break
        bs = [r["params"]["batch_size"] for r in g]
        txt = (f"throughput stops growing at batch {plateau}" if plateau else "throughput still grows at the largest batch")
        out.append(Finding("scaling", [r["cell_id"] for r in g],
                           f"{g[0]['params']['arch']}/{g[0]['params']['encoder']}: over batch sizes {bs}, {txt} "
                           f"({', '.join(f'{x:.1f}' for x in tps)} img/s)",
                           {"axis": "batch_size", "batch_sizes": bs, "throughput": tps, "plateau": plateau}))
    for g in _groups(records, "world_size"):
        g = sorted(g, key=lambda r: r["params"].get("world_size") or 1)
        one = next((r for r in g if (r["params"].get("world_size") or 1) == 1), None)
        if not one:
            continue
        for r in g[1:]:
            ws = r["params"]["world_size"]
            eff = r["throughput_img_s"] / (ws * one["throughput_img_s"])
            slow = (r.get("ranks") or {}).get("slowest_rank")
            out.append(Finding("scaling", [r["cell_id"], one["cell_id"]],
                               f"{label(r)}: {ws} ranks give {r['throughput_img_s'] / one['throughput_img_s']:.2f}x "
                               f"the throughput of one, a scaling efficiency of {eff:.0%}"
                               + (f" (slowest rank: {slow})" if slow is not None else ""),
                               {"axis": "world_size", "efficiency": eff, "world_size": ws}))
    return out


def channel_scaling(records: list[dict[str, Any]], t: Thresholds) -> list[Finding]:
    """How step time, memory and the decoder's FLOPs change with decoder_channels."""
    out = []
    for g in _groups(records, "decoder_channels"):
        g = [r for r in g if r["params"].get("decoder_channels")]
        if len(g) < 2:
            continue
        g = sorted(g, key=lambda r: -r["params"]["decoder_channels"])
        cs = [r["params"]["decoder_channels"] for r in g]
        steps = [step_s(r) for r in g]
        acts = [((r.get("memory") or {}).get("activations_by_module") or {}).get("total") for r in g]
        saves = [f"{(b - a) / a:+.0%}" for a, b in zip(steps, steps[1:])]
        sentence = (f"{g[0]['params']['arch']}/{g[0]['params']['encoder']}: decoder_channels "
                    f"{' -> '.join(map(str, cs))} measured step time {' -> '.join(f'{x * 1e3:.0f}' for x in steps)} ms "
                    f"({', '.join(saves)})")
        if all(a for a in acts):
            sentence += f", activations {' -> '.join(f'{a / 2**20:.1f}' for a in acts)} MiB"
        evidence: dict[str, Any] = {"decoder_channels": cs, "step_s": steps, "activation_bytes": acts}
        fuse = [((r.get("flops") or {}).get("by_module") or {}) for r in g]
        key = next((k for k in ("decoder.fuse_stage", "decoder") if all(f.get(k) for f in fuse)), None)
        if key and len(set(cs)) >= 2:
            k, _ = np.polyfit(np.log(cs), np.log([f[key] for f in fuse]), 1)
            kt, _ = np.polyfit(np.log(cs), np.log(steps), 1)
            evidence.update({"flop_exponent": float(k), "time_exponent": float(kt), "flop_module": key})
            sentence += (f"; {key} FLOPs grow as C^{k:.2f}"
                         + (" (the square of the channel count)" if 1.8 <= k <= 2.2 else "")
                         + f", step time as C^{kt:.2f}")
        out.append(Finding("channel_scaling", [r["cell_id"] for r in g], sentence, evidence,
                           f"decoder_channels {cs[0]} -> {cs[-1]}: {steps[0] / steps[-1]:.1f}x faster per step"))
    return out


def input_bound(records: list[dict[str, Any]], t: Thresholds) -> list[Finding]:
    out = data_wait(records, t)
    # Workers that change nothing: the job was not input-bound.
    for g in _groups(records, "num_workers"):
        g = sorted(g, key=lambda r: r["params"]["num_workers"])
        base = g[0]
        for r in g[1:]:
            speed = per_image(base) / per_image(r)
            if speed < 1.0 and (base.get("data_wait_s") or {}).get("fraction", 0) < t.input_bound_share:
                out.append(Finding("input_bound", [r["cell_id"], base["cell_id"]],
                                   f"{label(r)} is {1 / speed:.2f}x slower than {label(base)}: the step was not "
                                   f"input-bound, and worker processes compete with compute threads "
                                   f"for {((r.get('env') or {}).get('cpu_count') or '?')} CPU cores",
                                   {"speedup": speed}, f"keep num_workers={base['params']['num_workers']}"))
                break
    return out


def utilization(records: list[dict[str, Any]], t: Thresholds) -> list[Finding]:
    out = []
    for r in ok(records):
        fl = r.get("flops") or {}
        util = fl.get("utilization")
        if util is None or util >= t.low_utilization:
            continue
        ops = (r.get("breakdown") or {}).get("top_ops") or []
        total = (r.get("breakdown") or {}).get("op_self_total_s") or sum(o["self_time_s"] for o in ops) or 1.0
        nonmm = sum(o["self_time_s"] for o in ops if not _is_matmul(o["name"]))
        share = nonmm / total
        g = (r.get("breakdown") or {}).get("gpu") or {}
        idle = g.get("gpu_idle_fraction")
        idle_txt = (f"; and the GPU is idle {idle:.0%} of the timed step, so part of the gap is the host, "
                    "not the kernels" if idle is not None and idle >= t.launch_idle_share else "")
        out.append(Finding("low_utilization", [r["cell_id"]],
                           f"{label(r)} runs at {fl['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s, {util:.0%} of the "
                           f"measured peak; at least {share:.0%} of operator time is in non-matmul operators "
                           f"(upsampling, concatenation, normalization, elementwise, copies): memory-bound work{idle_txt}",
                           {"utilization": util, "non_matmul_share": share, "gpu_idle_fraction": idle}))
    return out


def layout(records: list[dict[str, Any]], t: Thresholds) -> list[Finding]:
    out = _layout_per_cell(records, t)
    if len(out) <= 3:
        return out
    shares = [f.evidence["layout_share"] for f in out]
    verified = next((f.verified_by for f in out if f.verified_by), None)
    return [Finding("layout_conversions", [c for f in out for c in f.cells],
                    f"copies and layout conversions take {min(shares):.0%}-{max(shares):.0%} of operator time "
                    f"in {len(out)} cells", {"layout_share_min": min(shares), "layout_share_max": max(shares)},
                    out[0].suggestion if verified else "try channels_last", verified)]


def _layout_per_cell(records: list[dict[str, Any]], t: Thresholds) -> list[Finding]:
    out = []
    for r in ok(records):
        bd = r.get("breakdown") or {}
        ops = bd.get("top_ops") or []
        total = bd.get("op_self_total_s") or 0
        lay = sum(o["self_time_s"] for o in ops if any(k in o["name"] for k in LAYOUT_OPS))
        if not total or lay / total < t.layout_share:
            continue
        verified = verifier(records, r, "channels_last", "any")
        out.append(Finding("layout_conversions", [r["cell_id"]],
                           f"{label(r)}: {lay / total:.0%} of operator time is copies and layout conversions",
                           {"layout_share": lay / total}, (
                               f"channels_last {verified['from']} -> {verified['to']} measured: "
                               f"{verified['speedup']:.2f}x" if verified else "try channels_last"), verified))
    return out


def amp_compile(records: list[dict[str, Any]], t: Thresholds) -> list[Finding]:
    """On a CPU; a GPU's AMP / compile effects are explained from its timeline (gpu_findings)."""
    out = []
    for a, b in combinations(ok(records), 2):
        d = diff_axes(a, b)
        if len(d) != 1 or d[0] not in ("amp", "compile") or a["params"].get("device") == "cuda":
            continue
        axis = d[0]
        base, var = (a, b) if a["params"][axis] in ("none", False) else (b, a)
        if base["params"][axis] not in ("none", False):
            continue
        speed = per_image(base) / per_image(var)
        why = ""
        if speed < t.small_speedup:
            why = "; on a CPU, reduced precision and compilation gain little unless the CPU has bf16 matrix units"
        out.append(Finding(f"{axis}_effect", [var["cell_id"], base["cell_id"]],
                           f"{axis}={var['params'][axis]} vs {base['params'][axis]} on {label(base)}: "
                           f"{speed:.2f}x{why}", {"speedup": speed, "axis": axis}))
    return out


def rules() -> tuple[Any, ...]:
    """Every record-level rule, in report order: a new rule is a function plus a line here."""
    return (dominant_module, channel_scaling, gpu.launch_bound, gpu.host_sync, input_bound, utilization, layout,
            amp_compile, gpu.amp_compile_gpu, scaling)


def find_all(records: list[dict[str, Any]], t: Thresholds = THRESHOLDS,
             pairs: list[tuple[str, str]] | None = None) -> list[Finding]:
    out: list[Finding] = []
    for fn in rules():
        out.extend(fn(records, t))
    out.extend(pairwise(records, t, pairs))
    return [f for f in out if all(not (isinstance(v, float) and math.isnan(v)) for v in f.evidence.values())]
