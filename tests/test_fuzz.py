"""Hostile suites: random documents and mutations of the shipped suites never raise a traceback."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchbench.errors import BenchbenchError
from benchbench.suite import PARAM_KEYS, SUITE_KEYS, build_suite, load_suite

SUITES = sorted((Path(__file__).resolve().parents[1] / "suites").glob("*.yaml"))
KEYS = st.sampled_from(list(PARAM_KEYS + SUITE_KEYS) + ["matrx", "", "data", "folder", "cpu", "cuda"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["Unet", "none", "bf16", "synthetic", "../x", "1/0"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)


def _ok_or_clean_error(doc) -> None:
    try:
        if not isinstance(doc, dict):
            raise BenchbenchError("not a mapping")
        build_suite(doc, device="cpu")
    except BenchbenchError as exc:
        assert str(exc)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_random_documents(doc) -> None:
    _ok_or_clean_error(doc)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(SUITES), st.lists(st.tuples(st.sampled_from(["set", "del", "wrap"]), KEYS, VALUES), max_size=4))
def test_mutated_shipped_suites(path, mutations) -> None:
    doc = yaml.safe_load(path.read_text())
    for op, key, value in mutations:
        target = doc
        if key in PARAM_KEYS and isinstance(doc.get("matrix"), dict) and op == "wrap":
            target = doc["matrix"]
        if op == "del":
            target.pop(key, None)
        elif op == "wrap":
            target[key] = [copy.deepcopy(value)]
        else:
            target[key] = copy.deepcopy(value)
    _ok_or_clean_error(doc)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=200))
def test_random_text_files(tmp_path_factory, text) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    path.write_text(text)
    try:
        load_suite(path, device="cpu")
    except BenchbenchError as exc:
        assert str(exc)


# ---------------------------------------------------------------- damaged results files and traces

RECORD = {"schema": "benchbench.result/1", "suite": "s", "run_id": "r1", "cell_id": "c1", "label": "c1",
          "params": {"batch_size": 2, "device": "cpu"}, "status": "ok", "env": {"fingerprint": "f"},
          "step_time_s": {"samples": [0.1, 0.11, 0.12], "median": 0.11},
          "data_wait_s": {"samples": [0.0, 0.0, 0.0], "median": 0.0, "fraction": 0.0},
          "timing": {"clock": "perf_counter", "block_wall_s": 0.33}}
FIELDS = st.sampled_from(["schema", "suite", "run_id", "cell_id", "params", "status", "step_time_s", "data_wait_s",
                          "timing", "env", "label", "repeat", "breakdown", "oom_backoff", "repeats", "training"])


def _mutated(draw_pairs) -> dict:
    rec = copy.deepcopy(RECORD)
    for key, value in draw_pairs:
        rec[key] = value
    return rec


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.lists(st.tuples(FIELDS, VALUES), min_size=1, max_size=3))
def test_damaged_results_files_never_traceback(tmp_path_factory, pairs) -> None:
    import json
    import sys

    import pytest as _pytest

    from benchbench.cli import main

    folder = tmp_path_factory.mktemp("rec")
    path = folder / "r.jsonl"
    path.write_text(json.dumps(_mutated(pairs), default=str) + "\n")
    before = path.read_bytes()
    for args in (["compare", str(path), str(path)], ["export", str(path), "-o", str(folder / "x.json")]):
        sys.argv = ["benchbench", *args]
        with _pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code in (0, 1, 2, None), (args, pairs)
    assert path.read_bytes() == before  # nothing appended, nothing rewritten


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["ts", "dur", "cat", "args", "ph", "name"]), VALUES),
                min_size=1, max_size=4))
def test_damaged_traces_never_traceback(tmp_path_factory, edits) -> None:
    import json
    import sys

    import pytest as _pytest
    from test_syncs import item, step_with

    from benchbench.cli import main

    events = step_with(item).events
    for i, key, value in edits:
        events[i % len(events)][key] = value
    path = tmp_path_factory.mktemp("tr") / "t.json"
    path.write_text(json.dumps({"traceEvents": events}, default=str))
    sys.argv = ["benchbench", "explain-trace", str(path), "--step-time", "0.001", "--json"]
    with _pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code in (0, 2, None), edits
