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


def test_fp32_cells_are_judged_against_the_math_mode_their_work_ran_in() -> None:
    """cuDNN convolutions run in TF32 by default, matmuls not: an fp32 peak without TF32 is 4-8x too low on a
    GPU for convolution-heavy cells, and the low-utilisation finding fired for bf16 cells but not fp32 ones."""
    from benchbench.measure.calibrate import modes
    from benchbench.measure.flops import effective_peak, math_modes

    assert modes("cuda", ["fp32", "bf16"]) == ["fp32", "bf16", "tf32"] and modes("cpu", ["fp32"]) == ["fp32"]
    gpu = math_modes("none", torch.device("cuda"))
    assert gpu == {"convolution": "tf32" if torch.backends.cudnn.allow_tf32 else "fp32",
                   "matmul": "tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"}
    assert math_modes("bf16", torch.device("cuda")) == {"convolution": "bf16", "matmul": "bf16"}
    assert math_modes("none", torch.device("cpu")) == {"convolution": "fp32", "matmul": "fp32"}
    peaks = {"tf32": {"flops_per_s": 400e12}, "fp32": {"flops_per_s": 50e12}}
    mix = {"convolution": 75.0, "matmul": 25.0}
    eff = effective_peak(mix, {"convolution": "tf32", "matmul": "fp32"}, peaks)
    assert eff == pytest.approx(100 / (75 / 400e12 + 25 / 50e12))
    assert 50e12 < eff < 400e12
    assert effective_peak(mix, {"convolution": "bf16", "matmul": "bf16"}, peaks) is None  # not measured: no ratio


def test_the_flop_pass_splits_convolution_and_matmul_work() -> None:
    import segmentation_models_pytorch as smp

    from benchbench.workload.step import make_loss

    m = smp.Segformer("mit_b0", encoder_weights=None, classes=3)
    f = count_flops(m, {"resolution": [64, 64], "classes": 3}, make_loss("cross-entropy"), torch.device("cpu"))
    kinds = f["train_step_by_kind_per_image"]
    assert kinds["convolution"] > 0 and kinds["matmul"] > 0  # SegFormer: convs and attention/MLP matmuls
    assert sum(kinds.values()) == pytest.approx(f["train_step_per_image"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tf32_peak_is_measured_apart_on_a_gpu() -> None:
    from benchbench.measure.calibrate import calibrate

    peaks = calibrate("cuda", ["fp32"])
    assert peaks["tf32"]["flops_per_s"] > 2 * peaks["fp32"]["flops_per_s"]
    assert peaks["fp32"]["clock"] == "cuda-events" and peaks["fp32"]["spread"] < 0.2
