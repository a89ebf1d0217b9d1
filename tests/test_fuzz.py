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
