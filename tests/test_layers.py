"""The one-way flow, checked: no module imports from a layer after it (relative and function-level imports
included), no import cycle anywhere, and no module is too large.

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


def _module_names() -> dict[str, Path]:
    """Dotted name -> file; a package is its __init__ (`benchbench.record`)."""
    out = {}
    for path, mod in modules():
        out[mod.removesuffix(".__init__")] = path
    return out


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names, relative ones (`from .x import y`) included."""
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under `if TYPE_CHECKING:` (annotations only: never imported when the code runs)."""
    out: list[ast.AST] = []

    def walk(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                walk(child)
            return
        out.append(node)
        for child in ast.iter_child_nodes(node):
            walk(child)

    walk(tree)
    return out


def import_graph() -> dict[str, set[str]]:
    """Every import of one benchbench module by another, function-level and relative ones included: a cycle
    hidden behind an import inside a function is still a cycle (it only fails later, at the first call)."""
    names = _module_names()
    graph: dict[str, set[str]] = {m: set() for m in names}
    for mod, path in names.items():
        is_pkg = path.name == "__init__.py"
        for node in _runtime_nodes(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node)
                # `from pkg import sub` imports the submodule when there is one, else a name from pkg
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in names else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                while t and t not in names:  # `import benchbench.record.model` names the module itself
                    t = t.rpartition(".")[0]
                if t and t != mod and t.startswith("benchbench"):
                    graph[mod].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a cycle of imports. A package's
    __init__ counts as a module: a submodule that imports its own package (which imports the submodule) is in
    a cycle — it imports its siblings directly instead."""
    edges = graph
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_anywhere() -> None:
    assert not _cycles(import_graph())


def test_relative_imports_obey_the_layers_too() -> None:
    bad = []
    for mod, targets in import_graph().items():
        own = top(mod) if mod != "benchbench" else "__init__"
        for t in targets:
            if RANK.get(top(t), -1) > RANK.get(own, 99):
                bad.append(f"{mod} imports {t}")
    assert not bad, "\n".join(bad)


def test_the_cycle_check_finds_a_cycle() -> None:
    """The checker itself: a planted cycle, a package re-exporting its submodules (no cycle)."""
    assert _cycles({"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}}) == [["a.x", "a.y", "a.z"]]
    assert _cycles({"p": {"p.m"}, "p.m": {"p"}}) == [["p", "p.m"]]
    assert _cycles({"p": {"p.m", "p.n"}, "p.m": {"p.n"}, "p.n": set()}) == []
    typed = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import benchbench.x\n"
                      "import benchbench.y\n")
    assert [a.name for n in _runtime_nodes(typed) if isinstance(n, ast.Import) for a in n.names] == ["benchbench.y"]
    tree = ast.parse("from .model import Record\nfrom . import parts\nfrom ..errors import E\n")
    froms = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert [_resolve("benchbench.record", True, n) for n in froms] == [
        "benchbench.record.model", "benchbench.record", "benchbench.errors"]


def test_no_module_over_300_lines() -> None:
    big = {mod: n for path, mod in modules() if (n := len(path.read_text().splitlines())) >= 300}
    assert not big, big


def test_attach_advise_attach_and_command_cells_share_the_session_the_warmup_rule_and_the_trackers() -> None:
    """One session (`benchbench.session`) for attach, advise --attach and command suites (which `run` runs);
    one warm-up rule (`measure.timer.WarmupRule`) for `timed_loop` and attach's hooks; `measure.trackers`'
    registry around both timed blocks. No module under runner/attach keeps a rule or a tracker of its own."""
    def src(rel: str) -> str:
        return (PKG / rel).read_text()

    assert "Session.open(" in src("cli/attach.py") and "open_session(" in src("cli/advise_attach.py")
    assert "Session.open(" in src("cli/run.py") and "measure_command" in src("runner/cell.py")
    assert "WarmupRule(" in src("runner/attach/timing.py") and src("measure/timer.py").count("WarmupRule(") >= 2
    assert "Trackers(" in src("runner/attach/timing.py") and "Trackers(" in src("runner/program.py")
    for f in (PKG / "runner" / "attach").rglob("*.py"):
        text = f.read_text()
        for own in ("is_steady(", "STEADY_WINDOW", "CpuContention(", "open_tracker(", "new_run_id(", "ResultStore("):
            assert own not in text, f"{f.name} keeps its own {own}"
