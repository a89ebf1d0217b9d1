"""A cell's stream of batches: in-memory tensors (`synthetic`), benchbench's own pipelines, or the user's own data
set — each real pipeline through a DataLoader benchbench builds from the cell's loader knobs, with its stages
timed in the workers (`measure.stages`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, default_collate

from benchbench.workload.data import EXPLAIN_STEPS, SegmentationFolder, data_root, find_pairs


def pipeline(params: dict[str, Any]) -> tuple[Any, Any]:
    """The cell's data set (items as `(image, mask)` tensors) and collate function, before any loader."""
    kind = params["data"]["kind"]
    if kind == "dataset":
        from benchbench.workload.userdata import build_collate, user_items

        return user_items(params), build_collate(params) or default_collate
    h, w = params["resolution"]
    root = data_root(params)
    assert root is not None
    pairs = find_pairs(root, params["data"].get("split", "train"))
    # A generated set is small (64 images = 4 steps at batch 16), a real one has thousands of steps per
    # epoch: an epoch of the generated set spans every step a cell takes (warm-up, timed, explanations),
    # so the timed block crosses no epoch boundary the real training would rarely see; the boundary's
    # cost is measured apart (`epoch_boundary_s`). A real folder keeps its own epochs.
    length = params["batch_size"] * (params["warmup"] + params["steps"] + EXPLAIN_STEPS) \
        if kind == "synthetic-disk" else None
    ds = SegmentationFolder(pairs, (h, w), params["classes"], length, params["data"].get("cache") == "ram")
    return ds, default_collate


def loader(params: dict[str, Any], device: torch.device, dataset: Any, collate: Any, workers: int,
           worker_init: Any = None, pin: bool | None = None, persistent: bool | None = None,
           samples: int | None = None) -> DataLoader:
    """A DataLoader with the cell's knobs (`workers` given apart: the capacity pass varies it). `samples`: one
    epoch of that many samples (a map-style set's permutations one after another), so a small data set is
    measured without an epoch boundary — and its worker start-up — every few batches."""
    bs = params["batch_size"]
    pin = (params["pin_memory"] if params["pin_memory"] is not None else device.type == "cuda") if pin is None \
        else pin
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs["persistent_workers"] = params["persistent_workers"] if persistent is None else persistent
        kwargs["worker_init_fn"] = worker_init
        if params["prefetch_factor"] is not None:
            kwargs["prefetch_factor"] = params["prefetch_factor"]
    iterable = isinstance(dataset, IterableDataset)
    n = None if iterable else len(dataset)
    gen = None if iterable else torch.Generator().manual_seed(params["seed"])
    if samples and not iterable:
        from torch.utils.data import RandomSampler

        kwargs["sampler"] = RandomSampler(dataset, num_samples=samples, generator=gen)
        return DataLoader(dataset, batch_size=bs, drop_last=True, num_workers=workers, pin_memory=pin,
                          collate_fn=collate, **kwargs)
    return DataLoader(dataset, batch_size=bs, shuffle=not iterable, drop_last=bool(n and n >= bs),
                      num_workers=workers, pin_memory=pin, collate_fn=collate, generator=gen, **kwargs)


class Source:
    """An endless stream of batches; `to_device` is kept apart so H2D can be timed as its own phase.

    `timing` (`measure.stage_profile.StageTiming`): time the pipeline's stages in the workers while the cell
    trains; its profile is `stages`, whose `reset()` at the start of the timed block and `read()` after it give
    that block's samples (`measure.trackers`)."""

    def __init__(self, params: dict[str, Any], device: torch.device, timing: Any = None) -> None:
        self.device = device
        self.params = params
        self.loader: DataLoader | None = None
        self.stages: Any = None
        self._fixed: tuple[torch.Tensor, torch.Tensor] | None = None
        h, w = params["resolution"]
        bs = params["batch_size"]
        if params["data"]["kind"] == "synthetic":
            g = torch.Generator().manual_seed(params["seed"])
            x = torch.randn(bs, params.get("in_channels", 3), h, w, generator=g)
            y = torch.randint(0, params["classes"], (bs, h, w), generator=g)
            self._fixed = (x.to(device), y.to(device))
            return
        self.dataset, self.collate = pipeline(params)
        workers = params["num_workers"]
        ds, collate, init = self.dataset, self.collate, None
        if timing is not None:
            ds, collate, init = timing.wrap(self.dataset, self.collate, workers)
            self.stages = timing.profile
        self.loader = loader(params, device, ds, collate, workers, init)

    @property
    def steps_per_epoch(self) -> int | None:
        """Steps between epoch boundaries, where a DataLoader's prefetch queue drains."""
        if self.loader is None:
            return None
        try:
            return len(self.loader)
        except TypeError:  # an iterable data set without a length
            return None

    def epoch_boundary_s(self) -> float | None:
        """The wait for the first batch of a new epoch: the DataLoader's prefetch queue drains at each epoch
        boundary (persistent workers keep their processes, not their queue). None for in-memory data."""
        if self.loader is None:
            return None
        t0 = time.perf_counter()
        next(iter(self.loader))
        return time.perf_counter() - t0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._fixed is not None:
            while True:
                yield self._fixed
        assert self.loader is not None
        keys = (self.params["data"].get("image_key", "image"), self.params["data"].get("mask_key", "mask"))
        while True:  # epochs follow each other as in training; their boundary cost is real
            for batch in self.loader:
                yield (batch[keys[0]], batch[keys[1]]) if isinstance(batch, dict) else (batch[0], batch[1])

    def to_device(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        if x.device == self.device:
            return x, y
        nb = self.device.type == "cuda"
        return x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb)

    def close(self) -> None:
        if self.stages is not None:
            self.stages.close()

    def __del__(self) -> None:
        self.close()
