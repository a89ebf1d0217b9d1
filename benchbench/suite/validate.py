"""Canonical forms of suite sections, with error messages that point at the YAML path."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from benchbench.errors import BenchbenchError, did_you_mean, short_repr
from benchbench.suite.schema import PARAM_KEYS, SUITE_KEYS, CellParams


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
            shown = f" (got {short_repr(got)})" if not isinstance(got, dict) else ""
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
        raise BenchbenchError(
            f"{where} must be a mapping of setting: value, got {type(raw).__name__} {short_repr(raw)}"
        )
    return {str(k): _canon_value(str(k), v, f"{where}.{k}") for k, v in raw.items()}


def _canon_matrix(raw: Any, where: str, present: bool = False) -> dict[str, list[Any]]:
    """`present`: the key was written; an empty matrix then is a mistake, never one default cell."""
    if raw is None and not present:
        return {}
    if present and not raw and not isinstance(raw, list):
        raise BenchbenchError(
            f"{where} is empty: give each axis a list of values (e.g. `{where}: {{batch_size: [4, "
            "8]}`), or remove it (a suite of fixed settings alone is one cell)"
        )
    if not isinstance(raw, dict):
        raise BenchbenchError(f"{where} must be a mapping of axis: [values], got {type(raw).__name__}")
    out: dict[str, list[Any]] = {}
    for axis, values in raw.items():
        axis = str(axis)
        if not isinstance(values, list):
            raise BenchbenchError(
                f"{where}.{axis} must be a list of values, got {short_repr(values)} (write [{short_repr(values)}])"
            )
        if not values:
            raise BenchbenchError(f"{where}.{axis} is an empty list: the matrix would have no cells")
        if axis == "device":
            raise BenchbenchError(
                f"{where}.device: a run measures on one device (every cell of it against one "
                "environment and one calibrated peak): choose it with --device or `device:`, and "
                "give per-device settings in `profiles:` (cpu, cuda)"
            )
        out[axis] = [_canon_value(axis, v, f"{where}.{axis}[{i}]") for i, v in enumerate(values)]
    return out


def _canon_list(raw: Any, where: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BenchbenchError(f"{where} must be a list of mappings, got {type(raw).__name__}")
    out = [_canon_dict(item, f"{where}[{i}]") for i, item in enumerate(raw)]
    for i, item in enumerate(out):
        if "device" in item:
            raise BenchbenchError(
                f"{where}[{i}].device: a run measures on one device; choose it with --device "
                "or `device:` and give per-device settings in `profiles:`"
            )
    return out


def _matches(combo: dict[str, Any], pattern: dict[str, Any]) -> bool:
    return all(k in combo and combo[k] == v for k, v in pattern.items())
