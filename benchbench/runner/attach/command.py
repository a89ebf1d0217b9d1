"""The command `benchbench attach` is given, checked before anything runs: a program that exists, a script that
exists; under torchrun (`torchrun …`, `python -m torch.distributed.run …`) the script its ranks run, read with
torchrun's own argument parser, and how many ranks a node starts."""

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
    #: under torchrun: the launcher and the ranks it starts on this node (`--nproc-per-node`); None: one process
    launcher: str | None = None
    nproc_per_node: int | None = None


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
    if base == "torchrun":
        return _torchrun(command, prog, rest)
    if base == "srun":
        return _srun(command, prog, rest)
    if base.startswith(PYTHONS) and "-m" in rest and rest[rest.index("-m") + 1:][:1] == ["torch.distributed.run"]:
        return _torchrun(command, prog, rest[rest.index("-m") + 2:])
    if base.startswith(PYTHONS) and "-m" in rest and rest[rest.index("-m") + 1:][:1] == ["torch.distributed.launch"]:
        raise BenchbenchError("torch.distributed.launch is deprecated and passes --local-rank to the script: "
                              "attach the same command with `torchrun` (or `python -m torch.distributed.run`)")
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


def _torchrun(command: list[str], prog: str, args: list[str]) -> Script:
    """torchrun's own parser reads its options (no list of ours to fall behind torch's); the script its ranks run
    is checked as a `python script.py` command would be."""
    import io

    from torch.distributed.run import get_args_parser

    parser = get_args_parser()
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            ns = parser.parse_args(args)
    except SystemExit:  # argparse's usage error: its own last line says what is wrong
        why = (said.getvalue().strip().splitlines() or ["cannot read them"])[-1].split("error: ", 1)[-1]
        raise BenchbenchError(f"torchrun {' '.join(args)}: {why}") from None
    n = str(ns.nproc_per_node)
    if not n.isdigit() or int(n) < 1:
        raise BenchbenchError(f"--nproc-per-node {n}: attach needs a number of ranks (not auto/gpu/cpu: "
                              "how many ranks it should wait for is then the machine's to say)")
    if str(ns.nnodes) not in ("1", "1:1"):
        raise BenchbenchError(f"--nnodes {ns.nnodes}: attach measures the ranks of one node (their clocks are "
                              "one clock); attach each node's torchrun on its own")
    if ns.no_python:
        inner = Script([ns.training_script, *ns.training_script_args], prog, None, Path(ns.training_script).name)
    elif ns.module:
        inner = parse_command(["python", "-m", ns.training_script, *ns.training_script_args])
    else:
        inner = parse_command(["python", ns.training_script, *ns.training_script_args])
    return Script(command, prog, inner.script, inner.name, "torchrun", int(n))


#: srun's short options that take a value (`-n 2`, `-n2`), and its long options that take none
SRUN_SHORT_VALUE = set("ADMCScdexBGiJLFwNnopqrTtW")
SRUN_LONG_FLAGS = {"--label", "--unbuffered", "--exclusive", "--overcommit", "--kill-on-bad-exit", "--pty",
                   "--quiet", "--verbose", "--no-kill", "--oversubscribe", "--hold", "--immediate", "--exact",
                   "--overlap", "--disable-status", "--preserve-env", "--test-only", "--wait-all-nodes"}


def _srun(command: list[str], prog: str, args: list[str]) -> Script:
    """`srun --ntasks N python train.py …` on this node: its tasks are the ranks (SLURM_PROCID)."""
    opts: dict[str, str] = {}
    i = 0
    while i < len(args) and args[i].startswith("-"):
        a = args[i]
        if a.startswith("--"):
            name, eq, val = a.partition("=")
            if not eq and name not in SRUN_LONG_FLAGS:
                val, i = (args[i + 1] if i + 1 < len(args) else ""), i + 1
            opts[name] = val
        elif len(a) >= 2 and a[1] in SRUN_SHORT_VALUE:
            if len(a) > 2:
                opts[a[:2]] = a[2:]
            else:
                opts[a], i = (args[i + 1] if i + 1 < len(args) else ""), i + 1
        i += 1
    if i >= len(args):
        raise BenchbenchError(f"srun {' '.join(args)}: no program to run")
    n = opts.get("--ntasks") or opts.get("-n") or "1"
    nodes = opts.get("--nodes") or opts.get("-N") or "1"
    if not n.isdigit() or int(n) < 1:
        raise BenchbenchError(f"srun --ntasks {n}: attach needs a number of tasks")
    if nodes not in ("1", "1-1"):
        raise BenchbenchError(f"srun --nodes {nodes}: attach measures the ranks of one node (their clocks are "
                              "one clock)")
    inner = parse_command(args[i:])
    return Script(command, prog, inner.script, inner.name, "srun", int(n))


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
