"""`benchbench advise`: candidates bounded by the base's own measurement (real H100 records and traces), the
numerics guard, and the experiment end to end on this CPU (real cells, real processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TESTS, write_suite

from benchbench.advise.candidates import candidates
from benchbench.advise.numerics import verdict
from benchbench.analysis.trace import with_trace
from benchbench.results import read_records

H100 = Path(__file__).parent / "fixtures" / "h100"
C64 = H100 / "trace-segformer-c64-9183703d22aa.json.gz"


def by_knob(cands: list) -> dict:
    out: dict = {}
    for c in cands:
        out.setdefault(c.knob, []).append(c)
    return out


def test_launch_bound_segformer_gets_compile_cuda_graphs_and_batch_bounded_by_its_idle() -> None:
    rec = with_trace(next(r for r in read_records([H100 / "traced-segformer.jsonl"])
                          if r["cell_id"] == "9183703d22aa"), C64)
    idle = rec["breakdown"]["gpu"]["idle_breakdown_s"]["launch"] / rec["step_time_s"]["median"]
    assert 0.25 < idle < 0.3
    k = by_knob(candidates(rec))
    assert [c.to for c in k["compile"]] == [True, "reduce-overhead"]
    assert all(c.bound >= 1 / (1 - idle) for c in k["compile"]) and "launches" in k["compile"][0].why
    [b] = k["batch_size"]
    assert b.to == 32 and b.kind == "optimisation" and b.bound == pytest.approx(1 / (1 - idle), rel=0.05)
    assert {c.to for c in k["decoder_channels"]} == {32, 16}  # 64 -> 32, 16: the model changes
    assert all(c.kind == "model" for c in k["decoder_channels"])
    assert "num_workers" not in k  # synthetic data: no input knob to turn


def test_grad_scaler_sync_bounds_a_fused_optimizer() -> None:
    from test_syncs import item, step_with  # a real .item() in the optimizer phase, built event by event

    rec = next(r for r in read_records([H100 / "traced-segformer.jsonl"]) if r["cell_id"] == "9183703d22aa")
    g = step_with(item).summary(step_time_s=1e-3).to_dict()
    g["idle_breakdown_s"] = {"launch": 0.0, "sync": 0.3e-3, "data_wait": 0.0}
    rec = {**rec, "params": {**rec["params"], "amp": "fp16"},
           "step_time_s": {"median": 1e-3, "samples": [1e-3] * 5},
           "breakdown": {"gpu": g, "phases": {"optimizer": 0.1e-3}, "modules": {}, "top_ops": [], "step_s": 0.7e-3}}
    [opt] = by_knob(candidates(rec))["optimizer"]
    assert opt.to == "adamw-fused" and opt.bound == pytest.approx(1 / (1 - 0.4), rel=1e-6)
    assert "host-sync idle 30%" in opt.why


def test_an_epoch_boundary_stall_is_not_a_case_for_more_workers() -> None:
    recs = read_records([H100 / "input_pipeline.jsonl"])
    r = next(r for r in recs if r["params"]["num_workers"] == 4 and r["params"]["amp"] == "none")
    k = by_knob(candidates(r))
    [w] = k["num_workers"]
    assert w.to == 8 and w.bound < 1.02 and "more workers cannot help" in w.why
    [cache] = k["cache"]
    assert cache.bound > 1.1  # the whole stall, boundaries included, is what caching can at most remove


def test_numerics_verdicts() -> None:
    base = {"training": {"losses": [2.0, 1.8, 1.6, 1.5]}}
    seed = {"training": {"losses": [2.1, 1.9, 1.7, 1.55]}}
    same = {"training": {"losses": [2.0, 1.801, 1.6, 1.499]}}
    assert verdict(base, seed, same, "free")["verdict"] == "unchanged"
    off = {"training": {"losses": [2.0, 2.4, 2.9, 3.0]}}
    v = verdict(base, seed, off, "free")
    assert v["verdict"] == "diverges" and "did not go down" in v["why"]
    moved = {"training": {"losses": [2.0, 1.5, 1.2, 1.0]}}
    assert verdict(base, seed, moved, "free")["verdict"] == "changes the numerics"
    nan = {"training": {"losses": [2.0, float("nan"), float("nan"), float("nan")]}}
    assert verdict(base, seed, nan, "free")["verdict"] == "diverges"
    assert verdict(base, seed, moved, "model")["verdict"] == "changes the model — check accuracy"
    scaler = {"training": {"losses": [2.0, 1.8, 1.6, 1.5], "grad_scaler": {"skipped_steps": 3}}}
    assert verdict(base, seed, scaler, "free")["verdict"] == "diverges"


def test_a_knob_that_breaks_training_is_never_recommended_and_resume_replays(tmp_path: Path, cli,
                                                                              monkeypatch) -> None:
    monkeypatch.chdir(TESTS)
    suite = write_suite(tmp_path / "nan.yaml", """
name: nan
arch: "factories:nan_under_autocast"
device: cpu
resolution: 32
batch_size: 2
classes: 3
warmup: 1
steps: 3
""")
    code, out, err = cli("advise", suite, "--knobs", "amp", "--repeat-max", "3", "--min-runs", "2", "-o",
                         tmp_path / "rep", "--results-dir", tmp_path / "res", "--json", tmp_path / "a.json")
    assert code == 0, err
    doc = json.loads((tmp_path / "a.json").read_text())
    [amp] = doc["candidates"]
    assert amp["knob"] == "amp" and amp["verdict"] == "diverges" and not amp["recommended"]
    assert "not finite" in amp["numerics"]["why"]
    assert doc["recommended"]["knobs"] == [] and doc["recommended"]["speedup"] == 1.0
    for key in ("base", "candidates", "recommended"):
        assert key in doc
    for key in ("knob", "from", "to", "bound", "speedup", "interval", "verdict", "numerics", "runs"):
        assert key in amp
    [results] = list((tmp_path / "res").rglob("advise-*.jsonl"))
    recs = read_records([results])
    roles = [r["advise"]["role"] for r in recs]
    assert roles == ["base-explained", "seed", "base", "candidate"]  # diverged at the first pair: stopped there
    # Every run is a normal record: report reads them.
    code, _, err = cli("report", results, "-o", tmp_path / "rep2", "--format", "md")
    assert code == 0, err
    # --resume on the finished file measures nothing again and says the same.
    code, out, err = cli("advise", suite, "--knobs", "amp", "--repeat-max", "3", "--min-runs", "2", "-o",
                         tmp_path / "rep3", "--resume", results, "--json", tmp_path / "b.json")
    assert code == 0, err
    assert len(read_records([results])) == len(recs)
    assert json.loads((tmp_path / "b.json").read_text())["candidates"][0]["verdict"] == "diverges"


def test_an_input_bound_cell_gets_an_input_fix_measured_faster(tmp_path: Path, cli, monkeypatch) -> None:
    """Decoding 360x480 PNGs in the main process dominates a tiny model's step: caching the decoded set in RAM
    is measured faster with its interval and the numerics unchanged; bf16 on this CPU is not recommended."""
    monkeypatch.chdir(TESTS)
    suite = write_suite(tmp_path / "inp.yaml", """
name: inp
arch: "factories:tiny"
device: cpu
data: {kind: synthetic-disk, image_size: [360, 480], count: 16}
num_workers: 0
resolution: 64
batch_size: 4
classes: 4
warmup: 2
steps: 6
""")
    code, out, err = cli("advise", suite, "--knobs", "cache,amp", "--repeat-max", "4", "--min-runs", "3", "-o",
                         tmp_path / "rep", "--results-dir", tmp_path / "res", "--json", tmp_path / "a.json")
    assert code == 0, err
    doc = json.loads((tmp_path / "a.json").read_text())
    k = {c["knob"]: c for c in doc["candidates"]}
    cache = k["cache"]
    assert cache["verdict"] == "faster" and cache["interval"][0] > 1.05, cache
    assert cache["numerics"]["verdict"] == "unchanged" and cache["recommended"]
    assert cache["bound"] >= cache["interval"][0]  # what was proven is within what the stall allows
    assert not k["amp"]["recommended"]
    assert doc["recommended"]["knobs"] == ["cache"] and "cache: ram" in next((tmp_path / "rep").glob("*.yaml")).read_text()
    html = next((tmp_path / "rep").glob("*.html")).read_text()
    assert "<svg" in html and "bound" in html
