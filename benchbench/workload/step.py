"""The training step: forward, loss, backward, optimizer — what a real training loop does.

The step is split into named phases so a profiler pass can label them; in the
timed loop the labels are a no-op context, so measurement costs nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from benchbench.workload.data import IGNORE_INDEX

PhaseFn = Callable[[str], AbstractContextManager[Any]]


def _no_phase(_name: str) -> AbstractContextManager[Any]:
    return contextlib.nullcontext()


def make_loss(name: str) -> nn.Module:
    if name == "cross-entropy":
        return nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    import segmentation_models_pytorch as smp

    if name == "dice":
        return smp.losses.DiceLoss("multiclass", ignore_index=IGNORE_INDEX)
    if name == "focal":
        return smp.losses.FocalLoss("multiclass", ignore_index=IGNORE_INDEX)
    raise ValueError(f"unknown loss {name!r}")


def make_optimizer(name: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if name in ("adamw", "adamw-fused"):
        return torch.optim.AdamW(params, lr=lr, fused=name.endswith("-fused") or None)
    if name in ("adam", "adam-fused"):
        return torch.optim.Adam(params, lr=lr, fused=name.endswith("-fused") or None)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")


def compiled(model: nn.Module, setting: bool | str) -> Any:
    """torch.compile in the cell's mode: `True` is the default mode; `reduce-overhead` adds CUDA graphs."""
    return torch.compile(model, mode=None if setting is True else str(setting))


AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class TrainStep:
    """One optimisation step with the cell's AMP, memory-format and compile settings."""

    def __init__(self, model: nn.Module, params: dict[str, Any], device: torch.device) -> None:
        self.device = device
        self.channels_last = bool(params.get("channels_last"))
        model = model.to(device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        self.model = model
        self.compiled = bool(params.get("compile"))
        self.forward_fn: Callable[[torch.Tensor], torch.Tensor] = (
            compiled(model, params["compile"]) if self.compiled else model
        )
        self.loss_fn = make_loss(params["loss"]).to(device)
        self.optimizer = make_optimizer(params["optimizer"], model, params["lr"])
        amp = params.get("amp", "none")
        self.amp_dtype = AMP_DTYPES.get(amp)
        # fp16 needs loss scaling to keep small gradients; bf16 has fp32's range.
        self.scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
        #: GradScaler's found-inf flags of every step, on the device (a reference to its own tensor: no copy,
        #: no sync); read once after the timed block to say which steps it skipped.
        self.found_inf: list[torch.Tensor] = []

    def autocast(self) -> AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __call__(self, x: torch.Tensor, y: torch.Tensor, phase: PhaseFn = _no_phase) -> torch.Tensor:
        x = self.prepare(x)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            with phase("forward"):
                logits = self.forward_fn(x)
            with phase("loss"):
                loss = self.loss_fn(logits, y)
        with phase("backward"):
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
        with phase("optimizer"):
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                state = self.scaler._per_optimizer_states[id(self.optimizer)]
                self.found_inf.extend(state.get("found_inf_per_device", {}).values())
                self.scaler.update()
            else:
                self.optimizer.step()
        return loss.detach()
