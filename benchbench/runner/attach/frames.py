"""Telling the script's own code from torch's, a library's or benchbench's; finding a batch's first tensor."""

from __future__ import annotations

import os
from typing import Any

from benchbench.timeline.python import is_user_file, short

__all__ = ["_first_tensor", "call_site", "images_in", "is_console_script", "is_user_file", "package_file"]


#: packages between a trainer and torch that only pass a call on (Accelerate's optimizer wrapper): the frame
#: that does the work is the one that called them
PLUMBING = ("torch", "accelerate", "functorch", "typing_extensions", "wrapt")


def package_file(path: str) -> str | None:
    """`nnunetv2/training/nnUNetTrainer/nnUNetTrainer.py` for a file of an installed package; None otherwise."""
    p = path.replace("\\", "/")
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in p:
            return p.rsplit(marker, 1)[1]
    return None


def is_console_script(path: str) -> bool:
    """An installed command's launcher (`bin/nnUNetv2_train`, `bin/yolo`): `sys.exit(main())` and nothing of the
    user's."""
    import sys
    import sysconfig

    p = os.path.abspath(path)
    bins = {os.path.abspath(d) for d in (sysconfig.get_paths().get("scripts"), os.path.dirname(sys.executable)) if d}
    return os.path.dirname(p) in bins or (not p.endswith(".py") and os.path.basename(os.path.dirname(p)) == "bin")


def call_site() -> str | None:
    """Where a call (an optimizer's step, the model's forward, a DataLoader's making) was made, called rarely
    (once each): the user's own `train.py:87` where the user's code makes it; where a framework makes it (a
    `Trainer`, nnU-Net's trainer, Lightning's loop, `yolo`), the framework's frame with its package's name —
    `nnunetv2/training/nnUNetTrainer/nnUNetTrainer.py:1000 in train_step (nnunetv2)` — followed by the user's
    own line that led there, if any (never a console script's launcher)."""
    import traceback

    doer = None
    for fr in reversed(traceback.extract_stack()[:-1]):
        if is_user_file(fr.filename) and not is_console_script(fr.filename):
            user = short(f"{fr.filename}:{fr.lineno}")
            return user if doer is None else f"{doer}, from {user}"
        pkg = package_file(fr.filename)
        if doer is None and pkg and pkg.split("/", 1)[0] not in PLUMBING and "/" in pkg:
            doer = f"{pkg}:{fr.lineno} in {fr.name} ({pkg.split('/', 1)[0]})"
    return doer


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
