"""The machine's state while a cell was timed, as records carry it: the GPU (NVML), the CPU cores (/proc), and
the environment fingerprint (`measure.gpu_state`, `measure.contention`, `measure.env` write them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from benchbench.record.parts import Part


class Span(Part):
    min: float
    median: float
    max: float


class GpuConditions(Part):
    """NVML's view of the GPU while the timed block ran (`measure.gpu_state`)."""

    source: str = "nvml"
    samples: int = 0
    sm_clock_mhz: Span | None = None
    sm_clock_max_mhz: float | None = None
    sm_clock_ratio: float | None = None
    mem_clock_mhz: Span | None = None
    mem_clock_max_mhz: float | None = None
    temperature_c: Span | None = None
    power_w: Span | None = None
    power_limit_w: float | None = None
    clock_event_reasons: list[str] = Field(default_factory=list)
    reason_samples: list[int | None] | None = None
    reasons_api: str | None = None
    throttled: bool | None = None
    throttle_reasons: list[str] = Field(default_factory=list)
    power_capped: bool | None = None
    power_cap_share: float | None = None
    degrading_share: float | None = None
    reasons_basis: str | None = None
    other_processes: int | None = None
    shared: bool | None = None
    persistence_mode: bool | None = None
    mig: bool | None = None
    mig_uuid: str | None = None
    energy_j: float | None = None
    energy_j_per_image: float | None = None
    per_rank: list[GpuConditions | None] | None = None


class OtherProcess(Part):
    pid: int
    comm: str
    cpu_s: float


class CpuContention(Part):
    """Other processes on the cell's cores while the timed block ran (`measure.contention`)."""

    source: str = "/proc"
    cores: list[int] = Field(default_factory=list)
    n_cores: int = 0
    cell_threads: int = 0
    dataloader_workers: int = 0
    wall_s: float | None = None
    loadavg_start: list[float] = Field(default_factory=list)
    loadavg_end: list[float] = Field(default_factory=list)
    oversubscribed: bool = False
    own_cpu_s: float | None = None
    top_others: list[OtherProcess] = Field(default_factory=list)
    busy_core_s: float | None = None
    others_cpu_s: float | None = None
    others_share: float | None = None
    steal_share: float | None = None
    contended: bool | None = None
    why: str | None = None
    per_rank: list[CpuContention | None] | None = None


class Environment(BaseModel):
    """What a number was measured on (`measure.env`): open, as machines grow facts; the fingerprint keys it."""

    model_config = ConfigDict(extra="allow")
    device: str | None = None
    cpu: str | None = None
    cpu_count: int | None = None
    threads: int | None = None
    torch: str | None = None
    cuda: str | None = None
    gpu: str | None = None
    gpu_memory_bytes: int | None = None
    driver: str | None = None
    git_commit: str | None = None
    fingerprint: str | None = None
    peak_flops: dict[str, dict[str, Any]] | None = None
    node: str | None = None
