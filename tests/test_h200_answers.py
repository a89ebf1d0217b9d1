"""What the lent H200 showed (results/gpu/h200-20261204), kept as CPU tests on its own records."""

from __future__ import annotations

from pathlib import Path

from benchbench.analysis.findings import find_all
from benchbench.analysis.headline import impact
from benchbench.results import read_records

H200 = Path(__file__).parent / "fixtures" / "h200"


def test_a_fix_measured_within_the_noise_is_said_so_and_never_ranked_as_measured() -> None:
    """The fp16 pair of gpu_launch on the H200: GradScaler's sync with AdamW, none with fused AdamW, and the
    fused cell 1.02x faster — inside the run-to-run variation, which the reference story said while the host
    sync's finding quoted "measured: 1.02x faster" and was ranked as a measured 1.02x."""
    recs = read_records([H200 / "gpu-launch-fp16.jsonl"])
    assert {r.params["optimizer"] for r in recs} == {"adamw", "adamw-fused"}
    [sync] = [f for f in find_all(recs) if f.kind == "host_sync"]
    v = sync.verified_by
    assert v["to"] == "adamw-fused" and 1.0 < v["speedup"] < 1.05 and v["resolved"] is False
    assert "measured: 1.02x faster per image, within this machine's run-to-run variation" in sync.suggestion
    assert "unresolved" in sync.suggestion
    assert impact(sync)[1] != "measured"


def test_a_cuda_rank_over_gloo_says_no_arrival_is_measured_rather_than_pointing_at_traces(tmp_path: Path) -> None:
    """Two torchrun ranks sharing the H200 over gloo: their traces held `gloo:all_reduce` on the host and no
    collective kernel, yet each rank's note sent the reader to the traces for its arrivals and waits."""
    import torch
    import torch.distributed as dist

    from benchbench.measure.rank_clock import NO_CLOCK_ON_GPU, StepClock

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
        clock = StepClock()
        clock.hook(model, cuda=True)  # as a rank whose model is on a GPU sees it
        assert clock.backend == "gloo" and clock.note != NO_CLOCK_ON_GPU
        assert "gloo backend's collectives run on the host" in clock.note and "traces" in clock.note
    finally:
        dist.destroy_process_group()
