"""What makes each architecture's parts expensive: knowledge that belongs beside the model registry.

Findings cite it after measuring which module dominates; adding an architecture's
explanation is an edit here, not in the rules.
"""

from __future__ import annotations

from typing import Any

from benchbench.workload.anatomy import branches, is_decoder


def why_module(p: dict[str, Any], module: str, flops_by_module: dict[str, float] | None = None,
               module_names: Any = ()) -> str:
    """Architecture knowledge: what makes this module of a cell with settings `p` expensive (an attached model's
    settings are those observed: a width or a size not seen is not stated)."""
    arch = str(p.get("arch", "")).lower()
    h, w = p.get("resolution") or (None, None)
    if not is_decoder(module) or h is None:
        return ""
    if arch.startswith("segformer"):
        # a suite's SMP SegFormer built without decoder_channels has SMP's 256; an attached model's width is
        # what it was seen to be, or not stated
        attached = (p.get("data") or {}).get("kind") == "attached"
        c = p.get("decoder_channels") or (None if attached else 256)
        if c is None:
            return (f"; its fuse conv runs at 1/4 input resolution ({h // 4}x{w // 4}) on the concatenated decoder "
                    "channels, so its cost grows with the square of the decoder's width")
        stages = segformer_stages(p, flops_by_module, module_names)
        extra = ""
        if stages == 5:
            extra = (" With this encoder SMP also builds a fifth branch at 1/2 resolution and downsamples it, "
                     "a cost the original SegFormer never had.")
        knob = "decoder_channels" if module == "decoder" else "config.decoder_hidden_size"
        return (f"; its fuse conv runs at 1/4 input resolution ({h // 4}x{w // 4}) on {stages}x{c} concatenated "
                f"channels, so its cost grows with the square of {knob}.{extra}")
    if arch in ("unet", "unetplusplus", "manet"):
        return f"; its last blocks run 3x3 convolutions at 1/2 and full resolution ({h}x{w})"
    if arch == "fpn":
        return "; its segmentation blocks run at 1/4 resolution on every pyramid level"
    return ""


def segformer_stages(p: dict[str, Any], flops_by_module: dict[str, float] | None = None,
                     module_names: Any = ()) -> int:
    """SegFormer's decoder branches: counted in the FLOPs' or the breakdown's modules, else from the encoder."""
    n = branches(flops_by_module or {}) or branches(module_names)
    if n:
        return n
    return 4 if str(p.get("encoder", "")).startswith("mit_") or p.get("encoder") is None else 5
