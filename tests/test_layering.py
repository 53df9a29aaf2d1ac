"""The import graph of compiler/, frontend_dsl/ and runtime/ has floors and no circles.

Every ``import`` -- at the top of a module, inside a function, or under
``TYPE_CHECKING`` -- goes down to a lower floor or stays inside its own
room.  Rooms on the same floor (codegen and the frontend) know nothing of
each other.  docs/architecture.md draws the same picture.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("compiler", "frontend_dsl", "runtime", "dlc")

# (module prefix, floor, room); the longest matching prefix decides.
FLOORS: list[tuple[str, int, str]] = [
    ("compiler", 0, "base"),                     # the package itself: __version__ only
    ("compiler.diagnostics", 0, "base"),
    ("compiler.ir.types", 1, "ir-data"),
    ("compiler.ir.dims", 1, "ir-data"),
    ("compiler.ir.core", 1, "ir-data"),
    ("compiler.ir.printer", 1, "ir-data"),
    ("compiler.ir.sizes", 1, "ir-data"),
    ("compiler.ops", 2, "ops"),
    ("compiler.ir", 3, "ir-tools"),              # builder, verifier, parser, interpreter
    ("compiler.passes", 4, "passes"),
    ("compiler.metrics", 4, "model-parts"),
    ("compiler.optimizers", 4, "model-parts"),
    ("compiler.initializers", 4, "model-parts"),
    ("compiler.schedules", 4, "model-parts"),
    ("compiler.checking", 5, "checking"),
    ("compiler.train_step", 5, "training"),
    ("compiler.decode", 5, "decode"),
    ("compiler.analysis", 6, "analysis"),
    ("compiler.codegen", 6, "codegen"),
    ("frontend_dsl", 6, "frontend"),
    ("runtime", 7, "runtime"),
    ("dlc", 8, "facade"),                        # the public names, re-exported
]


def _modules() -> dict[str, Path]:
    mods = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in its body."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                # `from pkg import mod` imports pkg.mod; `from mod import name` imports mod
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                resolved = _resolve(target, mods)
                if resolved is not None and resolved != mod:
                    graph[mod].add(resolved)
    return graph


def floor_of(module: str) -> tuple[int, str]:
    best = max((p for p in FLOORS if module == p[0] or module.startswith(p[0] + ".")),
               key=lambda p: len(p[0]), default=None)
    assert best is not None, f"{module} is on no floor: add it to FLOORS and docs/architecture.md"
    return best[1], best[2]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        component.append(m)
                        if m == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_imports_go_down_a_floor_or_stay_in_their_room():
    wrong = []
    for mod, targets in sorted(import_graph().items()):
        floor, room = floor_of(mod)
        for target in sorted(targets):
            target_floor, target_room = floor_of(target)
            if target_room != room and target_floor >= floor:
                wrong.append(f"{mod} (floor {floor}, {room}) imports {target} (floor {target_floor}, "
                             f"{target_room})")
    assert wrong == []


def test_the_checker_sees_circles_and_upward_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert floor_of("compiler.ir.builder") == (3, "ir-tools")
    assert floor_of("compiler.ir.core") == (1, "ir-data")
    assert floor_of("frontend_dsl.layers.dense") == (6, "frontend")
    # the real graph has edges the floors must order: the op table is written in IR data terms
    graph = import_graph()
    assert "compiler.ir.core" in graph["compiler.ops.rules"]
    assert "compiler.ops" in graph["compiler.ir.builder"]
