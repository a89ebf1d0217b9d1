from __future__ import annotations

import pytest
import torch
from torch import nn

from benchbench.measure.flops import count_flops, flopcounter_train_step, fvcore_forward


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.decoder = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)  # depthwise
        self.segmentation_head = nn.Conv2d(8, 4, 1, bias=False)

    def forward(self, x):
        return self.segmentation_head(self.decoder(self.encoder(x)))


def test_conv_and_linear_macs_match_hand_counts() -> None:
    x = torch.randn(2, 3, 16, 16)
    res = fvcore_forward(Net().eval(), x)
    enc = 16 * 16 * 8 * 3 * 3 * 3  # H*W*Cout*Cin*k*k
    dec = 16 * 16 * 8 * 1 * 3 * 3  # depthwise: Cin/groups = 1
    head = 16 * 16 * 4 * 8
    assert res["by_module"] == {"encoder": enc, "decoder": dec, "segmentation_head": head}
    assert res["forward_per_image"] == enc + dec + head

    lin = nn.Linear(32, 10)
    fl = flopcounter_train_step(lin, torch.randn(4, 32), torch.randint(0, 10, (4,)), nn.CrossEntropyLoss())
    assert fl["forward_per_image_flopcounter"] == 32 * 10
    # backward: grad of input is not needed (leaf input without grad): weight grad only
    assert fl["train_step_per_image"] == 32 * 10 * 2


def test_depthwise_backward_is_not_overcounted() -> None:
    # torch's FlopCounterMode loses `groups` in convolution_backward; ours must not.
    fl = flopcounter_train_step(Net(), torch.randn(2, 3, 16, 16), torch.randint(0, 4, (2, 16, 16)),
                                nn.CrossEntropyLoss())
    enc, dec, head = 16 * 16 * 8 * 27, 16 * 16 * 8 * 9, 16 * 16 * 32
    # forward + grad_weight everywhere + grad_input everywhere but the first conv
    assert fl["train_step_per_image"] == (enc + dec + head) + (enc + dec + head) + (dec + head)


@pytest.mark.parametrize(("encoder", "channels", "paper_gmac"), [("mit_b0", 256, 8.4)])
def test_segformer_matches_the_paper(encoder: str, channels: int, paper_gmac: float) -> None:
    import segmentation_models_pytorch as smp

    model = smp.Segformer(encoder, encoder_weights=None, classes=150, decoder_segmentation_channels=channels)
    res = count_flops(model, {"resolution": [512, 512], "classes": 150}, nn.CrossEntropyLoss(), torch.device("cpu"))
    assert res["forward_per_image_flopcounter"] / 1e9 == pytest.approx(paper_gmac, rel=0.01)
    assert res["forward_per_image"] / 1e9 == pytest.approx(paper_gmac, rel=0.04)  # fvcore also counts upsampling
    assert 2.8 < res["train_step_per_image"] / res["forward_per_image_flopcounter"] < 3.05
    assert res["by_module"]["decoder.fuse_stage"] > 0.8 * res["by_module"]["decoder"]
    assert "aten::gelu" in res["unsupported_ops"]
    assert "once" in res["convention"]
