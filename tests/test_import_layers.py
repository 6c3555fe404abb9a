"""The package's import structure (DESIGN.md "Layout"): every module imports, no import circle, no upward import.

Imports are read from the source (``ast``), lazy ones inside functions included: a lazy import is still a
dependency, and a circle of lazy imports is still a circle. ``if TYPE_CHECKING:`` blocks are left out (they never
run). Importing from one's own package (``from moto_vision.data import images`` inside ``moto_vision.data``) is an
edge to the submodule, not to the package's ``__init__``, which Python imports first anyway.
"""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path

import moto_vision

ROOT = Path(moto_vision.__file__).parent

#: The floors of DESIGN.md, lowest first: a unit (a sub-package or a top-level module) may import only from its own
#: floor or lower ones. Nothing below ``data`` imports Lightning (tested below).
FLOORS: list[set[str]] = [
    {"__init__", "errors", "trust", "viz"},  # ground floor
    {"isp", "metrics"},
    {"models", "backbones"},
    {"heads"},
    {"data"},
    {"tasks", "callbacks"},
    {"cli"},
    {"deploy"},
    {"__main__"},
]
#: Units that may import Lightning lazily although they sit below ``data`` (viz.log_image dispatches on the logger).
LIGHTNING_LAZY = {"viz"}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path) -> list[tuple[str, bool]]:
    """``(imported name, at module level)`` for every import in a module, TYPE_CHECKING blocks left out."""
    found: list[tuple[str, bool]] = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.append((base, top))
                found.extend((f"{base}.{alias.name}", top) for alias in child.names)
            visit(child, top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text()), True)
    return found


@functools.cache
def _graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (not its own ancestors: Python imports those first anyway)."""
    graph = {}
    for name, path in MODULES.items():
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")))}
        graph[name] = {target for target, _ in _imports(name, path) if target in MODULES and target != name} - ancestors
    return graph


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_floors_name_every_unit_once() -> None:
    units = {_unit(name) for name in MODULES}
    listed = [unit for floor in FLOORS for unit in floor]
    assert sorted(listed) == sorted(set(listed)), "a unit is on two floors"
    assert units == set(listed), f"units without a floor: {sorted(units - set(listed))}"


def test_no_import_circle_between_modules() -> None:
    cycles = _cycles(_graph())
    assert not cycles, f"import circles (lazy imports included): {cycles}"


def test_no_import_from_a_lower_floor_to_a_higher_one() -> None:
    floor = {unit: level for level, units in enumerate(FLOORS) for unit in units}
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if floor[_unit(target)] > floor[_unit(module)]
    )
    assert not upward, f"upward imports: {upward}"


def test_nothing_below_data_imports_lightning_at_module_level() -> None:
    floor = {unit: level for level, units in enumerate(FLOORS) for unit in units}
    data = floor["data"]
    offenders = sorted(
        f"{name} imports {target}{'' if top else ' (lazily)'}"
        for name, path in MODULES.items()
        if floor[_unit(name)] < data
        for target, top in _imports(name, path)
        if target.split(".")[0] in ("lightning", "pytorch_lightning") and (top or _unit(name) not in LIGHTNING_LAZY)
    )
    assert not offenders, offenders


def test_the_checks_find_what_they_look_for() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    graph = _graph()
    assert "moto_vision.heads" in graph["moto_vision.tasks.multitask"]  # at module level
    assert "moto_vision.isp" in graph["moto_vision.data.curation.label_awb"]  # lazily, inside a function


def test_every_module_imports() -> None:
    failures = {}
    for name in sorted(MODULES):
        try:
            importlib.import_module(name)
        except Exception as error:  # report them all at once
            failures[name] = f"{type(error).__name__}: {error}"
    assert not failures, failures
