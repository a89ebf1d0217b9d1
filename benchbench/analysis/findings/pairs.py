"""Pairwise deltas: two cells that differ in one setting, the difference split by where it went."""

from __future__ import annotations

from itertools import combinations

from benchbench.analysis.findings.gpu import timeline_delta
from benchbench.analysis.parts import parts_text, split_difference
from benchbench.analysis.records import (
    Finding,
    Thresholds,
    diff_axes,
    label,
    ok,
    per_image,
    resolved,
    step_s,
)
from benchbench.record import Record
from benchbench.timeline.names import short_op


def _op_times(r: Record) -> dict[str, float]:
    return {o.name: o.self_time_s for o in (r.breakdown.top_ops if r.breakdown else [])}


def pairwise(records: list[Record], t: Thresholds, pairs: list[tuple[str, str]] | None = None) -> list[Finding]:
    by_id = {r.cell_id: r for r in ok(records)}
    candidates: list[tuple[Record, Record]] = []
    if pairs:
        for a, b in pairs:
            ra = next((r for k, r in by_id.items() if k.startswith(a) or label(r) == a), None)
            rb = next((r for k, r in by_id.items() if k.startswith(b) or label(r) == b), None)
            if not (ra and rb):
                from benchbench.errors import BenchbenchError

                raise BenchbenchError(f"--pair {a},{b}: {a if not ra else b!r} names no ok cell in these results")
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
        split = split_difference(slow, fast)
        runs = (len(slow.runs) or 1, len(fast.runs) or 1)
        is_resolved, needed, cv, cv_basis = resolved(records, slow, fast)
        pc = ""
        if slow.params_count and fast.params_count and slow.params_count != fast.params_count:
            pc = f" (at {slow.params_count / 1e6:.1f} M vs {fast.params_count / 1e6:.1f} M parameters)"
        head = f"{label(slow)} is {ratio:.1f}x slower per image than {label(fast)}{pc}: "
        gpu = timeline_delta(slow, fast)
        if not is_resolved:
            body = (f"unresolved: within this machine's run-to-run variation (run CV {cv:.1%}, {cv_basis}) at "
                    f"{runs[0]} vs {runs[1]} run(s); {needed} runs a side (`run --repeat {needed}`) would resolve it")
        elif gpu:
            body = gpu[0]
        else:
            body = f"{delta * 1e3:+.1f} ms/step = {parts_text(split)}"
        os_, of = _op_times(slow), _op_times(fast)
        op_deltas = sorted(((os_.get(n, 0.0) - of.get(n, 0.0), n) for n in set(os_) | set(of)), reverse=True)[:3]
        out.append(Finding("pairwise_delta", [slow.cell_id, fast.cell_id], head + body,
                           {"ratio": ratio, "delta_s": delta, "differs_in": diff_axes(slow, fast),
                            "parts_s": split["parts_s"], "module_deltas_s": split["modules_s"],
                            "op_deltas_s": {short_op(n): d for d, n in op_deltas}, "resolved": is_resolved,
                            "runs_to_resolve": None if is_resolved else needed, "run_cv": cv,
                            **({"gpu": gpu[1]} if gpu else {})}))
    out.sort(key=lambda f: -f.evidence["ratio"])
    return out if pairs else out[: t.max_pairs]
