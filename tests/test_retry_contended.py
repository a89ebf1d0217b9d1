"""`run --retry-contended`: a cell timed while another process held the cores is measured again once the machine
is quiet; both records stay in the file, the report pools the fit one. A real hog on every core, stopped by a
watcher as soon as the first record is written."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchbench.record import Record
from benchbench.results import pool_repeats

pytestmark = pytest.mark.slow


def test_a_contended_cell_is_measured_again_on_a_quiet_machine(cli, tmp_path: Path) -> None:
    import os

    suite = tmp_path / "s.yaml"
    suite.write_text("name: busy\narch: Unet\nencoder: resnet18\nresolution: 32\nbatch_size: 2\nwarmup: 1\n"
                     "steps: 12\n")
    out = tmp_path / "r.jsonl"
    hogs = [subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 120: pass"])
            for _ in range(len(os.sched_getaffinity(0)))]

    def stop_hogs_after_the_first_record() -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120 and not (out.exists() and out.read_text().strip()):
            time.sleep(0.2)
        for h in hogs:
            h.kill()

    watcher = threading.Thread(target=stop_hogs_after_the_first_record, daemon=True)
    watcher.start()
    try:
        code, stdout, err = cli("run", suite, "--device", "cpu", "--no-explain", "--output", out, "--reports-dir",
                                tmp_path / "rep", "--retry-contended", "2", "--retry-wait", "60")
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        watcher.join(timeout=5)
    assert code == 0, err
    recs = [Record.of(json.loads(x)) for x in out.read_text().splitlines()]
    assert len(recs) >= 2 and recs[0].degraded() and "CPU contended" in recs[0].degraded()
    last = recs[-1]
    assert last.degraded() is None and last.remeasured and last.remeasured["attempt"] >= 1
    assert "CPU contended" in last.remeasured["unfit_before"]
    assert "contended cell(s) measured again after waiting" in stdout
    [pooled] = pool_repeats(recs)
    assert pooled.degraded() is None and pooled.samples == last.samples  # the unfit run is not pooled
