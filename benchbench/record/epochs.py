"""The epoch account of an attached run (`attach --epochs N`): each whole epoch's wall time in parts, the code
that took it, the checkpoints written. A part of the record (`Record.epochs`), versioned on its own (`version`:
a reader refuses a version it does not know, never guesses).

Each epoch's parts partition its wall time (`runner/attach/epochs.py`); every figure a reader wants is derived
here, once: the median epoch, each part's mean seconds and share, what is unaccounted, the time to train."""

from __future__ import annotations

import statistics
from typing import Any, Literal

from pydantic import Field

from benchbench.record.parts import Part

#: parts of an epoch, in the order a report shows them, with what a reader calls them
PART_NAMES = {
    "epoch_start": "epoch start (iterator, workers, first batch)",
    "train_data_wait": "training: data wait",
    "train_compute": "training: forward, loss, backward, optimizer",
    "between_steps": "between steps (logging, scheduler, other code)",
    "validation_data_wait": "validation: data wait",
    "validation_compute": "validation: forward and metric code",
    "checkpoint": "checkpointing",
}
#: nested figures (inside a part, measured by a hook): never added to the parts
NESTED_NAMES = {"train_forward": "training forward", "train_backward": "backward", "train_optimizer":
                "optimizer step", "validation_forward": "validation forward"}


class EpochWrite(Part):
    writer: str  # torch.save, safetensors.torch.save_file, Trainer.save_checkpoint (lightning), ...
    s: float
    bytes: int | None = None
    path: str | None = None
    filesystem: str | None = None  # `ext4 on /`
    where: str | None = None  # the script's line that wrote it (or the trainer's, and the user's line)


class Epoch(Part):
    index: int
    wall_s: float
    parts: dict[str, float]
    nested: dict[str, float] = Field(default_factory=dict)
    train_steps: int = 0
    train_batches: int = 0
    validation_batches: int = 0
    validation_images: int = 0
    validation_shape: list[int] | None = None  # the first validation batch's shape
    writes: list[EpochWrite] = Field(default_factory=list)
    ended_by: str
    whole: bool = True  # False: benchbench stopped the script inside it
    run: int = 0  # which run (process) of a pooled record it came from (`attach --repeat`)


class NamedCode(Part):
    """Where a part's time went, by the stack sampler: the user's own function (and a library's, called from
    it), its samples and its seconds an epoch (the part's measured mean times its share of the samples)."""

    part: str
    user: str | None = None
    library: str | None = None
    samples: int
    share_of_part: float
    seconds: float

    @property
    def where(self) -> str:
        if self.user and self.library:
            return f"{self.library} (from {self.user})"
        return self.user or self.library or "(no Python frame of the script's or a library's)"


class SamplerInfo(Part):
    interval_s: float
    samples: int
    cost_s: float  # the sampler's own time in the script's main thread over the epochs
    note: str | None = None  # why nothing was sampled (the script's own SIGPROF handler)


class Epochs(Part):
    version: Literal[1] = 1
    wanted: int | None = None
    seconds: float | None = None  # --seconds: a span of wall time, for a script with no DataLoader epochs
    epochs: list[Epoch] = Field(default_factory=list)
    code: list[NamedCode] = Field(default_factory=list)
    sampler: SamplerInfo | None = None
    writers: list[str] = Field(default_factory=list)  # the checkpoint writers that were timed
    run_epochs: int | None = None  # the whole run's epochs (--run-epochs, or the trainer's own setting)
    run_epochs_source: str | None = None
    validation_loader: dict[str, Any] | None = None  # the validation DataLoader's settings, as the script made it

    @property
    def whole(self) -> list[Epoch]:
        """The epochs that ran whole (an epoch benchbench stopped is shown, never averaged in)."""
        return [e for e in self.epochs if e.whole]

    @property
    def wall_s(self) -> float | None:
        w = self.whole
        return statistics.median(e.wall_s for e in w) if w else None

    def part_s(self, part: str) -> float:
        """A part's mean seconds an epoch over the whole epochs."""
        w = self.whole
        return sum(e.parts.get(part, 0.0) for e in w) / len(w) if w else 0.0

    def nested_s(self, what: str) -> float:
        w = self.whole
        return sum(e.nested.get(what, 0.0) for e in w) / len(w) if w else 0.0

    def mean_wall_s(self) -> float:
        w = self.whole
        return sum(e.wall_s for e in w) / len(w) if w else 0.0

    def validation_s(self) -> float:
        """Validation an epoch: its loader's wait and its forward and metric code."""
        return self.part_s("validation_data_wait") + self.part_s("validation_compute")

    def metric_s(self) -> float:
        """Validation code that is not the model's forward (the metric, mostly): what the metric on the device
        can at most remove."""
        return max(0.0, self.part_s("validation_compute") - self.nested_s("validation_forward"))

    def share(self, part: str) -> float:
        wall = self.mean_wall_s()
        return self.part_s(part) / wall if wall > 0 else 0.0

    @property
    def unaccounted_s(self) -> float:
        return self.mean_wall_s() - sum(self.part_s(p) for p in PART_NAMES)

    @property
    def time_to_train_s(self) -> float | None:
        """The run's epochs times the mean epoch: the time to train (without what runs once: start-up)."""
        return self.run_epochs * self.mean_wall_s() if self.run_epochs and self.whole else None

    def checkpoint_bytes(self) -> int | None:
        """Bytes an epoch's writes put on disk (mean over the whole epochs)."""
        w = self.whole
        got = [sum(x.bytes or 0 for x in e.writes) for e in w if e.writes]
        return int(sum(got) / len(w)) if got else None

    def top_code(self, part: str, n: int = 3) -> list[NamedCode]:
        return [c for c in self.code if c.part == part][:n]

    def run_medians(self) -> list[float]:
        """One value per run (process): the median of its whole epochs — what `compare --metric epoch` judges,
        as it judges run medians of the step."""
        runs: dict[int, list[float]] = {}
        for e in self.whole:
            runs.setdefault(e.run, []).append(e.wall_s)
        return [statistics.median(v) for _, v in sorted(runs.items())]

    def steps_per_epoch(self) -> set[int]:
        return {e.train_steps for e in self.whole}

    @classmethod
    def pool(cls, parts: list[Epochs | None]) -> Epochs | None:
        """Several runs' accounts as one: every epoch kept, marked with its run; the last run's code and
        settings (each run names the same code: its share is read from one run's samples)."""
        got = [p for p in parts if p is not None]
        if not got:
            return None
        epochs = [e.model_copy(update={"run": i}) for i, p in enumerate(got) for e in p.epochs]
        return got[-1].model_copy(update={"epochs": epochs})
