"""attach's answers on a GPU, checked on this CPU: a simulated CUDA event clock (a GPU queue that runs behind
the host), traces built event by event in kineto's format, and a fake NVML. Each case is one a review of the
CUDA paths (torch's Copy.cu, GradScaler, the profiler, NVML) found wrong; each test failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from test_syncs import Trace, step_with

from benchbench.analysis.findings.gpu import host_sync_finding
from benchbench.record.explain import GpuTimeline
from benchbench.runner.attach.probe import Probe
from benchbench.timeline.gpu import summarize_gpu
from benchbench.timeline.reader import build_timeline
from benchbench.timeline.syncs import HARNESS_SYNCS_META, HARNESS_SYNCS_OUTSIDE


class GpuClock:
    """A GPU's stream as the host sees it: work the host launches queues behind what is there; an event recorded
    now completes when the queue reaches it. Host time moves only when the test says so."""

    def __init__(self) -> None:
        self.host = 0.0
        self.queue_end = 0.0

    def work(self, ms: float, host_ms: float = 0.05) -> None:
        """The host launches `ms` of GPU work in `host_ms`."""
        self.host += host_ms
        self.queue_end = max(self.queue_end, self.host) + ms

    def wait(self, ms: float) -> None:
        self.host += ms


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> GpuClock:
    clock = GpuClock()

    class Event:
        def __init__(self, enable_timing: bool = True) -> None:
            self.t = 0.0

        def record(self, stream: Any = None) -> None:
            self.t = max(clock.host, clock.queue_end)

        def synchronize(self) -> None:
            pass

        def elapsed_time(self, other: Event) -> float:
            return other.t - self.t  # milliseconds, as CUDA's

    calls: dict[str, list[Any]] = {"reset": [], "peak": []}
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d=None: calls["reset"].append(d))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d=None: calls["peak"].append(d) or 1000)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda d=None: 2000)
    clock.calls = calls  # type: ignore[attr-defined]
    return clock


def cuda_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, steps: int = 4, **cfg: Any) -> Probe:
    p = Probe({"out": str(tmp_path / "r.json"), "steps": steps, "warmup": 2, "profile_steps": 0,
               "keep_running": True, **cfg})

    def find_model() -> None:
        p.model = torch.nn.Linear(1, 1)
        p.cuda, p.device = True, torch.device("cuda", 1)  # the model's GPU is not the current device (0)

    monkeypatch.setattr(p, "find_model", find_model)
    return p


def drive(p: Probe, gpu: GpuClock, steps: int, after_step_ms: float = 0.0, loader_ms: float = 0.0,
          loss: Any = None) -> None:
    """`steps` training steps as a script makes them: wait for the batch, launch 10 ms of forward and backward,
    optimizer.step(), then `after_step_ms` of GPU work after it (GradScaler.update, an EMA, metrics)."""
    it = object()
    p.boundary()
    for i in range(steps):
        p.on_wait_enter()
        gpu.wait(loader_ms)
        p.on_next(it, loader_ms * 1e-3, torch.zeros(2, 3, 8, 8))
        gpu.work(10.0, host_ms=1.0)
        p.on_backward(loss(i) if loss else torch.tensor(1.5))
        p.boundary()
        if after_step_ms:
            gpu.work(after_step_ms)


def test_gpu_work_after_the_step_is_not_starvation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   gpu: GpuClock) -> None:
    """3 ms of GPU work after optimizer.step() and an instant loader: the GPU never waits for data. (Measured from
    the step's end event to the batch-ready event, it read 3 ms of "starvation" a step: "input-bound".)"""
    p = cuda_probe(tmp_path, monkeypatch)
    drive(p, gpu, 7, after_step_ms=3.0)
    assert p.phase == "done" and len(p.starved_s) == 4
    assert max(p.starved_s) == pytest.approx(0.0, abs=1e-6), p.starved_s


def test_a_slow_loader_starves_the_gpu_by_what_the_queue_did_not_cover(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        gpu: GpuClock) -> None:
    """The positive control: the host asks for data 1.05 ms after launching 10 ms of step and 3 ms after it, so
    12.95 ms are still queued; a 20 ms wait then starves the GPU 7.05 ms."""
    p = cuda_probe(tmp_path, monkeypatch)
    drive(p, gpu, 7, after_step_ms=3.0, loader_ms=20.0)
    assert all(s == pytest.approx(0.00705, abs=1e-6) for s in p.starved_s), p.starved_s


def test_peak_memory_is_the_models_gpu_over_the_timed_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            gpu: GpuClock) -> None:
    p = cuda_probe(tmp_path, monkeypatch)
    drive(p, gpu, 7)
    calls = gpu.calls  # type: ignore[attr-defined]
    assert calls["reset"] == [torch.device("cuda", 1)]  # reset once, as the timed steps began, on its GPU
    assert calls["peak"] and set(calls["peak"]) == {torch.device("cuda", 1)}
    mem = json.loads((tmp_path / "r.json").read_text())["memory"]
    assert mem["cuda_peak_allocated_bytes"] == 1000 and "timed steps" in mem["basis"]


def test_a_loss_buffer_overwritten_in_place_keeps_every_steps_value(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    gpu: GpuClock) -> None:
    """A script that writes each loss into one persistent tensor (or a CUDA graph's static output): the values
    are copied at the step, so the record has each step's, not the 7th (last) one's six times over."""
    buf = torch.zeros(())
    p = cuda_probe(tmp_path, monkeypatch)
    drive(p, gpu, 7, loss=lambda i: buf.copy_(torch.tensor(float(i))))
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["losses"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # 2 warm-up steps, 4 timed


def test_a_failed_loss_read_never_loses_the_timings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    gpu: GpuClock) -> None:
    import benchbench.measure.timer as timer

    def broken(kept: list[Any]) -> list[float]:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(timer, "read_losses", broken)
    p = cuda_probe(tmp_path, monkeypatch)
    drive(p, gpu, 7)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert len(doc["timing_fields"]["step_time_s"]["samples"]) == 4
    assert doc["losses"] == [] and "illegal memory access" in doc["losses_error"]


def test_gradscaler_losses_are_recorded_unscaled_with_the_skipped_steps(tmp_path: Path) -> None:
    """The tensor handed to backward under GradScaler is loss x scale (65536, then backing off): the record keeps
    the loss that was scaled, and the steps GradScaler skipped as indices into those losses."""
    from benchbench.runner.attach.install import _patch_update

    class Scaler(torch.amp.GradScaler):
        pass

    p = Probe({"out": str(tmp_path / "r.json"), "steps": 3, "warmup": 2, "profile_steps": 0, "keep_running": True})
    _patch_update(Scaler, p)
    scaler = Scaler("cpu", init_scale=2.0**16)
    w = torch.nn.Parameter(torch.ones(()))
    opt = torch.optim.SGD([w], lr=0.0)
    opt.register_step_post_hook(lambda o, a, k: p.on_optimizer_step(o))  # torch's global hook, in attach
    p.boundary()
    for i in range(5):
        opt.zero_grad()
        loss = w * (float("inf") if i == 2 else 0.5)
        scaled = scaler.scale(loss)
        p.on_backward(scaled)  # what attach's torch.autograd.backward sees
        scaled.backward()
        scaler.step(opt)  # skips optimizer.step() on inf gradients
        scaler.update()
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["losses"][:2] == [0.5, 0.5] and doc["losses"][3:] == [0.5, 0.5], doc["losses"]
    assert doc["grad_scaler"]["skipped_at"] == [2] and doc["grad_scaler"]["skipped_steps"] == 1
    assert doc["grad_scaler"]["init_scale"] == 2.0**16


def test_an_attached_run_records_the_gpus_conditions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     gpu: GpuClock) -> None:
    """NVML's tracker around the timed steps, as `run` has it: a shared GPU is flagged in the record."""
    from test_gpu_state import FakeNvml

    import benchbench.measure.gpu_state as gpu_state

    nvml = FakeNvml(procs=2)
    monkeypatch.setattr(gpu_state, "for_cell",
                        lambda ctx: gpu_state.open_tracker(0, "GPU-1234", nvml=nvml, interval_s=0.01))
    p = cuda_probe(tmp_path, monkeypatch)
    drive(p, gpu, 7)
    cond = json.loads((tmp_path / "r.json").read_text())["gpu_conditions"]
    assert cond["source"] == "nvml" and cond["other_processes"] >= 1 and cond["shared"] is True


def test_a_model_compiled_in_place_is_known_and_gets_no_window_hooks(tmp_path: Path) -> None:
    """`model.compile()` leaves no `_orig_mod`: hooks added to its modules in the window would recompile it."""
    m = torch.nn.Sequential(torch.nn.Linear(2, 2))
    m.compile()
    p = Probe({"out": str(tmp_path / "r.json")})
    p.forward_outer[id(m)] = [m, 1, 6, None, None]
    p.find_model()
    assert p.model is m and p.model_info["compiled"] and p.model_info["compiled_in_place"]
    p._hook_model()
    assert not m._forward_pre_hooks and not m._forward_hooks and p.module_ranges is None
    assert "compiled" in (p.window_note or "")


# ---------------------------------------------------------------------------------------------- traces


def marked(t: Trace) -> Trace:
    """A trace from benchbench's own window: no sync of its own inside a step, said in its metadata."""
    t.meta = {HARNESS_SYNCS_META: HARNESS_SYNCS_OUTSIDE}  # type: ignore[attr-defined]
    return t


def summary(t: Trace) -> Any:
    return summarize_gpu(build_timeline({"traceEvents": t.events, **getattr(t, "meta", {})}))


def python_frame(t: Trace, name: str, ts: float, dur: float, call_from: str | None) -> None:
    args = {"CallFrom": call_from} if call_from else {}
    t.events.append({"ph": "X", "cat": "python_function", "name": name, "pid": 1, "tid": 1, "ts": ts, "dur": dur,
                     "args": args})


def test_the_scripts_own_synchronize_is_kept_and_named(tmp_path: Path) -> None:
    """`torch.cuda.synchronize()` around a timing log: no aten op above it, outside the hooks' phases — it was
    discarded as benchbench's, its gap became "launch" and the advice "compile / CUDA graphs"."""
    def sync(t: Trace) -> None:
        python_frame(t, "train.py(40): main", 0, 1000, "train.py:60")
        python_frame(t, "torch/cuda/__init__.py(1080): synchronize", 450, 60, "train.py:88")
        t.call("cudaDeviceSynchronize", 460, 40)

    def stream(t: Trace) -> None:
        t.call("cudaStreamSynchronize", 460, 40)

    g = summary(marked(step_with(sync)))
    [s] = g.host_syncs
    assert s["op"] == "torch.cuda.synchronize()" and s["where"] == "train.py:88" and g.harness_syncs_excluded == {}
    [s] = summary(marked(step_with(stream))).host_syncs
    assert s["op"] == "stream.synchronize()"
    # a trace of the older profile pass (no metadata) keeps excluding its own syncs
    assert summary(step_with(sync)).host_syncs == []


def test_a_blocking_copy_to_the_device_is_named_as_one(tmp_path: Path) -> None:
    """`x.cuda()` of a pageable tensor: aten::copy_ -> cudaMemcpyAsync HtoD (Pageable) + cudaStreamSynchronize
    (torch's Copy.cu). It was called "a device-to-host copy — keep the value on the device"."""
    def pageable(t: Trace) -> None:
        t.host("aten::copy_", 100, 60)
        t.call("cudaMemcpyAsync", 105, 5, ("gpu_memcpy", "Memcpy HtoD (Pageable -> Device)", 150, 20))
        t.call("cudaStreamSynchronize", 111, 45)

    g = summary(marked(step_with(pageable)))
    [s] = g.host_syncs
    assert s["kind"] == "htod_pageable" and s["op"] == "aten::copy_"
    tl = GpuTimeline.model_validate(g.to_dict())
    f = host_sync_finding(tl, "c", "train.py")
    assert f is not None
    assert "host-to-device copy from pageable memory" in f.sentence and "device-to-host" not in f.sentence
    assert "pin_memory=True" in (f.suggestion or "") and "non_blocking=True" in (f.suggestion or "")


def test_cuda_free_blocks_and_is_counted_as_a_sync() -> None:
    """cudaFree waits for the device: the caching allocator calls it when it empties its cache near OOM."""
    def free(t: Trace) -> None:
        t.call("cudaFree", 200, 300)

    [s] = summary(marked(step_with(free))).host_syncs
    assert s["call"] == "cudaFree" and s["kind"] == "free"
    tl = GpuTimeline.model_validate(summary(marked(step_with(free))).to_dict())
    f = host_sync_finding(tl, "c", "train.py")
    assert f is not None and "caching allocator" in f.sentence and "expandable_segments" in (f.suggestion or "")


def test_the_users_line_without_callfrom_comes_from_the_frame_tree(tmp_path: Path, monkeypatch) -> None:
    """Older torch writes python_function events without CallFrom: the innermost enclosing user function names
    the sync (`train.py:main()`), never a line that would be wrong."""
    monkeypatch.chdir(tmp_path)

    def item(t: Trace) -> None:
        python_frame(t, f"{tmp_path}/train.py(12): main", 0, 1000, None)
        python_frame(t, f"{tmp_path}/train.py(30): log_loss", 90, 120, None)
        python_frame(t, "<built-in method item of Tensor object at 0x7f>", 95, 110, None)
        t.host("aten::item", 100, 100)
        t.host("aten::_local_scalar_dense", 110, 80)
        t.call("cudaMemcpyAsync", 120, 5, ("gpu_memcpy", "Memcpy DtoH (Device -> Pinned)", 150, 1))
        t.call("cudaStreamSynchronize", 126, 30)

    [s] = summary(marked(step_with(item))).host_syncs
    assert s["where"] == "train.py:log_loss()"


def test_the_first_window_has_a_warmup_step_and_no_python_stacks(tmp_path: Path) -> None:
    """torch warns that a window without warm-up is skewed, and Python-stack tracing slows the host (moving GPU
    idle from "sync" to "launch"): every figure comes from a window with a warm-up step and no stacks."""
    from torch.profiler import ProfilerAction

    model = torch.nn.Linear(4, 2)
    p = Probe({"out": str(tmp_path / "r.json"), "steps": 2, "profile_steps": 2, "keep_running": True})
    p.model, p.model_info, p.step_s = model, {"class": "Linear"}, [0.01]
    p._begin_profile()
    try:
        assert p.prof is not None and p.prof.with_stack is False
        assert p.prof.schedule(0) == ProfilerAction.WARMUP and p.prof.schedule(1) == ProfilerAction.RECORD
        for _ in range(3):  # warm-up, then two recorded steps
            model(torch.zeros(1, 4)).sum().backward()
            p._profile_step()
        assert p.phase == "done" and p.prof is None and p.breakdown is not None
        assert p.breakdown["profiled_steps"] == 2
    finally:
        p.abandon_window()


def test_the_second_window_names_the_lines_of_the_first_windows_syncs(tmp_path: Path) -> None:
    """The lines come from a window with stacks, matched to the syncs of the window without them."""
    def item(t: Trace) -> None:
        python_frame(t, "train.py(40): main", 0, 1000, "train.py:60")
        python_frame(t, "<built-in method item>", 95, 110, "train.py:87")
        t.host("aten::item", 100, 100)
        t.host("aten::_local_scalar_dense", 110, 80)
        t.call("cudaMemcpyAsync", 120, 5, ("gpu_memcpy", "Memcpy DtoH (Device -> Pinned)", 150, 1))
        t.call("cudaStreamSynchronize", 126, 30)

    lines = marked(step_with(item))
    path = tmp_path / "lines.json"
    path.write_text(json.dumps({"traceEvents": lines.events, **lines.meta}))  # type: ignore[attr-defined]
    first = summary(marked(step_with(_item_no_stack)))
    p = Probe({"out": str(tmp_path / "r.json")})
    p.breakdown = {"gpu": first.to_dict()}
    assert "where" not in p.breakdown["gpu"]["host_syncs"][0]
    p.window_path, p.profile_steps = str(path), 2
    p._name_sync_lines()
    s = p.breakdown["gpu"]["host_syncs"][0]
    assert s["where"] == "train.py:87" and "second window" in p.breakdown["gpu"]["sync_lines_basis"]


def _item_no_stack(t: Trace) -> None:
    t.host("aten::item", 100, 100)
    t.host("aten::_local_scalar_dense", 110, 80)
    t.call("cudaMemcpyAsync", 120, 5, ("gpu_memcpy", "Memcpy DtoH (Device -> Pinned)", 150, 1))
    t.call("cudaStreamSynchronize", 126, 30)


def test_a_gradscaler_run_that_ends_in_warm_up_keeps_its_steps_and_snapshots_never_read_the_scale(
        tmp_path: Path) -> None:
    """GradScaler's `get_scale()` is an `.item()` on a GPU: a snapshot (every 0.5 s while the script runs) never
    calls it, the final record does; and a script with a scaler that ends in its warm-up keeps those steps."""
    class Scaler:
        _init_scale = 2.0**16
        reads = 0

        def get_scale(self) -> float:
            Scaler.reads += 1
            return 1024.0

    p = Probe({"out": str(tmp_path / "r.json"), "steps": 3, "warmup": 5, "profile_steps": 0, "keep_running": True})
    p.boundary()
    for _ in range(3):
        p.on_backward(torch.tensor(1.5))
        p.boundary()
    p.on_scaler_update(Scaler())
    snap = p.result(partial=True)
    assert Scaler.reads == 0 and "final_scale" not in snap["grad_scaler"]
    final = p.result()
    assert Scaler.reads == 1 and final["grad_scaler"]["final_scale"] == 1024.0
    assert len(final["warmup_s"]) == 3 and len(snap["warmup_s"]) == 3
