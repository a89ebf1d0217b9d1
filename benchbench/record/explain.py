"""What explains a cell's step, as records carry it: memory, FLOPs and the time breakdown (with the GPU's own
timeline on CUDA), written by the explanation passes after the timed steps."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from benchbench.record.parts import Part


class PhasePeak(Part):
    """One phase of a step: the CUDA allocator's peaks, or the growth of the process's RSS on a CPU."""

    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    rss_growth_bytes: int | None = None


class Memory(Part):
    peak_rss_bytes: int | None = None
    rss_growth_bytes: int | None = None
    cuda_peak_allocated_bytes: int | None = None
    cuda_peak_reserved_bytes: int | None = None
    by_phase: dict[str, PhasePeak] | None = None
    activations_by_module: dict[str, float] | None = None
    peak_bytes: int | None = None
    peak_reserved_bytes: int | None = None
    basis: str | None = None
    per_rank: list[dict[str, Any]] | None = None

    @property
    def peak(self) -> float | None:
        """The cell's peak memory: the CUDA allocator's on a GPU, the process RSS on a CPU."""
        return self.cuda_peak_allocated_bytes or self.peak_rss_bytes


class Flops(Part):
    convention: str | None = None
    counter: str | None = None
    forward_per_image: float | None = None
    by_module: dict[str, float] = Field(default_factory=dict)
    unsupported_ops: list[str] = Field(default_factory=list)
    forward_per_image_flopcounter: float | None = None
    train_step_per_image: float | None = None
    train_step_by_kind_per_image: dict[str, float] | None = None
    achieved_flops_per_s: float | None = None
    peak_flops_per_s: float | None = None
    peak_basis: str | None = None
    math_modes: dict[str, str] | None = None
    utilization: float | None = None
    fvcore_error: str | None = None
    #: counted on an earlier cell of the same model shape (`runner.passes.flops`): which, and when
    kept_from: str | None = None


class ModuleTime(Part):
    forward: float = 0.0
    backward: float = 0.0

    @property
    def total(self) -> float:
        return self.forward + self.backward


class Op(Part):
    name: str
    self_time_s: float
    calls: int | None = None
    share: float | None = None


class Sync(Part):
    op: str
    phase: str
    call: str
    per_step: float
    wait_s_per_step: float = 0.0
    gpu_idle_after_s_per_step: float = 0.0
    where: str | None = None  # the user's own line that made it (file:line, from the trace's Python stacks)
    #: where the wait is not a value read on the host: `htod_pageable` (a copy to the device from pageable
    #: memory, which torch waits for), `free` (cudaFree: the caching allocator returning memory)
    kind: str | None = None


class KernelTime(Part):
    name: str
    gpu_s: float
    share: float | None = None


class GpuTimeline(Part):
    """Per-step GPU figures read from a profiler trace (`timeline.gpu.summarize_gpu`): medians over steps."""

    steps: int = 0
    step_source: str = "bb.step"
    launches_per_step: float = 0.0
    kernels_per_step: float = 0.0
    gpu_busy_s: float = 0.0
    gpu_span_s: float = 0.0
    gpu_phases_s: dict[str, float] = Field(default_factory=dict)
    gpu_modules_s: dict[str, ModuleTime] = Field(default_factory=dict)
    host_syncs: list[Sync] = Field(default_factory=list)
    profiled_step_s: float = 0.0
    launch_api_s: float = 0.0
    top_kernels: list[KernelTime] = Field(default_factory=list)
    top_ops: list[KernelTime] = Field(default_factory=list)
    profiled_gaps_s: dict[str, float] = Field(default_factory=dict)
    harness_syncs_excluded: dict[str, int] = Field(default_factory=dict)
    unmatched_device_ops: int = 0
    launch_delay_median_s: float | None = None
    launch_queue_empty_share: float | None = None
    step_time_s: float | None = None
    step_time_source: str | None = None
    gpu_idle_s: float | None = None
    gpu_idle_fraction: float | None = None
    idle_breakdown_s: dict[str, float] | None = None
    #: how the syncs' lines were named where that was not the window that gave the figures (attach: a second
    #: window with Python stacks)
    sync_lines_basis: str | None = None
    comm_s: float | None = None  # NCCL collectives a step (a DDP rank's trace), their union
    comm_exposed_s: float | None = None  # ... the part of it no compute kernel overlapped
    collectives_s: list[float] | None = None  # every collective kernel's duration, in order

    def idle(self, cause: str) -> float:
        return (self.idle_breakdown_s or {}).get(cause) or 0.0


class Breakdown(Part):
    """Where a step's time goes: phases, modules (forward and backward), operators; on a GPU its timeline."""

    time_basis: str | None = None
    profiled_steps: int | None = None
    step_s: float | None = None
    phases: dict[str, float] = Field(default_factory=dict)
    phases_sum_s: float | None = None
    modules: dict[str, ModuleTime] = Field(default_factory=dict)
    backward_unattributed_s: float | None = None
    top_ops: list[Op] = Field(default_factory=list)
    op_self_total_s: float | None = None
    dataloader_next_s: float | None = None
    trace: str | None = None
    gpu: GpuTimeline | None = None

    def module_total(self, name: str) -> float:
        m = self.modules.get(name)
        return m.total if m else 0.0
