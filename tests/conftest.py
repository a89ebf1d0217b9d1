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
