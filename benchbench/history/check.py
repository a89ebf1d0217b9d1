"""`history check`: change points in each cell's series, and why they happened."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from benchbench.history.changepoint import ChangePoint, changes
from benchbench.history.store import Series
from benchbench.measure.env import env_diff


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

    @property
    def ratio(self) -> float:
        return self.after_s / self.before_s

    @property
    def direction(self) -> str:
        return "slower" if self.ratio > 1 else "faster"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "direction": self.direction}


def _deltas(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """Phase / module / operator / GPU deltas between the nights on either side of a change."""
    if not before or not after:
        return {}
    from benchbench.timeline.names import short_op

    out: dict[str, Any] = {}
    pb, pa = before.get("phases") or {}, after.get("phases") or {}
    out["phase_deltas_s"] = {k: pa.get(k, 0.0) - pb.get(k, 0.0) for k in set(pa) | set(pb)}
    mb, ma = before.get("modules") or {}, after.get("modules") or {}
    tot = lambda m, k: sum((m.get(k) or {}).get(x, 0.0) for x in ("forward", "backward"))  # noqa: E731
    out["module_deltas_s"] = {k: tot(ma, k) - tot(mb, k) for k in set(ma) | set(mb) if "." not in k}
    ob = {short_op(o["name"]): o["self_time_s"] for o in before.get("top_ops") or []}
    oa = {short_op(o["name"]): o["self_time_s"] for o in after.get("top_ops") or []}
    ops = sorted(((oa.get(n, 0.0) - ob.get(n, 0.0), n) for n in set(oa) | set(ob)), reverse=True)
    out["top_op_deltas_s"] = {n: d for d, n in ops[:5]}
    gb, ga = before.get("gpu") or {}, after.get("gpu") or {}
    if gb and ga:
        out["gpu_busy_delta_s"] = (ga.get("gpu_busy_s") or 0.0) - (gb.get("gpu_busy_s") or 0.0)
        out["gpu_idle_delta_s"] = (ga.get("gpu_idle_s") or 0.0) - (gb.get("gpu_idle_s") or 0.0)
    return out


def check_series(s: Series, threshold: float, last: int, min_size: int = 3) -> list[Change]:
    out = []
    for cp in changes(s.values, threshold, min_size=min_size):
        out.append(_change(s, cp, last))
    return out


def _change(s: Series, cp: ChangePoint, last: int) -> Change:
    first, prev = s.nights[cp.index], s.nights[cp.index - 1]
    diff = env_diff(prev.env, first.env)
    return Change(
        suite=s.suite, cell_id=s.cell_id, label=s.label, fingerprint=s.fingerprint, night_index=cp.index,
        nights=len(s.nights), run_id=first.run_id, git_commit=first.git_commit, previous_commit=prev.git_commit,
        started_at=first.started_at, before_s=cp.before_mean, after_s=cp.after_mean, p_value=cp.p_value,
        recent=cp.index >= len(s.nights) - last,
        env_changes={k: {"before": a, "after": b} for k, (a, b) in diff.items()},
        why=_deltas(prev.breakdown, first.breakdown),
    )


def check(all_series: list[Series], threshold: float, last: int) -> list[Change]:
    out: list[Change] = []
    for s in all_series:
        out.extend(check_series(s, threshold, last))
    return out


def failing(found: list[Change]) -> list[Change]:
    """Recent slowdowns: what fails a nightly check."""
    return [c for c in found if c.recent and c.direction == "slower"]
