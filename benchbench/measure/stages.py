"""The input pipeline stage by stage, timed where it runs: inside the DataLoader's worker processes.

A sample's time is split into reading the file (`PIL.Image.open`, `torchvision.io.read_file`), decoding it
(PIL's `ImageFile.load`, `cv2.imread` / `cv2.imdecode`, `torchvision.io.decode_*` / `read_image`), each
transform of the pipeline in order, and the data set's own code around them (`other`); collate is timed per
batch. The pipelines are found on the data set object: torchvision `Compose` (v1 and `transforms.v2`),
albumentations `Compose`, and any object holding a `.transforms` list of callables, each element a stage (a
single callable transform attribute is one opaque stage).

How, without changing a sample: each transform instance's class is swapped, in the worker's own copy of the
data set, for a subclass whose `__call__` times the original's (`__slots__ = ()`, so the object is the same
object: same attributes, same `isinstance`, same random draws); the file and decode functions are wrapped in
the worker. Times are exclusive (a transform that decodes is charged its own time, the decode the decode's).
Every worker adds into its own row of a shared array (sum, sum of squares, count, max per stage), so nothing is
sent per sample; the main process reads the rows. With `num_workers=0` the same happens in the main process
and is undone when the source closes. Its cost is measured (`benchmarks/stage_overhead.py`). This module is
the clock and the instrumentation; `measure.stage_profile` the data set wrappers and the shared accumulators.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

FIELDS = 4  # sum, sum of squares, count, max
MAX_ROWS = 65  # the main process and up to 64 workers
MAX_TRANSFORMS = 48
SAMPLE, READ, DECODE, COLLATE, OTHER = 0, 1, 2, 3, 4  # fixed slots; transforms follow
FIXED = ("sample", "read", "decode", "collate", "other")

_CLOCK: _Clock | None = None
#: id(data set) -> its clock, for data sets whose samples are made in this (the main) process: two loaders
#: without workers (training and validation) each time into their own profile. Emptied in a worker.
_MAIN_CLOCKS: dict[int, _Clock] = {}
_STAGE_OF: dict[int, int] = {}  # id(transform instance) -> its slot, in this process
_TIMED_CLASSES: dict[type, type] = {}


class _Clock:
    """This process's stage timer: a stack, so times are exclusive; sums into its row of the shared array."""

    def __init__(self, arr: Any, row: int, width: int) -> None:
        self.arr, self.base, self.width = arr, row * width * FIELDS, width
        self.stack: list[list[float]] = []  # [slot, start, time of children]
        # this process's sums, kept in a plain list and copied into its row once a sample (one slice copy:
        # an element of a shared array costs a ctypes call)
        self.local = list(arr[self.base: self.base + width * FIELDS])

    def flush(self) -> None:
        self.arr[self.base: self.base + len(self.local)] = self.local

    def add(self, slot: int, x: float) -> None:
        a, i = self.local, slot * FIELDS
        if i + 3 >= len(a):  # a stage of another data set's pipeline: never an error in the script's loader
            return
        a[i] += x
        a[i + 1] += x * x
        a[i + 2] += 1
        if x > a[i + 3]:
            a[i + 3] = x

    def enter(self, slot: int) -> None:
        self.stack.append([slot, time.perf_counter(), 0.0])

    def exit(self) -> None:
        slot, t0, children = self.stack.pop()
        el = time.perf_counter() - t0
        self.add(int(slot), el - children)
        if self.stack:
            self.stack[-1][2] += el


@contextlib.contextmanager
def stage(slot: int) -> Iterator[None]:
    c = _CLOCK
    if c is None:
        yield
        return
    c.enter(slot)
    try:
        yield
    finally:
        c.exit()


def _timed(fn: Callable[..., Any], slot: int) -> Callable[..., Any]:
    def wrapper(*a: Any, **k: Any) -> Any:
        c = _CLOCK
        if c is None:
            return fn(*a, **k)
        c.enter(slot)
        try:
            return fn(*a, **k)
        finally:
            c.exit()

    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    wrapper.__name__ = getattr(fn, "__name__", "transform")
    return wrapper


def _timed_class(cls: type) -> type:
    """A subclass of `cls` whose `__call__` times the original's, under the instance's own slot."""
    if cls in _TIMED_CLASSES:
        return _TIMED_CLASSES[cls]
    orig = cls.__call__

    def __call__(self: Any, *a: Any, **k: Any) -> Any:
        c = _CLOCK
        slot = _STAGE_OF.get(id(self))
        if c is None or slot is None:
            return orig(self, *a, **k)
        c.enter(slot)
        try:
            return orig(self, *a, **k)
        finally:
            c.exit()

    sub = type(cls.__name__, (cls,), {"__call__": __call__, "__slots__": (), "__module__": cls.__module__,
                                      "__qualname__": cls.__qualname__, "_bb_timed_original": cls})
    _TIMED_CLASSES[cls] = sub
    return sub


# ------------------------------------------------------------------ finding the pipeline

def _is_pipeline(x: Any) -> bool:
    t = getattr(x, "transforms", None)
    return isinstance(t, (list, tuple)) and bool(t) and all(callable(e) for e in t)


def _stage_name(e: Any) -> str:
    cls = getattr(type(e), "_bb_timed_original", type(e))
    if isinstance(e, type(lambda: 0)):
        return getattr(e, "__name__", "function")
    return cls.__name__


def find_transforms(dataset: Any, depth: int = 3) -> list[tuple[Any, int | None, Any]]:
    """The transform stages of a data set, in order: (holder, index in holder's list or None, the transform).

    Walks the data set's attributes (and wrapped data sets', e.g. `Subset.dataset`, benchbench's `Items.ds`) to
    `depth`; a pipeline's elements are stages, a lone callable attribute named like a transform one stage."""
    out: list[tuple[Any, int | None, Any]] = []
    seen: set[int] = set()

    def visit(obj: Any, d: int) -> None:
        if id(obj) in seen or d < 0:
            return
        seen.add(id(obj))
        attrs = getattr(obj, "__dict__", None)
        if not isinstance(attrs, dict):
            return
        for name, v in list(attrs.items()):
            if v is None or isinstance(v, (str, bytes, int, float, bool)):
                continue
            if _is_pipeline(v):
                holder = v.transforms
                out.extend((holder, i, e) for i, e in enumerate(holder))
            elif callable(v) and not isinstance(v, type) and ("transform" in name.lower() or "aug" in name.lower()):
                out.append((obj, None, (name, v)))
            elif hasattr(v, "__getitem__") and hasattr(v, "__dict__") and not isinstance(v, (list, tuple, dict)):
                visit(v, d - 1)  # a wrapped data set

    visit(dataset, depth)
    return out[:MAX_TRANSFORMS]


def stage_names(dataset: Any) -> list[str]:
    """Every slot's name: the fixed stages, then each transform (`#2` on a repeated name)."""
    names, count = list(FIXED), {}
    for _holder, _i, e in find_transforms(dataset):
        n = _stage_name(e[1] if isinstance(e, tuple) else e)
        count[n] = count.get(n, 0) + 1
        names.append(n if count[n] == 1 else f"{n} #{count[n]}")
    return names


def instrument(dataset: Any) -> int:
    """Time each transform of `dataset` in this process; the number of transform stages found."""
    stages = find_transforms(dataset)
    for k, (holder, i, e) in enumerate(stages):
        slot = len(FIXED) + k
        if isinstance(e, tuple):  # a lone attribute transform: (name, callable)
            name, fn = e
            _instrument_one(fn, slot, lambda new, holder=holder, name=name: setattr(holder, name, new))
        else:
            def put(new: Any, holder: Any = holder, i: int | None = i) -> None:
                if isinstance(holder, list):
                    holder[i] = new

            _instrument_one(e, slot, put)
    return len(stages)


def _instrument_one(e: Any, slot: int, replace: Callable[[Any], None]) -> None:
    cls = type(e)
    if getattr(cls, "_bb_timed_original", None) is not None:
        _STAGE_OF[id(e)] = slot
        return
    if isinstance(e, type(lambda: 0)) or cls.__module__ == "builtins":
        replace(_timed(e, slot))
        return
    try:
        e.__class__ = _timed_class(cls)
    except TypeError:  # a C-level class: a wrapper in its place (its holder then sees a function)
        replace(_timed(e, slot))
        return
    _STAGE_OF[id(e)] = slot


# ------------------------------------------------------------------ reading and decoding files

_PATCHED: list[tuple[Any, str, Any]] = []


def _patch(owner: Any, attr: str, slot: int) -> None:
    orig = getattr(owner, attr, None)
    if orig is None or getattr(orig, "_bb_stage", None) is not None:
        return

    wrapper = _timed(orig, slot)  # the same exclusive timer a transform gets, under the I/O slot
    wrapper._bb_stage = slot  # type: ignore[attr-defined]
    setattr(owner, attr, wrapper)
    _PATCHED.append((owner, attr, orig))


def patch_io() -> None:
    """Time file reads and image decodes in this process (the libraries the data set has imported)."""
    if "PIL.Image" in sys.modules:
        from PIL import Image, ImageFile

        _patch(Image, "open", READ)
        _patch(ImageFile.ImageFile, "load", DECODE)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        for name in ("imread", "imdecode"):
            _patch(cv2, name, DECODE)
    tvio = sys.modules.get("torchvision.io")
    if tvio is not None:
        _patch(tvio, "read_file", READ)
        for name in ("decode_image", "decode_png", "decode_jpeg", "read_image"):
            _patch(tvio, name, DECODE)


def unpatch_io() -> None:
    while _PATCHED:
        owner, attr, orig = _PATCHED.pop()
        setattr(owner, attr, orig)
