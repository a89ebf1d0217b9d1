from __future__ import annotations

import pytest
import torch

from benchbench.errors import BenchbenchError
from benchbench.workload.models import (
    DECODER_KNOBS,
    build_model,
    decoder_kwargs,
    preflight,
    smp_archs,
)


def params(**kw):
    base = {"arch": "Unet", "encoder": "resnet18", "decoder_channels": None, "resolution": [64, 64],
            "batch_size": 2, "classes": 3, "in_channels": 3}
    base.update(kw)
    return base


def meta_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", [a for a in DECODER_KNOBS if DECODER_KNOBS[a] is not None])
def test_decoder_channels_reach_each_architecture(arch: str) -> None:
    if arch not in smp_archs():
        pytest.skip(f"{arch} not in installed SMP")
    encoder = "tu-vit_tiny_patch16_224" if arch == "DPT" else "resnet18"
    with torch.device("meta"):
        small = build_model(params(arch=arch, encoder=encoder, decoder_channels=64))
        large = build_model(params(arch=arch, encoder=encoder, decoder_channels=128))
    assert meta_params(large) > meta_params(small)


def test_decoder_mapping_values() -> None:
    assert decoder_kwargs("Unet", 128) == {"decoder_channels": (128, 64, 32, 16, 8)}
    assert decoder_kwargs("Segformer", 512) == {"decoder_segmentation_channels": 512}
    assert decoder_kwargs("FPN", 256) == {"decoder_pyramid_channels": 256, "decoder_segmentation_channels": 128}
    assert decoder_kwargs("PSPNet", 64) == {"psp_out_channels": 64}
    assert decoder_kwargs("Unet", None) == {}
    with torch.device("meta"):
        seg = build_model(params(arch="Segformer", encoder="resnet18", decoder_channels=48))
    fuse = [m for m in seg.decoder.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    assert fuse.out_channels == 48


def test_linknet_has_no_decoder_knob() -> None:
    with pytest.raises(BenchbenchError, match="Linknet has no decoder-width"):
        decoder_kwargs("Linknet", 64)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"arch": "Segformr"}, "did you mean 'Segformer'"),
        ({"encoder": "resnet19"}, "did you mean"),
        ({"encoder": "tu-mobilevit_xxz"}, "tu-mobilevit_xxs"),
        ({"arch": "DeepLabV3Plus", "batch_size": 1}, "batch_size >= 2"),
        ({"arch": "Segformer", "resolution": [48, 48]}, "multiple of"),
        ({"arch": "Linknet", "decoder_channels": 64}, "no decoder-width"),
    ],
)
def test_preflight_rejects(kw: dict, message: str) -> None:
    with pytest.raises(BenchbenchError, match=message):
        preflight(params(**kw))


def test_a_missing_factory_module_is_refused_from_a_child_process() -> None:
    from benchbench.runner import preflight as run_preflight
    from benchbench.suite import Cell, CellParams

    p = params(arch="nosuchmodule:build")
    with pytest.raises(BenchbenchError, match="cannot import"):
        run_preflight([Cell("x", "x", CellParams(arch="nosuchmodule:build", device="cpu").model_dump(mode="json"))])
    preflight(p)  # the model-level preflight never imports user code in this process


def test_preflight_accepts_and_is_case_insensitive() -> None:
    preflight(params(arch="segformer", encoder="mit_b0"))
    preflight(params(arch="Unet", resolution=[40, 56]))
