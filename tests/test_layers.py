"""The one-way flow, checked: no module imports from a layer after it, and no module is too large.

suite -> workload -> measure -> runner -> results -> analysis -> history -> advise -> report -> cli.
Beneath them all: errors, the record type (record) and the trace reader (timeline),
which both the runner (writing records, reading its own traces) and analysis use.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "benchbench"
LAYERS = [
    ("errors", "outputs", "policy", "record", "timeline", "py.typed"),
    ("suite",),
    ("workload",),
    ("measure",),
    ("runner", "tune"),
    ("results", "baselines"),
    ("session",),
    ("analysis",),
    ("history",),
    ("advise",),
    ("report",),
    ("cli", "pytest_plugin", "__main__", "__init__"),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def top(module: str) -> str:
    return module.split(".")[1] if module.startswith("benchbench.") else ""


def modules() -> list[tuple[Path, str]]:
    out = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        out.append((path, ".".join(rel.parts)))
    return out


def test_no_module_imports_from_a_later_layer() -> None:
    bad = []
    for path, mod in modules():
        own = top(mod) if mod != "benchbench.__init__" else "__init__"
        if own not in RANK:
            bad.append(f"{mod}: not in any layer")
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("benchbench.") and RANK.get(top(name), -1) > RANK[own]:
                    bad.append(f"{mod} imports {name}")
    assert not bad, "\n".join(bad)


def test_no_module_over_300_lines() -> None:
    big = {mod: n for path, mod in modules() if (n := len(path.read_text().splitlines())) >= 300}
    assert not big, big
