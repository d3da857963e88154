"""The layout is the architecture: size limits, no import cycles, and who may import whom.

Imports are read with ``ast`` from every module of ``evalkit/``, including imports inside
functions, so a lazy import cannot hide a cycle or a broken rule.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "evalkit"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60

# folder (or module) -> the evalkit layers it must never import
FORBIDDEN = {
    "evalkit.data": ("evalkit.measure", "evalkit.analysis", "evalkit.results", "evalkit.runner"),
    "evalkit.retrieve": (
        "evalkit.measure",
        "evalkit.analysis",
        "evalkit.results",
        "evalkit.runner",
    ),
    "evalkit.rerank": ("evalkit.measure", "evalkit.analysis", "evalkit.results", "evalkit.runner"),
    "evalkit.models": ("evalkit.measure", "evalkit.analysis", "evalkit.results", "evalkit.runner"),
    "evalkit.pipeline": (
        "evalkit.measure",
        "evalkit.analysis",
        "evalkit.results",
        "evalkit.runner",
    ),
    "evalkit.measure": ("evalkit.analysis", "evalkit.results", "evalkit.runner"),
    "evalkit.results": ("evalkit.measure", "evalkit.analysis", "evalkit.runner"),
    "evalkit.analysis": ("evalkit.runner", "evalkit.config.build", "evalkit.pipeline"),
    "evalkit.runner": ("evalkit.analysis",),
    "evalkit.external": ("evalkit.analysis", "evalkit.runner", "evalkit.pipeline"),
    "evalkit.trec": ("evalkit.measure", "evalkit.analysis", "evalkit.results", "evalkit.runner"),
    "evalkit.config": ("evalkit.measure", "evalkit.analysis", "evalkit.results", "evalkit.runner"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache  # the sources do not change while the tests run
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def runtime_nodes(tree: ast.AST):
    """Every node that can run: all of them but the bodies of ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *runtime_nodes(child)])
            continue
        yield node
        yield from runtime_nodes(node)


def imports_of(path: Path) -> set[str]:
    """Every evalkit module ``path`` imports when it runs, at the top or inside functions
    (type-checking-only imports never run, so they are not edges)."""
    found = set()
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("evalkit")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("evalkit"):
                continue
            known = modules()
            for alias in node.names:  # `from evalkit.x import y` may import module x.y
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
    return found


@cache
def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {m for m in imports_of(path) if m in known and m != name}
        for name, path in known.items()
    }


def sizes() -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    files, functions = [], []
    for name, path in modules().items():
        text = path.read_text()
        files.append((len(text.splitlines()), name))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}"))
    return sorted(files, reverse=True), sorted(functions, reverse=True)


def test_no_file_and_no_function_is_too_long():
    files, functions = sizes()
    assert [f for f in files if f[0] > MAX_FILE_LINES] == []
    assert [f for f in functions if f[0] > MAX_FUNCTION_LINES] == []


def test_there_is_no_import_cycle():
    edges = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
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
                cycles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    # a package's __init__ re-exporting its own modules is not a cycle of the layout
    real = [c for c in cycles if not all(m.startswith(c[0]) for m in c)]
    assert real == []


def belongs(module: str, folder: str) -> bool:
    return module == folder or module.startswith(folder + ".")


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_folder_import_rules_hold(folder):
    broken = [
        (name, target)
        for name, targets in graph().items()
        if belongs(name, folder)
        for target in targets
        if any(belongs(target, banned) for banned in FORBIDDEN[folder])
    ]
    assert broken == []


def test_only_the_console_scripts_import_the_cli():
    users = [name for name, targets in graph().items() if "evalkit.cli" in targets]
    assert users == []


def test_imports_inside_functions_are_seen():
    """The checker is not blind: build.py imports bm25 only inside a function."""
    assert "evalkit.retrieve.bm25" in imports_of(ROOT / "config" / "build.py")
    assert "evalkit.retrieve.bm25" in graph()["evalkit.config.build"]
