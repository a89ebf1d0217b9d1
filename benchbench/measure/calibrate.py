"""Measure the device's peak compute once per run, so utilisation is a measured ratio.

A large square matmul in the cell's dtype is the best case any model can hit;
its rate (2 flops per multiply-add, the hardware convention) is the peak that
achieved FLOP/s are divided by.
"""

from __future__ import annotations

import time
from typing import Any

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def matmul_peak(device: torch.device, dtype: str, n: int | None = None, reps: int = 5) -> dict[str, Any]:
    n = n or (8192 if device.type == "cuda" else 1024)
    dt = DTYPES[dtype]
    a = torch.randn(n, n, device=device).to(dt)
    b = torch.randn(n, n, device=device).to(dt)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    torch.matmul(a, b)
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        sync()
        times.append(time.perf_counter() - t0)
    best = min(times)  # a peak: the best repetition, not the median
    return {"dtype": dtype, "n": n, "flops_per_s": 2 * n**3 / best, "samples_s": times}


def calibrate(device_name: str, dtypes: list[str]) -> dict[str, Any]:
    device = torch.device(device_name)
    out: dict[str, Any] = {}
    for d in dtypes:
        try:
            out[d] = matmul_peak(device, d)
        except Exception as exc:  # noqa: BLE001 - a dtype the device lacks is data, not a crash
            out[d] = {"dtype": d, "error": f"{type(exc).__name__}: {exc}"[:200]}
    return out
