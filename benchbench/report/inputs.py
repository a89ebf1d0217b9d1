"""The input pipeline in reports: each cell's stages (a waterfall) and the capacity model's step per worker
count beside the cells that measured it.

Shown right after the headline when a cell is input-bound (the capacity model says its step waits on the
pipeline), after the cells table otherwise.
"""

from __future__ import annotations

from typing import Any

from benchbench.record import Record


def _same_but_workers(a: Record, b: Record) -> bool:
    return all(a.params.get(k) == b.params.get(k) for k in set(a.params) | set(b.params)
               if k not in ("num_workers", "persistent_workers", "prefetch_factor"))


def measured_by_workers(records: list[Record], r: Record) -> dict[int, float]:
    """The measured median step of every cell that differs from `r` in its worker count alone."""
    return {o.params["num_workers"]: o.median for o in records if o.ok and o.median and _same_but_workers(o, r)}


def input_cells(records: list[Record]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        st = r.input_stages or (r.input_capacity.stages_alone if r.input_capacity else None)
        cap = r.input_capacity
        if not r.ok or (st is None and cap is None):
            continue
        measured = measured_by_workers(records, r)
        rows = []
        for p in cap.predicted if cap else []:
            m = measured.get(p.workers)
            rows.append({"workers": p.workers, "supply_img_s": cap.supply_at(p.workers), "predicted_s": p.step_s,
                         "bound": p.bound, "measured_s": m, "error": (p.step_s / m - 1) if m else None})
        out.append({"id": r.cell_id, "label": r.label, "workers": r.params["num_workers"], "stages": st,
                    "capacity": cap, "rows": rows, "cached": (r.params.get("data") or {}).get("cache") == "ram",
                    "frozen": bool(r.data_cache and r.data_cache.freezes_augmentation),
                    "input_bound": bool(cap and (own := cap.at(r.params["num_workers"])) and own.bound != "model")})
    return out


def markdown(records: list[Record], esc: Any) -> list[str]:
    cells = input_cells(records)
    if not cells:
        return []
    lines = ['<a id="input-pipeline"></a>', "## Input pipeline", "",
             "Each sample's time split into its stages, timed inside the DataLoader's workers (exclusive times: "
             "a transform that decodes is charged its own time); then the capacity model: the pipeline's supply "
             "alone for each worker count against the model's demand on a batch already in memory, and the step "
             "time it predicts, beside the cells that measured it.", ""]
    for c in cells:
        st, cap = c["stages"], c["capacity"]
        lines += [f"### {esc(c['label'])}", ""]
        if c["frozen"]:
            lines += ["_cache: ram keeps what this data set returns: its random augmentation is frozen (each epoch "
                      "sees the first epoch's samples)._", ""]
        if st is not None:
            lines += [f"{st.samples} samples ({st.where}, {st.span}): {st.per_sample_s * 1e3:.2f} ms a sample.", "",
                      "| stage | kind | ms / sample | share |", "|---|---|---|---|"]
            lines += [f"| {esc(s.name)} | {s.kind} | {s.per_sample_s * 1e3:.2f} | "
                      f"{(s.share or 0):.0%} |" for s in st.stages]
            lines.append("")
        if cap is not None:
            lines += [f"Model demand {cap.demand_img_s:.0f} img/s (a step on a batch in memory: "
                      f"{cap.compute_step_s * 1e3:.0f} ms); {cap.cores} cores.", "",
                      "| workers | supply img/s (alone) | predicted step ms | bound | measured step ms | error |",
                      "|---|---|---|---|---|---|"]
            for row in c["rows"]:
                m = f"{row['measured_s'] * 1e3:.0f}" if row["measured_s"] else ""
                e = f"{row['error']:+.0%}" if row["error"] is not None else ""
                lines.append(f"| {row['workers']} | {row['supply_img_s'] or 0:.0f} | {row['predicted_s'] * 1e3:.0f} | "
                             f"{row['bound']} | {m} | {e} |")
            lines.append("")
    return lines
