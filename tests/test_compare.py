from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import as_records, upd, write_records

from benchbench.analysis.compare import compare, judge
from benchbench.errors import BenchbenchError


def medians(center: float, n: int = 3, cv: float = 0.01, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(center * np.exp(rng.normal(0, cv, n)))


def test_verdicts_follow_the_interval() -> None:
    assert judge(medians(1.0), medians(1.15, seed=1))["verdict"] == "slower"
    assert judge(medians(1.0), medians(0.8, seed=1))["verdict"] == "faster"
    same = judge(medians(1.0), medians(1.005, seed=1))
    assert same["verdict"] == "unchanged" and "within +-5%" in same["reason"]
    assert 0.05 < same["mde"] < 0.15  # the smallest slowdown this comparison can see
    wide = judge(medians(1.0, cv=0.2), medians(1.08, cv=0.2, seed=1))
    assert wide["verdict"] == "noisy" and "spread too large" in wide["reason"]


def test_three_runs_a_side_can_say_slower() -> None:
    """The nightly setting: an exact rank test on 3 vs 3 run medians cannot go below p = 0.10."""
    res = judge([1.000, 1.001, 0.999], [1.092, 1.091, 1.093])
    assert res["verdict"] == "slower" and res["ci_low"] > 1.05


def test_one_run_a_side_is_insufficient_unless_the_spread_is_known() -> None:
    res = judge([1.0], [1.3])
    assert res["verdict"] == "noisy" and "insufficient runs (1 vs 1)" in res["reason"] and res.get("ci_low") is None
    known = judge([1.0], [1.3], known_run_cv=0.02)
    assert known["verdict"] == "slower" and "known run-to-run CV" in known["method"]
    # a shift of the size this CPU shows between identical runs is not called a regression
    assert judge([1.0], [1.15], known_run_cv=0.10)["verdict"] == "noisy"


def test_unchanged_needs_the_whole_interval_within_the_threshold() -> None:
    """A true +4% measured with a wide interval is not `unchanged` (the old rule said it was)."""
    res = judge(medians(1.0, cv=0.03), medians(1.04, cv=0.03, seed=1))
    assert res["verdict"] == "noisy"
    assert "upper bound is above +5%" in res["reason"]


def test_mde_is_true_in_simulation() -> None:
    """At the MDE it reports, the gate detects ~80%; at 1.5x it, >= 95% (3 vs 3 runs, CV 5%)."""
    rng = np.random.default_rng(7)
    sd = 0.05
    mdes = [judge(list(np.exp(rng.normal(0, sd, 3))), list(np.exp(rng.normal(0, sd, 3))))["mde"] for _ in range(300)]
    mde = float(np.median(mdes))
    for mult, lo, hi in ((1.0, 0.7, 0.9), (1.5, 0.95, 1.0)):
        hits = sum(judge(list(np.exp(rng.normal(0, sd, 3))),
                         list(np.exp(rng.normal(np.log1p(mult * mde), sd, 3))))["verdict"] == "slower"
                   for _ in range(600))
        assert lo <= hits / 600 <= hi, (mult, hits / 600)


H100_GATE = Path(__file__).parent / "fixtures" / "h100" / "gate-aa-5pct-9pct.jsonl"


def gate_runs() -> list[list[dict]]:
    from benchbench.results import read_records

    recs = read_records([H100_GATE])
    ids = list(dict.fromkeys(r.run_id for r in recs))
    return [[r for r in recs if r.run_id == i] for i in ids]


def test_h100_gate_fixture_verdicts() -> None:
    """Real H100 runs (run-to-run CV ~0.1%), 3 processes each: A/A, then +4.9% and +9.2% work."""
    a, a2, plus5, plus9 = gate_runs()
    [aa] = compare(a, a2)
    assert aa.verdict == "unchanged" and aa.mde < 0.06
    [v5] = compare(a, plus5)
    # +4.9% [+4.4%, +5.4%] straddles 5%: neither `unchanged` nor `slower` is true of that interval.
    assert v5.verdict == "noisy" and "upper bound is above +5%" in v5.reason and "about the threshold" in v5.reason
    [v5_2] = compare(a, plus5, threshold=0.02)
    assert v5_2.verdict == "slower" and v5_2.ci_low > 1.02
    [v9] = compare(a, plus9)
    assert v9.verdict == "slower" and v9.ci_low > 1.05 and v9.ratio == pytest.approx(1.092, abs=0.002)


def test_h100_gate_fixture_exit_codes(tmp_path: Path, cli) -> None:
    a, a2, plus5, plus9 = gate_runs()
    paths = [write(tmp_path / f"{n}.jsonl", rs) for n, rs in (("a", a), ("a2", a2), ("p5", plus5), ("p9", plus9))]
    assert cli("compare", paths[0], paths[1])[0] == 0
    assert cli("compare", paths[0], paths[2])[0] == 0
    assert cli("compare", paths[0], paths[2], "--threshold", "0.02")[0] == 1
    code, _out, err = cli("compare", paths[0], paths[3], "--markdown", tmp_path / "s.md")
    assert code == 1 and "regression" in err
    md = (tmp_path / "s.md").read_text()
    assert "| slower |" in md and "MDE" in md


def test_cell_threshold_from_the_suite() -> None:
    a, _, plus5, _ = gate_runs()
    tight = [upd(r, params={**r.params, "gate_threshold": 0.02}) for r in plus5]
    [v] = compare(a, tight)
    assert v.threshold == 0.02 and v.verdict == "slower"
    [v] = compare(a, tight, threshold=0.05)  # an explicit --threshold wins
    assert v.verdict == "noisy"


def test_oom_backoff_and_world_size_are_not_the_same_work() -> None:
    a, a2, _, _ = gate_runs()
    backed = [upd(r, oom_backoff={"attempts": [{"batch_size": 16, "status": "oom"}], "batch_size_ran": 8})
              for r in a2]
    [v] = compare(a, backed)
    assert v.verdict == "failed" and "ran batch 8 after an OOM at batch 16" in v.reason
    [v] = compare(backed, a)
    assert v.verdict == "incomparable"
    ranks = [upd(r, params={**r.params, "world_size": 2}) for r in a2]
    [v] = compare(a, ranks)
    assert v.verdict == "incomparable" and "not the same work" in v.reason


def runs(median: float, n: int = 30, runs: int = 1, noise: float = 0.01, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [median * (1 + rng.normal(0, noise, n)) for _ in range(runs)]


def record(cid: str, samples, status: str = "ok", fp: str = "aaa", **env) -> dict:
    return {"schema": "benchbench.result/1", "suite": "s", "run_id": "r", "cell_id": cid, "label": cid,
            "params": {"batch_size": 2}, "status": status, "error": None if status == "ok" else "boom",
            "step_time_s": {"samples": list(map(float, samples)), "median": float(np.median(samples))}
            if status == "ok" else None,
            "env": {"fingerprint": fp, "torch": "2.4", "gpu": None, **env}}


def three(cid: str, median: float, seed: int, **kw) -> list[dict]:
    return [record(cid, r, **kw) for r in runs(median, runs=3, noise=0.01, seed=seed)]


def test_cell_matching_new_missing_failed() -> None:
    b = three("a", 1.0, 0) + [record("gone", runs(1.0)[0]), record("f", runs(1.0)[0])]
    c = three("a", 1.0, 2) + [record("fresh", runs(1.0)[0]), record("f", [], status="timeout")]
    v = {x.cell_id: x.verdict for x in compare(as_records(*b), as_records(*c))}
    assert v == {"a": "unchanged", "gone": "missing", "f": "failed", "fresh": "new"}


def test_env_mismatch_is_refused_with_the_difference() -> None:
    b = three("a", 1.0, 0, fp="aaa", gpu="A100")
    c = three("a", 1.0, 1, fp="bbb", gpu="H100")
    b, c = as_records(*b), as_records(*c)
    with pytest.raises(BenchbenchError, match="gpu: 'A100' -> 'H100'"):
        compare(b, c)
    assert compare(b, c, allow_env_mismatch=True)[0].verdict == "unchanged"


def write(path: Path, recs: list) -> Path:
    return write_records(path, recs)


def test_cli_compare_baseline_markdown_json(tmp_path: Path, cli) -> None:
    base = write(tmp_path / "base.jsonl", three("a", 1.0, 0) + three("b", 1.0, 1))
    slow_b = three("b", 1.2, 5)
    slow_b[0]["breakdown"] = None
    cand = write(tmp_path / "cand.jsonl", three("a", 1.0, 4) + slow_b)
    code, _, err = cli("compare", base, cand, "--markdown", tmp_path / "s.md", "--json", tmp_path / "v.json")
    assert code == 1 and "regression" in err
    md = (tmp_path / "s.md").read_text()
    assert "regression found" in md and "| slower | b |" in md
    verdicts = json.loads((tmp_path / "v.json").read_text())["verdicts"]
    assert {v["cell_id"]: v["verdict"] for v in verdicts} == {"a": "unchanged", "b": "slower"}
    # stored baseline keyed by fingerprint
    code, _out, _ = cli("baseline", "save", base, "--name", "main", "--baselines-dir", tmp_path / "bl")
    assert code == 0 and (tmp_path / "bl" / "main" / "aaa.jsonl").exists()
    code, _, _ = cli("compare", "--baseline", "main", cand, "--baselines-dir", tmp_path / "bl")
    assert code == 1
    same = write(tmp_path / "same.jsonl", three("a", 1.0, 7) + three("b", 1.0, 8))
    code, _, _ = cli("compare", "--baseline", "main", same, "--baselines-dir", tmp_path / "bl")
    assert code == 0
    other = write(tmp_path / "other.jsonl", [record("a", runs(1.0)[0], fp="zzz")])
    code, _, err = cli("compare", "--baseline", "main", other, "--baselines-dir", tmp_path / "bl")
    assert code == 2 and "no entry for the candidate's environment zzz" in err
    code, _, err = cli("compare", base)
    assert code == 2


def test_pytest_benchmark_export_is_read_by_pytest_benchmark(tmp_path: Path, cli) -> None:
    base = write(tmp_path / "base.jsonl", [record("a", runs(1.0)[0]), record("b", runs(1.0)[0])])
    cand = write(tmp_path / "cand.jsonl", [record("a", runs(1.0, seed=4)[0]), record("b", runs(1.3, seed=5)[0])])
    for name, src in (("0001_base.json", base), ("0002_cand.json", cand)):
        code, _, err = cli("export", src, "--format", "pytest-benchmark", "-o", tmp_path / "pb" / name)
        assert code == 0, err
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pytest_benchmark.cli import main; sys.exit(main())",
            "compare",
            "--columns=min,median,max",
            "--group-by=name",
            str(tmp_path / "pb" / "0001_base.json"),
            str(tmp_path / "pb" / "0002_cand.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "s::a" in out.stdout and "s::b" in out.stdout
    from pytest_benchmark.utils import load_timer  # noqa: F401 - the package is importable

    doc = json.loads((tmp_path / "pb" / "0002_cand.json").read_text())
    assert doc["benchmarks"][1]["stats"]["median"] == pytest.approx(
        np.median(record("b", runs(1.3, seed=5)[0])["step_time_s"]["samples"])
    )


def test_plugin_runs_a_cell_through_pytest_benchmark(benchbench_cell, benchmark) -> None:
    """The fixture measures through `run`'s own cell program (warm-up until steady, one timed block, CUDA
    events on a GPU; never a sync per step) and hands its samples to pytest-benchmark as rounds."""
    rec = benchbench_cell(
        {
            "arch": "Unet",
            "encoder": "resnet18",
            "resolution": 32,
            "batch_size": 2,
            "warmup": 1,
            "steps": 3,
            "device": "cpu",
        }
    )
    assert rec.status == "ok" and rec.params["device"] == "cpu"
    assert benchmark.stats is not None and benchmark.stats.stats.rounds == 3
    assert benchmark.stats.stats.median == pytest.approx(rec.median)
    assert len(rec.training.losses) == rec.warmup.steps + 3 and rec.cpu_contention is not None
    assert benchmark.extra_info["throughput_img_s"] == pytest.approx(rec.throughput)


def test_night_to_night_spread_from_the_history_widens_the_interval(tmp_path: Path, cli) -> None:
    """Runs of one night share its machine state; the cell's history says how much nights differ."""
    from benchbench.analysis.gate_stats import night_cv

    a, _, plus5, plus9 = gate_runs()
    [narrow] = compare(a, plus5, threshold=0.02)
    [wide] = compare(a, plus5, threshold=0.02, nights_cv={a[0].cell_id: 0.03})
    assert narrow.verdict == "slower" and wide.verdict == "noisy"
    assert wide.ci_high - wide.ci_low > 3 * (narrow.ci_high - narrow.ci_low) and "night-to-night" in wide.method
    assert night_cv([1.0, 1.0, 1.0]) is None  # too few nights to know
    steady = [1.0, 1.001, 0.999, 1.0, 1.002, 0.998] * 3
    stepped = steady[:9] + [x * 1.1 for x in steady[9:]]
    assert night_cv(stepped) == pytest.approx(night_cv(steady), rel=0.5)  # robust to a change point
    # through the CLI: 20 real A/A nights in the store; +9.2% is still `slower`
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_history import nights

    db = tmp_path / "h.db"
    assert cli("history", "add", write(tmp_path / "n.jsonl", nights(20)), "--db", db)[0] == 0
    base, cand = write(tmp_path / "a.jsonl", a), write(tmp_path / "p9.jsonl", plus9)
    code, _out, _ = cli("compare", base, cand, "--history", db, "--json", tmp_path / "v.json")
    [v] = json.loads((tmp_path / "v.json").read_text())["verdicts"]
    assert code == 1 and v["verdict"] == "slower" and "night-to-night" in v["method"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--run-cv", "2"], "--run-cv must be between 0 and 1"),
        (["--threshold", "1.5"], "--threshold must be between 0 and 1"),
        (["--alpha", "0"], "--alpha must be between 0 and 1"),
        (["--history", "missing.db"], "history store not found"),
    ],
)
def test_bad_gate_options_are_clear_errors(tmp_path: Path, cli, args, message) -> None:
    a, a2, _, _ = gate_runs()
    pa, pb = write(tmp_path / "a.jsonl", a), write(tmp_path / "b.jsonl", a2)
    code, _, err = cli("compare", pa, pb, *[str(tmp_path / x) if x.endswith(".db") else x for x in args])
    assert code == 2 and message in err and "Traceback" not in err


def test_the_default_alpha_is_the_measured_one_and_labels_follow_it(tmp_path: Path, cli) -> None:
    """README and gate_stats.ALPHA say 99% intervals (false alarms were measured at 0.01): compare's default
    must be that, and every label says the confidence the interval was computed at."""
    from benchbench.analysis.gate_stats import ALPHA

    assert ALPHA == 0.01
    aa = H100_GATE
    recs = [json.loads(x) for x in aa.read_text().splitlines()]
    runs = sorted({r["run_id"] for r in recs})
    base, cand = tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    base.write_text("".join(json.dumps(r) + "\n" for r in recs if r["run_id"] == runs[0]))
    cand.write_text("".join(json.dumps(r) + "\n" for r in recs if r["run_id"] == runs[1]))
    code, out, err = cli("compare", base, cand, "--markdown", tmp_path / "s.md", "--json", tmp_path / "v.json")
    assert code == 0, err
    assert "99% CI" in out and "95%" not in out
    md = (tmp_path / "s.md").read_text()
    assert "99% CI" in md and "99% interval" in md and "95%" not in md
    assert json.loads((tmp_path / "v.json").read_text())["alpha"] == 0.01
    code, out, _ = cli("compare", base, cand, "--alpha", "0.05")
    assert "95% CI" in out


def test_compare_refuses_a_cell_measured_on_contended_cpu_cores(tmp_path, cli) -> None:
    """`--refuse-degraded` covers the CPU's state as it covers the GPU's: a candidate whose cores another
    process held gets no verdict, and the warning names what held them."""
    import json

    gate = Path(__file__).parent / "fixtures" / "h100" / "gate-aa-5pct-9pct.jsonl"
    recs = [json.loads(x) for x in gate.read_text().splitlines()]
    runs = sorted({r["run_id"] for r in recs})
    held = {
        "cores": [0, 1],
        "n_cores": 2,
        "cell_threads": 2,
        "contended": True,
        "others_share": 0.5,
        "why": "others used 50% of the cell's 2 cores (stress 1.9 s)",
    }
    base = [r for r in recs if r["run_id"] == runs[0]]
    cand = [{**r, "cpu_contention": held} for r in recs if r["run_id"] == runs[1]]
    b, c = tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    b.write_text("".join(json.dumps(r) + "\n" for r in base))
    c.write_text("".join(json.dumps(r) + "\n" for r in cand))
    code, out, err = cli("compare", b, c)
    assert code == 0 and "contended CPU cores: others used 50%" in err
    for flag in ("--refuse-degraded", "--refuse-degraded-gpu"):
        code, out, err = cli("compare", b, c, flag)
        assert code == 1 and "incomparable" in out and "degraded machine" in err
