"""Telling the script's own code from torch's, a library's or benchbench's; finding a batch's first tensor."""

from __future__ import annotations

from typing import Any

from benchbench.timeline.python import is_user_file, short

__all__ = ["_first_tensor", "call_site", "images_in", "is_user_file"]


def call_site() -> str | None:
    """file:line of the innermost frame of the script's own code on the current stack (called rarely: once a
    model, a DataLoader, an optimizer)."""
    import traceback

    for fr in reversed(traceback.extract_stack()[:-1]):
        if is_user_file(fr.filename):
            return short(f"{fr.filename}:{fr.lineno}")
    return None


def _first_tensor(obj: Any, depth: int = 0) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return obj
    if depth > 3:
        return None
    if isinstance(obj, dict):
        vals = list(obj.values())
        # an image-like entry first (a dict batch: {"img": ..., "cls": ...}, Ultralytics' "img")
        vals.sort(key=lambda v: 0 if isinstance(v, torch.Tensor) and v.ndim == 4 else 1)
        obj = vals
    if isinstance(obj, (list, tuple)):
        for v in obj:
            t = _first_tensor(v, depth + 1)
            if t is not None:
                return t
    return None


def images_in(args: Any, kwargs: Any) -> int | None:
    """How many images (samples) a model's call was given: its first input's leading dimension (`(B, C, H, W)`,
    `(B, C, D, H, W)`, a dict batch's image entry, Transformers' `pixel_values=`), or the length of a list of
    `(C, H, W)` images (detection models take those). None where no input says it."""
    for v in (*args, *(kwargs or {}).values()):
        n = _count(v)
        if n:
            return n
    return None


def _count(v: Any, depth: int = 0) -> int | None:
    import torch

    if isinstance(v, torch.Tensor):
        return int(v.shape[0]) if v.ndim >= 2 else None
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, torch.Tensor) and x.ndim == 3 for x in v):
        return len(v)
    if isinstance(v, dict) or (isinstance(v, (list, tuple)) and depth < 2):
        t = _first_tensor(v)
        return int(t.shape[0]) if t is not None and t.ndim >= 2 else None
    return None
