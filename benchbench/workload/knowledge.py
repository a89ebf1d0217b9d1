"""What makes each architecture's parts expensive: knowledge that belongs beside the model registry.

Findings cite it after measuring which module dominates; adding an architecture's
explanation is an edit here, not in the rules.
"""

from __future__ import annotations

from typing import Any


def why_module(p: dict[str, Any], module: str, flops_by_module: dict[str, float] | None = None) -> str:
    """Architecture knowledge: what makes this module of a cell with settings `p` expensive."""
    arch = str(p["arch"]).lower()
    h, w = p["resolution"]
    if module != "decoder":
        return ""
    if arch == "segformer":
        c = p.get("decoder_channels") or 256
        stages = segformer_stages(p, flops_by_module)
        extra = ""
        if stages == 5:
            extra = (" With this encoder SMP also builds a fifth branch at 1/2 resolution and downsamples it, "
                     "a cost the original SegFormer never had.")
        return (f"; its fuse conv runs at 1/4 input resolution ({h // 4}x{w // 4}) on {stages}x{c} concatenated "
                f"channels, so its cost grows with the square of decoder_channels.{extra}")
    if arch in ("unet", "unetplusplus", "manet"):
        return f"; its last blocks run 3x3 convolutions at 1/2 and full resolution ({h}x{w})"
    if arch == "fpn":
        return "; its segmentation blocks run at 1/4 resolution on every pyramid level"
    return ""


def segformer_stages(p: dict[str, Any], flops_by_module: dict[str, float] | None = None) -> int:
    n = len([k for k in flops_by_module or {} if k.startswith("decoder.mlp_stage.")])
    if n:
        return n
    return 4 if str(p.get("encoder", "")).startswith("mit_") else 5
