"""FLOP counting, in a pass of its own (never during timed steps).

Convention (stated in every record): one multiply-add counts ONCE (a MAC).
fvcore already counts that way; torch's FlopCounterMode counts a multiply-add
as two flops, so its numbers are halved here. Achieved compute rates use the
hardware convention (2 flops per MAC) and say so in their field names.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any

import torch
from torch import nn

CONVENTION = "MAC: one multiply-add counted once (fvcore's convention; FlopCounterMode's counts halved)"


def _split_counts(by_module: dict[str, int], model: nn.Module) -> dict[str, int]:
    """FLOPs for the same modules the time breakdown reports, so the two line up."""
    from benchbench.measure.profile import modules_of_interest

    return {name: int(by_module[name]) for name in modules_of_interest(model) if by_module.get(name)}


def fvcore_forward(model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Forward MACs per image by module, and the operators fvcore could not count."""
    from fvcore.nn import FlopCountAnalysis

    n = x.shape[0]
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        analysis = FlopCountAnalysis(model, (x,))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        total = int(analysis.total())
        by_module = analysis.by_module()
        unsupported = dict(analysis.unsupported_ops())
    return {
        "forward_per_image": total / n,
        "by_module": {k: v / n for k, v in _split_counts(by_module, model).items()},
        "unsupported_ops": sorted(unsupported),
    }


def _conv_backward_flop(grad_out_shape: Any, x_shape: Any, w_shape: Any, _bias: Any, _stride: Any, _padding: Any,
                        _dilation: Any, transposed: bool, _output_padding: Any, _groups: int, output_mask: Any,
                        out_shape: Any = None, **_: Any) -> int:
    """convolution_backward = one forward's worth per requested gradient (input, weight).

    torch's own formula transposes shapes for grad_weight and loses `groups`, so
    a depthwise conv's backward is overcounted by about its channel count
    (measured: 153 M instead of 4.7 M flops for a 64-channel depthwise 3x3);
    SegFormer's Mix-FFN and MobileViT are full of depthwise convs.
    """
    from torch.utils.flop_counter import conv_flop_count

    fwd = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed)
    return fwd * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def flopcounter_train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module) -> dict[str, Any]:
    """Forward and forward+backward MACs per image through the dispatcher, in one step: the forward's count is
    read before the backward adds to it."""
    from torch.utils.flop_counter import FlopCounterMode

    n = x.shape[0]
    mapping = {torch.ops.aten.convolution_backward: _conv_backward_flop}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with counter:
        out = model(x)
        fwd = counter.get_total_flops()
        loss_fn(out, y).backward()
    total = counter.get_total_flops()
    by_op = {str(op): int(v) for op, v in (counter.get_flop_counts().get("Global") or {}).items()}
    conv = sum(v for op, v in by_op.items() if "convolution" in op)
    model.zero_grad(set_to_none=True)
    return {"forward_per_image_flopcounter": fwd / 2 / n, "train_step_per_image": total / 2 / n,
            "train_step_by_kind_per_image": {"convolution": conv / 2 / n, "matmul": (total - conv) / 2 / n}}


def math_modes(amp: str, device: torch.device) -> dict[str, str]:
    """The math mode each kind of work runs in: under autocast its dtype; in fp32 on a GPU, convolutions
    use TF32 when cuDNN allows it (torch's default) and matmuls only when `float32_matmul_precision`
    says so (torch's default: not)."""
    if amp in ("bf16", "fp16"):
        return {"convolution": amp, "matmul": amp}
    if device.type != "cuda":
        return {"convolution": "fp32", "matmul": "fp32"}
    return {"convolution": "tf32" if torch.backends.cudnn.allow_tf32 else "fp32",
            "matmul": "tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"}


def effective_peak(by_kind: dict[str, float], modes: dict[str, str], peaks: dict[str, Any]) -> float | None:
    """The fastest this mix of work could run: each kind at the peak of its own math mode.
    time = sum(flops_k / peak_k), peak = total / time (a cell that is mostly TF32 convolutions is
    not judged against the fp32 peak, 4-8x lower on a GPU)."""
    total, seconds = 0.0, 0.0
    for kind, flops in by_kind.items():
        if not flops:
            continue
        peak = (peaks.get(modes[kind]) or {}).get("flops_per_s")
        if not peak:
            return None
        total += flops
        seconds += flops / peak
    return total / seconds if seconds else None


def count_flops(model: nn.Module, params: dict[str, Any], loss_fn: nn.Module, device: torch.device) -> dict[str, Any]:
    """Both counters at batch 2 (BatchNorm needs >1 in train mode), reported per image."""
    h, w = params["resolution"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, params.get("in_channels", 3), h, w, generator=g).to(device)
    y = torch.randint(0, params["classes"], (2, h, w), generator=g).to(device)
    was_training = model.training
    out: dict[str, Any] = {"convention": CONVENTION, "counter": "fvcore FlopCountAnalysis (forward, by module); "
                           "torch.utils.flop_counter.FlopCounterMode (train step)"}
    state = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    try:
        model.eval()  # tracing in eval mode: BatchNorm statistics untouched, same MACs
        try:
            out.update(fvcore_forward(model, x))
        except Exception as exc:
            out.update({"forward_per_image": None, "by_module": {}, "unsupported_ops": [],
                        "fvcore_error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        model.train()
        out.update(flopcounter_train_step(model, x, y, loss_fn))
    finally:
        model.load_state_dict(state, strict=False)  # the FLOP pass must not change what is timed
        model.train(was_training)
    if out.get("forward_per_image") is None:
        out["forward_per_image"] = out["forward_per_image_flopcounter"]
    return out
