"""`advise --attach --vary`: the command's own arguments and environment, each value A/B against the command as
given; a variant that changes what is trained is judged per image and said to be a training change."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchbench.advise.vary import Vary, parse_vary, variants, with_value
from benchbench.errors import BenchbenchError

SCRIPTS = Path(__file__).parent / "scripts"


@pytest.mark.parametrize(("spec", "want"), [
    ("batch=8,16", Vary("batch", ("8", "16"))),
    ("--workers=2,8", Vary("--workers", ("2", "8"))),
    ("env:nnUNet_n_proc_DA=4,8", Vary("nnUNet_n_proc_DA", ("4", "8"), env=True)),
    ("cache=ram", Vary("cache", ("ram",))),
])
def test_vary_specs(spec, want) -> None:
    assert parse_vary(spec) == want


@pytest.mark.parametrize("spec", ["batch", "batch=", "=8", "env:1X=2", "batch=8,,16", "a b=1"])
def test_a_bad_vary_spec_is_refused(spec) -> None:
    with pytest.raises(BenchbenchError, match="--vary"):
        parse_vary(spec)


def test_an_argument_is_found_in_either_spelling_or_appended() -> None:
    yolo = ["yolo", "segment", "train", "batch=16", "imgsz=640"]
    assert with_value(yolo, "batch", "8") == ["yolo", "segment", "train", "batch=8", "imgsz=640"]
    assert with_value(yolo, "workers", "4") == [*yolo, "workers=4"]
    py = ["python", "train.py", "--workers", "2", "--size=64"]
    assert with_value(py, "--workers", "8") == ["python", "train.py", "--workers", "8", "--size=64"]
    assert with_value(py, "--size", "32") == ["python", "train.py", "--workers", "2", "--size=32"]
    assert with_value(py, "--amp", "bf16") == [*py, "--amp", "bf16"]


def test_the_commands_own_value_is_no_variant() -> None:
    vs, skipped = variants(["yolo", "batch=16"], {}, parse_vary("batch=8,16"))
    assert [v["to"] for v in vs] == ["8"] and "batch=16" in skipped[0]
    vs, skipped = variants(["python", "t.py"], {"OMP_NUM_THREADS": "2"}, parse_vary("env:OMP_NUM_THREADS=1,2"))
    assert vs == [{"to": "1", "command": ["python", "t.py"], "env": {"OMP_NUM_THREADS": "1"}}] and skipped


@pytest.mark.slow
def test_advise_attach_varies_an_argument_and_an_environment_variable(cli, tmp_path: Path) -> None:
    from conftest import make_camvid

    data = make_camvid(tmp_path / "camvid", n=8)
    js = tmp_path / "advise.json"
    code, out, err = cli("advise", "--attach", "--vary", "--batch-size=4", "--vary", "env:OMP_NUM_THREADS=1",
                         "--steps", "4", "--repeat-max", "2", "--min-runs", "2", "--results-dir", tmp_path / "res",
                         "-o", tmp_path / "rep", "--json", js, "--", sys.executable, str(SCRIPTS / "train_camvid.py"),
                         "--data", str(data), "--epochs", "50", "--batch-size", "2")
    assert code == 0, out + err
    doc = json.loads(js.read_text())
    by = {r["knob"]: r for r in doc["measured"]}
    assert set(by) == {"--batch-size", "env:OMP_NUM_THREADS"}  # only the varied ones: no outside knob unasked
    batch = by["--batch-size"]
    assert batch["kind"] == "training change" and batch["trained_change"] == {"batch_size": [2, 4]}
    assert batch["numerics"]["verdict"] == "not compared" and batch["statistic"] == "per_image"
    assert batch["runs"] == 2 and not batch["recommended"]
    omp = by["env:OMP_NUM_THREADS"]
    assert omp["kind"] == "argument" and omp["trained_change"] is None
    assert omp["numerics"]["verdict"] in ("unchanged", "changes the numerics")  # checked: what is trained is the same
    recs = [json.loads(x) for x in next((tmp_path / "res").rglob("advise-*.jsonl")).read_text().splitlines()]
    assert {r["params"]["batch_size"] for r in recs} == {2, 4}
    assert any("--batch-size 4" in r["params"]["command"] for r in recs)
    report = next((tmp_path / "rep").rglob("advise-*.md")).read_text()
    assert "| --batch-size | 4 |" in report and "| env:OMP_NUM_THREADS | 1 |" in report
