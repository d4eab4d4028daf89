"""The package layout of docs/DESIGN.md ("Folders"): which mapgen package may import which, and no cycle.

Every module of every installed package is parsed (not imported), and every import counts: at the top,
inside functions (the lazy ones), under TYPE_CHECKING, relative or absolute, and the string names given to
importlib (`resources.files("mapgen.models")`, `import_module(...)`).
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What each top-level package may import of ours: the "may import" column of DESIGN.md's folder table.
ALLOWED: dict[str, set[str]] = {
    "files": set(),
    "tiles": {"files"},
    "models": {"files"},
    "workflows": {"files"},
    "synthetic": {"tiles", "files"},
    "pipeline": {"tiles", "models", "workflows", "files"},
    "training": {"pipeline", "models", "tiles", "workflows", "synthetic", "files"},
    "cli": {"files", "tiles", "models", "workflows", "synthetic", "pipeline", "training"},
}


def top_level_packages() -> dict[str, Path]:
    """mapgen.X → its folder, for every top-level package the wheel installs."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = config["package-dir"]
    out = {}
    for name in config["packages"]:
        parts = name.split(".")
        if len(parts) == 2 and parts[0] == "mapgen":
            out[parts[1]] = ROOT / dirs.get(name, "/".join(parts[1:]))
    return out


def module_name(package: str, folder: Path, path: Path) -> tuple[str, bool]:
    """(dotted name, is a package's __init__) of a source file of mapgen.<package>."""
    parts = ["mapgen", package, *path.relative_to(folder).with_suffix("").parts]
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every absolute dotted name the module imports (relative imports resolved)."""
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level - 1 >= len(base):
                    raise AssertionError(f"{module}: relative import beyond the top level")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)  # `from mapgen import training`
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if called in {"import_module", "__import__", "files", "find_spec"} and isinstance(first, ast.Constant) \
                    and isinstance(first.value, str):
                names.add(first.value)
    return names


def import_graph() -> dict[str, dict[str, set[str]]]:
    """package → {package it imports → the modules that do}."""
    packages = top_level_packages()
    graph: dict[str, dict[str, set[str]]] = {name: {} for name in packages}
    for package, folder in packages.items():
        files = sorted(folder.rglob("*.py"))
        assert files, f"mapgen.{package}: no modules under {folder}"
        for path in files:
            module, is_package = module_name(package, folder, path)
            tree = ast.parse(path.read_text(), filename=str(path))
            for name in imported_names(tree, module, is_package):
                parts = name.split(".")
                if len(parts) >= 2 and parts[0] == "mapgen" and parts[1] in packages and parts[1] != package:
                    graph[package].setdefault(parts[1], set()).add(module)
    return graph


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def design_table() -> dict[str, set[str]]:
    """The folder table of docs/DESIGN.md: folder → the packages of ours its "may import" column names."""
    text = (ROOT / "docs" / "DESIGN.md").read_text()
    section = text.split("## Folders", 1)[1].split("\n## ", 1)[0]
    ours = set(ALLOWED)
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not (match := re.fullmatch(r"`([a-z_]+)/`", cells[0])):
            continue
        may = cells[2]
        if "everything" in may:
            table[match.group(1)] = ours - {match.group(1)}
        else:
            table[match.group(1)] = {w for w in re.findall(r"[a-z_]+", may) if w in ours}
    return table


def test_every_installed_package_has_a_rule():
    assert set(top_level_packages()) == set(ALLOWED)


def test_the_rules_are_design_md_table():
    table = design_table()
    assert {k: v for k, v in table.items() if k in ALLOWED} == ALLOWED


def test_no_package_cycle():
    graph = import_graph()
    cycle = find_cycle({package: set(targets) for package, targets in graph.items()})
    assert cycle is None, "package cycle: " + " → ".join(cycle or ())


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_design_md_allows(package):
    graph = import_graph()
    wrong = {target: sorted(modules) for target, modules in graph[package].items() if target not in ALLOWED[package]}
    assert not wrong, f"mapgen.{package} may import {sorted(ALLOWED[package]) or 'nothing of ours'}; " + "; ".join(
        f"it imports mapgen.{target} in {', '.join(modules)}" for target, modules in sorted(wrong.items()))


def test_the_checker_sees_lazy_and_relative_imports():
    source = ("from . import kernels\nfrom ..training import scenes\n"
              "def f():\n    from mapgen.synthetic import generate_scene\n    import mapgen.cli.commands\n"
              "    resources.files('mapgen.models')\n")
    names = imported_names(ast.parse(source), "mapgen.pipeline.evaluate", False)
    assert {"mapgen.pipeline", "mapgen.training", "mapgen.synthetic", "mapgen.cli.commands",
            "mapgen.models"} <= names
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
