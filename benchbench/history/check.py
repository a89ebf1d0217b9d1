"""`history check`: change points in each cell's series, and why they happened."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from benchbench.analysis.host import MEANING, moved
from benchbench.analysis.records import breakdown_deltas
from benchbench.history.changepoint import ChangePoint, changes
from benchbench.history.store import Series
from benchbench.measure.env import env_diff
from benchbench.policy import cell_threshold


@dataclass
class Change:
    suite: str
    cell_id: str
    label: str
    fingerprint: str | None
    night_index: int  # 0-based position of the first night of the new regime
    nights: int
    run_id: str
    git_commit: str | None
    previous_commit: str | None
    started_at: str
    before_s: float
    after_s: float
    p_value: float
    recent: bool  # starts within the last K nights
    env_changes: dict[str, Any] = field(default_factory=dict)
    why: dict[str, Any] = field(default_factory=dict)
    host: str | None = None  # the host's speed moved with the change (`analysis.host`): the figures, said

    @property
    def ratio(self) -> float:
        return self.after_s / self.before_s

    @property
    def direction(self) -> str:
        return "slower" if self.ratio > 1 else "faster"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "direction": self.direction}


def check_series(s: Series, threshold: float, last: int, min_size: int = 3) -> list[Change]:
    out = []
    for cp in changes(s.values, threshold, min_size=min_size):
        out.append(_change(s, cp, last))
    return out


def _change(s: Series, cp: ChangePoint, last: int) -> Change:
    first, prev = s.nights[cp.index], s.nights[cp.index - 1]
    diff = env_diff(prev.env, first.env)
    host = moved([p for n in s.nights[:cp.index] for p in n.host], [p for n in s.nights[cp.index:] for p in n.host],
                 "from this night on")
    return Change(
        suite=s.suite, cell_id=s.cell_id, label=s.label, fingerprint=s.fingerprint, night_index=cp.index,
        nights=len(s.nights), run_id=first.run_id, git_commit=first.git_commit, previous_commit=prev.git_commit,
        started_at=first.started_at, before_s=cp.before_mean, after_s=cp.after_mean, p_value=cp.p_value,
        recent=cp.index >= len(s.nights) - last,
        env_changes={k: {"before": a, "after": b} for k, (a, b) in diff.items()},
        why=breakdown_deltas(prev.breakdown, first.breakdown),
        host=host["text"] + MEANING if host else None,
    )


def check(all_series: list[Series], threshold: float | None, last: int) -> list[Change]:
    """Every series judged at its cell's own threshold (its gate_threshold), unless one is given for all."""
    out: list[Change] = []
    for s in all_series:
        out.extend(check_series(s, cell_threshold(s.threshold, threshold), last))
    return out


def failing(found: list[Change]) -> list[Change]:
    """Recent slowdowns: what fails a nightly check."""
    return [c for c in found if c.recent and c.direction == "slower"]
