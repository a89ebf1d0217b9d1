"""The history store: every record of every night, in one SQLite file.

SQLite rather than DuckDB: it ships with Python (no 30 MB dependency on a CI
runner), one file is easy to keep as a CI artifact or cache, and the queries
here are a few hundred rows per cell. Each record is stored once, keyed by a
hash of (run id, cell id, repeat, start time), so adding the same results file
twice adds nothing.

A *night* is one `benchbench run` (one run id), possibly with several runs per
cell (`--repeat`). A *series* is a cell's nights in one environment
(fingerprint): a driver upgrade starts a new series, not a regression.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchbench.analysis.host import probes, stored
from benchbench.errors import BenchbenchError
from benchbench.record import Record
from benchbench.record.columns import HISTORY
from benchbench.record.epochs import PART_NAMES
from benchbench.record.explain import Breakdown

DEFAULT_DB = Path("results") / "history.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    suite TEXT NOT NULL,
    cell_id TEXT NOT NULL,
    label TEXT,
    fingerprint TEXT,
    git_commit TEXT,
    started_at TEXT,
    repeat INTEGER,
    status TEXT NOT NULL,
    images_per_step INTEGER,
    median_s REAL, p10_s REAL, p90_s REAL, iqr_s REAL, cv REAL, mean_s REAL, min_s REAL, max_s REAL, n INTEGER,
    throughput_img_s REAL,
    data_wait_fraction REAL,
    gpu_busy_s REAL,
    gpu_idle_fraction REAL,
    env_json TEXT,
    breakdown_json TEXT,
    source TEXT
);
CREATE INDEX IF NOT EXISTS records_series ON records (suite, cell_id, fingerprint, started_at);
"""
#: Schema versions (PRAGMA user_version), each a list of columns added to `records`; a store is migrated
#: in place when opened, as asv migrates its results files. Version 0: a store made before versioning.
MIGRATIONS: dict[int, list[tuple[str, str]]] = {
    1: [],  # the table above
    2: [("gpu_throttled", "INTEGER"), ("gpu_shared", "INTEGER"), ("energy_j_per_image", "REAL"),
        ("gpu_conditions_json", "TEXT")],
    3: [("cpu_contended", "INTEGER"), ("cpu_contention_json", "TEXT")],
    4: [("gate_threshold", "REAL")],  # the cell's own minimum effect: the nightly check judges it by it
    5: [("epoch_s", "REAL"), ("epoch_parts_json", "TEXT")],  # `attach --epochs`: the median epoch, its parts
    6: [("host_speed_json", "TEXT")],  # the host's speed on fixed work (`measure.host_speed`): nights' hosts differ
}
SCHEMA_VERSION = max(MIGRATIONS)


class HistoryStore:
    def __init__(self, path: str | Path = DEFAULT_DB, create: bool = True) -> None:
        self.path = Path(path)
        if create:
            from benchbench.outputs import check_file

            check_file(self.path, "the history store")
        elif not self.path.is_file():
            raise BenchbenchError(f"history store not found: {self.path} (create it with `benchbench history add`)")
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.executescript(SCHEMA)
            self._migrate()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise BenchbenchError(f"history store {self.path} is locked by another writer for over 30 s; "
                                      "try again when it is done") from None
            if "readonly" in str(exc) or "read-only" in str(exc) or "unable to open" in str(exc):
                raise BenchbenchError(f"history store {self.path} cannot be written: {exc}") from None
            raise BenchbenchError(f"{self.path} is not a benchbench history store: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise BenchbenchError(f"{self.path} is not a benchbench history store: {exc}") from None

    def _migrate(self) -> None:
        """Bring an older store to SCHEMA_VERSION in place: add the columns later versions brought."""
        version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise BenchbenchError(f"history store {self.path} has schema version {version}, newer than this "
                                  f"benchbench reads ({SCHEMA_VERSION}): upgrade benchbench")
        if version == SCHEMA_VERSION:
            return
        have = {row[1] for row in self.db.execute("PRAGMA table_info(records)")}
        with self.db:
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for name, kind in MIGRATIONS[v]:
                    if name not in have:
                        self.db.execute(f"ALTER TABLE records ADD COLUMN {name} {kind}")
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self.db.close()

    def add(self, records: Iterable[Record], source: str = "") -> tuple[int, int]:
        """Insert records not seen before; returns (added, already there)."""
        added = seen = 0
        with self.db:
            for r in records:
                keep = None
                if r.breakdown:  # what the why of a change needs, not the whole trace summary
                    keep = r.breakdown.model_dump(include={"time_basis", "step_s", "phases", "modules", "top_ops"})
                    if r.gpu:
                        keep["gpu"] = r.gpu.model_dump(include={"gpu_busy_s", "gpu_idle_s", "gpu_phases_s",
                                                                "gpu_modules_s", "gpu_idle_fraction"})
                env = r.env.model_dump(exclude_none=True) if r.env else {}
                cpu = r.cpu_contention
                row = {
                    "key": r.key, "run_id": r.run_id, "suite": r.suite, "cell_id": r.cell_id, "label": r.label,
                    "fingerprint": env.get("fingerprint"), "git_commit": env.get("git_commit"),
                    "started_at": r.started_at, "repeat": r.repeat, "status": r.status,
                    "images_per_step": r.images_per_step if r.ok else None,
                    **{col: get(r) for col, get in HISTORY.items()},
                    "env_json": json.dumps(env, sort_keys=True), "breakdown_json": json.dumps(keep) if keep else None,
                    "source": source,
                    "gpu_conditions_json": r.gpu_conditions.model_dump_json(exclude_none=True)
                    if r.gpu_conditions else None,
                    "cpu_contended": None if cpu is None or cpu.contended is None else int(cpu.contended),
                    "cpu_contention_json": (cpu.model_dump_json(exclude_none=True, exclude={"per_rank"})
                                            if cpu else None),
                    "gate_threshold": r.params.get("gate_threshold"),
                    "epoch_s": r.epochs.wall_s if r.epochs else None,
                    "epoch_parts_json": json.dumps({p: r.epochs.part_s(p) for p in PART_NAMES})
                    if r.epochs and r.epochs.whole else None,
                    "host_speed_json": json.dumps(stored(host[0])) if (host := probes([r])) else None,
                }
                cols = ",".join(row)
                cur = self.db.execute(f"INSERT OR IGNORE INTO records ({cols}) VALUES ({','.join('?' * len(row))})",
                                      list(row.values()))
                if cur.rowcount:
                    added += 1
                else:
                    seen += 1
        return added, seen

    def rows(self, suite: str | None = None, cell: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT * FROM records WHERE status = 'ok' AND median_s IS NOT NULL"
        args: list[Any] = []
        if suite:
            q += " AND suite = ?"
            args.append(suite)
        if cell:
            q += " AND (cell_id LIKE ? OR label LIKE ?)"
            args += [cell + "%", f"%{cell}%"]
        q += " ORDER BY started_at, run_id, repeat"
        cur = self.db.execute(q, args)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM records").fetchone()[0])


@dataclass
class Night:
    """One run id of one cell: its runs summarised."""

    run_id: str
    started_at: str
    git_commit: str | None
    run_medians_s: list[float]
    p10_s: float
    p90_s: float
    env: dict[str, Any]
    breakdown: Breakdown | None
    images_per_step: int | None
    epoch_s: float | None = None  # the median whole epoch over its runs (`attach --epochs`), where accounted
    host: list[dict[str, Any]] = field(default_factory=list)  # each run's host figures, where it timed them

    @property
    def median_s(self) -> float:
        """Geometric mean of the run medians: the night's value (the unit compare uses too)."""
        return float(math.exp(np.mean(np.log(self.run_medians_s))))


@dataclass
class Series:
    suite: str
    cell_id: str
    label: str
    fingerprint: str | None
    nights: list[Night] = field(default_factory=list)
    threshold: float | None = None  # the cell's gate_threshold, as its latest night was run with

    @property
    def values(self) -> list[float]:
        return [n.median_s for n in self.nights]


def _breakdown(text: str) -> Breakdown | None:
    """A night's stored breakdown (the parts a change's why needs); one an older version stored differently
    is left out of the why, never a crash."""
    from pydantic import ValidationError

    try:
        return Breakdown.model_validate(json.loads(text))
    except (ValueError, ValidationError):
        return None


def _band(rows: list[dict[str, Any]], key: str) -> float:
    """The median over a night's runs of a band edge; a row stored without it (a store an older benchbench
    filled from a record without samples) falls back to its median: a band of zero width, never a crash."""
    return float(np.median([r[key] if r[key] is not None else r["median_s"] for r in rows]))


def series(rows: list[dict[str, Any]]) -> list[Series]:
    """Rows grouped into per-cell, per-environment series of nights, oldest first.

    A night whose work per step differs from the series' (OOM back-off, another
    world size) starts a series of its own too: different work is not a trend.
    """
    by_night: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        key = (r["suite"], r["cell_id"], r["fingerprint"], r["images_per_step"], r["run_id"])
        by_night.setdefault(key, []).append(r)
    out: dict[tuple[Any, ...], Series] = {}
    for (suite, cid, fp, work, run_id), rs in by_night.items():
        s = out.setdefault((suite, cid, fp, work), Series(suite, cid, rs[-1]["label"] or cid, fp))
        s.threshold = next((r["gate_threshold"] for r in reversed(rs) if r.get("gate_threshold")), s.threshold)
        bd = next((_breakdown(r["breakdown_json"]) for r in reversed(rs) if r["breakdown_json"]), None)
        s.nights.append(Night(
            run_id=run_id, started_at=min(r["started_at"] or "" for r in rs), git_commit=rs[-1]["git_commit"],
            run_medians_s=[r["median_s"] for r in rs], p10_s=_band(rs, "p10_s"), p90_s=_band(rs, "p90_s"),
            env=json.loads(rs[-1]["env_json"] or "{}"),
            breakdown=bd, images_per_step=work,
            epoch_s=float(np.median(eps)) if (eps := [r["epoch_s"] for r in rs if r.get("epoch_s")]) else None,
            host=[json.loads(r["host_speed_json"]) for r in rs if r.get("host_speed_json")]))
    for s in out.values():
        s.nights.sort(key=lambda n: (n.started_at, n.run_id))
    return sorted(out.values(), key=lambda s: (s.suite, s.label, s.nights[0].started_at if s.nights else ""))


def load_series(db: str | Path, suite: str | None = None, cell: str | None = None) -> list[Series]:
    """The store's series (optionally one suite / cell); an empty answer is an input error."""
    store = HistoryStore(db, create=False)
    try:
        found = series(store.rows(suite, cell))
    finally:
        store.close()
    if not found:
        raise BenchbenchError(f"no ok records in {db}" + (f" for suite {suite!r}" if suite else "")
                              + (f" and cell {cell!r}" if cell else ""))
    return found


def nights_cv(db: str | Path, fingerprints: set[str | None]) -> dict[str, float]:
    """Per cell id, the night-to-night CV of its series in these environments (for compare --history);
    cells with too few nights to know are left out."""
    from benchbench.analysis.gate_stats import night_cv

    store = HistoryStore(db, create=False)
    try:
        found = series(store.rows())
    finally:
        store.close()
    return {s.cell_id: cv for s in found if s.fingerprint in fingerprints and (cv := night_cv(s.values)) is not None}
