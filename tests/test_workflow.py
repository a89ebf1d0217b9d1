"""The nightly workflow: valid against GitHub's schema, clean under zizmor's security audit (offline), and it
fans a night out over N GPU runners as shards, merges them, gates once."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "nightly-gpu.yml"


def _tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(path).exists():
        pytest.skip(f"{name} is not installed (pip install -e '.[test]' brings it)")
    return path


def test_the_workflow_matches_githubs_schema() -> None:
    out = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_zizmor_finds_nothing_above_informational() -> None:
    out = subprocess.run([_tool("zizmor"), "--offline", "--persona", "pedantic", "--min-severity", "low",
                          str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_night_fans_out_and_merges() -> None:
    doc = yaml.safe_load(WORKFLOW.read_text())
    jobs = doc["jobs"]
    assert doc["permissions"] == {} and "pull_request" not in doc[True]  # `on:` parses as True in YAML 1.1
    shard = jobs["gpu-shard"]
    assert shard["strategy"]["matrix"]["shard"] == "${{ fromJSON(needs.plan.outputs.shards) }}"
    assert shard["strategy"]["fail-fast"] is False
    run = " ".join(s.get("run", "") for s in shard["steps"])
    assert '--shard "$SHARD/$TOTAL"' in run
    gate = " ".join(s.get("run", "") for s in jobs["gate"]["steps"])
    assert "benchbench merge" in gate and "benchbench compare" in gate and "history check" in gate
    for job in jobs.values():
        for step in job.get("steps", []):
            if "uses" in step:
                ref = step["uses"].split("@")[1]
                assert len(ref) == 40, step["uses"]  # pinned by commit
            if step.get("uses", "").startswith("actions/checkout"):
                assert step["with"]["persist-credentials"] is False
