"""Measure the device's peak compute once per run, so utilisation is a measured ratio.

A large square matmul is the best case any model can hit; its rate (2 flops per
multiply-add, the hardware convention) is the peak that achieved FLOP/s are
divided by. It is measured in each math mode a cell's work can run in: on a GPU
fp32 has two — plain fp32 and TF32, which cuDNN convolutions use by default
(`torch.backends.cudnn.allow_tf32`) while matmuls do not (`float32_matmul_precision
= "highest"`) — and they differ 4-8x, so an fp32 cell is judged against the mode
its own convolutions and matmuls ran in (`measure.flops.effective_peak`).

On CUDA the matmuls are timed with CUDA events, several blocks of several
repetitions after a warm-up, and the peak is the median block: one repetition of
an 8192^3 matmul is ~1.5 ms on an H100, too short to time alone.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

#: mode -> torch dtype's name (torch is imported where the matmuls run: choosing what to calibrate needs none)
DTYPES = {"fp32": "float32", "tf32": "float32", "bf16": "bfloat16", "fp16": "float16"}


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    import torch

    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def matmul_peak(device: Any, dtype: str, n: int | None = None, reps: int | None = None,
                blocks: int = 5) -> dict[str, Any]:
    import torch

    cuda = device.type == "cuda"
    n = n or (8192 if cuda else 1024)
    reps = reps or (10 if cuda else 8)  # a CPU block of 2 read 8-19% apart here, of 8 12-14%: kept, it is paid once
    dt = getattr(torch, DTYPES[dtype])
    a = torch.randn(n, n, device=device).to(dt)
    b = torch.randn(n, n, device=device).to(dt)
    rates = []
    with tf32(dtype == "tf32"):
        for _ in range(1 if cuda else reps):  # library initialisation, kernel selection (a CPU: its threads woken)
            torch.matmul(a, b)
        if cuda:
            torch.cuda.synchronize(device)
        for _ in range(blocks):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(reps):
                    torch.matmul(a, b)
                end.record()
                end.synchronize()
                seconds = start.elapsed_time(end) * 1e-3
            else:
                t0 = time.perf_counter()
                for _ in range(reps):
                    torch.matmul(a, b)
                seconds = time.perf_counter() - t0
            rates.append(2 * n**3 * reps / seconds)
    return {"dtype": dtype, "n": n, "reps": reps, "clock": "cuda-events" if cuda else "perf_counter",
            "calibrated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "flops_per_s": float(np.median(rates)), "block_rates": rates,
            "spread": float((max(rates) - min(rates)) / np.median(rates))}


def dtypes_of(params: list[dict[str, Any]]) -> list[str]:
    """The dtypes whose peak these cells need (amp none runs in fp32)."""
    # a command cell's AMP is its script's: what it ran is known once it ran (fp32 is always measured)
    return sorted({"fp32" if "command" in p else {"none": "fp32"}.get(p["amp"], p["amp"]) for p in params})


def modes(device: str, dtypes: list[str]) -> list[str]:
    """The math modes to measure: a GPU's fp32 cells need TF32 too (cuDNN's default for convolutions)."""
    out = list(dict.fromkeys(dtypes))
    if device == "cuda" and "fp32" in out:
        out.append("tf32")
    return out


def calibrate(device_name: str, dtypes: list[str]) -> dict[str, Any]:
    import torch

    device = torch.device(device_name)
    out: dict[str, Any] = {}
    for d in modes(device.type, dtypes):
        try:
            out[d] = matmul_peak(device, d)
        except Exception as exc:
            out[d] = {"dtype": d, "error": f"{type(exc).__name__}: {exc}"[:200]}
    return out
