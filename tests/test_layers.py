"""The import-layer contract: every module of ``ptmdd_helpers`` sits in one layer and imports only
from its own layer or those below it (lazy imports inside functions count; imports under
``TYPE_CHECKING`` do not), and no two modules import each other, directly or around a circle.

Layers, bottom up: the pipeline of docs/method.md read as imports. Evaluation knows nothing of
distillation, the store or the study; distillation nothing of the store; the report nothing of
the study; the command line is on top."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ptmdd_helpers"

LAYERS = [  # a layer's members: subpackages or modules, by their dotted name below the package
    ("base", {"ptmdd_helpers", "paths", "seeding", "malloc", "spread", "specs", "work", "atomic",
              "checks", "notebook_kernel"}),
    ("data", {"data"}),
    ("networks", {"networks"}),
    ("pools", {"pools"}),
    ("guidance", {"pools.guidance"}),
    ("evaluation", {"evaluation"}),
    ("distillation", {"distill"}),
    ("store", {"store"}),
    ("report", {"report"}),
    ("study", {"study"}),
    ("command line", {"cli"}),
]


def module_name(path: Path) -> str:
    """``ptmdd_helpers.distill.dc`` for ``ptmdd_helpers/distill/dc.py`` (a package: its folder)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name."""
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports (lazy ones too; not those under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[:len(base) - node.level + 1] + [node.module or ""]).strip(".")
            elif (node.module or "").startswith("ptmdd_helpers"):
                target = node.module
            else:
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in known else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ptmdd_helpers")}
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    """Each module and the package modules it imports."""
    found = modules()
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def layer_of(name: str) -> int:
    """The index of the layer ``name`` belongs to: that of its longest dotted prefix in LAYERS."""
    parts = name.split(".")[1:] or ["ptmdd_helpers"]
    for length in range(len(parts), 0, -1):
        key = ".".join(parts[:length])
        for index, (_, members) in enumerate(LAYERS):
            if key in members:
                return index
    raise AssertionError(f"{name} is in no layer: add it to LAYERS in tests/test_layers.py")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_imports_only_its_own_layer_or_below():
    graph = import_graph()
    upward = [f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
              for a, targets in sorted(graph.items()) for b in sorted(targets)
              if layer_of(b) > layer_of(a)]
    assert upward == []


def test_no_module_imports_around_a_circle():
    assert cycles(import_graph()) == []


def test_the_contract_catches_a_circle_and_an_upward_import():
    graph = {"ptmdd_helpers.evaluation.evaluate": {"ptmdd_helpers.store.runstore"},
             "ptmdd_helpers.store.runstore": {"ptmdd_helpers.evaluation.evaluate"}}
    assert cycles(graph) == [["ptmdd_helpers.evaluation.evaluate", "ptmdd_helpers.store.runstore"]]
    assert layer_of("ptmdd_helpers.store.runstore") > layer_of("ptmdd_helpers.evaluation.evaluate")
    assert layer_of("ptmdd_helpers.distill.mtt") == layer_of("ptmdd_helpers.distill")
    assert layer_of("ptmdd_helpers.pools.pool") < layer_of("ptmdd_helpers.pools.guidance")
    assert layer_of("ptmdd_helpers.pools") == layer_of("ptmdd_helpers.pools.experts")


def test_the_graph_sees_lazy_relative_imports():
    graph = import_graph()
    assert "ptmdd_helpers.distill.methods" in graph["ptmdd_helpers.distill.dc"]  # from .methods
    assert "ptmdd_helpers.pools.pool" in graph["ptmdd_helpers.pools.guidance"]  # from .pool
    assert "ptmdd_helpers.pools.guidance" in graph["ptmdd_helpers.distill"]  # from ..pools.guidance
    assert "ptmdd_helpers.store.runs" in graph["ptmdd_helpers.cli.options"]  # inside a function


MAX_LINES = 400  # issue 23: a module a reader takes in at once


def test_no_module_is_longer_than_400_lines():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"split these modules by what they are for: {long}"
