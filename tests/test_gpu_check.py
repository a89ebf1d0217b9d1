"""The one-call GPU check, checked on a CPU: its micro cases' traces counted right, its dry run clean.

The micro cases' loop is run here for real under torch.profiler (CPU activities), with the CUDA calls each
case makes written into the exported trace at the places the case's ranges mark, event by event in kineto's
format — so the trace has exactly the micro case's structure (ProfilerStep#N, bb.step, the harness's final
sync) and the counter's answer on it is the answer the GPU run will get.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_micro  # noqa: E402

from benchbench.record import Record  # noqa: E402


def cudaify(path: Path, item: bool) -> None:
    """Write, into a CPU trace, the CUDA events the micro case makes: a kernel per step, `.item()` as
    aten::item -> _local_scalar_dense -> cudaMemcpyAsync DtoH (pinned) + cudaStreamSynchronize, and the
    harness's `torch.cuda.synchronize()` as a cudaDeviceSynchronize outside any aten op."""
    doc = json.loads(path.read_text())
    out: list[dict[str, Any]] = []
    corr = 1000
    for e in doc["traceEvents"]:
        if e.get("ph") != "X" or e.get("name") not in ("fake.step", "fake.sync"):
            out.append(e)
            continue
        ts, tid, pid = float(e["ts"]), e["tid"], e["pid"]

        def call(name: str, at: float, dur: float, work: tuple[str, str] | None = None, pid=pid, tid=tid) -> None:
            nonlocal corr
            corr += 1
            out.append({"ph": "X", "cat": "cuda_runtime", "name": name, "pid": pid, "tid": tid, "ts": at,
                        "dur": dur, "args": {"correlation": corr}})
            if work:
                out.append({"ph": "X", "cat": work[0], "name": work[1], "pid": 0, "tid": 7, "ts": at + 1.5,
                            "dur": 1.0, "args": {"correlation": corr, "stream": 7}})

        if e["name"] == "fake.sync":
            call("cudaDeviceSynchronize", ts, 0.5)
            continue
        call("cudaLaunchKernel", ts, 0.3, ("kernel", "void gemm_kernel<float>(float*)"))
        if item:
            out.append({"ph": "X", "cat": "cpu_op", "name": "aten::item", "pid": pid, "tid": tid, "ts": ts + 0.4,
                        "dur": 3.0, "args": {}})
            out.append({"ph": "X", "cat": "cpu_op", "name": "aten::_local_scalar_dense", "pid": pid, "tid": tid,
                        "ts": ts + 0.5, "dur": 2.8, "args": {}})
            call("cudaMemcpyAsync", ts + 0.6, 0.2, ("gpu_memcpy", "Memcpy DtoH (Device -> Pinned)"))
            call("cudaStreamSynchronize", ts + 0.9, 2.0)
    doc["traceEvents"] = out
    path.write_text(json.dumps(doc))


def micro_trace(tmp_path: Path, item: bool, loop: Any = None) -> dict[str, Any]:
    def step() -> None:
        with record_function("fake.step"):
            pass

    def sync() -> None:
        with record_function("fake.sync"):
            pass

    if loop is not None:
        gpu_micro.profiled_steps, saved = loop, gpu_micro.profiled_steps
    try:
        gpu_micro.traced("case", tmp_path, step, sync, activities=[ProfilerActivity.CPU], warmup=0)
    finally:
        if loop is not None:
            gpu_micro.profiled_steps = saved
    path = tmp_path / "trace-case.json"
    cudaify(path, item)
    return gpu_micro.trace_answer(path)


@pytest.mark.parametrize("item,expected", [(True, 1), (False, 0)])
def test_micro_cases_count_their_own_syncs_not_the_harness(tmp_path: Path, item: bool, expected: int) -> None:
    r = micro_trace(tmp_path, item)
    assert r["steps"] == gpu_micro.STEPS and r["step_source"] == "bb.step"
    assert r["syncs_per_step"] == pytest.approx(expected)
    assert r["kernels_per_step"] == 1


def test_the_old_micro_loop_blamed_its_own_sync_on_the_case(tmp_path: Path) -> None:
    """What the check did before: the final sync inside the last ProfilerStep#, no bb.step ranges —
    1 sync per step read 1.33 and 0 read 0.33. Kept as the proof that the layout, not the counter, was wrong."""
    def old(step, sync, prof_step, steps=gpu_micro.STEPS):
        for i in range(steps + 1):
            step()
            if i == steps:
                sync()
            prof_step()

    assert micro_trace(tmp_path, True, old)["syncs_per_step"] == pytest.approx(4 / 3)
    assert micro_trace(tmp_path, False, old)["syncs_per_step"] == pytest.approx(1 / 3)


def test_micro_dry_run_and_bad_case() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_micro.py"), "--dry-run"], capture_output=True,
                        text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["cases"] == list(gpu_micro.CASES)
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_micro.py"), "--cases", "nope"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "unknown case" in bad.stderr


STEPS = ("env", "micro", "attach", "cuda-tests", "ranks", "conditions", "fidelity", "gpu-launch-fp16", "oom", "graphs",
         "explain-traces")


@pytest.mark.slow
def test_the_gpu_check_rehearsal_runs_every_step_on_this_cpu(tmp_path: Path) -> None:
    """`--rehearse`: every step of the check executed for real on the CPU at the smallest size — the same code
    paths and files as on the device — so a step that would raise there (an import that moved, a typed record
    read as a dict) raises here first. Each step's answers are in a file of their own."""
    env = {**os.environ, "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--rehearse", str(tmp_path / "check")],
                       capture_output=True, text=True, env=env, timeout=1500, cwd=ROOT)
    out = tmp_path / "check"
    summary = (out / "summary.txt").read_text()
    logs = {p.name: p.read_text()[-3000:] for p in out.glob("*.log")}
    assert r.returncode == 0, summary + json.dumps(logs, indent=1)
    for step in STEPS:
        assert re.search(rf"^{re.escape(step)}\s+rc=0\s", summary, re.M), summary
    # each micro case in its own file: the graphs step did not overwrite the first micro step's answers
    for case in ("syncs", "peak", "scaler", "graphs"):
        got = json.loads((out / "micro" / f"{case}.json").read_text())
        assert got and all(c["ok"] and c["rehearsal"] for c in got), got
    # the conditions cases each in a fresh process (a CUDA context of one is never seen by the next)
    cond = json.loads((out / "conditions.json").read_text())
    assert [c["case"] for c in cond] == ["soak", "tracker_cost", "slurm_job_other_processes"]
    assert len({c["pid"] for c in cond}) == 3
    fid = json.loads((out / "fidelity.json").read_text())
    assert fid["rehearsal"] is True and fid["blocks"]
    # attach ran the CamVid loop unmodified: fp16 under GradScaler, its losses unscaled
    rec = Record.of(json.loads((out / "attach" / "record.json").read_text()))
    assert rec.ok and rec.params["amp"] == "fp16" and rec.attached.grad_scaler
    assert rec.training and all(v is None or v < 50 for v in rec.training.losses), rec.training.losses
    launch = [Record.of(json.loads(x)) for x in (out / "gpu_launch_fp16.jsonl").read_text().splitlines()]
    assert launch and all(x.ok for x in launch)
    # attach under torchrun: one rank, then two, each rank's steps kept
    for name, world in (("nccl", 1), ("gloo", 2)):
        ranks = Record.of(json.loads((out / "ranks" / f"record-{name}.json").read_text()))
        assert ranks.ok and ranks.distributed and ranks.distributed.world_size == world
        assert all(len(r.step_s) == 4 for r in ranks.distributed.ranks)


@pytest.mark.slow
def test_the_gpu_check_dry_run_passes_here(tmp_path: Path) -> None:
    """Every step's command, the imports, each script's arguments, the suites (expanded for CUDA on this CPU)
    and the wheel list's closure: what would fail at import or parsing under the GPU's clock fails here."""
    env = {**os.environ, "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--dry-run", str(tmp_path / "check")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dry run: ok" in r.stdout and "FAIL" not in r.stdout
    for step in STEPS:
        assert f"\n{step} " in "\n" + r.stdout


@pytest.mark.slow
def test_the_gpu_check_keeps_to_its_deadline_and_keeps_what_it_measured(tmp_path: Path) -> None:
    """With too little budget left a step is skipped and says so; the archive is written on exit with every
    step's log and the summary."""
    import tarfile
    import time

    env = {**os.environ, "PYTHON": sys.executable, "BUDGET_S": "20"}
    t0 = time.monotonic()
    subprocess.run(["bash", str(ROOT / "benchmarks/gpu_check.sh"), "--archive", str(tmp_path / "c.tgz"),
                        str(tmp_path / "check")], capture_output=True, text=True, env=env, timeout=300)
    assert time.monotonic() - t0 < 20 + 30  # a step's limit never runs past the deadline (+ kill grace)
    summary = (tmp_path / "check" / "summary.txt").read_text()
    assert "skipped:" in summary and "budget left" in summary
    with tarfile.open(tmp_path / "c.tgz") as tar:
        names = tar.getnames()
    assert "check/summary.txt" in names and "check/env.log" in names
