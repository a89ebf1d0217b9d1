"""Choosing cells: --filter, the reference cell, and cost-balanced shards."""

from __future__ import annotations

import re
from typing import Any

import yaml

from benchbench.errors import BenchbenchError, short_repr
from benchbench.suite.schema import Cell, CellParams  # noqa: F401
from benchbench.suite.validate import _canon_dict, _canon_value, _matches


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


def parse_axis_filter(expr: str) -> tuple[str, Any]:
    """A command suite's filter: any axis name, its value as YAML reads it (the axes' own spelling)."""
    if "=" not in expr:
        raise BenchbenchError(f"--filter expects KEY=VALUE, got {expr!r}")
    key, raw = (x.strip() for x in expr.split("=", 1))
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return ("id" if key == "cell_id" else key), (raw if key in ("id", "cell_id") else value)


def apply_filters(cells: list[Cell], filters: list[str]) -> list[Cell]:
    """Keep cells that match every filter; values of one key may be given twice (OR). A command suite's cells
    are matched on their axes."""
    command = bool(cells) and "command" in cells[0].params
    wanted: dict[str, list[Any]] = {}
    for f in filters:
        k, v = parse_axis_filter(f) if command else parse_filter(f)
        wanted.setdefault(k, []).append(v)

    def hit(c: Cell, k: str, v: Any) -> bool:
        if k == "id":
            return c.id.startswith(str(v))
        return (c.params["axes"].get(k) if command else c.params.get(k)) == v

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
        raise BenchbenchError(
            f"reference {short_repr(ref)} names no cell (give a cell id, a label, or a mapping of settings)"
        )
    if isinstance(ref, dict):
        pattern = _canon_dict(ref, "reference")
        for c in cells:
            if _matches(c.params, pattern):
                return c
        # Under a filter the reference may be gone: fall back to the first cell.
        return cells[0]
    raise BenchbenchError(f"reference must be a cell id or a mapping of settings, got {short_repr(ref)}")


def pick_command_reference(ref: Any, cells: list[Cell]) -> Cell:
    """A command suite's reference: a cell id, a label, or a mapping of axis values (the first cell if none)."""
    if isinstance(ref, dict):
        return next((c for c in cells if all(c.params["axes"].get(k) == v for k, v in ref.items())), cells[0])
    return pick_reference(ref, cells)


def expected_cost(params: dict[str, Any]) -> float:
    """A rough relative cost for balancing shards: pixels x batch x steps (x decoder width); a command's cells
    cost alike (what they train is the command's)."""
    if "command" in params:
        return float(params["steps"])
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
    if n > 10_000:
        raise BenchbenchError(f"--shard {spec}: N is more shards than any fleet runs (at most 10,000)")
    loads = [0.0] * n
    mine: list[Cell] = []
    for c in sorted(cells, key=lambda c: (-expected_cost(c.params), c.id)):
        i = min(range(n), key=lambda j: (loads[j], j))
        loads[i] += expected_cost(c.params)
        if i == k - 1:
            mine.append(c)
    order = {c.id: i for i, c in enumerate(cells)}
    return sorted(mine, key=lambda c: order[c.id])
