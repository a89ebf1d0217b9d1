from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchbench.analysis.compare import compare, judge
from benchbench.errors import BenchbenchError


def runs(median: float, n: int = 30, runs: int = 1, noise: float = 0.01, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [median * (1 + rng.normal(0, noise, n)) for _ in range(runs)]


def test_clear_regression_improvement_noise_and_too_few() -> None:
    assert judge(runs(1.0), runs(1.15, seed=1))["verdict"] == "slower"
    assert judge(runs(1.0), runs(0.8, seed=1))["verdict"] == "faster"
    assert judge(runs(1.0), runs(1.005, seed=1))["verdict"] == "unchanged"
    noisy = judge(runs(1.0, n=8, noise=0.3), runs(1.08, n=8, noise=0.3, seed=1))
    assert noisy["verdict"] == "noisy"
    few = judge(runs(1.0, n=3), runs(2.0, n=3))
    assert few["verdict"] == "noisy" and "too few" in few["reason"]


def test_small_but_significant_change_is_unchanged() -> None:
    # 2% slower with tiny noise: significant, but below the 5% minimum effect.
    res = judge(runs(1.0, noise=0.002), runs(1.02, noise=0.002, seed=1))
    assert res["verdict"] == "unchanged" and res["p_value"] < 0.01


def test_between_run_spread_widens_the_interval() -> None:
    rng = np.random.default_rng(3)
    # each run has its own offset (process-to-process variation), little noise within a run
    base = [1.0 * (1 + rng.normal(0, 0.05)) * (1 + rng.normal(0, 0.002, 30)) for _ in range(4)]
    cand = [1.0 * (1 + rng.normal(0, 0.05)) * (1 + rng.normal(0, 0.002, 30)) for _ in range(4)]
    hier = judge(base, cand)
    assert hier["verdict"] != "slower" and hier["verdict"] != "faster"
    assert hier["ci_high"] - hier["ci_low"] > 0.03


def record(cid: str, samples, status: str = "ok", fp: str = "aaa", **env) -> dict:
    return {"schema": "benchbench.result/1", "suite": "s", "run_id": "r", "cell_id": cid, "label": cid,
            "params": {"batch_size": 2}, "status": status, "error": None if status == "ok" else "boom",
            "step_time_s": {"samples": list(map(float, samples)), "median": float(np.median(samples))}
            if status == "ok" else None,
            "env": {"fingerprint": fp, "torch": "2.4", "gpu": None, **env}}


def test_cell_matching_new_missing_failed() -> None:
    b = [record("a", runs(1.0)[0]), record("gone", runs(1.0)[0]), record("f", runs(1.0)[0])]
    c = [record("a", runs(1.0, seed=2)[0]), record("fresh", runs(1.0)[0]), record("f", [], status="timeout")]
    v = {x.cell_id: x.verdict for x in compare(b, c)}
    assert v == {"a": "unchanged", "gone": "missing", "f": "failed", "fresh": "new"}


def test_env_mismatch_is_refused_with_the_difference() -> None:
    b = [record("a", runs(1.0)[0], fp="aaa", gpu="A100")]
    c = [record("a", runs(1.0)[0], fp="bbb", gpu="H100")]
    with pytest.raises(BenchbenchError, match="gpu: 'A100' -> 'H100'"):
        compare(b, c)
    assert compare(b, c, allow_env_mismatch=True)[0].verdict == "unchanged"


def write(path: Path, recs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_cli_compare_baseline_markdown_json(tmp_path: Path, cli) -> None:
    base = write(tmp_path / "base.jsonl", [record("a", runs(1.0)[0]), record("b", runs(1.0)[0])])
    slow_b = record("b", runs(1.2, seed=5)[0])
    slow_b["breakdown"] = None
    cand = write(tmp_path / "cand.jsonl", [record("a", runs(1.0, seed=4)[0]), slow_b])
    code, out, err = cli("compare", base, cand, "--markdown", tmp_path / "s.md", "--json", tmp_path / "v.json")
    assert code == 1 and "regression" in err
    md = (tmp_path / "s.md").read_text()
    assert "regression found" in md and "| slower | b |" in md
    verdicts = json.loads((tmp_path / "v.json").read_text())["verdicts"]
    assert {v["cell_id"]: v["verdict"] for v in verdicts} == {"a": "unchanged", "b": "slower"}
    # stored baseline keyed by fingerprint
    code, out, _ = cli("baseline", "save", base, "--name", "main", "--baselines-dir", tmp_path / "bl")
    assert code == 0 and (tmp_path / "bl" / "main" / "aaa.jsonl").exists()
    code, _, _ = cli("compare", "--baseline", "main", cand, "--baselines-dir", tmp_path / "bl")
    assert code == 1
    same = write(tmp_path / "same.jsonl", [record("a", runs(1.0, seed=7)[0]), record("b", runs(1.0, seed=8)[0])])
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
        [sys.executable, "-c", "import sys; from pytest_benchmark.cli import main; sys.exit(main())", "compare", "--columns=min,median,max", "--group-by=name",
         str(tmp_path / "pb" / "0001_base.json"), str(tmp_path / "pb" / "0002_cand.json")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "s::a" in out.stdout and "s::b" in out.stdout
    from pytest_benchmark.utils import load_timer  # noqa: F401 - the package is importable

    doc = json.loads((tmp_path / "pb" / "0002_cand.json").read_text())
    assert doc["benchmarks"][1]["stats"]["median"] == pytest.approx(np.median(record("b", runs(1.3, seed=5)[0])
                                                                            ["step_time_s"]["samples"]))


def test_plugin_runs_a_cell_through_pytest_benchmark(benchbench_cell, benchmark) -> None:
    p = benchbench_cell({"arch": "Unet", "encoder": "resnet18", "resolution": 32, "batch_size": 2, "warmup": 1,
                         "steps": 3, "device": "cpu"})
    assert p["device"] == "cpu"
    assert benchmark.stats is not None and benchmark.stats.stats.rounds == 3
    assert benchmark.stats.stats.median > 0
