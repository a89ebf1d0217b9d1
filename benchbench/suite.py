"""Suites: the YAML schema, its validation, matrix expansion and stable cell ids.

A suite is read with a safe YAML loader and validated completely before any cell
runs, so a typo in cell 40 of 50 fails in a second, not after an hour.
Matrix semantics follow GitHub Actions (exclude first, then include) because
that is the matrix syntax CI users already know.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from benchbench.errors import BenchbenchError, did_you_mean

# Settings that change how long a cell is measured, not what it measures; they
# are left out of the cell id so that a longer run stays comparable.
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


def _data(value: Any) -> Any:
    """Accept the short spellings and canonicalise to a dict with a `kind`."""
    if isinstance(value, str):
        return {"kind": value}
    if isinstance(value, dict) and "folder" in value and "kind" not in value:
        out = {"kind": "folder", "path": value["folder"]}
        out.update({k: v for k, v in value.items() if k != "folder"})
        return out
    return value


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


class FolderData(BaseModel):
    """A real data set on disk (CamVid layout or images/ + masks/)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["folder"] = "folder"
    path: Annotated[str, Field(min_length=1)]
    split: str = "train"


DataSpec = Annotated[
    SyntheticData | SyntheticDiskData | FolderData,
    Field(discriminator="kind"),
    BeforeValidator(_data),
]
PositiveInt = Annotated[int, Field(ge=1)]


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
    compile: bool = False
    # `-fused`: one multi-tensor kernel per step, and GradScaler keeps its inf check on the device
    # (no host sync per step with amp=fp16).
    optimizer: Literal["adamw", "sgd", "adam", "rmsprop", "adamw-fused", "adam-fused"] = "adamw"
    lr: Annotated[float, Field(gt=0)] = 1e-3
    loss: Literal["cross-entropy", "dice", "focal"] = "cross-entropy"
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
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
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


# ---------------------------------------------------------------- validation


def _fmt_loc(prefix: str, loc: tuple[Any, ...]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("synthetic", "synthetic-disk", "folder") and out.endswith("data"):
            continue  # discriminator tag, not a key the user wrote
        else:
            out += f".{part}" if out else str(part)
    return out


def _explain(prefix: str, errors: list[dict[str, Any]]) -> str:
    lines = []
    for e in errors:
        loc = _fmt_loc(prefix, tuple(e["loc"]))
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            choices = PARAM_KEYS if len(e["loc"]) == 1 else ()
            lines.append(f"unknown key '{key}' at {loc}{did_you_mean(key, choices)}")
        else:
            got = e.get("input")
            shown = f" (got {got!r})" if not isinstance(got, dict) else ""
            lines.append(f"{loc}: {e['msg']}{shown}")
    return "; ".join(lines)


def _canon_value(key: str, value: Any, where: str) -> Any:
    """Validate one setting on its own so errors point at the exact YAML path."""
    if key not in CellParams.model_fields:
        raise BenchbenchError(
            f"unknown setting '{key}' at {where}{did_you_mean(key, PARAM_KEYS + SUITE_KEYS)}. "
            f"Valid settings: {', '.join(PARAM_KEYS)}."
        )
    try:
        model = CellParams.model_validate({key: value})
    except ValidationError as err:
        raise BenchbenchError(f"invalid value in suite: {_explain(where, _strip(err, key))}") from None
    return model.model_dump(mode="json")[key]


def _strip(err: ValidationError, key: str) -> list[dict[str, Any]]:
    """Errors without the leading field name in their location (the caller's path has it)."""
    out = []
    for e in err.errors():
        loc = tuple(e["loc"])
        out.append({**e, "loc": loc[1:] if loc and loc[0] == key else loc})
    return out


def _canon_dict(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise BenchbenchError(f"{where} must be a mapping of setting: value, got {type(raw).__name__} {raw!r}")
    return {str(k): _canon_value(str(k), v, f"{where}.{k}") for k, v in raw.items()}


def _canon_matrix(raw: Any, where: str) -> dict[str, list[Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BenchbenchError(f"{where} must be a mapping of axis: [values], got {type(raw).__name__}")
    out: dict[str, list[Any]] = {}
    for axis, values in raw.items():
        axis = str(axis)
        if not isinstance(values, list):
            raise BenchbenchError(f"{where}.{axis} must be a list of values, got {values!r} (write [{values!r}])")
        if not values:
            raise BenchbenchError(f"{where}.{axis} is an empty list: the matrix would have no cells")
        out[axis] = [_canon_value(axis, v, f"{where}.{axis}[{i}]") for i, v in enumerate(values)]
    return out


def _canon_list(raw: Any, where: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BenchbenchError(f"{where} must be a list of mappings, got {type(raw).__name__}")
    return [_canon_dict(item, f"{where}[{i}]") for i, item in enumerate(raw)]


# ---------------------------------------------------------------- loading


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise BenchbenchError(f"suite file not found: {p}")
    if p.is_dir():
        raise BenchbenchError(f"suite path is a directory, expected a YAML file: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchbenchError(f"cannot read suite file {p}: {exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BenchbenchError(f"suite file {p} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise BenchbenchError(
            f"suite file {p} must contain a mapping with at least a 'matrix:' or settings, got {type(doc).__name__}"
        )
    return doc


def resolve_device(requested: str | None, suite_device: str = "auto") -> str:
    choice = requested or suite_device or "auto"
    if choice not in ("auto", *DEVICES):
        raise BenchbenchError(f"unknown device {choice!r}: choose auto, cpu or cuda")
    if choice == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise BenchbenchError("device 'cuda' requested but torch.cuda.is_available() is False on this machine")
    return choice


def load_suite(
    path: str | Path,
    device: str | None = None,
    filters: list[str] | None = None,
) -> Suite:
    doc = load_yaml(path)
    return build_suite(doc, device=device, filters=filters, path=Path(path))


def build_suite(
    doc: dict[str, Any],
    device: str | None = None,
    filters: list[str] | None = None,
    path: Path | None = None,
) -> Suite:
    doc = {str(k): v for k, v in doc.items()}
    for key in doc:
        if key not in SUITE_KEYS and key not in CellParams.model_fields:
            raise BenchbenchError(
                f"unknown key '{key}' at the top of the suite{did_you_mean(key, SUITE_KEYS + PARAM_KEYS)}. "
                f"Suite keys: {', '.join(SUITE_KEYS)}; settings: {', '.join(PARAM_KEYS)}."
            )
    name = doc.get("name") or (path.stem if path else "suite")
    if not isinstance(name, str):
        raise BenchbenchError(f"name must be a string, got {name!r}")
    description = doc.get("description") or ""
    if not isinstance(description, str):
        raise BenchbenchError(f"description must be a string, got {description!r}")

    fixed = _canon_dict({k: v for k, v in doc.items() if k in CellParams.model_fields}, "suite")
    matrix = _canon_matrix(doc.get("matrix"), "matrix")
    exclude = _canon_list(doc.get("exclude"), "exclude")
    include = _canon_list(doc.get("include"), "include")

    profiles = doc.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise BenchbenchError("profiles must be a mapping with 'cpu:' and/or 'cuda:' entries")
    for pname in profiles:
        if pname not in DEVICES:
            raise BenchbenchError(f"unknown profile '{pname}'{did_you_mean(str(pname), DEVICES)}: profiles are cpu and cuda")
    # Validate every profile, not only the chosen one: a broken cuda profile
    # must fail on the CPU laptop where the suite is written.
    canon_profiles: dict[str, dict[str, Any]] = {}
    for pname, prof in profiles.items():
        prof = prof or {}
        if not isinstance(prof, dict):
            raise BenchbenchError(f"profiles.{pname} must be a mapping")
        for key in prof:
            if key in ("name", "description", "profiles", "reference"):
                raise BenchbenchError(f"profiles.{pname}.{key}: '{key}' cannot be set per profile")
        where = f"profiles.{pname}"
        canon_profiles[pname] = {
            "matrix": _canon_matrix(prof.get("matrix"), f"{where}.matrix"),
            "include": _canon_list(prof["include"], f"{where}.include") if "include" in prof else None,
            "exclude": _canon_list(prof["exclude"], f"{where}.exclude") if "exclude" in prof else None,
            "fixed": _canon_dict({k: v for k, v in prof.items() if k not in SUITE_KEYS}, where),
        }

    dev = resolve_device(device, fixed.get("device", "auto"))
    if dev in canon_profiles:
        # A profile merges axis by axis into the matrix, replaces include/exclude
        # lists it names, and overrides fixed settings.
        prof = canon_profiles[dev]
        fixed.update(prof["fixed"])
        matrix.update(prof["matrix"])
        if prof["include"] is not None:
            include = prof["include"]
        if prof["exclude"] is not None:
            exclude = prof["exclude"]
    fixed["device"] = dev

    combos = expand(matrix, exclude, include)
    if not combos:
        raise BenchbenchError("the matrix is empty after exclude/include: no cells to run")
    resolved: list[dict[str, Any]] = []
    seen: dict[str, dict[str, Any]] = {}
    for i, combo in enumerate(combos):
        merged = {**fixed, **combo, "device": dev}
        try:
            params = CellParams.model_validate(merged).model_dump(mode="json")
        except ValidationError as err:
            raise BenchbenchError(f"cell {i + 1}: {_explain('', err.errors())}") from None
        cid = cell_id(params)
        if cid in seen:
            if seen[cid] != params:  # differs only in settings that are not part of the id
                diff = sorted(k for k in params if params[k] != seen[cid].get(k))
                raise BenchbenchError(
                    f"cells {len(resolved)} and {i + 1} differ only in {', '.join(diff)}, which "
                    f"{'is' if len(diff) == 1 else 'are'} not part of a cell's identity (how it is run or judged, "
                    f"not what it measures): they would be one cell. Set {', '.join(diff)} once (top level, a "
                    "profile, or an include entry), not as a matrix axis")
            continue  # include can recreate an existing combination
        seen[cid] = params
        resolved.append(params)
    varied = [
        k for k in PARAM_KEYS if len({json.dumps(p[k], sort_keys=True) for p in resolved}) > 1 and k not in NON_IDENTITY_KEYS
    ]
    cells = [Cell(id=cell_id(p), label=make_label(p, varied), params=p) for p in resolved]

    if filters:
        cells = apply_filters(cells, filters)

    reference = pick_reference(doc.get("reference"), cells)
    return Suite(
        name=name,
        description=description,
        path=path,
        device=dev,
        cells=cells,
        reference=reference,
        varied=varied,
    )


def _matches(combo: dict[str, Any], pattern: dict[str, Any]) -> bool:
    return all(k in combo and combo[k] == v for k, v in pattern.items())


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


def make_label(params: dict[str, Any], varied: list[str]) -> str:
    parts = []
    for k in varied:
        v = params.get(k)
        if k == "resolution" and isinstance(v, list):
            v = f"{v[0]}" if v[0] == v[1] else f"{v[0]}x{v[1]}"
        elif k == "data" and isinstance(v, dict):
            v = v.get("kind") if v.get("kind") != "folder" else f"folder:{Path(v['path']).name}"
        elif v is None:
            v = "default"
        elif k in ("arch", "encoder"):
            parts.append(str(v))
            continue
        parts.append(f"{_short(k)}={v}")
    return " ".join(parts) or params.get("arch", "cell")


def _short(key: str) -> str:
    return {
        "decoder_channels": "dc",
        "resolution": "res",
        "batch_size": "bs",
        "num_workers": "workers",
        "channels_last": "cl",
    }.get(key, key)


def parse_filter(expr: str) -> tuple[str, Any]:
    if "=" not in expr:
        raise BenchbenchError(f"--filter expects KEY=VALUE, got {expr!r}")
    key, raw = expr.split("=", 1)
    key = key.strip()
    if key in ("id", "cell_id"):
        return "id", raw.strip()
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key, _canon_value(key, value, f"--filter {key}")


def apply_filters(cells: list[Cell], filters: list[str]) -> list[Cell]:
    """Keep cells that match every filter; values of one key may be given twice (OR)."""
    wanted: dict[str, list[Any]] = {}
    for f in filters:
        k, v = parse_filter(f)
        wanted.setdefault(k, []).append(v)

    def hit(c: Cell, k: str, v: Any) -> bool:
        return c.id.startswith(str(v)) if k == "id" else c.params.get(k) == v

    out = [c for c in cells if all(any(hit(c, k, v) for v in vs) for k, vs in wanted.items())]
    if not out:
        raise BenchbenchError(f"no cell matches --filter {' '.join(filters)}")
    return out


def pick_reference(ref: Any, cells: list[Cell]) -> Cell:
    if ref is None:
        return cells[0]
    if isinstance(ref, str):
        for c in cells:
            if c.id.startswith(ref) or c.label == ref:
                return c
        raise BenchbenchError(f"reference {ref!r} names no cell (give a cell id, a label, or a mapping of settings)")
    if isinstance(ref, dict):
        pattern = _canon_dict(ref, "reference")
        for c in cells:
            if _matches(c.params, pattern):
                return c
        # Under a filter the reference may be gone: fall back to the first cell.
        return cells[0]
    raise BenchbenchError(f"reference must be a cell id or a mapping of settings, got {ref!r}")


def expected_cost(params: dict[str, Any]) -> float:
    """A rough relative cost for balancing shards: pixels x batch x steps (x decoder width)."""
    h, w = params["resolution"]
    width = (params.get("decoder_channels") or 128) / 128
    return h * w * params["batch_size"] * (params["steps"] + params["warmup"]) * (0.5 + width)


def shard_cells(cells: list[Cell], spec: str) -> list[Cell]:
    """Deterministic K/N split, greedy by expected cost (longest first), ties by cell id."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec or "")
    if not m:
        raise BenchbenchError(f"--shard expects K/N such as 1/4, got {spec!r}")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= k <= n:
        raise BenchbenchError(f"--shard {spec}: K must be between 1 and N")
    loads = [0.0] * n
    mine: list[Cell] = []
    for c in sorted(cells, key=lambda c: (-expected_cost(c.params), c.id)):
        i = min(range(n), key=lambda j: (loads[j], j))
        loads[i] += expected_cost(c.params)
        if i == k - 1:
            mine.append(c)
    order = {c.id: i for i, c in enumerate(cells)}
    return sorted(mine, key=lambda c: order[c.id])
