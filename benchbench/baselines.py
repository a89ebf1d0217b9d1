"""Stored baselines, keyed by environment fingerprint.

`results/baselines/<name>/<fingerprint>.jsonl` holds the records; a nightly
compare picks the file whose fingerprint matches the candidate's machine, so
an H100 night is never judged against an A100 baseline.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchbench.errors import BenchbenchError
from benchbench.measure.env import describe
from benchbench.record import Record
from benchbench.suite import slugify

DEFAULT_ROOT = Path("results") / "baselines"


def _fingerprint(records: list[Record]) -> str:
    fps = {r.env.fingerprint if r.env else None for r in records}
    fps.discard(None)
    if len(fps) != 1:
        raise BenchbenchError(
            f"a baseline must come from one environment; these results have {len(fps)} fingerprints "
            "(merge only results from one machine type)"
        )
    return str(fps.pop())


def check_name(name: str) -> str:
    """A baseline's name is its folder: letters, digits, '.', '-', '_' — never a path, never renamed silently."""
    from benchbench.errors import short_repr

    if not name.strip() or slugify(name) != name or len(name) > 80:
        raise BenchbenchError(f"--name {short_repr(name, 60)}: a baseline name is at most 80 letters, digits, '.', "
                              "'-' or '_' (it names a folder), e.g. main-segformer_channels")
    return name


def save(records: list[Record], name: str, root: Path = DEFAULT_ROOT) -> Path:
    safe = check_name(name)
    fp = _fingerprint(records)
    path = Path(root) / safe / f"{fp}.jsonl"
    from benchbench.outputs import write_text
    from benchbench.results import record_line

    write_text(path, "".join(record_line(r) for r in records), "the baseline")
    env = next((r.env.model_dump(exclude_none=True) for r in records if r.env), {})
    write_text(path.parent / f"{fp}.env.json", json.dumps(env, indent=2, sort_keys=True) + "\n", "the baseline")
    return path


def find(name: str, candidate: list[Record], root: Path = DEFAULT_ROOT) -> Path:
    folder = Path(root) / slugify(name)
    if not folder.is_dir():
        raise BenchbenchError(f"no baseline named {name!r} in {root} (create one with: benchbench baseline save)")
    fp = _fingerprint(candidate)
    path = folder / f"{fp}.jsonl"
    if path.is_file():
        return path
    available = []
    for env_file in sorted(folder.glob("*.env.json")):
        try:
            env = json.loads(env_file.read_text())
            available.append(f"{env_file.name.split('.')[0]} ({describe(env)})")
        except (OSError, ValueError):
            continue
    raise BenchbenchError(
        f"baseline {name!r} has no entry for the candidate's environment {fp}; available: "
        + (", ".join(available) or "none")
        + ". Save one from this machine with: benchbench baseline save RESULTS --name " + name
    )
