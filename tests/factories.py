"""Custom model factories for tests: `arch: factories:NAME` in a suite."""

from __future__ import annotations

import os
import time

import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU())
        self.decoder = nn.Conv2d(8, 8, 3, padding=1)
        self.segmentation_head = nn.Conv2d(8, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmentation_head(self.decoder(self.encoder(x)))


def tiny(**params):
    return Tiny(params["classes"], params.get("in_channels", 3))


class _Crash(Tiny):
    def forward(self, x):
        os._exit(7)  # stands in for a segfault: no exception, no result


class _Kill(Tiny):
    def forward(self, x):
        os.kill(os.getpid(), 9)


class _Hang(Tiny):
    def forward(self, x):
        time.sleep(3600)


class _Raise(Tiny):
    def forward(self, x):
        raise RuntimeError("boom in forward")


class _Oom(Tiny):
    def forward(self, x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def crash(**params):
    return _Crash(params["classes"])


def kill(**params):
    return _Kill(params["classes"])


def hang(**params):
    return _Hang(params["classes"])


def raises(**params):
    return _Raise(params["classes"])


def oom(**params):
    return _Oom(params["classes"])


def not_a_model(**params):
    return 42


class _OomAbove4(Tiny):
    def forward(self, x):
        if x.shape[0] > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (batch > 4)")
        return super().forward(x)


def oom_above4(**params):
    return _OomAbove4(params["classes"])


class _Alloc(Tiny):
    def forward(self, x):
        big = torch.ones(256 * 2**20 // 4 * 8)  # 2 GiB of float32
        return super().forward(x) + big[:1].sum()


def alloc_2g(**params):
    return _Alloc(params["classes"])


class _Sleepy(Tiny):
    def forward(self, x):
        time.sleep(1.0)
        return super().forward(x)


def sleepy(**params):
    return _Sleepy(params["classes"])


class _Warns(Tiny):
    def forward(self, x):
        import warnings

        warnings.warn("this API is deprecated (a library's FutureWarning)", FutureWarning, stacklevel=1)
        return super().forward(x)


def warns(**params):
    return _Warns(params["classes"], params.get("in_channels", 3))


def disagree(**params):
    """A DDP rank whose warm-up never steadies (rank 1) beside one that steadies at once (rank 0): the fault
    that let ranks leave warm-up at different steps and deadlock in the timed block's collectives."""
    import torch.distributed as dist

    from benchbench.measure import timer

    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    timer.is_steady = (lambda samples: False) if rank == 1 else (lambda samples: len(samples) >= 2)
    return Tiny(params["classes"], params.get("in_channels", 3))


class _NanUnderAutocast(Tiny):
    def forward(self, x):
        out = super().forward(x)
        if torch.is_autocast_enabled(x.device.type):
            return out * float("nan")  # a knob that breaks training: bf16 here
        return out


def nan_under_autocast(**params):
    return _NanUnderAutocast(params["classes"], params.get("in_channels", 3))


def fail_on_rank1(**params):
    """A DDP cell whose rank 1 fails while building (as an OOM or a bad NCCL setup would), while rank 0 goes on
    into DDP's first collective and would wait there until the timeout."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_rank() == 1:
        raise RuntimeError("rank 1 ran out of something")
    return Tiny(params["classes"], params.get("in_channels", 3))
