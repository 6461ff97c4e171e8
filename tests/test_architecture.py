"""The package's layering, as a test: data flows one way, so imports only go down.

Every module of `weightscope` has a level (`LEVELS`, by longest matching prefix). A module
may import its own level or lower, never higher, and the import graph has no cycle.
`linalg` and `stats` import nothing of the package but `errors` and each other's lower
layer (stats may use linalg). Imports under ``if TYPE_CHECKING:`` are type hints, not
dependencies, and are ignored; function-level (lazy) imports count.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "weightscope"

#: Lower numbers are lower levels (README: Architecture).
LEVELS = {
    "weightscope._version": 0,
    "weightscope.errors": 0,
    "weightscope.io": 0,
    "weightscope.config": 1,
    "weightscope.linalg": 1,
    "weightscope.checkpoint": 2,
    "weightscope.stats": 2,
    "weightscope.layers": 3,
    "weightscope.options": 3,
    "weightscope.checks": 4,
    "weightscope.report": 5,
    "weightscope.summary": 6,
    "weightscope.execution": 6,
    "weightscope.layer_spectra": 7,
    "weightscope.model_measures": 7,
    "weightscope.pipeline": 8,
    "weightscope.commands": 9,
    "weightscope.render": 10,
    "weightscope.cli": 11,
    "weightscope.__main__": 12,
    "weightscope": 12,  # the package's lazy public API re-exports from any level
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def level(module: str) -> int:
    best = max((prefix for prefix in LEVELS if module == prefix or module.startswith(prefix + ".")), key=len)
    return LEVELS[best]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> set[str]:
    """The weightscope modules ``path`` imports at run time (relative imports resolved)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("weightscope"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("weightscope"):
                found.add(target)
                # `from weightscope.x import y` where y is a submodule
                for alias in node.names:
                    if (PACKAGE.parent / Path(*f"{target}.{alias.name}".split("."))).with_suffix(".py").exists():
                        found.add(f"{target}.{alias.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(module)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_level():
    for module in graph():
        assert level(module) is not None


def test_imports_never_go_up_a_level():
    upward = [
        f"{module} (level {level(module)}) imports {target} (level {level(target)})"
        for module, targets in graph().items()
        for target in targets
        if target != "weightscope" and level(target) > level(module)
    ]
    assert not upward, "\n".join(upward)


def test_numerics_and_statistics_import_nothing_above_them():
    allowed = {"linalg": ("weightscope.linalg", "weightscope.errors"),
               "stats": ("weightscope.stats", "weightscope.linalg", "weightscope.errors")}
    for module, targets in graph().items():
        for folder, prefixes in allowed.items():
            if module.startswith(f"weightscope.{folder}"):
                bad = [t for t in targets if not t.startswith(prefixes)]
                assert not bad, f"{module} imports {bad}"


def test_the_import_graph_has_no_cycle():
    edges = {module: {t for t in targets if t != "weightscope"} for module, targets in graph().items()}
    # A package's __init__ importing its own submodules is not a cycle of design.
    state: dict[str, int] = {}
    cycle: list[str] = []

    def walk(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                cycle.extend(path[path.index(nxt):] + [nxt])
                return True
            if state.get(nxt) is None and walk(nxt, path + [nxt]):
                return True
        state[node] = 2
        return False

    for start in edges:
        if state.get(start) is None and walk(start, [start]):
            break
    assert not cycle, " -> ".join(cycle)

