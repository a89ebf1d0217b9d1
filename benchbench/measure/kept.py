"""What a machine keeps between runs, under the cache folder (`policy.cache_dir()/<kind>/<key>.json`): values
that belong to the machine or to a model, not to a run — the device's matmul peak (`measure.peak_cache`), a
model shape's FLOPs (`runner.passes.flops`) — so that only the first run that needs one pays for it.

Reading is forgiving and writing is atomic: a file that cannot be read, of another layout or for another key is a
miss (the value is measured again), and one that cannot be written costs the next run a measurement, never this
run its result."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from benchbench.policy import cache_dir

VERSION = 1


def path(kind: str, key: str) -> Path:
    return cache_dir() / kind / f"{key}.json"


def read(kind: str, key: str) -> dict[str, Any] | None:
    """The value kept under `key`, or None."""
    try:
        doc = json.loads(path(kind, key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("version") != VERSION or doc.get("key") != key:
        return None
    value = doc.get("value")
    return value if isinstance(value, dict) else None


def write(kind: str, key: str, value: dict[str, Any]) -> bool:
    """Keep `value` under `key` (replacing what was there, all at once); whether it was written."""
    target = path(kind, key)
    with contextlib.suppress(OSError, TypeError, ValueError):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{kind}-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"version": VERSION, "key": key, "value": value}, f, indent=1)
            os.replace(tmp, target)
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return False
