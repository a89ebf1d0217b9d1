"""GPU fidelity: benchbench's CUDA timing vs a plain training loop timed by its block's wall time.

One process, one model, one batch on the GPU; blocks of steps alternate between
a plain loop (no sync inside the block, one `torch.cuda.synchronize()` at its
end, throughput = images / wall time: what training experiences) and
benchbench's `timed_loop` + `TrainStep` (CUDA events per step, one sync per
block). A third method, the old host clock with a sync after every step, is
measured alongside to show what it cost. Target: benchbench / plain throughput
ratio >= 0.98 (median over blocks). Skips itself without CUDA, unless `--device cpu` asks for the
rehearsal: the same code on the CPU (host clock, no sync), every line run, no target asserted.

Every import is at the top: `--dry-run` imports what the measurement imports (an import that moved fails
there, not under the GPU's clock).

    python benchmarks/gpu_fidelity.py --blocks 10 --out results/gpu/fidelity.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import segmentation_models_pytorch as smp  # noqa: F401 - imported before building the model
import torch

from benchbench.measure.env import environment
from benchbench.measure.timer import synchronizer, timed_loop
from benchbench.suite import CellParams
from benchbench.workload.models import build_model
from benchbench.workload.source import Source
from benchbench.workload.step import TrainStep


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="Unet")
    ap.add_argument("--encoder", default="mit_b0")
    ap.add_argument("--decoder-channels", type=int, default=None)
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--amp", default="bf16")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu: the rehearsal (every line run on the CPU, no target asserted)")
    ap.add_argument("--dry-run", action="store_true", help="check imports and arguments, run nothing")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.dry_run:
        print(json.dumps({"dry_run": True, "config": vars(args)}))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device"}))
        return 0

    device = torch.device(args.device)
    sync = synchronizer(device)
    torch.manual_seed(0)
    params = CellParams(arch=args.arch, encoder=args.encoder, decoder_channels=args.decoder_channels,
                        resolution=args.resolution, batch_size=args.batch_size, amp=args.amp,
                        device=args.device).model_dump(mode="json")
    step = TrainStep(build_model(params), params, device)
    source = Source(params, device)
    batches = iter(source)
    x, y = next(batches)
    n = args.steps

    def plain_block() -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            step(x, y)
        sync()
        return (time.perf_counter() - t0) / n

    def synced_block() -> float:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            step(x, y)
            sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def bench_block() -> tuple[float, float]:
        t = timed_loop(batches, source.to_device, step, device, warmup=0, steps=n)
        return t.block_wall_s / n, statistics.median(t.step_s)

    for _ in range(3 if device.type == "cuda" else 1):
        plain_block(), bench_block(), synced_block()  # warm-up: cudnn autotune, allocator
    rows = []
    for i in range(args.blocks):
        order = [plain_block, bench_block, synced_block]
        if i % 2:
            order.reverse()
        got = {f.__name__: f() for f in order}
        wall, event_median = got["bench_block"]
        rows.append(
            {
                "plain_s": got["plain_block"],
                "benchbench_wall_s": wall,
                "benchbench_event_median_s": event_median,
                "synced_median_s": got["synced_block"],
            }
        )
    ratio = [r["plain_s"] / r["benchbench_wall_s"] for r in rows]
    synced = [r["plain_s"] / r["synced_median_s"] for r in rows]
    doc = {
        "benchmark": "gpu_fidelity",
        "config": vars(args),
        "env": environment(args.device),
        "rehearsal": args.device != "cuda",
        "plain_step_s_median": statistics.median(r["plain_s"] for r in rows),
        "benchbench_step_s_median": statistics.median(r["benchbench_wall_s"] for r in rows),
        "benchbench_event_median_s": statistics.median(r["benchbench_event_median_s"] for r in rows),
        "throughput_ratio_median": statistics.median(ratio),
        "throughput_ratio_min": min(ratio),
        "throughput_ratio_max": max(ratio),
        "target": 0.98,
        "sync_per_step_throughput_ratio_median": statistics.median(synced),
        "blocks": rows,
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0 if doc["rehearsal"] or doc["throughput_ratio_median"] >= 0.98 else 1


if __name__ == "__main__":
    sys.exit(main())
