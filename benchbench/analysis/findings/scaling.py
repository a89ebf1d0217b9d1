"""How step time scales: resolution, batch, world size, decoder width."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np

from benchbench.analysis.records import (
    Finding,
    Thresholds,
    groups_along,
    label,
    model_name,
    resolved,
    step_s,
    throughput,
)
from benchbench.record import Record


def scaling(records: list[Record], t: Thresholds) -> list[Finding]:
    out = []
    for g in groups_along(records, "resolution"):
        px = np.array([r.params["resolution"][0] * r.params["resolution"][1] for r in g], dtype=float)
        st = np.array([step_s(r) for r in g])
        k, _ = np.polyfit(np.log(px), np.log(st), 1)
        kind = "super-linear (attention or memory traffic dominates)" if k > 1.15 else (
            "sub-linear (fixed per-step costs dominate at small sizes)" if k < 0.85 else "about linear")
        out.append(Finding("scaling", [r.cell_id for r in g],
                           f"{model_name(g[0])}: step time grows as pixels^{k:.2f} ({kind}) "
                           f"over {len(g)} resolutions", {"axis": "resolution", "exponent": float(k),
                                                          "pixels": px.tolist(), "step_s": st.tolist()}))
    for g in groups_along(records, "batch_size"):
        g = sorted(g, key=lambda r: r.params["batch_size"])
        tps = [throughput(r) for r in g]
        plateau = None
        for prev, cur, r in zip(tps, tps[1:], g[1:]):
            if cur < prev * (1 + t.batch_plateau_gain):
                plateau = r.params["batch_size"]
                break
        bs = [r.params["batch_size"] for r in g]
        txt = (f"throughput stops growing at batch {plateau}" if plateau
               else "throughput still grows at the largest batch")
        out.append(Finding("scaling", [r.cell_id for r in g],
                           f"{model_name(g[0])}: over batch sizes {bs}, {txt} "
                           f"({', '.join(f'{x:.1f}' for x in tps)} img/s)",
                           {"axis": "batch_size", "batch_sizes": bs, "throughput": tps, "plateau": plateau}))
    for g in groups_along(records, "world_size"):
        g = sorted(g, key=lambda r: r.params.get("world_size") or 1)
        one = next((r for r in g if (r.params.get("world_size") or 1) == 1), None)
        if not one:
            continue
        for r in g[1:]:
            ws = r.params["world_size"]
            gain = throughput(r) / throughput(one)
            eff = gain / ws
            slow = r.ranks.slowest_rank if r.ranks else None
            out.append(Finding("scaling", [r.cell_id, one.cell_id],
                               f"{label(r)}: {ws} ranks give {gain:.2f}x "
                               f"the throughput of one, a scaling efficiency of {eff:.0%}"
                               + (f" (slowest rank: {slow})" if slow is not None else ""),
                               {"axis": "world_size", "efficiency": eff, "world_size": ws}))
    return out


def channel_scaling(records: list[Record], t: Thresholds) -> list[Finding]:
    """How step time, memory and the decoder's FLOPs change with decoder_channels."""
    out = []
    for g in groups_along(records, "decoder_channels"):
        g = [r for r in g if r.params.get("decoder_channels")]
        if len(g) < 2:
            continue
        g = sorted(g, key=lambda r: -r.params["decoder_channels"])
        cs = [r.params["decoder_channels"] for r in g]
        steps = [step_s(r) for r in g]
        acts = [(r.memory.activations_by_module or {}).get("total") if r.memory else None for r in g]
        saves = [f"{(b - a) / a:+.0%}" for a, b in pairwise(steps)]
        sentence = (f"{model_name(g[0])}: decoder_channels "
                    f"{' -> '.join(map(str, cs))} measured step time {' -> '.join(f'{x * 1e3:.0f}' for x in steps)} ms "
                    f"({', '.join(saves)})")
        if all(a for a in acts):
            sentence += f", activations {' -> '.join(f'{a / 2**20:.1f}' for a in acts)} MiB"
        evidence: dict[str, Any] = {"decoder_channels": cs, "step_s": steps, "activation_bytes": acts}
        fuse = [(r.flops.by_module if r.flops else {}) for r in g]
        key = next((k for k in ("decoder.fuse_stage", "decoder") if all(f.get(k) for f in fuse)), None)
        if key and len(set(cs)) >= 2:
            k, _ = np.polyfit(np.log(cs), np.log([f[key] for f in fuse]), 1)
            kt, _ = np.polyfit(np.log(cs), np.log(steps), 1)
            evidence.update({"flop_exponent": float(k), "time_exponent": float(kt), "flop_module": key})
            sentence += (f"; {key} FLOPs grow as C^{k:.2f}"
                         + (" (the square of the channel count)" if 1.8 <= k <= 2.2 else "")
                         + f", step time as C^{kt:.2f}")
        for a, b in pairwise(g):  # wider first: a narrower decoder should never be slower
            if step_s(b) > step_s(a):
                ok_, needed, cv, basis = resolved(records, b, a)
                sentence += (f"; not monotonic: C={b.params['decoder_channels']} ({step_s(b) * 1e3:.0f} ms) is slower "
                             f"than C={a.params['decoder_channels']} ({step_s(a) * 1e3:.0f} ms)" + (
                                 "" if ok_ else f", within this machine's run-to-run variation (run CV {cv:.1%}, "
                                 f"{basis}): unresolved, {needed} runs a side would resolve it"))
                evidence.setdefault("unresolved_steps", []).append(
                    [a.params["decoder_channels"], b.params["decoder_channels"], ok_, needed])
        # The span is the decoder's only if it is beyond the noise and the decoder is what grew: a difference the
        # encoder made (it does not depend on decoder_channels) is the machine's, never the decoder's width.
        span_ok, needed, cv, basis = resolved(records, g[0], g[-1])
        evidence["resolved"] = span_ok
        grew = _grew_most(g[0], g[-1])
        if grew is not None:
            evidence["grew_most"] = grew[0]
            if grew[0] != "decoder":
                sentence += (f"; but {grew[0]}, which does not depend on decoder_channels, changed most "
                             f"({grew[1] * 1e3:+.0f} ms): the difference is not the decoder's width")
        if not span_ok:
            sentence += (f"; the whole span is within this machine's run-to-run variation (run CV {cv:.1%}, {basis}):"
                         f" unresolved, {needed} runs a side would resolve it")
        out.append(Finding("channel_scaling", [r.cell_id for r in g], sentence, evidence,
                           f"decoder_channels {cs[0]} -> {cs[-1]}: {steps[0] / steps[-1]:.1f}x faster per step"))
    return out


def _grew_most(wide: Record, narrow: Record) -> tuple[str, float] | None:
    """The top-level module whose time changed most between two cells, from their breakdowns (None: no
    breakdowns). On a GPU the timeline's module times; on a CPU the profiled ones."""
    def mods(r: Record) -> dict[str, float]:
        if r.gpu is not None:
            return {k: v.total for k, v in r.gpu.gpu_modules_s.items() if "." not in k}
        return {k: v.total for k, v in (r.breakdown.modules if r.breakdown else {}).items() if "." not in k}

    a, b = mods(wide), mods(narrow)
    if not a or not b:
        return None
    deltas = {k: a.get(k, 0.0) - b.get(k, 0.0) for k in set(a) | set(b)}
    name = max(deltas, key=lambda k: abs(deltas[k]))
    return name, deltas[name]
