"""The CUDA timing path: events at step boundaries, one sync per block. Runs only where CUDA is."""

from __future__ import annotations

import itertools

import pytest
import torch

from benchbench.measure.timer import timed_loop

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_loop_syncs_once_per_block(monkeypatch: pytest.MonkeyPatch) -> None:
    device = torch.device("cuda")
    x = torch.randn(2048, 2048, device=device)
    syncs = []
    real = torch.cuda.synchronize
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: (syncs.append(1), real(*a))[1])

    def step(a, b):
        for _ in range(4):
            a = a @ b
        return a

    out = timed_loop(itertools.repeat((x, x)), lambda b: b, step, device, warmup=9, steps=20)
    assert out.clock == "cuda-events" and len(out.step_s) == 20 and len(out.enqueue_s) == 20
    # one sync before each warm-up block of 3 and one before the timed block: never one per step
    assert len(syncs) <= 9 // 3 + 1
    assert all(s > 0 for s in out.step_s)
    # the GPU runs the matmuls; the host only enqueues them
    assert sum(out.enqueue_s) < sum(out.step_s)
    assert out.block_wall_s >= 0.9 * sum(out.step_s)


@cuda
def test_cuda_cell_records_the_clock(tmp_path, cli) -> None:
    from conftest import write_suite

    suite = write_suite(tmp_path / "s.yaml", "name: g\narch: Unet\nencoder: resnet18\nresolution: 64\n"
                        "batch_size: 2\nwarmup: 3\nsteps: 5\ndevice: cuda\noptimizer: adamw-fused\namp: fp16\n")
    out = tmp_path / "r.jsonl"
    code, _, err = cli("run", suite, "--output", out, "--reports-dir", tmp_path / "rep")
    assert code == 0, err
    import json

    [r] = [json.loads(line) for line in out.read_text().splitlines()]
    assert r["timing"]["clock"] == "cuda-events" and r["timing"]["host_enqueue_s"]["median"] > 0
    gpu = r["breakdown"]["gpu"]
    assert gpu["steps"] == 3 and gpu["harness_syncs_excluded"] == {}
    # a fused optimizer lets GradScaler keep found_inf on the device: no host sync in the step
    assert gpu["host_syncs"] == []


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs (DDP over NCCL, one process per GPU)")
def test_ddp_over_nccl_one_process_per_gpu(tmp_path) -> None:
    from benchbench.runner.cell import execute_cell
    from benchbench.suite import CellParams

    p = CellParams(arch="Unet", encoder="resnet18", resolution=64, batch_size=4, classes=3, warmup=3, steps=5,
                   device="cuda", world_size=2).model_dump(mode="json")
    rec = execute_cell({"suite": "s", "run_id": "r", "cell_id": "c", "label": "c", "params": p, "explain": False})
    assert rec["status"] == "ok", rec["error"]
    assert rec["ranks"]["backend"] == "nccl" and len(set(rec["ranks"]["warmup_steps"])) == 1
