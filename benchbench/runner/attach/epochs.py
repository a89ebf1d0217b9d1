"""An epoch's wall time, accounted part by part (`attach --epochs N`): in the script's own process.

The hooks report what they see, each with its start and end on one clock (`time.perf_counter`): a training
batch fetched, an iterator made, an optimizer step's end, a validation batch fetched, an outermost forward, a
backward, a checkpoint written. The ledger turns them into a partition of each epoch's wall time:

- an event's own interval goes to its part (a training fetch to the data wait, the pass's first one to the
  epoch's start, a validation fetch to the validation loader's wait, a write to checkpointing);
- the time between two events goes to the part of the *mode* the script is in: `train` (a training batch
  fetched, its step not yet ended: forward, loss, backward, optimizer), `between` (a step ended, the next batch
  not yet asked for: logging, a scheduler, the script's own code) or `validation` (a validation batch or an
  eval/no_grad forward seen, no training batch since: the forwards and the code between them — metrics).

So every second of an epoch is in exactly one part, each part a sum of measured intervals: they add up to the
epoch's wall time by construction, and `unaccounted_s` (wall minus the parts) checks the bookkeeping itself.
What the time between events *is* — which function, which line — the stack sampler (`sampler.py`) says.
Forward, backward and optimizer time inside training and validation are kept as nested figures (`nested`),
never added to the partition twice.

An epoch is one pass of the training loader: it begins where the pass begins (its iterator made, a persistent
iterator reset, or the first batch of a pass) and ends where the next begins, or where the script exits.
"""

from __future__ import annotations

from typing import Any

#: the parts an epoch's wall time is split into, in the order a report shows them
PARTS = ("epoch_start", "train_data_wait", "train_compute", "between_steps", "validation_data_wait",
         "validation_compute", "checkpoint")
#: the part the time between two events goes to, by the mode the script is in
GAP_PART = {"train": "train_compute", "between": "between_steps", "validation": "validation_compute"}


class EpochLedger:
    """The epochs being accounted. Fed by the probe's hooks; `begin_epoch` closes the one in progress."""

    def __init__(self) -> None:
        self.mode = "between"
        self.inside: str | None = None  # the part of the interval in progress (the sampler reads it)
        self.t_mark: float | None = None  # everything before this instant is in a part
        self.cur: dict[str, Any] | None = None
        self.done: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ epochs
    def begin_epoch(self, t: float) -> None:
        self.close(t, "the next epoch began")
        self.cur = {"index": len(self.done), "t0": t, "parts": dict.fromkeys(PARTS, 0.0), "nested": {},
                    "train_steps": 0, "train_batches": 0, "validation_batches": 0, "validation_images": 0,
                    "writes": []}
        self.t_mark = t
        self.mode = "train"

    def close(self, t: float, why: str, whole: bool = True) -> None:
        """The epoch in progress ends at `t` (`why`: the next began, the script exited, it was stopped)."""
        if self.cur is None:
            return
        self._advance(t)
        e = self.cur
        e["wall_s"] = t - e.pop("t0")
        e["ended_by"] = why
        e["whole"] = whole
        self.done.append(e)
        self.cur = None
        self.inside = None

    @property
    def current_part(self) -> str | None:
        """The part this instant is in (what the sampler files a sample under); None outside an epoch."""
        if self.cur is None:
            return None
        return self.inside or GAP_PART[self.mode]

    # ------------------------------------------------------------------ events
    def _advance(self, t: float) -> None:
        if self.cur is None or self.t_mark is None:
            return
        gap = t - self.t_mark
        if gap > 0:
            self.cur["parts"][GAP_PART[self.mode]] += gap
            self.t_mark = t

    def interval(self, part: str, t0: float, t1: float, mode: str | None = None) -> None:
        """An event of [t0, t1] that is its own part (a fetch, an iterator made, a write); `mode` is the mode
        the script is in after it."""
        if self.cur is None:
            if mode:
                self.mode = mode
            return
        self._advance(t0)
        self.cur["parts"][part] += max(0.0, t1 - max(t0, self.t_mark or t0))
        self.t_mark = max(t1, self.t_mark or t1)
        self.inside = None
        if mode:
            self.mode = mode

    def enter(self, mode: str, t: float) -> None:
        """The script is now in `mode` (the time before `t` stays in the mode it was in)."""
        if mode != self.mode:
            self._advance(t)
            self.mode = mode

    def step_end(self, t: float) -> None:
        self._advance(t)
        if self.cur is not None:
            self.cur["train_steps"] += 1
        self.mode = "between"

    def nested(self, what: str, dt: float) -> None:
        """Time inside a part that a hook measured (the training forwards, backward, the optimizer's step, the
        validation forwards): a figure of its own, never added to the partition."""
        if self.cur is not None and dt > 0:
            n = self.cur["nested"]
            n[what] = n.get(what, 0.0) + dt

    def count(self, what: str, n: int = 1) -> None:
        if self.cur is not None:
            self.cur[what] += n

    def write(self, t0: float, t1: float, info: dict[str, Any]) -> None:
        """A checkpoint written: its interval is the checkpointing part; its bytes and target are kept."""
        if self.cur is not None:
            self.cur["writes"].append({**info, "s": t1 - t0})
        self.interval("checkpoint", t0, t1)

