"""benchbench's timed loop vs a hand-written loop on the *same* model, in one process.

Process-to-process variation on a shared machine (8-12% here) hides a few
percent of harness overhead. This removes it: one process, one model, one batch;
blocks of steps timed alternately by a plain loop and by benchbench's
`timed_loop` + `TrainStep` + `Source`, and the ratio of their medians per block.

    python benchmarks/overhead_inprocess.py --blocks 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import segmentation_models_pytorch as smp
import torch

from benchbench.measure.timer import timed_loop
from benchbench.suite import CellParams
from benchbench.workload.data import Source
from benchbench.workload.step import TrainStep


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--blocks", type=int, default=10)
    args = ap.parse_args()

    torch.manual_seed(0)
    params = CellParams(arch="Unet", encoder="resnet18", resolution=args.resolution, batch_size=args.batch_size,
                        device="cpu").model_dump(mode="json")
    model = smp.Unet("resnet18", encoder_weights=None, classes=12)
    step = TrainStep(model, params, torch.device("cpu"))
    source = Source(params, torch.device("cpu"))
    batches = iter(source)
    x, y = next(batches)
    opt, loss_fn = step.optimizer, step.loss_fn  # the plain loop drives the same model and optimizer

    def plain_block() -> float:
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    def bench_block() -> float:
        timing = timed_loop(batches, source.to_device, step, torch.device("cpu"), warmup=0, steps=args.steps)
        return statistics.median(timing.step_s)

    plain_block(), bench_block()  # warm-up for both paths
    ratios, plains, benches = [], [], []
    for i in range(args.blocks):
        if i % 2 == 0:
            p, b = plain_block(), bench_block()
        else:
            b, p = bench_block(), plain_block()
        plains.append(p)
        benches.append(b)
        ratios.append(p / b)  # throughput ratio benchbench / plain
    print(json.dumps({
        "config": vars(args),
        "plain_step_s_median": statistics.median(plains),
        "benchbench_step_s_median": statistics.median(benches),
        "throughput_ratio_median": statistics.median(ratios),
        "throughput_ratio_min": min(ratios),
        "throughput_ratio_max": max(ratios),
    }, indent=2))


if __name__ == "__main__":
    main()
