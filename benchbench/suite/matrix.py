"""A matrix's semantics and the device cells run on: shared by workload suites (`suite.build`) and command suites
(`suite.command`)."""

from __future__ import annotations

import itertools
from typing import Any

from benchbench.errors import BenchbenchError
from benchbench.suite.schema import DEVICES
from benchbench.suite.validate import _matches


def resolve_device(requested: str | None, suite_device: str = "auto", available: bool = True) -> str:
    """The device cells run on. `available=False` expands a suite for a device this machine lacks (listing
    what a GPU runner would run, on a laptop); running always needs it."""
    choice = requested or suite_device or "auto"
    if choice not in ("auto", *DEVICES):
        raise BenchbenchError(f"unknown device {choice!r}: choose auto, cpu or cuda")
    if choice == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and available:
        import torch

        if not torch.cuda.is_available():
            raise BenchbenchError("device 'cuda' requested but torch.cuda.is_available() is False on this machine")
    return choice


def expand(
    matrix: dict[str, list[Any]],
    exclude: list[dict[str, Any]] | None = None,
    include: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """GitHub Actions matrix semantics.

    Exclude removes every combination that matches all its keys. Each include
    entry is merged into every combination whose *original* matrix values it
    does not overwrite; when it fits none, it becomes a new combination.
    """
    axes = list(matrix)
    combos = [dict(zip(axes, vals)) for vals in itertools.product(*matrix.values())] if axes else []
    combos = [c for c in combos if not any(_matches(c, ex) for ex in exclude or [])]
    original = set(axes)
    for inc in include or []:
        hit = False
        for c in combos:
            # A combination added by an earlier include may lack an original key: then it cannot match.
            if all(k in c and c[k] == v for k, v in inc.items() if k in original):
                c.update(inc)
                hit = True
        if not hit:
            combos.append(dict(inc))
    if not combos and not axes and not include:
        combos = [{}]  # a suite of fixed settings only is one cell
    return combos
