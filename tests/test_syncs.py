"""Host syncs counted by the op that caused them, with what each costs the GPU: traces built event by event
in kineto's format (what torch.profiler writes on CUDA), so the cases no recording has are known exactly."""

from __future__ import annotations

from typing import Any

import pytest

from benchbench.timeline.gpu import summarize_gpu
from benchbench.timeline.reader import build_timeline


class Trace:
    """A tiny kineto trace: host ranges, runtime calls and the device work they launch."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.corr = 0

    def host(self, name: str, ts: float, dur: float, cat: str = "cpu_op") -> None:
        self.events.append({"ph": "X", "cat": cat, "name": name, "pid": 1, "tid": 1, "ts": ts, "dur": dur, "args": {}})

    def call(self, name: str, ts: float, dur: float, work: tuple[str, str, float, float] | None = None) -> None:
        self.corr += 1
        self.events.append({"ph": "X", "cat": "cuda_runtime", "name": name, "pid": 1, "tid": 1, "ts": ts, "dur": dur,
                            "args": {"correlation": self.corr}})
        if work:
            cat, wname, wts, wdur = work
            self.events.append({"ph": "X", "cat": cat, "name": wname, "pid": 0, "tid": 7, "ts": wts, "dur": wdur,
                                "args": {"correlation": self.corr, "stream": 7}})

    def kernel(self, ts: float, start: float, dur: float) -> None:
        self.call("cudaLaunchKernel", ts, 4, ("kernel", "void gemm_kernel<float>(float*)", start, dur))

    def summary(self, step_time_s: float | None = None):
        return summarize_gpu(build_timeline({"traceEvents": self.events}), step_time_s)


def step_with(body) -> Trace:
    t = Trace()
    t.host("bb.step", 0, 1000, "user_annotation")
    t.host("bb.phase:forward", 1, 400, "user_annotation")
    t.kernel(10, 20, 130)  # busy 20..150
    body(t)
    t.kernel(600, 606, 94)  # the next work, launched after the host came back
    return t


def item(t: Trace) -> None:
    """`.item()`: aten::item -> _local_scalar_dense -> cudaMemcpyAsync DtoH (pinned) + cudaStreamSynchronize."""
    t.host("aten::item", 100, 100)
    t.host("aten::_local_scalar_dense", 110, 80)
    t.call("cudaMemcpyAsync", 120, 5, ("gpu_memcpy", "Memcpy DtoH (Device -> Pinned)", 150, 1))
    t.call("cudaStreamSynchronize", 126, 30)


def test_one_item_is_one_sync_with_the_gpu_idle_it_causes() -> None:
    g = step_with(item).summary()
    assert len(g.host_syncs) == 1
    s = g.host_syncs[0]
    assert (s["op"], s["call"], s["per_step"]) == ("aten::_local_scalar_dense", "cudaStreamSynchronize", 1.0)
    assert s["wait_s_per_step"] == pytest.approx(30e-6)
    # The GPU finished at 151 us and got its next kernel at 606 us: 455 us idle because its queue drained.
    assert s["gpu_idle_after_s_per_step"] == pytest.approx(455e-6)


def test_a_non_blocking_copy_is_no_sync() -> None:
    def copy(t: Trace) -> None:
        t.host("aten::copy_", 100, 20)
        t.call("cudaMemcpyAsync", 105, 5, ("gpu_memcpy", "Memcpy DtoH (Device -> Pinned)", 150, 1))

    assert step_with(copy).summary().host_syncs == []


def test_an_async_copy_to_pageable_memory_blocks() -> None:
    def pageable(t: Trace) -> None:
        t.host("aten::copy_", 100, 60)
        t.call("cudaMemcpyAsync", 105, 50, ("gpu_memcpy", "Memcpy DtoH (Device -> Pageable)", 150, 1))

    [s] = step_with(pageable).summary().host_syncs
    assert s["op"] == "aten::copy_" and s["per_step"] == 1.0


def test_two_waits_in_one_op_are_one_sync_and_two_items_are_two() -> None:
    def twice(t: Trace) -> None:
        t.host("aten::_local_scalar_dense", 100, 100)
        t.call("cudaStreamSynchronize", 110, 20)
        t.call("cudaStreamSynchronize", 140, 20)

    assert [s["per_step"] for s in step_with(twice).summary().host_syncs] == [1.0]

    def two_items(t: Trace) -> None:
        item(t)
        t.host("aten::_local_scalar_dense", 300, 80)
        t.call("cudaMemcpyAsync", 310, 5, ("gpu_memcpy", "Memcpy DtoH (Device -> Pinned)", 320, 1))
        t.call("cudaStreamSynchronize", 316, 10)

    assert sum(s["per_step"] for s in step_with(two_items).summary().host_syncs) == 2.0


def test_fused_optimizer_with_grad_scaler_has_no_sync() -> None:
    """A fused AdamW keeps GradScaler's found_inf on the device: kernels, no wait."""
    def fused(t: Trace) -> None:
        t.host("Optimizer.step#AdamW.step", 200, 50)
        t.kernel(210, 220, 10)

    assert step_with(fused).summary().host_syncs == []


def test_launch_bound_evidence_is_the_gpus_not_the_hosts_enqueue_time() -> None:
    """Enqueue time ~ step time holds in a GPU-bound loop too (a full launch queue blocks launches)."""
    from benchbench.analysis.findings.gpu import launch_bound_text
    from benchbench.record.explain import GpuTimeline

    g = step_with(lambda t: None).summary(step_time_s=1e-3).to_dict()
    txt = launch_bound_text(GpuTimeline.model_validate(g), enqueue=0.99e-3)
    assert "started within 20 us of their launch" in txt and "host sets the pace" in txt
    assert "no evidence on its own" in txt
    assert g["launch_queue_empty_share"] == pytest.approx(1.0)
    assert g["launch_delay_median_s"] == pytest.approx(4e-6)  # 6 and 2 us


def test_a_sync_is_named_by_the_users_file_and_line_from_the_traces_python_stacks() -> None:
    """With Python stacks (`with_stack=True`, what attach records) each `python_function` event carries the line
    that made the call: the innermost one in the user's own code names the sync — `train.py:87`, not torch's
    `_tensor.py` nor the standard library's."""
    from benchbench.analysis.findings.gpu import sync_text
    from benchbench.record.explain import GpuTimeline

    def stacked(t: Trace) -> None:
        def py(name: str, ts: float, dur: float, call_from: str) -> None:
            t.events.append({"ph": "X", "cat": "python_function", "name": name, "pid": 1, "tid": 1, "ts": ts,
                             "dur": dur, "args": {"CallFrom": call_from}})

        py("train.py(40): main", 0.5, 999, "train.py:120")
        py("<built-in method item of Tensor object>", 98, 104, "train.py:87")
        py("torch/_tensor.py(1): __format__", 99, 102, "/usr/lib/python3.11/site-packages/torch/_tensor.py:1100")
        item(t)

    g = step_with(stacked).summary(step_time_s=1e-3)
    [s] = g.host_syncs
    assert s["where"] == "train.py:87"
    txt = sync_text(GpuTimeline.model_validate(g.to_dict()))
    assert txt.startswith("1 host sync(s) per step") and "train.py:87 waits for the GPU 1x per step" in txt, txt
    assert "GPU idle 0.5 ms (46% of the step)" in txt, txt
    # without stacks the same sync is still found, by op alone
    assert "where" not in step_with(item).summary().host_syncs[0]
