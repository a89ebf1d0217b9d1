"""The optimizer's own share of the step: an Adam, AdamW or SGD built without `fused`/`foreach` updates each
parameter tensor op by op (on a CPU torch does not pick foreach by itself), which a fused kernel does at once."""

from __future__ import annotations

from benchbench.analysis.records import Finding, Thresholds, label, ok
from benchbench.record import Record

#: ops an unfused Adam/AdamW/SGD runs once per parameter tensor per step
PER_TENSOR_OPS = ("aten::lerp_", "aten::addcdiv_", "aten::sqrt")


def _optimizer(r: Record) -> tuple[str, bool | None]:
    if r.attached is not None:
        return r.attached.optimizer or "the optimizer", r.attached.optimizer_fused
    name = str(r.params.get("optimizer") or "")
    return name, name.endswith("-fused") if name else None


def optimizer_share(records: list[Record], t: Thresholds) -> list[Finding]:
    out = []
    for r in ok(records):
        bd = r.breakdown
        if bd is None or not bd.step_s or r.gpu is not None:  # on a GPU: launch-bound and sync findings say it
            continue
        opt_s = bd.phases.get("optimizer", 0.0)
        share = opt_s / bd.step_s
        if share < t.optimizer_share:
            continue
        name, fused = _optimizer(r)
        op = next((o for n in PER_TENSOR_OPS for o in bd.top_ops if o.name == n and o.calls), None)
        calls = int(op.calls) if op else 0
        how = ""
        if fused is False and op:
            how = (f": {name} built without fused/foreach updates each parameter tensor op by op ({calls} "
                   f"{op.name} calls a step, {op.self_time_s * 1e3:.1f} ms)")
        sentence = f"{label(r)}: the optimizer step takes {share:.0%} of the step ({opt_s * 1e3:.1f} ms){how}"
        suggestion = ("a fused optimizer (fused=True: one kernel for every tensor); `advise --attach --knobs "
                      "fused_optimizer` measures it on a script, `optimizer: adamw-fused` in a suite"
                      if fused is False else None)
        out.append(Finding("optimizer_step", [r.cell_id], sentence, {"optimizer_share": share, "optimizer_s": opt_s,
                                                                     "step_s": bd.step_s, "optimizer": name,
                                                                     "fused": fused, "per_tensor_calls": calls},
                           suggestion))
    return out
