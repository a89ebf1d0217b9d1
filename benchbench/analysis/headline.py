"""The headline: the few stories that matter most in a run, ranked by their measured (or bounded) effect.

Findings come out of many rules; a reader needs the answer first. Findings are grouped into themes (what a
performance engineer would call one story: the decoder's width, the input pipeline, launch overhead, host
syncs, precision, scaling), each theme becomes one story with the range over its cells, and stories are
ranked by impact — the throughput factor at stake, from the finding's own numbers:

- a measured effect (a scaling curve's end to end, a pairwise ratio, a verified fix) counts as measured;
- a share that can at most be removed (input stall f, GPU idle waiting for launches, a dominant module)
  counts as its Amdahl bound 1 / (1 - f);
- context (utilisation against the peak, layout conversions) ranks last.

The suite's reference comparison is always one of the stories. Unresolved differences (within run-to-run
variation) never lead. A finding whose cells were measured on a machine unfit to trust (CPU cores another
process held, a throttled or shared GPU: `record.state.degraded`) never ranks as measured: a story is told from
its trusted findings first, and one that has only unfit ones ranks last and says why on its own line, so the
headline never presents as measured what the report itself calls unfit. The ranking and its weights live here;
thresholds live in `records.Thresholds`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from benchbench.analysis.records import Finding, label, noise, ok, per_image, resolved
from benchbench.record import Record
from benchbench.workload.anatomy import DECODER_NAMES

MAX_STORIES = 5
BASIS_ORDER = {"measured": 0, "bound": 1, "context": 2}  # a measured effect leads a bound, a bound context
THEMES = {
    "channel_scaling": "decoder width", "dominant_module": "where the step goes",
    "input_bound": "input pipeline", "input_epoch_boundary": "input pipeline", "input_capacity": "input pipeline",
    "epoch_start": "input pipeline",
    "launch_bound": "launch overhead", "host_sync": "host syncs",
    "amp_effect": "precision and compilation", "compile_effect": "precision and compilation",
    "scaling": "scaling", "low_utilization": "efficiency", "layout_conversions": "efficiency",
    "optimizer_step": "optimizer",
    "epoch_validation": "validation", "epoch_checkpoint": "checkpointing", "epoch_between": "code between steps",
    "epoch_start_time": "epoch start", "time_to_train": "time to train",
    "rank_straggler": "stragglers", "rank_allreduce": "communication", "ddp_unused": "DDP settings",
    "rank_cores": "cores per rank",
}
PAIR_THEMES = {"decoder_channels": "decoder width", "data": "input pipeline", "num_workers": "input pipeline",
               "pin_memory": "input pipeline", "prefetch_factor": "input pipeline", "amp": "precision and compilation",
               "compile": "precision and compilation", "optimizer": "host syncs"}


@dataclass
class Story:
    theme: str
    sentence: str
    impact: float  # throughput factor at stake (>= 1)
    basis: str  # measured | bound | context
    cells: list[str]
    anchor: str  # the evidence's id in the report
    findings: list[int] = field(default_factory=list)  # indexes into the findings list
    unfit: str | None = None  # why its figures cannot be trusted (its cells' machine state), when they cannot

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def tag(self, measured: str = " measured") -> str:
        """How much is at stake, as the renderers print it; never a figure for a story of unfit cells."""
        if self.unfit:
            return "not ranked: unfit machine"
        return {"measured": f"{self.impact:.2f}x{measured}", "bound": f"up to {self.impact:.2f}x",
                "context": "context"}[self.basis]


#: finding kind -> the share of the step its fix can at most remove (Amdahl: 1 / (1 - share) at stake)
BOUND_SHARES: dict[str, Any] = {
    "input_bound": lambda e: e.get("data_wait_fraction"),
    "input_epoch_boundary": lambda e: e.get("data_wait_fraction"),
    "launch_bound": lambda e: (e.get("gpu_idle_launch_s") or 0) / (e.get("step_s") or math.inf),
    "optimizer_step": lambda e: e.get("optimizer_share"),
    "epoch_start": lambda e: e.get("epoch_share"),
    # the whole epoch's parts (`attach --epochs`): each can at most be removed from the epoch
    "epoch_validation": lambda e: e.get("share"),
    "epoch_checkpoint": lambda e: e.get("share"),
    "epoch_between": lambda e: e.get("share"),
    "epoch_start_time": lambda e: e.get("share"),
    # ranks (`attach -- torchrun`): the others' wait for a straggler, the all-reduce backward did not hide
    "rank_straggler": lambda e: e.get("share"),
    "rank_allreduce": lambda e: e.get("share"),
    # a decoder of known width: narrowing it can at most remove the decoder's share (the bound advise gives)
    "dominant_module": lambda e: e.get("time_share") if e.get("decoder_channels") else None,
}


def impact(f: Finding) -> tuple[float, str]:
    """The throughput factor a finding puts at stake, and whether it was measured or is a bound."""
    e = f.evidence
    if f.kind == "pairwise_delta":
        return (e["ratio"], "measured") if e.get("resolved", True) else (1.0, "context")
    if f.kind == "channel_scaling":
        st = e.get("step_s") or [1.0]
        if not e.get("resolved", True) or e.get("grew_most", "decoder") != "decoder":
            return 1.0, "context"  # within the noise, or not the decoder's doing: never "measured"
        return max(st) / min(st), "measured"
    if f.verified_by and f.verified_by.get("speedup") and f.verified_by.get("resolved") is not False:
        return float(f.verified_by["speedup"]), "measured"  # a verification within the noise measures nothing
    if f.kind == "input_capacity":  # the capacity model's prediction: a bound, never a measurement
        at = e.get("at_stake") or 1.0
        return (at, "bound") if e.get("input_bound") and at > 1 else (1.0, "context")
    if f.kind in ("amp_effect", "compile_effect"):
        s = e.get("speedup") or 1.0
        return max(s, 1 / s), "measured"
    # A dominant module is where the time goes, not a fix: without a measured cell it is context.
    # Each kind's share is read from that kind's own evidence, and only for that kind: evidence keys mean
    # different things in different findings (`step_s` is a list in the scaling findings).
    share_of = BOUND_SHARES.get(f.kind)
    share = share_of(e) if share_of else None
    if share:
        return 1 / (1 - min(share, 0.99)), "bound"
    return 1.0, "context"


def theme_of(f: Finding) -> str:
    if f.kind == "dominant_module" and f.evidence.get("module") in DECODER_NAMES and (
            f.verified_by or f.evidence.get("decoder_channels")):
        return "decoder width"  # measured by a decoder_channels cell, or bounded by its known width: one story
    if f.kind == "pairwise_delta":
        axes = f.evidence.get("differs_in") or []
        if "arch" in axes or "encoder" in axes:
            return "architecture"
        # one of a command suite's own axes (`threads`, `cache`): the story is that knob's
        return next((PAIR_THEMES[a] for a in axes if a in PAIR_THEMES), axes[0] if len(axes) == 1 else
                    "differences between cells")
    return THEMES.get(f.kind, f.kind)


def reference_story(records: list[Record], reference_id: str | None) -> Story | None:
    """The comparison the suite is about: its reference (the summary's: the first ok cell if none is named)."""
    from benchbench.analysis.summary import reference_record

    good = ok(records)
    ref = reference_record(records, reference_id)
    if ref is None or len(good) < 2:
        return None
    others = [(per_image(ref) / per_image(r), r) for r in good if r is not ref]
    fast = max(others, key=lambda x: x[0])
    slow = min(others, key=lambda x: x[0])
    sentence = f"Against the reference {label(ref)}: {label(fast[1])} is {fast[0]:.2f}x its throughput"
    if slow[1] is not fast[1]:
        sentence += f", {label(slow[1])} {slow[0]:.2f}x"
    apart = [resolved(records, ref, r)[0] for _, r in (fast, slow) if r is not ref]
    if not any(apart):
        cv, basis = noise(records, ref, fast[1], slow[1])
        sentence += (f" — within this machine's run-to-run variation (run CV {cv:.1%}, {basis}): unresolved, not "
                     "a difference")
    if ref.params_count and slow[1].params_count:
        sentence += (f" (at {slow[1].params_count / 1e6:.1f} M vs {ref.params_count / 1e6:.1f} M "
                     "parameters: parameter count does not predict speed)"
                     if slow[1].params_count < ref.params_count and slow[0] < 1 else "")
    span = max(fast[0], 1 / slow[0]) if slow[0] > 0 else fast[0]
    return Story("reference", sentence, span if any(apart) else 1.0, "measured" if any(apart) else "context",
                 [ref.cell_id, fast[1].cell_id, slow[1].cell_id], "cells")


def unfit_cells(records: list[Record]) -> dict[str, str]:
    """Cell id -> why its measurement cannot be trusted (contended CPU, a throttled or shared GPU)."""
    out: dict[str, str] = {}
    for r in records:
        why = r.degraded()
        if why:
            out.setdefault(r.cell_id, why)
    return out


def _unfit_why(cells: list[str], unfit: dict[str, str]) -> str | None:
    bad = [c for c in cells if c in unfit]
    if not bad:
        return None
    return f"{len(bad)} of its {len(set(cells))} cell(s) measured on a machine unfit to trust ({unfit[bad[0]]})"


def _mark_unfit(story: Story, why: str) -> Story:
    story.unfit = why
    story.sentence = f"Not ranked — {why}: rerun them alone before believing this. " + story.sentence
    return story


def stories(records: list[Record], findings: list[Finding], reference_id: str | None = None,
            limit: int = MAX_STORIES) -> list[Story]:
    """One story per theme, the strongest trusted finding's sentence leading, ranked by impact; a story with no
    trusted finding last, marked."""
    unfit = unfit_cells(records)
    by_theme: dict[str, list[tuple[float, str, int, Finding]]] = {}
    for i, f in enumerate(findings):
        imp, basis = impact(f)
        by_theme.setdefault(theme_of(f), []).append((imp, basis, i, f))
    out = []
    for theme, items in by_theme.items():
        items.sort(key=lambda x: (_unfit_why(x[3].cells, unfit) is not None, BASIS_ORDER[x[1]], -x[0]))
        imp, basis, i, f = items[0]
        sentence = f.sentence + (f" — suggested: {f.suggestion}" if f.suggestion else "")
        cells = sorted({c for *_, g in items for c in g.cells})
        if len(items) > 1:
            lo = min(x[0] for x in items)
            sentence += f" (and {len(items) - 1} more finding(s) in this story across {len(cells)} cells"
            sentence += f", {lo:.2f}x to {imp:.2f}x at stake)" if basis != "context" else ")"
        rank_imp = imp if basis != "context" else 1.0
        story = Story(theme, sentence, rank_imp, basis, cells, f"finding-{i}", [x[2] for x in items])
        why = _unfit_why(f.cells, unfit)
        out.append(_mark_unfit(story, why) if why else story)
    out.sort(key=lambda s: (s.unfit is not None, s.basis == "context", -s.impact, BASIS_ORDER[s.basis]))
    # The reference comparison is what the suite is about: always told, after the stories that explain it
    # (its span is the sum of those effects, not an effect of its own).
    ref = reference_story(records, reference_id)
    if ref is not None:
        why = _unfit_why(ref.cells, unfit)
        if why:
            ref = _mark_unfit(ref, why)
    return out[: limit - 1] + [ref] if ref is not None else out[:limit]


def cell_findings(findings: list[Finding]) -> tuple[dict[str, list[int]], list[int]]:
    """Findings that belong to one cell (by cell id) and the cross-cell ones (indexes into findings)."""
    own: dict[str, list[int]] = {}
    cross = []
    for i, f in enumerate(findings):
        if len(f.cells) == 1:
            own.setdefault(f.cells[0], []).append(i)
        else:
            cross.append(i)
    return own, cross
