"""benchbench stopped from outside — a CI cancel (SIGTERM), a closed terminal (SIGHUP), Ctrl-C (SIGINT) — and a
script that ends without a word (os._exit, a hang stopped at --timeout): what was measured is kept, and nothing is
left running. Each test looks for leftover processes afterwards by a marker in their environment, which every
process benchbench starts inherits (the script, its DataLoader workers, a cell's process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchbench.record import Record

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
CAMVID = ROOT / "tests" / "scripts" / "train_camvid.py"


@pytest.fixture(scope="module")
def camvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import make_camvid

    return make_camvid(tmp_path_factory.mktemp("signals") / "camvid", n=8)


def leftover(marker: str) -> list[int]:
    """The processes still alive whose environment carries the marker."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            env = (d / "environ").read_bytes()
            state = next((ln for ln in (d / "status").read_text().splitlines() if ln.startswith("State:")), "")
        except OSError:
            continue
        if f"BB_TEST_MARKER={marker}".encode() in env and "zombie" not in state:
            found.append(int(d.name))
    return found


@pytest.fixture(autouse=True)
def ctrl_c_as_at_a_terminal() -> Iterator[None]:
    """Ctrl-C raising KeyboardInterrupt here, as at a terminal: a test run started in the background by a shell
    without job control inherits SIGINT ignored (and Python then installs no handler for it). Caught here, it is
    back to its default in every process these tests start (exec resets a caught signal, keeps an ignored one)."""
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, saved)


def start(args: list[str], marker: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "BB_TEST_MARKER": marker, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "benchbench", *args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_lines(proc: subprocess.Popen[str], n: int, timeout: float = 120) -> list[str]:
    """Read the script's output until it printed `n` step lines (it is then in its timed steps)."""
    lines: list[str] = []
    t0 = time.monotonic()
    assert proc.stdout is not None
    while len([ln for ln in lines if ln.startswith("epoch ")]) < n:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"benchbench ended first: {proc.wait()} {proc.stderr.read() if proc.stderr else ''}")
        lines.append(line)
        assert time.monotonic() - t0 < timeout, lines
    return lines


def no_leftover(marker: str) -> None:
    for _ in range(50):  # a process ending as the test looks is given a moment
        if not leftover(marker):
            return
        time.sleep(0.1)
    pytest.fail(f"processes left running: {leftover(marker)}")


def train(camvid: Path, *extra: str, workers: int = 2) -> list[str]:
    return ["--", sys.executable, str(CAMVID), "--data", str(camvid), "--epochs", "500", "--workers", str(workers),
            *extra]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_attach_stopped_by_a_signal_keeps_its_steps_and_leaves_nothing_running(tmp_path: Path, camvid: Path,
                                                                               sig: signal.Signals) -> None:
    marker = uuid.uuid4().hex
    out = tmp_path / "r.jsonl"
    proc = start(["attach", "--steps", "500", "--warmup", "2", "--output", str(out), "-o", str(tmp_path / "rep"),
                  *train(camvid)], marker, tmp_path)
    wait_for_lines(proc, 14)  # the first boundary, 2 warm-up steps, then timed ones
    time.sleep(1.0)  # a snapshot of the timed steps is written at most every 0.5 s
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "interrupted" in err and "nothing of it left running" in err
    no_leftover(marker)
    [rec] = [Record.of(json.loads(x)) for x in out.read_text().splitlines()]
    assert rec.status == "error" and f"benchbench received {sig.name}" in (rec.error or "")
    assert rec.step_time_s is not None and len(rec.step_time_s.samples) >= 8, rec.error
    assert rec.attached.steps_seen >= 13


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_advise_attach_stopped_keeps_its_runs_and_leaves_nothing_running(tmp_path: Path, camvid: Path,
                                                                         sig: signal.Signals) -> None:
    marker = uuid.uuid4().hex
    proc = start(["advise", "--attach", "--steps", "500", "--results-dir", str(tmp_path / "res"), *train(camvid)],
                 marker, tmp_path)
    wait_for_lines(proc, 12)
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    no_leftover(marker)
    [f] = list((tmp_path / "res").rglob("advise-*.jsonl"))
    [rec] = [Record.of(json.loads(x)) for x in f.read_text().splitlines()]
    # stopped in its auto warm-up or its timed steps (12 steps were printed): every step measured is kept
    assert sig.name in (rec.error or "") and (rec.step_time_s or rec.warmup) is not None
    kept = len(rec.step_time_s.samples if rec.step_time_s else []) + len(rec.warmup.samples if rec.warmup else [])
    assert kept >= 8, rec.error


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_run_stopped_by_a_signal_keeps_what_finished_and_leaves_nothing_running(tmp_path: Path,
                                                                                sig: signal.Signals) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text("name: sig\narch: Unet\nencoder: resnet18\nresolution: 32\nwarmup: 1\nsteps: 400\n"
                     "matrix:\n  batch_size: [2, 4]\n")
    marker = uuid.uuid4().hex
    out = tmp_path / "r.jsonl"
    proc = start(["run", str(suite), "--device", "cpu", "--output", str(out), "--reports-dir", str(tmp_path / "rep")],
                 marker, tmp_path)
    assert proc.stdout is not None
    while "cells on cpu" not in (line := proc.stdout.readline()):  # the session's first line: measuring begins
        assert line, proc.stderr.read() if proc.stderr else ""
    time.sleep(3)  # inside the first cell's 400 steps
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "interrupted" in err and "Resume with" in err, err
    no_leftover(marker)
    assert out.exists()  # the session's file: what finished (none here) and the resume command's target


def test_a_script_that_exits_without_a_word_keeps_the_steps_it_streamed(cli, tmp_path: Path, camvid: Path) -> None:
    """`os._exit` at step 30 (no atexit: the hooks' result is never written): the record has the timed steps the
    hooks streamed as they were taken (27 were taken; at most half a second of them is not yet written), and
    counts of that moment, not of the first backward."""
    js = tmp_path / "rec.json"
    code, _, err = cli("attach", "--steps", "100", "--warmup", "2", "--json", js, "--output", tmp_path / "r.jsonl",
                       "-o", tmp_path / "rep", *train(camvid, "--exit-at", "30", workers=0))
    assert code == 1, err
    rec = Record.of(json.loads(js.read_text()))
    assert rec.status == "error" and "exited with code 0" in (rec.error or "")
    # at most 0.5 s of steps unwritten: 10 of them at 50 ms a step (this VM takes 80-100 ms); before, none was kept
    assert rec.step_time_s is not None and 12 <= len(rec.step_time_s.samples) <= 27, rec.error
    assert 15 <= rec.attached.steps_seen <= 30


def test_a_hung_script_stopped_at_its_timeout_keeps_every_step(cli, tmp_path: Path, camvid: Path) -> None:
    """A hang at step 12, stopped at --timeout: SIGTERM to its group, its hooks write what they measured — the 9
    timed steps after the first boundary and 2 warm-up steps, every one."""
    js = tmp_path / "rec.json"
    code, _, err = cli("attach", "--steps", "100", "--warmup", "2", "--timeout", "60", "--json", js,
                       "--output", tmp_path / "r.jsonl", "-o", tmp_path / "rep",
                       *train(camvid, "--hang-at", "12", workers=0))
    assert code == 1, err
    rec = Record.of(json.loads(js.read_text()))
    assert rec.status == "timeout" and "--timeout" in (rec.error or "")
    assert rec.step_time_s is not None and len(rec.step_time_s.samples) == 9, rec.error
    assert rec.attached.steps_seen == 12


def test_attach_repeat_stopped_resumes_the_runs_it_lacks(tmp_path: Path, camvid: Path) -> None:
    """`attach --repeat 3` stopped (SIGTERM) in its second run: the first run is kept, the script is ended, and
    `--resume` runs the two it lacks into the same file and run id (the session `run` uses)."""
    marker = uuid.uuid4().hex
    out = tmp_path / "r.jsonl"
    args = ["attach", "--steps", "3", "--warmup", "2", "--profile-steps", "0", "--repeat", "3", "--output", str(out),
            "-o", str(tmp_path / "rep")]
    proc = start([*args, *train(camvid, workers=0)], marker, tmp_path)
    wait_for_lines(proc, 8)  # the first run (6 steps: a first boundary, 2 warm-up, 3 timed) is done
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert f"Resume with: benchbench attach --resume {out}" in err
    no_leftover(marker)
    first = [Record.of(json.loads(x)) for x in out.read_text().splitlines()]
    assert first[0].ok and first[0].invocation is not None and first[0].invocation.options == {"repeat": 3}
    done = subprocess.run([sys.executable, "-m", "benchbench", "attach", "--resume", str(out), "--output", str(out),
                           "-o", str(tmp_path / "rep"), "--steps", "3", "--warmup", "2", "--profile-steps", "0",
                           *train(camvid, workers=0)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    recs = [Record.of(json.loads(x)) for x in out.read_text().splitlines()]
    ok = [r for r in recs if r.ok]
    assert len(ok) == 3 and {r.repeat for r in ok} == {0, 1, 2} and len({r.run_id for r in recs}) == 1


def test_a_stop_while_a_cell_starts_is_raised_once_its_pid_is_known_and_the_cell_is_killed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C landing inside `Process.start()` (the fork server forked the cell; its pid not yet read back) used
    to leave that cell training to its end, holding the terminal's pipes (a CI job hung 60 s on them). The stop is
    held until the start returns, then raised where the cell's group is killed."""
    from benchbench.runner import isolation

    (tmp_path / "slow_factory.py").write_text("import time\ntime.sleep(120)\n\ndef f():\n    pass\n")
    ctx = isolation._context()
    real = ctx.Process.start
    started: list[int] = []

    def start_then_ctrl_c(self: object) -> None:
        real(self)
        started.append(self.pid)  # type: ignore[attr-defined]
        os.kill(os.getpid(), signal.SIGINT)  # as if it came while the pid was being read back

    monkeypatch.setattr(ctx.Process, "start", start_then_ctrl_c)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        isolation.run_child({"kind": "factory", "spec": "slow_factory:f", "cwd": str(tmp_path)}, 120)
    assert time.monotonic() - t0 < 30
    [pid] = started
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text():
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the cell's process {pid} was left running")
