"""The whole epoch in reports (`attach --epochs`): each part of an epoch's wall time, the code that took it,
the checkpoints written, the time to train. Computed once here (`epoch_cells`), rendered by Markdown and HTML."""

from __future__ import annotations

from typing import Any

from benchbench.record import Record
from benchbench.record.epochs import NESTED_NAMES, PART_NAMES

#: a function is listed where it holds at least this share of an epoch
CODE_MIN_SHARE = 0.02


def epoch_cells(records: list[Record]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        ep = r.epochs
        if ep is None or not ep.epochs:
            continue
        wall = ep.mean_wall_s()
        parts = [{"name": PART_NAMES[p], "s": f"{ep.part_s(p):.3f}", "share": f"{ep.share(p):.1%}"}
                 for p in PART_NAMES]
        parts.append({"name": "unaccounted", "s": f"{ep.unaccounted_s:.3f}",
                      "share": f"{ep.unaccounted_s / wall:.1%}" if wall > 0 else "-"})
        nested = [{"name": NESTED_NAMES[k], "s": f"{ep.nested_s(k):.3f}"} for k in NESTED_NAMES if ep.nested_s(k)]
        code = [{"part": PART_NAMES.get(c.part, c.part), "where": c.where, "s": f"{c.seconds:.3f}",
                 "share": f"{c.seconds / wall:.1%}", "samples": str(c.samples)}
                for c in ep.code if wall > 0 and c.seconds / wall >= CODE_MIN_SHARE]
        writes = [{"epoch": str(e.index), "writer": w.writer, "s": f"{w.s:.3f}",
                   "mb": f"{w.bytes / 1e6:.1f}" if w.bytes else "-", "path": w.path or "-",
                   "fs": w.filesystem or "-"} for e in ep.whole for w in e.writes]
        epochs = [{"epoch": str(e.index), "wall": f"{e.wall_s:.3f}", "steps": str(e.train_steps),
                   "val_batches": str(e.validation_batches), "ended": e.ended_by + ("" if e.whole else " (cut short)")}
                  for e in ep.epochs]
        s = ep.sampler
        out.append({
            "id": r.cell_id, "label": r.label, "wall": wall, "parts": parts, "nested": nested, "code": code,
            "writes": writes, "epochs": epochs,
            "time_to_train": (f"{ep.time_to_train_s / 3600:.2f} h ({ep.run_epochs} epochs, from "
                              f"{ep.run_epochs_source})") if ep.time_to_train_s else None,
            "sampler": (f"{s.samples} stack samples every {s.interval_s * 1e3:.0f} ms; the sampler's own time "
                        f"{s.cost_s:.3f} s ({s.cost_s / max(1e-9, sum(e.wall_s for e in ep.epochs)):.2%} of "
                        "the epochs)") if s else None,
        })
    return out


def markdown(records: list[Record], esc: Any) -> list[str]:
    cells = epoch_cells(records)
    if not cells:
        return []
    lines = ['<a id="epochs"></a>', "## The whole epoch", "",
             "Each epoch's wall time split into parts, every part a sum of measured intervals (a training fetch, a "
             "step, a validation batch, a checkpoint's write; the time between them billed to what the script "
             "was doing), so the parts add up to the epoch; `unaccounted` checks it. Means over the whole epochs "
             "accounted. The functions are named by a stack sampler: a part's time times their share of its "
             "samples.", ""]
    for c in cells:
        lines += [f"### {esc(c['label'])}", "", f"Epoch: {c['wall']:.3f} s (mean)"
                  + (f"; time to train: {esc(c['time_to_train'])}" if c["time_to_train"] else ""), ""]
        lines += _table(["part", "s/epoch", "share"], [[p["name"], p["s"], p["share"]] for p in c["parts"]], esc)
        if c["nested"]:
            lines += _table(["inside the parts (hooks)", "s/epoch"], [[n["name"], n["s"]] for n in c["nested"]], esc)
        if c["code"]:
            lines += _table(["part", "function", "s/epoch", "share of epoch", "samples"],
                            [[x["part"], x["where"], x["s"], x["share"], x["samples"]] for x in c["code"]], esc)
        if c["writes"]:
            lines += _table(["epoch", "checkpoint writer", "s", "MB", "path", "file system"],
                            [[w["epoch"], w["writer"], w["s"], w["mb"], w["path"], w["fs"]] for w in c["writes"]],
                            esc)
        lines += _table(["epoch", "wall s", "training steps", "validation batches", "ended"],
                        [[e["epoch"], e["wall"], e["steps"], e["val_batches"], e["ended"]] for e in c["epochs"]], esc)
        if c["sampler"]:
            lines += [f"_{esc(c['sampler'])}_", ""]
    return lines


def _table(heads: list[str], rows: list[list[str]], esc: Any) -> list[str]:
    return ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads),
            *["| " + " | ".join(esc(v) for v in row) + " |" for row in rows], ""]
