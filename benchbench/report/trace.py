"""Terminal rendering of `explain-trace`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _ms(x: float | None) -> str:
    return "" if x is None else f"{x * 1e3:.2f}"


def print_explanation(doc: dict[str, Any], console: Console) -> None:
    head = (f"{doc['trace']}: {doc['steps']} step(s) ({doc['step_source']}) on {doc.get('device') or 'GPU'}; "
            f"{doc['launches_per_step']:.0f} launches, {doc['kernels_per_step']:.0f} kernels per step; "
            f"GPU busy {_ms(doc['gpu_busy_s'])} ms")
    if doc.get("step_time_s") and doc.get("gpu_idle_fraction") is not None:
        head += (f" of a {_ms(doc['step_time_s'])} ms step ({doc['step_time_source']}): "
                 f"idle {doc['gpu_idle_fraction']:.0%}")
    console.print(escape(head), highlight=False)
    t = Table(title="GPU time per step by phase (ms)")
    for col in ("phase", "GPU ms", "share of busy"):
        t.add_column(col)
    busy = doc["gpu_busy_s"] or 1.0
    for k, v in doc["gpu_phases_s"].items():
        if v:
            t.add_row(k, _ms(v), f"{v / busy:.0%}")
    console.print(t)
    if doc.get("idle_breakdown_s"):
        t = Table(title="GPU idle per step by cause (ms)")
        for col in ("cause", "ms"):
            t.add_column(col)
        for k, v in doc["idle_breakdown_s"].items():
            t.add_row(k, _ms(v))
        console.print(t)
    t = Table(title="Top kernels (GPU ms per step)")
    for col in ("kernel", "ms", "share"):
        t.add_column(col)
    for k in doc["top_kernels"][:8]:
        t.add_row(escape(k["name"]), _ms(k["gpu_s"]), f"{k['share']:.0%}" if k.get("share") is not None else "")
    console.print(t)
    for s in doc["host_syncs"]:
        console.print(escape(f"host sync: {s['call']} from {s['op']} in {s['phase']}, {s['per_step']:.1f} per step"),
                      highlight=False)
    for f in doc["findings"]:
        console.print(f"- [bold]{escape(f['kind'])}[/]: {escape(f['sentence'])}"
                      + (f" — suggested: {escape(f['suggestion'])}" if f.get("suggestion") else ""), highlight=False)
    for n in doc.get("notes") or []:
        console.print(escape(f"note: {n}"), style="dim", highlight=False)
