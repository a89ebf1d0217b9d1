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
    assert any(w.endswith(f"train_synthetic.py:{_item_line()}") for w in lines), g.host_syncs


def _item_line() -> int:
    return next(i for i, line in enumerate(SCRIPT.read_text().splitlines(), 1) if "loss.item()" in line)
