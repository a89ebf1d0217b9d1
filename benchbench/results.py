"""Result records and their append-only store.

One JSON object per line, written with a single O_APPEND write and fsync the
moment a cell finishes: a crash, a kill or Ctrl-C loses at most the cell that
was running, and every line in the file always parses.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchbench.errors import BenchbenchError
from benchbench.measurement import (  # noqa: F401 - the record type
    REQUIRED,
    SCHEMA,
    STATUSES,
    base_record,
    clean_nans,
    record_key,
)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(2)


def default_path(results_dir: str | Path, suite_slug: str, run_id: str) -> Path:
    return Path(results_dir) / suite_slug / f"{run_id}.jsonl"


class ResultsWriteError(BenchbenchError):
    """The results file could not take a record (disk full, file too large, read-only): the run stops,
    what is already in the file stays whole, and the run can be resumed."""

    exit_code = 1


class ResultStore:
    """Append-only JSONL file: every append is all-or-nothing, and a damaged tail is set aside first."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._checked = False

    def check_writable(self) -> None:
        """Before the first cell: a record measured and then lost to an unwritable --output is the worst case."""
        from benchbench.outputs import check_file

        check_file(self.path, "results")
        self.repair_tail()

    def repair_tail(self) -> Path | None:
        """A file whose last line has no newline was cut mid-write (a full disk, a kill): move that partial
        line aside (never delete it) so the next record starts on a line of its own."""
        self._checked = True
        try:
            size = self.path.stat().st_size
        except OSError:
            return None
        if size == 0:
            return None
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return None
            f.seek(0)
            data = f.read()
            keep = data.rfind(b"\n") + 1
            aside = self.path.with_name(self.path.name + f".damaged-{time.strftime('%Y%m%dT%H%M%S')}")
            aside.write_bytes(data[keep:])
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        print(f"warning: {self.path} ended in a partial line ({size - keep} bytes, cut mid-write); moved it to "
              f"{aside} and repaired the file", file=sys.stderr)
        return aside

    def append(self, record: dict[str, Any]) -> None:
        line = record_line(record).encode()
        if not self._checked:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.repair_tail()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ResultsWriteError(f"cannot open {self.path} to record a cell: {exc.strerror or exc}") from None
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(28, f"short write ({written} of {len(line)} bytes)")
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, size)  # all or nothing: the file ends where the last whole record ended
            except OSError:
                pass
            raise ResultsWriteError(f"could not record a cell in {self.path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)


def record_line(record: dict[str, Any]) -> str:
    """A record as one line of the results file (JSON has no NaN: a statistic that does not exist is null)."""
    return json.dumps(record, sort_keys=False, allow_nan=False, default=_jsonable) + "\n"


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_records(paths: Iterable[str | Path], warn: bool = True) -> list[dict[str, Any]]:
    """Records from files or directories of *.jsonl; unreadable lines are reported, not fatal."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted(p.rglob("*.jsonl")))
        elif p.is_file():
            files.append(p)
        else:
            raise BenchbenchError(f"results file not found: {p}")
    if not files:
        raise BenchbenchError("no results files (*.jsonl) found in " + ", ".join(str(p) for p in paths))
    from benchbench.record_check import check_record

    out: list[dict[str, Any]] = []
    skipped = 0
    for f in files:
        try:
            text = f.read_text(encoding="utf-8-sig")  # a BOM is not part of the first record
        except (OSError, UnicodeDecodeError) as exc:
            raise BenchbenchError(f"cannot read results file {f}: {exc}") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                why = "is not valid JSON"
            else:
                problem = check_record(rec)
                if problem is None:
                    out.append(complete(rec))
                    continue
                why = f"is not a usable benchbench record: {problem}"
            skipped += 1
            if warn and skipped <= 20:
                print(f"warning: {f}:{n} {why}; skipped", file=sys.stderr)
    if warn and skipped > 20:
        print(f"warning: {skipped - 20} more unusable lines skipped", file=sys.stderr)
    if not out:
        raise BenchbenchError("no benchbench result records in " + ", ".join(str(f) for f in files))
    return out


def complete(rec: dict[str, Any]) -> dict[str, Any]:
    """A validated record with every field a reader may look up present (null when the record lacks it), as
    the runner writes them: what validation accepts, readers can read."""
    full = base_record(rec["suite"], rec["run_id"], rec["cell_id"], rec.get("label") or rec["cell_id"], rec["params"])
    full.update(rec)
    if not full.get("label"):
        full["label"] = rec["cell_id"]
    return full


def merge_repeats(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per cell: the last one, with the samples of all its ok repeats pooled.

    `run --repeat N` and `--resume` can leave several records of a cell; reports
    show one row per cell, and the spread between runs is kept in `repeats`.
    """
    from benchbench.measurement import Measurement, merge

    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(r["cell_id"], []).append(r)
    out = []
    for recs in groups.values():
        ok = [r for r in recs if Measurement(r).runs]
        if len(ok) <= 1:
            out.append(ok[0] if ok else recs[-1])
            continue
        out.append(clean_nans(merge(ok)))
    return out


def to_pytest_benchmark(records: list[dict[str, Any]]) -> dict[str, Any]:
    """pytest-benchmark's JSON (storage format), one benchmark per cell, step samples as rounds."""
    import platform

    from benchbench.measurement import Measurement

    env = next((r.get("env") for r in records if r.get("env")), {}) or {}
    benches = []
    for r in merge_repeats(records):
        m = Measurement(r)
        if not m.ok or not m.samples:
            continue
        data = m.samples
        s = m.stats
        import numpy as np

        a = np.asarray(data)
        q1, q3 = (float(x) for x in np.percentile(a, [25, 75]))
        iqr = q3 - q1
        std = float(a.std(ddof=1)) if a.size > 1 else 0.0
        lo, hi = q1 - 1.5 * iqr, q3 + 1.5 * iqr
        name = f"{r.get('suite')}::{r.get('label') or r['cell_id']}"
        benches.append({
            "group": r.get("suite"),
            "name": name,
            "fullname": f"{name}[{r['cell_id']}]",
            "params": {"cell_id": r["cell_id"]},
            "param": r["cell_id"],
            "extra_info": {"throughput_img_s": m.throughput, "batch_size": m.batch_ran,
                           "images_per_step": m.images_per_step,
                           "data_wait_fraction": (r.get("data_wait_s") or {}).get("fraction"),
                           "params": r["params"]},
            "options": {"disable_gc": False, "timer": m.clock, "min_rounds": len(data),
                        "max_time": 0, "min_time": 0, "warmup": True},
            "stats": {
                "min": s["min"], "max": s["max"], "mean": s["mean"], "stddev": std, "rounds": len(data),
                "median": s["median"], "iqr": iqr, "q1": q1, "q3": q3,
                "iqr_outliers": int(((a < lo) | (a > hi)).sum()),
                "stddev_outliers": int((np.abs(a - s["mean"]) > std).sum()),
                "outliers": f"{int((np.abs(a - s['mean']) > std).sum())};{int(((a < lo) | (a > hi)).sum())}",
                "ld15iqr": float(a[a >= lo].min()), "hd15iqr": float(a[a <= hi].max()),
                "ops": 1.0 / s["mean"], "total": float(a.sum()), "data": data, "iterations": 1,
            },
        })
    try:
        from importlib.metadata import version

        pbv = version("pytest-benchmark")
    except Exception:  # noqa: BLE001 - the export does not need pytest-benchmark installed
        pbv = "5.1.0"
    return {
        "machine_info": {"node": platform.node(), "processor": env.get("cpu"), "machine": platform.machine(),
                         "python_version": env.get("python"), "release": platform.release(), "system": platform.system(),
                         "cpu": {"brand_raw": env.get("cpu")}, "gpu": env.get("gpu"),
                         "benchbench_fingerprint": env.get("fingerprint")},
        "commit_info": {"id": env.get("git_commit"), "dirty": str(env.get("git_commit", "")).endswith("-dirty")},
        "benchmarks": benches,
        "datetime": next((r.get("started_at") for r in records if r.get("started_at")), None),
        "version": pbv,
    }


def completed_runs(records: list[dict[str, Any]]) -> dict[str, int]:
    """ok records per cell: how many of a cell's repeats are already done (for --resume)."""
    from benchbench.measurement import is_ok

    done: dict[str, int] = {}
    for r in records:
        if is_ok(r):
            done[r["cell_id"]] = done.get(r["cell_id"], 0) + 1
    return done


def dedupe(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each record once (shards and merges can carry the same record twice)."""
    seen: set[str] = set()
    out = []
    for r in records:
        key = record_key(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out
