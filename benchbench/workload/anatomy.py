"""A segmentation model's parts, read from the model itself — SMP's and Transformers' alike — for a model
benchbench did not build (an attached script's): which child is the decoder, how wide it is, how many classes the
model outputs, which encoder it has. Each reader returns what the model says or None: an attached record holds
what was observed or nothing, never a suite cell's default.

The decoder is `decoder` in SMP (and in nnU-Net's `PlainConvUNet`), `decode_head` in Transformers' SegFormer and
UperNet; SegFormer's fuse convolution is SMP's `decoder.fuse_stage` and Transformers' `decode_head.linear_fuse`,
its per-stage projections `decoder.mlp_stage.N` and `decode_head.linear_c.N` (`linear_projections.N` in
Transformers 5)."""

from __future__ import annotations

from typing import Any

DECODER_NAMES = ("decoder", "decode_head")
FUSE_NAMES = ("fuse_stage", "linear_fuse")
BRANCH_NAMES = ("mlp_stage", "linear_c", "linear_projections")  # SMP; Transformers 4; 5


def is_decoder(module_name: str) -> bool:
    """`decoder` / `decode_head`: the decoder, whichever library built the model."""
    return module_name in DECODER_NAMES


def decoder_name(names: Any) -> str | None:
    """The decoder among a model's top-level module names (a breakdown's, a FLOPs count's)."""
    return next((n for n in DECODER_NAMES if n in names), None)


def fuse_name(names: Any) -> str | None:
    """SegFormer's fuse stage among a breakdown's module names (`decoder.fuse_stage`, `decode_head.linear_fuse`)."""
    return next((f"{d}.{f}" for d in DECODER_NAMES for f in FUSE_NAMES if f"{d}.{f}" in names), None)


def branches(names: Any) -> int:
    """SegFormer's decoder branches (one projection per encoder stage) among module names."""
    return len({n for n in names for d in DECODER_NAMES for b in BRANCH_NAMES
                if n.startswith(f"{d}.{b}.") and n.count(".") == 2})


def decoder_width(model: Any) -> int | None:
    """SegFormer's decoder width (`decoder_channels` in SMP, `config.decoder_hidden_size` in Transformers)."""
    config = getattr(model, "config", None)
    if config is not None and getattr(model, "decode_head", None) is not None:
        width = getattr(config, "decoder_hidden_size", None)
        return int(width) if isinstance(width, int) else None
    return _out_channels(getattr(getattr(model, "decoder", None), "fuse_stage", None))


def _out_channels(part: Any) -> int | None:
    """The output channels of a part's first convolution (SMP's fuse stage, its segmentation head)."""
    conv = next((m for m in part.modules() if hasattr(m, "out_channels")), None) if part is not None else None
    return int(conv.out_channels) if conv is not None else None


def output_classes(model: Any) -> int | None:
    """The classes the model outputs, where the model states them: Transformers' `config.num_labels`, SMP's
    segmentation head, a `num_classes`/`nc` attribute (nnU-Net's decoder, Ultralytics)."""
    config = getattr(model, "config", None)
    n = getattr(config, "num_labels", None) if config is not None else None
    if isinstance(n, int):
        return n
    head = _out_channels(getattr(model, "segmentation_head", None))
    if head is not None:
        return head
    for owner in (model, getattr(model, "decoder", None)):
        for attr in ("num_classes", "nc"):
            v = getattr(owner, attr, None) if owner is not None else None
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return None


def encoder_name(model: Any) -> str | None:
    """SMP's encoder (`segformer-mit_b0` -> `mit_b0`); Transformers' backbone type where its config names one."""
    name = getattr(model, "name", None)
    if isinstance(name, str) and "-" in name and getattr(model, "encoder", None) is not None:
        return name.split("-", 1)[1]
    config = getattr(model, "config", None)
    backbone = getattr(config, "backbone", None) if config is not None else None
    return backbone if isinstance(backbone, str) and backbone else None
