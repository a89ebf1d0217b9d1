"""The comparison table every view shares (terminal, Markdown, HTML)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from benchbench.measurement import Measurement


def reference_record(records: list[dict[str, Any]], reference_id: str | None) -> dict[str, Any] | None:
    ok = [r for r in records if Measurement(r).ok]
    for r in ok:
        if reference_id and r["cell_id"] == reference_id:
            return r
    return ok[0] if ok and reference_id is None else None


def summary_frame(records: list[dict[str, Any]], reference_id: str | None = None) -> pd.DataFrame:
    """One row per cell: throughput, step time spread, input stall, speed vs the reference.

    `vs_ref` is throughput / the reference's throughput: 0.5 means half as fast.
    """
    ref = reference_record(records, reference_id)
    ref_tp = Measurement(ref).throughput if ref else None
    rows = []
    for r in records:
        st = Measurement(r).stats if Measurement(r).ok else {}
        dw = r.get("data_wait_s") or {}
        tp = Measurement(r).throughput
        gpu = (r.get("breakdown") or {}).get("gpu") or {}
        rows.append(
            {
                "cell": r.get("label") or r["cell_id"],
                "id": r["cell_id"],
                "status": r["status"],
                "img/s": tp,
                "step_ms": st.get("median") * 1e3 if st.get("median") is not None else None,
                "p10_ms": st.get("p10") * 1e3 if st.get("p10") is not None else None,
                "p90_ms": st.get("p90") * 1e3 if st.get("p90") is not None else None,
                "cv": st.get("cv"),
                "data_wait": dw.get("fraction"),
                "gpu_starved": (dw.get("gpu_starved_s") or {}).get("fraction"),
                "gpu_busy_ms": gpu["gpu_busy_s"] * 1e3 if gpu.get("gpu_busy_s") is not None else None,
                "gpu_idle": gpu.get("gpu_idle_fraction"),
                "params_M": r["params_count"] / 1e6 if r.get("params_count") else None,
                "vs_ref": tp / ref_tp if tp and ref_tp else None,
                "is_ref": bool(ref) and r["cell_id"] == ref["cell_id"],
                "error": r.get("error"),
                "gpu_state": _gpu_state(r),
                "run_cv": Measurement(r).between_run_cv,
                "runs": len(Measurement(r).runs),
                "j_per_img": (r.get("gpu_conditions") or {}).get("energy_j_per_image"),
            }
        )
    return pd.DataFrame(rows)


def _gpu_state(r: dict[str, Any]) -> str | None:
    from benchbench.measure.gpu_state import state_label

    return state_label(r.get("gpu_conditions"))


def _num(v: Any, fmt: str) -> str:
    return "" if v is None or pd.isna(v) else format(v, fmt)


def display_rows(df: pd.DataFrame) -> list[dict[str, str]]:
    """Formatted strings, so every view shows the same digits."""
    out = []
    for row in df.to_dict("records"):
        ok = row["status"] == "ok"
        out.append(
            {
                "cell": row["cell"] + (" (ref)" if row["is_ref"] else ""),
                "id": row["id"],
                "status": row["status"],
                "img/s": _num(row["img/s"], ".2f"),
                "step ms median [p10-p90]": (
                    f"{row['step_ms']:.1f} [{row['p10_ms']:.1f}-{row['p90_ms']:.1f}]" if ok else ""
                ),
                "cv": _num(row["cv"], ".1%"),
                "run CV": _num(row["run_cv"], ".1%") + (f" ({row['runs']} runs)" if row["runs"] > 1 else ""),
                "data wait": _num(row["data_wait"], ".1%"),
                "GPU starved": _num(row["gpu_starved"], ".1%"),
                "GPU busy ms": _num(row["gpu_busy_ms"], ".1f"),
                "GPU idle": _num(row["gpu_idle"], ".0%"),
                "params M": _num(row["params_M"], ".2f"),
                "vs ref": (_num(row["vs_ref"], ".2f") + "x") if ok and row["vs_ref"] is not None
                and not pd.isna(row["vs_ref"]) else "",
                "J/img": _num(row["j_per_img"], ".3g"),
                "GPU state": "" if pd.isna(row["gpu_state"]) else str(row["gpu_state"]),
                "error": "" if ok else str(row["error"] or ""),
            }
        )
    # GPU columns only where some cell has a GPU timeline (CPU reports stay as they were).
    for col in ("run CV", "GPU busy ms", "GPU idle", "GPU starved", "J/img", "GPU state"):
        if all(not r[col] for r in out):
            for r in out:
                del r[col]
    return out
