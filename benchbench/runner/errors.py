"""How a failure inside a cell becomes a record: its status and a one-line message."""

from __future__ import annotations

import os
import traceback

from benchbench.errors import BenchbenchError


def is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    msg = str(exc)
    return "out of memory" in msg.lower() or "DefaultCPUAllocator: can't allocate memory" in msg


def error_message(exc: BaseException) -> str:
    if isinstance(exc, BenchbenchError):
        return str(exc)
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno} in {tb[-1].name})" if tb else ""
    return f"{type(exc).__name__}: {first}{where}"[:2000]
