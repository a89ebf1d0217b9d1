"""Loading a suite: YAML, profiles, GitHub Actions matrix expansion, labels.

A suite is read with a safe YAML loader and validated completely before any cell
runs, so a typo in cell 40 of 50 fails in a second, not after an hour.
Matrix semantics follow GitHub Actions (exclude first, then include) because
that is the matrix syntax CI users already know.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from benchbench.errors import BenchbenchError, did_you_mean, short_repr
from benchbench.suite.matrix import expand, resolve_device
from benchbench.suite.schema import (
    DEVICES,
    NON_IDENTITY_KEYS,
    PARAM_KEYS,
    SUITE_KEYS,
    Cell,
    CellParams,
    Suite,
    cell_id,
)
from benchbench.suite.select import apply_filters, pick_reference
from benchbench.suite.validate import (
    _canon_dict,
    _canon_list,
    _canon_matrix,
    _explain,
)
from benchbench.suite.yaml_load import load_yaml

MAX_NAME = 120
MAX_CELLS_DEFAULT = 10_000


def max_cells() -> int:
    """The largest matrix a suite may expand to (BENCHBENCH_MAX_CELLS overrides the default 10,000)."""
    import os

    try:
        return max(1, int(os.environ.get("BENCHBENCH_MAX_CELLS", MAX_CELLS_DEFAULT)))
    except ValueError:
        raise BenchbenchError("BENCHBENCH_MAX_CELLS must be a whole number") from None


def load_suite(
    path: str | Path,
    device: str | None = None,
    filters: list[str] | None = None,
    available: bool = True,
) -> Suite:
    doc = load_yaml(path)
    try:
        return build_suite(doc, device=device, filters=filters, path=Path(path), available=available)
    except RecursionError:
        raise BenchbenchError(f"suite file {path} nests values too deeply to be a suite") from None


def build_suite(
    doc: dict[str, Any],
    device: str | None = None,
    filters: list[str] | None = None,
    path: Path | None = None,
    available: bool = True,
) -> Suite:
    doc = {str(k): v for k, v in doc.items()}
    if "command" in doc:  # the user's own command, its arguments as axes
        from benchbench.suite.command import build_command_suite

        return build_command_suite(doc, device, filters, path, available)
    for key in doc:
        if key not in SUITE_KEYS and key not in CellParams.model_fields:
            raise BenchbenchError(
                f"unknown key '{key}' at the top of the suite{did_you_mean(key, SUITE_KEYS + PARAM_KEYS)}. "
                f"Suite keys: {', '.join(SUITE_KEYS)}; settings: {', '.join(PARAM_KEYS)}."
            )
    name = doc.get("name") or (path.stem if path else "suite")
    if not isinstance(name, str):
        raise BenchbenchError(f"name must be a string, got {short_repr(name, 60)}")
    if len(name) > MAX_NAME:
        raise BenchbenchError(f"name {short_repr(name, 60)} is {len(name):,} characters: a suite name is at most "
                              f"{MAX_NAME} (it names the results folder and every report)")
    description = doc.get("description") or ""
    if not isinstance(description, str):
        raise BenchbenchError(f"description must be a string, got {description!r}")

    fixed = _canon_dict({k: v for k, v in doc.items() if k in CellParams.model_fields}, "suite")
    matrix = _canon_matrix(doc.get("matrix"), "matrix", "matrix" in doc)
    exclude = _canon_list(doc.get("exclude"), "exclude")
    include = _canon_list(doc.get("include"), "include")

    profiles = doc.get("profiles") or {}
    if not isinstance(profiles, dict):
        raise BenchbenchError("profiles must be a mapping with 'cpu:' and/or 'cuda:' entries")
    for pname in profiles:
        if pname not in DEVICES:
            raise BenchbenchError(
                f"unknown profile '{pname}'{did_you_mean(str(pname), DEVICES)}: profiles are cpu and cuda"
            )
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
            "matrix": _canon_matrix(prof.get("matrix"), f"{where}.matrix", "matrix" in prof),
            "include": _canon_list(prof["include"], f"{where}.include") if "include" in prof else None,
            "exclude": _canon_list(prof["exclude"], f"{where}.exclude") if "exclude" in prof else None,
            "fixed": _canon_dict({k: v for k, v in prof.items() if k not in SUITE_KEYS}, where),
        }

    dev = resolve_device(device, fixed.get("device", "auto"), available)
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

    n = 1
    for values in matrix.values():
        n *= len(values)
    if n + len(include) > max_cells():
        raise BenchbenchError(
            f"the matrix has {n:,} combinations before exclude (+{len(include)} include entries), "
            f"more than the limit of {max_cells():,} cells; split the suite, or raise the limit "
            "with BENCHBENCH_MAX_CELLS"
        )
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
                    "profile, or an include entry), not as a matrix axis"
                )
            continue  # include can recreate an existing combination
        seen[cid] = params
        resolved.append(params)
    varied = [
        k
        for k in PARAM_KEYS
        if len({json.dumps(p[k], sort_keys=True) for p in resolved}) > 1 and k not in NON_IDENTITY_KEYS
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
