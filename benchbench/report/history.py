"""Trend plots of each cell's nights, change points marked: what `history show` draws."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from benchbench.history.check import Change
from benchbench.history.store import Series
from benchbench.report.compare import deltas_text
from benchbench.report.files import write_atomic
from benchbench.report.plots import _safe, _svg, plt

MAX_PANELS = 24


def change_text(c: Change) -> str:
    txt = (f"{c.label}: {c.ratio - 1:+.1%} from night {c.night_index + 1} of {c.nights} "
           f"(run {c.run_id}, {c.started_at}, commit {c.previous_commit or '?'} -> {c.git_commit or '?'}): "
           f"{c.before_s * 1e3:.2f} -> {c.after_s * 1e3:.2f} ms per step")
    if c.env_changes:
        txt += "; environment: " + ", ".join(f"{k} {v['before']} -> {v['after']}" for k, v in c.env_changes.items())
    parts = deltas_text(c.why)
    if parts:
        txt += "; " + "; ".join(parts)
    if c.host:
        txt += "; " + c.host
    return txt


def trend_figure(all_series: list[Series], found: list[Change]) -> Any:
    shown = all_series[:MAX_PANELS]
    fig, axes = plt.subplots(len(shown), 1, figsize=(8, 2.1 * len(shown) + 0.4), squeeze=False)
    for ax, s in zip(axes[:, 0], shown):
        x = list(range(1, len(s.nights) + 1))
        med = [n.median_s * 1e3 for n in s.nights]
        ax.fill_between(x, [n.p10_s * 1e3 for n in s.nights], [n.p90_s * 1e3 for n in s.nights], color="#9ecae1",
                        alpha=0.5, linewidth=0, label="p10-p90 of steps")
        for n_i, n in zip(x, s.nights):  # each run's median: the spread between processes
            ax.scatter([n_i] * len(n.run_medians_s), [m * 1e3 for m in n.run_medians_s], s=6, color="#636363",
                       zorder=3)
        ax.plot(x, med, color="#08519c", marker="o", markersize=3, linewidth=1.2, label="night (geo. mean of runs)")
        for c in found:
            if (c.suite, c.cell_id, c.fingerprint) != (s.suite, s.cell_id, s.fingerprint):
                continue
            color = "#cb181d" if c.direction == "slower" else "#238b45"
            ax.axvline(c.night_index + 0.5, color=color, linestyle="--", linewidth=1)
            ax.annotate(_safe(f" {c.ratio - 1:+.1%} from {c.run_id}" + (f" ({c.git_commit})" if c.git_commit else "")),
                        (c.night_index + 0.5, min(med)), color=color, fontsize=8, va="bottom")
            lo = c.night_index - 1
            ax.hlines([c.before_s * 1e3, c.after_s * 1e3], [1, c.night_index + 1], [lo + 1, len(x)], colors=color,
                      linestyles=":", linewidth=1)
        fp = (s.fingerprint or "?")[:8]
        ax.set_title(_safe(f"{s.suite} · {s.label} · env {fp}"), fontsize=9, loc="left")
        ax.set_ylabel("step ms")
        ax.grid(alpha=0.3)
        labels = [n.started_at[5:10] if n.started_at else str(i) for i, n in zip(x, s.nights)]
        step = max(1, len(x) // 10)
        ax.set_xticks(x[::step], [_safe(lbl) for lbl in labels[::step]])
    axes[0, 0].legend(loc="upper left", fontsize=7)
    axes[-1, 0].set_xlabel("night")
    fig.tight_layout()
    return fig


def trend_svg(all_series: list[Series], found: list[Change]) -> str:
    return _svg(trend_figure(all_series, found))


def write_trend(path: Path, all_series: list[Series], found: list[Change], title: str = "benchbench history") -> Path:
    """PNG (a picture) or HTML (the plot plus the change table); chosen by the file's suffix."""
    if path.suffix.lower() == ".png":
        import io

        from benchbench.outputs import write_bytes

        fig = trend_figure(all_series, found)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        return write_bytes(path, buf.getvalue(), "the trend plot")
    return write_atomic(path, history_page(all_series, found, title))


def history_section(all_series: list[Series], found: list[Change]) -> str:
    """An HTML fragment: the trend plot and one line per change (used by the report too)."""
    items = "".join(f"<li class='{c.direction}'>{html.escape(change_text(c))}</li>" for c in found)
    more = (f"<p>{len(all_series) - MAX_PANELS} more series not drawn.</p>" if len(all_series) > MAX_PANELS else "")
    return (f"<div class='plot'>{trend_svg(all_series, found)}</div>{more}"
            + (f"<h3>Change points</h3><ul>{items}</ul>" if found else "<p>No change point.</p>"))


def history_page(all_series: list[Series], found: list[Change], title: str) -> str:
    t = html.escape(title)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + t + "</title><style>"
            "body{font-family:sans-serif;max-width:70em;margin:2em auto}.plot svg{max-width:100%;height:auto}"
            "li.slower{color:#a50f15}li.faster{color:#006d2c}</style></head><body><h1>" + t + "</h1>"
            + f"<p>{sum(len(s.nights) for s in all_series)} nights in {len(all_series)} series "
            "(a series: one cell in one environment).</p>" + history_section(all_series, found) + "</body></html>")
