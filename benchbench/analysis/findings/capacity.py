"""The input pipeline's capacity: which stage bounds the supply, whether more workers can help on these cores,
and the fix that fits what dominates — from the stages timed in the workers and the capacity pass.
"""

from __future__ import annotations

from typing import Any

from benchbench.analysis.records import Finding, Thresholds, label, ok
from benchbench.record import Record
from benchbench.record.inputs import InputCapacity, InputStage, InputStages, predict

GAIN = 1.05  # a change predicted to buy less than 5% is not advice


def without(cap: InputCapacity, stages: InputStages, stage: InputStage) -> tuple[float, dict[int, float]]:
    """(supply ratio, predicted step at the cell's own workers) were `stage` free: the supply scales by the
    sample's time with it over the time without it."""
    ratio = stages.per_sample_s / max(stages.per_sample_s - stage.per_sample_s, 1e-9)
    preds = predict(cap.device, cap.cores, cap.batch_size, cap.compute_step_s, cap.model_cpu_s if cap.device == "cpu"
                    else None, {s.workers: s.img_s * ratio for s in cap.supply}, cap.host_to_device_s or 0.0)
    return ratio, {p.workers: p.step_s for p in preds}


def _fix(kind: str, stage: InputStage, cuda: bool, cached: bool) -> str:
    ms = stage.per_sample_s * 1e3
    if kind == "decode":
        if cached:
            return f"decoding is {ms:.1f} ms a sample though the data set is cached: decode to smaller arrays"
        return (f"cache the decoded samples (data: cache: ram, or decoded arrays on disk): decoding is "
                f"{ms:.1f} ms of each sample, not more workers")
    if kind == "read":
        return f"reading the files is {ms:.1f} ms a sample: faster storage, or fewer and larger files"
    if kind == "transform":
        if cuda:
            return (f"move {stage.name} to the GPU (torchvision.transforms.v2 on tensors already on the device, or "
                    f"kornia): {ms:.1f} ms of each sample on the CPU")
        return f"a cheaper {stage.name}, or fewer transforms: {ms:.1f} ms of each sample"
    if kind == "collate":
        return f"collate is {ms:.2f} ms a sample: return tensors from the data set, not lists"
    return f"the data set's own code around its transforms is {ms:.1f} ms a sample: profile __getitem__"


def input_capacity(records: list[Record], t: Thresholds) -> list[Finding]:
    out = []
    for r in ok(records):
        cap, stages = r.input_capacity, r.input_stages or (r.input_capacity.stages_alone if r.input_capacity
                                                             else None)
        if cap is None or not cap.predicted or stages is None:
            continue
        w = r.params["num_workers"]
        own = cap.at(w) or cap.at(min(w, cap.cores))
        best = cap.best()
        if own is None or best is None:
            continue
        step = r.median
        supply_w = cap.supply_at(min(w, cap.cores)) or 0.0
        dom = stages.dominant()
        cuda = cap.device == "cuda"
        cached = (r.params.get("data") or {}).get("cache") == "ram"
        err = own.step_s / step - 1 if step else None
        sentence = (f"{label(r)}: the pipeline supplies {supply_w:.0f} img/s with {w} worker(s) (alone; "
                    f"{max(s.img_s for s in cap.supply):.0f} at most, {cap.cores} cores), the model consumes "
                    f"{cap.demand_img_s:.0f} img/s; predicted step {own.step_s * 1e3:.0f} ms "
                    f"({own.bound}-bound), measured {step * 1e3:.0f} ms ({err:+.0%})")
        evidence: dict[str, Any] = {"workers": w, "supply_img_s": supply_w, "demand_img_s": cap.demand_img_s,
                                    "predicted_step_s": own.step_s, "measured_step_s": step,
                                    "prediction_error": err, "bound": own.bound, "cores": cap.cores,
                                    "best_workers": best.workers, "best_step_s": best.step_s}
        fixes: list[tuple[float, str]] = []
        # more workers only when they have cores to run on: a best count bound by the shared cores is not free
        if best.workers != w and own.step_s / best.step_s >= GAIN and best.bound != "cores":
            fixes.append((own.step_s / best.step_s, f"num_workers {w} -> {best.workers}: predicted "
                          f"{own.step_s / best.step_s:.2f}x faster ({best.step_s * 1e3:.0f} ms a step)"))
        if own.bound != "model" and all(p.bound != "model" for p in cap.predicted):
            sentence += f"; with {cap.cores} cores no worker count closes the gap"
        if dom is not None:
            ratio, steps_without = without(cap, stages, dom)
            sentence += (f"; {dom.name} takes {dom.share or 0:.0%} of each sample ({dom.per_sample_s * 1e3:.1f} ms, "
                         f"{stages.where}): without it the supply would be {ratio:.1f}x")
            evidence.update({"dominant_stage": dom.name, "dominant_kind": dom.kind, "dominant_share": dom.share,
                             "dominant_per_sample_s": dom.per_sample_s, "supply_ratio_without": ratio})
            gain = own.step_s / steps_without.get(w, steps_without.get(min(w, cap.cores), own.step_s))
            if own.bound != "model" and gain >= GAIN:
                fixes.append((gain, _fix(dom.kind, dom, cuda, cached) + f" (at most {gain:.2f}x)"))
        input_bound = own.bound != "model"
        if not input_bound:
            sentence += "; the pipeline keeps up with the model"
        fixes.sort(key=lambda f: -f[0])
        evidence["at_stake"] = fixes[0][0] if fixes and input_bound else 1.0
        evidence["input_bound"] = input_bound
        out.append(Finding("input_capacity", [r.cell_id], sentence, evidence,
                           "; ".join(f for _, f in fixes) if fixes else None))
    return out
