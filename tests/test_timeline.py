"""The GPU timeline against real H100 traces and their independently computed ground truth."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from benchbench.errors import BenchbenchError
from benchbench.timeline.gpu import summarize_gpu
from benchbench.timeline.names import MAX_NAME, short_name
from benchbench.timeline.reader import build_timeline, load_trace, read_timeline

H100 = Path(__file__).parent / "fixtures" / "h100"
C64 = H100 / "trace-segformer-c64-9183703d22aa.json.gz"
C512 = H100 / "trace-segformer-c512-f0b0d46df99f.json.gz"
UNET = H100 / "trace-unet-disk-workers4-3be7596980d6.json.gz"

# The fixtures README's table: runtime-API launches only.
TRUTH = {
    C64: {"launches": 1199, "kernels": 1045, "busy": 26.6e-3, "forward": 10.0e-3, "backward": 15.6e-3, "loss": 0.6e-3,
              "optimizer": 0.4e-3, "host_to_device": 0.0},
    C512: {"launches": 1208, "kernels": 1049, "busy": 44.1e-3, "forward": 18.1e-3, "backward": 25.0e-3, "loss": 0.6e-3,
               "optimizer": 0.4e-3, "host_to_device": 0.0},
    UNET: {"launches": 850, "kernels": 829, "busy": 11.9e-3, "forward": 2.8e-3, "backward": 8.3e-3, "loss": 0.1e-3,
               "optimizer": 0.5e-3, "host_to_device": 0.2e-3},
}


def close(a: float, b: float, rel: float = 0.02, abs_: float = 0.06e-3) -> bool:
    """Within 2%, or within the ground truth's rounding (0.05 ms) for sub-millisecond phases."""
    return abs(a - b) <= max(rel * abs(b), abs_)


@pytest.mark.parametrize("trace", list(TRUTH), ids=lambda p: p.name.split("-")[1] + p.name.split("-")[2])
def test_matches_ground_truth_runtime_launches(trace: Path) -> None:
    g = summarize_gpu(read_timeline(trace, apis=("cuda_runtime",)))
    t = TRUTH[trace]
    assert g.launches_per_step == t["launches"] and g.kernels_per_step == t["kernels"]
    assert close(g.gpu_busy_s, t["busy"])
    for phase in ("forward", "backward", "loss", "optimizer", "host_to_device"):
        assert close(g.gpu_phases_s[phase], t[phase]), (phase, g.gpu_phases_s[phase], t[phase])


@pytest.mark.parametrize("trace", list(TRUTH), ids=lambda p: p.name.split("-")[1] + p.name.split("-")[2])
def test_invariants_and_driver_launches(trace: Path) -> None:
    tl = read_timeline(trace)
    g = summarize_gpu(tl)
    rt = summarize_gpu(read_timeline(trace, apis=("cuda_runtime",)))
    # Phases add up to GPU busy (one stream: no overlap), busy fits in the device span.
    assert abs(sum(g.gpu_phases_s.values()) - g.gpu_busy_s) <= 0.01 * g.gpu_busy_s
    assert g.gpu_busy_s <= g.gpu_span_s + 1e-9
    assert g.unmatched_device_ops == 0
    # Driver-API launches (cuBLASLt / cuDNN kernels) are real work that the table leaves out.
    driver = [d for c in tl.calls if c.name.startswith("cu") and not c.name.startswith("cuda") for d in c.device_ops]
    per_step = len(driver) / g.steps
    assert g.kernels_per_step == rt.kernels_per_step + per_step
    extra = sum(d.dur for d in driver) * 1e-6 / g.steps
    assert g.gpu_busy_s == pytest.approx(rt.gpu_busy_s + extra, rel=0.01)
    if trace != UNET:
        assert 200 <= per_step <= 220 and any(d.name.startswith("nvjet") for d in driver)


def test_modules_forward_and_backward_add_up() -> None:
    g = summarize_gpu(read_timeline(C512))
    top = {k: v for k, v in g.gpu_modules_s.items() if "." not in k}
    assert set(top) == {"encoder", "decoder", "segmentation_head"}
    assert sum(v["forward"] for v in top.values()) <= g.gpu_phases_s["forward"] * 1.001
    # Backward kernels come from autograd's thread and are charged to their forward module.
    assert sum(v["backward"] for v in top.values()) == pytest.approx(g.gpu_phases_s["backward"], rel=0.05)
    assert g.gpu_modules_s["decoder"]["backward"] > 0
    assert g.gpu_modules_s["decoder"]["forward"] >= g.gpu_modules_s["decoder.fuse_stage"]["forward"]
    # C=512's decoder is much heavier than C=64's on the GPU.
    g64 = summarize_gpu(read_timeline(C64))
    dec = lambda s: s.gpu_modules_s["decoder"]["forward"] + s.gpu_modules_s["decoder"]["backward"]  # noqa: E731
    assert dec(g) > 5 * dec(g64)


def test_idle_is_judged_against_the_timed_step() -> None:
    g = summarize_gpu(read_timeline(C64), step_time_s=0.0423334, data_wait_s=2e-6)
    assert g.profiled_step_s > 1.5 * 0.0423334  # the profiler stretches the host step
    assert g.gpu_idle_fraction == pytest.approx(1 - g.gpu_busy_s / 0.0423334)
    assert 0.2 < g.gpu_idle_fraction < 0.35
    assert sum(g.idle_breakdown_s.values()) == pytest.approx(g.gpu_idle_s)
    assert g.idle_breakdown_s["launch"] > 0.95 * g.gpu_idle_s
    # benchbench's old profile pass synced twice a step; those are excluded and counted, not blamed on the model.
    assert g.host_syncs == [] and g.harness_syncs_excluded == {"cudaDeviceSynchronize": 4}


def test_user_trace_with_profiler_steps_only(tmp_path: Path) -> None:
    """A user's trace: ProfilerStep#N markers and no bb.* ranges; phases from what the profiler records."""
    doc = load_trace(C64)
    events = []
    n = 0
    for e in doc["traceEvents"]:
        name = e.get("name", "")
        if name == "bb.step":
            e = {**e, "name": f"ProfilerStep#{n}"}
            n += 1
        elif name.startswith("bb."):
            continue
        events.append(e)
    path = tmp_path / "user.json"
    path.write_text(json.dumps({**doc, "traceEvents": events}))
    tl = read_timeline(path)
    assert tl.step_source == "ProfilerStep" and len(tl.steps) == 2
    user = summarize_gpu(tl)
    ours = summarize_gpu(read_timeline(C64))
    assert user.gpu_busy_s == pytest.approx(ours.gpu_busy_s)
    assert user.gpu_phases_s["backward"] == pytest.approx(ours.gpu_phases_s["backward"], rel=0.01)
    assert user.gpu_phases_s["forward"] == pytest.approx(ours.gpu_phases_s["forward"] + ours.gpu_phases_s["loss"],
                                                         rel=0.03)
    assert user.gpu_phases_s["optimizer"] > 0
    assert user.gpu_modules_s == {}


def test_gzip_and_plain_json_read_the_same(tmp_path: Path) -> None:
    plain = tmp_path / "t.json"
    with gzip.open(UNET, "rt") as f:
        plain.write_text(f.read())
    assert summarize_gpu(read_timeline(plain)).gpu_busy_s == summarize_gpu(read_timeline(UNET)).gpu_busy_s


@pytest.mark.parametrize("content", ["", "{not json", "[1, 2]", '{"foo": 1}'])
def test_bad_traces_are_clear_errors(tmp_path: Path, content: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(content)
    if content == "[1, 2]":  # a list of non-events: readable, empty
        assert not build_timeline(load_trace(p)).has_gpu
        return
    with pytest.raises(BenchbenchError):
        read_timeline(p)
    with pytest.raises(BenchbenchError, match="not found"):
        read_timeline(tmp_path / "missing.json")


def test_every_kernel_name_is_short_and_readable() -> None:
    names = set()
    for trace in TRUTH:
        names |= {d.name for d in read_timeline(trace).device}
    longest = max(names, key=len)
    assert len(longest) > 1000  # the raw names are C++ template instantiations
    shorts = {short_name(n) for n in names}
    assert max(len(s) for s in shorts) <= MAX_NAME
    assert short_name(longest).startswith("distribution_elementwise_grid_stride_kernel")
    copy = next(n for n in names if "bfloat16_copy_kernel_cuda" in n and n.startswith("void at::native::vectorized"))
    assert short_name(copy) == "vectorized_elementwise_kernel<…> [bfloat16_copy_kernel_cuda]"


def test_older_category_names_read_the_same(tmp_path: Path) -> None:
    """Traces from older torch versions name categories "Kernel", "Memcpy", "Runtime", "Operator"."""
    old = {"kernel": "Kernel", "gpu_memcpy": "Memcpy", "gpu_memset": "Memset", "cuda_runtime": "Runtime",
           "cpu_op": "Operator"}
    doc = load_trace(UNET)
    doc["traceEvents"] = [{**e, "cat": old.get(e.get("cat"), e.get("cat"))} for e in doc["traceEvents"]]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc))
    a, b = summarize_gpu(read_timeline(path)), summarize_gpu(read_timeline(UNET))
    assert (a.launches_per_step, a.kernels_per_step, a.gpu_busy_s) == (b.launches_per_step, b.kernels_per_step,
                                                                      b.gpu_busy_s)
    assert a.gpu_phases_s == b.gpu_phases_s
