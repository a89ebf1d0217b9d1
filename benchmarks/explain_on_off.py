"""Do the explanation passes disturb throughput? Same cells, explain on vs off, side by side.

The FLOP, memory and profiler passes run after a cell's timed steps, so by
construction they cannot touch its samples; this measures it anyway. Runs
`benchbench run --repeat R` alternately with and without `--no-explain` and
compares the two with `benchbench compare` (expected verdict: unchanged).

    python benchmarks/explain_on_off.py --rounds 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SUITE = """
name: explain-on-off
matrix:
  arch: [Unet, Segformer]
encoder: mit_b0
resolution: 96
batch_size: 4
warmup: 10
steps: 20
data: synthetic
device: cpu
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bb-explain-"))
    suite = tmp / "s.yaml"
    suite.write_text(SUITE)
    on, off = tmp / "on.jsonl", tmp / "off.jsonl"
    for rnd in range(args.rounds):
        for flag, out in ((["--no-explain"], off), ([], on)) if rnd % 2 == 0 else (([], on), (["--no-explain"], off)):
            subprocess.run([sys.executable, "-m", "benchbench", "run", str(suite), "--output", str(out),
                            "--repeat", str(args.repeat), "--reports-dir", str(tmp / "rep"), *flag],
                           check=True, capture_output=True, text=True)
    res = subprocess.run([sys.executable, "-m", "benchbench", "compare", str(off), str(on), "--json",
                          str(tmp / "v.json")], capture_output=True, text=True, check=False)
    print(res.stdout)
    verdicts = json.loads((tmp / "v.json").read_text())["verdicts"]
    print(json.dumps([{k: v[k] for k in ("label", "verdict", "ratio", "ci_low", "ci_high", "mde", "reason")}
                      for v in verdicts], indent=2))


if __name__ == "__main__":
    main()
