"""The epoch account as a record part: read by report, compare (`--metric epoch` gates the whole epoch) and
history, pooled over runs — on constructed records (the accounting itself runs in test_attach_epochs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchbench.record.epochs import PART_NAMES


def epoch_doc(walls: list[float], val_share: float = 0.4, save_s: float = 0.0, steps: int = 20,
              run_epochs: int | None = 100) -> dict:
    epochs = []
    for i, w in enumerate(walls):
        val = w * val_share
        parts = dict.fromkeys(PART_NAMES, 0.0)
        parts.update(validation_compute=val * 0.9, validation_data_wait=val * 0.1, checkpoint=save_s,
                     train_compute=w - val - save_s)
        epochs.append({"index": i, "wall_s": w, "parts": parts, "nested": {"validation_forward": val * 0.2},
                       "train_steps": steps, "validation_batches": 10, "validation_images": 40,
                       "validation_shape": [4, 3, 512, 1024], "ended_by": "the next epoch began",
                       "writes": [{"writer": "torch.save", "s": save_s, "bytes": 480_000_000, "path": "/ck/last.pt",
                                   "filesystem": "nfs4 on /ck", "where": "train.py:150"}] if save_s else []})
    return {"version": 1, "wanted": len(walls), "epochs": epochs, "run_epochs": run_epochs,
            "run_epochs_source": "--run-epochs" if run_epochs else None,
            "code": [{"part": "validation_compute", "user": "train.py:142 in update_confmat", "samples": 300,
                      "share_of_part": 0.69, "seconds": 0.62 * val_share * float(np.mean(walls))}],
            "sampler": {"interval_s": 0.01, "samples": 1000, "cost_s": 0.05}}


def attached(run_id: str, walls: list[float], **kw) -> dict:
    return {"schema": "benchbench.result/2", "suite": "attach-train", "run_id": run_id, "cell_id": "c1",
            "label": "train.py", "params": {"batch_size": 4, "arch": "Unet", "device": "cpu"}, "status": "ok",
            "step_time_s": {"samples": [0.1, 0.1, 0.101]}, "epochs": epoch_doc(walls, **kw),
            "env": {"fingerprint": "fp", "device": "cpu"}, "started_at": f"2026-12-0{run_id[-1]}T00:00:00Z"}


def write(path: Path, *docs: dict) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def test_the_headline_ranks_validation_by_hours_and_the_report_shows_the_parts() -> None:
    from benchbench.record import Record
    from benchbench.report.build import build, headline_lines
    from benchbench.report.markdown import render_markdown

    rec = Record.of(attached("n1", [30.0, 31.0], save_s=3.0))
    data = build([rec], None, "t")
    lines = headline_lines(data)
    assert lines[0].startswith("1. [validation, up to 1.6")  # 40% of the epoch: 1/(1-0.4)
    assert "train.py:142 in update_confmat is 62% of it" in lines[0] and "0.34 h over the run's 100 epochs" in lines[0]
    assert "40 images at 512x1024" in lines[0]
    ck = next(line for line in lines if "[checkpointing" in line)
    assert "480 MB a write to nfs4 on /ck" in ck and "(train.py:150)" in ck
    md = render_markdown(data)
    assert "## The whole epoch" in md and "time to train: 0.85 h (100 epochs" in md
    assert "| unaccounted | 0.000 | 0.0% |" in md
    from benchbench.report.html import render_html

    page = render_html(data)
    assert 'id="epochs">The whole epoch</h2>' in page and "train.py:142 in update_confmat" in page


def test_compare_gates_the_whole_epoch(cli, tmp_path: Path) -> None:
    """Same steps, an epoch 20% longer (validation grew): `--metric epoch` says slower; the step metric does not
    see it."""
    base = write(tmp_path / "b.jsonl", *(attached(f"n{i}", [30.0 + 0.1 * i, 30.2]) for i in range(1, 4)))
    cand = write(tmp_path / "c.jsonl", *(attached(f"m{i}", [36.0 + 0.1 * i, 36.1], val_share=0.5)
                                         for i in range(1, 4)))
    code, _, _ = cli("compare", base, cand, "--metric", "epoch", "--json", tmp_path / "v.json")
    (v,) = json.loads((tmp_path / "v.json").read_text())["verdicts"]
    assert code == 1 and v["verdict"] == "slower" and v["metric"] == "epoch" and 1.15 < v["ratio"] < 1.25
    code, _, _ = cli("compare", base, cand, "--json", tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["verdicts"][0]["verdict"] != "slower"


def test_compare_refuses_epochs_it_cannot_judge(cli, tmp_path: Path) -> None:
    base = write(tmp_path / "b.jsonl", *(attached(f"n{i}", [30.0]) for i in range(1, 3)))
    other = write(tmp_path / "o.jsonl", *(attached(f"m{i}", [30.0], steps=40) for i in range(1, 3)))
    code, _, _ = cli("compare", base, other, "--metric", "epoch", "--json", tmp_path / "v.json")
    (v,) = json.loads((tmp_path / "v.json").read_text())["verdicts"]
    assert v["verdict"] == "incomparable" and "not the same work" in v["reason"]
    plain = {k: v for k, v in attached("m1", [30.0]).items() if k != "epochs"}
    code, _, _ = cli("compare", base, write(tmp_path / "p.jsonl", plain), "--metric", "epoch", "--json",
                     tmp_path / "w.json")
    assert "no whole epoch accounted" in json.loads((tmp_path / "w.json").read_text())["verdicts"][0]["reason"]
    code, _, err = cli("compare", base, base, "--metric", "hours")
    assert code == 2 and "--metric takes step or epoch" in err


def test_repeats_pool_every_runs_epochs_and_history_keeps_the_epoch(cli, tmp_path: Path) -> None:
    from benchbench.history.store import HistoryStore, load_series
    from benchbench.record import Record
    from benchbench.results import pool_repeats

    a, b = Record.of(attached("n1", [30.0, 32.0])), Record.of(attached("n1", [40.0]))
    (pooled,) = pool_repeats([a.model_copy(update={"repeat": 0}), b.model_copy(update={"repeat": 1})])
    assert [e.run for e in pooled.epochs.epochs] == [0, 0, 1] and pooled.epochs.run_medians() == [31.0, 40.0]
    db = tmp_path / "h.db"
    code, _, _ = cli("history", "add", write(tmp_path / "n.jsonl", attached("n1", [30.0, 32.0])), "--db", db)
    assert code == 0
    (s,) = load_series(db)
    assert s.nights[0].epoch_s == 31.0
    store = HistoryStore(db)
    row = store.rows()[0]
    store.close()
    assert json.loads(row["epoch_parts_json"])["validation_compute"] > 0
    code, out, _ = cli("history", "show", "--db", db)
    assert code == 0 and "31.00" in out
