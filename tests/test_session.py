"""One session for every command that measures: `run`, `advise` and `tune-batch` stop the same way under SIGTERM
and a full disk, print one pasteable resume command that completes the work, refuse another kind's results file,
and take every executor — and a new executor or tracker is one module plus one line."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TESTS, write_suite

from benchbench.results import read_records

pytestmark = pytest.mark.slow

SLEEPY = """
name: sess
arch: "factories:sleepy"
device: cpu
resolution: 32
batch_size: 2
classes: 3
warmup: 1
steps: 2
threads: 1
timeout_s: 120
"""


def command(kind: str, suite: Path, tmp: Path) -> list[str]:
    base = [sys.executable, "-m", "benchbench"]
    if kind == "run":
        return base + ["run", str(suite), "--output", str(tmp / "r.jsonl"), "--no-explain", "--reports-dir",
                       str(tmp / "rep")]
    if kind == "advise":
        return base + ["advise", str(suite), "--knobs", "channels_last", "--repeat-max", "2", "--min-runs", "2",
                       "--results-dir", str(tmp / "res"), "-o", str(tmp / "rep")]
    return base + ["tune-batch", str(suite), "--max-batch", "8", "--steps", "2", "--results-dir", str(tmp / "res")]


def suite_for(kind: str, tmp: Path) -> Path:
    text = SLEEPY if kind != "run" else SLEEPY + "matrix:\n  seed: [0, 1, 2]\n"
    if kind == "advise":
        text = text.replace('"factories:sleepy"', '"factories:tiny"')
    return write_suite(tmp / f"{kind}.yaml", text)


def results_file(kind: str, tmp: Path) -> Path | None:
    found = [tmp / "r.jsonl"] if kind == "run" else sorted((tmp / "res").rglob("*.jsonl"))
    return found[0] if found and found[0].exists() else None


def resume_line(stderr: str) -> list[str]:
    [line] = [ln for ln in stderr.splitlines() if ln.startswith("Resume with: ")]
    return shlex.split(line[len("Resume with: "):])


def run_resume(line: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The printed command, as a user pastes it, in a folder of the test's own: its reports go to ./reports."""
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    return subprocess.run([sys.executable, "-m", "benchbench", *line], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("kind", ["run", "advise", "tune"])
def test_sigterm_stops_cleanly_and_the_printed_command_completes_it(kind: str, tmp_path: Path) -> None:
    suite = suite_for(kind, tmp_path)
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    proc = subprocess.Popen(command(kind, suite, tmp_path), cwd=TESTS, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        f = results_file(kind, tmp_path)
        if f is not None and f.read_text().count("\n") >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    kept = read_records([results_file(kind, tmp_path)])
    line = resume_line(err)
    assert line[0] == "benchbench" and "--resume" in line
    if kind in ("run", "advise"):  # where its reports went is no recorded option: the command carries it
        assert str(tmp_path / "rep") in line, line
    done = run_resume(line[1:], tmp_path)
    assert done.returncode == 0, done.stderr
    after = read_records([results_file(kind, tmp_path)])
    assert [r.key for r in after[:len(kept)]] == [r.key for r in kept]  # what was measured is kept, first
    assert len({r.run_id for r in after}) == 1 and all(r.invocation.kind == kind for r in after)
    if kind == "run":
        assert sorted(r.params["seed"] for r in after) == [0, 1, 2]  # each cell once: nothing ran twice


@pytest.mark.parametrize("kind", ["run", "advise", "tune"])
def test_a_full_disk_stops_with_the_resume_command(kind: str, tmp_path: Path) -> None:
    import resource

    suite = suite_for(kind, tmp_path)
    env = dict(os.environ, PYTHONPATH=str(TESTS))

    def limit() -> None:  # the results file may hold about one record: the disk "fills" at the next
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))

    full = subprocess.run(command(kind, suite, tmp_path), cwd=TESTS, env=env, capture_output=True, text=True,
                          timeout=600, preexec_fn=limit)
    assert full.returncode == 1, full.stderr
    assert "could not record a cell" in full.stderr and "Traceback" not in full.stderr
    f = results_file(kind, tmp_path)
    assert f is not None and all(line.endswith("}") for line in f.read_text().splitlines())  # whole lines only
    done = run_resume(resume_line(full.stderr)[1:], tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("kind,other", [("advise", "run"), ("tune", "advise"), ("run", "tune")])
def test_a_results_file_belongs_to_one_kind_of_session(kind: str, other: str, tmp_path: Path, cli,
                                                       monkeypatch) -> None:
    monkeypatch.chdir(TESTS)
    suite = suite_for(kind, tmp_path)
    first = command(other, suite, tmp_path)[3:]
    code, _, err = cli(*first)
    assert code == 0, err
    f = results_file(other, tmp_path)
    again = command(kind, suite, tmp_path / "x")[3:] + ["--resume", str(f)]
    if kind == "run":
        again = [a for a in again if a not in ("--output", str(tmp_path / "x" / "r.jsonl"))]
    code, _, err = cli(*again)
    assert code == 2 and f"written by `{other}`, not `{kind}`" in err, err


@pytest.mark.parametrize("kind", ["run", "advise", "tune"])
def test_every_command_that_measures_takes_every_executor(kind: str, tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.chdir(TESTS)
    suite = suite_for(kind, tmp_path)
    args = command(kind, suite, tmp_path)[3:] + ["--executor", "inline"]
    if kind == "advise":
        args = list(args) + ["--repeat-max", "2"]
    code, _out, err = cli(*args)
    assert code == 0, err
    code, _, err = cli(*command(kind, suite, tmp_path / "y")[3:], "--executor", "inline", "--slurm-partition", "gpu")
    assert code == 2 and "apply with --executor slurm only" in err


def test_a_new_executor_is_one_module_and_one_line(tmp_path: Path, cli, monkeypatch) -> None:
    """The worked example: an executor that runs each cell through the process executor and says so in its
    events — one module (here, this test's), one line in EXECUTORS; its options reach `run` by themselves."""
    import dataclasses

    from benchbench.runner import executor, executors
    from benchbench.runner.local import ProcessExecutor

    @dataclasses.dataclass(frozen=True)
    class LoudConfig:
        shout: str | None = executor.option("--loud-shout", "What the loud executor says at each cell.")

    said: list[str] = []

    class Loud(ProcessExecutor):
        name = "loud"

        def __init__(self, config: LoudConfig, work_folder: Path | None = None) -> None:
            self.config = config

        def run(self, payload: dict) -> dict:
            said.append(f"{self.config.shout}: {payload['label']}")
            return super().run(payload)

    monkeypatch.setitem(executors.EXECUTORS, "loud", lambda: executor.ExecutorSpec(
        "loud", "says each cell out loud", LoudConfig, Loud, executor.Capabilities()))
    import importlib

    import benchbench.cli.app as app_module
    import benchbench.cli.run as run_module

    importlib.reload(run_module)  # the command's options are generated from the registry when it is defined
    try:
        monkeypatch.chdir(TESTS)
        suite = suite_for("run", tmp_path)
        code, _, err = cli("run", suite, "--executor", "loud", "--loud-shout", "hey", "--output", tmp_path / "l.jsonl",
                           "--no-explain", "--reports-dir", tmp_path / "rep", "--filter", "seed=0")
        assert code == 0, err
        assert said == ["hey: seed=0"]
    finally:
        monkeypatch.delitem(executors.EXECUTORS, "loud")
        importlib.reload(run_module)
        assert app_module  # the app keeps its commands


def test_a_new_tracker_is_one_module_and_one_line(monkeypatch) -> None:
    """The worked example in the tree is `measure/contention.py` + its line in TRACKERS; a tracker registered
    the same way from anywhere is entered around the timed block and its result lands in the record."""
    import time as _time

    from benchbench.measure import trackers
    from benchbench.runner.program import measure_inline
    from benchbench.suite import CellParams

    class Clock:
        def __enter__(self):
            self.t0 = _time.perf_counter()
            return self

        def __exit__(self, *exc) -> None:
            self.t1 = _time.perf_counter()

        def result(self, images: int) -> dict:
            return {"block_s": self.t1 - self.t0, "images": images}

    monkeypatch.setitem(trackers.TRACKERS, "wall_clock", lambda ctx: Clock())
    p = CellParams(arch="Unet", encoder="resnet18", resolution=32, batch_size=2, warmup=1, steps=2,
                   device="cpu").model_dump(mode="json")
    rec = measure_inline(p)
    assert rec.ok and rec.cpu_contention is not None
    assert rec.trackers["wall_clock"]["images"] == 4 and rec.trackers["wall_clock"]["block_s"] > 0
    assert re.match(r"^\d", str(rec.trackers["wall_clock"]["block_s"]))
