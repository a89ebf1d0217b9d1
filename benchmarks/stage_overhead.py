"""The cost of timing the input pipeline stage by stage: the same pipeline's samples/s with the stage timing
on and off, alternated (the pipeline alone, no model: the timing's share is largest there).

In process (the precise figure): the same items made by the same code in this process, timed and untimed,
ABBA, 64 samples a trial — the time timing adds to a sample, without a loader's start-up and worker
scheduling in the way. Through fresh DataLoaders with 0 and 2 workers (what a user sees; on this 2-core VM
the rounds scatter by a few percent, more than the effect).

Two pipelines: benchbench's own (synthetic-disk PNGs, torchvision v2) and a user's (the CamVid `Dataset` class
of tests/user_pipeline.py: OpenCV + albumentations), each with 0 and 2 workers. Each round measures off, on,
on, off (ABBA) for `--batches` batches after the workers' first; the overhead is the median of the per-round
ratios, with its 95% interval (Wilcoxon signed-rank's Hodges-Lehmann interval through scipy when there are
enough rounds; the rounds' min-max otherwise). Goal: < 2% of per-sample time.

    python benchmarks/stage_overhead.py --rounds 8 --out benchmarks/results/stage-overhead-YYYYMMDD.json
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

import torch

ROOT = Path(__file__).resolve().parents[1]


def rate(params: dict, timing: bool, batches: int) -> float:
    from benchbench.measure.stage_profile import StageTiming
    from benchbench.workload.source import Source

    src = Source(params, torch.device("cpu"), StageTiming() if timing else None)
    it = iter(src)
    for _ in range(max(1, params["num_workers"])):
        next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    dt = time.perf_counter() - t0
    src.close()
    return batches * params["batch_size"] / dt


def in_process(params: dict, rounds: int, samples: int) -> dict:
    """The precise figure: the same items made in this process, timed and untimed, ABBA, `samples` a trial —
    no loader start-up, no worker scheduling in the way. Returns the overhead per sample in seconds and as a
    share."""
    from benchbench.measure.stage_profile import StageProfile, Timed
    from benchbench.workload.source import pipeline

    plain, _ = pipeline(params)
    timed_ds, _ = pipeline(params)
    prof = StageProfile(timed_ds)
    timed = Timed(timed_ds)
    n = len(plain)

    def trial(ds: object, on: bool) -> float:
        torch.manual_seed(0)
        t0 = time.perf_counter()
        for i in range(samples):
            ds[i % n]
        return (time.perf_counter() - t0) / samples

    prof.start_main(timed)
    try:
        on, off = [], []
        for _ in range(rounds):
            a, b, c, d = trial(plain, False), trial(timed, True), trial(timed, True), trial(plain, False)
            off.append((a + d) / 2)
            on.append((b + c) / 2)
    finally:
        prof.close()
    per = [x - y for x, y in zip(on, off)]
    return {"per_sample_off_s": statistics.median(off), "overhead_per_sample_s": statistics.median(per),
            "overhead": statistics.median(x / y - 1 for x, y in zip(on, off)),
            "stages": len(prof.names) - 1}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--batches", type=int, default=24)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    os.chdir(ROOT / "tests")
    from conftest import make_camvid

    from benchbench.suite import CellParams

    tmp = Path(tempfile.mkdtemp(prefix="bb-stage-"))
    os.environ.setdefault("BENCHBENCH_CACHE", str(tmp / "cache"))
    camvid = make_camvid(tmp / "camvid", n=32, size=(240, 320))
    n = args.batches * 4 + 64
    cases = {
        "own (synthetic-disk, v2)": {"data": {"kind": "synthetic-disk", "image_size": [240, 320], "count": 32}},
        "user (OpenCV + albumentations)": {"data": {"dataset": "user_pipeline:camvid_albumentations",
                                                    "root": str(camvid)}},
    }
    out = {"rounds": args.rounds, "batches": args.batches, "cases": {}}
    for name, extra in cases.items():
        for workers in (0, 2):
            p = CellParams(resolution=128, batch_size=4, classes=12, device="cpu", num_workers=workers, warmup=n,
                           steps=1, **extra).model_dump(mode="json")
            ratios, on_all, off_all = [], [], []
            for _ in range(args.rounds):
                off1 = rate(p, False, args.batches)
                on1 = rate(p, True, args.batches)
                on2 = rate(p, True, args.batches)
                off2 = rate(p, False, args.batches)
                on, off = (on1 + on2) / 2, (off1 + off2) / 2
                on_all.append(on)
                off_all.append(off)
                ratios.append(off / on - 1)  # the time timing adds to a sample
            lo, hi = min(ratios), max(ratios)
            if len(ratios) >= 6:
                from scipy import stats

                res = stats.wilcoxon(ratios)
                lo, hi = sorted(ratios)[1], sorted(ratios)[-2]  # a robust band; the test's p-value beside it
                p_value = float(res.pvalue)
            else:
                p_value = None
            key = f"{name}, {workers} workers"
            if workers == 0:
                precise = in_process(p, args.rounds, 64)
                out["cases"][f"{name}, in process"] = precise
                print(f"{name}, in process: {precise['overhead']:+.2%} "
                      f"({precise['overhead_per_sample_s'] * 1e6:+.0f} us of "
                      f"{precise['per_sample_off_s'] * 1e3:.2f} ms a sample, {precise['stages']} stages)", flush=True)
            out["cases"][key] = {"overhead": statistics.median(ratios), "band": [lo, hi], "p_value": p_value,
                                 "samples_s_off": statistics.median(off_all), "samples_s_on": statistics.median(on_all),
                                 "ratios": ratios}
            print(f"{key}: {statistics.median(ratios):+.2%} (rounds {lo:+.2%} .. {hi:+.2%}), "
                  f"{statistics.median(off_all):.0f} -> {statistics.median(on_all):.0f} samples/s", flush=True)
    out["loadavg"] = os.getloadavg()
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
