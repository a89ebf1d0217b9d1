"""A result record validated as it is read: wrong-typed fields are a message with the file and line, never a
traceback later (exit 3) in whatever command reads them.

Only the fields every consumer relies on are checked; anything else a record carries passes through.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from benchbench.measurement import SCHEMA, STATUSES

Status = Literal["ok", "oom", "error", "timeout", "skipped"]
assert set(STATUSES) == set(Status.__args__)  # type: ignore[attr-defined]


class _StepTime(BaseModel):
    model_config = ConfigDict(extra="allow")
    samples: list[float] = Field(default_factory=list)
    median: float | None = None


class _Breakdown(BaseModel):
    model_config = ConfigDict(extra="allow")
    phases: dict[str, float] = Field(default_factory=dict)
    modules: dict[str, dict[str, float]] = Field(default_factory=dict)
    top_ops: list[dict[str, Any]] = Field(default_factory=list)
    step_s: float | None = None
    gpu: dict[str, Any] | None = None


class _Repeats(BaseModel):
    model_config = ConfigDict(extra="allow")
    runs: list[dict[str, Any]] = Field(default_factory=list)


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    schema_: str = Field(alias="schema")
    suite: str
    run_id: str
    cell_id: str
    label: str | None = None
    params: dict[str, Any]
    status: Status
    step_time_s: _StepTime | None = None
    data_wait_s: dict[str, Any] | None = None
    timing: dict[str, Any] | None = None
    repeat: int | None = None
    env: dict[str, Any] | None = None
    breakdown: _Breakdown | None = None
    memory: dict[str, Any] | None = None
    flops: dict[str, Any] | None = None
    oom_backoff: dict[str, Any] | None = None
    repeats: _Repeats | None = None
    training: dict[str, Any] | None = None
    gpu_conditions: dict[str, Any] | None = None
    error: str | None = None

    @model_validator(mode="after")
    def _ok_has_a_time(self) -> _Record:
        bs = self.params.get("batch_size")
        if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
            raise ValueError(f"params.batch_size must be a positive whole number, got {bs!r}")
        st = self.step_time_s
        if self.status == "ok":
            # Every reader derives its statistics from the samples (every record benchbench ever wrote has them):
            # what a reader needs, validation requires.
            if st is None or not st.samples:
                raise ValueError("an ok record needs step_time_s.samples (the timed steps)")
            if any(not math.isfinite(x) or x <= 0 for x in st.samples):
                raise ValueError("step_time_s.samples holds a time that is not a positive finite number")
        return self


def check_record(rec: Any) -> str | None:
    """None when the record is usable, else why not (one line)."""
    if not isinstance(rec, dict):
        return f"not a JSON object but {type(rec).__name__}"
    schema = rec.get("schema")
    if isinstance(schema, str) and schema.startswith("benchbench.result/") and schema != SCHEMA:
        return f"schema {schema!r}: written by another benchbench version (this one reads {SCHEMA})"
    try:
        _Record.model_validate(rec)
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(x) for x in e["loc"]) or "record"
        return f"{where}: {e['msg']}" + (f" ({len(err.errors()) - 1} more)" if len(err.errors()) > 1 else "")
    return None
