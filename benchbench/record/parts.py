"""The parts of a result record, each a typed model: what was measured, in what unit, and what it may be.

Every part is closed (`extra="forbid"`): a field the runner writes must be declared here first, so no
reader can come to depend on an undeclared one, and a record with a wrong-typed field is refused where it is
read, with its file and line. Times are seconds, memory bytes, FLOPs multiply-adds (MACs) unless the
field says `flops_per_s` (2 flops per MAC, the hardware convention).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from benchbench.record.stats import summarize


class RecordError(ValueError):
    """A document that is not a usable record (the reader says where it is)."""


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Summary(Part):
    """A set of samples and the statistics derived from them (recomputed on load: the samples decide)."""

    samples: list[float] = Field(default_factory=list)
    median: float | None = None
    p10: float | None = None
    p90: float | None = None
    iqr: float | None = None
    cv: float | None = None
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    n: int = 0

    @model_validator(mode="after")
    def _derive(self) -> Summary:
        if self.samples:
            s = summarize(self.samples)
            for k in ("median", "p10", "p90", "iqr", "mean", "min", "max", "n"):
                object.__setattr__(self, k, s[k])
            object.__setattr__(self, "cv", s["cv"] if s["cv"] == s["cv"] else None)
        return self


class StepTimes(Summary):
    @field_validator("samples")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(not math.isfinite(x) or x <= 0 for x in v):
            raise ValueError("a step time is not a positive finite number")
        return v


class Wait(Part):
    samples: list[float] = Field(default_factory=list)
    median: float | None = None
    p90: float | None = None
    max: float | None = None
    fraction: float | None = None  # of the timed block's step time


class DataWait(Wait):
    """Time blocked on the input pipeline per step; on CUDA also the GPU's idle waiting for the batch."""

    gpu_starved_s: Wait | None = None
    steps_per_epoch: int | None = None
    epoch_boundary_s: float | None = None


class Warmup(Part):
    steps: int = 0
    steady: bool = False
    samples: list[float] = Field(default_factory=list)


class Enqueue(Part):
    median: float | None = None
    p10: float | None = None
    p90: float | None = None
    samples: list[float] = Field(default_factory=list)


class Timing(Part):
    clock: Literal["perf_counter", "cuda-events"] = "perf_counter"
    block_wall_s: float | None = None
    throughput_basis: str | None = None
    host_enqueue_s: Enqueue | None = None


class GradScaler(Part):
    init_scale: float | None = None
    final_scale: float | None = None
    skipped_steps: int | None = None
    skipped_at: list[int] | None = None
    steps: int | None = None


class Training(Part):
    """What the steps did to the model: every loss (warm-up then timed), non-finite values, GradScaler's skips."""

    losses: list[float | None] = Field(default_factory=list)
    nonfinite: int = 0
    warmup_steps: int | None = None
    nonfinite_params: int | None = None
    grad_scaler: GradScaler | None = None


class RunRecord(Part):
    samples: list[float]
    images_per_step: int
    clock: str = "perf_counter"
    block_wall_s: float | None = None
    run_id: str | None = None
    repeat: int | None = None
    median_s: float | None = None
    throughput_img_s: float | None = None


class Repeats(Part):
    n: int = 0
    runs: list[RunRecord] = Field(default_factory=list)
    run_medians_s: list[float] = Field(default_factory=list)
    between_run_cv: float | None = None


class OomBackoff(Part):
    attempts: list[dict[str, Any]] = Field(default_factory=list)
    batch_size_ran: int | None = None


class Ranks(Part):
    world_size: int
    backend: str
    median_step_s: list[float] = Field(default_factory=list)
    slowest_rank: int = 0
    step_s: list[list[float]] = Field(default_factory=list)
    warmup_steps: list[int] = Field(default_factory=list)
    losses: list[list[float | None] | None] | None = None


class AdviseTag(Part):
    role: str
    knob: str = ""
    base: str | None = None


class Invocation(Part):
    """What the session that wrote a record was asked: `--resume` continues *that* (a run's filters, shard, repeat
    and explain; an advise experiment's cell, knobs and run limits; a batch search's bounds)."""

    kind: Literal["run", "advise", "tune"] = "run"
    suite_sha1: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class ExecutorInfo(Part):
    name: str
    job_id: str | None = None
    node: str | None = None


class DataCache(Part):
    """`cache: ram`: what was kept in memory. benchbench's own pipelines keep decoded images (augmentation still
    runs per step); a user's data set keeps what it returns — its random augmentation is then frozen."""

    kind: str = "ram"
    what: str
    freezes_augmentation: bool



class Attached(Part):
    """What `benchbench attach` ran and found: a user's own script, measured as it is (kind `attached`).

    The record's `params` hold what was detected (the model's class as `arch`, the batch, the DataLoader's
    settings, AMP) over the defaults, so every reader treats it as a cell; this part says what ran."""

    kind: Literal["attached"] = "attached"
    command: list[str]
    script: str | None = None  # the script file, when the command names one
    script_sha256: str | None = None  # its contents' hash: an edited script is a different cell
    cwd: str | None = None
    model: str | None = None  # the model's class (the outermost module with parameters called in a step)
    model_params: int | None = None
    optimizer: str | None = None
    optimizer_fused: bool | None = None
    steps_seen: int = 0  # optimizer steps (and GradScaler-skipped ones) while attached
    backward_per_step: float | None = None  # > 1: gradient accumulation
    batches_per_step: int | None = None  # DataLoader batches per step (params.batch_size is the images a step)
    grad_scaler: bool = False
    skipped_steps: int = 0
    other_optimizer_steps: int = 0  # steps of optimizers other than the one that defines the step
    loader: dict[str, Any] | None = None  # the training DataLoader's settings as the script made it
    loader_overrides: dict[str, Any] | None = None  # what advise set from outside (none: the script's own)
    lines: dict[str, str] | None = None  # the script's own lines: model_forward, dataloader, optimizer_step
    stage_note: str | None = None  # why the input stages were not timed, when they were not
    window_note: str | None = None  # the profiler window holds an epoch's start (the epoch is shorter than it)
    window_waited: int = 0  # steps the profiler window waited for an epoch to turn (not to hold its start)
    epoch_start_steps: list[int] = Field(default_factory=list)  # timed steps (0-based) that made an iterator
    ended: str | None = None  # how the script ended: stopped by benchbench, finished, raised, exited, killed
    script_error: str | None = None  # the script's own exception, and its line
    elapsed_s: float | None = None  # from the hooks' install to the result
