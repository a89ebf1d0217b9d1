"""Several ranks of one DDP run (`attach -- torchrun …`): a rank the others wait for, the all-reduce backward does
not hide, DDP settings that cost a step, and the node's cores asked for more than they have.

Every figure comes from the ranks' own clocks (`record.ranks.Distributed`); each finding's bound is the share
of the step its fix can at most remove (a straggler's lag, the exposed all-reduce): a story ranks by it as it
ranks a data wait."""

from __future__ import annotations

from benchbench.analysis.records import Finding, Thresholds, label, ok
from benchbench.record import Record
from benchbench.record.ranks import CAUSES, Distributed

FIXES = {
    "data": "input pipeline: more DataLoader workers (every rank has its own), or the storage its shard is read "
            "from",
    "compute": "work against the others': images of other sizes in its batches (group batches by size), or "
               "cores it shares",
    "host": "code after backward that runs on it alone (logging, metrics, a checkpoint on rank 0)",
    "compute_or_host": "work against the others' (its batches' sizes, its GPU's clocks and neighbours) or code "
                       "that runs on it alone",
}


def ranks(records: list[Record], t: Thresholds) -> list[Finding]:
    out: list[Finding] = []
    for r in ok(records):
        d = r.distributed
        if d is None:
            continue
        step = d.median_step_s()
        out += _straggler(r, d, step, t) + _allreduce(r, d, step, t) + _ddp_settings(r, d) + _cores(r, d)
    return out


def _straggler(r: Record, d: Distributed, step: float | None, t: Thresholds) -> list[Finding]:
    s = d.straggler()
    if not s or not s["named"] or not step:
        return []
    waits = d.waits()
    others = {k: v["wait_for_slowest_s"] for k, v in waits.items() if k != s["rank"]}
    each = "a step" if s["unit"] == "steps" else "a collective"
    waited = (", ".join(f"rank {k} waits {v * 1e3:.0f} ms {each} for it" for k, v in others.items())) or ""
    parts = s["parts_s"]
    unit = s["unit"]
    cause = (f"{CAUSES[s['cause']]}: {parts[s['cause']] * 1e3:+.0f} ms against the others' median" if s["cause"] in
             parts else CAUSES[s["cause"]])
    sentence = (f"{label(r)}: rank {s['rank']} arrives last at the {s['at']} in {s['last_in']} of {s['steps']} "
                f"{unit}, {s['lag_s'] * 1e3:.0f} ms behind the others ({s['lag_share']:.0%} of the "
                f"{step * 1e3:.0f} ms step); the cause is {cause} in {s['cause_steps']} of those {unit}"
                + (f"; {waited}" if waited else ""))
    return [Finding("rank_straggler", [r.cell_id], sentence,
                    {"rank": s["rank"], "last_in": s["last_in"], "steps": s["steps"], "p_value": s["p_value"],
                     "lag_s": s["lag_s"], "share": s["lag_share"], "cause": s["cause"], "at": s["at"],
                     "data_s": parts["data"], "compute_s": parts["compute"], "host_s": parts["host"],
                     "step_s": step}, f"look at rank {s['rank']}'s {FIXES[s['cause']]}")]


def _allreduce(r: Record, d: Distributed, step: float | None, t: Thresholds) -> list[Finding]:
    exposed = d.exposed_allreduce_s()
    if exposed is None or not step or exposed / step < t.rank_exposed_share:
        return []
    ddp = d.ddp
    how = (f" (bucket_cap_mb={ddp.bucket_cap_mb:g}, gradient_as_bucket_view={ddp.gradient_as_bucket_view}, "
           f"static_graph={ddp.static_graph})") if ddp is not None else ""
    sentence = (f"{label(r)}: the gradient all-reduce is left exposed {exposed * 1e3:.0f} ms a step after the "
                f"last rank's gradients ({exposed / step:.0%} of the {step * 1e3:.0f} ms step): the communication "
                f"backward's compute did not hide{how}")
    return [Finding("rank_allreduce", [r.cell_id], sentence,
                    {"exposed_s": exposed, "share": exposed / step, "step_s": step,
                     "backend": next((x.backend for x in d.ranks if x.backend), None)},
                    "smaller buckets start the all-reduce earlier in backward (bucket_cap_mb); a larger per-rank "
                    "batch gives each all-reduce more compute to hide behind")]


def _ddp_settings(r: Record, d: Distributed) -> list[Finding]:
    ddp = d.ddp
    if ddp is None or not ddp.find_unused_parameters or ddp.unused_params is None:
        return []
    if ddp.unused_params == 0:
        sentence = (f"{label(r)}: DDP runs with find_unused_parameters=True, yet every one of the model's "
                    f"{ddp.params} parameters got a gradient in every step observed: the search for unused ones "
                    "(a traversal of the autograd graph each step) finds none")
        fix = "find_unused_parameters=False (checked: no parameter went without a gradient)"
    else:
        sentence = (f"{label(r)}: DDP runs with find_unused_parameters=True because {ddp.unused_params} of the "
                    f"model's {ddp.params} parameters get no gradient (a head or branch the loss does not use): "
                    "DDP traverses the autograd graph each step to find them")
        fix = "take the unused parameters out of the model DDP wraps (then find_unused_parameters=False)"
    return [Finding("ddp_unused", [r.cell_id], sentence,
                    {"params": ddp.params, "unused_params": ddp.unused_params}, fix)]


def _cores(r: Record, d: Distributed) -> list[Finding]:
    o = d.oversubscribed()
    if not o or not o["oversubscribed"]:
        return []
    sentence = (f"{label(r)}: {o['ranks']} ranks ask for {o['wanted']} threads and DataLoader workers together "
                f"on {o['cores']} core(s): the ranks' input pipelines and compute take turns on the cores")
    return [Finding("rank_cores", [r.cell_id], sentence, dict(o),
                    "threads per rank (OMP_NUM_THREADS) plus workers per rank, times the ranks, within the cores")]
