"""The tree is the architecture: layers import only downward, and nothing imports in a circle.

Read statically (``ast``), so the checks cover every module, including the
Blender layer that can't be imported without bpy.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "blender_img3d"
PACKAGE = "blender_img3d"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


MODULES = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def resolve(module: str, package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, top_level_only: bool) -> set[str]:
    """Every module ``module`` imports (a ``from x import name`` counts x.name if a module)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = resolve(module, is_package(path), node)
            submodules = {f"{target}.{a.name}" for a in node.names} & MODULES.keys()
            found.update(submodules or {target})
    return found


def test_the_tree_has_the_documented_rooms():
    for room in ("blender", "cli", "core", "core.shap_e", "core.mesh", "core.system"):
        assert f"{PACKAGE}.{room}" in MODULES, room
        assert ast.get_docstring(ast.parse(MODULES[f"{PACKAGE}.{room}"].read_text())), room
    top = {name for name in MODULES if name.count(".") == 1}
    assert top == {f"{PACKAGE}.__main__", f"{PACKAGE}.blender", f"{PACKAGE}.cli", f"{PACKAGE}.core"}


def test_only_the_blender_layer_imports_bpy():
    blender_modules = ("bpy", "bmesh", "mathutils", "addon_utils", "bl_ui")
    for module in MODULES:
        if module.startswith(f"{PACKAGE}.blender") or module == PACKAGE:
            continue
        used = {name.split(".")[0] for name in imports(module, top_level_only=False)}
        assert not used & set(blender_modules), module


def test_core_never_imports_upward():
    for module in MODULES:
        if not module.startswith(f"{PACKAGE}.core"):
            continue
        for target in imports(module, top_level_only=False):
            if not target.startswith(PACKAGE):
                continue
            assert target.startswith(f"{PACKAGE}.core"), f"{module} imports {target}"


def test_the_cli_never_imports_the_blender_layer():
    for module in MODULES:
        if module.startswith(f"{PACKAGE}.cli"):
            for target in imports(module, top_level_only=False):
                assert not target.startswith(f"{PACKAGE}.blender"), f"{module} imports {target}"


def test_no_import_cycles_between_modules():
    graph = {
        # Lazy (function-level) imports count too: a cycle hidden in a function is still one.
        module: {t for t in imports(module, top_level_only=False) if t in MODULES and t != module}
        for module in MODULES
    }
    # A package's __init__ importing its own children is not a cycle with them.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not module.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = stack[stack.index(target) :] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
