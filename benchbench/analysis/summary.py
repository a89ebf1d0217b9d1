"""The comparison table every view shares (terminal, Markdown, HTML), generated from the record's own columns
(`record.columns.SUMMARY`): one row per cell, the same digits everywhere."""

from __future__ import annotations

import pandas as pd

from benchbench.record import Record
from benchbench.record.columns import SUMMARY


def reference_record(records: list[Record], reference_id: str | None) -> Record | None:
    ok = [r for r in records if r.ok]
    for r in ok:
        if reference_id and r.cell_id == reference_id:
            return r
    return ok[0] if ok and reference_id is None else None


def summary_frame(records: list[Record], reference_id: str | None = None) -> pd.DataFrame:
    """One row per cell: its identity, every summary column's value, and its speed against the reference.

    `vs_ref` is throughput / the reference's throughput: 0.5 means half as fast.
    """
    ref = reference_record(records, reference_id)
    ref_tp = ref.throughput if ref else None
    rows = []
    for r in records:
        tp = r.throughput
        row = {"cell": r.label, "id": r.cell_id, "status": r.status, "error": r.error,
               "is_ref": bool(ref) and r.cell_id == ref.cell_id, "vs_ref": tp / ref_tp if tp and ref_tp else None,
               "img/s": tp, "runs": len(r.runs)}
        row.update({c.key: c.get(r) for c in SUMMARY})
        row["_record"] = r
        rows.append(row)
    return pd.DataFrame(rows)


def display_rows(df: pd.DataFrame) -> list[dict[str, str]]:
    """Formatted strings, so every view shows the same digits; optional columns only where some row has one."""
    out = []
    for row in df.to_dict("records"):
        r: Record = row["_record"]
        ok = row["status"] == "ok"
        shown = {"cell": row["cell"] + (" (ref)" if row["is_ref"] else ""), "id": row["id"], "status": row["status"]}
        for c in SUMMARY:
            shown[c.header] = c.text(r) if ok or c.key == "params_m" else ""
            if c.key == "params_m":
                vs = row["vs_ref"]
                shown["vs ref"] = f"{vs:.2f}x" if ok and vs is not None and not pd.isna(vs) else ""
        shown["error"] = "" if ok else str(row["error"] or "")
        out.append(shown)
    for c in SUMMARY:
        if c.optional and all(not r[c.header] for r in out):
            for r in out:
                del r[c.header]
    return out


RIGHT = {c.header for c in SUMMARY if c.numeric} | {"vs ref"}
