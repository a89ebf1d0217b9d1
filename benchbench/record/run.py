"""A run (one process's timed block) and the input stall: what a record's figures are derived from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchbench.record.parts import DataWait, RunRecord, Wait
from benchbench.record.stats import throughput


@dataclass(frozen=True)
class Run:
    """One process's timed block: the unit of throughput and of the gate.

    A run owns its samples, its work per step and its clock; its throughput is derived from those alone (on
    CUDA from its own block wall time). Pooling several runs' samples over one run's wall time would count
    N runs of steps against one run's time: N times the throughput.
    """

    samples: tuple[float, ...]
    images_per_step: int
    clock: str = "perf_counter"
    block_wall_s: float | None = None
    run_id: str | None = None
    repeat: int | None = None

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def throughput(self) -> float | None:
        return throughput(self.images_per_step, list(self.samples), self.clock, self.block_wall_s)

    def to_part(self) -> RunRecord:
        return RunRecord(samples=list(self.samples), images_per_step=self.images_per_step, clock=self.clock,
                         block_wall_s=self.block_wall_s, run_id=self.run_id, repeat=self.repeat,
                         median_s=self.median, throughput_img_s=self.throughput)

    @classmethod
    def of(cls, r: RunRecord) -> Run:
        return cls(tuple(r.samples), r.images_per_step, r.clock, r.block_wall_s, r.run_id, r.repeat)


@dataclass(frozen=True)
class InputStall:
    """The input stall on the basis the device gives it (GPU starvation, or the host's wait)."""

    wait: Wait
    basis: str
    host_wait: DataWait

    @property
    def fraction(self) -> float | None:
        return self.wait.fraction

    @property
    def median(self) -> float | None:
        return self.wait.median

    @property
    def samples(self) -> list[float]:
        return list(self.wait.samples)
