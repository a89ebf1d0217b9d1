"""The input knobs' bounds from the capacity model (`record.inputs`): the step the model predicts with more workers
or with a RAM cache, each set against the step the cell measured. Its own module because its bounds are not
shares: each carries the predicted step (`Candidate.floor_s`) it was divided by."""

from __future__ import annotations

from typing import Any

from benchbench.record import Record


def capacity_bounds(rec: Record) -> dict[str, Any]:
    """The input knobs' bounds from the capacity model (`record.inputs`), when the cell has one: the step it
    predicts at the best worker count, and with the stages a RAM cache removes gone, each against the step the
    cell measured. A prediction is a lower bound on a step (it leaves out the workers' contention with the model:
    `benchmarks/capacity_check.py`), so the measured step over it bounds the speed-up from above; the model's own
    prediction for the cell in the numerator would not (on CPU it fell 0.2% short of a measured cache gain)."""
    from benchbench.analysis.findings.capacity import without

    cap, st = rec.input_capacity, rec.input_stages or (rec.input_capacity.stages_alone if rec.input_capacity
                                                        else None)
    if cap is None or not cap.predicted:
        return {}
    w = rec.params.get("num_workers")
    if w is None:  # an attached script without a DataLoader: no worker count to move
        return {}
    own, best = cap.at(min(w, cap.cores)), cap.best()
    if own is None or best is None:
        return {}
    out: dict[str, Any] = {}
    base = rec.median or own.step_s
    if best.workers != w:
        out["num_workers"] = (best.workers, base / best.step_s,
                              f"capacity model: {best.workers} workers predicted {best.step_s * 1e3:.0f} ms a step "
                              f"against {base * 1e3:.0f} ms measured at {w} ({best.bound}-bound)", best.step_s)
    if st is not None:
        # What a RAM cache leaves running per sample: benchbench's own folder data set caches the decoded pair
        # (its read, decode and own code go; its transforms still run); a user's data set is cached whole
        # (`workload.userdata.Cached`: only collate is left).
        kept = {"collate"} if rec.params["data"]["kind"] == "dataset" else {"transform", "collate"}
        gone = [s for s in st.stages if s.kind not in kept]
        if gone:
            names = "+".join(dict.fromkeys(s.kind for s in gone))
            merged = gone[0].model_copy(update={"per_sample_s": sum(s.per_sample_s for s in gone), "name": names})
            serial = _serial_cache(rec, merged.per_sample_s, names) if w == 0 else None
            if serial is not None:
                out["cache"] = serial
            else:
                ratio, steps = without(cap, st, merged)
                step = steps.get(min(w, cap.cores), own.step_s)
                out["cache"] = (base / step, f"capacity model: what a cache removes ({names}) is "
                                f"{merged.per_sample_s * 1e3:.1f} ms of {st.per_sample_s * 1e3:.1f} ms a sample; "
                                f"without it the supply is {ratio:.1f}x and the step {step * 1e3:.0f} ms", step)
    return out


def _serial_cache(rec: Record, gone_s: float, names: str) -> tuple[float, str, None] | None:
    """With no workers the batch is made on the step's path, so a cache's bound is Amdahl's on the timed steps'
    own shares: the wait for the batch, times the part of a sample's pipeline time the cache removes — both from
    the same timed block. The capacity model's serial prediction comes from a separate half-second pass whose
    rate moved ±25% run to run on this 2-core VM: set against the measured gain its "bound" read 0.61-1.11 of it
    over 6 advise runs of tests/test_advise.py's PNG cell. This one read 0.89-0.95 of it over 5: steady, and a
    little under, because Amdahl holds the rest of the step fixed while with the decoding gone the model and the
    remaining transforms ran faster too (the base's step less its wait: 4.2 ms; the model alone: 4.0 ms)."""
    st, f = rec.input_stages, rec.input_stall.fraction
    if st is None or not f or not st.per_sample_s:
        return None
    g = min(gone_s / st.per_sample_s, 1.0)
    b = 1.0 / (1.0 - min(f * g, 0.999))  # Amdahl: that share of the step gone
    return (b, f"the timed steps waited {f:.0%} of the step for batches made in the main process (0 workers), and "
               f"what a cache removes ({names}) is {gone_s * 1e3:.1f} ms of its {st.per_sample_s * 1e3:.1f} ms a "
               f"sample ({g:.0%}): at most {b:.2f}x", None)
