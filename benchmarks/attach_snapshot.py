"""The cost of attach's streamed progress: one snapshot of the partial record, written as the hooks do it
(`Probe.progress(force=True)`: the result document built from every step so far, JSON, a rename), in the timed
phase with `--steps` steps taken, on the CPU path. The hooks write one at most every `SNAPSHOT_EVERY_S`; its share
of the script's time is the snapshot's median cost over that interval (an upper bound: a script slower than one
step per interval pays less).

    python benchmarks/attach_snapshot.py --steps 50 --reps 200 --out benchmarks/results/attach-snapshot-YYYYMMDD.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchbench.runner.attach.probe import SNAPSHOT_EVERY_S, Probe


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50, help="timed steps already taken when the snapshot is made")
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        p = Probe({"out": str(Path(tmp) / "r.json"), "steps": args.steps + 1000, "warmup": 2, "profile_steps": 0,
                   "keep_running": True})
        p.phase = "timed"
        p.model_info = {"class": "Unet", "params": 14_000_000}
        p.warm_s = [0.1, 0.1]
        p.step_s = [0.1 + 0.001 * (i % 7) for i in range(args.steps)]
        p.wait_s = [0.001] * args.steps
        p.losses = [[torch.tensor(2.5)] for _ in range(args.steps + 2)]
        p.batches_per_step = [1] * args.steps
        p.batch_size = 4
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            p.progress("step", force=True)
            times.append(time.perf_counter() - t0)
        size = (Path(tmp) / "r.json.progress").stat().st_size
    med = statistics.median(times)
    doc = {"benchmark": "attach_snapshot", "steps": args.steps, "reps": args.reps, "median_s": med,
           "p10_s": statistics.quantiles(times, n=10)[0], "p90_s": statistics.quantiles(times, n=10)[-1],
           "bytes": size, "interval_s": SNAPSHOT_EVERY_S, "share_of_time": med / SNAPSHOT_EVERY_S,
           "python": sys.version.split()[0], "torch": torch.__version__}
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
