"""The user's own code in a suite: `pkg.module:function` factories for models, data sets, collate functions,
losses and optimizers — imported the way the user's script would (the current directory importable), and
called with the cell's settings each asks for by name.

A factory's signature says what it wants: `def make_dataset(resolution, classes, split, root)` gets those four;
one with `**kwargs` gets every setting offered. A required parameter nobody offers is a message naming the
factory and the parameter, never a TypeError from inside the user's code.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from benchbench.errors import BenchbenchError


def load(spec: str, what: str = "factory") -> Callable[..., Any]:
    """Import `module:function`; the current directory is importable, as users expect."""
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise BenchbenchError(f"{what} must be 'module:function', got {spec!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise BenchbenchError(f"cannot import {what} module {module_name!r}: {type(exc).__name__}: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise BenchbenchError(f"{what} {spec!r}: module {module_name!r} has no callable {func_name!r}")
    return func


def call(fn: Callable[..., Any], spec: str, what: str, offered: dict[str, Any], *args: Any) -> Any:
    """`fn(*args, **the offered settings its signature names)`; every offered one with `**kwargs`."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C callable: offer nothing by name
        return fn(*args)
    params = list(sig.parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        kwargs = dict(offered)
    else:
        names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        kwargs = {k: v for k, v in offered.items() if k in names}
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][: len(args)]
    bound = {p.name for p in positional} | set(kwargs)
    missing = [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               and p.name not in bound]
    if missing:
        raise BenchbenchError(f"{what} {spec!r} needs {', '.join(map(repr, missing))}, which the cell does not "
                              f"offer (it offers {', '.join(sorted(offered)) or 'nothing'}; add the key under the "
                              "suite's data: section or give the parameter a default)")
    return fn(*args, **kwargs)
