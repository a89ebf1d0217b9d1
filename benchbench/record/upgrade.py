"""Older records brought to the current schema, explicitly, as asv upgrades its results files.

`benchbench.result/1` was an open dict that grew fields (timing, training, gpu_conditions, repeats.runs,
invocation) without a version bump. Its upgrade to `/2`:

- every field the typed record knows is kept; a field it does not know is moved to `extra` under its path
  (kept, never dropped silently);
- `label` defaults to the cell id;
- `gpu_conditions` written before the clock-event reasons were judged per sample kept the reasons OR-ed over
  the block: SW power cap is no longer called throttling (it is a GPU-bound GPU at its power limit), and the
  judgement says it was made from OR-ed reasons.

A document with another schema (`benchbench.result/99`, or none at all) is refused, never guessed at.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

from benchbench.record.parts import RecordError

CURRENT = "benchbench.result/2"
KNOWN = ("benchbench.result/1", CURRENT)


def upgrade(doc: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """`doc` in the current schema. `model` is the record type (passed in: the type imports this module)."""
    schema = doc.get("schema")
    if schema == CURRENT:
        return doc
    if schema not in KNOWN:
        if isinstance(schema, str) and schema.startswith("benchbench.result/"):
            raise RecordError(f"schema {schema!r}: written by another benchbench version (this one reads "
                              f"{', '.join(KNOWN)})")
        raise RecordError(f"schema {str(schema)[:60]!r} is not a benchbench result record")
    return from_1(doc, model)


def from_1(doc: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    doc = {k: v for k, v in doc.items() if v is not None}
    inv = doc.get("invocation")
    if isinstance(inv, dict) and "options" not in inv:  # /1: a run's options beside its suite's hash
        doc["invocation"] = {"kind": "run", "suite_sha1": inv.get("suite_sha1"),
                             "options": {k: v for k, v in inv.items() if k != "suite_sha1"}}
    tag = doc.get("advise")
    if isinstance(tag, dict) and isinstance(tag.get("invocation"), dict):  # /1 kept advise's options in its tag
        tag = dict(tag)
        doc["invocation"] = {"kind": "advise", "options": tag.pop("invocation")}
        doc["advise"] = tag
    extra: dict[str, Any] = dict(doc.get("extra") or {})
    out = fit(model, doc, "", extra)
    out["schema"] = CURRENT
    if not out.get("label"):
        out["label"] = out.get("cell_id")
    cond = out.get("gpu_conditions")
    if isinstance(cond, dict) and "reason_samples" not in cond and cond.get("throttle_reasons"):
        reasons = [r for r in cond.get("throttle_reasons") or [] if isinstance(r, str)]
        degrading = [r for r in reasons if r != "sw_power_cap"]
        cond.update(throttled=bool(degrading) if cond.get("throttled") is not None else None,
                    throttle_reasons=degrading, power_capped=("sw_power_cap" in reasons) or None,
                    reasons_basis="benchbench.result/1 kept the clock-event reasons OR-ed over the block, not per "
                                  "sample: SW power cap is not throttling; the rest could not be checked for "
                                  "being sustained")
    if extra:
        out["extra"] = extra
    return out


def _part_types(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """(the model inside an annotation, how: 'one' | 'list' | 'dict'), or (None, '')."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, "one"
    if origin in (typing.Union, types.UnionType):
        for a in args:
            model, how = _part_types(a)
            if model is not None:
                return model, how
        return None, ""
    if origin is list and args:
        model, how = _part_types(args[0])
        return (model, "list") if model is not None and how == "one" else (None, "")
    if origin is dict and len(args) == 2:
        model, how = _part_types(args[1])
        return (model, "dict") if model is not None and how == "one" else (None, "")
    return None, ""


def fit(model: type[BaseModel], data: Any, path: str, extra: dict[str, Any]) -> Any:
    """`data` reduced to what `model` declares (recursively); what it does not declare goes to `extra`."""
    if not isinstance(data, dict) or model.model_config.get("extra") != "forbid":
        return data
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    out: dict[str, Any] = {}
    for key, value in data.items():
        f = fields.get(key)
        if f is None:
            extra[f"{path}{key}"] = value
            continue
        sub, how = _part_types(f.annotation)
        if sub is not None and value is not None:
            where = f"{path}{key}."
            if how == "one":
                value = fit(sub, value, where, extra)
            elif how == "list" and isinstance(value, list):
                value = [fit(sub, v, f"{where}{i}.", extra) for i, v in enumerate(value)]
            elif how == "dict" and isinstance(value, dict):
                value = {k: fit(sub, v, f"{where}{k}.", extra) for k, v in value.items()}
        out[key] = value
    return out
