"""Reading a suite file: YAML's safe loader, bounded, so no file can take the machine down.

`yaml.safe_load` expands every alias: nine nested levels of nine aliases are 9**9 nodes (gigabytes). The loader
counts the nodes it would expand and stops at a bound, and a file nested too deeply is a message, not a
RecursionError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from benchbench.errors import BenchbenchError

MAX_YAML_NODES = 100_000  # a suite is a few hundred nodes; a "billion laughs" alias bomb is billions


class _BoundedLoader(yaml.SafeLoader):
    """yaml.safe_load that counts the nodes it would expand, aliases included, and stops at a bound:
    safe_load expands every alias, so nine nested levels of nine aliases are 9**9 nodes (GBs of memory)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._total = 0
        self._aliases = 0
        self._sizes: dict[int, int] = {}

    def _size(self, node: Any) -> int:
        key = id(node)
        if key not in self._sizes:
            self._sizes[key] = 0  # a recursive alias is counted once (safe_load refuses it later anyway)
            kids = node.value if isinstance(node.value, list) else []
            total = 1
            for k in kids:
                total += sum(self._size(x) for x in k) if isinstance(k, tuple) else self._size(k)
            self._sizes[key] = total
        return self._sizes[key]

    def compose_node(self, parent: Any, index: Any) -> Any:
        alias = self.check_event(yaml.AliasEvent)
        node = super().compose_node(parent, index)
        self._aliases += bool(alias)
        self._total += self._size(node) if alias else 1
        if self._total > MAX_YAML_NODES:
            if self._aliases:
                raise yaml.YAMLError(f"the document expands to more than {MAX_YAML_NODES:,} values through its "
                                     "YAML aliases (aliases that repeat aliases: a 'billion laughs' bomb?); refused")
            raise yaml.YAMLError(f"the document holds more than {MAX_YAML_NODES:,} values, where a suite holds a few "
                                 "hundred: is it the suite file you meant?")
        return node


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
        doc = yaml.load(text, Loader=_BoundedLoader)
    except yaml.YAMLError as exc:
        raise BenchbenchError(f"suite file {p} is not valid YAML: {exc}") from None
    except RecursionError:
        raise BenchbenchError(f"suite file {p} nests lists or mappings too deeply to be a suite (a suite nests a "
                              "few levels)") from None
    if not isinstance(doc, dict):
        raise BenchbenchError(
            f"suite file {p} must contain a mapping with at least a 'matrix:' or settings, got {type(doc).__name__}"
        )
    return doc
