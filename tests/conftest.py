from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


@pytest.fixture(autouse=True, scope="session")
def _cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Generated data sets go to a per-session cache, never the user's ~/.cache.
    import os

    os.environ["BENCHBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))  # tests/factories.py as module `factories`


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    from benchbench.cli import main

    def invoke(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["benchbench", *map(str, args)])
        with pytest.raises(SystemExit) as exc:
            main()
        out = capsys.readouterr()
        code = exc.value.code
        return (code if isinstance(code, int) else 0), out.out, out.err

    return invoke


def make_camvid(root: Path, n: int = 6, size: tuple[int, int] = (40, 48), classes: int = 12) -> Path:
    """A tiny data set in the CamVid layout: train/, trainannot/ (+ val) with index-PNG masks."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            img = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            mask = rng.integers(0, classes, size=size, dtype=np.uint8)
            mask[0, 0] = 11 if classes > 11 else 0
            Image.fromarray(img).save(root / split / f"0001TP_{i:06d}.png")
            Image.fromarray(mask, mode="L").save(root / f"{split}annot" / f"0001TP_{i:06d}.png")
    return root


def write_suite(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def record(**fields):
    """A typed record from the fields a test cares about (suite, run and schema filled in; older-style
    documents upgraded as files are)."""
    from benchbench.record import Record

    doc = {"schema": "benchbench.result/1", "suite": "s", "run_id": "r", **fields}
    doc.setdefault("params", {"batch_size": 1})
    return Record.of(doc)


def as_records(*docs):
    """Test documents as typed records; a document giving only a median gets that median as its one sample."""
    import copy

    out = []
    for d in docs:
        d = copy.deepcopy(d)
        st = d.get("step_time_s")
        if isinstance(st, dict) and not st.get("samples") and st.get("median") is not None:
            st["samples"] = [st["median"]]
        out.append(record(**d))
    return out


def upd(r, **fields):
    """A typed record with some fields replaced (as documents), validated again."""
    from benchbench.record import Record

    return Record.of({**r.to_json(), **fields})


def write_records(path: Path, recs: list) -> Path:
    """A results file of records (typed) or documents (dicts, written as they are)."""
    import json

    from benchbench.record import Record
    from benchbench.results import record_line

    path.write_text("".join(record_line(r) if isinstance(r, Record) else json.dumps(r) + "\n" for r in recs))
    return path
