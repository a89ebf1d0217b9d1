"""Nothing measured is ever lost: OOM, back-off, SIGTERM + resume, shards, DDP, batch search."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TESTS, write_suite

from benchbench.suite import build_suite, shard_cells

TINY = """
resolution: 32
batch_size: 2
warmup: 1
steps: 2
device: cpu
classes: 3
"""


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cpu_oom_under_a_memory_limit_and_halve_batch(tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.chdir(TESTS)
    suite = write_suite(tmp_path / "oom.yaml", TINY + """
matrix:
  arch: ["factories:alloc_2g", "factories:oom_above4"]
memory_limit_mb: 1024
on_oom: halve-batch
batch_size: 16
""")
    out = tmp_path / "r.jsonl"
    code, _, _err = cli("run", suite, "--output", out, "--no-explain", "--reports-dir", tmp_path / "rep")
    recs = {r["params"]["arch"]: r for r in lines(out)}
    alloc = recs["factories:alloc_2g"]
    assert alloc["status"] == "oom" and "alloc" in alloc["error"].lower()
    back = recs["factories:oom_above4"]
    assert back["status"] == "ok" and back["oom_backoff"]["batch_size_ran"] == 4
    assert [a["batch_size"] for a in back["oom_backoff"]["attempts"]] == [16, 8]
    assert back["params"]["batch_size"] == 16  # the cell asked for 16; what ran is recorded
    assert code == 1


@pytest.mark.slow
def test_sigterm_mid_suite_then_resume(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "term.yaml", TINY + """
name: term
matrix:
  arch: ["factories:tiny", "factories:sleepy"]
  seed: [0, 1]
""")
    out = tmp_path / "r.jsonl"
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    cmd = [sys.executable, "-m", "benchbench", "run", str(suite), "--output", str(out), "--no-explain",
           "--reports-dir", str(tmp_path / "rep")]
    proc = subprocess.Popen(cmd, cwd=TESTS, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.exists() and out.read_text().count("\n") >= 1):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # while a later (sleepy) cell runs
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Resume with" in stderr and "--resume" in stderr
    first = lines(out)  # every line parses
    assert 1 <= len(first) < 4 and all(r["status"] == "ok" for r in first)
    done = subprocess.run(cmd[:5] + ["--resume", str(out), "--no-explain", "--reports-dir", str(tmp_path / "rep")],
                          cwd=TESTS, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    recs = lines(out)
    assert len({r["cell_id"] for r in recs if r["status"] == "ok"}) == 4
    assert len(recs) == 4  # nothing ran twice
    assert len({r["run_id"] for r in recs}) == 1


def test_hostile_suite_name_stays_inside_results(tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.chdir(TESTS)
    suite = write_suite(tmp_path / "x.yaml", TINY + 'name: "../../../etc/x\\n<b>"\narch: "factories:tiny"\n')
    code, _, err = cli("run", suite, "--results-dir", tmp_path / "res", "--reports-dir", tmp_path / "rep",
                       "--no-explain")
    assert code == 0, err
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(str(p.resolve()).startswith(str(tmp_path.resolve())) for p in written)
    assert (tmp_path / "res" / "etc-x-b").is_dir()


def test_shards_partition_deterministically() -> None:
    suite = build_suite({"matrix": {"arch": ["Unet", "FPN", "PAN"], "resolution": [64, 128, 256]}}, device="cpu")
    parts = [shard_cells(suite.cells, f"{k}/3") for k in (1, 2, 3)]
    ids = [c.id for p in parts for c in p]
    assert sorted(ids) == sorted(c.id for c in suite.cells) and len(set(ids)) == 9
    assert [c.id for c in shard_cells(suite.cells, "2/3")] == [c.id for c in parts[1]]
    assert all(len(p) == 3 for p in parts)


@pytest.mark.slow
def test_shards_merge_ddp_and_read_back(tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.chdir(TESTS)
    suite = write_suite(tmp_path / "s.yaml", TINY + """
name: scale
arch: Unet
encoder: resnet18
matrix:
  world_size: [1, 2]
  seed: [0, 1]
""")
    for k in (1, 2):
        code, _, err = cli("run", suite, "--shard", f"{k}/2", "--output", tmp_path / f"shard{k}.jsonl",
                           "--no-explain", "--reports-dir", tmp_path / "rep")
        assert code == 0, err
    code, _, err = cli("merge", tmp_path / "shard1.jsonl", tmp_path / "shard2.jsonl", "-o", tmp_path / "all.jsonl")
    assert code == 0, err
    recs = lines(tmp_path / "all.jsonl")
    assert len(recs) == 4 and len({r["cell_id"] for r in recs}) == 4
    ddp = [r for r in recs if r["params"]["world_size"] == 2]
    assert all(r["ranks"]["backend"] == "gloo" and len(r["ranks"]["median_step_s"]) == 2 for r in ddp)
    assert all(r["throughput_img_s"] == pytest.approx(4 / r["step_time_s"]["median"]) for r in ddp)
    code, _, err = cli("report", tmp_path / "all.jsonl", "-o", tmp_path / "rep2")
    assert code == 0, err
    md = next((tmp_path / "rep2").rglob("*.md")).read_text()
    assert "world\\_size" in md and "scaling efficiency" in md
    code, _, err = cli("compare", tmp_path / "all.jsonl", tmp_path / "all.jsonl")
    assert code == 0, err
    code, _, err = cli("merge", tmp_path / "shard1.jsonl", "-o", tmp_path / "all.jsonl")
    assert code == 2 and "never overwrites" in err


def test_tune_batch_records_every_probe(tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.chdir(TESTS)
    suite = write_suite(tmp_path / "t.yaml", TINY + 'name: tune\narch: "factories:oom_above4"\n')
    code, out, err = cli("tune-batch", suite, "--max-batch", "64", "--steps", "2", "--results-dir", tmp_path / "res")
    assert code == 0, err
    [path] = list((tmp_path / "res" / "tune").glob("tune-*.jsonl"))
    probes = lines(path)
    assert [p["params"]["batch_size"] for p in probes] == [1, 2, 4, 8]
    assert probes[-1]["status"] == "oom" and all(p["status"] == "ok" for p in probes[:-1])
    assert "out of memory at batch 8" in " ".join(out.split())


def test_tune_batch_never_recommends_a_batch_that_broke_the_margin(monkeypatch) -> None:
    """The H100 probes of tests/fixtures (tune-batch.txt): 256 ran fastest but used 99% of memory."""
    from benchbench import tune
    from benchbench.suite import build_suite

    measured = {1: 16.4, 2: 36.1, 4: 66.8, 8: 143.1, 16: 273.4, 32: 464.8, 64: 544.2, 128: 576.7, 256: 588.1}
    total = 80 * 2**30

    def fake_run(payload, options):
        bs = payload["params"]["batch_size"]
        used = 0.99 if bs == 256 else 0.3 + 0.004 * bs
        step = bs / measured[bs]  # a record whose samples give that throughput (the one type derives it)
        return {"schema": "benchbench.result/2", "suite": "t", "run_id": "r", "cell_id": "c", "status": "ok",
                "params": payload["params"], "step_time_s": {"samples": [step] * 3},
                "memory": {"cuda_peak_reserved_bytes": int(used * total)}}

    monkeypatch.setattr(tune, "run_cell", fake_run)
    suite = build_suite({"name": "t", "device": "cpu"})
    res = tune.tune_batch(suite, suite.cells[0], "r", {"gpu_memory_bytes": total}, max_batch=256, gain=0.01)
    assert res.largest_fit == 128 and res.best_throughput == 128
    assert "batch 256 uses 99%" in res.stopped_because


def test_merged_repeats_keep_the_work_per_step() -> None:
    """Two identical repeats of a world_size 2 cell: 80 img/s, not 40 (batch x ranks per step)."""
    from benchbench.results import pool_repeats

    def rec(rep: int) -> dict:
        return {"cell_id": "c", "status": "ok", "repeat": rep, "params": {"batch_size": 4, "world_size": 2},
                "throughput_img_s": 80.0, "step_time_s": {"samples": [0.1] * 5, "median": 0.1}}

    from conftest import as_records

    [m] = pool_repeats(as_records(rec(0), rec(1)))
    assert m.throughput == pytest.approx(80.0) and m.repeats.n == 2
    backed = [dict(rec(i), params={"batch_size": 8, "world_size": 1}, oom_backoff={"batch_size_ran": 4})
              for i in range(2)]
    assert pool_repeats(as_records(*backed))[0].throughput == pytest.approx(40.0)
