"""Dependencies point inward, with no import circles (STYLE.md, "Layout and dependency direction").

Read from the sources with ``ast``, not by importing them: every import statement counts, at any
depth of a module's code (inside functions and ``if TYPE_CHECKING:`` too). One subprocess test
checks the other side: a runtime-only install, without the extras, runs ``analyze``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ecg_stream"

L0 = frozenset({"config", "errors", "types", "documents", "stats", "progress"})
CORE = frozenset({"records", "detector", "wire", "classify"})
EVERYTHING = frozenset(
    {"L0", "package", *CORE, "mqtt", "live", "viewer", "evaluation", "training", "bench", "cli"}
)
MAY_IMPORT: Mapping[str, frozenset[str]] = {
    "L0": frozenset({"L0"}),
    "wire": frozenset({"L0"}),
    "records": frozenset({"L0", *CORE}),
    "detector": frozenset({"L0", *CORE}),
    "classify": frozenset({"L0", *CORE}),
    "package": frozenset({"L0", *CORE}),
    "mqtt": frozenset({"L0", "wire", "mqtt"}),
    "live": frozenset({"L0", *CORE, "mqtt", "live"}),
    "viewer": frozenset(
        {"L0", "wire", "viewer", "ecg_stream.mqtt.transport", "ecg_stream.mqtt.subscriber"}
    ),
    "evaluation": frozenset({"L0", *CORE, "live", "evaluation"}),
    "training": EVERYTHING - {"bench", "cli"},
    "bench": EVERYTHING - {"cli"},
    "cli": EVERYTHING,
}
"""Layer -> the layers (or single ``ecg_stream`` modules) its code may import. A layer is a
folder or module under ``ecg_stream``; "L0" is config, errors, types, documents, stats and progress;
"package" is ``ecg_stream/__init__.py``."""

THIRD_PARTY_HOMES: Mapping[str, frozenset[str]] = {
    "aiomqtt": frozenset({"mqtt"}),
    "amqtt": frozenset({"mqtt"}),
    "paho": frozenset({"mqtt"}),  # aiomqtt's own client library
    "PySide6": frozenset({"viewer"}),
    "pyqtgraph": frozenset({"viewer"}),
    "tensorflow": frozenset({"training", "bench"}),
    "keras": frozenset({"training", "bench"}),
    "tf2onnx": frozenset({"training", "bench"}),
    "onnx": frozenset({"training", "bench"}),
    "matplotlib": EVERYTHING,
    "sklearn": EVERYTHING,
}
"""Third-party package -> the layers that may import it."""
LAZY_ONLY = frozenset({"tensorflow", "keras", "tf2onnx", "onnx", "matplotlib", "sklearn"})
"""Imported inside functions only: importing any ``ecg_stream`` module never loads them."""
EDGES = frozenset({"aiomqtt", "amqtt", "paho", "PySide6", "pyqtgraph"} | LAZY_ONLY)
RUNTIME_ONLY_REFUSED = LAZY_ONLY | {"PySide6", "pyqtgraph"}
"""What the "train" and "viewer" extras bring: a runtime-only install lacks them."""
STREAMING_REPORTS = frozenset(
    {
        "ecg_stream.evaluation.detection",
        "ecg_stream.evaluation.classification",
        "ecg_stream.evaluation.stress",
    }
)
"""The reports of evaluation/ that stream records through the live session."""


@dataclass(frozen=True, slots=True)
class Import:
    """One imported module, as a source file names it.

    Args:
        module: Dotted name (``from a import b`` names ``a.b`` when that is an ``ecg_stream``
            module, else ``a``).
        line: Line of the import statement.
        lazy: Inside a function body: runs when the function is called, not on import.
        type_only: Under ``if TYPE_CHECKING:``: never runs.
    """

    module: str
    line: int
    lazy: bool
    type_only: bool

    @property
    def runs_on_import(self) -> bool:
        return not (self.lazy or self.type_only)

    def __str__(self) -> str:
        where = "type-only" if self.type_only else "in a function" if self.lazy else "top level"
        return f"line {self.line}: {self.module} ({where})"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    return "L0" if parts[1] in L0 else parts[1]


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def walk_imports(node: ast.AST, *, lazy: bool, type_only: bool) -> Iterator[Import]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield Import(alias.name, node.lineno, lazy, type_only)
    elif isinstance(node, ast.ImportFrom):
        base = "." * node.level + (node.module or "")  # relative: named as written
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            named = submodule if submodule in SOURCES else base
            yield Import(named, node.lineno, lazy, type_only)
    elif isinstance(node, ast.If) and is_type_checking(node.test):
        for statement in node.body:
            yield from walk_imports(statement, lazy=lazy, type_only=True)
        for statement in node.orelse:
            yield from walk_imports(statement, lazy=lazy, type_only=type_only)
    else:
        inside = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            yield from walk_imports(child, lazy=lazy or inside, type_only=type_only)


@cache
def imports_of(module: str) -> tuple[Import, ...]:
    """Every import statement of a module's source file, at any depth."""
    tree = ast.parse(SOURCES[module].read_text(), filename=str(SOURCES[module]))
    return tuple(walk_imports(tree, lazy=False, type_only=False))


def own_imports(module: str) -> list[Import]:
    return [i for i in imports_of(module) if i.module.split(".")[0] in {"ecg_stream", ""}]


def loaded_on_import(module: str) -> tuple[set[str], set[str]]:
    """What importing ``module`` runs: ``ecg_stream`` modules, and third-party top-level names.

    Importing ``a.b.c`` also runs ``a`` and ``a.b`` (their ``__init__.py``).
    """
    own: set[str] = set()
    third_party: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for parent in (".".join(parts[:k]) for k in range(1, len(parts) + 1)):
            if parent in SOURCES and parent not in own:
                own.add(parent)
                for imported in imports_of(parent):
                    if not imported.runs_on_import:
                        continue
                    if imported.module.startswith("ecg_stream"):
                        pending.append(imported.module)
                    else:
                        third_party.add(imported.module.split(".")[0])
    return own, third_party


def allowed(importer: str, imported: str) -> bool:
    may = MAY_IMPORT[layer_of(importer)]
    return layer_of(imported) in may or imported in may


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_imports_point_inward(module: str) -> None:
    layer = layer_of(module)
    assert layer in MAY_IMPORT, f"{module}: no rule for layer {layer!r}; add it to MAY_IMPORT"
    relative = [str(i) for i in imports_of(module) if i.module.startswith(".")]
    assert relative == [], f"{module}: relative imports {relative} (ruff TID252)"
    unknown = [str(i) for i in own_imports(module) if i.module not in SOURCES]
    assert unknown == [], f"{module} imports modules that do not exist: {unknown}"
    wrong = [str(i) for i in own_imports(module) if not allowed(module, i.module)]
    may = sorted(MAY_IMPORT[layer])
    assert wrong == [], f"{module} (layer {layer}) may import only {may}, not {wrong}"


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_third_party_edges_stay_where_they_belong(module: str) -> None:
    layer, wrong, eager = layer_of(module), [], []
    for imported in imports_of(module):
        top = imported.module.split(".")[0]
        if top in THIRD_PARTY_HOMES and layer not in THIRD_PARTY_HOMES[top]:
            wrong.append(f"{imported} (only in {sorted(THIRD_PARTY_HOMES[top])})")
        if top in LAZY_ONLY and imported.runs_on_import:
            eager.append(str(imported))
    assert wrong == [], f"{module} (layer {layer}) imports {wrong}"
    assert eager == [], f"{module}: import these inside the functions that need them: {eager}"


def import_graph() -> dict[str, set[str]]:
    """Module -> the ``ecg_stream`` modules it names in an import, wherever the import is."""
    return {
        module: {i.module for i in own_imports(module) if i.module in SOURCES} - {module}
        for module in SOURCES
    }


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [shortest_cycle(graph, component) for component in components]


def shortest_cycle(graph: Mapping[str, set[str]], component: set[str]) -> list[str]:
    """The shortest way back to the component's first module, inside the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node] & component):
                if successor == start:
                    return [*paths[node], start]
                if successor not in paths:
                    paths[successor] = [*paths[node], successor]
                    following.append(successor)
        frontier = following
    return sorted(component)  # unreachable: a component of several modules has a cycle


def test_no_import_circles() -> None:
    found = [" -> ".join(cycle) for cycle in cycles(import_graph())]
    assert found == [], "import circles (imports in functions count):\n" + "\n".join(found)


def test_cycle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


CORE_AT_IMPORT = sorted(
    module
    for module in SOURCES
    if layer_of(module) in {"L0", "package", *CORE, "evaluation", "training"}
)
ASYNC = "ecg_stream.classify.batcher"
"""The one core module that is asynchronous: it batches the streams of one event-loop turn."""


@pytest.mark.parametrize("module", CORE_AT_IMPORT)
def test_importing_the_core_or_offline_code_loads_no_edge(module: str) -> None:
    """The core, the reports and the training code load no MQTT, Qt, TensorFlow or plotting
    until a function needs them; the core below the batcher loads no asyncio either."""
    own, third_party = loaded_on_import(module)
    below_the_batcher = layer_of(module) in {"L0", "package", *CORE} and ASYNC not in own
    edges = EDGES | {"asyncio"} if below_the_batcher else EDGES
    assert third_party.isdisjoint(edges), sorted(third_party & edges)


def test_the_matching_protocol_imports_only_the_l0_modules() -> None:
    imported = {i.module for i in own_imports("ecg_stream.evaluation.matching")}
    assert {layer_of(name) for name in imported} <= {"L0"}, sorted(imported)


def streams_records(module: str) -> bool:
    return layer_of(module) == "live" or module in STREAMING_REPORTS


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if layer_of(m) == "training"))
def test_training_imports_no_live_session_nor_streaming_report(module: str) -> None:
    """Training sits under the live session (live/) and the streaming reports of evaluation/:
    its windows come from the chain itself (detector/), as the session's do."""
    upward = [str(i) for i in own_imports(module) if streams_records(i.module)]
    assert upward == [], f"{module} imports {upward}"


@pytest.mark.parametrize("module", ["ecg_stream.training.run", "ecg_stream.training.card"])
def test_run_documents_and_card_load_without_the_live_session(module: str) -> None:
    own, _ = loaded_on_import(module)
    assert not any(streams_records(name) for name in own), sorted(filter(streams_records, own))


RUNTIME_ONLY = """
import sys
from importlib.abc import MetaPathFinder

REFUSED = frozenset(sys.argv[1].split(","))


class RuntimeOnlyInstall(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in REFUSED:
            raise ModuleNotFoundError(f"No module named {name!r} (not installed)", name=name)
        return None


sys.meta_path.insert(0, RuntimeOnlyInstall())
from ecg_stream.cli import main

sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_analyze_runs_on_a_runtime_only_install(short_record: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["analyze", str(short_record), "--out-dir", str(out)]
    refused = ",".join(sorted(RUNTIME_ONLY_REFUSED))
    done = subprocess.run(
        [sys.executable, "-c", RUNTIME_ONLY, refused, *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = (out / "short.csv").read_text().splitlines()
    assert lines[0].startswith("sample,time_s,rr_ms,label,confidence,p_N")
    assert len(lines) > 10  # 10 s of record 100: about 12 beats
