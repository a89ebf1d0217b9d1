"""Every axis the README lists, varied alone over two values: run, reported, compared — and every shipped suite and
the README's own suite example run at tiny sizes.

A suite with a `resolution` axis crashed `run` and `report` (the headline's ranking evaluated every finding kind's
formula on every finding, and the scaling findings' `step_s` is a list). No test had ever run one: the shipped
suites were only loaded, never run. These tests run them as a user does, through the CLI.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TESTS, write_suite

pytestmark = pytest.mark.slow

TINY = {"arch": "Unet", "encoder": "resnet18", "resolution": 32, "batch_size": 2, "warmup": 1, "steps": 2,
        "classes": 3, "threads": 1, "timeout_s": 240}
DISK = {"kind": "synthetic-disk", "image_size": [40, 48], "count": 8}
#: axis -> (its two values, the fixed settings it needs). `device` is no axis (a run measures on one device).
AXES: dict[str, tuple[list, dict]] = {
    "arch": (["Unet", "Linknet"], {}),
    "encoder": (["resnet18", "mobilenet_v2"], {}),
    "decoder_channels": ([32, 64], {}),
    "resolution": ([32, 64], {}),
    "batch_size": ([2, 4], {}),
    "amp": (["none", "bf16"], {}),
    "num_workers": ([0, 1], {"data": DISK}),
    "pin_memory": ([False, True], {"data": DISK}),
    "persistent_workers": ([True, False], {"data": DISK, "num_workers": 1}),
    "prefetch_factor": ([2, 4], {"data": DISK, "num_workers": 1}),
    "channels_last": ([False, True], {}),
    "compile": ([False, True], {"arch": "factories:tiny"}),  # compiling a Unet on 2 cores takes minutes
    "optimizer": (["adamw", "sgd"], {}),
    "lr": ([0.001, 0.01], {}),
    "loss": (["cross-entropy", "dice"], {}),
    "data": (["synthetic", DISK], {}),
    "classes": ([3, 5], {}),
    "in_channels": ([3, 1], {}),
    "seed": ([0, 1], {}),
    "threads": ([1, 2], {}),
    "world_size": ([1, 2], {}),
}


def readme_axes() -> set[str]:
    text = (ROOT / "docs" / "suites.md").read_text()
    block = text[text.index("Settings that can be matrix axes:"):]
    block = block[: block.index("`device` is set once")]
    from benchbench.suite import PARAM_KEYS

    return set(re.findall(r"`([a-z_]+)`", block.split("Settings of how a cell is run")[0])) & set(PARAM_KEYS)


def test_the_axes_tested_are_the_axes_the_docs_list() -> None:
    assert readme_axes() == set(AXES), readme_axes() ^ set(AXES)


def run_report_compare(cli, tmp_path: Path, suite: Path, *extra: str) -> list[dict]:
    out = tmp_path / "r.jsonl"
    code, stdout, err = cli("run", suite, "--device", "cpu", "--output", out, "--reports-dir", tmp_path / "rep", *extra)
    assert code == 0, (stdout[-2000:], err[-2000:])
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert recs and all(r["status"] == "ok" for r in recs), [r.get("error") for r in recs]
    code, stdout, err = cli("report", out, "-o", tmp_path / "rep2")
    assert code == 0, err[-2000:]
    assert list((tmp_path / "rep2").rglob("*.html")) and list((tmp_path / "rep2").rglob("*.md"))
    code, stdout, err = cli("compare", out, out)
    assert code == 0, err[-2000:]
    return recs


@pytest.mark.parametrize("axis", list(AXES))
def test_each_axis_alone_runs_reports_and_compares(axis, tmp_path, cli, monkeypatch) -> None:
    monkeypatch.chdir(TESTS)  # custom factories (`factories:tiny`) import from the tests folder
    values, fixed = AXES[axis]
    doc = {"name": f"axis_{axis}", **TINY, **fixed, "matrix": {axis: values}}
    suite = write_suite(tmp_path / "s.yaml", yaml.safe_dump(doc))
    recs = run_report_compare(cli, tmp_path, suite)
    assert len(recs) == 2 and len({r["cell_id"] for r in recs}) == 2  # two cells, never collapsed into one


def tiny_version(path: Path, tmp_path: Path) -> Path:
    """A shipped suite as it is, with its CPU profile shrunk to tiny sizes (32-64 px, batch 2, 1 warm-up, 2 steps)."""
    doc = yaml.safe_load(path.read_text())
    prof = doc.setdefault("profiles", {}).setdefault("cpu", {}) or {}
    doc["profiles"]["cpu"] = prof
    for key in ("resolution", "batch_size"):
        doc.pop(key, None)
        prof.pop(key, None)
        for m in (doc.get("matrix") or {}, prof.get("matrix") or {}):
            m.pop(key, None)
    prof.update({"resolution": 64 if "Segformer" in path.read_text() else 32, "warmup": 1, "steps": 2,
                 "threads": 1, "timeout_s": 300})
    if "batch_size" in path.read_text():
        prof.setdefault("matrix", {})["batch_size"] = [2]
    for inc in (prof.get("include") or []) + (doc.get("include") or []):
        inc.pop("batch_size", None)
    if isinstance(doc.get("data"), dict) and doc["data"].get("kind") == "synthetic-disk":
        doc["data"] = {**doc["data"], "image_size": [48, 64], "count": 8}
    return write_suite(tmp_path / path.name, yaml.safe_dump(doc))


#: the shipped suites over a workload benchbench builds; a command suite runs a user's command on its data
#: (suites/yolo_knobs.yaml: test_command_suite.py runs it on a generated data set, its cpu profile as shipped)
WORKLOAD_SUITES = sorted(p.name for p in (ROOT / "suites").glob("*.yaml") if "command" not in yaml.safe_load(
    p.read_text()))


@pytest.mark.parametrize("name", WORKLOAD_SUITES)
def test_every_shipped_suite_runs_at_tiny_size(name, tmp_path, cli) -> None:
    extra = ("--filter", "compile=false") if name == "gpu_launch.yaml" else ()  # compile: the compile axis above
    recs = run_report_compare(cli, tmp_path, tiny_version(ROOT / "suites" / name, tmp_path), *extra)
    assert len(recs) >= 1


def test_every_shipped_suite_is_run_by_a_test() -> None:
    shipped = sorted(p.name for p in (ROOT / "suites").glob("*.yaml"))
    tested = set(WORKLOAD_SUITES) | {"yolo_knobs.yaml"}  # test_command_suite.py runs it whole
    assert set(shipped) == tested


def test_the_docs_suite_example_runs_at_tiny_size(tmp_path, cli) -> None:
    text = (ROOT / "docs" / "suites.md").read_text()
    example = text[text.index("```yaml") + 8: text.index("```", text.index("```yaml") + 8)]
    path = write_suite(tmp_path / "readme.yaml", example)
    recs = run_report_compare(cli, tmp_path, tiny_version(path, tmp_path))
    assert {r["params"]["arch"] for r in recs} == {"Segformer", "Unet"}


def test_the_readme_advise_example_runs_at_tiny_size(tmp_path, cli) -> None:
    """The README's worked example goes on with `advise` on its slowest SegFormer cell: as written, on the
    shipped suite shrunk to tiny sizes (fewer runs a side than its defaults, to keep the test short)."""
    import re
    import shlex

    text = (ROOT / "README.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("benchbench advise suites/"))
    args = shlex.split(line)[2:]
    assert args[0] == "suites/segformer_channels.yaml" and "--cell" in args
    doc = yaml.safe_load((ROOT / args[0]).read_text())  # its CPU profile shrunk, its labels kept
    doc["profiles"]["cpu"].update({"resolution": 64, "batch_size": 2, "warmup": 1, "steps": 2, "threads": 1})
    args[0] = str(write_suite(tmp_path / "segformer_channels.yaml", yaml.safe_dump(doc)))
    code, out, err = cli("advise", *args, "--device", "cpu", "--repeat-max", "2", "--min-runs", "2",
                         "-o", tmp_path / "adv", "--results-dir", tmp_path / "res", "--json", tmp_path / "a.json")
    assert code == 0, (out[-2000:], err[-2000:])
    doc = json.loads((tmp_path / "a.json").read_text())
    assert {c["knob"] for c in doc["candidates"]} == set(re.search(r"--knobs (\S+)", line).group(1).split(","))

