"""Plots as inline SVG strings (the HTML report must work with no network)."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchbench.measure.profile import PHASES
from benchbench.record import Record
from benchbench.record.explain import PhasePeak

plt.rcParams.update({"svg.fonttype": "none", "font.size": 9})


def _safe(text: Any) -> str:
    # '$' starts mathtext in matplotlib; a suite label must never be parsed as markup.
    return str(text).replace("$", r"\$")


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _ok(records: list[Record]) -> list[Record]:
    return [r for r in records if r.throughput]


def _tp(r: Record) -> float:
    return float(r.throughput or 0.0)


def relative_throughput(records: list[Record], ref_tp: float | None) -> str | None:
    ok = _ok(records)
    if not ok or not ref_tp:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(ok) + 1))
    vals = [_tp(r) / ref_tp for r in ok]
    ax.barh([_safe(r.label) for r in ok], vals, color=["#4c78a8" if v >= 1 else "#e45756" for v in vals])
    ax.axvline(1.0, color="black", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("throughput relative to the reference cell (x)")
    return _svg(fig)


def along_axes(records: list[Record], axes: list[str]) -> list[tuple[str, str]]:
    out = []
    ok = _ok(records)
    for axis in axes:
        if axis in ("arch", "encoder", "data"):
            continue
        groups: dict[str, list[tuple[Any, float]]] = {}
        for r in ok:
            v = r.params.get(axis)
            x = v[0] * v[1] if axis == "resolution" else v
            if not isinstance(x, (int, float)) or isinstance(x, bool):
                continue
            key = " ".join(str(r.params.get(k)) for k in ("arch", "encoder"))
            others = [f"{k}={r.params.get(k)}" for k in axes if k not in (axis, "arch", "encoder")]
            groups.setdefault(key + (" " + " ".join(others) if others else ""), []).append((x, _tp(r)))
        groups = {k: sorted(v) for k, v in groups.items() if len(v) >= 2}
        if not groups:
            continue
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for name, pts in list(groups.items())[:12]:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=_safe(name))
        ax.set_xlabel("pixels per image" if axis == "resolution" else axis)
        ax.set_ylabel("images / s")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        out.append((axis, _svg(fig)))
    return out


def stacked(records: list[Record], what: str) -> str | None:
    ok = [r for r in _ok(records) if r.breakdown]
    if not ok:
        return None
    bds = [r.breakdown for r in ok if r.breakdown]
    labels = [_safe(r.label) for r in ok]
    gpu = all(b.gpu and b.gpu.idle_breakdown_s for b in bds)
    if what == "phase":
        keys = [k for k in PHASES if not (gpu and k == "data_wait")]
        series = {k: [b.phases.get(k, 0.0) for b in bds] for k in keys}
        if gpu:  # the rest of the timed step: the GPU idle, by cause
            for cause in ("launch", "sync", "data_wait"):
                series[f"GPU idle: {cause}"] = [b.gpu.idle(cause) if b.gpu else 0.0 for b in bds]
    else:
        keys = sorted({m for b in bds for m in b.modules if "." not in m})
        series = {
            f"{m} {d}": [getattr(b.modules[m], d) if m in b.modules else 0.0 for b in bds]
            for m in keys for d in ("forward", "backward")
        }
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(ok) + 1.5))
    left = [0.0] * len(ok)
    drawn = 0
    for name, vals in series.items():
        if not any(vals):
            continue
        ax.barh(labels, vals, left=left, label=_safe(name))
        left = [a + b for a, b in zip(left, vals)]
        drawn += 1
    ax.invert_yaxis()
    ax.set_xlabel("GPU seconds per step (timeline), then idle up to the timed step" if gpu and what == "phase" else
                  "GPU seconds per step (timeline)" if gpu else "seconds per step (profiler pass)")
    if drawn:  # a model whose top-level parts were never called as such (a layer list) has no bars to name
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    return _svg(fig)


def flops_vs_time(records: list[Record]) -> str | None:
    ok = [r for r in _ok(records) if r.flops and r.flops.train_step_per_image]
    if len(ok) < 2:
        return None
    # per step: the work that really ran (an OOM back-off's batch, x world size), as the FLOPs pass counts it
    x = [(r.flops.train_step_per_image or 0.0) * r.images_per_step / 1e9 for r in ok if r.flops]
    y = [r.median for r in ok]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(x, y)
    for xi, yi, r in zip(x, y, ok):
        ax.annotate(_safe(r.label), (xi, yi), fontsize=6)
    k = sum(a * b for a, b in zip(x, y)) / sum(a * a for a in x)  # least squares through the origin
    ax.plot([0, max(x)], [0, k * max(x)], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("GMAC per training step")
    ax.set_ylabel("median step time (s)")
    ax.set_title("points above the line are slower than their FLOPs predict")
    return _svg(fig)


def memory_by_phase(records: list[Record]) -> str | None:
    mems = [r.memory for r in _ok(records) if r.memory and r.memory.activations_by_module]
    ok = [r for r in _ok(records) if r.memory and r.memory.activations_by_module]
    if not ok:
        return None
    labels = [_safe(r.label) for r in ok]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(ok) + 1.5))
    cuda = any(v.peak_allocated_bytes is not None for m in mems for v in (m.by_phase or {}).values())
    if cuda:
        for phase in ("forward", "backward", "optimizer"):
            ax.barh(labels, [((((m.by_phase or {}).get(phase)) or PhasePeak()).peak_allocated_bytes or 0) / 2**20
                             for m in mems], alpha=0.5, label=f"{phase} peak")
        ax.set_xlabel("allocator peak (MiB)")
    else:
        mods = sorted({k for m in mems for k in (m.activations_by_module or {}) if "." not in k and k != "total"})
        left = [0.0] * len(ok)
        for m in mods:
            vals = [(mm.activations_by_module or {}).get(m, 0) / 2**20 for mm in mems]
            ax.barh(labels, vals, left=left, label=_safe(m))
            left = [a + b for a, b in zip(left, vals)]
        ax.set_xlabel("activations saved for backward (MiB per step)")
    ax.invert_yaxis()
    ax.legend(fontsize=7)
    return _svg(fig)


def stage_waterfall(cell: dict[str, Any]) -> str | None:
    """One cell's sample time, stage after stage (`report.inputs.input_cells`)."""
    st = cell["stages"]
    if st is None or not st.stages:
        return None
    stages = [s for s in st.stages if s.per_sample_s > 0]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(stages) + 1))
    left = 0.0
    colors = {"read": "#9ecae9", "decode": "#4c78a8", "transform": "#f58518", "collate": "#72b7b2",
              "other": "#bab0ac"}
    for s in stages:
        ms = s.per_sample_s * 1e3
        ax.barh(_safe(s.name), ms, left=left, color=colors.get(s.kind, "#bab0ac"))
        ax.text(left + ms, _safe(s.name), f" {ms:.2f} ms ({(s.share or 0):.0%})", va="center", fontsize=7)
        left += ms
    ax.invert_yaxis()
    ax.set_xlabel(f"ms per sample ({_safe(cell['label'])}, {st.where})")
    return _svg(fig)


def workers_plot(cell: dict[str, Any]) -> str | None:
    """Throughput against num_workers: the capacity model's prediction beside the cells that measured it."""
    cap = cell["capacity"]
    if cap is None or not cell["rows"]:
        return None
    bs = cap.batch_size
    fig, ax = plt.subplots(figsize=(5, 3))
    ws = [r["workers"] for r in cell["rows"]]
    ax.plot(ws, [bs / r["predicted_s"] for r in cell["rows"]], "o--", color="#4c78a8", label="predicted")
    meas = [(r["workers"], bs / r["measured_s"]) for r in cell["rows"] if r["measured_s"]]
    if meas:
        ax.plot(*zip(*meas), "s", color="#e45756", label="measured")
    ax.axhline(cap.demand_img_s, color="#54a24b", lw=0.8, ls=":", label="model demand")
    ax.set_xlabel("num_workers")
    ax.set_ylabel("img/s")
    ax.set_xticks(ws)
    ax.set_title(_safe(cell["label"]), fontsize=8)
    ax.legend(fontsize=7)
    return _svg(fig)
