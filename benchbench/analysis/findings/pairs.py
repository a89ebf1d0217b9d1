"""Pairwise deltas: two cells that differ in one setting, the difference split by where it went."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from benchbench.analysis.findings.gpu import timeline_delta
from benchbench.analysis.records import (
    Finding,
    Thresholds,
    diff_axes,
    label,
    ok,
    per_image,
    step_s,
)
from benchbench.timeline.names import short_op


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
