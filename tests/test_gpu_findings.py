"""GPU findings on real H100 records and traces: each one comes out of the fixture it belongs to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import upd
from typer.testing import CliRunner

from benchbench.analysis.findings import find_all
from benchbench.analysis.trace import with_trace
from benchbench.cli import app
from benchbench.results import read_records

H100 = Path(__file__).parent / "fixtures" / "h100"
C64 = H100 / "trace-segformer-c64-9183703d22aa.json.gz"
C512 = H100 / "trace-segformer-c512-f0b0d46df99f.json.gz"
UNET = H100 / "trace-unet-disk-workers4-3be7596980d6.json.gz"


@pytest.fixture(scope="module")
def segformer() -> list[dict]:
    recs = {r.cell_id: r for r in read_records([H100 / "traced-segformer.jsonl"])}
    return [with_trace(recs["9183703d22aa"], C64), with_trace(recs["f0b0d46df99f"], C512)]


def texts(findings: list) -> list[str]:
    return [f.sentence + " " + (f.suggestion or "") for f in findings]


def test_launch_bound_segformer_c64(segformer: list[dict]) -> None:
    fs = find_all(segformer)
    lb = [f for f in fs if f.kind == "launch_bound"]
    assert [f.cells for f in lb] == [["9183703d22aa"]]  # C=512 keeps its GPU busy: only 4% idle
    f = lb[0]
    assert "1417 launches per step" in f.sentence and "idle 27%" in f.sentence
    assert f.evidence["gpu_idle_launch_s"] == pytest.approx(0.0115, abs=0.0005)
    assert "torch.compile" in f.suggestion


def test_gpu_pairwise_delta_splits_busy_and_idle(segformer: list[dict]) -> None:
    [p] = [f for f in find_all(segformer, pairs=[("f0b0d46df99f", "9183703d22aa")]) if f.kind == "pairwise_delta"]
    g = p.evidence["gpu"]
    assert g["delta_busy_s"] == pytest.approx(0.0178, abs=0.0005)
    assert g["delta_idle_s"] < 0  # the extra decoder work filled idle time
    assert g["delta_step_s"] == pytest.approx(g["delta_busy_s"] + g["delta_idle_s"], abs=1e-6)
    assert "GPU busy +17.8 ms (decoder +17.5" in p.sentence and "GPU idle -9.4 ms (11.5 -> 2.1 ms)" in p.sentence
    assert "filled time the faster cell's GPU spent idle" in p.sentence


def test_dominant_module_reads_gpu_time(segformer: list[dict]) -> None:
    fs = [f for f in find_all(segformer) if f.kind == "dominant_module"]
    assert fs and all("of GPU busy time" in f.sentence for f in fs)


def test_epoch_boundary_stall_for_the_four_worker_cell() -> None:
    recs = read_records([H100 / "input_pipeline.jsonl"])
    fs = find_all(recs)
    eb = [f for f in fs if f.kind == "input_epoch_boundary"]
    workers = {r.cell_id: r.params["num_workers"] for r in recs}
    assert {workers[f.cells[0]] for f in eb} == {4, 8}
    f = next(f for f in eb if workers[f.cells[0]] == 4 and "amp=none" in f.sentence)
    assert "every 8th step, the first of each epoch (64 images / batch 8)" in f.sentence
    assert f.evidence["period"] == 8 and f.evidence["spikes"] == 6
    assert "not more workers" in f.suggestion
    # Without workers the wait is steady, and the measured fix is cited.
    steady = [f for f in fs if f.kind == "input_bound" and "workers=0 data=synthetic-disk" in f.sentence]
    assert steady and "every step waits" in steady[0].sentence
    assert steady[0].verified_by and steady[0].verified_by["axis"] == "num_workers"


def test_amp_findings_on_a_gpu_are_not_generic() -> None:
    recs = read_records([H100 / "amp_layout_compile.jsonl"])
    amp = [f for f in find_all(recs) if f.kind in ("amp_effect", "compile_effect")]
    assert amp
    for f in amp:
        assert "autocast keeps in fp32" not in f.sentence
        assert " ms" in f.sentence  # measured numbers, not a sentence that fits any model
    fp16 = [f for f in amp if "amp=fp16" in f.sentence]
    assert fp16 and all("GradScaler" in f.sentence for f in fp16 if f.evidence["speedup"] < 1)


def test_no_name_longer_than_80_characters(segformer: list[dict]) -> None:
    recs = segformer + read_records([H100 / "segformer_channels.jsonl", H100 / "amp_layout_compile.jsonl"])
    for f in find_all(recs, pairs=[("f0b0d46df99f", "9183703d22aa")]):
        for op in (f.evidence.get("op_deltas_s") or {}):
            assert len(op) <= 80
    for r in segformer:
        for k in r.gpu.top_kernels:
            assert len(k.name) <= 80


def test_explain_trace_json_has_the_documented_keys() -> None:
    res = CliRunner().invoke(app, ["explain-trace", str(C64), "--step-time", "0.0423", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    for key in ("steps", "launches_per_step", "kernels_per_step", "gpu_busy_s", "gpu_phases_s", "gpu_idle_fraction",
                "host_syncs", "findings"):
        assert key in doc
    assert set(doc["gpu_phases_s"]) == {"forward", "backward", "loss", "optimizer", "host_to_device", "other"}
    assert doc["launches_per_step"] == 1417 and doc["gpu_idle_fraction"] == pytest.approx(0.27, abs=0.01)
    assert any(f["kind"] == "launch_bound" for f in doc["findings"])


def test_explain_trace_with_record_finds_the_epoch_boundary() -> None:
    res = CliRunner().invoke(app, ["explain-trace", str(UNET), "--record", str(H100 / "traced-input-workers4.jsonl"),
                                   "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["step_time_source"].startswith("record 3be7596980d6")
    assert {f["kind"] for f in doc["findings"]} >= {"launch_bound", "input_epoch_boundary"}


def test_explain_trace_text_and_bad_input(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["explain-trace", str(C512)])
    assert res.exit_code == 0 and "--step-time" in res.output  # idle unknown without the real step time
    bad = tmp_path / "x.json"
    bad.write_text("nope")
    import subprocess
    import sys

    from benchbench.cli import main

    out = subprocess.run([sys.executable, "-m", "benchbench", "explain-trace", str(bad)], capture_output=True,
                         text=True)
    assert out.returncode == 2 and "not a readable JSON trace" in out.stderr and "Traceback" not in out.stderr
    assert main  # the entry point that turns errors into exit 2


def test_a_host_sync_is_named_with_its_op_and_phase(tmp_path: Path) -> None:
    """The C=64 trace's own post-step cudaDeviceSynchronize, re-parented under the aten op that `.item()`
    runs (`aten::_local_scalar_dense`) inside the optimizer phase, as GradScaler.step's check would be:
    it is then the model's sync, named, counted per step and explained."""
    from benchbench.analysis.findings.gpu import host_sync
    from benchbench.analysis.records import THRESHOLDS
    from benchbench.timeline.reader import load_trace

    doc = load_trace(C64)
    ev = doc["traceEvents"]
    steps = sorted((e for e in ev if e.get("name") == "bb.step"), key=lambda e: e["ts"])
    added = []
    for s in steps:
        end = s["ts"] + s["dur"]
        sync = max((e for e in ev if e.get("name") == "cudaDeviceSynchronize" and s["ts"] <= e["ts"] <= end),
                   key=lambda e: e["ts"])
        for name, cat in (("bb.phase:optimizer", "user_annotation"), ("aten::_local_scalar_dense", "cpu_op")):
            added.append({"ph": "X", "cat": cat, "name": name, "pid": sync["pid"], "tid": sync["tid"],
                          "ts": sync["ts"] - 1, "dur": sync["dur"] + 2, "args": {}})
    path = tmp_path / "synced.json"
    path.write_text(json.dumps({**doc, "traceEvents": ev + added}))
    res = CliRunner().invoke(app, ["explain-trace", str(path), "--step-time", "0.0423", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["host_syncs"] == [{"op": "aten::_local_scalar_dense", "phase": "optimizer",
                                  "call": "cudaDeviceSynchronize", "per_step": 1.0,
                                  "wait_s_per_step": pytest.approx(out["host_syncs"][0]["wait_s_per_step"]),
                                  "gpu_idle_after_s_per_step": pytest.approx(
                                      out["host_syncs"][0]["gpu_idle_after_s_per_step"])}]
    assert out["harness_syncs_excluded"] == {"cudaDeviceSynchronize": 2}  # the host-to-device ones stay excluded
    [f] = [f for f in out["findings"] if f["kind"] == "host_sync"]
    assert "1x cudaDeviceSynchronize from aten::_local_scalar_dense in optimizer" in f["sentence"]
    assert "`.item()`" in f["sentence"]
    # As a record of an fp16 cell with a plain AdamW: GradScaler, and the fused optimizer as the fix.
    rec = with_trace(read_records([H100 / "traced-segformer.jsonl"])[0], path)
    rec = upd(rec, params={**rec.params, "amp": "fp16"})
    [f] = host_sync([rec], THRESHOLDS)
    assert "GradScaler.step" in f.sentence and "adamw-fused" in f.suggestion


def test_report_from_records_and_their_traces(tmp_path: Path) -> None:
    """`report --traces`: old H100 records get their breakdown from the GPU timeline of their traces."""
    res = CliRunner().invoke(app, ["report", str(H100 / "traced-segformer.jsonl"), "--traces", str(H100),
                                   "-o", str(tmp_path), "--format", "md"])
    assert res.exit_code == 0, res.output
    [md] = list(tmp_path.rglob("*.md"))
    text = md.read_text()
    assert "GPU timeline (per step)" in text and "1417 / 1263" in text and "launch\\_bound" in text
    assert max(len(w) for w in text.split() if not w.startswith("|:-")) <= 80  # no C++ template name anywhere


def test_breakdown_deltas_carry_the_gpu_split(segformer: list[dict]) -> None:
    """The one delta function compare and history use: C=64 -> C=512 on the GPU timeline."""
    from benchbench.analysis.records import breakdown_deltas
    from benchbench.report.compare import deltas_text

    d = breakdown_deltas(segformer[0].breakdown, segformer[1].breakdown)
    assert d["gpu_busy_delta_s"] == pytest.approx(0.0178, abs=0.0005) and d["gpu_idle_delta_s"] < 0
    assert d["module_deltas_s"]["decoder"] == pytest.approx(0.0175, abs=0.0005)
    text = "; ".join(deltas_text(d))
    assert text.startswith("GPU busy +17.8") and "largest module delta decoder +17.4" in text


def test_input_bound_on_a_gpu_means_the_gpu_starved() -> None:
    """The host runs ahead of the GPU: a data wait shorter than the queued work stalls nothing. The same real
    H100 record (workers=0, host waits ~100 ms a step) is input-bound only when the GPU sat idle for it."""
    from benchbench.analysis.findings.inputs import data_wait
    from benchbench.analysis.records import THRESHOLDS

    recs = read_records([H100 / "input_pipeline.jsonl"])
    r = next(r for r in recs if r.params["num_workers"] == 0 and r.params["data"]["kind"] == "synthetic-disk"
             and r.params["amp"] == "none")
    host = r.data_wait_s.samples
    assert r.data_wait_s.fraction > 0.5
    old = data_wait([r], THRESHOLDS)  # no starvation timing: the host wait, said to be an upper bound
    assert old and "upper bound" in old[0].sentence
    dw = r.data_wait_s.model_dump()
    gpu_bound = upd(r, data_wait_s={**dw, "gpu_starved_s": {
        "median": 0.0, "p90": 0.0, "max": 0.0, "samples": [0.0] * len(host), "fraction": 0.0}})
    assert data_wait([gpu_bound], THRESHOLDS) == []
    starved = [0.8 * w for w in host]
    input_bound = upd(r, data_wait_s={**dw, "gpu_starved_s": {
        "median": float(np.median(starved)), "p90": max(starved), "max": max(starved), "samples": starved,
        "fraction": r.data_wait_s.fraction * 0.8}})
    [f] = data_wait([input_bound], THRESHOLDS)
    assert "the GPU sits idle waiting for the input pipeline" in f.sentence and "the host waited" in f.sentence
    assert f.evidence["stall_basis"] == "GPU idle waiting for the batch"


def test_a_gpu_bound_step_is_not_launch_bound() -> None:
    """The Unet trace with its GPU busy nearly the whole timed step: the idle left is no launch problem."""
    from benchbench.analysis.trace import explain_trace

    busy = explain_trace(UNET)["gpu_busy_s"]
    doc = explain_trace(UNET, step_time_s=busy * 1.03)
    assert doc["gpu_idle_fraction"] < 0.05
    assert not [f for f in doc["findings"] if f["kind"] == "launch_bound"]
