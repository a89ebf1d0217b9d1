"""Trainers nobody here wrote, attached unmodified: nnU-Net's shape (batches from its own augmenter, a decoder
that keeps a second reference to the encoder, the trainer installed as a package behind a console script) and a
Transformers `Trainer` training SegFormer. The record holds what was observed — the batch the model received,
the learning rate of the optimizer's param groups, the classes the model states — or nothing; each module's time
is filed once, under the name its parent calls it by; the line is the framework's frame that did the work."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from torch import nn

from benchbench.measure.profile import modules_of_interest
from benchbench.record import Record

SCRIPTS = Path(__file__).parent / "scripts"


def _attach(cli, tmp_path: Path, *command: str, opts: tuple[str, ...] = ()) -> tuple[int, str, Record | None]:
    js = tmp_path / "rec.json"
    code, out, err = cli("attach", "--results-dir", tmp_path / "res", "-o", tmp_path / "rep", "--json", js,
                         "--timeout", "240", *opts, "--", *command)
    return code, out + err, Record.of(json.loads(js.read_text())) if js.exists() else None


def _line(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


class Shared(nn.Module):
    """A decoder that holds the encoder as nnU-Net's `UNetDecoder` does (`self.encoder = encoder`)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Conv2d(3, 8, 3, padding=1)
        self.decoder = nn.Module()
        self.decoder.encoder = self.encoder
        self.decoder.head = nn.Conv2d(8, 2, 1)


def test_an_aliased_submodule_is_timed_once_under_the_name_its_parent_calls_it_by() -> None:
    mods = modules_of_interest(Shared())
    assert "encoder" in mods and "decoder.encoder" not in mods and "decoder.head" in mods
    assert len({id(m) for m in mods.values()}) == len(mods)


def test_a_transformers_decoder_is_the_decoder() -> None:
    from benchbench.workload import anatomy

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear_projections = nn.ModuleList(nn.Linear(4, 8) for _ in range(4))
            self.linear_fuse = nn.Conv2d(32, 8, 1)

    class Config:
        num_labels, decoder_hidden_size = 6, 8

    class HF(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = Config()
            self.segformer = nn.Linear(2, 2)
            self.decode_head = Head()

    m = HF()
    mods = modules_of_interest(m)
    assert {"decode_head.linear_fuse", "decode_head.linear_projections.3"} <= set(mods)
    assert anatomy.decoder_width(m) == 8 and anatomy.output_classes(m) == 6 and anatomy.branches(mods) == 4
    assert anatomy.output_classes(nn.Linear(2, 2)) is None and anatomy.decoder_width(nn.Linear(2, 2)) is None


@pytest.fixture
def nnunet_install(tmp_path: Path) -> tuple[Path, Path]:
    """The nnU-Net-shaped trainer installed as a package, launched by a console script as `nnUNetv2_train` is."""
    site = tmp_path / "env" / "lib" / "site-packages"
    pkg = site / "nnunet_style"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    shutil.copy(SCRIPTS / "train_nnunet_style.py", pkg / "trainer.py")
    launcher = tmp_path / "env" / "bin" / "nnunet_style_train"
    launcher.parent.mkdir()
    launcher.write_text("#!/usr/bin/env python\nimport sys\nfrom nnunet_style.trainer import main\n"
                        "if __name__ == '__main__':\n    sys.exit(main())\n")
    return site, launcher


def test_nnunet_batches_from_no_dataloader_an_aliased_encoder_and_the_trainers_line(cli, tmp_path: Path,
                                                                                       nnunet_install, monkeypatch):
    site, launcher = nnunet_install
    monkeypatch.setenv("PYTHONPATH", str(site))
    code, out, rec = _attach(cli, tmp_path, sys.executable, str(launcher), "--patch", "32",
                             opts=("--steps", "6", "--warmup", "3"))
    assert code == 0, out
    p = rec.params
    # the plans' batch 2, from what the model received (no DataLoader); SGD's lr 0.01; the decoder's 3 classes
    assert p["batch_size"] == 2 and rec.images_per_step == 2
    assert p["optimizer"] == "sgd" and p["lr"] == pytest.approx(0.01) and p["classes"] == 3
    assert p["resolution"] == [32, 32] and p["in_channels"] == 1
    # nothing the script never had: no loader settings, no encoder name, no seed
    assert not {"num_workers", "persistent_workers", "pin_memory", "encoder", "seed", "decoder_channels"} & set(p)
    mods = rec.breakdown.modules
    assert "decoder.encoder" not in mods and mods["encoder"].total > 0
    assert mods["encoder"].backward > 0  # the encoder's backward is the encoder's, not the decoder's
    trainer = SCRIPTS / "train_nnunet_style.py"
    lines = rec.attached.lines
    assert lines["optimizer_step"] == (f"nnunet_style/trainer.py:{_line(trainer, 'self.optimizer.step()')} in "
                                       "train_step (nnunet_style)")
    assert lines["model_forward"].startswith(f"nnunet_style/trainer.py:{_line(trainer, 'self.network(data)')} ")
    assert "nnunet_style_train" not in json.dumps(lines)  # never the console script's launcher


@pytest.mark.slow
def test_a_transformers_trainer_segformer_gets_its_own_facts_and_the_decoder_width_story(cli, tmp_path: Path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from conftest import make_camvid

    data = make_camvid(tmp_path / "camvid", n=8, size=(64, 64), classes=6)
    code, out, rec = _attach(cli, tmp_path, sys.executable, str(SCRIPTS / "train_hf_segformer.py"), "--data",
                             str(data), "--size", "64", "--decoder-hidden-size", "512", "--out", str(tmp_path / "o"),
                             opts=("--steps", "6", "--warmup", "3"))
    assert code == 0, out
    p = rec.params
    assert p["arch"] == "SegformerForSemanticSegmentation" and p["batch_size"] == 4
    assert p["lr"] == pytest.approx(6e-5) and p["classes"] == 6 and p["decoder_channels"] == 512
    assert p["num_workers"] == 0 and "seed" not in p
    assert rec.attached.lines["optimizer_step"].startswith("transformers/trainer.py:")
    assert "(transformers), from " in rec.attached.lines["optimizer_step"]
    train_line = _line(SCRIPTS / "train_hf_segformer.py", ".train()")
    assert rec.attached.lines["optimizer_step"].endswith(f"train_hf_segformer.py:{train_line}")
    mods = rec.breakdown.modules
    assert "decode_head.linear_fuse" in mods and mods["decode_head"].total > 0
    report = next((tmp_path / "rep").rglob("*.md")).read_text()
    head = report.split("## Headline", 1)[1].split("\n## ", 1)[0]
    assert "**decoder width** (up to " in head and "4x512 concatenated channels" in head, head
    assert "reduce config.decoder\\_hidden\\_size (512 -\\> 256: at most" in head
    assert "0.001" not in report.split("## Cells", 1)[1].split("## Per cell", 1)[0]  # no default anywhere


def test_a_record_of_an_attached_script_never_shows_a_default(tmp_path: Path) -> None:
    """`_params` from a result that saw no optimizer, no loader and no image: none of a suite cell's settings."""
    from benchbench.runner.attach.command import Script
    from benchbench.runner.attach.launch import AttachOptions
    from benchbench.runner.attach.record import _params

    script = Script(command=["python", "t.py"], program="python", script=None, name="t.py")
    p = _params({"model": {"class": "Net"}, "images_per_step": 3}, AttachOptions(), script)
    assert p["batch_size"] == 3 and p["arch"] == "Net"
    assert not {"lr", "classes", "optimizer", "resolution", "encoder", "num_workers", "in_channels"} & set(p)
