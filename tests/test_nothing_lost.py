"""Nothing measured is lost: an append is all-or-nothing (a full disk, a file-size limit), a damaged tail is
set aside before anything is appended, and an unwritable output is refused before the first cell."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchbench.errors import BenchbenchError
from benchbench.results import ResultStore, ResultsWriteError, read_records

REC = {"schema": "benchbench.result/1", "suite": "s", "run_id": "r", "cell_id": "c", "params": {"batch_size": 2},
       "status": "ok",
       "step_time_s": {"samples": [0.1], "median": 0.1}}


def _append_under_limit(path: Path, limit: int, rec: dict) -> int:
    """Append in a child whose files may not grow past `limit` bytes (RLIMIT_FSIZE: a full disk, for one file)."""
    code = (
        "import resource, signal, sys, json\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from benchbench.results import ResultStore, ResultsWriteError\n"
        "try:\n"
        f"    ResultStore({str(path)!r}).append(json.loads({json.dumps(json.dumps(rec))}))\n"
        "except ResultsWriteError as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode


def test_an_append_that_does_not_fit_leaves_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    ResultStore(path).append(REC)
    size = path.stat().st_size
    big = {**REC, "cell_id": "d", "padding": "x" * 5000}
    assert _append_under_limit(path, size + 100, big) == 3  # the write fails part-way...
    assert path.stat().st_size == size  # ...and is undone: no partial line
    assert [r.cell_id for r in read_records([path])] == ["c"]
    ResultStore(path).append(big)  # space again: the next record lands on its own line
    assert [r.cell_id for r in read_records([path])] == ["c", "d"]


def test_a_damaged_tail_is_set_aside_before_appending(tmp_path: Path, capsys) -> None:
    path = tmp_path / "r.jsonl"
    ResultStore(path).append(REC)
    with open(path, "a") as f:
        f.write('{"schema": "benchbench.result/1", "cell_id": "half')  # cut mid-write by an older version
    ResultStore(path).append({**REC, "cell_id": "e"})
    assert [r.cell_id for r in read_records([path])] == ["c", "e"]
    [aside] = list(tmp_path.glob("r.jsonl.damaged-*"))
    assert aside.read_text().endswith('"half')
    assert "partial line" in capsys.readouterr().err


def test_an_unwritable_output_is_refused_before_the_first_cell(tmp_path: Path, cli) -> None:
    from conftest import write_suite

    suite = write_suite(tmp_path / "s.yaml", "name: w\nresolution: 32\nbatch_size: 2\nwarmup: 1\nsteps: 1\n"
                        "device: cpu\n")
    (tmp_path / "adir").mkdir()
    code, _, err = cli("run", suite, "--output", tmp_path / "adir", "--no-explain")
    assert code == 2 and "is a directory" in err and "Traceback" not in err
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        code, _, err = cli("run", suite, "--output", ro / "r.jsonl", "--no-explain")
        assert code == 2 and "cannot write results" in err
    with pytest.raises(BenchbenchError):
        ResultStore(tmp_path / "adir").check_writable()
    assert issubclass(ResultsWriteError, BenchbenchError) and ResultsWriteError.exit_code == 1
    assert resource and signal  # the limits used above exist on this platform


@pytest.mark.slow
def test_a_full_disk_stops_the_run_with_the_resume_command_and_resume_completes(tmp_path: Path) -> None:
    from conftest import TESTS, write_suite

    suite = write_suite(tmp_path / "full.yaml", """
name: full
arch: "factories:tiny"
device: cpu
resolution: 32
batch_size: 2
classes: 3
warmup: 1
steps: 2
matrix:
  seed: [0, 1, 2]
""")
    out = tmp_path / "r.jsonl"
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    cmd = [sys.executable, "-m", "benchbench", "run", str(suite), "--output", str(out), "--no-explain",
           "--reports-dir", str(tmp_path / "rep")]

    def limit() -> None:  # the results file may hold about one record: the disk "fills" at the second
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))

    full = subprocess.run(cmd, cwd=TESTS, env=env, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert full.returncode == 1, full.stderr
    assert "could not record a cell" in full.stderr and "Resume with" in full.stderr
    assert "Traceback" not in full.stderr
    first = read_records([out])  # every line parses
    assert 1 <= len(first) < 3
    done = subprocess.run(cmd[:5] + ["--resume", str(out), "--no-explain", "--reports-dir", str(tmp_path / "rep")],
                          cwd=TESTS, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(r.params["seed"] for r in read_records([out])) == [0, 1, 2]


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path: Path, cli) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    for where in ("reference: *a8", "matrix:\n  seed: *a8"):
        path = tmp_path / "bomb.yaml"
        path.write_text("\n".join(lines) + "\n" + where + "\n")
        code, _, err = cli("list", path, "--device", "cpu")
        assert code == 2 and "billion laughs" in err and len(err) < 2000


def test_ordinary_yaml_aliases_still_work(tmp_path: Path) -> None:
    from benchbench.suite import load_suite

    path = tmp_path / "ok.yaml"
    path.write_text("profiles:\n  cpu: &c {resolution: 32, batch_size: 2}\n  cuda: *c\n")
    assert load_suite(path, device="cpu").cells[0].params["resolution"] == [32, 32]


def test_a_huge_matrix_is_refused_with_its_count(tmp_path: Path, cli, monkeypatch) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("matrix:\n  seed: [" + ", ".join(map(str, range(1000))) + "]\n  lr: ["
                    + ", ".join(f"0.{i + 1:03d}" for i in range(100)) + "]\n")
    code, _, err = cli("list", path, "--device", "cpu")
    assert code == 2 and "100,000 combinations" in err and "BENCHBENCH_MAX_CELLS" in err
    monkeypatch.setenv("BENCHBENCH_MAX_CELLS", "200000")
    from benchbench.suite import load_suite

    small = tmp_path / "small.yaml"
    small.write_text("matrix:\n  seed: [0, 1, 2]\n")
    assert len(load_suite(small, device="cpu").cells) == 3


def test_explain_trace_believes_no_impossible_number(tmp_path: Path, cli) -> None:
    from test_syncs import item, step_with

    t = step_with(item)
    t.events.append({"ph": "X", "cat": "kernel", "name": "bad", "pid": 0, "tid": 7, "ts": 50, "dur": -30_607_000,
                     "args": {"correlation": 1, "stream": 7}})
    t.events.append({"ph": "X", "cat": "kernel", "name": "nodur", "pid": 0, "tid": 7, "ts": 60,
                     "args": {"correlation": 1, "stream": 7}})
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"traceEvents": t.events}))
    code, out, err = cli("explain-trace", path, "--step-time", "0.001", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["gpu_busy_s"] > 0 and doc["kernels_per_step"] == 2
    assert any("negative dur" in n for n in doc["notes"]) and any("non-numeric" in n for n in doc["notes"])
    code, out, err = cli("explain-trace", path, "--step-time", "nan")
    assert code == 2 and "positive number" in err
    code, out, err = cli("explain-trace", path, "--json")  # no step time: idle unknown, still valid JSON
    assert code == 0 and "NaN" not in out and json.loads(out)["gpu_idle_fraction"] is None


def test_resume_continues_the_run_it_was_asked_to(tmp_path: Path, cli, monkeypatch) -> None:
    """An interrupted `--repeat 2 --filter ... --no-explain` run resumes as that run: not one round, not the
    filtered-out cells, not with explanations; a contradicting command line and another suite's file are refused."""
    from conftest import TESTS, write_suite

    monkeypatch.chdir(TESTS)
    suite = write_suite(tmp_path / "rs.yaml", """
name: rs
arch: "factories:tiny"
device: cpu
resolution: 32
batch_size: 2
classes: 3
warmup: 1
steps: 1
matrix:
  seed: [0, 1, 2]
""")
    out = tmp_path / "r.jsonl"
    code, _, err = cli("run", suite, "--output", out, "--repeat", "2", "--filter", "seed=0", "--filter", "seed=1",
                       "--no-explain", "--reports-dir", tmp_path / "rep")
    assert code == 0, err
    lines = out.read_text().splitlines()
    assert len(lines) == 4
    out.write_text("\n".join(lines[:2]) + "\n")  # interrupted after the first round
    code, _, err = cli("run", suite, "--resume", out, "--repeat", "3", "--reports-dir", tmp_path / "rep")
    assert code == 2 and "contradicts" in err and "--repeat 3" in err
    code, _, err = cli("run", suite, "--resume", out, "--reports-dir", tmp_path / "rep")
    assert code == 0, err
    recs = read_records([out])
    assert sorted((r.params["seed"], r.repeat) for r in recs) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert not any(r.flops for r in recs)  # --no-explain was kept
    other = write_suite(tmp_path / "other.yaml", "name: other\narch: \"factories:tiny\"\ndevice: cpu\n"
                        "resolution: 32\nbatch_size: 2\nclasses: 3\nwarmup: 1\nsteps: 1\n")
    code, _, err = cli("run", other, "--resume", out, "--reports-dir", tmp_path / "rep")
    assert code == 2 and "belongs to suite 'rs'" in err


def test_non_ascii_suite_names_stay_distinct() -> None:
    from benchbench.suite import slugify

    assert slugify("名前") != slugify("日本語") and slugify("名前") == "名前"
    assert slugify("../../etc/x") == "etc-x" and "/" not in slugify("a/../b")


GOOD = {"schema": "benchbench.result/1", "suite": "s", "run_id": "r1", "cell_id": "c1", "label": "c1",
        "params": {"batch_size": 2}, "status": "ok", "step_time_s": {"samples": [0.1, 0.11, 0.12], "median": 0.11},
        "env": {"fingerprint": "f"}, "started_at": "2026-11-25T00:00:00Z"}

DAMAGED = [
    {**GOOD, "step_time_s": "fast"},
    {**GOOD, "step_time_s": {"samples": []}},
    {**GOOD, "step_time_s": {"samples": ["x", 1]}},
    {**GOOD, "params": [1, 2]},
    {**GOOD, "status": "great"},
    {**GOOD, "cell_id": 7},
    {**GOOD, "schema": "benchbench.result/99"},
    {**GOOD, "step_time_s": {"samples": [-1.0, 0.1]}},
]


def _file(tmp_path: Path, name: str, lines: list[str]) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


@pytest.mark.parametrize("bad", DAMAGED + ["[" * 100_000 + "]" * 100_000], ids=lambda b: str(b)[:40])
def test_damaged_records_are_skipped_with_their_line_never_a_traceback(tmp_path: Path, cli, bad) -> None:
    line = bad if isinstance(bad, str) else json.dumps(bad)
    only_bad = _file(tmp_path, "bad.jsonl", [line])
    mixed = _file(tmp_path, "mixed.jsonl", [json.dumps(GOOD), line])
    for args in (["export", only_bad, "-o", tmp_path / "x.json"], ["compare", only_bad, only_bad],
                 ["report", only_bad, "-o", tmp_path / "rep"], ["history", "add", only_bad, "--db", tmp_path / "h.db"],
                 ["merge", only_bad, "-o", tmp_path / "m.jsonl"]):
        code, _, err = cli(*args)
        assert code == 2 and "Traceback" not in err and "internal error" not in err, (args, err)
        assert "bad.jsonl:1" in err
    code, _, err = cli("compare", mixed, mixed)
    assert code == 0 and "mixed.jsonl:2" in err and "internal error" not in err


def test_a_bom_and_a_newer_schema(tmp_path: Path) -> None:
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    assert [r.cell_id for r in read_records([p])] == ["c1"]  # the BOM did not cost the first record
    from benchbench.record import Record, RecordError

    with pytest.raises(RecordError, match="another benchbench version"):
        Record.of({**GOOD, "schema": "benchbench.result/99"})


def test_bad_output_places_and_shards(tmp_path: Path, cli) -> None:
    good = _file(tmp_path, "g.jsonl", [json.dumps(GOOD)])
    (tmp_path / "adir").mkdir()
    code, _, err = cli("export", good, "-o", tmp_path / "adir")
    assert code == 2 and "cannot write" in err
    code, _, err = cli("report", good, "-o", "/dev/null")
    assert code == 2 and "cannot write the reports" in err
    from conftest import write_suite

    suite = write_suite(tmp_path / "s.yaml", "name: s\nresolution: 32\ndevice: cpu\n")
    code, _, err = cli("run", suite, "--shard", "1/99999999999999999999", "--no-explain")
    assert code == 2 and "--shard" in err and "Traceback" not in err


@pytest.mark.slow
def test_factory_import_time_code_runs_isolated(tmp_path: Path) -> None:
    """A factory module that calls sys.exit(0) at import made `run` exit 0 with no results; one raising
    KeyboardInterrupt in its call printed a traceback."""
    from conftest import TESTS, write_suite

    env = dict(os.environ, PYTHONPATH=str(TESTS))
    for arch, expect in (("factories_exit_at_import:build", "SystemExit: 0 (at factories_exit_at_import.py"),
                         ("factories_interrupt:build", None)):
        suite = write_suite(tmp_path / "f.yaml", f'name: f\narch: "{arch}"\ndevice: cpu\nresolution: 32\n'
                            "batch_size: 2\nclasses: 3\nwarmup: 1\nsteps: 1\n")
        out = tmp_path / f"{arch.split(':')[0]}.jsonl"
        p = subprocess.run([sys.executable, "-m", "benchbench", "run", str(suite), "--output", str(out),
                            "--no-explain", "--reports-dir", str(tmp_path / "rep")], cwd=TESTS, env=env,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
        if expect:
            assert p.returncode == 2 and expect in p.stderr
        else:
            [rec] = read_records([out])
            assert rec.status == "error" and "KeyboardInterrupt" in rec.error


def test_minor_input_errors(tmp_path: Path, cli) -> None:
    from benchbench.suite import build_suite

    with pytest.raises(BenchbenchError, match="batch_size"):
        build_suite({"batch_size": True}, device="cpu")
    good = _file(tmp_path, "g.jsonl", [json.dumps(GOOD)])
    code, _, err = cli("baseline", "save", good, "--name", "", "--baselines-dir", tmp_path / "b")
    assert code == 2 and "name" in err
    code, _, err = cli("report", good, "--pair", "nope,nada", "-o", tmp_path / "rep")
    assert code == 2 and "names no ok cell" in err


@pytest.mark.slow
def test_sigterm_before_the_first_cell_says_so(tmp_path: Path) -> None:
    import time

    from conftest import TESTS, write_suite

    suite = write_suite(tmp_path / "s.yaml", 'name: s\narch: "factories:tiny"\ndevice: cpu\nresolution: 32\n'
                        "batch_size: 2\nclasses: 3\nwarmup: 1\nsteps: 1\n")
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    p = subprocess.Popen([sys.executable, "-m", "benchbench", "run", str(suite), "--output", str(tmp_path / "r.jsonl"),
                          "--no-explain", "--reports-dir", str(tmp_path / "rep")], cwd=TESTS, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # importing torch; before the first cell
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and ("interrupted" in err or "Resume with" in err), (p.returncode, err)
