"""The command `benchbench attach` is given, checked before anything runs: a program that exists, a script that
exists, one process (torchrun refused: attach measures one rank)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from benchbench.errors import BenchbenchError

PYTHONS = ("python", "python3")
#: the interpreter's options that take the next argument as their value (`python -W ignore -X faulthandler ...`)
PYTHON_OPTIONS_WITH_VALUE = ("-W", "-X", "--check-hash-based-pycs")


@dataclass
class Script:
    """What the command runs: a script file, a module (-m), or an installed console script."""

    command: list[str]
    program: str
    script: Path | None
    name: str


def parse_command(command: list[str]) -> Script:
    """Check the command before anything runs: a program that exists, a script that exists; torchrun refused."""
    if not command:
        raise BenchbenchError("nothing to attach to: give the training command after --, e.g. "
                              "`benchbench attach -- python train.py`")
    prog = shutil.which(command[0])
    if prog is None:
        raise BenchbenchError(f"{command[0]!r}: no such program on PATH")
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise BenchbenchError(f"WORLD_SIZE={os.environ['WORLD_SIZE']}: the script would run as one rank of several; "
                              "attach measures one process (unset WORLD_SIZE, or measure DDP with a suite's "
                              "world_size)")
    base = os.path.basename(command[0])
    rest = command[1:]
    if base == "env":  # `env VAR=1 python train.py`: what runs is the command after the assignments
        j = 0
        while j < len(rest) and ("=" in rest[j] or rest[j].startswith("-")):
            j += 1
        if j < len(rest):
            inner = parse_command(rest[j:])
            return Script(command, prog, inner.script, inner.name)
    if base in ("torchrun",) or ("-m" in rest and rest[rest.index("-m") + 1:][:1] in
                                 (["torch.distributed.run"], ["torch.distributed.launch"])):
        raise BenchbenchError("torchrun starts several ranks: attach measures one process. Attach one rank's "
                              "command (`python train.py` with WORLD_SIZE=1), or measure DDP with a suite's "
                              "world_size")
    if base.startswith(PYTHONS):
        i = 0
        while i < len(rest) and rest[i].startswith("-") and rest[i] not in ("-m", "-c"):
            i += 2 if rest[i] in PYTHON_OPTIONS_WITH_VALUE else 1
        if i >= len(rest):
            raise BenchbenchError(f"{' '.join(command)}: no script to run (give a script, -m module or -c code)")
        if rest[i] == "-m":
            if i + 1 >= len(rest):
                raise BenchbenchError("-m needs a module name")
            return Script(command, prog, module_file(rest[i + 1]), rest[i + 1])
        if rest[i] == "-c":
            return Script(command, prog, None, "python-c")
        path = Path(rest[i])
        if not path.is_file():
            raise BenchbenchError(f"{rest[i]}: no such script")
        return Script(command, prog, path.resolve(), path.name)
    return Script(command, prog, Path(prog), base)


def module_file(name: str) -> Path | None:
    """The file `python -m name` runs (its `__main__.py` for a package), found as Python would find it from here
    — the working directory, then sys.path — without importing anything (a package's `__init__` is not run):
    its contents are the cell's, so an edited module is a new cell."""
    import importlib.machinery
    import sys

    search: list[str] | None = [os.getcwd(), *[p for p in sys.path if p]]
    spec = None
    for part in name.split("."):
        spec = importlib.machinery.PathFinder.find_spec(part, search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or []) or None
    if spec is None:
        return None
    if spec.submodule_search_locations:  # a package: python -m runs its __main__
        main = Path(next(iter(spec.submodule_search_locations))) / "__main__.py"
        return main if main.is_file() else None
    return Path(spec.origin) if spec.origin and Path(spec.origin).is_file() else None


def sha256(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    with contextlib.suppress(OSError):
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return None
