"""The whole epoch (`attach --epochs N`): where the time outside the steady training step goes — validation,
checkpoints, the code between steps, the epoch's start — each a measured part of the epoch's wall time, worth
its share of the time to train (hours over the run's epochs where the run's length is known).

Each finding's bound is its part's share of the epoch: removing the part entirely is the most its fix can
give (Amdahl), so a story ranks by it as it ranks a data wait; the code knobs that would shrink it are listed
with their own bounds from the same accounting and the line to change."""

from __future__ import annotations

from typing import Any

from benchbench.analysis.records import Finding, Thresholds, label, ok
from benchbench.record import Record


def worth(seconds: float, ep: Any) -> str:
    """An epoch's seconds over the whole run: hours where the run's epochs are known."""
    if ep.run_epochs:
        return f"{seconds * ep.run_epochs / 3600:.2f} h over the run's {ep.run_epochs} epochs"
    return f"{seconds:.2f} s an epoch (the run's epochs are unknown: --run-epochs K gives hours)"


def _named(ep: Any, part: str, total: float, t: Thresholds) -> tuple[str, Any]:
    """`; train.py:142 in update is 62% of it` for the part's top function, where it is enough of it."""
    top = next(iter(ep.top_code(part, 1)), None)
    if top is None or total <= 0 or top.seconds / total < t.epoch_code_named:
        return "", None
    return f"; {top.where} is {top.seconds / total:.0%} of it ({top.samples} samples)", top


def epoch_account(records: list[Record], t: Thresholds) -> list[Finding]:
    out: list[Finding] = []
    for r in ok(records):
        ep = r.epochs
        if ep is None or not ep.whole:
            continue
        wall = ep.mean_wall_s()
        if wall <= 0:
            continue
        out += _validation(r, ep, wall, t) + _checkpoint(r, ep, wall, t) + _code(r, ep, wall, t)
        out.append(_time_to_train(r, ep, wall))
    return out


def _validation(r: Record, ep: Any, wall: float, t: Thresholds) -> list[Finding]:
    wait, val = ep.part_s("validation_data_wait"), ep.validation_s()
    share = val / wall
    if share < t.epoch_validation_share:
        return []
    e0 = ep.whole[0]
    images = e0.validation_images
    shape = e0.validation_shape
    at = f" at {shape[-2]}x{shape[-1]}" if shape and len(shape) >= 3 else ""
    fwd = ep.nested_s("validation_forward")
    named, top = _named(ep, "validation_compute", val, t)
    sentence = (f"{label(r)}: validation takes {share:.0%} of each epoch ({val:.2f} s of {wall:.2f} s"
                + (f"; {images} images{at}" if images else "") + f"){named}; the model's forward is "
                f"{fwd / val:.0%} of it and its loader's wait {wait / val:.0%} — worth {worth(val, ep)}")
    metric = ep.metric_s()
    knobs = [f"validate every 2 epochs: up to {val / 2:.2f} s an epoch"]
    if metric > 0.1 * val:
        knobs.append(f"the metric on the device, over the batch (a confusion matrix by torch.bincount, not per "
                     f"image in Python{(' at ' + top.user) if top is not None and top.user else ''}): up to "
                     f"{metric:.2f} s an epoch, the validation code that is not the forward")
    if wait > 0.1 * val:
        knobs.append(f"more validation loader workers or persistent_workers: up to {wait:.2f} s an epoch (its wait)")
    knobs.append("a larger eval batch: within the forward's " + f"{fwd:.2f} s")
    return [Finding("epoch_validation", [r.cell_id], sentence,
                    {"share": share, "validation_s": val, "epoch_s": wall, "forward_s": fwd, "wait_s": wait,
                     "metric_s": metric, "run_epochs": ep.run_epochs,
                     "where": top.where if top is not None else None}, "; ".join(knobs))]


def _checkpoint(r: Record, ep: Any, wall: float, t: Thresholds) -> list[Finding]:
    ck = ep.part_s("checkpoint")
    share = ck / wall
    if share < t.epoch_checkpoint_share:
        return []
    writes = [w for e in ep.whole for w in e.writes]
    per = len(writes) / len(ep.whole)
    nbytes = ep.checkpoint_bytes()
    w0 = writes[0] if writes else None
    size = f", {nbytes / per / 1e6:.0f} MB a write" if nbytes and per else ""
    target = f" to {w0.filesystem}" if w0 is not None and w0.filesystem else ""
    rate = f", {nbytes / ck / 1e6:.0f} MB/s" if nbytes and ck > 0 else ""
    sentence = (f"{label(r)}: checkpointing costs {ck:.2f} s an epoch, {share:.0%} of it ({per:g} write(s) by "
                f"{w0.writer if w0 is not None else '?'}{size}{target}{rate}) — worth {worth(ck, ep)}")
    where = f" ({w0.where})" if w0 is not None and w0.where else ""
    return [Finding("epoch_checkpoint", [r.cell_id], sentence,
                    {"share": share, "checkpoint_s": ck, "bytes": nbytes, "writes_per_epoch": per,
                     "epoch_s": wall, "run_epochs": ep.run_epochs},
                    f"save every k epochs{where}: up to {ck * 0.5:.2f} s an epoch at k=2, {ck * 0.9:.2f} s at "
                    "k=10; or write it from a thread (torch.distributed.checkpoint.async_save): up to the whole "
                    f"{ck:.2f} s, less the copy to host memory")]


def _code(r: Record, ep: Any, wall: float, t: Thresholds) -> list[Finding]:
    out = []
    for part, kind, what in (("between_steps", "epoch_between", "the script's code between training steps"),
                             ("epoch_start", "epoch_start_time", "the epoch's start (its training iterator "
                                                                 "made, workers started, first batch)")):
        s = ep.part_s(part)
        share = s / wall
        if share < t.epoch_code_share:
            continue
        named, top = _named(ep, part, s, t)
        sentence = f"{label(r)}: {what} takes {share:.0%} of each epoch ({s:.2f} s){named} — worth {worth(s, ep)}"
        line = top.user if top is not None and top.user else None
        suggestion = (f"look at {line}: up to {s:.2f} s an epoch" if line and part == "between_steps" else
                      "persistent_workers=True (the workers start once)" if part == "epoch_start" else None)
        out.append(Finding(kind, [r.cell_id], sentence, {"share": share, "seconds": s, "epoch_s": wall,
                                                         "run_epochs": ep.run_epochs}, suggestion))
    return out


def _time_to_train(r: Record, ep: Any, wall: float) -> Finding:
    whole = ep.whole
    walls = sorted(e.wall_s for e in whole)
    spread = f" ({walls[0]:.2f}-{walls[-1]:.2f} s over {len(walls)})" if len(walls) > 1 else ""
    steps = whole[0].train_steps
    train = ep.part_s("train_compute") + ep.part_s("train_data_wait")
    sentence = (f"{label(r)}: an epoch takes {ep.wall_s:.2f} s{spread}, {steps} training steps of which are "
                f"{train / wall:.0%} of it")
    if ep.time_to_train_s:
        sentence += (f"; the run's {ep.run_epochs} epochs ({ep.run_epochs_source}): {ep.time_to_train_s / 3600:.2f} h "
                     "to train")
    return Finding("time_to_train", [r.cell_id], sentence,
                   {"epoch_s": wall, "train_share": train / wall, "run_epochs": ep.run_epochs,
                    "time_to_train_s": ep.time_to_train_s})
