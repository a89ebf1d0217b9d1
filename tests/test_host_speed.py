"""The host's speed beside every cell (`measure.host_speed`): timed after the block on fixed work, kept with every
block, and read by the gate only when the two sides' hosts differ beyond the probe's own spread."""

from __future__ import annotations

import statistics

from benchbench.analysis.compare import compare
from benchbench.analysis.host import HOST_CHANGE, MIN_RUNS, moved, probes, side_speed
from benchbench.measure.host_speed import BLOCKS, probe
from benchbench.runner.program import measure_inline
from benchbench.suite import CellParams


def test_every_cell_times_the_hosts_fixed_work_after_its_block_and_one_run_a_side_says_nothing() -> None:
    """Two real runs of one cell on this machine: each record keeps its host figures (every block). This VM's host
    switches between two states (~1.0 and ~1.8 µs a dispatch), so one probe a side is a moment, not the host: the
    gate says nothing of the host between them, whichever states they caught."""
    p = CellParams(arch="Unet", encoder="resnet18", resolution=32, batch_size=2, warmup=1, steps=3,
                   device="cpu").model_dump(mode="json")
    a, b = measure_inline(p), measure_inline(p)
    for r in (a, b):
        h = r.trackers["host_speed"]
        assert len(h["dispatch_blocks_us"]) == BLOCKS == len(h["python_blocks_ns"])
        assert abs(h["dispatch_us"] - statistics.median(h["dispatch_blocks_us"])) < 1e-3
        assert 0.05 < h["dispatch_us"] < 100 and 1 < h["python_ns"] < 1000
    assert side_speed(probes([a, b]))["runs"] == 2
    [v] = compare([a], [b], known_run_cv=0.1)
    assert not any("host" in w for w in v.warnings) and "host" not in v.why


def test_a_host_change_needs_three_runs_a_side_in_states_apart() -> None:
    """The rule on probe figures (constructed, at this VM's two states): three runs a side, every one of the
    baseline's fast and every one of the candidate's slow, is a host that moved; one run of the candidate in the
    fast state (ranges overlap), or two runs a side, is not."""
    def ps(*us: float) -> list[dict]:
        return [{"dispatch_us": u, "python_ns": 33 * u} for u in us]

    fast, slow = ps(1.0, 1.03, 0.98), ps(1.8, 1.85, 1.79)
    m = moved(fast, slow)
    assert m is not None and 1.75 < m["dispatch_ratio"] < 1.85 and "1.80x slower" in m["text"]
    assert moved(fast, ps(1.8, 1.01, 1.82)) is None
    assert moved(fast[:2], slow[:2]) is None and MIN_RUNS == 3
    assert HOST_CHANGE == 0.10 and moved(fast, ps(1.05, 1.06, 1.07)) is None  # apart, but within 10%


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
