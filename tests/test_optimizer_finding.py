"""The optimizer's share of a CPU step as a finding: an unfused Adam/AdamW/SGD named with its per-tensor ops."""

from __future__ import annotations

from benchbench.analysis.findings import THRESHOLDS
from benchbench.analysis.findings.optimizer import optimizer_share
from benchbench.record import Record


def record(optimizer: str, opt_s: float, step_s: float = 0.1) -> Record:
    return Record.of({
        "schema": "benchbench.result/2", "suite": "s", "run_id": "r", "cell_id": "c", "label": "cell",
        "params": {"batch_size": 2, "optimizer": optimizer, "device": "cpu"}, "status": "ok",
        "step_time_s": {"samples": [step_s] * 3},
        "breakdown": {"step_s": step_s, "phases": {"forward": 0.02, "backward": 0.03, "optimizer": opt_s},
                      "top_ops": [{"name": "aten::lerp_", "self_time_s": 0.006, "calls": 92, "share": 0.06}]}})


def test_an_unfused_optimizer_taking_a_large_share_is_named_with_its_per_tensor_ops() -> None:
    [f] = optimizer_share([record("adamw", 0.047)], THRESHOLDS)
    assert "the optimizer step takes 47% of the step (47.0 ms)" in f.sentence
    assert "92 aten::lerp_ calls a step" in f.sentence and "fused=True" in f.suggestion
    assert f.evidence["optimizer_share"] == 0.47


def test_a_small_share_or_a_fused_optimizer_gets_no_fused_advice() -> None:
    assert optimizer_share([record("adamw", 0.01)], THRESHOLDS) == []
    [f] = optimizer_share([record("adamw-fused", 0.047)], THRESHOLDS)
    assert f.suggestion is None and "op by op" not in f.sentence
