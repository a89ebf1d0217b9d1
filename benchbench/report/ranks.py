"""The ranks of a DDP run in reports (`attach -- torchrun …`): each rank's step, data wait and waits for the
others, the straggler and its cause, the DDP settings and the cores. Computed once here (`rank_cells`),
rendered by Markdown and HTML."""

from __future__ import annotations

from typing import Any

from benchbench.record import Record
from benchbench.record.ranks import CAUSES


def _ms(v: float | None) -> str:
    return f"{v * 1e3:.1f}" if v is not None else "-"


def rank_cells(records: list[Record]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        d = r.distributed
        if d is None:
            continue
        waits = d.waits()
        rows = []
        for x in d.ranks:
            w = waits.get(x.rank, {})
            dw = sorted(x.data_wait_s)
            rows.append({"rank": str(x.rank), "status": x.status + (f": {x.error}" if x.error else ""),
                         "step": _ms(x.median_s), "wait": _ms(dw[len(dw) // 2] if dw else None),
                         "slowest": _ms(w.get("wait_for_slowest_s")), "exposed": _ms(w.get("exposed_allreduce_s")),
                         "threads": str(x.threads or "-"), "workers": str(x.workers if x.workers is not None else "-"),
                         "note": x.clock_note or ""})
        s = d.straggler()
        if s is None:
            strag = "not judged (fewer than 5 aligned steps or collectives with every rank's figures)"
        elif s["named"]:
            strag = (f"rank {s['rank']}: last at the {s['at']} in {s['last_in']} of {s['steps']} {s['unit']} (binomial "
                     f"p={s['p_value']:.2g}), {s['lag_s'] * 1e3:.1f} ms behind; cause {CAUSES[s['cause']]}")
        else:
            strag = (f"none: the last rank to arrive changes from step to step (rank {s['rank']} in "
                     f"{s['last_in']} of {s['steps']}, p={s['p_value']:.2g}; median lag {s['lag_s'] * 1e3:.1f} ms)")
        o = d.oversubscribed()
        ddp = d.ddp.model_dump(exclude_none=True) if d.ddp else {}
        out.append({"id": r.cell_id, "label": r.label, "world": d.world_size, "launcher": d.launcher, "rows": rows,
                    "straggler": strag, "ddp": ", ".join(f"{k}={v}" for k, v in ddp.items()) or "not a DDP model",
                    "cores": (f"{o['wanted']} threads and workers on {o['cores']} core(s)"
                              + (" (oversubscribed)" if o["oversubscribed"] else "")) if o else "-",
                    "failed_first": d.failed_first})
    return out


def markdown(records: list[Record], esc: Any) -> list[str]:
    cells = rank_cells(records)
    if not cells:
        return []
    lines = ['<a id="ranks"></a>', "## The ranks", "",
             "Each rank's own timed steps (medians, ms). A rank waits at each collective (DDP's buffer broadcast "
             "at the forward's start, the gradient all-reduce) for the last rank to arrive: `wait for slowest`; "
             "`exposed all-reduce` is what the all-reduce took after the last rank's gradients were there. "
             "Clocks are the node's one monotonic clock.", ""]
    for c in cells:
        lines += [f"### {esc(c['label'])}", "", f"{c['world']} ranks ({esc(c['launcher'])}); straggler: "
                  f"{esc(c['straggler'])}", "", f"DDP: {esc(c['ddp'])}; cores: {esc(c['cores'])}", ""]
        heads = ["rank", "status", "step", "data wait", "wait for slowest", "exposed all-reduce", "threads",
                 "workers"]
        lines += ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        lines += ["| " + " | ".join(esc(x[k]) for k in ("rank", "status", "step", "wait", "slowest", "exposed",
                                                         "threads", "workers")) + " |" for x in c["rows"]]
        lines += [""] + [f"_rank {esc(x['rank'])}: {esc(x['note'])}_" for x in c["rows"] if x["note"]] + [""]
    return lines
