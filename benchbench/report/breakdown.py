"""Per-cell breakdown rows (phases, modules, operators), formatted once for every report."""

from __future__ import annotations

from typing import Any

from benchbench.record import Record
from benchbench.record.explain import GpuTimeline
from benchbench.timeline.names import short_op


def _f(v: Any, fmt: str = ".4f") -> str:
    return "" if v is None else format(v, fmt)


def cell_breakdowns(records: list[Record]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        bd = r.breakdown
        if not r.ok or bd is None:
            continue
        step = bd.step_s or 0
        phases = [{"name": k, "s": _f(v), "share": _f(v / step if step else None, ".1%")}
                  for k, v in bd.phases.items()]
        if bd.dataloader_next_s:
            # Cross-check of the runner's data wait with the profiler's own DataLoader events.
            timed = r.data_wait_s.median if r.data_wait_s else None
            phases.append({"name": "DataLoader.__next__ (profiler) / data wait (timed median)",
                           "s": f"{bd.dataloader_next_s:.4f} / {_f(timed)}", "share": ""})
        basis = "GPU busy" if bd.gpu else "profiled step"
        psum = bd.phases_sum_s or 0.0
        phases.append({"name": f"sum of phases / {basis}", "s": f"{psum:.4f} / {step:.4f}",
                       "share": _f(psum / step if step else None, ".1%")})
        fl = r.flops.by_module if r.flops else {}
        acts = (r.memory.activations_by_module if r.memory else None) or {}
        modules = [{"name": name, "fwd": _f(t.forward), "bwd": _f(t.backward),
                    "gmac": _f(fl[name] / 1e9 if name in fl else None, ".3f"),
                    "act": _f(acts[name] / 2**20 if name in acts else None, ".1f")}
                   for name, t in bd.modules.items()]
        ops = [{"name": short_op(o.name), "s": _f(o.self_time_s), "calls": "" if o.calls is None else o.calls,
                "share": _f(o.share, ".1%")}
               for o in bd.top_ops[:10]]
        out.append({"label": r.label, "id": r.cell_id, "phases": phases,
                    "modules": modules, "ops": ops, "gpu": gpu_rows(bd.gpu)})
    return out


def gpu_rows(g: GpuTimeline | None) -> list[dict[str, str]]:
    """The GPU timeline of a cell in a few lines: work, busy/idle and why, syncs, top kernels."""
    if not g:
        return []
    ms = lambda x: "" if x is None else f"{x * 1e3:.2f} ms"  # noqa: E731
    rows = [{"name": "launches / kernels per step", "value": f"{g.launches_per_step:.0f} / {g.kernels_per_step:.0f}"},
            {"name": "GPU busy (each kernel once)", "value": ms(g.gpu_busy_s)}]
    if g.step_time_s and g.gpu_idle_fraction is not None:
        idle = g.idle_breakdown_s or {}
        rows.append({"name": "GPU idle of the timed step", "value": f"{ms(g.gpu_idle_s)} ({g.gpu_idle_fraction:.0%}): "
                     + ", ".join(f"{k} {ms(v)}" for k, v in idle.items())})
    for sy in g.host_syncs:
        rows.append({"name": f"host sync: {sy.call}", "value": f"{sy.per_step:.1f}/step from {sy.op} in {sy.phase}"})
    for k in g.top_kernels[:5]:
        rows.append({"name": f"kernel {k.name}", "value": f"{ms(k.gpu_s)} ({(k.share or 0):.0%})"})
    return rows
