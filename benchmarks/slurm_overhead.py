"""Overhead per cell of the SLURM executor against the fork-server process executor, on a running SLURM
(SLURM_CONF set; e.g. the single-node cluster of tests/slurm_cluster.py): 8 tiny cells (Tiny model, 32 px,
1 + 2 steps, no explanations), wall time of the whole run, with 1, 4 and 8 cells per job.

    SLURM_CONF=/path/slurm.conf python benchmarks/slurm_overhead.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
SUITE = """name: overhead
arch: "factories:tiny"
device: cpu
resolution: 32
batch_size: 2
classes: 3
warmup: 1
steps: 2
matrix:
  seed: [0, 1, 2, 3, 4, 5, 6, 7]
"""


def timed(args: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    t = time.monotonic()
    subprocess.run([sys.executable, "-m", "benchbench", "run", *args], cwd=TESTS, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t


def main() -> int:
    if not os.environ.get("SLURM_CONF"):
        print(json.dumps({"skipped": "set SLURM_CONF to a running cluster's slurm.conf"}))
        return 0
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "s.yaml"
        suite.write_text(SUITE)
        base = [str(suite), "--no-explain", "--reports-dir", str(Path(tmp) / "rep")]
        out["process"] = timed(base + ["--output", str(Path(tmp) / "p.jsonl")])
        for per in (1, 4, 8):
            out[f"slurm, {per} cells/job"] = timed(base + ["--executor", "slurm", "--cells-per-job", str(per),
                                                           "--output", str(Path(tmp) / f"s{per}.jsonl")])
    for k, v in out.items():
        print(f"{k:22s} {v:6.1f} s for 8 cells ({v / 8:.2f} s a cell)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
