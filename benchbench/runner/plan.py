"""Planning a run from what it was asked: a resumed run continues as it was started.

A results file carries each run's invocation (suite hash, filters, shard, repeat, explain) in its records, so
`--resume` continues *that* run: the second round of a `--repeat 2`, the cells its filters chose, its shard,
without explanations if it had none. A command line that contradicts it, or another suite's file, is refused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from benchbench.errors import BenchbenchError
from benchbench.record import Record


def file_sha1(path: Path) -> str | None:
    try:
        return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:
        return None


def resume_path(resume: str, results_dir: Path, slug: str) -> Path:
    """The file `--resume` names, or this suite's latest run for `--resume latest`."""
    if resume != "latest":
        p = Path(resume)
        if not p.is_file():
            raise BenchbenchError(f"--resume: results file not found: {p}")
        return p
    runs = sorted((Path(results_dir) / slug).glob("*.jsonl"))
    if not runs:
        raise BenchbenchError(f"--resume latest: no earlier run of this suite in {Path(results_dir) / slug}")
    return runs[-1]


def continue_invocation(prior: list[Record], suite_name: str, suite_path: Path, filters: list[str] | None,
                        shard: str | None, repeat: int | None, explain: bool | None) -> tuple[Any, ...]:
    """(filters, shard, repeat, explain) the resumed run was asked, and a warning or None."""
    others = sorted({r.suite for r in prior} - {suite_name})
    if others:
        raise BenchbenchError(f"--resume: that results file belongs to suite {', '.join(map(repr, others))}, not "
                              f"{suite_name!r}; resume it with its own suite")
    if any(r.advise is not None for r in prior):
        raise BenchbenchError("--resume: that is an advise experiment's results file, not a run's; a results file "
                              "belongs to one kind of run (resume it with `advise --resume`)")
    inv = next((r.invocation for r in reversed(prior) if r.invocation is not None), None)
    if inv is None:  # written before runs recorded what they were asked: the command line decides
        return filters, shard, repeat, explain, None
    asked = inv.model_dump()
    given = {"filters": list(filters) if filters else None, "shard": shard, "repeat": repeat, "explain": explain}
    clash = [f"--{k} {v!r} (the run had {asked.get(k)!r})" for k, v in given.items()
             if v is not None and v != asked.get(k) and not (k == "filters" and not asked.get(k) and not v)]
    if clash:
        raise BenchbenchError("--resume continues the run as it was started; this command line contradicts it: "
                              + "; ".join(clash) + ". Leave these options out to continue it, or start a new run.")
    note = None
    if asked.get("suite_sha1") and asked["suite_sha1"] != file_sha1(suite_path):
        note = f"{suite_path} changed since this run started; cells it no longer has are left, new ones run"
    return asked.get("filters") or None, asked.get("shard"), asked.get("repeat"), asked.get("explain"), note
