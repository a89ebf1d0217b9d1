"""What is trained: SMP architectures, their decoder-width knobs, custom factories.

`decoder_channels` is one user-facing axis, but every SMP architecture spells
its decoder width differently; the mapping lives here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchbench.errors import BenchbenchError, did_you_mean

UNET_LIKE_DEFAULT = (256, 128, 64, 32, 16)


def _unet_like(c: int) -> dict[str, Any]:
    # Scale SMP's default 5-tuple so that its first entry equals c; keep >= 1.
    scale = c / UNET_LIKE_DEFAULT[0]
    return {"decoder_channels": tuple(max(1, round(x * scale)) for x in UNET_LIKE_DEFAULT)}


def _fpn(c: int) -> dict[str, Any]:
    # SMP's defaults are pyramid 256 / segmentation 128: keep that 2:1 ratio.
    return {"decoder_pyramid_channels": c, "decoder_segmentation_channels": max(1, c // 2)}


# arch name -> function(decoder_channels) -> SMP keyword arguments; None: no knob.
DECODER_KNOBS: dict[str, Callable[[int], dict[str, Any]] | None] = {
    "Unet": _unet_like,
    "UnetPlusPlus": _unet_like,
    "MAnet": _unet_like,
    "Linknet": None,
    "FPN": _fpn,
    "PSPNet": lambda c: {"psp_out_channels": c},
    "DeepLabV3": lambda c: {"decoder_channels": c},
    "DeepLabV3Plus": lambda c: {"decoder_channels": c},
    "PAN": lambda c: {"decoder_channels": c},
    "UPerNet": lambda c: {"decoder_channels": c},
    "Segformer": lambda c: {"decoder_segmentation_channels": c},
    "DPT": lambda c: {"decoder_fusion_channels": c},
}


def is_custom(arch: str) -> bool:
    return ":" in arch


def smp_archs() -> dict[str, type]:
    """Architectures present in the installed SMP, by their class name."""
    import segmentation_models_pytorch as smp

    return {name: getattr(smp, name) for name in DECODER_KNOBS if hasattr(smp, name)}


def canonical_arch(arch: str) -> str:
    archs = smp_archs()
    for name in archs:
        if name.lower() == arch.lower():
            return name
    raise BenchbenchError(
        f"unknown architecture {arch!r}{did_you_mean(arch, archs)}. "
        f"Installed SMP has: {', '.join(archs)}; or give a custom factory as 'module:function'."
    )


def check_encoder(encoder: str) -> None:
    import segmentation_models_pytorch as smp

    if encoder.startswith("tu-"):
        import timm

        name = encoder[3:]
        if not timm.is_model(name):
            choices = ["tu-" + n for n in timm.list_models()]
            raise BenchbenchError(f"unknown timm encoder {encoder!r}{did_you_mean(encoder, choices)}")
        return
    names = smp.encoders.get_encoder_names()
    if encoder not in names:
        raise BenchbenchError(
            f"unknown encoder {encoder!r}{did_you_mean(encoder, names)}. "
            "Use an SMP encoder name (see smp.encoders.get_encoder_names()) or a timm encoder as 'tu-<name>'."
        )


def decoder_kwargs(arch: str, decoder_channels: int | None) -> dict[str, Any]:
    if decoder_channels is None:
        return {}
    knob = DECODER_KNOBS.get(arch)
    if knob is None:
        raise BenchbenchError(
            f"{arch} has no decoder-width argument, so the decoder_channels axis cannot be set for it; "
            f"remove decoder_channels for {arch} cells (e.g. with an exclude: entry)."
        )
    return knob(decoder_channels)


def load_factory(spec: str) -> Callable[..., nn.Module]:
    """Import a model factory `module:function` (`workload.factories`)."""
    from benchbench.workload.factories import load

    return load(spec, "model factory")


def build_model(params: dict[str, Any]) -> nn.Module:
    """Build the cell's model with random init (nothing is ever downloaded)."""
    arch = params["arch"]
    if is_custom(arch):
        model = load_factory(arch)(**params)
        if not isinstance(model, nn.Module):
            raise BenchbenchError(f"factory {arch!r} returned {type(model).__name__}, not a torch.nn.Module")
        return model
    name = canonical_arch(arch)
    cls = smp_archs()[name]
    return cls(
        encoder_name=params["encoder"],
        encoder_weights=None,
        in_channels=params.get("in_channels", 3),
        classes=params["classes"],
        **decoder_kwargs(name, params.get("decoder_channels")),
    )


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_forward(params: dict[str, Any]) -> None:
    h, w = params["resolution"]
    try:
        with torch.device("meta"):
            model = build_model(params)
    except Exception:
        model = build_model(params).to("meta")
    model.train()
    model(torch.empty(params["batch_size"], params.get("in_channels", 3), h, w, device="meta"))


def _works(params: dict[str, Any]) -> bool:
    try:
        _meta_forward(params)
        return True
    except Exception:
        return False


def check_names(params: dict[str, Any]) -> None:
    """What `list` can say without building anything: the architecture, the encoder and the decoder width
    setting exist (run checks the same, and more, in `preflight`)."""
    arch = params["arch"]
    if is_custom(arch):
        return
    name = canonical_arch(arch)
    check_encoder(params["encoder"])
    decoder_kwargs(name, params.get("decoder_channels"))


def preflight(params: dict[str, Any]) -> None:
    """Fail before the first cell for what can be known without running it.

    A model is built on the meta device (no memory, no compute) and run forward
    once in train mode at the cell's shape: this catches unknown encoders,
    resolutions the architecture cannot take and batch sizes BatchNorm refuses
    (DeepLabV3+ at batch 1) in a fraction of a second per cell.
    """
    arch = params["arch"]
    if is_custom(arch):
        return  # imported in a child of its own (runner.isolation.check_factories): its code is the user's
    name = canonical_arch(arch)
    check_encoder(params["encoder"])
    decoder_kwargs(name, params.get("decoder_channels"))
    h, w = params["resolution"]
    try:
        _meta_forward(params)
    except BenchbenchError:
        raise
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ""
        if "num_groups" in msg and params.get("decoder_channels"):
            # The decoder's GroupNorm, not the input: name the setting and the values that work.
            works = [
                c
                for c in (16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
                if _works({**params, "decoder_channels": c})
            ]
            raise BenchbenchError(
                f"{name}/{params['encoder']}: decoder_channels={params['decoder_channels']} does not work: its "
                f"decoder's GroupNorm cannot split the channels ({msg}). decoder_channels values that work for "
                f"{name}: {', '.join(map(str, works)) or 'none of 16..1024'}."
            ) from None
        if "per channel" in msg:
            hint = " BatchNorm after global pooling needs batch_size >= 2 in training."
        elif "divisible" in msg.lower() and ("height" in msg.lower() or "shape" in msg.lower()):
            hint = " Choose a resolution that is a multiple of the encoder's output stride."
        raise BenchbenchError(
            f"{name}/{params['encoder']} cannot train at batch_size={params['batch_size']} "
            f"resolution={h}x{w}: {msg}.{hint}"
        ) from None
