"""Each finding kind fires on a constructed case with evidence and stays silent without it."""

from __future__ import annotations

import copy

from conftest import as_records

from benchbench.analysis.findings import THRESHOLDS, find_all


def rec(cid: str, step: float, **params) -> dict:
    base = {"arch": "Segformer", "encoder": "mit_b0", "decoder_channels": 256, "resolution": [256, 256],
            "batch_size": 4, "amp": "none", "num_workers": 0, "pin_memory": None, "channels_last": False,
            "compile": False, "optimizer": "adamw", "loss": "cross-entropy", "data": {"kind": "synthetic"},
            "prefetch_factor": None, "persistent_workers": True, "device": "cpu"}
    base.update(params)
    return {
        "cell_id": cid, "label": cid, "status": "ok", "params": base, "throughput_img_s": base["batch_size"] / step,
        "step_time_s": {"median": step}, "data_wait_s": {"median": 0.0, "fraction": 0.0}, "env": {"cpu_count": 2},
    }


def with_breakdown(r: dict, enc: float, dec: float, fuse: float, ops: list | None = None) -> dict:
    r = copy.deepcopy(r)
    step = r["step_time_s"]["median"]
    r["breakdown"] = {
        "step_s": step, "op_self_total_s": step,
        "phases": {"forward": step / 3, "backward": 2 * step / 3},
        "modules": {"encoder": {"forward": enc / 3, "backward": 2 * enc / 3},
                    "decoder": {"forward": dec / 3, "backward": 2 * dec / 3},
                    "decoder.fuse_stage": {"forward": fuse / 3, "backward": 2 * fuse / 3}},
        "top_ops": ops or [{"name": "aten::convolution_backward", "self_time_s": step * 0.6, "calls": 10,
                            "share": 0.6}],
    }
    c = r["params"]["decoder_channels"]
    r["flops"] = {"forward_per_image": 1e9 + 4 * c * c * 1e3,
                  "by_module": {"encoder": 1e9, "decoder": 4 * c * c * 1e3, "decoder.fuse_stage": 4 * c * c * 1e3}}
    r["memory"] = {"activations_by_module": {"total": c * 1e5}}
    return r


def kinds(findings) -> set[str]:
    return {f.kind for f in findings}


def test_segformer_case() -> None:
    big = with_breakdown(rec("c512", 2.0, decoder_channels=512), enc=0.3, dec=1.6, fuse=1.4)
    mid = with_breakdown(rec("c256", 0.8, decoder_channels=256), enc=0.3, dec=0.45, fuse=0.35)
    small = with_breakdown(rec("c128", 0.45, decoder_channels=128), enc=0.3, dec=0.12, fuse=0.08)
    fs = find_all(as_records(big, mid, small))
    dom = [f for f in fs if f.kind == "dominant_module" and f.cells == ["c512"]]
    assert dom and "decoder takes 80% of step time" in dom[0].sentence
    assert "decoder.fuse_stage" in dom[0].sentence and "1/4 input resolution" in dom[0].sentence
    assert dom[0].verified_by["cell_id"] == "c128" and "measured" in dom[0].suggestion
    [scal] = [f for f in fs if f.kind == "channel_scaling"]
    assert "512 -> 256 -> 128" in scal.sentence and scal.evidence["flop_exponent"] == __import__("pytest").approx(2.0)
    pair = [f for f in fs if f.kind == "pairwise_delta" and f.cells == ["c512", "c256"]]
    assert pair and "2.5x slower" in pair[0].sentence and "decoder" in pair[0].sentence


def test_silent_without_evidence() -> None:
    a = with_breakdown(rec("a", 1.0), enc=0.45, dec=0.45, fuse=0.2)
    b = with_breakdown(rec("b", 1.05, optimizer="sgd"), enc=0.45, dec=0.45, fuse=0.2)
    fs = find_all(as_records(a, b))
    assert not kinds(fs) & {"dominant_module", "pairwise_delta", "input_bound", "low_utilization",
                            "layout_conversions", "channel_scaling"}


def test_input_bound_with_measured_fix() -> None:
    slow = rec("w0", 1.0, data={"kind": "synthetic-disk"})
    slow["data_wait_s"] = {"median": 0.4, "fraction": 0.4}
    fast = rec("w2", 0.6, data={"kind": "synthetic-disk"}, num_workers=2)
    fast["data_wait_s"] = {"median": 0.01, "fraction": 0.02}
    [f] = [f for f in find_all(as_records(slow, fast)) if f.kind == "input_bound"]
    assert "40%" in f.sentence and f.verified_by["axis"] == "num_workers"
    assert not [f for f in find_all(as_records(fast)) if f.kind == "input_bound"]


def test_workers_that_do_not_help() -> None:
    a = rec("w0", 1.0)
    b = rec("w1", 1.3, num_workers=1)
    [f] = [f for f in find_all(as_records(a, b)) if f.kind == "input_bound"]
    assert "not input-bound" in f.sentence


def test_low_utilization_and_layout() -> None:
    ops = [{"name": "aten::upsample_bilinear2d_backward", "self_time_s": 0.3, "calls": 1, "share": 0.3},
           {"name": "aten::copy_", "self_time_s": 0.2, "calls": 1, "share": 0.2},
           {"name": "aten::convolution_backward", "self_time_s": 0.5, "calls": 1, "share": 0.5}]
    r = with_breakdown(rec("u", 1.0), enc=0.5, dec=0.4, fuse=0.1, ops=ops)
    r["flops"].update(achieved_flops_per_s=1e9, utilization=0.05)
    fs = find_all(as_records(r))
    assert {"low_utilization", "layout_conversions"} <= kinds(fs)
    r["flops"]["utilization"] = 0.9
    r["breakdown"]["top_ops"] = ops[2:]
    assert not {"low_utilization", "layout_conversions"} & kinds(find_all(as_records(r)))


def test_amp_effect_and_scaling() -> None:
    a = rec("fp32", 1.0)
    b = rec("bf16", 0.98, amp="bf16")
    [f] = [f for f in find_all(as_records(a, b)) if f.kind == "amp_effect"]
    assert "CPU" in f.sentence
    res = [rec(f"r{r}", 0.1 * (r / 64) ** 2.6, resolution=[r, r]) for r in (64, 128, 256)]
    [s] = [f for f in find_all(as_records(*res)) if f.kind == "scaling"]
    assert s.evidence["exponent"] > 1.15 and "super-linear" in s.sentence
    bs = [rec(f"b{b}", b / t, batch_size=b) for b, t in ((2, 10.0), (4, 18.0), (8, 19.0))]
    [p] = [f for f in find_all(as_records(*bs)) if f.kind == "scaling"]
    assert p.evidence["plateau"] == 8


def test_thresholds_live_in_one_place() -> None:
    assert 0 < THRESHOLDS.input_bound_share < 1 and THRESHOLDS.pair_min_ratio > 1


def test_low_utilization_says_which_operators_are_slow() -> None:
    """Mostly non-matmul time: memory-bound. Mostly matmul time far below the peak: the kernels themselves."""
    def low(cid: str, ops: list, amp: str = "none") -> dict:
        r = with_breakdown(rec(cid, 1.0, amp=amp), enc=0.4, dec=0.4, fuse=0.2, ops=ops)
        r["flops"].update(achieved_flops_per_s=2e9, utilization=0.01)
        return r

    mem = low("mem", [{"name": "aten::upsample_bilinear2d", "self_time_s": 0.7, "calls": 4, "share": 0.7},
                      {"name": "aten::convolution", "self_time_s": 0.3, "calls": 4, "share": 0.3}])
    mm = low("mm", [{"name": "aten::convolution", "self_time_s": 0.96, "calls": 4, "share": 0.96},
                    {"name": "aten::add_", "self_time_s": 0.04, "calls": 4, "share": 0.04}], amp="fp16")
    [a] = [f for f in find_all(as_records(mem)) if f.kind == "low_utilization"]
    [b] = [f for f in find_all(as_records(mm)) if f.kind == "low_utilization"]
    assert "memory-bound" in a.sentence and "70% of operator time is in non-matmul" in a.sentence
    assert "memory-bound" not in b.sentence and "96% of operator time" in b.sentence and "amp=fp16" in b.sentence


def test_an_attached_scripts_epoch_starts_are_a_finding_with_their_numbers() -> None:
    """Steps that start an epoch (measured on the CamVid loop with 2 workers: ~920 ms against ~95 ms, the data
    wait only 70 ms of it) are hidden by the median; the finding gives both medians, the wait, the epoch's
    share, and persistent_workers where the workers fork each epoch. advise judges that knob on the mean."""
    import pytest
    from conftest import record

    from benchbench.advise.attached import outside_knobs
    from benchbench.analysis.findings import find_all

    steps = [0.095, 0.92, 0.094, 0.096, 0.093, 0.95, 0.097, 0.095]
    waits = [0.002, 0.07, 0.001, 0.001, 0.001, 0.068, 0.002, 0.001]
    loader = {"num_workers": 2, "persistent_workers": False, "batch_size": 2}

    def rec(starts: list[int], persistent: bool = False):
        return record(cell_id="a", status="ok", params={"batch_size": 2, "num_workers": 2,
                                                        "persistent_workers": persistent},
                      step_time_s={"median": 0.096, "samples": steps},
                      data_wait_s={"median": 0.0015, "samples": waits, "fraction": 0.1, "steps_per_epoch": 4},
                      attached={"command": ["python", "train.py"], "epoch_start_steps": starts,
                                "loader": {**loader, "persistent_workers": persistent}})

    [f] = [f for f in find_all([rec([1, 5])]) if f.kind == "epoch_start"]
    assert "2 of 8 timed steps start an epoch" in f.sentence and "935 ms against 95.0 ms" in f.sentence
    assert "data wait is 69.0 ms" in f.sentence and "forked again each epoch" in f.sentence
    assert f.evidence["epoch_share"] == pytest.approx(0.84 / (4 * 0.095 + 0.84), rel=0.02)
    assert "persistent_workers=True" in f.suggestion and "--steps 9" in f.suggestion
    assert not [f for f in find_all([rec([])]) if f.kind == "epoch_start"]  # no epoch started: nothing said
    # the steps vary (CV > 100%) only by their epoch starts: the finding says it, not a noisy-median warning
    from benchbench.analysis.trust import warnings

    assert not warnings([rec([1, 5])]) and "vary" in warnings([rec([])])[0]
    knob = next(k for k in outside_knobs(rec([1, 5])) if k.name == "persistent_workers")
    assert knob.statistic == "mean" and "2 of the base's timed steps started an epoch" in knob.why
