"""Micro-cases with a known answer, on a real GPU: does benchbench's timeline count what CUDA does?

Each case runs a few steps under torch.profiler (ProfilerStep#N markers), exports the trace into --out,
reads it with benchbench's timeline, and compares with the answer known from CUDA's semantics:

- `.item()` once per step: 1 host sync per step (a DtoH copy into pinned memory, then one wait);
- a `non_blocking=True` copy into pinned memory, never waited on: 0 syncs;
- fp16 + GradScaler with a plain AdamW: 1 sync per step (found_inf read on the host); with a fused AdamW: 0;
- the fp32 matmul peak with TF32 off and on: TF32 several times faster on an Ampere-or-later GPU.

The traces it writes are small; copy them into tests/fixtures to keep the answers as CPU tests.
Skips itself without CUDA.

    python benchmarks/gpu_micro.py --out results/gpu/micro
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from benchbench.timeline.gpu import summarize_gpu
from benchbench.timeline.reader import read_timeline

STEPS = 3


def traced(name: str, out: Path, step: Callable[[], None]) -> dict:
    for _ in range(3):  # warm-up outside the profiler (cuBLAS handles, allocator)
        step()
    torch.cuda.synchronize()
    sched = schedule(wait=0, warmup=1, active=STEPS, repeat=1)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], schedule=sched) as prof:
        for i in range(STEPS + 1):
            step()
            if i == STEPS:
                torch.cuda.synchronize()
            prof.step()
    path = out / f"trace-{name}.json"
    prof.export_chrome_trace(str(path))
    g = summarize_gpu(read_timeline(path))
    return {"trace": path.name, "steps": g.steps, "syncs_per_step": sum(s["per_step"] for s in g.host_syncs),
            "host_syncs": g.host_syncs, "kernels_per_step": g.kernels_per_step}


def cases(out: Path) -> list[dict]:
    dev = torch.device("cuda")
    x = torch.randn(1024, 1024, device=dev)
    pinned = torch.empty(1024, 1024, pin_memory=True)
    results = []

    def item() -> None:
        (x @ x).sum().item()

    def non_blocking() -> None:
        pinned.copy_(x @ x, non_blocking=True)

    results.append({"case": "item", "expected_syncs_per_step": 1, **traced("item", out, item)})
    results.append({"case": "non_blocking_copy", "expected_syncs_per_step": 0,
                    **traced("non-blocking-copy", out, non_blocking)})
    for fused, expected in ((False, 1), (True, 0)):
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
                                    torch.nn.Conv2d(32, 4, 1)).to(dev)
        opt = torch.optim.AdamW(model.parameters(), fused=fused)
        scaler = torch.amp.GradScaler("cuda")
        data = torch.randn(8, 3, 64, 64, device=dev)
        target = torch.randint(0, 4, (8, 64, 64), device=dev)

        def amp_step(model=model, opt=opt, scaler=scaler) -> None:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.float16):
                loss = torch.nn.functional.cross_entropy(model(data), target)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        name = f"gradscaler-adamw{'-fused' if fused else ''}"
        results.append({"case": name, "expected_syncs_per_step": expected, **traced(name, out, amp_step)})
    for r in results:
        r["ok"] = r["syncs_per_step"] == r["expected_syncs_per_step"]
    from benchbench.measure.calibrate import calibrate

    peaks = calibrate("cuda", ["fp32"])
    ratio = peaks["tf32"]["flops_per_s"] / peaks["fp32"]["flops_per_s"]
    results.append({"case": "tf32_vs_fp32_peak", "fp32_tflops": peaks["fp32"]["flops_per_s"] / 1e12,
                    "tf32_tflops": peaks["tf32"]["flops_per_s"] / 1e12, "ratio": ratio, "ok": ratio > 2,
                    "spread": {k: v["spread"] for k, v in peaks.items()}})
    return results


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu-micro")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA device"}))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = cases(out)
    (out / "micro.json").write_text(json.dumps(results, indent=2))
    for r in results:
        print(("ok  " if r["ok"] else "FAIL") + " " + json.dumps({k: v for k, v in r.items() if k != "host_syncs"}))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
