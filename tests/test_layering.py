"""The core never imports the edges, and the viewer no edge but the MQTT transport (STYLE.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

EDGE_MODULES = ("aiomqtt", "amqtt", "PySide6", "pyqtgraph", "tensorflow", "tf2onnx", "asyncio")
CORE_MODULES = (
    "ecg_stream",
    "ecg_stream.config",
    "ecg_stream.errors",
    "ecg_stream.types",
    "ecg_stream.records",
    "ecg_stream.evaluation",
    "ecg_stream.evaluation.matching",
    "ecg_stream.evaluation.figures",
    "ecg_stream.evaluation.detection",
    "ecg_stream.documents",
    "ecg_stream.live.analysis",
    "ecg_stream.detector.chain",
)
OPTIONAL_CORE = (
    "ecg_stream.wire",
    "ecg_stream.classify.pipeline",
    "ecg_stream.classify.classifier",
)
OFFLINE_WITHOUT_EDGES = (
    "ecg_stream.evaluation.classification",
    "ecg_stream.evaluation.stress",
    "ecg_stream.training.run",
    "ecg_stream.training.card",
)
"""Offline reports and run documents: no TensorFlow until a function needs it, no MQTT, no Qt."""
PACKAGE = Path(__file__).resolve().parents[1] / "ecg_stream"
EVALUATION_REPORTS = (
    "ecg_stream.evaluation.detection",
    "ecg_stream.evaluation.classification",
    "ecg_stream.evaluation.stress",
)
VIEWER_MODULES = (
    "ecg_stream.viewer.background",
    "ecg_stream.viewer.monitor",
    "ecg_stream.viewer.ring",
    "ecg_stream.viewer.subscriber",
    "ecg_stream.viewer.tracker",
)
VIEWER_MAY_LOAD_FROM_STREAM = {"ecg_stream.stream", "ecg_stream.mqtt.transport"}


def modules_after(module: str) -> set[str]:
    """Every module a fresh interpreter holds after importing ``module``."""
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def imported_after(module: str) -> set[str]:
    return {name.split(".")[0] for name in modules_after(module)}


@pytest.mark.parametrize("module", CORE_MODULES + OPTIONAL_CORE + OFFLINE_WITHOUT_EDGES)
def test_core_module_pulls_in_no_edge(module: str) -> None:
    loaded = imported_after(module)
    assert loaded.isdisjoint(EDGE_MODULES), sorted(loaded & set(EDGE_MODULES))


@pytest.mark.parametrize("module", VIEWER_MODULES)
def test_viewer_loads_the_mqtt_transport_and_nothing_else_of_stream(module: str) -> None:
    loaded = {name for name in modules_after(module) if name.startswith("ecg_stream.stream")}
    assert loaded <= VIEWER_MAY_LOAD_FROM_STREAM, sorted(loaded - VIEWER_MAY_LOAD_FROM_STREAM)


def imports_of(path: Path) -> set[str]:
    """The ``ecg_stream`` modules a source file imports, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("ecg_stream")}


def test_the_matching_protocol_imports_only_the_l0_modules() -> None:
    allowed = {"ecg_stream.types", "ecg_stream.config", "ecg_stream.errors"}
    assert imports_of(PACKAGE / "evaluation" / "matching.py") <= allowed


def test_nothing_in_model_imports_the_pipeline_or_a_streaming_report() -> None:
    """model/ sits under classify/pipeline.py; the reports that stream records live in evaluation/."""
    for path in (PACKAGE / "model").glob("*.py"):
        imported = imports_of(path) - {"ecg_stream.cli"}  # card's __main__ hands over to the CLI
        upward = {"ecg_stream.classify.pipeline", *EVALUATION_REPORTS}
        assert imported.isdisjoint(upward), (path.name, sorted(imported & upward))


@pytest.mark.parametrize("module", ["ecg_stream.training.run", "ecg_stream.training.card"])
def test_run_documents_and_card_load_without_the_pipeline(module: str) -> None:
    assert "ecg_stream.classify.pipeline" not in modules_after(module)
