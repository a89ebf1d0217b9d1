"""The user's own data set in a cell: built from their factory, its items read the way training reads them, and
checked before the first cell is measured.

The factory (`data: {dataset: pkg.module:make_dataset, ...}`) is called with the settings it names among the
cell's resolution (as `(h, w)`), classes, in_channels, seed, split, batch_size and every extra key under `data:`.
It returns a map-style or iterable `torch.utils.data.Dataset`. An item is `(image, mask)` or a mapping holding
`image_key` and `mask_key`; image and mask may be tensors or numpy arrays (a mask's channel of one is squeezed),
as `default_collate` would take them. `Items` presents every item as `(image, mask)` tensors (mask `int64`) and
changes nothing else, so the samples are the user's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from benchbench.errors import BenchbenchError
from benchbench.workload.factories import call, load

IGNORE_INDEX = 255


def offered(params: dict[str, Any]) -> dict[str, Any]:
    """What a data-set factory may ask for by name."""
    spec = params["data"]
    base = {"resolution": tuple(params["resolution"]), "classes": params["classes"],
            "in_channels": params.get("in_channels", 3), "seed": params["seed"], "split": spec.get("split", "train"),
            "batch_size": params["batch_size"]}
    known = {"kind", "dataset", "collate", "split", "image_key", "mask_key", "cache"}
    return {**base, **{k: v for k, v in spec.items() if k not in known}}


def build_dataset(params: dict[str, Any]) -> Any:
    spec = params["data"]
    fn = load(spec["dataset"], "dataset factory")
    try:
        ds = call(fn, spec["dataset"], "dataset factory", offered(params))
    except BenchbenchError:
        raise
    except Exception as exc:
        raise BenchbenchError(f"dataset factory {spec['dataset']!r} raised {type(exc).__name__}: "
                              f"{str(exc)[:300]}") from None
    duck = hasattr(ds, "__getitem__") and hasattr(ds, "__len__") and type(ds).__module__ != "builtins"
    if not isinstance(ds, (Dataset, IterableDataset)) and not duck:
        raise BenchbenchError(f"dataset factory {spec['dataset']!r} returned {type(ds).__name__}, not a "
                              "torch.utils.data.Dataset (map-style, with __getitem__ and __len__, or iterable)")
    return ds


def build_collate(params: dict[str, Any]) -> Any:
    spec = params["data"].get("collate")
    return load(spec, "collate function") if spec else None


def _as_tensor(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    return x


def split_item(item: Any, image_key: str, mask_key: str) -> tuple[Any, Any]:
    if isinstance(item, dict):
        missing = [k for k in (image_key, mask_key) if k not in item]
        if missing:
            raise BenchbenchError(f"an item is a mapping without {', '.join(map(repr, missing))} (its keys: "
                                  f"{', '.join(map(repr, list(item)[:8]))}); set data.image_key / data.mask_key")
        return item[image_key], item[mask_key]
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    raise BenchbenchError(f"an item is {type(item).__name__}: benchbench trains on (image, mask) pairs or mappings "
                          f"with {image_key!r} and {mask_key!r}")


def as_pair(item: Any, image_key: str, mask_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    image, mask = split_item(item, image_key, mask_key)
    image, mask = _as_tensor(image), _as_tensor(mask)
    if isinstance(mask, torch.Tensor):
        if mask.ndim == 3 and mask.shape[0] == 1:
            mask = mask[0]
        if not mask.is_floating_point():  # a float mask is refused by check_item, never silently truncated
            mask = mask.long()
    return image, mask


class Items(Dataset):
    """The user's map-style data set, each item as `(image, mask)` tensors."""

    def __init__(self, ds: Any, image_key: str, mask_key: str) -> None:
        self.ds, self.image_key, self.mask_key = ds, image_key, mask_key

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return as_pair(self.ds[idx], self.image_key, self.mask_key)


class IterItems(IterableDataset):
    """The user's iterable data set, each item as `(image, mask)` tensors."""

    def __init__(self, ds: Any, image_key: str, mask_key: str) -> None:
        self.ds, self.image_key, self.mask_key = ds, image_key, mask_key

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for item in self.ds:
            yield as_pair(item, self.image_key, self.mask_key)


class Cached(Dataset):
    """`cache: ram` on a user data set: every item computed once, before the workers fork. What the data set
    returns is kept — so its random augmentation is frozen: each epoch sees the first epoch's samples."""

    freezes_augmentation = True

    def __init__(self, items: Items) -> None:
        self.items = [items[i] for i in range(len(items))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.items[idx]


def user_items(params: dict[str, Any]) -> Items | IterItems | Cached:
    spec = params["data"]
    ds = build_dataset(params)
    keys = (spec.get("image_key", "image"), spec.get("mask_key", "mask"))
    if isinstance(ds, IterableDataset):
        if spec.get("cache") == "ram":
            raise BenchbenchError(f"dataset factory {spec['dataset']!r} returned an iterable data set: cache: ram "
                                  "needs a map-style one (with __len__ and __getitem__)")
        return IterItems(ds, *keys)
    items = Items(ds, *keys)
    return Cached(items) if spec.get("cache") == "ram" else items


def first_item(items: Any) -> Any:
    if isinstance(items, IterableDataset):
        return next(iter(items), None)
    return items[0] if len(items) else None


def check_item(params: dict[str, Any]) -> dict[str, Any]:
    """Build the data set and draw one item, as a cell would; every problem a message naming the factory and
    the field. Runs in a child process (the factory is the user's code). Returns what was seen."""
    spec = params["data"]
    name = spec["dataset"]
    items = user_items(params)
    n = None if isinstance(items, IterableDataset) else len(items)
    if n == 0:
        raise BenchbenchError(f"dataset factory {name!r} returned an empty data set (length 0)")
    if n is not None and n < params["batch_size"]:
        raise BenchbenchError(f"dataset factory {name!r}: {n} items, fewer than batch_size={params['batch_size']}")
    try:
        item = first_item(items)
    except BenchbenchError as exc:
        raise BenchbenchError(f"dataset factory {name!r}: {exc}") from None
    except Exception as exc:
        raise BenchbenchError(f"dataset factory {name!r}: reading item 0 raised {type(exc).__name__}: "
                              f"{str(exc)[:300]}") from None
    if item is None:
        raise BenchbenchError(f"dataset factory {name!r} returned an iterable data set that yields nothing")
    image, mask = item
    h, w = params["resolution"]
    c = params.get("in_channels", 3)
    if not isinstance(image, torch.Tensor):
        raise BenchbenchError(f"dataset factory {name!r}: the image is {type(image).__name__}, not a tensor or "
                              "numpy array (end the transforms with ToTensorV2 / ToImage)")
    if not isinstance(mask, torch.Tensor):
        raise BenchbenchError(f"dataset factory {name!r}: the mask is {type(mask).__name__}, not a tensor or "
                              "numpy array")
    if not image.is_floating_point():
        raise BenchbenchError(f"dataset factory {name!r}: the image is {image.dtype}, the model needs floats "
                              "(normalise it, e.g. A.Normalize or v2.ToDtype(torch.float32, scale=True))")
    if image.dtype != torch.float32:  # the model's weights are float32 (AMP casts inside autocast, not here)
        raise BenchbenchError(f"dataset factory {name!r}: the image is {image.dtype}; the model trains in float32 and "
                              "every cell would fail on it: cast it in the data set (`image.astype(np.float32)`, "
                              "A.ToFloat(), v2.ToDtype(torch.float32, scale=True), or `.float()`); AMP is the "
                              "suite's amp: axis, not the data's dtype")
    if tuple(image.shape) != (c, h, w):
        raise BenchbenchError(f"dataset factory {name!r}: the image is {'x'.join(map(str, image.shape))}, the cell "
                              f"trains {c}x{h}x{w} (in_channels x resolution; the factory is offered "
                              f"resolution=({h}, {w}): resize or crop to it; channels first)")
    if mask.is_floating_point():
        raise BenchbenchError(f"dataset factory {name!r}: the mask is {mask.dtype}; class indices are integers "
                              "(an albumentations mask stays uint8 unless a transform converts it)")
    if tuple(mask.shape) != (h, w):
        raise BenchbenchError(f"dataset factory {name!r}: the mask is {'x'.join(map(str, mask.shape))}, the cell "
                              f"trains {h}x{w}")
    bad = mask[(mask != IGNORE_INDEX) & ((mask < 0) | (mask >= params["classes"]))]
    if bad.numel():
        raise BenchbenchError(f"dataset factory {name!r}: the mask holds class {int(bad.max())} but the cell has "
                              f"classes={params['classes']} (values 0..{params['classes'] - 1}, {IGNORE_INDEX} "
                              "ignored)")
    return {"length": n, "image": list(image.shape), "image_dtype": str(image.dtype), "mask_dtype": str(mask.dtype)}
