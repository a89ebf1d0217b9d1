"""Markdown report: the table a user pastes into an issue or a CI summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from benchbench.analysis.summary import display_rows, summary_frame


def md_escape(text: Any) -> str:
    """Table cells must not break the table or inject markup."""
    s = str(text)
    for ch in ("\\", "|", "`", "*", "_", "<", ">", "[", "]"):
        s = s.replace(ch, "\\" + ch)
    return s.replace("\n", " ")


def render_markdown(records: list[dict[str, Any]], reference_id: str | None = None, title: str | None = None) -> str:
    suite = records[0].get("suite", "suite") if records else "suite"
    run_ids = sorted({str(r.get("run_id")) for r in records})
    lines = [f"# benchbench: {md_escape(title or suite)}", ""]
    lines.append(f"Run: {', '.join(md_escape(r) for r in run_ids)} · cells: {len(records)} · "
                 f"ok: {sum(r['status'] == 'ok' for r in records)}")
    lines.append("")
    rows = display_rows(summary_frame(records, reference_id))
    df = pd.DataFrame([{k: md_escape(v) for k, v in row.items()} for row in rows])
    if not df.empty and (df["error"] == "").all():
        df = df.drop(columns=["error"])
    lines += [
        "## Cells",
        "",
        "Throughput is images per second from the median step (forward, loss, backward, optimizer, "
        "and any time waiting for data). `vs ref` is throughput relative to the reference cell; "
        "`data wait` is the share of step time blocked on the input pipeline.",
        "",
        df.to_markdown(index=False) if not df.empty else "_no cells_",
        "",
    ]
    env = next((r.get("env") for r in records if r.get("env")), None)
    if env:
        lines += ["## Environment", "", "| key | value |", "|---|---|"]
        lines += [f"| {md_escape(k)} | {md_escape(v)} |" for k, v in env.items() if v is not None]
        lines.append("")
    return "\n".join(lines)


def write_markdown(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
