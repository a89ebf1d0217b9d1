"""A plain, hand-written SMP training loop: no benchbench code at all.

It is the yardstick for benchbench's own overhead: the same configuration as a
benchbench cell, timed the way anyone would time it by hand (warm up, then
perf_counter around each step). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import segmentation_models_pytorch as smp
import torch


def parser() -> argparse.ArgumentParser:
    """The configuration shared with benchmarks/overhead.py."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="Unet")
    ap.add_argument("--encoder", default="resnet18")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--classes", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20)
    return ap


def main() -> None:
    args = parser().parse_args()

    torch.manual_seed(0)
    model = getattr(smp, args.arch)(encoder_name=args.encoder, encoder_weights=None, classes=args.classes)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.resolution, args.resolution, generator=g)
    y = torch.randint(0, args.classes, (args.batch_size, args.resolution, args.resolution), generator=g)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({"median_s": med, "throughput_img_s": args.batch_size / med, "samples": times}))


if __name__ == "__main__":
    main()
