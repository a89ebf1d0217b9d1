"""The stage timing of one data source: data set wrappers that time each sample, the timed collate, the
workers' initialiser, and the shared accumulators every worker adds into (`measure.stages` is the clock).

`StageTiming` is what a `workload.source.Source` is handed to time its pipeline: the workload layer builds the
loader, the measure layer decides how it is timed.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import IterableDataset

from benchbench.measure import stages as st
from benchbench.measure.stages import COLLATE, DECODE, FIELDS, FIXED, MAX_ROWS, OTHER, READ, SAMPLE


class Timed:
    """A data set whose every item is timed as one sample (the getitem's own code is `other`)."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, idx: int) -> Any:
        c = st._CLOCK
        if c is None:
            return self.ds[idx]
        t0 = time.perf_counter()
        c.enter(OTHER)
        try:
            return self.ds[idx]
        finally:
            c.exit()
            c.add(SAMPLE, time.perf_counter() - t0)
            c.flush()


class TimedIterable(IterableDataset):
    """An iterable data set whose every item is timed as one sample."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __iter__(self) -> Iterator[Any]:
        it = iter(self.ds)
        while True:
            c = st._CLOCK
            t0 = time.perf_counter()
            if c is not None:
                c.enter(OTHER)
            try:
                item = next(it)
            except StopIteration:
                if c is not None:
                    c.stack.pop()
                return
            if c is not None:
                c.exit()
                c.add(SAMPLE, time.perf_counter() - t0)
                c.flush()
            yield item


_ITEM_CLASSES: dict[type, type] = {}


def time_items_in_place(ds: Any) -> bool:
    """Time every item of a data set that is not ours to wrap (an attached script's): its class swapped for a
    subclass whose `__getitem__` (or `__iter__`) times each item as `Timed` does. The object, its attributes
    and `isinstance` stay the script's. False when the class cannot be swapped (a C-level or slotted one)."""
    cls = type(ds)
    if getattr(cls, "_bb_items_original", None) is not None:
        return True
    sub = _ITEM_CLASSES.get(cls)
    if sub is None:
        if isinstance(ds, IterableDataset):
            orig_iter = cls.__iter__

            def __iter__(self: Any) -> Iterator[Any]:
                return iter(TimedIterable(_Iter(orig_iter, self)))

            body: dict[str, Any] = {"__iter__": __iter__}
        else:
            orig_get = cls.__getitem__

            def __getitem__(self: Any, idx: Any) -> Any:
                own = st._MAIN_CLOCKS.get(id(self))  # made in the main process: this data set's own clock
                if own is not None:
                    st._CLOCK = own
                c = st._CLOCK
                if c is None:
                    return orig_get(self, idx)
                t0 = time.perf_counter()
                c.enter(OTHER)
                try:
                    return orig_get(self, idx)
                finally:
                    c.exit()
                    c.add(SAMPLE, time.perf_counter() - t0)
                    c.flush()

            body = {"__getitem__": __getitem__}
        body.update(__module__=cls.__module__, __qualname__=cls.__qualname__, _bb_items_original=cls)
        try:
            sub = type(cls.__name__, (cls,), body)
        except TypeError:
            return False
        _ITEM_CLASSES[cls] = sub
    try:
        ds.__class__ = sub
    except TypeError:
        return False
    return True


class _Iter:
    """The original `__iter__` of a swapped iterable data set, as an iterable `TimedIterable` can time."""

    def __init__(self, fn: Callable[[Any], Iterator[Any]], ds: Any) -> None:
        self.fn, self.ds = fn, ds

    def __iter__(self) -> Iterator[Any]:
        return self.fn(self.ds)


class TimedCollate:
    """The loader's collate function, timed per batch where it runs (a worker)."""

    def __init__(self, fn: Callable[[list[Any]], Any]) -> None:
        self.fn = fn

    def __call__(self, batch: list[Any]) -> Any:
        with st.stage(COLLATE):
            out = self.fn(batch)
        if st._CLOCK is not None:
            st._CLOCK.flush()
        return out


class WorkerInit:
    """The DataLoader's `worker_init_fn`: this worker's clock, its data set copy instrumented, its I/O timed."""

    def __init__(self, profile: StageProfile, user: Callable[[int], None] | None = None) -> None:
        self.arr, self.width, self.user = profile.arr, profile.width, user

    def __call__(self, worker_id: int) -> None:
        import torch.utils.data

        info = torch.utils.data.get_worker_info()
        st._MAIN_CLOCKS.clear()  # the main process's clocks, copied by the fork: not this worker's
        if info is not None and worker_id + 1 < MAX_ROWS:
            st.instrument(info.dataset)
            st.patch_io()
            st._CLOCK = st._Clock(self.arr, worker_id + 1, self.width)
        if self.user is not None:
            self.user(worker_id)


class StageProfile:
    """The shared accumulators of one data source, and their reading."""

    def __init__(self, dataset: Any) -> None:
        self.names = st.stage_names(dataset)
        self.width = len(self.names)
        self.arr = mp.RawArray("d", MAX_ROWS * self.width * FIELDS)
        self.main_active = False

    def start_main(self, dataset: Any) -> None:
        """num_workers=0: the samples are made in this process."""
        st.instrument(dataset)
        st.patch_io()
        st._CLOCK = st._MAIN_CLOCKS[id(dataset)] = st._Clock(self.arr, 0, self.width)
        self.main_active = True
        self.main_dataset = id(dataset)

    @contextlib.contextmanager
    def in_main(self, dataset: Any) -> Iterator[None]:
        """Time samples made in this process into this profile for a while, then put back whatever clock was
        there (the cell's own source may be timing its main-process samples)."""
        before, patched = st._CLOCK, bool(st._PATCHED)
        st.instrument(dataset)
        st.patch_io()
        st._CLOCK = st._Clock(self.arr, 0, self.width)
        try:
            yield
        finally:
            st._CLOCK = before
            if not patched:
                st.unpatch_io()

    def close(self) -> None:
        if self.main_active:
            st._CLOCK = None
            st._MAIN_CLOCKS.pop(getattr(self, "main_dataset", None), None)
            st.unpatch_io()
            self.main_active = False

    def reset(self) -> None:
        """Zero every row (the main process's own sums too; a worker's are zeroed here but its next flush
        writes its running sums back: reset before the workers start, or read with `since`)."""
        self.arr[:] = [0.0] * len(self.arr)
        if st._CLOCK is not None and st._CLOCK.arr is self.arr:
            st._CLOCK.local = [0.0] * len(st._CLOCK.local)

    def snapshot(self) -> list[float]:
        return list(self.arr)

    def read(self, since: list[float] | None = None) -> dict[str, Any] | None:
        """Per stage: time per sample (mean), share of a sample's time, spread; per worker: samples made.
        `since`: a snapshot; only what was added after it (its maxima are the whole run's)."""
        w, f = self.width, FIELDS
        a = list(self.arr)
        if since is not None and len(since) == len(a):
            a = [x - y if (i % f) != 3 else x for i, (x, y) in enumerate(zip(a, since))]
        rows = [[a[(r * w + s) * f: (r * w + s + 1) * f] for s in range(w)] for r in range(MAX_ROWS)]
        per_row = [row[SAMPLE][2] for row in rows]
        n = sum(per_row)
        if n <= 0:
            return None
        tot = [sum(rows[r][s][0] for r in range(MAX_ROWS)) for s in range(w)]
        sq = [sum(rows[r][s][1] for r in range(MAX_ROWS)) for s in range(w)]
        cnt = [sum(rows[r][s][2] for r in range(MAX_ROWS)) for s in range(w)]
        mx = [max(rows[r][s][3] for r in range(MAX_ROWS)) for s in range(w)]
        batches = cnt[COLLATE]
        sample_mean = tot[SAMPLE] / n
        collate_per_sample = tot[COLLATE] / n if batches else 0.0
        per_sample = sample_mean + collate_per_sample
        stages = []
        for s in range(1, w):
            calls = cnt[s]
            if not calls and s < len(FIXED):  # a fixed stage this pipeline never entered (no PIL read, ...)
                continue
            mean_call = tot[s] / calls if calls else 0.0
            sd = max(0.0, sq[s] / calls - mean_call ** 2) ** 0.5 if calls else 0.0
            stages.append({"name": self.names[s], "kind": _kind(s), "per_sample_s": tot[s] / n,
                           "share": (tot[s] / n) / per_sample if per_sample > 0 else None, "calls": int(calls),
                           "per_call_s": mean_call, "per_call_sd_s": sd, "max_s": mx[s]})
        mean_s = sample_mean
        sd_s = max(0.0, sq[SAMPLE] / n - mean_s ** 2) ** 0.5
        return {"samples": int(n), "batches": int(batches), "per_sample_s": per_sample,
                "item_s": {"mean": mean_s, "sd": sd_s, "max": mx[SAMPLE]},
                "where": "workers" if sum(per_row[1:]) else "main process",
                "samples_by_worker": [int(x) for x in per_row[1:] if x] or None,
                "stages": stages}


def _kind(slot: int) -> str:
    return {READ: "read", DECODE: "decode", COLLATE: "collate", OTHER: "other"}.get(slot, "transform")


class StageTiming:
    """Hand to `Source(..., timing=StageTiming())`: wraps its data set and collate, times them in its workers."""

    def __init__(self) -> None:
        self.profile: StageProfile | None = None

    def wrap(self, dataset: Any, collate: Callable[[list[Any]], Any], workers: int) -> tuple[Any, Any, Any]:
        self.profile = StageProfile(dataset)
        ds = TimedIterable(dataset) if isinstance(dataset, IterableDataset) else Timed(dataset)
        if workers > 0:
            return ds, TimedCollate(collate), WorkerInit(self.profile)
        self.profile.start_main(ds)
        return ds, TimedCollate(collate), None
