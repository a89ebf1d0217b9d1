"""benchbench vs a plain loop, side by side: throughput ratio and per-cell fixed overhead.

Runs the plain loop (benchmarks/plain_loop.py, a fresh Python process) and the
same configuration as a benchbench cell (`benchbench run`, process isolation),
alternating them ROUNDS times so that machine drift hits both equally, and
prints the median of the per-round throughput ratios.

    python benchmarks/overhead.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SUITE = """
name: overhead
arch: {arch}
encoder: {encoder}
resolution: {resolution}
batch_size: {batch_size}
classes: 12
warmup: {warmup}
steps: {steps}
data: synthetic
device: cpu
matrix:
  seed: [0, 1, 2, 3]
"""


def plain(args: argparse.Namespace) -> float:
    out = subprocess.run(
        [sys.executable, str(HERE / "plain_loop.py"), "--arch", args.arch, "--encoder", args.encoder,
         "--resolution", str(args.resolution), "--batch-size", str(args.batch_size),
         "--warmup", str(args.warmup), "--steps", str(args.steps)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["throughput_img_s"]


def bench(args: argparse.Namespace, tmp: Path, rnd: int) -> tuple[float, list[dict]]:
    suite = tmp / "overhead.yaml"
    suite.write_text(SUITE.format(**vars(args)))
    out = tmp / f"r{rnd}.jsonl"
    subprocess.run(
        [sys.executable, "-m", "benchbench", "run", str(suite), "--output", str(out),
         "--reports-dir", str(tmp / "rep")],
        capture_output=True, text=True, check=True,
    )
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    # The first cell also pays for starting the fork server; the ratio uses cell 1
    # (same single-process situation as the plain loop) and overhead uses all.
    return recs[0]["throughput_img_s"], recs


def main() -> None:
    sys.path.insert(0, str(HERE))
    from plain_loop import parser

    ap = parser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    ratios, plains, benches, overheads, starts, builds = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for rnd in range(args.rounds):
            order = ("plain", "bench") if rnd % 2 == 0 else ("bench", "plain")
            res = {}
            for which in order:
                if which == "plain":
                    res["plain"] = plain(args)
                else:
                    res["bench"], recs = bench(args, tmp, rnd)
            plains.append(res["plain"])
            benches.append(res["bench"])
            ratios.append(res["bench"] / res["plain"])
            for r in recs[1:]:  # fork server already warm: the steady per-cell cost
                loop_s = sum(r["warmup"]["samples"]) + sum(r["step_time_s"]["samples"])
                overheads.append(r["process_wall_s"] - loop_s)
                starts.append(r["process_wall_s"] - r["wall_s"])
                builds.append(r["build_s"])
            print(f"round {rnd + 1}: plain {res['plain']:.2f} img/s, benchbench {res['bench']:.2f} img/s, "
                  f"ratio {ratios[-1]:.3f}", flush=True)
    print(json.dumps({
        "config": vars(args),
        "plain_img_s_median": statistics.median(plains),
        "benchbench_img_s_median": statistics.median(benches),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "per_cell_overhead_s_median": statistics.median(overheads),
        "process_start_teardown_s_median": statistics.median(starts),
        "model_build_and_data_s_median": statistics.median(builds),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2))


if __name__ == "__main__":
    main()
