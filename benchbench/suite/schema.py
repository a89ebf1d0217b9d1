"""The cell schema (every setting a cell resolves to), the cell and suite types, and stable cell ids."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

# How a cell is run or judged, not what it measures: left out of the cell id, so a
# longer run or a tighter gate compares with earlier nights. They cannot be matrix
# axes (two cells with one id), which build_suite refuses.
NON_IDENTITY_KEYS = frozenset({"timeout_s", "warmup", "steps", "repeat", "on_oom", "memory_limit_mb",
                               "gate_threshold"})
SUITE_KEYS = ("name", "description", "matrix", "include", "exclude", "profiles", "reference")
DEVICES = ("cpu", "cuda")


def _resolution(value: Any) -> Any:
    """`256` and `[256, 256]` are the same cell: canonicalise to [h, w]."""
    if isinstance(value, bool):
        return value  # let pydantic reject it with its own message
    if isinstance(value, int):
        return [value, value]
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return [value[0], value[0]]
    return value


def _amp(value: Any) -> Any:
    if value is None or value is False:
        return "none"
    if isinstance(value, str):
        return value.lower()
    return value


COMPILE_MODES = ("reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _compile(value: Any) -> Any:
    """`true` and `default` are torch.compile's default mode and stay `True`, so existing cell ids keep."""
    if isinstance(value, str) and value.lower() in ("default", "true", "on", "yes"):
        return True
    if value is None or (isinstance(value, str) and value.lower() in ("false", "none", "off", "no")):
        return False
    return value


def _data(value: Any) -> Any:
    """Accept the short spellings and canonicalise to a dict with a `kind`."""
    if isinstance(value, str):
        return {"kind": value}
    if isinstance(value, dict) and "folder" in value and "kind" not in value:
        out = {"kind": "folder", "path": value["folder"]}
        out.update({k: v for k, v in value.items() if k != "folder"})
        return out
    if isinstance(value, dict) and "dataset" in value and "kind" not in value:
        return {"kind": "dataset", **value}
    return value


FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
BUILTIN_LOSSES = ("cross-entropy", "dice", "focal")
BUILTIN_OPTIMIZERS = ("adamw", "sgd", "adam", "rmsprop", "adamw-fused", "adam-fused")


def is_factory(value: Any) -> bool:
    """`pkg.module:function`: a user factory rather than a built-in name."""
    return isinstance(value, str) and bool(FACTORY.match(value))


def _named_or_factory(builtins: tuple[str, ...], what: str) -> Any:
    def check(value: Any) -> Any:
        if value in builtins or is_factory(value):
            return value
        raise ValueError(f"{what} must be one of {', '.join(builtins)} or a factory 'pkg.module:function', "
                         f"got {str(value)[:80]!r}")

    return AfterValidator(check)


class SyntheticData(BaseModel):
    """Tensors already on the device: measures the model alone."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["synthetic"] = "synthetic"


class SyntheticDiskData(BaseModel):
    """A generated CamVid-like PNG data set: a real decode/augment/collate cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["synthetic-disk"] = "synthetic-disk"
    image_size: Annotated[list[Annotated[int, Field(ge=8, le=8192)]], Field(min_length=2, max_length=2)] = [360, 480]
    count: Annotated[int, Field(ge=1, le=100_000)] = 64
    # ram: decode every image once into memory (the seeds' "cache the data set"); augmentation still runs per step
    cache: Literal["none", "ram"] = "none"


class FolderData(BaseModel):
    """A real data set on disk (CamVid layout or images/ + masks/)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["folder"] = "folder"
    path: Annotated[str, Field(min_length=1)]
    split: str = "train"
    cache: Literal["none", "ram"] = "none"


class UserData(BaseModel):
    """The user's own data set: `dataset` is a factory `pkg.module:function` called in the cell's process with
    the cell's settings it asks for (resolution, classes, seed, split, in_channels, batch_size, and every other
    key given here), returning a map-style or iterable `torch.utils.data.Dataset`. Its items are
    `(image, mask)` or a mapping with `image_key` and `mask_key`. benchbench builds the DataLoader, so every
    loader knob stays an axis."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: Literal["dataset"] = "dataset"
    dataset: Annotated[str, Field(pattern=FACTORY.pattern)]
    collate: Annotated[str, Field(pattern=FACTORY.pattern)] | None = None
    split: str = "train"
    image_key: str = "image"
    mask_key: str = "mask"
    # ram: keep what the data set returns — its random augmentation is then frozen (the record says so)
    cache: Literal["none", "ram"] = "none"

    @property
    def options(self) -> dict[str, Any]:
        """The extra keys, passed to the factory as they are."""
        return dict(self.model_extra or {})


DataSpec = Annotated[
    SyntheticData | SyntheticDiskData | FolderData | UserData,
    Field(discriminator="kind"),
    BeforeValidator(_data),
]
PositiveInt = Annotated[int, Field(ge=1, strict=True)]  # strict: `batch_size: true` is not 1


class CellParams(BaseModel):
    """Every setting a cell resolves to; also the list of valid matrix axes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: Annotated[str, Field(min_length=1)] = "Unet"
    encoder: Annotated[str, Field(min_length=1)] = "resnet18"
    decoder_channels: PositiveInt | None = None
    resolution: Annotated[
        list[Annotated[int, Field(ge=8, le=16384)]],
        Field(min_length=2, max_length=2),
        BeforeValidator(_resolution),
    ] = [256, 256]
    batch_size: PositiveInt = 4
    amp: Annotated[Literal["none", "fp16", "bf16"], BeforeValidator(_amp)] = "none"
    num_workers: Annotated[int, Field(ge=0, le=256)] = 0
    pin_memory: bool | None = None
    persistent_workers: bool = True
    prefetch_factor: PositiveInt | None = None
    channels_last: bool = False
    # false | true (= default mode) | reduce-overhead (CUDA graphs) | max-autotune | max-autotune-no-cudagraphs
    compile: Annotated[bool | Literal["reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
                       BeforeValidator(_compile)] = False
    # `-fused`: one multi-tensor kernel per step, and GradScaler keeps its inf check on the device
    # (no host sync per step with amp=fp16).
    # or `pkg.module:function`, called with the model and the settings it asks for (lr, ...)
    optimizer: Annotated[str, _named_or_factory(BUILTIN_OPTIMIZERS, "optimizer")] = "adamw"
    lr: Annotated[float, Field(gt=0)] = 1e-3
    # or `pkg.module:function`, called with the settings it asks for (classes, ignore_index, ...)
    loss: Annotated[str, _named_or_factory(BUILTIN_LOSSES, "loss")] = "cross-entropy"
    data: DataSpec = SyntheticData()
    classes: Annotated[int, Field(ge=1, le=10_000)] = 12
    in_channels: Annotated[int, Field(ge=1, le=64)] = 3
    warmup: Annotated[int, Field(ge=0)] = 10
    steps: Annotated[int, Field(ge=1)] = 20
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    timeout_s: Annotated[float, Field(gt=0)] = 600.0
    threads: PositiveInt | None = None
    memory_limit_mb: PositiveInt | None = None  # CPU: cap the cell's extra address space (RLIMIT_AS)
    on_oom: Literal["fail", "halve-batch"] = "fail"
    world_size: Annotated[int, Field(ge=1, le=64)] = 1
    # The regression gate's minimum effect for this cell (0.02 = 2%); None: compare's --threshold.
    gate_threshold: Annotated[float, Field(gt=0, lt=1)] | None = None


PARAM_KEYS = tuple(CellParams.model_fields)


@dataclass(frozen=True)
class Cell:
    """One point of the matrix, fully resolved."""

    id: str
    label: str
    params: dict[str, Any]

    @property
    def p(self) -> CellParams:
        return CellParams.model_validate(self.params)


@dataclass
class Suite:
    name: str
    description: str
    path: Path | None
    device: str
    cells: list[Cell]
    reference: Cell
    varied: list[str] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return slugify(self.name)


def slugify(name: str) -> str:
    """A file-name-safe form of a suite name: it can never climb out of results/."""
    # Letters of any script stay (two suites named 名前 and 日本語 are two folders), path characters never do.
    slug = re.sub(r"[^\w.-]+", "-", name).strip("-.")
    return slug[:80] or "suite"


def cell_id(params: dict[str, Any]) -> str:
    """Same parameters, same id, on any machine: a hash of canonical JSON.

    Settings left at their default are omitted, so adding a new setting to
    benchbench does not change the id of any existing cell.
    """
    defaults = _defaults()
    ident = {k: v for k, v in params.items() if k not in NON_IDENTITY_KEYS and defaults.get(k, object()) != v}
    blob = json.dumps(ident, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    return CellParams().model_dump(mode="json")
