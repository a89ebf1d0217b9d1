"""The host's speed beside every cell (`measure.host_speed`): timed after the block on fixed work, kept with every
block, and read by the gate only when the two sides' hosts differ beyond the probe's own spread."""

from __future__ import annotations

import statistics

from benchbench.analysis.compare import compare
from benchbench.analysis.host import HOST_CHANGE, side_speed
from benchbench.measure.host_speed import BLOCKS, probe
from benchbench.runner.program import measure_inline
from benchbench.suite import CellParams


def test_every_cell_times_the_hosts_fixed_work_after_its_block_and_an_aa_pair_reads_one_host() -> None:
    """Two real runs of one cell on this machine: each record keeps its host figures (every block), the same
    host within the probe's spread, and the gate says nothing of the host between them."""
    p = CellParams(arch="Unet", encoder="resnet18", resolution=32, batch_size=2, warmup=1, steps=3,
                   device="cpu").model_dump(mode="json")
    a, b = measure_inline(p), measure_inline(p)
    for r in (a, b):
        h = r.trackers["host_speed"]
        assert len(h["dispatch_blocks_us"]) == BLOCKS == len(h["python_blocks_ns"])
        assert h["dispatch_us"] == statistics.median(h["dispatch_blocks_us"]) or \
            abs(h["dispatch_us"] - statistics.median(h["dispatch_blocks_us"])) < 1e-3
        assert 0.05 < h["dispatch_us"] < 100 and 1 < h["python_ns"] < 1000
    assert abs(side_speed([b])["dispatch_us"] / side_speed([a])["dispatch_us"] - 1) < HOST_CHANGE
    [v] = compare([a], [b], known_run_cv=0.1)
    assert not any("host" in w for w in v.warnings) and "host" not in v.why


def test_the_tracker_times_nothing_inside_the_block_and_nothing_after_a_failed_one() -> None:
    """Entering costs nothing (the block starts at once); the fixed work runs as the block ends; a block that
    raised gets no host figure (there is no cell figure to set it beside)."""
    import time

    from benchbench.measure.host_speed import HostSpeed

    assert probe()["dispatch_us"] > 0
    t = HostSpeed()
    t0 = time.perf_counter()
    with t:
        entered = time.perf_counter() - t0
    assert entered < 1e-3 and t.result(1)["dispatch_us"] > 0
    failed = HostSpeed()
    try:
        with failed:
            raise RuntimeError("the block failed")
    except RuntimeError:
        pass
    assert failed.result(1) is None
