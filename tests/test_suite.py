from __future__ import annotations

from pathlib import Path

import pytest

from benchbench.errors import BenchbenchError
from benchbench.suite import build_suite, cell_id, expand, load_suite

ROOT = Path(__file__).resolve().parents[1]


def test_github_actions_include_exclude_semantics() -> None:
    # The example from GitHub's documentation of matrix include.
    matrix = {"fruit": ["apple", "pear"], "animal": ["cat", "dog"]}
    include = [
        {"color": "green"},
        {"color": "pink", "animal": "cat"},
        {"fruit": "apple", "shape": "circle"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]
    got = expand(matrix, [], include)
    assert got == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]


def test_exclude_partial_match_then_include() -> None:
    got = expand({"a": [1, 2], "b": [3, 4]}, [{"a": 1, "b": 4}], [{"a": 9}])
    assert got == [{"a": 1, "b": 3}, {"a": 2, "b": 3}, {"a": 2, "b": 4}, {"a": 9}]


def test_suite_expansion_profiles_and_reference() -> None:
    doc = {
        "name": "s",
        "matrix": {"arch": ["Unet", "Segformer"], "batch_size": [2, 8]},
        "exclude": [{"arch": "Segformer", "batch_size": 8}],
        "include": [{"arch": "Segformer", "decoder_channels": 64}],
        "reference": {"arch": "Segformer"},
        "resolution": 256,
        "profiles": {"cpu": {"resolution": 64, "matrix": {"batch_size": [2]}}, "cuda": {"batch_size": 999}},
    }
    suite = build_suite(doc, device="cpu")
    labels = [c.label for c in suite.cells]
    assert len(suite.cells) == 2
    assert all(c.params["resolution"] == [64, 64] for c in suite.cells)
    assert suite.cells[1].params["decoder_channels"] == 64
    assert suite.reference.params["arch"] == "Segformer"
    assert labels == ["Unet dc=default", "Segformer dc=64"]


def test_cell_ids_are_stable_and_canonical() -> None:
    a = build_suite({"arch": "Unet", "resolution": 64, "amp": None}, device="cpu").cells[0]
    b = build_suite({"resolution": [64, 64], "amp": "none", "arch": "Unet", "steps": 99}, device="cpu").cells[0]
    assert a.id == b.id  # same parameters, spelled differently; steps do not change identity
    c = build_suite({"arch": "Unet", "resolution": 64, "batch_size": 5}, device="cpu").cells[0]
    assert c.id != a.id
    # A pinned value: ids must not change across versions or machines silently.
    assert a.id == cell_id(a.params)
    assert len(a.id) == 12


def test_filter_selects_cells() -> None:
    doc = {"matrix": {"arch": ["Unet", "FPN"], "resolution": [64, 128]}}
    suite = build_suite(doc, device="cpu", filters=["arch=FPN", "resolution=64"])
    assert [c.label for c in suite.cells] == ["FPN res=64"]
    with pytest.raises(BenchbenchError, match="no cell matches"):
        build_suite(doc, device="cpu", filters=["arch=PAN"])


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"matrx": {"arch": ["Unet"]}}, "did you mean 'matrix'"),
        ({"matrix": {"bach_size": [1]}}, "did you mean 'batch_size'"),
        ({"matrix": {"amp": ["none", "fp8"]}}, r"matrix.amp\[1\]"),
        ({"matrix": {"batch_size": []}}, "empty list"),
        ({"matrix": {"batch_size": 4}}, "must be a list"),
        ({"include": [{"arch": "Unet"}, {"amp": 3}]}, r"include\[1\].amp"),
        ({"data": {"folder": "x", "splitt": "val"}}, "splitt"),
        ({"resolution": "big"}, "suite.resolution"),
        ({"profiles": {"gpu": {}}}, "did you mean 'cpu'"),
        ({"matrix": {"arch": ["Unet"]}, "exclude": [{"arch": "Unet"}]}, "empty"),
        ({"reference": "nope"}, "names no cell"),
    ],
)
def test_bad_suites_are_clear_errors(doc: dict, message: str) -> None:
    with pytest.raises(BenchbenchError, match=message):
        build_suite(doc, device="cpu")


def test_shipped_suites_load(tmp_path) -> None:
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parents[1].glob("suites/*.yaml")):
        for dev in ("cpu",):
            suite = load_suite(path, device=dev)
            assert suite.cells, path


@pytest.mark.parametrize("doc", [
    {"matrix": {}},
    {"matrix": None},
    {"profiles": {"cpu": {"matrix": {}}}},
    {"matrix": {"on_oom": ["fail", "halve-batch"]}},
    {"matrix": {"steps": [5, 10]}},
    {"matrix": {"timeout_s": [60, 120]}},
    {"matrix": {"memory_limit_mb": [100, 200]}},
    {"matrix": {"gate_threshold": [0.02, 0.05]}},
])
def test_axes_never_collapse_silently(doc) -> None:
    """An empty matrix, or axes that are not part of the cell id, are refused, not run as one cell."""
    with pytest.raises(BenchbenchError) as err:
        build_suite({**doc, "device": "cpu"}, device="cpu")
    assert "empty" in str(err.value) or "not part of a cell's identity" in str(err.value)


def test_run_settings_stay_settable_per_cell() -> None:
    s = build_suite({"device": "cpu", "matrix": {"arch": ["Unet", "FPN"]},
                     "include": [{"arch": "FPN", "gate_threshold": 0.02, "steps": 5}]}, device="cpu")
    fpn = next(c for c in s.cells if c.params["arch"] == "FPN")
    assert fpn.params["gate_threshold"] == 0.02 and fpn.params["steps"] == 5
    assert build_suite({"device": "cpu", "matrix": {"arch": ["Unet", "FPN"]}}, device="cpu").cells[1].id == fpn.id


def test_fpn_group_norm_error_names_the_setting() -> None:
    from benchbench.workload.models import preflight

    p = build_suite({"arch": "FPN", "encoder": "resnet18", "decoder_channels": 16, "resolution": 64,
                     "batch_size": 2, "device": "cpu"}, device="cpu").cells[0].params
    with pytest.raises(BenchbenchError) as err:
        preflight(p)
    msg = str(err.value)
    assert "decoder_channels=16 does not work" in msg and "64, 128" in msg and "resolution" not in msg


def test_compile_names_a_mode_and_old_ids_keep() -> None:
    """`compile: true/false` cells keep their ids; `default` is `true`; CUDA graphs are a cell of their own."""
    s = build_suite({"matrix": {"compile": [False, True, "default", "reduce-overhead", "max-autotune"]}}, device="cpu")
    ids = {c.params["compile"]: c.id for c in s.cells}
    assert ids == {False: "4e915b121813", True: "a484f556a5f1", "reduce-overhead": ids["reduce-overhead"],
                   "max-autotune": ids["max-autotune"]}
    assert len(s.cells) == 4
    with pytest.raises(BenchbenchError, match="compile"):
        build_suite({"compile": "turbo"}, device="cpu")
    gpu = load_suite(ROOT / "suites" / "gpu_launch.yaml", device="cpu")
    assert gpu.cells  # every profile validates on a CPU
    import yaml

    doc = yaml.safe_load((ROOT / "suites" / "gpu_launch.yaml").read_text())
    assert {"amp": "bf16", "optimizer": "adamw", "compile": "reduce-overhead", "batch_size": 16} in doc["include"]
