"""Result records and their append-only store.

One JSON object per line, written with a single O_APPEND write and fsync the
moment a cell finishes: a crash, a kill or Ctrl-C loses at most the cell that
was running, and every line in the file always parses.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchbench.errors import BenchbenchError
from benchbench.record import Record, RecordError


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
        from benchbench.outputs import OutputError, check_file

        check_file(self.path, "results")
        try:  # the file exists from now on: an interruption before the first record still leaves one to resume
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        except OSError as exc:
            raise OutputError(f"cannot write results to {self.path}: {exc.strerror or exc}") from None
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

    def append(self, record: Record | dict[str, Any]) -> None:
        """Append one record (a document is validated through the type first: nothing untyped is written)."""
        line = record_line(record if isinstance(record, Record) else Record.of(record)).encode()
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
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # all or nothing: the file ends where the last whole record ended
            raise ResultsWriteError(f"could not record a cell in {self.path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)


def record_line(record: Record) -> str:
    """A record as one line of the results file (JSON has no NaN: a statistic that does not exist is null)."""
    return json.dumps(record.to_json(), sort_keys=False, allow_nan=False, default=_jsonable) + "\n"


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_records(paths: Iterable[str | Path], warn: bool = True) -> list[Record]:
    """Records from files or directories of *.jsonl, each read through the typed record (older schemas
    upgraded); a line that is not a usable record is reported with its file and line, not fatal."""
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
    out: list[Record] = []
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
                out.append(Record.of(json.loads(line)))
                continue
            except (json.JSONDecodeError, RecursionError):
                why = "is not valid JSON"
            except RecordError as exc:
                why = f"is not a usable benchbench record: {exc}"
            skipped += 1
            if warn and skipped <= 20:
                print(f"warning: {f}:{n} {why}; skipped", file=sys.stderr)
    if warn and skipped > 20:
        print(f"warning: {skipped - 20} more unusable lines skipped", file=sys.stderr)
    if not out:
        raise BenchbenchError("no benchbench result records in " + ", ".join(str(f) for f in files))
    return out


def pool_repeats(records: list[Record]) -> list[Record]:
    """One record per cell: the last one, with the samples of all its ok repeats pooled.

    `run --repeat N` and `--resume` can leave several records of a cell; reports
    show one row per cell, and the spread between runs is kept in `repeats`. Where a cell has runs measured on a
    machine fit to measure on, its unfit ones (contended cores, a throttled or shared GPU) are not pooled
    with them (`run --retry-contended` re-measures such cells; the file keeps every record).
    """
    groups: dict[str, list[Record]] = {}
    for r in records:
        groups.setdefault(r.cell_id, []).append(r)
    out = []
    for recs in groups.values():
        ok = [r for r in recs if r.runs]
        clean = [r for r in ok if not r.degraded()]
        if clean and len(clean) < len(ok):  # re-measured on a quiet machine: the unfit runs stay in the file only
            ok = clean
        if len(ok) <= 1:
            out.append(ok[0] if ok else recs[-1])
            continue
        out.append(Record.pool(ok))
    return out


def to_pytest_benchmark(records: list[Record]) -> dict[str, Any]:
    """pytest-benchmark's JSON (storage format), one benchmark per cell, step samples as rounds; the statistics
    are the record's own (`Record.stats`), the extra info its declared export columns."""
    import platform

    from benchbench.record.columns import export_info

    env = next((r.env for r in records if r.env), None)
    envd = env.model_dump() if env else {}
    benches = []
    for r in pool_repeats(records):
        if not r.ok:
            continue
        data = r.samples
        s = r.stats
        import numpy as np

        a = np.asarray(data)
        q1, q3 = (float(x) for x in np.percentile(a, [25, 75]))
        std = float(a.std(ddof=1)) if a.size > 1 else 0.0
        lo, hi = q1 - 1.5 * s["iqr"], q3 + 1.5 * s["iqr"]
        name = f"{r.suite}::{r.label}"
        benches.append({
            "group": r.suite,
            "name": name,
            "fullname": f"{name}[{r.cell_id}]",
            "params": {"cell_id": r.cell_id},
            "param": r.cell_id,
            "extra_info": export_info(r),
            "options": {"disable_gc": False, "timer": r.clock, "min_rounds": len(data),
                        "max_time": 0, "min_time": 0, "warmup": True},
            "stats": {
                "min": s["min"], "max": s["max"], "mean": s["mean"], "stddev": std, "rounds": len(data),
                "median": s["median"], "iqr": s["iqr"], "q1": q1, "q3": q3,
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
    except Exception:
        pbv = "5.1.0"
    return {
        "machine_info": {"node": platform.node(), "processor": envd.get("cpu"), "machine": platform.machine(),
                         "python_version": envd.get("python"), "release": platform.release(),
                         "system": platform.system(), "cpu": {"brand_raw": envd.get("cpu")}, "gpu": envd.get("gpu"),
                         "benchbench_fingerprint": envd.get("fingerprint")},
        "commit_info": {"id": envd.get("git_commit"), "dirty": str(envd.get("git_commit") or "").endswith("-dirty")},
        "benchmarks": benches,
        "datetime": next((r.started_at for r in records if r.started_at), None),
        "version": pbv,
    }


def completed_runs(records: list[Record]) -> dict[str, int]:
    """ok records per cell: how many of a cell's repeats are already done (for --resume)."""
    done: dict[str, int] = {}
    for r in records:
        if r.ok:
            done[r.cell_id] = done.get(r.cell_id, 0) + 1
    return done


def dedupe(records: list[Record]) -> list[Record]:
    """Each record once (shards and merges can carry the same record twice)."""
    seen: set[str] = set()
    out = []
    for r in records:
        if r.key not in seen:
            seen.add(r.key)
            out.append(r)
    return out
