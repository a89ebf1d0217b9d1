"""Findings: sentences that say why a cell is slow, each with the numbers behind it.

No finding is made without evidence above its threshold (every threshold is in
`records.Thresholds`). Advice names the suite's own cell that measures the change
when there is one, so a suggestion is a measurement, not an opinion. One module
per family of rules; a new rule is a function in one of them plus a line in RULES.
"""

from __future__ import annotations

import math

from benchbench.analysis.findings import (
    capacity,
    efficiency,
    epochs,
    gpu,
    inputs,
    modules,
    optimizer,
    precision,
    ranks,
    scaling,
)
from benchbench.analysis.findings import pairs as pair_rules
from benchbench.analysis.records import THRESHOLDS, Finding, Thresholds
from benchbench.record import Record

RULES = (
    modules.dominant_module,
    scaling.channel_scaling,
    gpu.launch_bound,
    gpu.host_sync,
    inputs.input_bound,
    inputs.epoch_starts,
    capacity.input_capacity,
    efficiency.utilization,
    efficiency.layout,
    precision.amp_compile,
    precision.amp_compile_gpu,
    optimizer.optimizer_share,
    scaling.scaling,
    epochs.epoch_account,
    ranks.ranks,
)


def find_all(records: list[Record], t: Thresholds = THRESHOLDS,
             pairs: list[tuple[str, str]] | None = None) -> list[Finding]:
    """Every rule over the records; `pairs` asks for the difference of named cells (`--pair A,B`)."""
    out: list[Finding] = []
    for fn in RULES:
        out.extend(fn(records, t))
    out.extend(pair_rules.pairwise(records, t, pairs))
    return [f for f in out if all(not (isinstance(v, float) and math.isnan(v)) for v in f.evidence.values())]

__all__ = ["RULES", "THRESHOLDS", "Finding", "Thresholds", "find_all"]
