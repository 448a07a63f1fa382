"""The package's import graph has no cycles, counting imports inside functions too.

An import moved into a function still runs, only later: it hides a cycle from Python's loader without
removing it. Imports inside functions are for deferring heavy libraries (vllm, torch, deepspeed, ray),
which are not toolmaster modules, so they never appear in this graph.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "toolmaster"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict) -> str | None:
    """The module ``name`` names, or its closest enclosing module (``pkg.mod.attr`` -> ``pkg.mod``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path, modules: dict) -> set[str]:
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package this module is in (or is)
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # ``from pkg import name``: the submodule pkg.name when there is one, else pkg itself
            names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                     for alias in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                target = _resolve(name, modules)
                if target:
                    out.add(target)
                    out.update(_packages_entered(module, target, modules))
    out.discard(module)
    return out


def _packages_entered(module: str, target: str, modules: dict) -> set[str]:
    """Importing ``pkg.sub.mod`` first runs ``pkg/sub/__init__.py``, unless the importer is already inside
    ``pkg.sub`` (then that package is initialized, or initializing, before it): those ``__init__`` modules
    are edges too, so a package that re-exports from its submodules is part of the graph."""
    out = set()
    parts = target.split(".")
    for i in range(2, len(parts)):
        package = ".".join(parts[:i])
        if package in modules and not (module + ".").startswith(package + "."):
            out.add(package)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_graph_is_read():
    graph = import_graph()
    assert "toolmaster.config" in graph and "toolmaster.envs" in graph
    assert "toolmaster.envs.base" in graph["toolmaster.envs"]  # a package's own imports count
    # a function-level import counts, and entering a package runs its __init__
    assert {"toolmaster.envs", "toolmaster.envs.toolworld"} <= graph["toolmaster.models.tiny"]


def test_find_cycle_reports_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
