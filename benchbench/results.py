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

SCHEMA = "benchbench.result/1"
STATUSES = ("ok", "oom", "error", "timeout", "skipped")
REQUIRED = ("schema", "suite", "run_id", "cell_id", "params", "status")


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(2)


def default_path(results_dir: str | Path, suite_slug: str, run_id: str) -> Path:
    return Path(results_dir) / suite_slug / f"{run_id}.jsonl"


def base_record(suite: str, run_id: str, cell_id: str, label: str, params: dict[str, Any]) -> dict[str, Any]:
    """Every field consumers rely on, present (possibly null) whatever the status."""
    return {
        "schema": SCHEMA,
        "suite": suite,
        "run_id": run_id,
        "cell_id": cell_id,
        "label": label,
        "params": params,
        "status": "error",
        "error": None,
        "throughput_img_s": None,
        "step_time_s": None,
        "data_wait_s": None,
        "warmup": None,
        "params_count": None,
        "memory": None,
        "env": None,
        "started_at": None,
        "wall_s": None,
    }


class ResultStore:
    """Append-only JSONL file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=False, allow_nan=False, default=_jsonable) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):  # pragma: no cover - regular files write whole buffers
                raise OSError(f"short write to {self.path}")
            os.fsync(fd)
        finally:
            os.close(fd)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def clean_nans(obj: Any) -> Any:
    """JSON has no NaN; a statistic that does not exist is null."""
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: clean_nans(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clean_nans(v) for v in obj]
    return obj


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
    out: list[dict[str, Any]] = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BenchbenchError(f"cannot read results file {f}: {exc}") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if warn:
                    print(f"warning: {f}:{n} is not valid JSON; skipped", file=sys.stderr)
                continue
            if not isinstance(rec, dict) or any(k not in rec for k in REQUIRED):
                if warn:
                    print(f"warning: {f}:{n} is not a benchbench result record; skipped", file=sys.stderr)
                continue
            out.append(rec)
    if not out:
        raise BenchbenchError("no benchbench result records in " + ", ".join(str(f) for f in files))
    return out
