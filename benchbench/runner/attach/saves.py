"""Checkpoints written by the script, timed where they are written (`attach --epochs`): how long, how many
bytes, to which file system.

The writers are torch's and safetensors' own functions, patched before the script's first line (a name the
script or a library imports from them — `from safetensors.torch import save_file` in Transformers — is then the
patched one), and the trainers' checkpoint methods, patched on their classes once the script has imported them
(a method is looked up at each call): Lightning writes `torch.save` into memory and then the bytes to the file,
Ultralytics the same, so only the method's interval holds the whole write. A write inside another is part of
it (its bytes counted once, its time not twice)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from typing import Any

#: (module, function, index of the target argument, its keyword): patched at install
FUNCTIONS = (("torch", "save", 1, "f"), ("safetensors.torch", "save_file", 1, "filename"),
             ("safetensors.torch", "save_model", 1, "filename"))
#: (module, class, method, how to find its target path): patched once the script has imported them
METHODS = (
    ("lightning.pytorch.trainer.trainer", "Trainer", "save_checkpoint", lambda a, k: _arg(a, k, 1, "filepath")),
    ("pytorch_lightning.trainer.trainer", "Trainer", "save_checkpoint", lambda a, k: _arg(a, k, 1, "filepath")),
    ("transformers.trainer", "Trainer", "_save_checkpoint", lambda a, k: None),
    ("ultralytics.engine.trainer", "BaseTrainer", "save_model", lambda a, k: getattr(a[0], "last", None)),
)


def _arg(a: tuple[Any, ...], k: dict[str, Any], i: int, name: str) -> Any:
    return a[i] if len(a) > i else k.get(name)


class Writes:
    """Calls `on_write(t0, t1, info)` for each outermost write; `info`: writer, bytes, path, filesystem."""

    def __init__(self, on_write: Any, before: Any = None) -> None:
        self.on_write = on_write
        self.before = before  # called before an outermost write (the GPU's queue drained first)
        self.depth = 0
        self.acc: dict[str, Any] | None = None
        self.patched: list[str] = []

    def install_functions(self) -> None:
        import importlib

        for mod, fn, i, kw in FUNCTIONS:
            try:
                m = importlib.import_module(mod)
            except Exception:
                continue
            orig = getattr(m, fn, None)
            if orig is None or getattr(orig, "_bb", False):
                continue
            setattr(m, fn, self.wrap(orig, f"{mod}.{fn}", lambda a, k, i=i, kw=kw: _arg(a, k, i, kw)))
            self.patched.append(f"{mod}.{fn}")

    def install_methods(self) -> None:
        """The trainers' checkpoint methods, for those the script imported (none is imported here)."""
        for mod, cls_name, meth, target in METHODS:
            cls = getattr(sys.modules.get(mod), cls_name, None)
            orig = getattr(cls, meth, None) if cls is not None else None
            if orig is None or getattr(orig, "_bb", False):
                continue
            setattr(cls, meth, self.wrap(orig, f"{cls_name}.{meth} ({mod.split('.')[0]})", target))
            self.patched.append(f"{mod}.{cls_name}.{meth}")

    def wrap(self, orig: Any, writer: str, target: Any) -> Any:
        import functools

        @functools.wraps(orig)
        def write(*a: Any, **k: Any) -> Any:
            try:
                dest = target(a, k)
            except Exception:
                dest = None
            before = _position(dest)
            outer = self.depth == 0
            if outer:
                from benchbench.runner.attach.frames import call_site

                self.acc = {"writer": writer, "bytes": 0, "path": None, "where": call_site()}
                if self.before is not None:
                    with contextlib.suppress(Exception):
                        self.before()
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                t1 = time.perf_counter()
                self.depth -= 1
                acc = self.acc
                if acc is not None:
                    n = _written(dest, before)
                    if outer:  # its own target's bytes, else (a method) what the writes inside it wrote
                        acc["bytes"] = n if n else acc["bytes"]
                    elif n:
                        acc["bytes"] += n
                    path = _path(dest)
                    if path and (outer or not acc["path"]):
                        acc["path"] = path
                if outer and acc is not None:
                    self.acc = None
                    if acc["path"]:
                        acc["filesystem"] = filesystem(acc["path"])
                    with contextlib.suppress(Exception):
                        self.on_write(t0, t1, acc)

        write._bb = True  # type: ignore[attr-defined]
        return write


def _path(dest: Any) -> str | None:
    if isinstance(dest, (str, os.PathLike)):
        return os.path.abspath(os.fspath(dest))
    name = getattr(dest, "name", None)
    return os.path.abspath(name) if isinstance(name, str) and not name.startswith("<") else None


def _position(dest: Any) -> int | None:
    if isinstance(dest, io.BytesIO):
        return dest.getbuffer().nbytes
    if dest is not None and not isinstance(dest, (str, os.PathLike)):
        try:
            return int(dest.tell())
        except Exception:
            return None
    return None


def _written(dest: Any, before: int | None) -> int | None:
    """The bytes a write put in its target: a file's size after it, a buffer's growth."""
    if isinstance(dest, (str, os.PathLike)):
        try:
            return os.path.getsize(os.fspath(dest))
        except OSError:
            return None
    if isinstance(dest, io.BytesIO):
        return dest.getbuffer().nbytes - (before or 0)
    if dest is not None and before is not None:
        try:
            return int(dest.tell()) - before
        except Exception:
            return None
    return None


def filesystem(path: str) -> str | None:
    """The file system a path is on, from /proc/mounts: `ext4 on /` (the longest mount point above it)."""
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split()[:3] for line in f]
    except OSError:
        return None
    path = os.path.realpath(path)
    best: tuple[str, str] | None = None
    for _dev, point, fstype in (m for m in mounts if len(m) == 3):
        point = point.replace("\\040", " ")
        if (path == point or path.startswith(point.rstrip("/") + "/")) and (best is None or len(point) > len(best[0])):
            best = (point, fstype)
    return f"{best[1]} on {best[0]}" if best else None
