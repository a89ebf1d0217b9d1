"""Measure the regression gate on this machine with real runs.

- false alarms: A/A comparisons, same code, separate runs (target: none in 20);
- detection: a candidate really ~10% slower (extra compute sized by calibration;
  the true slowdown is measured from all runs pooled), target >= 19 of 20.

Each "run" is what nightly CI does: every cell run --repeat times in fresh
processes; compare then uses the between-run spread.

    python benchmarks/gate.py --pairs 20 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--target", type=float, default=0.10, help="slowdown to inject")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threshold", type=float, default=0.05)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bb-gate-"))
    gate_file = tmp / "extra.txt"
    gate_file.write_text("0")
    os.environ["BENCHBENCH_GATE_FILE"] = str(gate_file)  # before the fork server starts
    os.chdir(HERE)
    sys.path.insert(0, str(HERE))

    from benchbench.analysis.compare import compare
    from benchbench.measure.env import environment
    from benchbench.results import ResultStore, read_records
    from benchbench.runner import RunOptions, iter_run
    from benchbench.suite import build_suite

    suite = build_suite({"name": "gate", "arch": "gate_model:build", "encoder": "resnet18",
                         "resolution": args.resolution, "batch_size": 4, "warmup": 10, "steps": args.steps,
                         "data": "synthetic", "device": "cpu"}, device="cpu")
    env = environment("cpu")

    def one_run(name: str) -> Path:
        path = tmp / f"{name}.jsonl"
        store = ResultStore(path)
        for rep in range(args.repeat):
            for _, rec in iter_run(suite, name, env, RunOptions(explain=False)):
                rec["repeat"] = rep
                store.append(rec)
        return path

    # Calibrate the extra compute side by side in one process (process noise here is
    # 8-12%): blocks of steps with and without the extra Linear, alternately, on the
    # cell's own model, until the median ratio reaches the target.
    import torch

    from benchbench.workload.data import Source
    from benchbench.workload.step import TrainStep
    from gate_model import WithExtra, build

    params = suite.cells[0].params
    src = Source(params, torch.device("cpu"))
    x, y = next(iter(src))

    def block(step: TrainStep, k: int = 8) -> float:
        ts = []
        for _ in range(k):
            t0 = time.perf_counter()
            step(x, y)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    base_model = build(**params)
    base_step = TrainStep(base_model, params, torch.device("cpu"))
    block(base_step)
    n, ratio = 256, 1.0
    for _ in range(12):
        slow = TrainStep(WithExtra(base_model.base, n), params, torch.device("cpu"))
        block(slow)
        ratios = []
        for _ in range(3):
            b, s_ = block(base_step), block(slow)
            ratios.append(s_ / b)
        ratio = statistics.median(ratios)
        if abs(ratio - (1 + args.target)) < 0.015:
            break
        # the extra Linear's cost grows as n^3
        n = max(16, int(n * ((args.target / max(ratio - 1, 0.005)) ** (1 / 3))))
    print(f"extra Linear {n}x{n}: side-by-side step ratio {ratio:.3f}", flush=True)

    base_runs, slow_runs = [], []
    for i in range(2 * args.pairs):
        gate_file.write_text("0")
        base_runs.append(one_run(f"base{i}"))
        if i < args.pairs:
            gate_file.write_text(str(n))
            slow_runs.append(one_run(f"slow{i}"))
        print(f"run {i + 1}/{2 * args.pairs} done", flush=True)

    def verdict(a: Path, b: Path) -> dict:
        [v] = compare(read_records([a]), read_records([b]), threshold=args.threshold)
        return v.to_dict()

    aa = [verdict(base_runs[2 * i], base_runs[2 * i + 1]) for i in range(args.pairs)]
    det = [verdict(base_runs[i], slow_runs[i]) for i in range(args.pairs)]
    pooled_base = statistics.median(s for p in base_runs for r in read_records([p]) for s in r["step_time_s"]["samples"])
    pooled_slow = statistics.median(s for p in slow_runs for r in read_records([p]) for s in r["step_time_s"]["samples"])
    summary = {
        "pairs": args.pairs, "repeat": args.repeat, "threshold": args.threshold,
        "true_slowdown_measured": pooled_slow / pooled_base - 1,
        "aa_verdicts": {k: sum(v["verdict"] == k for v in aa) for k in {v["verdict"] for v in aa}},
        "aa_false_alarms": sum(v["verdict"] in ("slower", "faster") for v in aa),
        "aa_ratios": [round(v["ratio"], 4) for v in aa],
        "detection_verdicts": {k: sum(v["verdict"] == k for v in det) for k in {v["verdict"] for v in det}},
        "detected": sum(v["verdict"] == "slower" for v in det),
        "detection_ratios": [round(v["ratio"], 4) for v in det],
        "env": {k: env[k] for k in ("cpu", "threads", "torch")},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
