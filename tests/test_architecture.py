"""The house layout (STYLE.md): no import cycles inside the app, no module over 600 lines, the services package
re-exports exactly what docs/services.md documents, and the domain never reaches up into the web or task layers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import django_emailotp
from django_emailotp import services

PACKAGE_DIR = Path(django_emailotp.__file__).resolve().parent
DOCS = PACKAGE_DIR.parent / "docs"
MAX_LINES = 600
# What the domain may not import: the layers that call it. Work leaves the services through services.dispatch.
UPPER_LAYERS = (
    "django_emailotp.tasks",
    "django_emailotp.views",
    "django_emailotp.api",
    "django_emailotp.middleware",
    "django_emailotp.decorators",
    "django_emailotp.admin",
    "django_emailotp.management",
    "django_emailotp.forms",
    "django_emailotp.receivers",
    "django_emailotp.contrib",
)


def app_modules() -> dict[str, Path]:
    """Every module of the app by dotted name (packages by their own name), migrations aside."""
    modules = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        relative = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
        if "migrations" in relative.parts:
            continue
        name = ".".join(relative.parts).removesuffix(".__init__")
        modules[name] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The app modules ``name`` imports, at any depth of its code (function-level imports count too).

    ``from package import thing`` points at ``package.thing`` when that is a module, else at ``package``.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {target for target in found if target in modules and target != name}


def import_graph() -> dict[str, set[str]]:
    modules = app_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The checker itself: an import inside a function and a relative import are both edges."""
    modules = {"pkg": tmp_path / "__init__.py", "pkg.a": tmp_path / "a.py", "pkg.b": tmp_path / "b.py"}
    modules["pkg.a"].write_text("def f():\n    from pkg import b\n")
    modules["pkg.b"].write_text("from . import a\nfrom .a import f\n")
    modules["pkg"].write_text("")
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def test_no_import_cycles_in_the_app() -> None:
    graph = import_graph()
    assert len(graph) > 40  # the walk found the app
    assert cycles(graph) == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles(graph))


def test_services_never_import_the_layers_above_them() -> None:
    graph = import_graph()
    reaching_up = {
        (name, target)
        for name, targets in graph.items()
        if name.startswith("django_emailotp.services")
        for target in targets
        if target.startswith(UPPER_LAYERS)
    }
    assert reaching_up == set()


def test_no_module_over_600_lines() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in app_modules().items()}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}


def test_every_service_module_says_what_it_owns() -> None:
    for name, path in app_modules().items():
        if name.startswith("django_emailotp.services"):
            docstring = ast.get_docstring(ast.parse(path.read_text()))
            assert docstring, f"{name} has no module docstring"


def documented_public_names() -> list[str]:
    """The names in the import block under "Every public name" in docs/services.md."""
    text = (DOCS / "services.md").read_text()
    section = text.split("## Every public name", 1)[1]
    block = section.split("```python", 1)[1].split("```", 1)[0]
    return re.findall(r"^\s+(\w+),$", block, re.MULTILINE)


def test_the_package_exports_exactly_the_documented_names() -> None:
    documented = documented_public_names()
    assert len(documented) > 50
    assert sorted(documented) == sorted(services.__all__)


@pytest.mark.parametrize("name", documented_public_names())
def test_every_documented_name_imports_from_the_package(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from django_emailotp.services import {name}", namespace)  # noqa: S102 - the documented import line
    assert namespace[name] is getattr(services, name)
