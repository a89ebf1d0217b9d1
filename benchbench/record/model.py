"""The result record: one cell's measurement, one typed, versioned model (`benchbench.result/2`).

Every figure a reader wants is a method or a property here, derived once from what was measured: the raw
step samples, the work per step (the batch that really ran, after an OOM back-off, x world size), each
run's own throughput (a merged record keeps every run), the input stall on the basis the device gives it.
Readers never look up a record's fields by string and never re-derive a figure their own way.

`Record.of(doc)` reads any schema benchbench has written (`benchbench.result/1` is upgraded first, as asv
upgrades its results files); a record with an unknown schema, a missing required field or a wrong type
raises `RecordError` with the reason, which the results reader turns into file:line.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from benchbench.record.epochs import Epochs
from benchbench.record.explain import Breakdown, Flops, GpuTimeline, Memory
from benchbench.record.inputs import InputCapacity, InputStages
from benchbench.record.machine import CpuContention, Environment, GpuConditions
from benchbench.record.parts import (
    AdviseTag,
    Attached,
    DataCache,
    DataWait,
    ExecutorInfo,
    Invocation,
    OomBackoff,
    Ranks,
    RecordError,
    Repeats,
    StepTimes,
    Timing,
    Training,
    Warmup,
)
from benchbench.record.ranks import Distributed
from benchbench.record.run import InputStall, Run
from benchbench.record.stats import summarize

SCHEMA = "benchbench.result/2"
STATUSES = ("ok", "oom", "error", "timeout", "skipped")
Status = Literal["ok", "oom", "error", "timeout", "skipped"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True)

    schema_: Literal["benchbench.result/2"] = Field(SCHEMA, alias="schema")
    suite: str
    run_id: str
    cell_id: str
    label: str = ""
    params: dict[str, Any]
    status: Status
    error: str | None = None
    throughput_img_s: float | None = None  # written for people reading the file; `throughput` derives it
    step_time_s: StepTimes | None = None
    data_wait_s: DataWait | None = None
    warmup: Warmup | None = None
    timing: Timing | None = None
    params_count: int | None = None
    memory: Memory | None = None
    flops: Flops | None = None
    breakdown: Breakdown | None = None
    training: Training | None = None
    gpu_conditions: GpuConditions | None = None
    cpu_contention: CpuContention | None = None
    input_stages: InputStages | None = None  # the input pipeline's stages, timed in its workers
    input_capacity: InputCapacity | None = None  # supply vs demand, and the step predicted per worker count
    data_cache: DataCache | None = None  # what `cache: ram` kept, and whether that freezes augmentation
    trackers: dict[str, dict[str, Any]] | None = None  # trackers the record does not type (yet): their results
    tracker_errors: dict[str, str] | None = None
    env: Environment | None = None
    started_at: str | None = None
    wall_s: float | None = None
    build_s: float | None = None
    process_wall_s: float | None = None
    repeat: int | None = None
    repeats: Repeats | None = None
    oom_backoff: OomBackoff | None = None
    ranks: Ranks | None = None
    advise: AdviseTag | None = None
    invocation: Invocation | None = None
    executor: ExecutorInfo | None = None
    probe_of: str | None = None
    attached: Attached | None = None  # a user's script measured by `benchbench attach`
    epochs: Epochs | None = None  # `attach --epochs N`: each epoch's wall time in parts
    distributed: Distributed | None = None  # `attach -- torchrun …`: every rank's steps, stragglers, all-reduce
    warnings: list[str] | None = None
    explain_s: dict[str, float] | None = None
    explain_errors: dict[str, str] | None = None
    extra: dict[str, Any] | None = None  # fields an older schema had that this one does not: kept, never dropped
    #: `run --retry-contended`: this record re-measures a cell whose earlier record was taken on contended cores —
    #: why that one was unfit, the attempt, and how long the machine took to be quiet again
    remeasured: dict[str, Any] | None = None

    @field_validator("params")
    @classmethod
    def _batch(cls, p: dict[str, Any]) -> dict[str, Any]:
        bs = p.get("batch_size")
        if bs is None and "axes" in p:
            return p  # a command cell that failed before its script showed a batch: none is invented
        if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
            raise ValueError(f"batch_size must be a positive whole number, got {bs!r}"[:200])
        return p

    @model_validator(mode="after")
    def _ok_has_samples(self) -> Record:
        if not self.label:
            object.__setattr__(self, "label", self.cell_id)
        if self.status == "ok" and self.params.get("batch_size") is None:
            raise ValueError("an ok record needs params.batch_size (the images a step)")
        if self.status == "ok" and (self.step_time_s is None or not self.step_time_s.samples):
            raise ValueError("an ok record needs step_time_s.samples (the timed steps)")
        return self

    # ------------------------------------------------------------------ reading and writing
    @classmethod
    def of(cls, doc: Any) -> Record:
        """A record from a JSON document of any schema benchbench wrote (older ones upgraded first)."""
        from benchbench.record.upgrade import upgrade

        if isinstance(doc, Record):
            return doc
        if not isinstance(doc, dict):
            raise RecordError(f"not a JSON object but {type(doc).__name__}")
        try:
            return cls.model_validate(upgrade(doc, cls))
        except ValidationError as err:
            e = err.errors()[0]
            where = ".".join(str(x) for x in e["loc"]) or "record"
            more = f" ({len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
            raise RecordError(f"{where}: {e['msg']}{more}") from None

    def to_json(self) -> dict[str, Any]:
        """The document written to a results file (derived figures filled in for people reading it)."""
        from benchbench.record.stats import clean_nans

        doc = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        doc["throughput_img_s"] = self.throughput
        return clean_nans(doc)

    def replace(self, **fields: Any) -> Record:
        """A copy with some fields changed, validated again."""
        return Record.model_validate({**self.model_dump(by_alias=True), **fields})

    @property
    def key(self) -> str:
        """The record's identity (run, cell, repeat, start): the same record read twice has the same key."""
        blob = json.dumps([self.run_id, self.cell_id, self.repeat, self.started_at], sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()

    # ------------------------------------------------------------------ what was measured, derived once
    @property
    def ok(self) -> bool:
        """The one definition: status ok (validation guarantees the step samples)."""
        return self.status == "ok"

    @property
    def samples(self) -> list[float]:
        return list(self.step_time_s.samples) if self.step_time_s else []

    @property
    def batch_ran(self) -> int:
        ran = self.oom_backoff.batch_size_ran if self.oom_backoff else None
        return int(ran or self.params.get("batch_size") or 1)

    @property
    def world_size(self) -> int:
        return int(self.params.get("world_size") or 1)

    @property
    def images_per_step(self) -> int:
        return self.batch_ran * self.world_size

    @property
    def device(self) -> str:
        return str(self.params.get("device") or "cpu")

    @property
    def stats(self) -> dict[str, Any]:
        return summarize(self.samples)

    @property
    def median(self) -> float:
        return float(self.stats["median"])

    @property
    def cv(self) -> float | None:
        cv = self.stats.get("cv")
        return float(cv) if cv is not None and cv == cv else None

    @property
    def per_image_s(self) -> float:
        return self.median / self.images_per_step

    @property
    def clock(self) -> str:
        return self.timing.clock if self.timing else "perf_counter"

    @property
    def runs(self) -> tuple[Run, ...]:
        """Every run (process) behind this record: one, or those a merge kept."""
        if self.repeats and self.repeats.runs:
            return tuple(Run.of(r) for r in self.repeats.runs)
        if not self.ok:
            return ()
        return (Run(tuple(self.samples), self.images_per_step, self.clock,
                    self.timing.block_wall_s if self.timing else None, self.run_id, self.repeat),)

    @property
    def run_medians(self) -> list[float]:
        return [r.median for r in self.runs]

    @property
    def between_run_cv(self) -> float | None:
        meds = self.run_medians
        if len(meds) < 2:
            return None
        return float(np.std(meds, ddof=1) / np.mean(meds))

    @property
    def throughput(self) -> float | None:
        """Images per second: each run's own (never pooled steps over one run's wall time), median over runs."""
        if not self.ok:
            return None
        tps = [t for r in self.runs if (t := r.throughput)]
        return float(np.median(tps)) if tps else None

    @property
    def gpu(self) -> GpuTimeline | None:
        return self.breakdown.gpu if self.breakdown else None

    @property
    def input_stall(self) -> InputStall:
        """What the input pipeline costs the device per step: on a GPU the time it sat idle waiting for a batch
        (the host runs ahead, so a wait shorter than the queued work stalls nothing); on a CPU the host's wait
        itself. Older CUDA records kept only the host wait: an upper bound, said so."""
        dw = self.data_wait_s or DataWait()
        if dw.gpu_starved_s is not None:
            return InputStall(dw.gpu_starved_s, "GPU idle waiting for the batch", dw)
        basis = ("host wait (an upper bound: this CUDA record predates GPU-starvation timing)"
                 if self.clock == "cuda-events" or self.device == "cuda" else "host wait")
        return InputStall(dw, basis, dw)

    @property
    def peak_memory(self) -> float | None:
        return self.memory.peak if self.memory else None

    def degraded(self) -> str | None:
        """Why this measurement's machine was not in a state to trust (a throttled or shared GPU, contended
        CPU cores), or None."""
        from benchbench.record.state import degraded

        return degraded(self)

    @classmethod
    def pool(cls, recs: list[Record]) -> Record:
        """One record from several of one cell (`--repeat`, `--resume`): every run kept in `repeats.runs`,
        samples pooled for the step-time summary, throughput per run."""
        runs = [run for r in recs for run in r.runs]
        last = recs[-1]
        pooled = [s for run in runs for s in run.samples]
        medians = [r.median for r in runs]
        cv = float(np.std(medians, ddof=1) / np.mean(medians)) if len(medians) > 1 else None
        waits = [r.data_wait_s for r in recs if r.data_wait_s is not None]
        dw = last.data_wait_s
        if waits and dw is not None:
            dw = dw.model_copy(update={"fraction": sum(w.fraction or 0 for w in waits) / len(waits)})
        # The last run's wall time describes one run, not the merge: the runs carry their own.
        timing = (last.timing or Timing()).model_copy(update={"block_wall_s": None})
        return last.model_copy(update={
            "step_time_s": StepTimes(samples=pooled), "timing": timing, "data_wait_s": dw,
            "epochs": Epochs.pool([r.epochs for r in recs]),
            "repeats": Repeats(n=len(runs), runs=[r.to_part() for r in runs], run_medians_s=medians,
                               between_run_cv=cv)})


def base_record(suite: str, run_id: str, cell_id: str, label: str, params: dict[str, Any]) -> dict[str, Any]:
    """A record being assembled by the runner, before it is typed (status error until it says otherwise)."""
    return {"schema": SCHEMA, "suite": suite, "run_id": run_id, "cell_id": cell_id, "label": label,
            "params": params, "status": "error", "error": None}
