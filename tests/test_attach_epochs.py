"""`attach --epochs N`: the whole epoch of users' own training, unmodified — a plain loop, Lightning, Ultralytics,
a Transformers `Trainer` — accounted part by part, against the scripts' own clocks.

Each script prints its own timers (`epoch 3 ... val 0.41 ... save 0.12`); benchbench's accounted epochs are the
script's last ones (the script is stopped where the next epoch begins), so each part is checked against the
same epoch's own figure."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from benchbench.record import Record
from benchbench.record.epochs import PART_NAMES, Epochs
from benchbench.runner.attach.epochs import EpochLedger

SCRIPTS = Path(__file__).parent / "scripts"


@pytest.fixture(scope="module")
def camvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import make_camvid

    return make_camvid(tmp_path_factory.mktemp("epochs") / "camvid", n=8)


def attach(cli, tmp_path: Path, *command: str, opts: tuple[str, ...] = ()) -> tuple[int, str, str, Record | None]:
    js = tmp_path / "rec.json"
    code, out, err = cli("attach", "--results-dir", tmp_path / "res", "-o", tmp_path / "rep", "--json", js,
                         "--timeout", "300", "--steps", "3", "--warmup", "2", *opts, "--", *command)
    rec = Record.of(json.loads(js.read_text())) if js.exists() else None
    return code, out, err, rec


def own_clocks(log: Path) -> dict[int, dict[str, float]]:
    """The script's own per-epoch timers: {epoch: {"val": s, "save": s, ...}} from the lines it logged."""
    got: dict[int, dict[str, float]] = {}
    for line in log.read_text().splitlines():
        m = re.match(r"epoch (\d+) (.*)", line.strip())
        if m:
            vals = dict(re.findall(r"(\w+) (\d+\.\d+)", m.group(2)))
            mine = got.setdefault(int(m.group(1)), {})
            for k, v in vals.items():  # two checkpoints in an epoch (a save after each validation): summed
                mine[k] = mine.get(k, 0.0) + float(v)
    return got


def close(ours: float, theirs: float, rel: float = 0.25, floor: float = 0.03) -> bool:
    return abs(ours - theirs) <= rel * theirs + floor


def check_adds_up(ep: Epochs) -> None:
    for e in ep.whole:
        assert set(e.parts) == set(PART_NAMES)
        assert abs(e.wall_s - sum(e.parts.values())) < 0.05 * e.wall_s, (e.wall_s, e.parts)
    assert abs(ep.unaccounted_s) < 0.05 * ep.mean_wall_s()


def test_a_plain_loop_with_a_python_metric_and_torch_save(cli, tmp_path: Path, camvid: Path) -> None:
    """Validation (a per-pixel IoU in Python) and torch.save every epoch: the parts add up to the epoch, match the
    script's own clocks for the same epochs, the metric is named by function and line, and the headline ranks
    validation by hours over the run."""
    code, out, err, rec = attach(cli, tmp_path, sys.executable, str(SCRIPTS / "train_epochs.py"), "--data",
                                 str(camvid), "--epochs", "8", "--metric-repeats", "40", "--out",
                                 str(tmp_path / "ck"), "--log", str(tmp_path / "log"),
                                 opts=("--epochs", "2", "--run-epochs", "50"))
    assert code == 0, err
    ep = rec.epochs
    assert ep is not None and ep.version == 1 and len(ep.whole) == 2
    assert rec.attached.ended == "stopped by benchbench after 2 epoch(s) accounted"
    check_adds_up(ep)
    clocks = own_clocks(tmp_path / "log")
    theirs = [clocks[k] for k in sorted(clocks)[-2:]]  # the script's last two epochs are the accounted ones
    for e, t in zip(ep.whole, theirs, strict=True):
        assert close(e.wall_s, t["time"], 0.15), (e.wall_s, t)
        val = e.parts["validation_data_wait"] + e.parts["validation_compute"]
        assert close(val, t["val"]), (val, t)
        assert close(e.parts["checkpoint"], t["save"]), (e.parts["checkpoint"], t)
        assert e.train_steps == 4 and e.validation_batches == 4 and e.validation_images == 8
        (w,) = e.writes
        assert w.writer == "torch.save" and w.bytes == (tmp_path / "ck" / "last.pt").stat().st_size
        assert w.filesystem and w.where and "train_epochs.py" in w.where
    metric = [c for c in ep.code if c.part == "validation_compute" and c.user and "in image_iou" in c.user]
    assert metric and metric[0].seconds > 0.3 * ep.part_s("validation_compute"), ep.code[:5]
    assert ep.run_epochs == 50 and ep.run_epochs_source == "--run-epochs"
    val = next(f for f in __import__("benchbench.analysis.findings", fromlist=["find_all"]).find_all([rec])
               if f.kind == "epoch_validation")
    assert "image_iou" in val.sentence and "h over the run's 50 epochs" in val.sentence
    assert "validate every 2 epochs" in val.suggestion
    assert "[validation, up to" in out
    md = next((tmp_path / "rep").rglob("*.md")).read_text()
    assert "## The whole epoch" in md and "image\\_iou" in md
    assert ep.sampler is not None and ep.sampler.samples > 50


def test_a_lightning_trainer_with_val_check_interval_and_a_checkpoint_callback(cli, tmp_path: Path,
                                                                               camvid: Path) -> None:
    code, _, err, rec = attach(cli, tmp_path, sys.executable, str(SCRIPTS / "train_lightning.py"), "--data",
                                 str(camvid), "--workers", "0", "--val-check-interval", "0.5", "--checkpoint-dir",
                                 str(tmp_path / "ck"), "--log", str(tmp_path / "log"), opts=("--epochs", "1"))
    assert code == 0, err
    ep = rec.epochs
    (e,) = ep.whole
    check_adds_up(ep)
    assert e.validation_batches == 8  # twice an epoch (val_check_interval=0.5), 4 batches each
    t = own_clocks(tmp_path / "log")[max(own_clocks(tmp_path / "log"))]
    assert close(e.parts["validation_data_wait"] + e.parts["validation_compute"], t["val"]), (e.parts, t)
    assert close(e.parts["checkpoint"], t["save"]), (e.parts, t)
    assert [w.writer for w in e.writes] == ["Trainer.save_checkpoint (pytorch_lightning)"] * 2  # after each validation
    assert e.writes[0].bytes == Path(e.writes[0].path).stat().st_size
    assert ep.run_epochs == 20 and "max_epochs" in ep.run_epochs_source


@pytest.mark.slow
def test_ultralytics_segmentation_with_validation_on(cli, tmp_path: Path, monkeypatch) -> None:
    if shutil.which("yolo") is None:
        pytest.skip("Ultralytics is not installed")
    import numpy as np
    from PIL import Image

    root = tmp_path / "yolo"
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("val", 8)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(root / "images" / split /
                                                                                  f"{i:03d}.jpg")
            x, y = rng.uniform(0.2, 0.6, 2)
            poly = [x, y, x + 0.3, y, x + 0.3, y + 0.3, x, y + 0.3]
            (root / "labels" / split / f"{i:03d}.txt").write_text("0 " + " ".join(f"{v:.4f}" for v in poly) + "\n")
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: road\n")
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ycfg"))
    monkeypatch.chdir(root)
    code, _, err, rec = attach(cli, tmp_path, sys.executable, str(SCRIPTS / "train_yolo_epochs.py"), "--data",
                                 "data.yaml", "--epochs", "10", "--project", str(tmp_path / "runs"),
                                 "--log", str(tmp_path / "log"), opts=("--epochs", "1"))
    assert code == 0, err
    ep = rec.epochs
    (e,) = ep.whole
    check_adds_up(ep)
    t = own_clocks(tmp_path / "log")[max(own_clocks(tmp_path / "log"))]
    assert e.validation_batches >= 1 and e.validation_images == 8
    assert close(e.parts["validation_data_wait"] + e.parts["validation_compute"], t["val"]), (e.parts, t)
    assert close(e.parts["checkpoint"], t["save"]), (e.parts, t)
    assert e.writes[0].writer == "BaseTrainer.save_model (ultralytics)" and e.writes[0].path.endswith("last.pt")
    assert ep.run_epochs == 10 and "ultralytics" in ep.run_epochs_source


def test_a_transformers_trainer_evaluating_every_epoch(cli, tmp_path: Path, camvid: Path) -> None:
    code, _, err, rec = attach(cli, tmp_path, sys.executable, str(SCRIPTS / "train_hf_segformer.py"), "--data",
                                 str(camvid), "--eval", "--epochs", "30", "--batch-size", "2", "--out",
                                 str(tmp_path / "hf"), "--log", str(tmp_path / "log"), opts=("--epochs", "1"))
    assert code == 0, err
    ep = rec.epochs
    (e,) = ep.whole
    check_adds_up(ep)
    t = own_clocks(tmp_path / "log")[max(own_clocks(tmp_path / "log"))]
    assert e.validation_batches == 4
    assert close(e.parts["validation_data_wait"] + e.parts["validation_compute"], t["val"]), (e.parts, t)
    assert close(e.parts["checkpoint"], t["save"]), (e.parts, t)
    (w,) = e.writes
    assert w.writer == "Trainer._save_checkpoint (transformers)" and w.bytes and w.path.endswith(".safetensors")
    assert ep.run_epochs == 30 and "num_train_epochs" in ep.run_epochs_source


def test_a_script_without_dataloader_epochs_says_so(cli, tmp_path: Path) -> None:
    script = tmp_path / "slices.py"
    script.write_text("import torch\nm = torch.nn.Conv2d(3, 4, 3)\nopt = torch.optim.SGD(m.parameters(), 0.1)\n"
                      "x = torch.randn(64, 3, 16, 16)\nfor i in range(5000):\n    b = x[i % 8 * 8:(i % 8 + 1) * 8]\n"
                      "    opt.zero_grad(); m(b).mean().backward(); opt.step()\n")
    code, _, err, rec = attach(cli, tmp_path, sys.executable, str(script), opts=("--epochs", "1"))
    assert code == 0, err
    assert rec.epochs is None and "no DataLoader" in rec.explain_errors["epochs"] and "--seconds" in \
        rec.explain_errors["epochs"]
    code, _, err, rec = attach(cli, tmp_path, sys.executable, str(script), opts=("--seconds", "0.5"))
    assert code == 0, err
    (e,) = rec.epochs.whole
    assert e.wall_s >= 0.5 and e.train_steps > 0 and "--seconds" in e.ended_by
    check_adds_up(rec.epochs)


@pytest.mark.parametrize("opts,message", [(("--epochs", "0"), "--epochs must be at least 1"),
                                          (("--seconds", "-1"), "--seconds must be positive"),
                                          (("--epochs", "1", "--seconds", "3"), "give one"),
                                          (("--epochs", "1", "--keep-running"), "give one"),
                                          (("--run-epochs", "0"), "--run-epochs must be at least 1")])
def test_bad_epoch_options_are_a_message_and_exit_2(cli, tmp_path: Path, opts, message) -> None:
    code, _, err, _ = attach(cli, tmp_path, sys.executable, "-c", "pass", opts=opts)
    assert code == 2 and message in err and "Traceback" not in err


def test_the_ledger_partitions_an_epoch() -> None:
    """Events in, parts out: every interval in one part, the gaps in the mode's part, nested figures apart."""
    led = EpochLedger()
    led.begin_epoch(0.0)
    led.interval("epoch_start", 0.0, 0.2, mode="train")  # iterator made
    led.interval("epoch_start", 0.2, 0.3, mode="train")  # the pass's first batch
    led.nested("train_forward", 0.2)
    led.step_end(1.0)  # training compute 0.3 -> 1.0
    led.interval("train_data_wait", 1.1, 1.15, mode="train")  # 1.0 -> 1.1 between steps
    led.step_end(2.0)
    led.interval("validation_data_wait", 2.5, 2.6, mode="validation")  # 2.0 -> 2.5 between steps
    led.write(3.0, 3.5, {"writer": "torch.save", "bytes": 10})  # 2.6 -> 3.0 validation code
    led.begin_epoch(4.0)  # 3.5 -> 4.0 still validation's (the mode it was in)
    (e,) = led.done
    assert e["wall_s"] == 4.0 and abs(sum(e["parts"].values()) - 4.0) < 1e-9
    assert e["parts"]["epoch_start"] == pytest.approx(0.3)
    assert e["parts"]["train_compute"] == pytest.approx(0.7 + 0.85)
    assert e["parts"]["between_steps"] == pytest.approx(0.1 + 0.5)
    assert e["parts"]["validation_compute"] == pytest.approx(0.4 + 0.5)
    assert e["parts"]["checkpoint"] == pytest.approx(0.5) and e["writes"][0]["s"] == pytest.approx(0.5)
    assert e["nested"] == {"train_forward": 0.2} and e["train_steps"] == 2


def test_an_epoch_account_of_an_unknown_version_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Epochs.model_validate({"version": 2, "epochs": []})


@pytest.mark.slow
def test_advise_on_the_epoch_measures_the_validation_loader_and_bounds_the_code(cli, tmp_path: Path,
                                                                                camvid: Path) -> None:
    """`advise --attach --epochs 1`: the validation loader's workers set from outside (on that loader alone) and
    judged A/B on the whole epoch; the epoch's code changes listed with bounds from the accounting and lines."""
    js = tmp_path / "advise.json"
    # --epochs 20 for the script: the A/B runs warm up as long as the base did (up to 30 steps where its steps
    # never settle), and each needs a whole epoch after that
    code, _, err = cli("advise", "--attach", "--epochs", "1", "--steps", "3", "--repeat-max", "2", "--min-runs", "2",
                       "--knobs", "val_num_workers", "--results-dir", tmp_path / "res", "-o", tmp_path / "rep",
                       "--json", js, "--", sys.executable, str(SCRIPTS / "train_epochs.py"), "--data", str(camvid),
                       "--epochs", "20", "--metric-repeats", "20", "--out", str(tmp_path / "ck"))
    assert code == 0, err
    doc = json.loads(js.read_text())
    assert doc["base"]["epoch_s"], doc  # the base accounted its epoch: the validation loader's knobs apply
    (m,) = doc["measured"]
    assert m["knob"] == "val_num_workers" and m["statistic"] == "epoch" and m["runs"] == 2
    assert m["verdict"] in ("faster", "slower", "unchanged", "noisy") and m["speedup"] > 0
    assert doc["base"]["epoch_s"] > 0
    recs = [Record.of(json.loads(line)) for line in next((tmp_path / "res").rglob("*.jsonl")).read_text().splitlines()]
    cands = [r for r in recs if r.attached.loader_overrides == {"val_num_workers": 1}]
    assert len(cands) == 2
    for r in cands:  # the validation loader alone got the workers
        assert r.epochs.validation_loader["num_workers"] == 1 and r.attached.loader["num_workers"] == 0
    changes = {c["knob"]: c for c in doc["code_changes"]}
    assert changes["validate_every"]["bound"] > 1 and "train_epochs.py:" in changes["checkpoint_every"]["where"]
    assert "image_iou" in changes["metric_on_device"]["where"]


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_epoch_adds_up_and_validation_waits_for_no_training_work(cli, tmp_path: Path,
                                                                               camvid: Path) -> None:
    """On a GPU the host clock runs ahead of the GPU: the syncs at an epoch's turn, validation's start and a
    checkpoint keep training's queued work in training. The script synchronises before its own validation clock,
    so the two agree."""
    code, _, err, rec = attach(cli, tmp_path, sys.executable, str(SCRIPTS / "train_epochs.py"), "--data",
                               str(camvid), "--epochs", "8", "--metric-repeats", "5", "--device", "cuda", "--out",
                               str(tmp_path / "ck"), "--log", str(tmp_path / "log"), opts=("--epochs", "2"))
    assert code == 0, err
    ep = rec.epochs
    check_adds_up(ep)
    clocks = own_clocks(tmp_path / "log")
    for e, k in zip(ep.whole, sorted(clocks)[-2:], strict=True):
        val = e.parts["validation_data_wait"] + e.parts["validation_compute"]
        assert close(val, clocks[k]["val"]), (e.parts, clocks[k])
        assert close(e.wall_s, clocks[k]["time"], 0.15), (e.wall_s, clocks[k])


def test_a_timeout_inside_the_epochs_keeps_the_whole_ones_and_shows_the_cut_one(cli, tmp_path: Path,
                                                                                 camvid: Path) -> None:
    """--timeout ends the script inside an epoch: the whole epochs are kept and accounted, the one it cut is in
    the record as cut short (never averaged in), and the run's timing stands."""
    js = tmp_path / "rec.json"
    code, _, err = cli("attach", "--results-dir", tmp_path / "res", "-o", tmp_path / "rep", "--json", js,
                       "--timeout", "20", "--steps", "3", "--warmup", "2", "--epochs", "50", "--",
                       sys.executable, str(SCRIPTS / "train_epochs.py"), "--data", str(camvid), "--epochs", "100",
                       "--out", str(tmp_path / "ck"))
    rec = Record.of(json.loads(js.read_text()))
    assert code == 0, err
    assert rec.ok and "(--timeout) with" in rec.attached.ended
    ep = rec.epochs
    assert len(ep.whole) >= 2 and not ep.epochs[-1].whole and ep.epochs[-1].ended_by == \
        "benchbench stopped the script"
    assert ep.mean_wall_s() == pytest.approx(sum(e.wall_s for e in ep.whole) / len(ep.whole))
    check_adds_up(ep)


def test_the_sampler_lands_in_pure_python_and_weighs_by_time() -> None:
    """A per-pixel metric in Python between tensor calls: the SIGPROF handler runs where the main thread is, so the
    metric is named, and its time share is the wall time it took (a sampling thread only ever got the GIL inside
    torch's calls)."""
    import time

    import torch

    from benchbench.runner.attach.sampler import StackSampler

    class Ledger:
        current_part = "validation_compute"

    def metric(n: int) -> int:
        s = 0
        for i in range(n):
            s += i % 7
        return s

    x = torch.randn(600, 600)
    s = StackSampler(Ledger(), 0.005)
    s.start()
    t0 = time.perf_counter()
    tm = 0.0
    for _ in range(20):  # ~0.4 s: 70-80 samples at 5 ms (at 6 rounds, ~20: too few to weigh a share by)
        a = time.perf_counter()
        metric(300_000)
        tm += time.perf_counter() - a
        for _ in range(3):
            x @ x
    wall = time.perf_counter() - t0
    s.stop()
    assert s.running is False and s.samples > 40
    (fn,) = [f for f in s.functions({"validation_compute": wall}) if f["user"] and "in metric" in f["user"]]
    assert abs(fn["seconds"] - tm) < 0.35 * tm, (fn, tm, wall)


def test_a_script_with_its_own_sigprof_handler_keeps_it() -> None:
    import signal

    from benchbench.runner.attach.sampler import StackSampler

    def mine(signum, frame):
        pass

    old = signal.signal(signal.SIGPROF, mine)
    try:
        s = StackSampler(object(), 0.01)
        s.start()
        assert not s.running and "SIGPROF handler of its own" in s.note
        assert signal.getsignal(signal.SIGPROF) is mine
    finally:
        signal.signal(signal.SIGPROF, old)
