"""`run --executor slurm` on a real local SLURM (tests/slurm_cluster.py): records shaped as the process
executor's, measured on the node, streamed; a job SLURM kills is its cells' records, never a lost cell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TESTS, write_suite
from slurm_cluster import slurm_cluster  # noqa: F401 - the fixture

from benchbench.results import read_records

SUITE = """
name: slurm
arch: "factories:tiny"
device: cpu
resolution: 32
batch_size: 2
classes: 3
warmup: 1
steps: 2
timeout_s: 120
matrix:
  seed: [0, 1, 2]
"""


@pytest.mark.slow  # a real SLURM cluster and its jobs
def test_quickstart_cells_run_as_slurm_jobs(tmp_path: Path, cli, monkeypatch, slurm_cluster) -> None:  # noqa: F811
    monkeypatch.chdir(TESTS)
    suite = write_suite(tmp_path / "s.yaml", SUITE)
    out = tmp_path / "res" / "r.jsonl"
    code, _stdout, err = cli("run", suite, "--executor", "slurm", "--output", out, "--no-explain",
                            "--cells-per-job", "2", "--reports-dir", tmp_path / "rep")
    assert code == 0, err
    recs = read_records([out])
    assert sorted(r.params["seed"] for r in recs) == [0, 1, 2] and all(r.ok for r in recs)
    assert all(r.executor.name == "slurm" and r.executor.job_id for r in recs)
    assert len({r.executor.job_id for r in recs}) == 2  # 3 cells, 2 a job
    assert all(r.env.node and r.env.fingerprint for r in recs)  # measured where they ran
    # the same shape as a process-executor record
    local = tmp_path / "local.jsonl"
    code, _, err = cli("run", suite, "--output", local, "--no-explain", "--filter", "seed=0",
                       "--reports-dir", tmp_path / "rep")
    assert code == 0, err
    [one] = read_records([local])
    fields = lambda r: set(r.to_json())  # noqa: E731 - what each record carries
    assert fields(one) <= fields(recs[0]) and fields(recs[0]) - fields(one) == {"executor"}
    assert not (out.parent / ".submitit").exists()  # cleaned after a successful run


@pytest.mark.slow  # a real SLURM cluster and its jobs
def test_a_job_slurm_kills_is_a_record(tmp_path: Path, cli, monkeypatch, slurm_cluster) -> None:  # noqa: F811
    monkeypatch.chdir(TESTS)
    suite = write_suite(tmp_path / "s.yaml", SUITE.replace('"factories:tiny"', '"factories:sleepy"')
                        .replace("seed: [0, 1, 2]", "seed: [0]").replace("steps: 2", "steps: 200"))
    out = tmp_path / "r.jsonl"
    code, _, err = cli("run", suite, "--executor", "slurm", "--slurm-time", "1", "--output", out, "--no-explain",
                       "--reports-dir", tmp_path / "rep")
    [rec] = read_records([out])
    assert code == 1 and rec.status == "timeout" and "time limit" in rec.error, (rec, err)
    json.dumps(rec.to_json())
    # the time-out signal a quarter of the limit before its end: submitit's 90 s came at once for a 1-minute job,
    # sometimes before the job had installed its handler (an `error` record in 1 of 4 CI runs)
    [script] = (tmp_path / ".submitit").rglob("*_submission.sh")  # a failed job's folder is kept
    assert "#SBATCH --signal=USR2@15" in script.read_text()


@pytest.mark.slow  # a real SLURM cluster and its jobs
def test_sigterm_cancels_the_jobs_and_resume_completes(tmp_path: Path, slurm_cluster) -> None:  # noqa: F811
    import os
    import signal
    import subprocess
    import sys
    import time

    suite = write_suite(tmp_path / "s.yaml", SUITE.replace('"factories:tiny"', '"factories:sleepy"')
                        .replace("seed: [0, 1, 2]", "seed: [0, 1]").replace("steps: 2", "steps: 8"))
    out = tmp_path / "r.jsonl"
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    cmd = [sys.executable, "-m", "benchbench", "run", str(suite), "--executor", "slurm", "--output", str(out),
           "--no-explain", "--reports-dir", str(tmp_path / "rep")]
    p = subprocess.Popen(cmd, cwd=TESTS, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        q = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True).stdout.split()
        if len(q) >= 2:
            break
        time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "Resume with" in err, err
    time.sleep(2)
    assert subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True).stdout.split() == []
    done = subprocess.run(cmd[:5] + ["--resume", str(out), "--reports-dir", str(tmp_path / "rep")], cwd=TESTS,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(r.params["seed"] for r in read_records([out]) if r.ok) == [0, 1]


@pytest.mark.slow  # a real SLURM cluster and its jobs
def test_the_quickstart_suite_on_slurm(tmp_path: Path, cli, slurm_cluster) -> None:  # noqa: F811
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "q.jsonl"
    code, stdout, err = cli("run", root / "suites" / "quickstart.yaml", "--device", "cpu", "--executor", "slurm",
                            "--cells-per-job", "2", "--no-explain", "--output", out, "--reports-dir", tmp_path / "rep")
    assert code == 0, err
    recs = read_records([out])
    assert sorted(r.params["arch"] for r in recs) == ["Segformer", "Unet"]
    assert all(r.ok and r.executor.name == "slurm" for r in recs)
    assert "1. [" in stdout  # the headline under the table, as with the process executor


def test_a_slurm_job_calibrates_in_a_child_not_in_its_own_process(monkeypatch) -> None:
    """The job's process waits while its cells run: had it calibrated itself, it would hold a CUDA context
    (and the 8192^2 blocks) all along, NVML would list it beside every cell ("shared") and cells would have
    ~1 GB less memory. It calibrates in a child that exits, as `run` does. (No SLURM needed: job_main is
    what a job runs.)"""
    from types import SimpleNamespace

    import benchbench.measure.calibrate as calibrate_mod
    from benchbench.runner import slurm

    monkeypatch.setattr(calibrate_mod, "calibrate", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("calibrated in the job's own process")))
    kinds = []

    def child(payload, timeout_s):
        kinds.append(payload["kind"])
        return SimpleNamespace(result={"fp32": {"flops_per_s": 1e11}})

    monkeypatch.setattr("benchbench.runner.prepare.run_child", child)
    monkeypatch.setattr("benchbench.runner.isolation.run_isolated", lambda p, t: {"cell_id": p["cell_id"],
                                                                                 "env": p["env"]})
    payload = {"kind": "cell", "explain": True, "cell_id": "c1", "params": {"device": "cpu", "amp": "none",
                                                                            "timeout_s": 60}}
    [rec] = slurm.job_main([payload])
    assert kinds == ["calibrate"] and rec["env"]["peak_flops"] == {"fp32": {"flops_per_s": 1e11}}
