"""The user's own data set, transforms, loss and optimizer in a suite, and the input pipeline measured stage by
stage inside the DataLoader's workers, with the capacity model built from it (#25).

The pipelines are `tests/user_pipeline.py`: a CamVid `Dataset` class reading PNGs with OpenCV through
albumentations, PIL + torchvision v1, torchvision.io + v2, a mapping-returning and an iterable variant.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from conftest import TESTS, make_camvid, record, write_suite

from benchbench.suite import CellParams


@pytest.fixture(scope="module")
def camvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_camvid(tmp_path_factory.mktemp("camvid"), n=8, size=(120, 160))


@pytest.fixture(scope="module")
def big_camvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Large PNGs and a cheap pipeline: decoding dominates."""
    return make_camvid(tmp_path_factory.mktemp("bigcamvid"), n=6, size=(480, 640))


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TESTS)  # `user_pipeline` is importable from the current directory, as users expect
    monkeypatch.syspath_prepend(str(TESTS))


def params(root: Path, factory: str = "user_pipeline:camvid_albumentations", **kw):
    data = {"dataset": factory, "root": str(root), **kw.pop("data", {})}
    base = {"arch": "Unet", "encoder": "resnet18", "resolution": 64, "batch_size": 2, "classes": 12, "warmup": 1,
            "steps": 3, "device": "cpu", "threads": 1}
    return CellParams(**{**base, **kw, "data": data}).model_dump(mode="json")


def profile_of(p: dict, batches: int = 6) -> dict:
    """Iterate a source's loader (no model) with its stages timed; the profile read back."""
    from benchbench.measure.stage_profile import StageTiming
    from benchbench.workload.source import Source

    src = Source(p, torch.device("cpu"), StageTiming())
    try:
        it = iter(src)
        for _ in range(batches):
            next(it)
        time.sleep(0.05)
        return src.stages.read()
    finally:
        src.close()


def test_a_suite_names_the_users_factories() -> None:
    p = CellParams(data={"dataset": "pkg.mod:make", "root": "/d", "size": 3}, loss="pkg:loss", optimizer="pkg:opt")
    assert p.data.kind == "dataset" and p.data.options == {"root": "/d", "size": 3}
    with pytest.raises(ValueError, match="loss must be one of cross-entropy, dice, focal or a factory"):
        CellParams(loss="crossentropy")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        CellParams(optimizer="lion")


@pytest.mark.parametrize("workers", [0, 2])
def test_the_slow_transform_is_named_as_the_largest_stage(camvid: Path, workers: int) -> None:
    prof = profile_of(params(camvid, data={"slow": True}, num_workers=workers))
    assert prof["where"] == ("workers" if workers else "main process")
    names = [s["name"] for s in prof["stages"]]
    assert {"decode", "Resize", "HorizontalFlip", "RandomBrightnessContrast", "SlowBlur", "Normalize",
            "ToTensorV2", "collate", "other"} <= set(names), names
    top = max(prof["stages"], key=lambda s: s["per_sample_s"])
    assert top["name"] == "SlowBlur" and top["share"] > 0.4
    assert sum(s["per_sample_s"] for s in prof["stages"]) == pytest.approx(prof["per_sample_s"], rel=0.02)
    if workers:
        assert len(prof["samples_by_worker"]) == 2


def test_torchvision_v1_and_v2_pipelines_are_split_into_their_transforms(camvid: Path) -> None:
    v1 = {s["name"]: s for s in profile_of(params(camvid, "user_pipeline:camvid_torchvision"))["stages"]}
    assert {"read", "decode", "Resize", "ColorJitter", "ToTensor", "Normalize"} <= set(v1)
    assert v1["read"]["calls"] >= 2 * 12  # image and mask, PIL's Image.open
    v2 = {s["name"]: s for s in profile_of(params(camvid, "user_pipeline:camvid_v2"), 4)["stages"]}
    assert {"read", "decode", "RandomResizedCrop", "RandomHorizontalFlip", "ToDtype", "Normalize"} <= set(v2)


def test_a_known_cost_in_the_data_sets_own_code_is_measured_as_such(camvid: Path) -> None:
    p = CellParams(resolution=32, batch_size=4, classes=3, device="cpu", num_workers=1,
                   data={"dataset": "user_pipeline:sleepy", "per_item_s": 0.01}).model_dump(mode="json")
    prof = profile_of(p, 4)
    other = next(s for s in prof["stages"] if s["name"] == "other")
    assert 0.0095 < other["per_sample_s"] < 0.013 and other["share"] > 0.9


def test_timing_changes_no_sample(camvid: Path) -> None:
    from benchbench.measure.stage_profile import StageTiming
    from benchbench.workload.source import Source

    for workers in (0, 2):
        p = params(camvid, num_workers=workers, seed=3)
        got = []
        for timing in (None, StageTiming()):
            torch.manual_seed(0)
            src = Source(p, torch.device("cpu"), timing)
            it = iter(src)
            got.append([next(it) for _ in range(4)])
            src.close()
        for (xa, ya), (xb, yb) in zip(*got):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_mapping_items_and_iterable_data_sets(camvid: Path) -> None:
    prof = profile_of(params(camvid, "user_pipeline:camvid_dict", data={"image_key": "pixels",
                                                                          "mask_key": "labels"}), 3)
    assert prof["samples"] >= 6
    from benchbench.workload.source import Source

    src = Source(params(camvid, "user_pipeline:camvid_stream", num_workers=1), torch.device("cpu"))
    x, y = next(iter(src))
    assert x.shape == (2, 3, 64, 64) and y.dtype == torch.int64 and src.steps_per_epoch is None
    src.close()


@pytest.mark.slow
def test_the_users_own_cell_runs_end_to_end_with_every_loader_knob(camvid: Path, tmp_path: Path, cli) -> None:
    suite = write_suite(tmp_path / "mine.yaml", f"""
name: mine
arch: Unet
encoder: resnet18
resolution: 64
batch_size: 2
classes: 12
threads: 1
warmup: 2
steps: 6
loss: user_pipeline:make_loss
optimizer: user_pipeline:make_optimizer
data: {{dataset: user_pipeline:camvid_albumentations, root: {camvid}, slow: true}}
matrix:
  num_workers: [0, 2]
  pin_memory: [false]
  prefetch_factor: [null]
""")
    out = tmp_path / "r.jsonl"
    code, _, err = cli("run", suite, "--device", "cpu", "--output", out, "--reports-dir", tmp_path / "rep")
    assert code == 0, err[-3000:]
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["status"] for r in recs] == ["ok", "ok"], [r.get("error") for r in recs]
    for r in recs:
        st = r["input_stages"]
        assert st["where"] == ("workers" if r["params"]["num_workers"] else "main process")
        assert max(st["stages"], key=lambda s: s["per_sample_s"])["name"] == "SlowBlur"
        cap = r["input_capacity"]
        assert [s["workers"] for s in cap["supply"]][:2] == [0, 1] and cap["demand_img_s"] > 0
        assert {p["workers"] for p in cap["predicted"]} == {s["workers"] for s in cap["supply"]}
        assert r["training"]["losses"] and all(v == v for v in r["training"]["losses"])
    md = next((tmp_path / "rep").rglob("*.md")).read_text()
    assert "## Input pipeline" in md and "SlowBlur" in md and "| workers | supply img/s" in md
    html = next((tmp_path / "rep").rglob("*.html")).read_text()
    assert "Input stages" in html and "Throughput by workers" in html


SLOW = pytest.mark.slow  # each case starts a child process: two stay in the fast lane


@pytest.mark.parametrize(("factory", "extra", "expected"), [
    ("user_pipeline:wrong_size", {}, "the image is 3x128x64, the cell trains 3x64x64"),
    pytest.param("user_pipeline:empty", {}, "returned an iterable data set that yields nothing",
                 marks=SLOW),
    pytest.param("user_pipeline:not_a_dataset", {}, "returned list, not a torch.utils.data.Dataset",
                 marks=SLOW),
    pytest.param("user_pipeline:raises", {}, "raised RuntimeError: the annotation file is missing",
                 marks=SLOW),
    pytest.param("user_pipeline:needs_root", {"root": None}, "needs 'root', which the cell does not offer",
                 marks=SLOW),
    pytest.param("user_pipeline:too_many_classes", {"classes": 4}, "the mask holds class 11 but the cell has classes=4",
                 marks=SLOW),
    pytest.param("user_pipeline:float_mask", {}, "the mask is torch.float32; class indices are integers",
                 marks=SLOW),
    pytest.param("user_pipeline:nope", {}, "has no callable 'nope'",
                 marks=SLOW),
    pytest.param("user_pipeline:cast_image", {}, "the image is torch.float64; the model trains in float32",
                 marks=SLOW),
    pytest.param("user_pipeline:cast_image", {"dtype": "float16"},
                 "the image is torch.float16; the model trains in float32", marks=SLOW),
    ("no_such_module:make", {}, "cannot import dataset factory module 'no_such_module'"),
])
def test_a_bad_data_set_is_a_message_before_anything_runs(camvid: Path, tmp_path: Path, cli, factory, extra,
                                                         expected) -> None:
    data = {"dataset": factory, "root": str(camvid)}
    if "root" in extra:
        data.pop("root")
    if "dtype" in extra:
        data["dtype"] = extra["dtype"]
    suite = write_suite(tmp_path / "bad.yaml", json.dumps({
        "name": "bad", "arch": "Unet", "encoder": "resnet18", "resolution": 64, "batch_size": 2,
        "classes": extra.get("classes", 12), "warmup": 1, "steps": 1, "data": data}))
    code, _, err = cli("run", suite, "--device", "cpu", "--output", tmp_path / "r.jsonl", "--reports-dir",
                       tmp_path / "rep")
    assert code == 2, err
    assert expected in err and "Traceback" not in err and not (tmp_path / "r.jsonl").exists()
    assert factory in err


@pytest.mark.slow
def test_decode_dominant_gets_the_cache_advice_not_more_workers(big_camvid: Path) -> None:
    from benchbench.analysis.findings.capacity import input_capacity
    from benchbench.analysis.records import THRESHOLDS
    from benchbench.runner.program import measure_inline

    p = params(big_camvid, "user_pipeline:camvid_dict", data={"image_key": "pixels", "mask_key": "labels"},
               resolution=32, num_workers=0, steps=4, arch="factories:tiny")
    rec = measure_inline(p, explain=True)
    assert rec.ok, rec.error
    dom = rec.input_stages.dominant()
    assert dom.kind == "decode", [(s.name, s.per_sample_s) for s in rec.input_stages.stages]
    [f] = input_capacity([rec], THRESHOLDS)
    assert f.evidence["dominant_kind"] == "decode" and f.evidence["input_bound"]
    # the cache first: it removes the stage that bounds the supply; more workers only share it out
    assert f.suggestion.startswith("cache the decoded samples"), f.suggestion
    from benchbench.advise.candidates import candidates

    cache = next(c for c in candidates(rec) if c.knob == "cache")
    # no workers: the batch is made on the step's path, the bound is Amdahl's on the timed steps' own shares
    assert cache.bound > 1.2 and cache.why.startswith("the timed steps waited") and "what a cache removes (" in \
        cache.why and cache.floor_s is None
    assert cache.kind == "data"  # a user data set's cache freezes its augmentation: never free


def test_cache_ram_on_a_users_data_set_says_it_freezes_augmentation(camvid: Path) -> None:
    from benchbench.runner.program import measure_inline

    rec = measure_inline(params(camvid, data={"cache": "ram"}, steps=2))
    assert rec.ok and rec.data_cache.freezes_augmentation and "after its transforms" in rec.data_cache.what
    own = measure_inline(CellParams(resolution=32, batch_size=2, classes=4, device="cpu", warmup=1, steps=2,
                                    data={"kind": "synthetic-disk", "image_size": [40, 48], "count": 4,
                                          "cache": "ram"}).model_dump(mode="json"))
    assert own.data_cache.freezes_augmentation is False and own.data_cache.what == "decoded images"


def test_the_capacity_model_on_known_figures() -> None:
    from benchbench.record.inputs import predict

    # GPU: 40 ms of compute, a batch of 8; one worker makes 100 img/s (80 ms a batch), two 190, four 350
    g = {p.workers: p for p in predict("cuda", 4, 8, 0.040, None, {0: 110.0, 1: 100.0, 2: 190.0, 4: 350.0})}
    assert g[0].step_s == pytest.approx(0.040 + 8 / 110) and g[1].bound == "input"
    assert g[1].step_s == pytest.approx(0.08) and g[4].step_s == pytest.approx(0.040) and g[4].bound == "model"
    # CPU, 2 cores: the model's threads use 0.16 CPU-s a step; the workers' 0.08 s must share those cores
    c = {p.workers: p for p in predict("cpu", 2, 8, 0.080, 0.16, {0: 110.0, 1: 100.0, 2: 190.0})}
    assert c[2].bound == "cores" and c[2].step_s == pytest.approx((0.16 + 0.08) / 2)


def test_findings_say_the_capacity_with_figures() -> None:
    from benchbench.analysis.findings.capacity import input_capacity
    from benchbench.analysis.headline import impact
    from benchbench.analysis.records import THRESHOLDS

    stages = {"samples": 64, "per_sample_s": 0.013, "where": "workers", "stages": [
        {"name": "decode", "kind": "decode", "per_sample_s": 0.003, "share": 0.23, "calls": 128},
        {"name": "ElasticTransform", "kind": "transform", "per_sample_s": 0.0079, "share": 0.61, "calls": 64},
        {"name": "other", "kind": "other", "per_sample_s": 0.0021, "share": 0.16, "calls": 64}]}
    supply = [{"workers": w, "img_s": s, "batches": 8, "seconds": 1.0} for w, s in ((0, 45.0), (1, 50.0), (2, 100.0))]
    from benchbench.record.inputs import predict

    preds = [p.model_dump() for p in predict("cuda", 2, 8, 0.0667, None, {s["workers"]: s["img_s"] for s in supply})]
    r = record(cell_id="c", label="seg", status="ok", params={"batch_size": 8, "num_workers": 2, "device": "cuda",
                                                               "data": {"kind": "dataset", "dataset": "m:f"}},
               step_time_s={"samples": [0.082] * 5}, input_stages=stages,
               input_capacity={"device": "cuda", "cores": 2, "batch_size": 8, "compute_step_s": 0.0667,
                               "demand_img_s": 120.0, "supply": supply, "predicted": preds})
    [f] = input_capacity([r], THRESHOLDS)
    assert "supplies 100 img/s with 2 worker(s)" in f.sentence and "consumes 120 img/s" in f.sentence
    assert "ElasticTransform takes 61% of each sample (7.9 ms, workers): without it the supply would be 2.5x" \
        in f.sentence
    assert f.suggestion.startswith("move ElasticTransform to the GPU")
    assert impact(f) == (pytest.approx(0.080 / 0.0667), "bound")
