"""Model factory for benchmarks/gate.py: a Unet, optionally with a known amount of extra compute.

The extra work is a Linear layer on a fixed tensor whose output joins the
loss, so it costs forward *and* backward time, like a real regression. Its
size is read from the file named by $BENCHBENCH_GATE_FILE (rewritten by the
gate script between runs: cell parameters, and so cell ids, stay identical).
"""

from __future__ import annotations

import os
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn


class WithExtra(nn.Module):
    def __init__(self, base: nn.Module, n: int) -> None:
        super().__init__()
        self.base = base
        self.n = n
        if n:
            self.extra = nn.Linear(n, n, bias=False)
            self.register_buffer("x", torch.randn(n, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.n:
            out = out + self.extra(self.x).mean() * 0.0
        return out


def build(**params):
    base = smp.Unet(params["encoder"], encoder_weights=None, classes=params["classes"])
    path = os.environ.get("BENCHBENCH_GATE_FILE")
    n = int(Path(path).read_text().strip() or 0) if path and os.path.exists(path) else 0
    return WithExtra(base, n)
