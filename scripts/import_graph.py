"""Print the package's import graph by folder, and every circle between its modules.

Usage: ``python scripts/import_graph.py [PACKAGE_DIR]`` (default: ``ecg_stream`` beside this
folder). Reads the source as text (imports inside functions count too); runs nothing.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    """The dotted name of the module in ``path``."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports (``from pkg import module`` counts the module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                names.add(submodule if submodule in modules else node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names & modules


def unit_of(module: str, files: dict[str, Path]) -> str:
    """``ecg_stream.live.session`` -> ``live/``; ``ecg_stream.wire`` -> ``wire``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    folder = len(parts) > 2 or files[module].name == "__init__.py"
    return f"{parts[1]}/" if folder else parts[1]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Circles of the module graph (one per strongly connected set of two or more)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main() -> None:
    """Print the folder graph and the module circles."""
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "ecg_stream"
    files = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph = {module: imports_of(path, set(files)) - {module} for module, path in files.items()}
    units: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        unit = unit_of(module, files)
        units[unit].update(unit_of(t, files) for t in targets)
        units[unit].discard(unit)
    for unit in sorted(units):
        print(f"{unit:<16} -> {' '.join(sorted(units[unit])) or '-'}")
    circles = cycles(graph)
    print(f"module circles: {len(circles)}")
    for circle in circles:
        print("  " + " <-> ".join(circle))


if __name__ == "__main__":
    main()
