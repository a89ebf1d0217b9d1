"""Every output a command writes, checked before anything is measured, and written so a failure is a message.

A command that measures for minutes and then cannot write its report has wasted the minutes, and one that
ends in a traceback has lost the user's trust: so each command names its outputs first (`Outputs`), they are
all checked — a file's folder can be made and written to, the file itself is not a folder, a folder is not a
file — and only then does measuring start. What cannot be checked in advance (the disk filling up meanwhile)
is an `OutputError` (exit 2) whose message says what was kept and where.

Files are written atomically (a temporary beside the target, then renamed): a reader never sees half of one,
and a failed write leaves no partial file behind to block a rerun.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from benchbench.errors import BenchbenchError


class OutputError(BenchbenchError):
    """An output could not be written (exit 2); what was measured before is kept, and the message says where."""


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _probe_folder(folder: Path, what: str) -> None:
    """The folder exists (made if need be) and takes a new file."""
    try:
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"cannot write {what}: {folder} is a file, not a directory")
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".bb-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write {what} into {folder}: {_why(exc)}") from None


def check_file(path: str | Path, what: str) -> Path:
    """A file this command will write (or append to): its folder takes files, the path is no folder, and an
    existing file is writable."""
    p = Path(path)
    try:
        if p.is_dir():
            raise OutputError(f"cannot write {what}: {p} is a directory; give a file name")
        _probe_folder(p.parent, what)
        if p.exists() and not os.access(p, os.W_OK):
            raise OutputError(f"cannot write {what}: {p} exists and is read-only")
    except OSError as exc:  # a name too long, a loop of links: the path itself is unusable
        raise OutputError(f"cannot write {what} to {p}: {_why(exc)}") from None
    return p


def check_folder(path: str | Path, what: str) -> Path:
    """A folder this command will write files into."""
    p = Path(path)
    _probe_folder(p, what)
    return p


class Outputs:
    """The outputs of one command, named up front and checked together before it measures anything."""

    def __init__(self) -> None:
        self.files: list[tuple[Path, str]] = []
        self.folders: list[tuple[Path, str]] = []

    def file(self, path: str | Path | None, what: str) -> Outputs:
        if path is not None:
            self.files.append((Path(path), what))
        return self

    def folder(self, path: str | Path | None, what: str) -> Outputs:
        if path is not None:
            self.folders.append((Path(path), what))
        return self

    def check(self) -> None:
        for p, what in self.folders:
            check_folder(p, what)
        for p, what in self.files:
            check_file(p, what)


@contextmanager
def atomic(path: str | Path, what: str, mode: str = "w") -> Iterator[IO]:
    """Write `path` through a temporary beside it, renamed over it at the end; on any failure the temporary
    is removed and the target is as it was."""
    p = Path(path)
    check_file(p, what)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as exc:
        _remove(tmp)
        raise OutputError(f"could not write {what} to {p}: {_why(exc)}") from None
    except BaseException:
        _remove(tmp)
        raise


def write_text(path: str | Path, text: str, what: str) -> Path:
    with atomic(path, what) as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes, what: str) -> Path:
    with atomic(path, what, "wb") as f:
        f.write(data)
    return Path(path)


def _remove(path: str) -> None:
    with suppress(OSError):
        os.unlink(path)
