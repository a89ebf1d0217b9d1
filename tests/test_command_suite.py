"""A suite over the user's own command (`command:` with `{name}` placeholders): each cell is the filled command,
attached; its record holds what the script was seen to do beside the cell's axis values; a cell whose command
fails is an error record and the others go on; a stopped suite leaves nothing running and resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchbench.errors import BenchbenchError
from benchbench.record import Record
from benchbench.suite import load_suite
from benchbench.suite.build import build_suite

SCRIPTS = Path(__file__).parent / "scripts"
CAMVID = SCRIPTS / "train_camvid.py"


def _suite(**doc):
    return build_suite({"name": "s", **doc}, device="cpu")


def test_placeholders_are_filled_per_cell_in_arguments_and_environment() -> None:
    doc = {"command": "python train.py --batch-size {batch_size} --note '{note}' {{literal}}",
           "env": {"MY_PROCS": "{procs}", "FIXED": 1}, "matrix": {"batch_size": [2, 4], "procs": [1], "note": ["x"]},
           "include": [{"batch_size": 2, "procs": 3, "note": "a b"}], "device": "cpu"}
    s = _suite(**doc)
    cells = {c.label: c for c in s.cells}
    assert set(cells) == {"batch_size=2 procs=1 note=x", "batch_size=4 procs=1 note=x",
                          "batch_size=2 procs=3 note=a b"}
    c = cells["batch_size=2 procs=3 note=a b"]
    assert c.params["command"] == ["python", "train.py", "--batch-size", "2", "--note", "a b", "{literal}"]
    assert c.params["env"] == {"MY_PROCS": "3", "FIXED": "1"}
    assert s.varied == ["batch_size", "procs", "note"]
    assert len({c.id for c in s.cells}) == 3
    assert [c.id for c in _suite(**doc).cells] == [c.id for c in s.cells]  # stable: the same cells night after night


def test_booleans_are_written_as_yaml_reads_them_back() -> None:
    s = _suite(command=["yolo", "amp={amp}"], matrix={"amp": [False, True]})
    assert [c.params["command"][1] for c in s.cells] == ["amp=false", "amp=true"]


@pytest.mark.parametrize(("doc", "message"), [
    ({"command": "python t.py --b {batch_size}", "matrix": {"batch": [1, 2]}}, "used by no placeholder"),
    ({"command": "python t.py --b {batch_size}", "matrix": {"x": [1]}}, "used by no placeholder"),
    ({"command": "python t.py --b {batch_size}"}, "placeholder {batch_size} is filled by no axis"),
    ({"command": "python t.py --b {batch_size", "matrix": {"batch_size": [1]}}, "a lone '{'"),
    ({"command": "", "matrix": {}}, "command is empty"),
    ({"command": {"a": 1}}, "command must be a string or a list"),
    ({"command": "python t.py {a}", "matrix": {"a": [[1, 2]]}}, "single values"),
    ({"command": "python t.py", "env": {"1BAD": "x"}}, "no environment variable name"),
    ({"command": "python t.py", "batch_size": 4}, "unknown key 'batch_size' in a command suite"),
    ({"command": "python t.py", "steps": 0}, "steps must be"),
    ({"command": "python 't.py", }, "No closing quotation"),
])
def test_a_bad_command_suite_is_refused_with_its_reason(doc, message) -> None:
    with pytest.raises(BenchbenchError, match=message.replace("{", r"\{").replace("(", r"\(")):
        _suite(**doc)


def test_filters_and_the_reference_use_the_axes() -> None:
    doc = {"name": "s", "command": "python t.py {batch_size} {cache}", "matrix": {"batch_size": [2, 4],
                                                                                    "cache": [False, "ram"]},
           "reference": {"batch_size": 4, "cache": "ram"}}
    s = build_suite(doc, device="cpu", filters=["cache=ram"])
    assert {c.params["axes"]["cache"] for c in s.cells} == {"ram"} and len(s.cells) == 2
    assert s.reference.params["axes"] == {"batch_size": 4, "cache": "ram"}


def _write(tmp_path: Path, camvid: Path, extra: str = "") -> Path:
    p = tmp_path / "knobs.yaml"
    p.write_text(f"""name: camvid-knobs
command: {sys.executable} {CAMVID} --data {camvid} --epochs 50 --batch-size {{batch_size}} --size {{size}}
env:
  OMP_NUM_THREADS: "{{threads}}"
steps: 4
warmup: 2
profile_steps: 1
timeout_s: 240
matrix:
  batch_size: [2, 4]
  size: [32]
  threads: [1]
{extra}""")
    return p


@pytest.fixture(scope="module")
def camvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import make_camvid

    return make_camvid(tmp_path_factory.mktemp("cmd") / "camvid", n=8)


@pytest.mark.slow
def test_a_command_suite_runs_each_cell_attached_and_a_failing_command_is_its_error(cli, tmp_path: Path,
                                                                                   camvid: Path) -> None:
    suite = _write(tmp_path, camvid, "include:\n  - {batch_size: 2, size: 32, threads: 2}\n"
                                     "  - {batch_size: 2, size: not-a-number, threads: 1}\n")
    code, out, err = cli("run", suite, "--results-dir", tmp_path / "res", "--reports-dir", tmp_path / "rep")
    assert code == 1, out + err  # one cell failed: the exit says so, the others are recorded
    recs = {r.label: r for r in (Record.of(json.loads(x)) for x in
                                 next((tmp_path / "res").rglob("*.jsonl")).read_text().splitlines())}
    assert set(recs) == {"batch_size=2 size=32 threads=1", "batch_size=4 size=32 threads=1",
                         "batch_size=2 size=32 threads=2", "batch_size=2 size=not-a-number threads=1"}, list(recs)
    bad = recs["batch_size=2 size=not-a-number threads=1"]
    assert bad.status == "error" and "exited with code 2" in bad.error
    assert "argument --size: invalid int value: 'not-a-number'" in bad.error  # what the script said
    assert bad.params["axes"]["size"] == "not-a-number" and "lr" not in bad.params  # nothing invented
    good = [r for r in recs.values() if r.ok]
    assert len(good) == 3
    for r in good:
        # observed, per cell: the batch the model received, the size it trained at; the axes beside them
        assert r.params["batch_size"] == r.params["axes"]["batch_size"] and r.params["resolution"] == [32, 32]
        assert r.params["threads"] == r.params["axes"]["threads"] and r.attached is not None
        assert r.params["env"] == {"OMP_NUM_THREADS": str(r.params["axes"]["threads"])}
        assert "lr" in r.params and r.params["arch"] == "Unet"
        assert r.suite == "camvid-knobs" and r.cell_id != r.attached.command
    report = next((tmp_path / "rep").rglob("*.md")).read_text()
    assert "| batch\\_size=4 size=32 threads=1 " in report
    head = report.split("## Headline", 1)[1].split("## Cells", 1)[0]
    # each cell against the base (which is fastest is this VM's to say: batch 4 or 2 threads)
    [ref_line] = [ln for ln in head.splitlines() if "**reference**" in ln]
    assert "Against the reference batch\\_size=2 size=32 threads=1: " in ref_line, ref_line
    assert "batch\\_size=4 size=32 threads=1 " in ref_line and "batch\\_size=2 size=32 threads=2 " in ref_line
    assert "threads=2" in out and "img/s" in out


@pytest.mark.slow
def test_a_stopped_command_suite_leaves_nothing_running_and_resumes(tmp_path: Path, camvid: Path) -> None:
    suite = _write(tmp_path, camvid)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = tmp_path / "res"
    cmd = [sys.executable, "-m", "benchbench", "run", str(suite), "--results-dir", str(res), "--reports-dir",
           str(tmp_path / "rep")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 180
    script_pids: list[int] = []
    while time.monotonic() < deadline and not script_pids:  # the first cell's script is running
        script_pids = _pids_running(str(CAMVID))
        time.sleep(0.2)
    assert script_pids, "the cell's script never started"
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Resume with:" in err
    time.sleep(1.0)
    assert not _pids_running(str(CAMVID)), "the user's script was left running"
    resume = next(line for line in err.splitlines() if "Resume with:" in line).split("Resume with:", 1)[1].strip()
    args = resume.split()[1:]  # benchbench run SUITE --resume FILE
    done = subprocess.run([sys.executable, "-m", "benchbench", *args, "--reports-dir", str(tmp_path / "rep")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    recs = [Record.of(json.loads(x)) for x in next(res.rglob("*.jsonl")).read_text().splitlines()]
    assert {r.label for r in recs if r.ok} == {"batch_size=2", "batch_size=4"}
    assert len({r.run_id for r in recs}) == 1  # the resumed run is the same run


def _pids_running(needle: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = next(ln for ln in (d / "status").read_text().splitlines() if ln.startswith("State:"))
            except (OSError, StopIteration):
                continue
            if needle in cmdline and "zombie" not in state:  # a dead script not yet reaped runs nothing
                out.append(int(d.name))
    return out


def test_a_shipped_command_suite_loads(tmp_path: Path) -> None:
    s = load_suite(Path(__file__).parents[1] / "suites" / "yolo_knobs.yaml", device="cpu")
    assert {"batch_size", "num_workers", "resolution", "amp", "cache"} == set(s.varied) and len(s.cells) == 6


@pytest.mark.slow
def test_the_shipped_yolo_knobs_suite_runs_offline_and_ranks_each_knob_per_image(cli, tmp_path: Path,
                                                                                monkeypatch) -> None:
    """`suites/yolo_knobs.yaml` (its cpu profile: a base cell and each knob changed alone) over `yolo segment
    train`, offline, in a folder with a roads.yaml."""
    import shutil

    import numpy as np
    from PIL import Image

    if shutil.which("yolo") is None:
        pytest.skip("Ultralytics is not installed")
    root = tmp_path / "roads"
    rng = np.random.default_rng(0)
    for sub in ("images/train", "labels/train"):
        (root / sub).mkdir(parents=True)
    for i in range(16):
        Image.fromarray((rng.random((96, 96, 3)) * 255).astype(np.uint8)).save(root / "images/train" / f"{i:03d}.jpg")
        x, y = rng.uniform(0.2, 0.6, 2)
        poly = [x, y, x + 0.3, y, x + 0.3, y + 0.3, x, y + 0.3]
        (root / "labels/train" / f"{i:03d}.txt").write_text("0 " + " ".join(f"{v:.4f}" for v in poly) + "\n")
    (root / "roads.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnames:\n  0: road\n")
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ycfg"))
    monkeypatch.chdir(root)
    suite = Path(__file__).parents[1] / "suites" / "yolo_knobs.yaml"
    code, out, err = cli("run", suite, "--device", "cpu", "--results-dir", tmp_path / "res", "--reports-dir",
                         tmp_path / "rep")
    assert code == 0, out + err
    recs = [Record.of(json.loads(x)) for x in next((tmp_path / "res").rglob("*.jsonl")).read_text().splitlines()]
    assert len(recs) == 6 and all(r.ok for r in recs)
    by = {json.dumps(r.params["axes"], sort_keys=True): r for r in recs}
    for r in recs:  # each knob reached the trainer: what the model received, at the size it trained
        a = r.params["axes"]
        # Ultralytics accumulates batches up to nbs=64 images: a step is batches_per_step batches of the axis' size
        assert r.params["batch_size"] == a["batch_size"] * r.attached.batches_per_step == 64
        assert r.params["resolution"] == [a["resolution"]] * 2
        assert r.params["arch"] == "SegmentationModel"
    amp = next(r for r in by.values() if r.params["axes"]["amp"] is True)
    assert amp.params["amp"] == "none" and any("amp=true was set, but the script ran with amp none" in w
                                               for w in amp.warnings or [])  # Ultralytics: no AMP on a CPU
    report = next((tmp_path / "rep").rglob("*.md")).read_text()
    head = report.split("## Headline", 1)[1].split("## Cells", 1)[0]
    assert "**reference**" in head and "its throughput" in head  # every knob against the base, per image
    assert "cache" in report and "img/s" in report


def test_a_commands_own_axis_is_its_own_story() -> None:
    """Two command cells that differ in one of the command's own axes (`threads`: no built-in setting) are a pair
    whose story is that axis, as `num_workers` is the input pipeline's."""
    from benchbench.analysis.headline import theme_of
    from benchbench.analysis.records import Finding, diff_axes

    def rec(threads: int, amp: bool) -> Record:
        return Record.of({"schema": "benchbench.result/2", "suite": "s", "run_id": "r", "cell_id": f"c{threads}{amp}",
                          "params": {"batch_size": 2, "amp": "none", "threads": threads,
                                     "axes": {"threads": threads, "amp": amp}}, "status": "error"})

    assert diff_axes(rec(1, False), rec(2, False)) == ["threads"]
    # set differently, run alike (Ultralytics' AMP on a CPU): still the one thing changed
    assert diff_axes(rec(1, False), rec(1, True)) == ["amp"]
    f = Finding("pairwise_delta", ["a", "b"], "", {"differs_in": ["threads"], "ratio": 1.4})
    assert theme_of(f) == "threads"
