"""Every default benchbench decides with, in one place: the CLI's defaults and help text come from here, and
every module that decides reads these rather than a literal of its own.

A default written twice drifts: the 5% minimum effect was in six places, the nightly history check gated at 2%
while the report's history section used 5% and compare each cell's own threshold. A cell's own
`gate_threshold` (a suite setting, resolved once when the suite is built) wins wherever a cell is judged:
compare, history check, the report's history section.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def cache_dir() -> Path:
    """Where benchbench keeps what it made to reuse (generated data sets, the device's peak): BENCHBENCH_CACHE,
    else the user's cache folder."""
    root = os.environ.get("BENCHBENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "benchbench")
    return Path(root)


@dataclass(frozen=True)
class Gate:
    """The regression gate (compare) and every other yes/no benchbench says about a difference."""

    threshold: float = 0.05  # the smallest change that counts (a cell's gate_threshold overrides it)
    alpha: float = 0.01  # two-sided: 99% intervals; p < 0.01 for a change point (false alarms measured at it)
    power: float = 0.80  # for the minimum detectable effect
    #: run-to-run CV of a cell's median when no repeats measured it (CPU measured here; an H100 ~0.1-2%)
    assumed_run_cv: dict[str, float] = field(default_factory=lambda: {"cpu": 0.08, "cuda": 0.02})
    #: a cell whose steps vary more than this (CV) has no stable median to compare: said in every report
    noisy_step_cv: float = 0.25


@dataclass(frozen=True)
class History:
    last: int = 1  # a nightly check fails on a slowdown that starts within the last K nights
    permutations: int = 399  # the change-point permutation test: smallest p = 1/400
    min_size: int = 3  # nights on each side of a change point


@dataclass(frozen=True)
class Advise:
    repeat_max: int = 5  # most runs a side per knob
    min_runs: int = 3  # runs a side before the interval is read
    min_effect: float = Gate.threshold  # the smallest speed-up the experiment decides on


@dataclass(frozen=True)
class Tune:
    start: int = 1
    max_batch: int = 256
    margin: float = 0.9  # of the device's memory a probe may use
    gain: float = 0.05  # throughput gain per doubling below which it has stopped growing
    steps: int = 5
    warmup: int = 3


@dataclass(frozen=True)
class Process:
    kill_grace_s: float = 5.0  # after SIGTERM, before SIGKILL (a cell's group, a DDP rank)
    calibrate_timeout_s: float = 300.0
    factory_import_timeout_s: float = 60.0
    # recorded steps of the profile pass (after one warm-up step under the profiler), at most the cell's own
    # timed steps: a pass explains the timed block, it does not out-measure it (a 1-step cell is profiled once)
    profile_steps: int = 3


@dataclass(frozen=True)
class Attach:
    """A user's script measured as it is (`attach`, `advise --attach`, a command suite's cells)."""

    steps: int = 10  # timed steps after warm-up
    max_warmup: int = 30  # warm-up until steady, at most this many steps
    profile_steps: int = 2  # the profiler window after the timed steps (0: no explanation)
    timeout_s: float = 600.0  # the script is stopped after this long
    #: a command cell's script may use this share of the cell's timeout (the rest: its hooks write what was
    #: measured and the record is made, before the cell's process is ended from outside)
    command_share: float = 0.9


GATE = Gate()
HISTORY = History()
ADVISE = Advise()
TUNE = Tune()
PROCESS = Process()
ATTACH = Attach()


def cell_threshold(own: float | None, given: float | None = None) -> float:
    """An explicit threshold (a command's --threshold) wins; else the cell's own gate_threshold; else the gate's."""
    if given is not None:
        return given
    return float(own) if own else GATE.threshold
