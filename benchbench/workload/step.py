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


def _offered(params: dict[str, Any] | None) -> dict[str, Any]:
    """What a loss or optimizer factory may ask for by name."""
    p = params or {}
    keys = ("classes", "lr", "amp", "batch_size", "resolution", "seed", "device")
    return {"ignore_index": IGNORE_INDEX, **{k: p[k] for k in keys if k in p}}


def _user(spec: str, what: str, params: dict[str, Any] | None, *args: Any) -> Any:
    from benchbench.errors import BenchbenchError
    from benchbench.workload.factories import call, load

    fn = load(spec, what)
    try:
        return call(fn, spec, what, _offered(params), *args)
    except BenchbenchError:
        raise
    except Exception as exc:
        raise BenchbenchError(f"{what} {spec!r} raised {type(exc).__name__}: {str(exc)[:300]}") from None


def make_loss(name: str, params: dict[str, Any] | None = None) -> nn.Module:
    """A built-in loss by name, or the user's `pkg.module:make_loss` (called with classes, ignore_index, ...:
    whatever its signature names); it must take (logits, mask) and return a scalar."""
    if ":" in name:
        loss = _user(name, "loss factory", params)
        if not callable(loss):
            from benchbench.errors import BenchbenchError

            raise BenchbenchError(f"loss factory {name!r} returned {type(loss).__name__}, not a callable loss")
        return loss if isinstance(loss, nn.Module) else _Fn(loss)
    if name == "cross-entropy":
        return nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    import segmentation_models_pytorch as smp

    if name == "dice":
        return smp.losses.DiceLoss("multiclass", ignore_index=IGNORE_INDEX)
    if name == "focal":
        return smp.losses.FocalLoss("multiclass", ignore_index=IGNORE_INDEX)
    raise ValueError(f"unknown loss {name!r}")


class _Fn(nn.Module):
    """A plain loss function as a module (so `.to(device)` works on it)."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(logits, target)


def make_optimizer(name: str, model: nn.Module, lr: float, settings: dict[str, Any] | None = None
                   ) -> torch.optim.Optimizer:
    """A built-in optimizer by name, or the user's `pkg.module:make_optimizer(model, lr=..., ...)`."""
    if ":" in name:
        opt = _user(name, "optimizer factory", {**(settings or {}), "lr": lr}, model)
        if not isinstance(opt, torch.optim.Optimizer):
            from benchbench.errors import BenchbenchError

            raise BenchbenchError(f"optimizer factory {name!r} returned {type(opt).__name__}, not a "
                                  "torch.optim.Optimizer")
        return opt
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
        self.loss_fn = make_loss(params["loss"], params).to(device)
        self.optimizer = make_optimizer(params["optimizer"], model, params["lr"], params)
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
