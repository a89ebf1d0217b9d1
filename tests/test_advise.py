"""`benchbench advise`: candidates bounded by the base's own measurement (real H100 records and traces), the
numerics guard, and the experiment end to end on this CPU (real cells, real processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TESTS, record, upd, write_suite

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
                          if r.cell_id == "9183703d22aa"), C64)
    idle = rec.gpu.idle("launch") / rec.median
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
    from test_syncs import (  # a real .item() in the optimizer phase, built event by event
        item,
        step_with,
    )

    rec = next(r for r in read_records([H100 / "traced-segformer.jsonl"]) if r.cell_id == "9183703d22aa")
    g = step_with(item).summary(step_time_s=1e-3).to_dict()
    g["idle_breakdown_s"] = {"launch": 0.0, "sync": 0.3e-3, "data_wait": 0.0}
    rec = upd(rec, params={**rec.params, "amp": "fp16"}, step_time_s={"samples": [1e-3] * 5},
              breakdown={"gpu": g, "phases": {"optimizer": 0.1e-3}, "modules": {}, "top_ops": [], "step_s": 0.7e-3})
    [opt] = by_knob(candidates(rec))["optimizer"]
    assert opt.to == "adamw-fused" and opt.bound == pytest.approx(1 / (1 - 0.4), rel=1e-6)
    assert "host-sync idle 30%" in opt.why


def test_an_epoch_boundary_stall_is_not_a_case_for_more_workers() -> None:
    recs = read_records([H100 / "input_pipeline.jsonl"])
    r = next(r for r in recs if r.params["num_workers"] == 4 and r.params["amp"] == "none")
    k = by_knob(candidates(r))
    [w] = k["num_workers"]
    assert w.to == 8 and w.bound < 1.02 and "more workers cannot help" in w.why
    [cache] = k["cache"]
    assert cache.bound > 1.1  # the whole stall, boundaries included, is what caching can at most remove


def T(**training) -> object:
    return record(cell_id="c", status="error", training=training)


def test_numerics_verdicts() -> None:
    base = T(losses=[2.0, 1.8, 1.6, 1.5])
    seed = T(losses=[2.1, 1.9, 1.7, 1.55])
    same = T(losses=[2.0, 1.801, 1.6, 1.499])
    assert verdict(base, seed, same, "free")["verdict"] == "unchanged"
    off = T(losses=[2.0, 2.4, 2.9, 3.0])
    v = verdict(base, seed, off, "free")
    assert v["verdict"] == "diverges" and "did not go down" in v["why"]
    moved = T(losses=[2.0, 1.5, 1.2, 1.0])
    assert verdict(base, seed, moved, "free")["verdict"] == "changes the numerics"
    nan = T(losses=[2.0, float("nan"), float("nan"), float("nan")])
    assert verdict(base, seed, nan, "free")["verdict"] == "diverges"
    assert verdict(base, seed, moved, "model")["verdict"] == "changes the model — check accuracy"
    bad_params = T(losses=[2.0, 1.8, 1.6, 1.5], nonfinite_params=2)
    assert verdict(base, seed, bad_params, "free")["verdict"] == "diverges"


def test_grad_scaler_back_off_is_expected_skips_that_do_not_stop_diverge() -> None:
    """GradScaler starts at 2**16 and skips while its scale backs off: a prefix of skipped steps (no update,
    so the loss repeats) is what it is meant to do. Compared at equal updates, such a run is unchanged;
    skips still happening at the end of the run, or more than the back-off can explain, diverge."""
    fp32 = [2.0, 1.9, 1.8, 1.7, 1.6, 1.55, 1.5, 1.45, 1.4, 1.35, 1.3, 1.25]
    base = T(losses=fp32)
    seed = T(losses=[v * 1.02 for v in fp32])
    # three skipped steps (the loss stays where it was), then the fp32 trajectory one update at a time
    backoff = T(losses=[2.0, 2.0, 2.0] + fp32[:9],
                grad_scaler={"skipped_steps": 3, "skipped_at": [0, 1, 2], "init_scale": 65536.0})
    v = verdict(base, seed, backoff, "free")
    assert v["verdict"] == "unchanged" and "backed off" in v["why"], v
    late = T(losses=[2.0, 1.9, 1.8, 1.7, 1.6, 1.55, 1.5, 1.45, 1.4, 1.4, 1.4, 1.4],
             grad_scaler={"skipped_steps": 3, "skipped_at": [9, 10, 11], "init_scale": 65536.0})
    v = verdict(base, seed, late, "free")
    assert v["verdict"] == "diverges" and "did not stop" in v["why"]
    older = T(losses=fp32, grad_scaler={"skipped_steps": 3})  # a count only: back-off
    assert verdict(base, seed, older, "free")["verdict"] != "diverges"
    older_many = T(losses=fp32, grad_scaler={"skipped_steps": 40})
    assert verdict(base, seed, older_many, "free")["verdict"] == "diverges"


def test_grad_scaler_skips_are_read_from_its_own_flags() -> None:
    """A real GradScaler on this CPU with an initial scale fp16 cannot hold: the first steps skip, then none;
    the record names the skipped steps (read once, after the steps, from the scaler's own found-inf flags)."""
    import torch

    from benchbench.runner.program import training_fields
    from benchbench.workload.step import TrainStep

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1))
    params = {"amp": "fp16", "loss": "cross-entropy", "optimizer": "adamw", "lr": 1e-3}
    step = TrainStep(model, params, torch.device("cpu"))
    step.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40)
    x, y = torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16))
    losses = [float(step(x, y)) for _ in range(30)]
    t = training_fields(losses, step)
    at = t["grad_scaler"]["skipped_at"]
    assert at and at == list(range(len(at))), at  # a prefix: the back-off
    assert t["grad_scaler"]["skipped_steps"] == len(at) and t["grad_scaler"]["final_scale"] < 2.0 ** 40


@pytest.mark.slow
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
    code, _, err = cli("advise", suite, "--knobs", "amp", "--repeat-max", "3", "--min-runs", "2", "-o",
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
    roles = [r.advise.role for r in recs]
    assert roles == ["base-explained", "seed", "base", "candidate"]  # diverged at the first pair: stopped there
    # Every run is a normal record: report reads them.
    code, _, err = cli("report", results, "-o", tmp_path / "rep2", "--format", "md")
    assert code == 0, err
    # --resume on the finished file measures nothing again and says the same.
    code, _out, err = cli("advise", suite, "--knobs", "amp", "--repeat-max", "3", "--min-runs", "2", "-o",
                         tmp_path / "rep3", "--resume", results, "--json", tmp_path / "b.json")
    assert code == 0, err
    assert len(read_records([results])) == len(recs)
    assert json.loads((tmp_path / "b.json").read_text())["candidates"][0]["verdict"] == "diverges"


@pytest.mark.slow
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
    code, _out, err = cli("advise", suite, "--knobs", "cache,amp", "--repeat-max", "4", "--min-runs", "3", "-o",
                         tmp_path / "rep", "--results-dir", tmp_path / "res", "--json", tmp_path / "a.json")
    assert code == 0, err
    doc = json.loads((tmp_path / "a.json").read_text())
    k = {c["knob"]: c for c in doc["candidates"]}
    cache = k["cache"]
    assert cache["verdict"] == "faster" and cache["interval"][0] > 1.05, cache
    assert cache["numerics"]["verdict"] == "unchanged" and cache["recommended"]
    # the bound is Amdahl's on the timed steps' own wait and stage shares: it holds the rest of the step fixed, and
    # with the decoding gone the rest ran a little faster (0.89-0.95 of the measured gain in 5 runs here)
    assert 0.8 <= cache["bound"] / cache["speedup"] <= 1.2, cache
    assert "waited" in cache["why"] and "main process" in cache["why"]
    assert not k["amp"]["recommended"]
    assert doc["recommended"]["knobs"] == ["cache"]
    assert "cache: ram" in next((tmp_path / "rep").glob("*.yaml")).read_text()
    html = next((tmp_path / "rep").glob("*.html")).read_text()
    assert "<svg" in html and "bound" in html


def _gpu_fp32_record(top_ops: list[tuple[str, float]], busy: float, step: float, **params):
    """An fp32 CUDA cell whose breakdown's operators take `top_ops` seconds of GPU time in a `step`."""
    params = {"device": "cuda", "amp": "none", "data": {"kind": "synthetic"}, "num_workers": 0,
              "channels_last": True, "compile": True, "optimizer": "sgd", "batch_size": 8,
              "resolution": [32, 32], "pin_memory": None, **params}
    breakdown = {"gpu": {"idle_breakdown_s": {"launch": step - busy, "sync": 0, "data_wait": 0}},
                 "phases_sum_s": busy, "op_self_total_s": busy,
                 "top_ops": [{"name": n, "self_time_s": t} for n, t in top_ops]}
    return record(cell_id="x", status="ok", params=params, step_time_s={"median": step, "samples": [step] * 5},
                  breakdown=breakdown)


def test_the_amp_bound_uses_each_kinds_own_math_mode_and_holds() -> None:
    """fp32 matmuls run in IEEE fp32 by default (TF32 off for matmul, on for cuDNN convolutions): a
    matmul-heavy fp32 cell can gain the bf16/fp32 peak ratio there, far more than bf16/TF32. Attention
    kernels are matmuls; memory-bound operators gain at most 2x; idle gains nothing."""
    peaks = {"fp32": {"flops_per_s": 50e12}, "tf32": {"flops_per_s": 400e12}, "bf16": {"flops_per_s": 800e12}}
    rec = _gpu_fp32_record([("aten::mm", 0.3), ("aten::_efficient_attention_forward", 0.1),
                            ("aten::cudnn_convolution", 0.3), ("aten::add_", 0.2)], busy=0.9, step=1.0)
    [amp] = [c for c in candidates(rec, peaks) if c.knob == "amp" and c.to == "bf16"]
    expected = 1 / (0.4 / 16 + 0.3 / 2 + 0.2 / 2 + 0.1)  # mm+attention fp32->bf16 16x, conv tf32->bf16 2x
    assert amp.bound == pytest.approx(expected, rel=1e-6)
    assert "fp32 -> bf16: 16.0x" in amp.why and "tf32 -> bf16: 2.0x" in amp.why
    # What the old bound said (everything at the TF32 ratio, memory-bound ops free of AMP): 1.54x — a
    # measured 2.2x on such a cell would have exceeded its own bound.
    assert amp.bound > 2.2 > 1 / (0.1 + 0.2 + 0.7 / 2)


def test_amp_bounds_hold_on_the_h100_measurements() -> None:
    """Every AMP cell measured on the H100 beside its fp32 base: the base's bound is at least what was measured."""
    recs = {(r.params["amp"], r.params["channels_last"], r.params["compile"]): r
            for r in read_records([H100 / "amp_layout_compile.jsonl"])}
    for cl in (False, True):
        base = recs[("none", cl, False)]
        bounds = {c.to: c.bound for c in candidates(base, base.env.peak_flops) if c.knob == "amp"}
        for dt in ("bf16", "fp16"):
            cand = recs.get((dt, cl, False))
            if cand is None:
                continue
            measured = base.median / cand.median
            assert bounds[dt] is None or bounds[dt] >= measured, (dt, cl, bounds[dt], measured)


def test_pin_memory_is_no_knob_where_it_already_pins() -> None:
    """pin_memory None pins on CUDA (the loader's default there): True would be the same run under a new id."""
    r = read_records([H100 / "input_pipeline.jsonl"])[0]
    assert r.params["pin_memory"] is None and r.params["device"] == "cuda"
    assert "pin_memory" not in {c.knob for c in candidates(r)}
    off = upd(r, params={**r.params, "pin_memory": False})
    assert [c.to for c in candidates(off) if c.knob == "pin_memory"] == [True]


def test_pairs_alternate_abba_so_a_warming_gpu_favours_neither_side() -> None:
    """On a power- or heat-limited GPU the second run of a pair is slower. Two identical configurations,
    measured in ABBA order, come out equal; in the old A-then-B order the candidate was always second and
    read 10% slower."""
    from benchbench.advise.candidates import Candidate
    from benchbench.advise.experiment import Experiment, Options
    from benchbench.suite.build import build_suite

    suite = build_suite({"arch": "Unet", "encoder": "resnet18", "resolution": 32, "batch_size": 2}, device="cpu")
    base = suite.cells[0]
    order: list[str] = []

    def run(payload: dict) -> dict:
        second = len(order) % 2 == 1  # within each pair of runs, the second runs 10% slower
        order.append(payload["cell_id"])
        t = 0.11 if second else 0.10
        return {"schema": "benchbench.result/2", "suite": "s", "run_id": "r", "cell_id": payload["cell_id"],
                "status": "ok", "params": payload["params"], "step_time_s": {"samples": [t] * 5},
                "training": {"losses": [2.0, 1.9, 1.8]}}

    exp = Experiment(suite, base, "r", {}, run, lambda rec: None, Options(repeat_max=4, min_runs=4))
    params = {**base.params, "num_workers": 2}
    cand = Candidate("num_workers", 0, 2, 2.0, "test", "free", params)
    seed = T(losses=[2.0, 1.95, 1.85])
    o = exp.ab(cand, seed)
    roles = ["B" if c == base.id else "C" for c in order]
    assert roles == ["B", "C", "C", "B", "B", "C", "C", "B"]
    assert o.speedup == pytest.approx(1.0) and o.verdict != "slower"


def test_an_ab_measured_on_contended_cores_says_so_in_every_output() -> None:
    """advise alternates base and candidate, but contention comes in bursts: a knob whose runs were timed while
    another process held the cores keeps its verdict, and the JSON, Markdown, HTML and --attach's warnings say
    how many runs and what held the cores — a clean A/B says nothing."""
    from conftest import record

    from benchbench.advise.attached import Knob, Result, degraded_runs
    from benchbench.advise.candidates import Candidate
    from benchbench.advise.experiment import AdviseResult, Outcome
    from benchbench.report import advise as render
    from benchbench.suite import Cell

    held = {"cores": [0, 1], "n_cores": 2, "cell_threads": 2, "contended": True, "others_share": 0.5,
            "why": "others used 50% of the cell's 2 cores (stress 1.9 s)"}

    def run(ms: float, contended: bool = False):
        return record(cell_id="c", status="ok", step_time_s={"median": ms / 1e3, "samples": [ms / 1e3] * 3},
                      **({"cpu_contention": held} if contended else {}))

    def result(contended: bool) -> AdviseResult:
        res = AdviseResult(Cell("c", "unet", {"batch_size": 1}), base_record=run(10))
        o = Outcome(Candidate("num_workers", 0, 2, 1.5, "data wait 30%"), base_runs=[run(10), run(10.1)],
                    runs=[run(8, contended), run(8.1)], verdict="faster", speedup=1.24, interval=(1.2, 1.3))
        res.candidates, res.outcomes = [o.candidate], [o]
        return res

    clean, noisy = result(False), result(True)
    assert clean.warnings == [] and render.to_json(clean)["warnings"] == []
    assert "Warning" not in render.markdown(clean, 0.05)
    [w] = noisy.warnings
    assert w.startswith("num_workers: 1 of 4 runs measured on a machine not fit to measure on (CPU contended: "
                        "others used 50%") and "rerun advise alone" in w
    assert render.to_json(noisy)["warnings"] == [w] and noisy.outcomes[0].verdict == "faster"
    md = render.markdown(noisy, 0.05)
    assert f"> **Warning:** {render.md_escape(w)}" in md and md.index("Warning") < md.index("| knob")
    assert "class='warn'" in render.html_page(noisy, 0.05, "t")
    knob = Result(Knob("fused_optimizer", True), base=[run(10)], runs=[run(7, True)])
    [aw] = degraded_runs(run(10, True), [knob])[1:]
    assert degraded_runs(run(10), [Result(Knob("x", 1), base=[run(1)], runs=[run(1)])]) == []
    assert aw.startswith("fused_optimizer: 1 of 2 runs")


def test_a_predicted_steps_bound_is_set_against_the_ab_base_runs_and_a_shares_is_not() -> None:
    """A capacity bound is the base's step over a predicted step: against the explained run alone (10 ms) it
    read 2.00x while the A/B's own base runs took 11 ms, and the 2.15x measured over it was flagged "exceeded";
    against the runs the speed-up was measured on it is 2.20x and holds. An Amdahl bound on a share does not move."""
    from benchbench.advise.candidates import Candidate
    from benchbench.advise.experiment import AdviseResult, Outcome
    from benchbench.report import advise as render
    from benchbench.suite import Cell

    def run(ms: float):
        return record(cell_id="c", status="ok", step_time_s={"median": ms / 1e3, "samples": [ms / 1e3] * 3})

    cache = Candidate("cache", "none", "ram", 2.0, "capacity model: 5 ms a step", floor_s=0.005)
    share = Candidate("channels_last", False, True, 1.3, "convolution 23% of the step")
    base = [run(11), run(10.8), run(11.2)]
    oc = Outcome(cache, base_runs=base, runs=[run(5.1)] * 3, verdict="faster", speedup=2.15, interval=(2.1, 2.2))
    os_ = Outcome(share, base_runs=base, runs=[run(10)] * 3, verdict="faster", speedup=1.1, interval=(1.05, 1.15))
    assert oc.bound == pytest.approx(11 / 5) and os_.bound == 1.3
    assert Outcome(cache).bound == 2.0  # nothing measured yet: the explained run's
    res = AdviseResult(Cell("c", "unet", {"batch_size": 1}), base_record=run(10))
    res.candidates, res.outcomes = [cache, share], [oc, os_]
    doc = render.to_json(res)
    assert {c["knob"]: c["bound"] for c in doc["candidates"]} == {"cache": pytest.approx(2.2), "channels_last": 1.3}
    md = render.markdown(res, 0.05)
    assert "exceeded" not in md and "≤ 2.20x" in md and "set against the A/B's own base runs: ≤ 2.20x" in md
