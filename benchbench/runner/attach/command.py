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
    base = os.path.basename(command[0])
    rest = command[1:]
    if base in ("torchrun",) or ("-m" in rest and rest[rest.index("-m") + 1:][:1] in
                                 (["torch.distributed.run"], ["torch.distributed.launch"])):
        raise BenchbenchError("torchrun starts several ranks: attach measures one process. Attach one rank's "
                              "command (`python train.py` with WORLD_SIZE=1), or measure DDP with a suite's "
                              "world_size")
    if base.startswith(PYTHONS):
        i = 0
        while i < len(rest) and rest[i].startswith("-") and rest[i] not in ("-m", "-c"):
            i += 1
        if i >= len(rest):
            raise BenchbenchError(f"{' '.join(command)}: no script to run (give a script, -m module or -c code)")
        if rest[i] == "-m":
            if i + 1 >= len(rest):
                raise BenchbenchError("-m needs a module name")
            return Script(command, prog, None, rest[i + 1])
        if rest[i] == "-c":
            return Script(command, prog, None, "python -c")
        path = Path(rest[i])
        if not path.is_file():
            raise BenchbenchError(f"{rest[i]}: no such script")
        return Script(command, prog, path.resolve(), path.name)
    return Script(command, prog, Path(prog), base)


def sha256(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    with contextlib.suppress(OSError):
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return None
