"""`benchbench attach` on a GPU (skipped without CUDA): CUDA events at the step boundaries, one sync per block,
the GPU's starvation as the data wait, and the script's per-step `loss.item()` named by its file and line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from benchbench.record import Record

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
SCRIPT = Path(__file__).parent / "scripts" / "train_synthetic.py"


def test_an_attached_cuda_script_is_timed_by_events_and_its_item_line_is_named(cli, tmp_path: Path) -> None:
    js = tmp_path / "rec.json"
    code, _, err = cli("attach", "--steps", "10", "--results-dir", tmp_path / "res", "-o", tmp_path / "rep", "--json",
                       js, "--", sys.executable, str(SCRIPT), "--device", "cuda", "--print-loss", "--steps", "200")
    assert code == 0, err
    rec = Record.of(json.loads(js.read_text()))
    assert rec.ok and rec.params["device"] == "cuda" and rec.timing.clock == "cuda-events"
    assert len(rec.step_time_s.samples) == 10 and rec.data_wait_s is not None
    g = rec.breakdown.gpu
    assert g is not None
    lines = [s.where for s in g.host_syncs if s.where]
    assert any(w.endswith(_where("train_synthetic.py", _item_line())) for w in lines), g.host_syncs


def _torch_writes_call_from() -> bool:
    """Whether this torch's with_stack trace gives each Python call its calling line (`args.CallFrom`): torch
    2.11 (the lent H200's) does not, and there benchbench names the enclosing function, `train.py:main()`."""
    import tempfile

    from torch.profiler import ProfilerActivity, profile

    with tempfile.TemporaryDirectory() as tmp:
        with profile(activities=[ProfilerActivity.CPU], with_stack=True) as prof:
            torch.ones(2).sum().item()
        path = Path(tmp) / "t.json"
        prof.export_chrome_trace(str(path))
        return '"CallFrom"' in path.read_text()


def _where(script: str, line: int) -> str:
    """The name benchbench gives the script's line that made a call: its line, or its function on a torch
    whose trace carries no calling line (`timeline.python`)."""
    return f"{script}:{line}" if _torch_writes_call_from() else f"{script}:main()"


def _item_line() -> int:
    return next(i for i, line in enumerate(SCRIPT.read_text().splitlines(), 1) if "loss.item()" in line)


CAMVID = Path(__file__).parent / "scripts" / "train_camvid.py"


def test_the_camvid_loop_on_cuda_names_its_pageable_copy_and_keeps_its_losses_unscaled(cli, tmp_path: Path) -> None:
    """The user's CamVid loop as written (`images.to(device)` from an unpinned DataLoader, fp16 under GradScaler,
    `loss.item()` every step): the copy is named a host-to-device copy from pageable memory at its own line, the
    losses are the script's (not x65536), the peak is the timed steps' on the model's GPU, and NVML watched them."""
    from conftest import make_camvid

    data = make_camvid(tmp_path / "camvid", n=32, size=(128, 160))
    js = tmp_path / "rec.json"
    code, _, err = cli("attach", "--steps", "8", "--results-dir", tmp_path / "res", "-o", tmp_path / "rep", "--json",
                       js, "--", sys.executable, str(CAMVID), "--data", str(data), "--device", "cuda", "--amp", "fp16",
                       "--size", "128", "--batch-size", "4", "--workers", "2", "--epochs", "40")
    assert code == 0, err
    rec = Record.of(json.loads(js.read_text()))
    assert rec.ok and rec.timing.clock == "cuda-events" and rec.params["amp"] == "fp16"
    g = rec.breakdown.gpu
    assert g is not None
    copy_line = next(i for i, line in enumerate(CAMVID.read_text().splitlines(), 1) if "images = images.to(" in line)
    htod = [s for s in g.host_syncs if s.kind == "htod_pageable"]
    assert htod and any((s.where or "").endswith(_where("train_camvid.py", copy_line)) for s in htod), g.host_syncs
    assert rec.training and all(v is None or v < 50 for v in rec.training.losses), rec.training.losses
    assert rec.memory and rec.memory.cuda_peak_allocated_bytes and "timed steps" in (rec.memory.basis or "")
    assert rec.gpu_conditions is not None  # NVML on a lent GPU: absent only where NVML is
