"""Measure the regression gate on this machine with real runs.

1. false alarms: A/A comparisons, same code, separate runs (target: none in 20).
   Each A/A verdict also reports the gate's minimum detectable effect (MDE) at
   this machine's spread: the median over the pairs is "the MDE the gate reports".
2. detection: a candidate slowed by 1.5x that MDE (extra compute sized side by
   side in one process, then re-sized by pilot pairs of fresh processes until the
   slowdown reached across processes is the target; the realized slowdown is
   measured from all scored runs), target >= 19 of 20 detected as `slower`.
   Base and slowed runs alternate, so machine drift falls on both sides alike.

Each "run" is what nightly CI does: the cell run --repeat times in fresh
processes; compare uses the spread between runs.

    python benchmarks/gate.py --pairs 20 --repeat 3 --out benchmarks/results/gate-cpu-DATE.json
"""

from __future__ import annotations

import argparse
import json
import math
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
    ap.add_argument("--target", type=float, default=None,
                    help="slowdown to inject (default: 1.5x the MDE the A/A comparisons report)")
    ap.add_argument("--mde-multiple", type=float, default=1.5)
    ap.add_argument("--pilots", type=int, default=4, help="fresh-process pilot pairs to size the injection")
    ap.add_argument("--out", default=None)
    ap.add_argument("--base-dir", default=None,
                    help="reuse the A/A runs (base0.jsonl ...) of an earlier, interrupted measurement")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threshold", type=float, default=0.05)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bb-gate-"))
    gate_file = tmp / "extra.txt"
    gate_file.write_text("0")
    os.environ["BENCHBENCH_GATE_FILE"] = str(gate_file)  # before the fork server starts
    if args.out:
        args.out = str(Path(args.out).resolve())
    if args.base_dir:
        args.base_dir = str(Path(args.base_dir).resolve())
    os.chdir(HERE)
    sys.path.insert(0, str(HERE))

    from benchbench.analysis.compare import ALPHA, compare
    from benchbench.measure.env import environment
    from benchbench.results import ResultStore, read_records
    from benchbench.runner import RunOptions
    from benchbench.runner.executors import get_executor
    from benchbench.runner.loop import run_planned
    from benchbench.suite import build_suite

    suite = build_suite({"name": "gate", "arch": "gate_model:build", "encoder": "resnet18",
                         "resolution": args.resolution, "batch_size": 4, "warmup": 10, "steps": args.steps,
                         "data": "synthetic", "device": "cpu"}, device="cpu")
    env = environment("cpu")

    def one_run(name: str) -> Path:
        path = tmp / f"{name}.jsonl"
        store = ResultStore(path)
        planned = [(c, rep) for rep in range(args.repeat) for c in suite.cells]
        for rec in run_planned(suite, planned, name, env, RunOptions(explain=False), get_executor("process")):
            store.append(rec)
        return path

    def verdict(a: Path, b: Path) -> dict:
        [v] = compare(read_records([a]), read_records([b]), threshold=args.threshold)
        return v.to_dict()

    base_runs = []
    for i in range(2 * args.pairs):
        if args.base_dir and (Path(args.base_dir) / f"base{i}.jsonl").exists():
            base_runs.append(Path(args.base_dir) / f"base{i}.jsonl")
            continue
        gate_file.write_text("0")
        base_runs.append(one_run(f"base{i}"))
        print(f"A/A run {i + 1}/{2 * args.pairs} done", flush=True)
    aa = [verdict(base_runs[2 * i], base_runs[2 * i + 1]) for i in range(args.pairs)]
    mde = statistics.median(v["mde"] for v in aa if v.get("mde") is not None)
    target = args.target if args.target is not None else args.mde_multiple * mde
    print(f"A/A: MDE reported {mde:.1%} (median); injecting {target:.1%}", flush=True)
    args.target = target

    # Calibrate the extra compute side by side in one process (process noise here is
    # 8-12%): blocks of steps with and without the extra Linear, alternately, on the
    # cell's own model, until the median ratio reaches the target.
    import torch
    from gate_model import WithExtra, build

    from benchbench.workload.data import Source
    from benchbench.workload.step import TrainStep

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
        if abs(ratio - (1 + args.target)) < max(0.015, 0.05 * args.target):
            break
        # the extra Linear's cost grows as n^3
        n = max(16, int(n * ((args.target / max(ratio - 1, 0.005)) ** (1 / 3))))
    print(f"extra Linear {n}x{n}: side-by-side step ratio {ratio:.3f}", flush=True)

    def geo(paths: list[Path]) -> float:
        meds = [r.median for p in paths for r in read_records([p])]
        return math.exp(statistics.fmean(math.log(m) for m in meds))

    # The side-by-side ratio is not what fresh processes see (the extra Linear's share of a
    # step differs there): pilot pairs of fresh runs rescale it until the slowdown reached
    # across processes is the target. Pilot runs are not scored.
    pilots = []
    for k in range(args.pilots):
        gate_file.write_text("0")
        pb = one_run(f"pilot-base{k}")
        gate_file.write_text(str(n))
        ps = one_run(f"pilot-slow{k}")
        realized = geo([ps]) / geo([pb]) - 1
        pilots.append({"n": n, "realized": realized})
        print(f"pilot {k + 1}: extra Linear {n}: across processes {realized:+.1%}", flush=True)
        if abs(realized - args.target) < 0.15 * args.target:
            break
        n = max(16, int(n * ((args.target / max(realized, 0.01)) ** (1 / 3))))

    # Detection: fresh base and slowed runs interleaved, so that drift of this shared machine
    # during the experiment falls on both sides alike.
    det_base, slow_runs = [], []
    for i in range(args.pairs):
        gate_file.write_text("0")
        det_base.append(one_run(f"det-base{i}"))
        gate_file.write_text(str(n))
        slow_runs.append(one_run(f"slow{i}"))
        print(f"detection pair {i + 1}/{args.pairs} done", flush=True)
    gate_file.write_text("0")

    det = [verdict(det_base[i], slow_runs[i]) for i in range(args.pairs)]

    run_meds = [r.median for p in base_runs for r in read_records([p])]
    summary = {
        "pairs": args.pairs, "repeat": args.repeat, "threshold": args.threshold, "alpha": ALPHA,
        "mde_reported_median": mde, "mde_reported_range": [min(v["mde"] for v in aa), max(v["mde"] for v in aa)],
        "injected_target": target, "side_by_side_ratio": ratio,
        "extra_linear_n": n, "pilots": pilots,
        "true_slowdown_measured": geo(slow_runs) / geo(det_base) - 1,
        "detected_at_multiple_of_mde": (geo(slow_runs) / geo(det_base) - 1) / mde,
        "run_to_run_cv_all_base_runs": statistics.stdev(math.log(m) for m in run_meds),
        "aa_verdicts": {k: sum(v["verdict"] == k for v in aa) for k in {v["verdict"] for v in aa}},
        "aa_false_alarms": sum(v["verdict"] in ("slower", "faster") for v in aa),
        "aa_ratios": [round(v["ratio"], 4) for v in aa],
        "aa_mdes": [round(v["mde"], 4) for v in aa],
        "detection_verdicts": {k: sum(v["verdict"] == k for v in det) for k in {v["verdict"] for v in det}},
        "detected": sum(v["verdict"] == "slower" for v in det),
        # the machine's noise drifts (shared VM): the MDE of the detection comparisons themselves
        "detection_mde_median": statistics.median(v["mde"] for v in det if v.get("mde") is not None),
        "detection_ratios": [round(v["ratio"], 4) for v in det],
        "env": {k: env[k] for k in ("cpu", "threads", "torch")},
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
