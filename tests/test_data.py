from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_camvid
from PIL import Image

from benchbench.errors import BenchbenchError
from benchbench.suite import CellParams
from benchbench.workload.data import (
    IGNORE_INDEX,
    check_data,
    ensure_synthetic_disk,
    find_pairs,
)
from benchbench.workload.source import Source


def cell(**kw):
    return CellParams(**kw).model_dump(mode="json")


def test_synthetic_is_one_batch_on_the_device() -> None:
    src = Source(cell(resolution=32, batch_size=3, classes=5), torch.device("cpu"))
    it = iter(src)
    x, y = next(it)
    x2, _ = next(it)
    assert x.shape == (3, 3, 32, 32) and y.shape == (3, 32, 32) and x2 is x
    assert int(y.max()) < 5


def test_synthetic_disk_is_generated_once_and_loaded(tmp_path: Path) -> None:
    spec = {"kind": "synthetic-disk", "image_size": [40, 60], "count": 5}
    root = ensure_synthetic_disk(spec, classes=4)
    stamp = (root / "train" / "synth_00000.png").stat().st_mtime_ns
    assert ensure_synthetic_disk(spec, classes=4) == root
    assert (root / "train" / "synth_00000.png").stat().st_mtime_ns == stamp
    with Image.open(root / "trainannot" / "synth_00000.png") as m:
        assert m.mode == "L" and m.size == (60, 40)
    src = Source(cell(data=spec, resolution=[32, 48], batch_size=2, classes=4), torch.device("cpu"))
    x, y = next(iter(src))
    assert x.shape == (2, 3, 32, 48) and x.dtype == torch.float32
    assert y.shape == (2, 32, 48) and y.dtype == torch.int64
    assert set(torch.unique(y).tolist()) <= set(range(4))


def test_camvid_folder_with_workers(tmp_path: Path) -> None:
    root = make_camvid(tmp_path / "CamVid", n=6, classes=12)
    assert len(find_pairs(root, "train")) == 6
    assert len(find_pairs(root, "val")) == 6
    params = cell(data={"folder": str(root)}, resolution=32, batch_size=2, classes=11, num_workers=1)
    check_data(params)
    src = Source(params, torch.device("cpu"))
    it = iter(src)
    for _ in range(5):  # crosses an epoch boundary (3 batches per epoch)
        x, y = next(it)
    assert x.shape == (2, 3, 32, 32)
    # class 11 is not < classes=11: it becomes the ignore index, never a bad target
    assert int(y.max()) <= IGNORE_INDEX and set(torch.unique(y).tolist()) - set(range(11)) <= {IGNORE_INDEX}


def test_images_masks_layout(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "images" / f"a{i}.jpg")
        Image.fromarray(np.ones((20, 20), np.uint8)).save(tmp_path / "masks" / f"a{i}.png")
    assert [p[0].name for p in find_pairs(tmp_path)] == ["a0.jpg", "a1.jpg", "a2.jpg"]


@pytest.mark.parametrize("layout", ["missing", "empty", "unpaired"])
def test_bad_folders(tmp_path: Path, layout: str) -> None:
    root = tmp_path / "data"
    if layout != "missing":
        (root / "train").mkdir(parents=True)
    if layout == "unpaired":
        (root / "trainannot").mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "x.png")
    with pytest.raises(BenchbenchError, match="data folder"):
        check_data(cell(data={"folder": str(root)}))


def test_a_generated_set_puts_no_epoch_boundary_in_the_timed_steps() -> None:
    """64 images at batch 16 was an epoch every 4th step: the harness measured its own data set's boundaries.
    An epoch of the generated set now spans every step the cell takes; the boundary's cost is measured apart."""
    from benchbench.runner.cell import execute_cell

    p = cell(arch="Unet", encoder="resnet18", data={"kind": "synthetic-disk", "image_size": [40, 48], "count": 8},
             resolution=32, batch_size=2, classes=4, warmup=2, steps=6, device="cpu", num_workers=1)
    src = Source(p, torch.device("cpu"))
    assert src.steps_per_epoch >= p["warmup"] + p["steps"]  # 8 images / batch 2 = 4 steps before
    assert len({str(a) for a, _ in src.dataset.pairs}) == 8  # still 8 distinct images, decoded each time
    rec = execute_cell({"suite": "s", "run_id": "r", "cell_id": "c", "label": "c", "params": p, "explain": False})
    assert rec["status"] == "ok", rec["error"]
    dw = rec["data_wait_s"]
    assert dw["steps_per_epoch"] >= p["steps"] + p["warmup"] and dw["epoch_boundary_s"] > 0


def test_cache_ram_decodes_once_and_keeps_cell_ids() -> None:
    spec = {"kind": "synthetic-disk", "image_size": [40, 48], "count": 4}
    plain = cell(data=spec, resolution=32, batch_size=2, classes=4)
    cached = cell(data={**spec, "cache": "ram"}, resolution=32, batch_size=2, classes=4)
    from benchbench.suite import cell_id

    assert cell_id(plain) == cell_id(cell(data={**spec, "cache": "none"}, resolution=32, batch_size=2, classes=4))
    assert cell_id(cached) != cell_id(plain)
    src = Source(cached, torch.device("cpu"))
    ds = src.dataset
    assert ds.decoded is not None and len(ds.decoded) == 4
    x, y = next(iter(src))
    assert x.shape == (2, 3, 32, 32) and y.dtype == torch.int64
