from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_suite

from benchbench.record import SCHEMA


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


FAULTS = """
name: faults
matrix:
  arch: ["factories:tiny", "factories:crash", "factories:kill", "factories:hang", "factories:raises",
         "factories:oom", "factories:not_a_model"]
timeout_s: 20
include:
  - {arch: "factories:hang", timeout_s: 3}
resolution: 32
batch_size: 2
warmup: 1
steps: 2
device: cpu
"""


@pytest.mark.slow
def test_faulty_cells_are_recorded_and_the_suite_goes_on(tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.chdir(Path(__file__).parent)  # factories.py importable from the cwd, as for users
    suite = write_suite(tmp_path / "faults.yaml", FAULTS)
    out = tmp_path / "r.jsonl"
    code, _stdout, stderr = cli("run", suite, "--output", out, "--reports-dir", tmp_path / "rep")
    assert code == 1, stderr
    recs = {r["params"]["arch"].split(":")[1]: r for r in read_jsonl(out)}
    assert recs["tiny"]["status"] == "ok"
    assert recs["crash"]["status"] == "error" and "exited with code 7" in recs["crash"]["error"]
    assert recs["kill"]["status"] == "error" and "SIGKILL" in recs["kill"]["error"]
    assert recs["hang"]["status"] == "timeout" and "timeout_s=3" in recs["hang"]["error"]
    assert recs["raises"]["status"] == "error" and "boom in forward" in recs["raises"]["error"]
    assert recs["oom"]["status"] == "oom"
    assert recs["not_a_model"]["status"] == "error" and "not a torch.nn.Module" in recs["not_a_model"]["error"]
    assert "did not finish ok" in stderr
    code, _, _ = cli("run", suite, "--output", tmp_path / "r2.jsonl", "--reports-dir", tmp_path / "rep",
                     "--filter", "arch=factories:raises", "--allow-failures")
    assert code == 0


@pytest.mark.slow
def test_run_end_to_end_writes_records_and_report(tmp_path: Path, cli) -> None:
    suite = write_suite(
        tmp_path / "e2e.yaml",
        """
name: e2e
matrix:
  arch: [Unet, Segformer]
  data: [synthetic, {kind: synthetic-disk, image_size: [48, 64], count: 4}]
encoder: resnet18
resolution: 32
batch_size: 2
classes: 4
warmup: 2
steps: 3
device: cpu
""",
    )
    code, stdout, stderr = cli("run", suite, "--results-dir", tmp_path / "res", "--reports-dir", tmp_path / "rep")
    assert code == 0, stderr
    [path] = list((tmp_path / "res" / "e2e").glob("*.jsonl"))
    recs = read_jsonl(path)
    assert len(recs) == 4
    for r in recs:
        assert r["schema"] == SCHEMA and r["status"] == "ok" and r.get("error") is None
        assert len(r["step_time_s"]["samples"]) == 3
        assert r["step_time_s"]["p10"] <= r["step_time_s"]["median"] <= r["step_time_s"]["p90"]
        assert r["throughput_img_s"] == pytest.approx(2 / r["step_time_s"]["median"])
        assert 0 <= r["data_wait_s"]["fraction"] < 1
        assert r["params_count"] > 0 and r["env"]["torch"]
        assert r["run_id"] == path.stem
    disk = [r for r in recs if r["params"]["data"]["kind"] == "synthetic-disk"]
    assert all(r["data_wait_s"]["median"] > 0 for r in disk)
    [md] = list((tmp_path / "rep" / "e2e").glob("*.md"))
    text = md.read_text()
    assert "Unet" in text and "Segformer" in text and "## Environment" in text and "1.00x" in text
    assert "img/s" in stdout


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, (), "suite file not found"),
        ("matrix: [unclosed", (), "not valid YAML"),
        ("- a\n- b\n", (), "must contain a mapping"),
        ("matrx: {arch: [Unet]}\n", (), "did you mean 'matrix'"),
        ("matrix: {batch_size: [2, two]}\n", (), r"matrix.batch_size\[1\]"),
        ("matrix: {arch: [Segformr]}\nresolution: 64\n", (), "did you mean 'Segformer'"),
        ("matrix: {encoder: [resnet181]}\nresolution: 64\n", (), "unknown encoder"),
        ("matrix: {batch_size: []}\n", (), "empty"),
        ("arch: Segformer\nresolution: 50\n", (), "cannot train"),
        ("arch: DeepLabV3Plus\nbatch_size: 1\nresolution: 64\n", (), "batch_size >= 2"),
        ("data: {folder: /nonexistent/camvid}\nresolution: 64\n", (), "data folder not found"),
        ("resolution: 64\n", ("--device", "tpu"), "unknown device"),
        ("resolution: 64\n", ("--filter", "nokey=1"), "unknown setting 'nokey'"),
    ],
)
def test_bad_input_exits_2_without_traceback(tmp_path: Path, cli, content, args, message) -> None:
    suite = tmp_path / "s.yaml"
    if content is not None:
        suite.write_text(content)
    code, stdout, stderr = cli("run", suite, "--results-dir", tmp_path / "res", *args)
    assert code == 2
    assert "Traceback" not in stdout + stderr
    import re

    assert re.search(message, " ".join((stdout + stderr).split())), stdout + stderr
    assert not (tmp_path / "res").exists()  # validated before the first cell


def test_list_and_env(tmp_path: Path, cli) -> None:
    suite = write_suite(tmp_path / "l.yaml", "matrix: {arch: [Unet, FPN], resolution: [64, 128]}\n")
    code, out, _ = cli("list", suite, "--device", "cpu", "--json")
    cells = json.loads(out)
    assert code == 0 and len(cells) == 4 and len({c["id"] for c in cells}) == 4
    code, out, _ = cli("list", suite, "--device", "cpu")
    assert code == 0 and "FPN res=128" in out
    code, out, _ = cli("env", "--device", "cpu")
    env = json.loads(out)
    assert code == 0 and env["torch"] and env["fingerprint"]


def test_cpu_record_carries_clock_epoch_and_fused_optimizer(tmp_path: Path, cli) -> None:
    suite = write_suite(tmp_path / "s.yaml", """
name: clock
arch: Unet
encoder: resnet18
resolution: 32
batch_size: 2
optimizer: adamw-fused
data: {kind: synthetic-disk, image_size: [40, 48], count: 6}
warmup: 1
steps: 4
device: cpu
""")
    out = tmp_path / "r.jsonl"
    code, _, err = cli("run", suite, "--output", out, "--reports-dir", tmp_path / "rep", "--no-explain")
    assert code == 0, err
    [r] = read_jsonl(out)
    assert r["status"] == "ok" and r["params"]["optimizer"] == "adamw-fused"
    assert r["timing"]["clock"] == "perf_counter" and r["timing"]["throughput_basis"] == "images / median step"
    assert r["timing"]["block_wall_s"] == pytest.approx(sum(r["step_time_s"]["samples"]))
    # 6 images at batch 2 were 3 steps an epoch; an epoch now spans the cell (1 + 4 + 16 explanation batches)
    assert r["data_wait_s"]["steps_per_epoch"] == 21 and r["data_wait_s"]["epoch_boundary_s"] > 0


def test_library_warnings_go_to_the_record_and_the_log(tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.chdir(Path(__file__).parent)
    suite = write_suite(tmp_path / "w.yaml", "name: w\narch: factories:warns\nresolution: 32\nbatch_size: 2\n"
                        "warmup: 1\nsteps: 2\ndevice: cpu\n")
    out = tmp_path / "r.jsonl"
    code, stdout, stderr = cli("run", suite, "--output", out, "--reports-dir", tmp_path / "rep", "--no-explain")
    assert code == 0, stderr
    assert "FutureWarning" not in stdout + stderr.replace("warning(s) recorded", "")
    [r] = read_jsonl(out)
    assert any("FutureWarning: this API is deprecated" in w for w in r["warnings"])
    assert "FutureWarning" in out.with_suffix(".log").read_text()
    assert "library warning(s) recorded" in stdout
    code, stdout, _ = cli("run", suite, "--output", tmp_path / "r2.jsonl", "--reports-dir", tmp_path / "rep",
                          "--no-explain", "--verbose")
    assert code == 0 and "FutureWarning: this API is deprecated" in stdout


def test_ddp_ranks_agree_on_the_end_of_warm_up(tmp_path, cli, monkeypatch) -> None:
    """Rank 0 steady after 2 steps, rank 1 never: both must leave warm-up together (at the bound), or rank 0
    reaches the timed block's barrier while rank 1 still all-reduces gradients."""
    import json

    from conftest import TESTS, write_suite

    monkeypatch.chdir(TESTS)
    suite = write_suite(tmp_path / "ddp.yaml", """
name: ddp
arch: "factories:disagree"
device: cpu
resolution: 32
batch_size: 2
classes: 3
warmup: 6
steps: 2
world_size: 2
timeout_s: 60
""")
    out = tmp_path / "r.jsonl"
    code, _, err = cli("run", suite, "--output", out, "--no-explain", "--reports-dir", tmp_path / "rep")
    [rec] = [json.loads(x) for x in out.read_text().splitlines()]
    assert code == 0 and rec["status"] == "ok", (err, rec.get("error"))
    assert rec["ranks"]["warmup_steps"] == [6, 6]  # the bound: rank 1 was never steady


def test_compile_under_ddp_is_compiled_not_silently_eager(tmp_path, cli, monkeypatch) -> None:
    import json

    from conftest import TESTS, write_suite

    monkeypatch.chdir(TESTS)
    suite = write_suite(tmp_path / "ddpc.yaml", """
name: ddpc
arch: "factories:tiny"
device: cpu
resolution: 32
batch_size: 2
classes: 3
warmup: 3
steps: 2
world_size: 2
compile: true
timeout_s: 240
""")
    out = tmp_path / "r.jsonl"
    code, _, err = cli("run", suite, "--output", out, "--no-explain", "--reports-dir", tmp_path / "rep")
    [rec] = [json.loads(x) for x in out.read_text().splitlines()]
    assert code == 0 and rec["status"] == "ok", (err, rec.get("error"))
    # The first warm-up step compiles (seconds); an eager Tiny step at 32 px takes milliseconds.
    assert rec["warmup"]["samples"][0] > 20 * rec["step_time_s"]["median"]


def test_a_failing_ddp_rank_is_its_error_not_a_timeout(tmp_path, cli, monkeypatch) -> None:
    """Rank 1 fails while rank 0 waits in DDP's first collective: the others are ended at once and the record
    says rank 1's error — before, the parent waited timeout_s per rank and wrote 'timeout'."""
    import json
    import time

    from conftest import TESTS, write_suite

    monkeypatch.chdir(TESTS)
    suite = write_suite(tmp_path / "ddpf.yaml", """
name: ddpf
arch: "factories:fail_on_rank1"
device: cpu
resolution: 32
batch_size: 2
classes: 3
warmup: 2
steps: 2
world_size: 2
timeout_s: 120
""")
    out = tmp_path / "r.jsonl"
    t0 = time.monotonic()
    code, _, _err = cli("run", suite, "--output", out, "--no-explain", "--reports-dir", tmp_path / "rep")
    took = time.monotonic() - t0
    [rec] = [json.loads(x) for x in out.read_text().splitlines()]
    assert code == 1 and rec["status"] == "error", _err
    assert rec["error"].startswith("rank 1: RuntimeError: rank 1 ran out of something"), rec["error"]
    assert "ended the other rank" in rec["error"]
    assert took < 60, took  # not the 120 s timeout


def test_a_ddp_record_carries_what_any_record_carries(tmp_path, cli, monkeypatch) -> None:
    """One cell program for every caller: a DDP cell records memory, losses, build time, CPU contention and
    the explanation passes (rank 0's), with every rank's memory and losses kept."""
    import json

    from conftest import TESTS, write_suite

    monkeypatch.chdir(TESTS)
    suite = write_suite(tmp_path / "ddpr.yaml", """
name: ddpr
arch: "factories:tiny"
device: cpu
resolution: 32
batch_size: 2
classes: 3
warmup: 2
steps: 3
world_size: 2
timeout_s: 240
""")
    out = tmp_path / "r.jsonl"
    code, _, err = cli("run", suite, "--output", out, "--reports-dir", tmp_path / "rep")
    [rec] = [json.loads(x) for x in out.read_text().splitlines()]
    assert code == 0 and rec["status"] == "ok", (err, rec.get("error"))
    assert rec["memory"]["peak_rss_bytes"] > 0 and len(rec["memory"]["per_rank"]) == 2
    assert len(rec["training"]["losses"]) == rec["warmup"]["steps"] + 3
    assert [len(x) for x in rec["ranks"]["losses"]] == [len(rec["training"]["losses"])] * 2
    assert rec["build_s"] > 0 and rec["cpu_contention"]["n_cores"] >= 1 and len(rec["cpu_contention"]["per_rank"]) == 2
    assert rec["flops"]["train_step_per_image"] > 0
    assert {"encoder", "decoder"} <= set(rec["breakdown"]["modules"])  # the wrapped model's parts, not `module`
    assert rec["throughput_img_s"] > 0
