"""A run that starts in seconds: the device's peak kept per machine, the fork server started before the suite is
read, and the elapsed time the process's own, split in parts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_suite

from benchbench.measure import peak_cache
from benchbench.record import Record

PEAK = {"dtype": "fp32", "n": 1024, "reps": 2, "flops_per_s": 5e10, "block_rates": [5e10] * 5, "spread": 0.02,
        "calibrated_at": "2026-12-04T12:00:00Z"}


def test_a_kept_peak_is_the_machines_and_says_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BENCHBENCH_CACHE", str(tmp_path))
    assert peak_cache.load("abc", ["fp32"]) is None  # nothing kept yet
    assert peak_cache.save("abc", {"fp32": PEAK}) == ["fp32"]
    kept = peak_cache.load("abc", ["fp32"])
    assert kept == {"fp32": {**PEAK, "cached": True}}
    assert peak_cache.load("other", ["fp32"]) is None  # another fingerprint: another machine, torch or device
    assert peak_cache.load("abc", ["fp32", "bf16"]) is None  # every mode asked for, or a calibration
    # a second calibration adds its modes beside the kept ones; a kept mark is never kept as a measurement
    peak_cache.save("abc", {"bf16": {**PEAK, "dtype": "bf16", "cached": True}})
    assert set(peak_cache.load("abc", ["fp32", "bf16"])) == {"fp32", "bf16"}
    assert "cached" not in json.loads((tmp_path / "peak" / "abc.json").read_text())["value"]["bf16"]


def test_a_noisy_failed_or_unreadable_calibration_is_not_kept(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BENCHBENCH_CACHE", str(tmp_path))
    assert peak_cache.save("abc", {"fp32": {**PEAK, "spread": 0.4}}) == []  # another process held a core
    assert peak_cache.save("abc", {"fp32": {"dtype": "fp32", "error": "RuntimeError: no"}}) == []
    assert peak_cache.load("abc", ["fp32"]) is None
    (tmp_path / "peak").mkdir(exist_ok=True)
    (tmp_path / "peak" / "abc.json").write_text("{not json")
    assert peak_cache.load("abc", ["fp32"]) is None  # a broken file costs a calibration, never the run
    (tmp_path / "peak" / "abc.json").write_text(json.dumps({"version": 0, "key": "abc", "value": {"fp32": PEAK}}))
    assert peak_cache.load("abc", ["fp32"]) is None  # an older layout is measured again


TINY = """
name: tiny
arch: Unet
encoder: resnet18
resolution: 32
batch_size: 2
warmup: 1
steps: 1
device: cpu
"""


@pytest.mark.slow
def test_the_second_run_keeps_the_peak_and_recalibrate_measures_it_again(tmp_path: Path, cli,
                                                                        monkeypatch) -> None:
    monkeypatch.setenv("BENCHBENCH_CACHE", str(tmp_path / "cache"))
    suite = write_suite(tmp_path / "tiny.yaml", TINY)

    def run(*extra: str) -> tuple[Record, str]:
        out = tmp_path / f"r{len(list(tmp_path.glob('r*.jsonl')))}.jsonl"
        code, stdout, err = cli("run", suite, "-o", out, "--reports-dir", tmp_path / "rep", *extra)
        assert code == 0, stdout + err
        return Record.of(json.loads(out.read_text().splitlines()[-1])), stdout

    first, _ = run()
    peak = first.env.peak_flops["fp32"]
    if peak.get("spread", 0) > peak_cache.MAX_SPREAD:
        pytest.skip(f"this machine's calibration was too noisy to keep: blocks {peak.get('block_rates')}")
    assert not peak.get("cached") and peak["calibrated_at"]
    second, stdout = run("--verbose")
    assert second.env.peak_flops["fp32"] == {**peak, "cached": True}  # the same measurement, said kept
    # the process's wall time, and where it went
    line = next(ln for ln in stdout.splitlines() if ln.startswith("elapsed "))
    for part in ("start-up", "preflight", "calibration (kept)", "cells", "reports"):
        assert part in line, line
    total = float(line.split()[1])
    parts = [float(p.rsplit(" ", 2)[1]) for p in line.split("(", 1)[1].rstrip(")").split(", ")]
    assert abs(sum(parts) - total) < 0.15, line  # the parts are the whole
    third, _ = run("--recalibrate")
    assert not third.env.peak_flops["fp32"].get("cached")
    assert third.env.peak_flops["fp32"]["calibrated_at"] >= peak["calibrated_at"]
    report = sorted((tmp_path / "rep").rglob("*.md"))
    assert any("kept from" in p.read_text() for p in report)


SCRIPT = """
print("MAIN RAN", flush=True)  # a script without a __main__ guard: the fork server must not run it again
from benchbench.runner.isolation import run_child
from benchbench.runner.server import start_server
start_server()
out = run_child({"kind": "calibrate", "device": "cpu", "dtypes": ["fp32"]}, 300)
print("peak", out.result["fp32"]["flops_per_s"] > 0, flush=True)
"""


@pytest.mark.slow
def test_the_fork_server_started_early_never_runs_the_callers_main(tmp_path: Path) -> None:
    script = tmp_path / "user.py"
    script.write_text(SCRIPT)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("MAIN RAN") == 1 and "peak True" in r.stdout, r.stdout


def test_a_model_shapes_flops_key_leaves_out_what_cannot_change_them_and_refuses_user_code() -> None:
    from benchbench.runner.passes.flops import shape_key

    env = {"torch": "2.14.1", "smp": "0.6.0", "timm": "1.0", "benchbench": "0.1.0", "git_commit": "abc"}
    base = {"arch": "Unet", "encoder": "resnet18", "resolution": [32, 32], "classes": 3, "loss": "cross-entropy",
            "optimizer": "adamw", "seed": 0, "batch_size": 2, "warmup": 1}
    key = shape_key(base, env)
    assert key and key == shape_key({**base, "seed": 5, "batch_size": 8, "warmup": 3}, env)
    for change in ({"resolution": [64, 64]}, {"decoder_channels": 64}, {"classes": 4}, {"loss": "dice"}):
        assert shape_key({**base, **change}, env) != key, change
    assert shape_key(base, {**env, "torch": "2.15.0"}) != key  # another torch may trace another graph
    assert shape_key({**base, "arch": "factories:tiny"}, env) is None  # the user's code can change under a name
    assert shape_key({**base, "loss": "factories:my_loss"}, env) is None


@pytest.mark.slow
def test_cells_of_one_model_shape_count_its_flops_once(tmp_path: Path, cli) -> None:
    # a shape no other test trains: the cells' fork server keeps the environment it started with (the test
    # session's cache), so another test's cells of the same shape would have kept its FLOPs already
    suite = write_suite(tmp_path / "two.yaml", TINY.replace("resolution: 32", "resolution: 40") + "classes: 5\n"
                        "matrix:\n  seed: [0, 1]\n")
    out = tmp_path / "r.jsonl"
    code, stdout, err = cli("run", suite, "-o", out, "--reports-dir", tmp_path / "rep")
    assert code == 0, stdout + err
    first, second = (Record.of(json.loads(x)) for x in out.read_text().splitlines())
    assert first.flops.kept_from is None and second.flops.kept_from.startswith(f"cell {first.cell_id} at ")
    assert second.flops.train_step_per_image == first.flops.train_step_per_image
    assert second.flops.by_module == first.flops.by_module
    # the rate is each cell's own: its own median step over the same work
    assert second.flops.achieved_flops_per_s == pytest.approx(
        2 * second.flops.train_step_per_image * 2 / second.median)
    assert second.explain_s["flops"] < first.explain_s["flops"]


def _session_processes(sid: int) -> list[str]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # field 6: the session; a zombie is already gone
            out.append(stat.parent.name)
    return out


@pytest.mark.slow
def test_a_run_refused_at_preflight_leaves_no_fork_server_running(tmp_path: Path) -> None:
    """The fork server starts before the preflight; a suite the preflight refuses ends it too, not seconds later
    once it has imported torch."""
    suite = write_suite(tmp_path / "bad.yaml", TINY.replace("encoder: resnet18", "encoder: resnet9999"))
    p = subprocess.Popen([sys.executable, "-m", "benchbench", "run", str(suite), "-o", str(tmp_path / "r.jsonl"),
                          "--reports-dir", str(tmp_path / "rep")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True, cwd=tmp_path)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 2 and "resnet9999" in err and "Traceback" not in err, err
    assert _session_processes(p.pid) == []  # nothing of the run's session left, at once
